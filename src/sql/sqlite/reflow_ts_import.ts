/**
 * The upgrade of a reflow-ts 0.7 database: its `workflow_*` tables are copied into Reflow's
 * tables inside the transaction that creates them, so runs in flight under reflow-ts continue
 * under Reflow. The original tables are left as they are, for the user to drop.
 *
 * What maps to what (reflow-ts keeps no run output, no run error and no lease expiry):
 * - runs keep their id, workflow, input, idempotency key and times. `pending` is due at its
 *   creation; `sleeping` at its wake time; `waiting` at its timeout, or at once when events are
 *   buffered for it; `running` keeps its lease, expiring a reflow-ts lease (30 s) after its last
 *   update, and is then reclaimed; finished runs keep their status.
 * - a `completed` run's output is its last step's output (undefined after a skipped step); a
 *   `failed` run's error is its failed step's message; a run with a `completed-early` step is
 *   completed with that step's output.
 * - steps: `completed-early` becomes `completed`; `pending` and `running` rows (an attempt
 *   in progress) are dropped, so the step runs again; the rest keep their status.
 * - events keep their `created_at` order; schedules of `interval_ms` become `{ every }`, of `cron`
 *   become `{ cron }`, with their next slot.
 * - values: `{"__reflowUndefined__":true}` and `{"__reflowDate__":"<ISO>"}` become Reflow's encoding.
 *
 * @module
 */

import { StorageError } from "../../errors.ts";
import { resolveRecurrence } from "../../schedule/recurrence.ts";
import { encodeValue } from "../../storage/codec.ts";
import type { SqlConnection, SqlParameter, SqlRow } from "../driver.ts";

/** The key in `reflow_meta` that records when the import ran (ms since the epoch). */
export const REFLOW_TS_IMPORTED_KEY = "reflow_ts_imported_at";

/** How long a reflow-ts run lease lasts by default: a `running` run is stale this long after its last update. */
const REFLOW_TS_LEASE_MS = 30_000;

const OPERATION = "initialize";

/**
 * Copies a reflow-ts database's runs, steps, events and schedules into Reflow's (empty, just
 * created) tables, on a connection inside the migration transaction. Does nothing when the
 * database has no `workflow_runs` table or was imported before.
 *
 * @param connection The migration's connection, inside `BEGIN IMMEDIATE`.
 * @param now The storage clock's time: the import's time, and when waiting runs with events are due.
 * @returns How many runs were imported.
 * @throws {StorageError} Kind `"schema"` when a row cannot be read (an unknown status, a value or a
 *   schedule Reflow cannot hold); the transaction then changes nothing.
 */
export async function importReflowTs(connection: SqlConnection, now: number): Promise<number> {
  const tables = new Set(
    (await query(
      connection,
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'workflow\\_%' ESCAPE '\\'",
    ))
      .map((row) => String(row.name)),
  );
  if (!tables.has("workflow_runs")) return 0;
  const [done] = await query(
    connection,
    "SELECT value FROM reflow_meta WHERE key = ?",
    REFLOW_TS_IMPORTED_KEY,
  );
  if (done !== undefined) return 0;

  const steps = tables.has("workflow_steps")
    ? await query(connection, "SELECT * FROM workflow_steps ORDER BY created_at, rowid")
    : [];
  const events = tables.has("workflow_events")
    ? await query(connection, "SELECT * FROM workflow_events ORDER BY created_at, rowid")
    : [];
  const stepsByRun = groupBy(steps, (step) => String(step.run_id));
  const runsWithEvents = new Set(events.map((event) => String(event.run_id)));

  const runs = await query(connection, "SELECT * FROM workflow_runs ORDER BY created_at, rowid");
  for (const run of runs) {
    const id = String(run.id);
    await importRun(connection, run, stepsByRun.get(id) ?? [], runsWithEvents.has(id), now);
  }
  for (const event of events) {
    await execute(
      connection,
      "INSERT INTO reflow_events (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
      String(event.run_id),
      String(event.event_name),
      converted(event.payload, `payload of event "${String(event.id)}"`),
      Number(event.created_at),
    );
  }
  if (tables.has("workflow_schedules")) {
    for (const schedule of await query(connection, "SELECT * FROM workflow_schedules ORDER BY key")) {
      await importSchedule(connection, schedule);
    }
  }
  await execute(
    connection,
    "INSERT INTO reflow_meta (key, value) VALUES (?, ?)",
    REFLOW_TS_IMPORTED_KEY,
    now,
  );
  return runs.length;
}

async function importRun(
  connection: SqlConnection,
  run: SqlRow,
  steps: readonly SqlRow[],
  hasEvents: boolean,
  now: number,
): Promise<void> {
  const id = String(run.id);
  const updatedAt = Number(run.updated_at);
  const wakeAt = run.wake_at == null ? null : Number(run.wake_at);
  const early = steps.find((step) => step.status === "completed-early");
  let status = String(run.status);
  if (early !== undefined && !FINISHED.has(status)) status = "completed"; // complete() was its last word
  const failedStep = steps.findLast((step) => step.status === "failed");
  const lastStep = early ?? steps.at(-1);

  let dueAt: number | null = null;
  let leaseId: string | null = null;
  let leaseMs: number | null = null;
  switch (status) {
    case "pending":
      dueAt = Number(run.created_at);
      break;
    case "sleeping":
      dueAt = wakeAt ?? updatedAt;
      break;
    case "waiting":
      // Claimed at once when events are buffered, so the wait takes them; else at its timeout.
      dueAt = hasEvents ? now : wakeAt;
      break;
    case "running":
      leaseId = run.lease_id == null ? `reflow-ts:${id}` : String(run.lease_id);
      leaseMs = REFLOW_TS_LEASE_MS;
      dueAt = updatedAt + REFLOW_TS_LEASE_MS;
      break;
    case "completed":
    case "failed":
    case "cancelled":
      break;
    default:
      throw unreadable(`run "${id}" has status "${status}", which reflow-ts 0.7 does not write`);
  }
  const output = status === "completed"
    ? lastStep !== undefined && (lastStep.status === "completed" || lastStep.status === "completed-early")
      ? converted(lastStep.output, `output of step "${String(lastStep.name)}"`)
      : encodeValue(undefined)
    : null;
  const failure = status === "failed"
    ? [
      null,
      "Error",
      failedStep?.error == null ? "The run failed under reflow-ts" : String(failedStep.error),
      failedStep === undefined ? null : String(failedStep.name),
    ]
    : [null, null, null, null];
  await execute(
    connection,
    "INSERT INTO reflow_runs (id, workflow_name, status, input, output, error_code, error_name, error_message, " +
      "error_step, idempotency_key, created_at, updated_at, due_at, lease_id, lease_ms, claim_count) " +
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    id,
    String(run.workflow),
    status,
    converted(run.input, `input of run "${id}"`),
    output,
    ...failure as SqlParameter[],
    run.idempotency_key == null ? null : String(run.idempotency_key),
    Number(run.created_at),
    updatedAt,
    dueAt,
    leaseId,
    leaseMs,
    // Claimed before, unless it never started: then its first claim emits runStart, as under reflow-ts.
    status === "pending" && steps.length === 0 ? 0 : 1,
  );
  for (const step of steps) {
    await importStep(connection, id, step, status === "sleeping" || status === "waiting" ? wakeAt : null);
  }
}

const FINISHED = new Set(["completed", "failed", "cancelled"]);

async function importStep(
  connection: SqlConnection,
  runId: string,
  step: SqlRow,
  parkedUntil: number | null,
) {
  const name = String(step.name);
  const status = String(step.status);
  const where = `step "${name}" of run "${runId}"`;
  let mapped: string;
  let output: string | null = null;
  let error: SqlParameter[] = [null, null, null, null];
  let dueAt: number | null = null;
  switch (status) {
    case "pending":
    case "running":
      return; // an attempt that was in progress: the step runs again
    case "completed":
    case "completed-early":
      mapped = "completed";
      output = converted(step.output, `output of ${where}`);
      break;
    case "skipped":
      mapped = "skipped";
      output = encodeValue(undefined);
      break;
    case "sleeping":
    case "waiting":
      mapped = status;
      dueAt = parkedUntil;
      break;
    case "failed":
      mapped = "failed";
      error = [
        null,
        "Error",
        step.error == null ? "The step failed under reflow-ts" : String(step.error),
        name,
      ];
      break;
    default:
      throw unreadable(`${where} has status "${status}", which reflow-ts 0.7 does not write`);
  }
  await execute(
    connection,
    "INSERT INTO reflow_steps (run_id, step_name, status, output, error_code, error_name, error_message, " +
      "error_step, attempts, due_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    runId,
    name,
    mapped,
    output,
    ...error,
    // A sleep or a wait counts one attempt in Reflow; older reflow-ts rows may have no count.
    Math.max(Number(step.attempts ?? 0), mapped === "skipped" ? 0 : 1),
    dueAt,
    Number(step.updated_at),
  );
}

async function importSchedule(connection: SqlConnection, schedule: SqlRow): Promise<void> {
  const key = String(schedule.key);
  let text: string;
  try {
    text = resolveRecurrence(
      schedule.cron == null ? Number(schedule.interval_ms) : { cron: String(schedule.cron) },
    ).text;
  } catch (error) {
    throw unreadable(
      `schedule "${key}" has a recurrence Reflow cannot run: ${(error as Error).message}`,
      error,
    );
  }
  await execute(
    connection,
    "INSERT INTO reflow_schedules (key, workflow_name, input, recurrence, next_run_at, created_at, updated_at) " +
      "VALUES (?, ?, ?, ?, ?, ?, ?)",
    key,
    String(schedule.workflow),
    converted(schedule.input, `input of schedule "${key}"`),
    text,
    Number(schedule.next_run_at),
    Number(schedule.created_at),
    Number(schedule.updated_at),
  );
}

/** A reflow-ts value (JSON text with its own tags, or NULL for undefined) in Reflow's encoding. */
function converted(text: unknown, what: string): string {
  if (text == null) return encodeValue(undefined);
  try {
    return encodeValue(untagged(JSON.parse(String(text))));
  } catch (error) {
    throw unreadable(`the ${what} cannot be read: ${(error as Error).message}`, error);
  }
}

/** Replaces reflow-ts's undefined and Date tags by the values they stand for. */
function untagged(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(untagged);
  if (typeof value !== "object" || value === null) return value;
  const keys = Object.keys(value);
  const record = value as Record<string, unknown>;
  if (keys.length === 1 && record.__reflowUndefined__ === true) return undefined;
  if (keys.length === 1 && typeof record.__reflowDate__ === "string") return new Date(record.__reflowDate__);
  // Null prototype: a "__proto__" key stays a key.
  const plain: Record<string, unknown> = Object.create(null);
  for (const key of keys) plain[key] = untagged(record[key]);
  return plain;
}

function groupBy(rows: readonly SqlRow[], keyOf: (row: SqlRow) => string): Map<string, SqlRow[]> {
  const groups = new Map<string, SqlRow[]>();
  for (const row of rows) {
    const key = keyOf(row);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, [row]);
    else group.push(row);
  }
  return groups;
}

function unreadable(why: string, cause?: unknown): StorageError {
  return new StorageError(OPERATION, `cannot import the reflow-ts database: ${why} (nothing was changed)`, {
    kind: "schema",
    ...(cause === undefined ? {} : { cause }),
  });
}

function query(connection: SqlConnection, sql: string, ...params: SqlParameter[]): Promise<SqlRow[]> {
  return connection.query({ sql, params });
}

async function execute(connection: SqlConnection, sql: string, ...params: SqlParameter[]): Promise<void> {
  await connection.execute({ sql, params });
}
