// Takes the README's screenshots of the dashboard (docs/dashboard.png, docs/dashboard-run.png) with
// the headless Chromium the browser tests use, on a store filled by real workflows.
//
//   node scripts/screenshot.ts        (needs /usr/bin/chromium, or REFLOW_CHROMIUM)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { createEngine, createWorkflow, type StandardSchemaV1 } from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { createDashboard } from "../dashboard.ts";
import { serve } from "../adapters/serve.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const any = <T>(): StandardSchemaV1<T> => ({
  "~standard": { version: 1, vendor: "screenshot", validate: (value) => ({ value: value as T }) },
});
const fast = { maxAttempts: 3, backoff: "linear", initialDelayMs: 5 } as const;

const invoice = createWorkflow({ name: "send-invoice", input: any<{ customer: string; cents: number }>() })
  .step("render-pdf", ({ input }) => ({ pages: 2, file: `inv-${input.customer}.pdf` }))
  .step("email", {
    retry: fast,
    handler: ({ input }) => {
      if (input.customer === "acme") throw new Error("SMTP 421: mailbox temporarily unavailable");
      return { messageId: `<${input.customer}@mail>` };
    },
  });
const onboarding = createWorkflow({ name: "onboard-user", input: any<{ email: string }>() })
  .step("create-account", ({ input }) => ({ userId: input.email.split("@")[0] }))
  .waitForEvent("email-verified")
  .step("welcome", () => "sent");
const sync = createWorkflow({ name: "sync-inventory", input: any<{ sku: string }>() })
  .parallel({ warehouse: ({ input }) => ({ sku: input.sku, stock: 12 }), shop: () => ({ listed: true }) })
  .sleep("cool-down", "1h")
  .step("report", () => "ok");

const storage = new MemoryStorage();
const engine = createEngine({ storage, workflows: [invoice, onboarding, sync] });
for (const customer of ["globex", "initech", "acme", "umbrella", "hooli"]) {
  await engine.enqueue("send-invoice", { customer, cents: 129_00 });
}
for (const email of ["ada@example.com", "grace@example.com"]) await engine.enqueue("onboard-user", { email });
for (const sku of ["SKU-1042", "SKU-2210", "SKU-0007"]) await engine.enqueue("sync-inventory", { sku });
const abandoned = await engine.enqueue("onboard-user", { email: "wayne@example.com" });
for (let i = 0; i < 200 && (await engine.tick()) > 0; i++) await new Promise((r) => setTimeout(r, 10));
await engine.cancel(abandoned.runId);
await engine.schedule("sync-inventory", { sku: "ALL" }, { cron: "0 3 * * *" }, { key: "nightly-sync" });
await engine.enqueue("send-invoice", { customer: "stark", cents: 42_00 });

const served = await serve(createDashboard({ storage, basePath: "/reflow" }), {
  hostname: "127.0.0.1",
  port: 0,
});
const profile = mkdtempSync(join(tmpdir(), "reflow-shot-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.REFLOW_CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1200, height: 720 },
  deviceScaleFactor: 1,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
});
try {
  const page = await browser.newPage();
  await page.goto(`${served.url}reflow/`);
  await page.screenshot({ path: join(root, "docs/dashboard.png") });
  const failed = (await storage.listRuns({ limit: 50, statuses: ["failed"] }))[0]!;
  await page.goto(`${served.url}reflow/runs/${failed.id}`);
  await page.screenshot({ path: join(root, "docs/dashboard-run.png"), fullPage: true });
  console.log("wrote docs/dashboard.png and docs/dashboard-run.png");
} finally {
  await browser.close();
  await served.close();
  await engine.stop();
  rmSync(profile, { recursive: true, force: true });
}
