// A reflow-ts 0.7 database built from the schema facts in shared/reference/reflow-ts-0.7.md: its
// four workflow_* tables and indexes, and runs in every state an upgrade must carry over.
import type { RawHandle } from "./sqlite_subjects.ts";

const SCHEMA = [
  `CREATE TABLE workflow_runs (id TEXT PRIMARY KEY, workflow TEXT NOT NULL, input TEXT NOT NULL,
    idempotency_key TEXT, lease_id TEXT, status TEXT NOT NULL, wake_at INTEGER,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`,
  `CREATE TABLE workflow_steps (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, name TEXT NOT NULL,
    status TEXT NOT NULL, output TEXT, error TEXT, attempts INTEGER DEFAULT 0,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`,
  `CREATE TABLE workflow_events (id TEXT PRIMARY KEY, run_id TEXT NOT NULL, event_name TEXT NOT NULL,
    payload TEXT, created_at INTEGER NOT NULL)`,
  `CREATE TABLE workflow_schedules (key TEXT PRIMARY KEY, workflow TEXT NOT NULL, input TEXT NOT NULL,
    interval_ms INTEGER, cron TEXT, next_run_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL)`,
  "CREATE INDEX idx_runs_status ON workflow_runs (status, workflow)",
  "CREATE INDEX idx_runs_wake ON workflow_runs (status, wake_at)",
  "CREATE INDEX idx_steps_run_id ON workflow_steps (run_id)",
  "CREATE INDEX idx_events_run_name ON workflow_events (run_id, event_name, created_at)",
  "CREATE INDEX idx_schedules_due ON workflow_schedules (next_run_at)",
  `CREATE UNIQUE INDEX idx_runs_workflow_idempotency ON workflow_runs (workflow, idempotency_key)
    WHERE idempotency_key IS NOT NULL`,
];

/** reflow-ts's JSON encoding: undefined and Date get tag objects. */
export function reflowTsJson(value: unknown): string {
  return JSON.stringify(tagged(value));
}

function tagged(value: unknown): unknown {
  if (value === undefined) return { __reflowUndefined__: true };
  if (value instanceof Date) return { __reflowDate__: value.toISOString() };
  if (Array.isArray(value)) return value.map(tagged);
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, tagged(inner)]));
  }
  return value;
}

/** The fixture's runs by the state they were left in under reflow-ts. */
export const FIXTURE_RUNS = {
  pending: "rts-pending",
  running: "rts-running",
  sleeping: "rts-sleeping",
  waiting: "rts-waiting",
  early: "rts-early",
  completed: "rts-completed",
  failed: "rts-failed",
  cancelled: "rts-cancelled",
} as const;

/** When the fixture's orders were placed: a Date that must come back as a Date. */
export const PLACED_AT = new Date("2026-11-30T12:00:00.000Z");

/**
 * Writes the fixture into an empty database through the library's own handle. The workflow
 * `order` is reserve → sleep `cool-off` → waitForEvent `approved` → ship; `gate` is `check`,
 * which called complete().
 */
export function writeReflowTsFixture(handle: RawHandle, now: number): void {
  for (const sql of SCHEMA) handle.prepare(sql).run();
  const run = (
    id: string,
    status: string,
    wakeAt: number | null,
    extra: { key?: string; lease?: string } = {},
  ) =>
    handle.prepare(
      "INSERT INTO workflow_runs (id, workflow, input, idempotency_key, lease_id, status, wake_at, created_at, updated_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ).run(
      id,
      id === FIXTURE_RUNS.early ? "gate" : "order",
      reflowTsJson({ id, placedAt: PLACED_AT, note: undefined }),
      extra.key ?? null,
      extra.lease ?? null,
      status,
      wakeAt,
      now - 3_600_000,
      // A running run last updated ten minutes ago: its reflow-ts lease (30 s) is long dead.
      now - 600_000,
    );
  let stepSeq = 0;
  const step = (runId: string, name: string, status: string, output: unknown, error: string | null = null) =>
    handle.prepare(
      "INSERT INTO workflow_steps (id, run_id, name, status, output, error, attempts, created_at, updated_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ).run(
      `step-${++stepSeq}`,
      runId,
      name,
      status,
      output === null ? null : reflowTsJson(output),
      error,
      1,
      now - 3_000_000 + stepSeq,
      now - 3_000_000 + stepSeq,
    );
  const reserved = (id: string) => ({ reserved: id, at: PLACED_AT });

  run(FIXTURE_RUNS.pending, "pending", null, { key: "order-42" });

  run(FIXTURE_RUNS.running, "running", null, { lease: "lease-of-a-dead-worker" });
  step(FIXTURE_RUNS.running, "reserve", "completed", reserved(FIXTURE_RUNS.running));
  step(FIXTURE_RUNS.running, "cool-off", "running", null);

  run(FIXTURE_RUNS.sleeping, "sleeping", now - 1000);
  step(FIXTURE_RUNS.sleeping, "reserve", "completed", reserved(FIXTURE_RUNS.sleeping));
  step(FIXTURE_RUNS.sleeping, "cool-off", "sleeping", null);

  run(FIXTURE_RUNS.waiting, "waiting", null);
  step(FIXTURE_RUNS.waiting, "reserve", "completed", reserved(FIXTURE_RUNS.waiting));
  step(FIXTURE_RUNS.waiting, "cool-off", "completed", undefined);
  step(FIXTURE_RUNS.waiting, "approved", "waiting", null);
  // Written newest first: the older event must still be the one the wait takes.
  const event = (id: string, payload: unknown, createdAt: number) =>
    handle.prepare(
      "INSERT INTO workflow_events (id, run_id, event_name, payload, created_at) VALUES (?, ?, ?, ?, ?)",
    ).run(id, FIXTURE_RUNS.waiting, "approved", reflowTsJson(payload), createdAt);
  event("ev-2", { by: "grace" }, now - 1000);
  event("ev-1", { by: "ada" }, now - 2000);

  run(FIXTURE_RUNS.early, "completed", null);
  step(FIXTURE_RUNS.early, "check", "completed-early", { skipped: true, at: PLACED_AT });

  run(FIXTURE_RUNS.completed, "completed", null);
  step(FIXTURE_RUNS.completed, "reserve", "completed", reserved(FIXTURE_RUNS.completed));
  step(FIXTURE_RUNS.completed, "cool-off", "completed", undefined);
  step(FIXTURE_RUNS.completed, "approved", "completed", { by: "linus" });
  step(FIXTURE_RUNS.completed, "ship", "completed", { shipped: FIXTURE_RUNS.completed, by: "linus" });

  run(FIXTURE_RUNS.failed, "failed", null);
  step(FIXTURE_RUNS.failed, "reserve", "failed", null, "card declined");

  run(FIXTURE_RUNS.cancelled, "cancelled", null);

  const schedule = (key: string, intervalMs: number | null, cron: string | null, nextRunAt: number) =>
    handle.prepare(
      "INSERT INTO workflow_schedules (key, workflow, input, interval_ms, cron, next_run_at, created_at, updated_at) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ).run(
      key,
      "order",
      reflowTsJson({ id: key, placedAt: PLACED_AT }),
      intervalMs,
      cron,
      nextRunAt,
      now,
      now,
    );
  schedule("hourly-report", 3_600_000, null, now + 3_600_000);
  schedule("nightly-report", null, "0 3 * * *", now + 7_200_000);
}
