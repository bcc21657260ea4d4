// How fast the dashboard answers on a large SQLite store: fills a temp file with N runs (default
// 1,000,000; statuses and workflows mixed) straight through SQL, then times each page the
// dashboard serves (median of 5 requests through the handler, after one warm-up).
//
//   node scripts/dashboard_bench.ts [--runs 1000000]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { SQLiteStorage } from "../drivers/node_sqlite.ts";
import { createDashboard } from "../dashboard.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "1000000" } } });
const total = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), "reflow-dashboard-bench-"));
const path = join(dir, "big.db");
const storage = new SQLiteStorage(path);
await storage.initialize();

const statuses = [
  "completed",
  "completed",
  "completed",
  "completed",
  "failed",
  "cancelled",
  "waiting",
  "pending",
];
const workflows = ["send-invoice", "sync-inventory", "onboard-user", "nightly-report"];
const t0 = Date.UTC(2026, 0, 1);
const db = new DatabaseSync(path);
const insert = db.prepare(
  "INSERT INTO reflow_runs (id, workflow_name, status, input, output, error_message, created_at, updated_at, " +
    "due_at, claim_count) VALUES (?, ?, ?, '{}', ?, ?, ?, ?, ?, 1)",
);
const filling = performance.now();
db.exec("BEGIN");
for (let i = 0; i < total; i++) {
  const status = statuses[i % statuses.length]!;
  const at = t0 + i * 10;
  insert.run(
    `run-${String(i).padStart(8, "0")}`,
    workflows[(i >> 3) % workflows.length]!,
    status,
    status === "completed" ? "{}" : null,
    status === "failed" ? "boom" : null,
    at,
    at + 5,
    status === "pending" || status === "waiting" ? at : null,
  );
}
db.exec("COMMIT");
db.close();
console.log(
  `filled ${total.toLocaleString("en-US")} runs in ${((performance.now() - filling) / 1000).toFixed(1)} s`,
);

const dashboard = createDashboard({ storage });
const oldest = `${t0 + 10 * Math.floor(total / 2)}:run-${String(Math.floor(total / 2)).padStart(8, "0")}`;
const pages: [string, string][] = [
  ["runs, first page (with counts per status)", "/"],
  ["runs, status=failed", "/?status=failed"],
  ["runs, workflow=onboard-user", "/?workflow=onboard-user"],
  ["runs, workflow + status", "/?workflow=onboard-user&status=waiting"],
  ["runs, a page from the middle (cursor)", `/?before=${encodeURIComponent(oldest)}`],
  ["a run", `/runs/run-${String(total - 3).padStart(8, "0")}`],
  ["schedules", "/schedules"],
];
console.log(`\n| page (${total.toLocaleString("en-US")} runs) | median ms |\n| --- | ---: |`);
for (const [label, page] of pages) {
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const start = performance.now();
    const response = await dashboard(new Request(`http://bench${page}`));
    await response.text();
    if (response.status !== 200) throw new Error(`${page}: ${response.status}`);
    if (i > 0) times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  console.log(`| ${label} | ${times[2]!.toFixed(1)} |`);
}
await storage.close();
rmSync(dir, { recursive: true, force: true });
