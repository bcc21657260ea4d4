// The dashboard in a real browser: Playwright (its client runs in this test process, on whichever
// runtime runs the tests) drives Debian's headless Chromium against the dashboard served by this
// runtime's own server (Deno.serve, Bun.serve, or the node:http adapter on Node), guarded by the
// standalone token, with an engine that has the workflows running beside it for Resume.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import fs from "node:fs";
import type { BrowserContext, Page } from "playwright-core";
import { createEngine, createWorkflow, type StorageAdapter } from "../mod.ts";
import { createDashboard, requireToken } from "../dashboard.ts";
import { serve, type Served, serverName } from "../adapters/serve.ts";
import { runtimeName } from "./support/runtime.ts";
import { schema } from "./support/fixtures.ts";
import { seedStore, XSS } from "./support/operate_fixture.ts";

// Playwright probes /proc/sys/fs/binfmt_misc/WSLInterop when it loads, which Deno grants only under
// --allow-all; the suite runs with named permissions, so under Deno that probe answers "no" (not WSL).
if (runtimeName === "deno") {
  const existsSync = fs.existsSync;
  fs.existsSync = (path) => String(path).startsWith("/proc/sys/") ? false : existsSync(path);
}
const { chromium } = await import("playwright-core");

/**
 * Debian's Chromium (or REFLOW_CHROMIUM). .ci/run installs it and sets REFLOW_REQUIRE_BROWSER=1, so
 * there a missing browser fails; elsewhere (a machine without it, macOS and Windows CI legs) this
 * file is skipped.
 */
export const CHROMIUM = process.env.REFLOW_CHROMIUM ?? "/usr/bin/chromium";
const missing = fs.existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
if (missing && process.env.REFLOW_REQUIRE_BROWSER === "1") {
  throw new Error(`The browser tests need ${missing}`);
}

/** Headless, with everything that would reach the network or a profile outside the test switched off. */
export function launchChromium(userDataDir: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/** The SQLite driver the CLI uses on this runtime. */
async function openSqlite(path: string): Promise<StorageAdapter & { close(): Promise<void> }> {
  const { SQLiteStorage } = runtimeName === "bun"
    ? await import("../drivers/bun_sqlite.ts")
    : await import("../drivers/node_sqlite.ts");
  return new SQLiteStorage(path);
}

const orders = createWorkflow({ name: "orders", input: schema<{ orderId: number }>() })
  .step("charge", ({ input }) => ({ charged: input.orderId * 10 }));
const approval = createWorkflow({ name: "approval", input: schema<{ request: string }>() })
  .waitForEvent("approved");

describe(`dashboard in Chromium, served by ${serverName} on ${runtimeName}`, { skip: missing }, () => {
  const dir = fs.mkdtempSync(join(tmpdir(), "reflow-browser-"));
  const token = "t0k3n-for-the-browser-test";
  let storage: StorageAdapter & { close(): Promise<void> };
  let served: Served;
  let browser: BrowserContext;
  let page: Page;
  let base: string;
  const problems: string[] = [];

  before(async () => {
    storage = await openSqlite(join(dir, "app.db"));
    await seedStore(storage);
    const dashboard = requireToken(createDashboard({ storage, basePath: "/reflow" }), token);
    served = await serve(dashboard, { hostname: "127.0.0.1", port: 0 });
    base = `${served.url}reflow`;
    browser = await launchChromium(join(dir, "profile"));
    page = await browser.newPage();
    // A blocked inline script or style (CSP) or a script error would show up here.
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`${page.url()}: ${message.text()}`);
    });
    page.on("pageerror", (error) => problems.push(error.message));
  });

  after(async () => {
    await browser?.close();
    await served?.close();
    await storage?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Does `action` and waits for the page it navigates to. */
  const navigate = async (action: () => Promise<void>) => {
    await Promise.all([page.waitForNavigation({ waitUntil: "domcontentloaded" }), action()]);
  };
  const statusOf = (runId: string) => page.locator(`tr:has(a:text-is("${runId}")) .badge`).textContent();
  const listedIds = () => page.locator("tbody td.mono a").allTextContents();

  test("a request without the token is refused, and the printed URL lets the browser in", async () => {
    const refused = await page.goto(`${base}/`);
    assert.equal(refused?.status(), 401);
    assert.match(await page.textContent("body") ?? "", /Unauthorized/);
    const wrong = await page.goto(`${base}/?token=not-the-token`);
    assert.equal(wrong?.status(), 401);
    const admitted = await page.goto(`${base}/?token=${token}`);
    assert.equal(admitted?.status(), 200);
    assert.equal(new URL(page.url()).search, "", "the token is removed from the address bar");
    problems.length = 0; // the refusals above were logged as failed loads
  });

  test("the runs page lists runs of several statuses, newest first, with counts per status", async () => {
    await page.goto(`${base}/`);
    assert.deepEqual(await listedIds(), ["run-xss", "run-pending", "run-waiting", "run-failed", "run-done"]);
    assert.equal(await statusOf("run-failed"), "failed");
    assert.equal(await statusOf("run-waiting"), "waiting");
    assert.equal(await statusOf("run-pending"), "pending");
    assert.equal(await statusOf("run-done"), "completed");
    assert.equal(await page.locator('.tabs a[href*="status=completed"] span').textContent(), "2");
    assert.equal(await page.locator('.tabs a[href*="status=failed"] span').textContent(), "1");
  });

  test("filtering by status and by workflow shows only matching runs", async () => {
    await page.goto(`${base}/`);
    await page.selectOption('select[name="status"]', "failed");
    await navigate(() => page.click('button[type="submit"]'));
    assert.match(page.url(), /status=failed/);
    assert.deepEqual(await listedIds(), ["run-failed"]);
    await page.selectOption('select[name="status"]', "");
    await page.fill('input[name="workflow"]', "approval");
    await navigate(() => page.click('button[type="submit"]'));
    assert.match(page.url(), /workflow=approval/);
    assert.deepEqual(await listedIds(), ["run-waiting"]);
    await navigate(() => page.click('.tabs a[href*="status=completed"]'));
    assert.match(page.url(), /status=completed/);
    assert.deepEqual(await listedIds(), [], "approval has no completed run");
  });

  test("an XSS payload in a workflow name, unit name and output renders as text and never runs", async () => {
    await page.goto(`${base}/`);
    assert.ok((await page.textContent("tbody") ?? "").includes(`evil${XSS}`));
    await navigate(() => page.click('a:text-is("run-xss")'));
    assert.match(page.url(), /runs\/run-xss/);
    const body = await page.textContent("main") ?? "";
    assert.ok(body.includes(`echo${XSS}`), "the unit name as text");
    assert.ok(body.includes(JSON.stringify(XSS)), "the output as text");
    assert.equal(await page.evaluate(() => (globalThis as { __reflowXss?: number }).__reflowXss), undefined);
    assert.equal(await page.locator("main script, main img").count(), 0);
  });

  test("a failed run shows its error, and Resume makes it complete with an engine running", async () => {
    await page.goto(`${base}/runs/run-failed`);
    assert.match(await page.textContent(".error") ?? "", /DECLINED.*card declined/s);
    assert.equal(
      await page.locator("td .err").first().textContent(),
      "DECLINED Error: card declined (step charge)",
    );
    await navigate(() => page.click('button:text-is("Resume")'));
    assert.match(page.url(), /notice=/);
    assert.equal(await page.locator("h1 .badge").textContent(), "pending", "re-queued, no engine yet");
    const engine = createEngine({ storage, workflows: [orders, approval] });
    await engine.start(20);
    try {
      // The page refreshes itself while the run is unfinished: no reload here.
      await page.locator("h1 .badge", { hasText: "completed" }).waitFor({ timeout: 20_000 });
      assert.match(await page.textContent("main") ?? "", /"charged": 20/);
      assert.equal((await storage.getRun("run-failed"))?.status, "completed");
    } finally {
      await engine.stop();
    }
  });

  test("a waiting run shows its pending event; Cancel cancels it", async () => {
    await page.goto(`${base}/runs/run-waiting`);
    assert.equal(await page.locator("h1 .badge").textContent(), "waiting");
    const pendingEvent = page.locator('h2:text-is("Pending events") + .card td.mono');
    assert.deepEqual(await pendingEvent.allTextContents(), ["escalate"], "the event sent for a later wait");
    await navigate(() => page.click('button:text-is("Cancel run")'));
    assert.match(page.url(), /notice=/);
    assert.equal(await page.locator("h1 .badge").textContent(), "cancelled");
    assert.equal((await storage.getRun("run-waiting"))?.status, "cancelled");
    assert.equal(await page.locator('button:text-is("Cancel run")').count(), 0);
  });

  test("the pages ran their inline script and style under the CSP without errors", async () => {
    await page.goto(`${base}/schedules`);
    assert.equal(await page.locator("td.mono").first().textContent(), "nightly-report");
    const weight = await page.locator("header nav a.on").evaluate((e) => getComputedStyle(e).fontWeight);
    assert.equal(weight, "600", "the stylesheet applied");
    // The script rewrites relative times from data-t; a time far in the future reads "in …".
    await page.evaluate(() =>
      document.querySelector("time")?.setAttribute("data-t", String(Date.now() + 7_200_000))
    );
    await page.locator("time", { hasText: /^in 1h|^in 2h/ }).first().waitFor({ timeout: 5000 });
    assert.deepEqual(problems, []);
  });
});
