/**
 * The PostgreSQL dialect. Transactions run under READ COMMITTED, where other writers interleave,
 * so nothing relies on a read staying true until the write after it:
 *
 * - a claim is one statement: the due runs are locked with `FOR UPDATE SKIP LOCKED` (a run
 *   another claimer holds locked is passed over, not waited for) and updated with their leases;
 * - a schedule slot and an upsert are decided on the schedule's row read `FOR UPDATE`;
 * - an event delivery and a wait both lock the run's row first, so one of them always sees the
 *   other's commit: the wait finds the event, or the delivery finds the run waiting and wakes it;
 * - migrations take a transaction-scoped advisory lock as their first statement.
 *
 * Every statement is a round trip to the server, `BEGIN` and `COMMIT` included, so what can be one
 * statement is: a claim, an enqueue with its wake-up, and a whole group of advances (each run's
 * lease-fenced update and its step's upsert, for every run of the group, and the wake-up when one
 * of them released a run due now), which is atomic without a transaction around it.
 *
 * Encoded values and errors' texts travel as `bytea` (UTF-8), because `text` cannot hold NUL.
 *
 * @module
 */

import type { Advance, ClaimedRow, Dialect, Encode, WaitFinding } from "../dialect.ts";
import { createdNames, scheduleParams, statement, stepParams } from "../dialect.ts";
import type { SqlConnection, SqlParameter, SqlStatement } from "../driver.ts";
import { MIGRATIONS } from "./schema.ts";

const utf8 = new TextEncoder();
/** Encoded values are stored as their UTF-8 bytes. */
const bytes: Encode = (value) => value === null ? null : utf8.encode(value);

const RUN_COLUMNS =
  "id, workflow_name, workflow_version, status, input, output, error_code, error_name, error_message, " +
  "error_step, idempotency_key, created_at, updated_at, due_at, lease_id, claim_count";
const STEP_COLUMNS = "run_id, step_name, status, output, error_code, error_name, error_message, " +
  "error_step, attempts, due_at, updated_at";
const SCHEDULE_COLUMNS = "key, workflow_name, input, recurrence, next_run_at, last_run_at, last_run_id, " +
  "created_at, updated_at";
const CLAIMABLE = "status IN ('pending', 'running', 'sleeping', 'waiting')";
const UNFINISHED = "status NOT IN ('completed', 'failed', 'cancelled')";
/** A JSON array parameter as a set of text values. */
const jsonSet = (n: number) => `(SELECT json_array_elements_text($${n}::json))`;
/** The server's clock in ms since the epoch. */
const SERVER_NOW = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
/** The tables and indexes the migrations create, whose presence initialize() checks. */
const SCHEMA_NAMES = MIGRATIONS.flatMap(createdNames);
/** The notification channel of {@linkcode postgresDialect.wake}. */
const CHANNEL = "reflow_wake";

// recoveries counts the claims in a row that took the run from a worker whose lease expired: the
// CTE reads the status from before the update. The = ANY on the claimed seqs has the update find
// them through the primary key whatever the planner thinks of the table's size (a hash join over a
// scan of every run is what it picks for a table it believes small, which is wrong once it grew).
const CLAIM = "WITH picked AS (" +
  `SELECT seq, due_at, status FROM reflow_runs WHERE ${CLAIMABLE} AND due_at <= $1::bigint ` +
  `AND workflow_name IN ${jsonSet(2)} ORDER BY due_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED), ` +
  "numbered AS (SELECT seq, status, row_number() OVER (ORDER BY due_at, seq) AS n FROM picked) " +
  "UPDATE reflow_runs r SET status = 'running', lease_id = $4::json ->> (numbered.n - 1)::int, " +
  "due_at = $5::bigint, lease_ms = $6::bigint, claim_count = r.claim_count + 1, " +
  "recoveries = CASE WHEN numbered.status = 'running' THEN r.recoveries + 1 ELSE 0 END, updated_at = $1::bigint " +
  "FROM numbered WHERE r.seq = numbered.seq AND r.seq = ANY (ARRAY(SELECT seq FROM picked)) " +
  `RETURNING numbered.n AS claim_order, r.recoveries, ${
    RUN_COLUMNS.split(", ").map((column) => `r.${column}`).join(", ")
  }`;

const STEP_TYPES = [
  "text",
  "text",
  "text",
  "bytea",
  "bytea",
  "bytea",
  "bytea",
  "bytea",
  "integer",
  "bigint",
  "bigint",
] as const;
const STEP_VALUES = STEP_TYPES.map((type, i) => `$${i + 1}::${type}`).join(", ");
const STEP_UPSERT = " ON CONFLICT (run_id, step_name) DO UPDATE SET status = excluded.status, " +
  "output = excluded.output, error_code = excluded.error_code, error_name = excluded.error_name, " +
  "error_message = excluded.error_message, error_step = excluded.error_step, " +
  "attempts = excluded.attempts, due_at = excluded.due_at, updated_at = excluded.updated_at";
const UPSERT_STEP = `INSERT INTO reflow_steps (${STEP_COLUMNS}) VALUES (${STEP_VALUES})${STEP_UPSERT}`;
// FOR SHARE: the run cannot be claimed by another worker (or finished) until this write commits.
const UPSERT_STEP_IF_RUN = `INSERT INTO reflow_steps (${STEP_COLUMNS}) SELECT ${STEP_VALUES} ` +
  `WHERE EXISTS (SELECT 1 FROM reflow_runs WHERE id = $1 FOR SHARE)${STEP_UPSERT}`;
const UPSERT_STEP_IF_LEASED = `INSERT INTO reflow_steps (${STEP_COLUMNS}) SELECT ${STEP_VALUES} ` +
  "WHERE EXISTS (SELECT 1 FROM reflow_runs WHERE id = $1 AND status = 'running' AND lease_id = $12 " +
  `FOR SHARE)${STEP_UPSERT}`;

const SCHEDULE_VALUES = "$1, $2, $3::bytea, $4::bytea, $5::bigint, $6::bigint, $7, $8::bigint, $9::bigint";
const SCHEDULE_INSERT = `INSERT INTO reflow_schedules (${SCHEDULE_COLUMNS}) VALUES (${SCHEDULE_VALUES})`;

/** Reflow's SQL for PostgreSQL. */
export const postgresDialect: Dialect = {
  name: "postgres",
  migrations: MIGRATIONS,
  begin: statement("BEGIN"),
  commit: statement("COMMIT"),
  rollback: statement("ROLLBACK"),
  // Per schema, so that Reflow installations in different schemas of one database do not queue.
  migrationLock: statement(
    "SELECT pg_advisory_xact_lock(hashtext('reflow_migrations:' || current_schema()))::text AS locked",
  ),
  // A lock not had within busyTimeoutMs fails with lock_not_available, which is retried as busy.
  // Our transactions never wait on their client between statements, so one idle for as long (at
  // least 1 s) has lost its client, e.g. a host cut off from the network: the server then ends the
  // session and frees its row locks, rather than keep them until TCP gives up, many minutes later,
  // while other hosts cannot reclaim the runs they cover.
  connectionSetup: ({ busyTimeoutMs }) => [
    statement(`SET lock_timeout = ${busyTimeoutMs}`),
    statement(`SET idle_in_transaction_session_timeout = ${Math.max(busyTimeoutMs, 1000)}`),
  ],
  // The server manages its own write-ahead log.
  checkpoint: () => Promise.resolve(true),
  databaseSetup: [],
  // pg_class under the statement's snapshot, not to_regclass(): after the advisory lock, the
  // session's catalog cache may not yet know a table another migrator has just committed.
  async readSchemaState(connection) {
    const rows = await connection.query(
      statement(
        "SELECT c.relname::text AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n " +
          "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relname IN " + jsonSet(1),
        JSON.stringify(SCHEMA_NAMES),
      ),
    );
    const present = new Set(rows.map((row) => row.name as string));
    if (!present.has("reflow_meta")) return { present, version: undefined };
    const [row] = await connection.query(
      statement("SELECT value FROM reflow_meta WHERE key = 'schema_version'"),
    );
    return { present, version: row === undefined ? null : row.value! };
  },
  writeSchemaVersion: (version) =>
    statement(
      "INSERT INTO reflow_meta (key, value) VALUES ('schema_version', $1::bigint) " +
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      version,
    ),
  serverClock: statement(`SELECT ${SERVER_NOW} AS now`),
  wake: statement(`SELECT pg_notify('${CHANNEL}', '')::text AS sent`),
  listen: statement(`LISTEN ${CHANNEL}`),

  // The wake-up rides on the insert: one round trip, and a NOTIFY only when a run was stored (the
  // SELECT's one row is the change count).
  insertRun: ({ id, workflowName, workflowVersion, input, idempotencyKey, createdAt }) =>
    statement(
      "WITH stored AS (INSERT INTO reflow_runs (id, workflow_name, workflow_version, status, input, " +
        "idempotency_key, created_at, updated_at, due_at, claim_count) VALUES ($1, $2, $6, 'pending', " +
        "$3::bytea, $4, $5::bigint, $5::bigint, $5::bigint, 0) ON CONFLICT (workflow_name, idempotency_key) " +
        `DO NOTHING RETURNING 1) SELECT pg_notify('${CHANNEL}', '')::text AS sent FROM stored`,
      id,
      workflowName,
      bytes(input),
      idempotencyKey,
      createdAt,
      workflowVersion ?? null,
    ),
  selectRunByKey: (workflowName, key) =>
    statement(
      `SELECT ${RUN_COLUMNS} FROM reflow_runs WHERE workflow_name = $1 AND idempotency_key = $2`,
      workflowName,
      key,
    ),
  selectRun: (runId) => statement(`SELECT ${RUN_COLUMNS} FROM reflow_runs WHERE id = $1`, runId),
  selectSteps: (runId) =>
    statement(`SELECT ${STEP_COLUMNS} FROM reflow_steps WHERE run_id = $1 ORDER BY seq`, runId),
  selectStepsOfRuns: (runIds) =>
    statement(
      `SELECT ${STEP_COLUMNS} FROM reflow_steps WHERE run_id IN ${jsonSet(1)} ORDER BY seq`,
      JSON.stringify(runIds),
    ),
  async claim(connection, plan): Promise<ClaimedRow[]> {
    const { names, limit, now, expiry, leaseMs, newLeaseId } = plan;
    const leaseIds = Array.from({ length: limit }, () => newLeaseId());
    const rows = await connection.query(
      statement(CLAIM, now, JSON.stringify(names), limit, JSON.stringify(leaseIds), expiry, leaseMs),
    );
    // RETURNING has no order of its own.
    rows.sort((a, b) => Number(a.claim_order) - Number(b.claim_order));
    return rows.map((row) => ({ row, leaseId: row.lease_id as string }));
  },
  heartbeatRun: (runId, leaseId, expiry, now) =>
    statement(
      "UPDATE reflow_runs SET due_at = coalesce($1::bigint, $2::bigint + lease_ms) " +
        "WHERE id = $3 AND status = 'running' AND lease_id = $4",
      expiry,
      now,
      runId,
      leaseId,
    ),
  expireInstanceLeases: (prefix, now) =>
    statement(
      "UPDATE reflow_runs SET due_at = $1::bigint WHERE status = 'running' " +
        "AND left(lease_id, $2::integer) = $3 AND due_at > $1::bigint",
      now,
      prefix.length,
      prefix,
    ),
  selectLeaseHeld: (runId, leaseId) =>
    statement(
      "SELECT 1 AS held FROM reflow_runs WHERE id = $1 AND status = 'running' AND lease_id = $2",
      runId,
      leaseId,
    ),
  renewRun: (runId, leaseId, expiry, now) =>
    statement(
      "UPDATE reflow_runs SET due_at = coalesce($1::bigint, $2::bigint + lease_ms), updated_at = $2::bigint, " +
        "recoveries = 0 WHERE id = $3 AND status = 'running' AND lease_id = $4",
      expiry,
      now,
      runId,
      leaseId,
    ),
  parkRun: ({ runId, leaseId, status, now, dueAt, output, error }) =>
    statement(
      "UPDATE reflow_runs SET status = $1, due_at = $2::bigint, lease_id = NULL, updated_at = $3::bigint, " +
        "output = CASE WHEN $4::boolean THEN $5::bytea ELSE output END, " +
        "error_code = CASE WHEN $6::boolean THEN $7::bytea ELSE error_code END, " +
        "error_name = CASE WHEN $6::boolean THEN $8::bytea ELSE error_name END, " +
        "error_message = CASE WHEN $6::boolean THEN $9::bytea ELSE error_message END, " +
        "error_step = CASE WHEN $6::boolean THEN $10::bytea ELSE error_step END " +
        "WHERE id = $11 AND status = 'running' AND lease_id = $12",
      status,
      dueAt,
      now,
      output !== undefined,
      bytes(output ?? null),
      error !== undefined,
      bytes(error?.code ?? null),
      bytes(error?.name ?? null),
      bytes(error?.message ?? null),
      bytes(error?.stepName ?? null),
      runId,
      leaseId,
    ),
  // The CASE reads the row's values from before the update, as in SQLite's statement.
  updateRunStatus: (runId, status, now) =>
    statement(
      "UPDATE reflow_runs SET status = $1, lease_id = NULL, updated_at = $2::bigint, due_at = CASE " +
        "WHEN $1 IN ('completed', 'failed', 'cancelled', 'parked') THEN NULL " +
        "WHEN $1 = 'sleeping' AND status <> 'running' THEN coalesce(due_at, $2::bigint) " +
        "WHEN $1 = 'waiting' THEN CASE WHEN status = 'running' THEN NULL ELSE due_at END " +
        `ELSE $2::bigint END WHERE id = $3 AND ${UNFINISHED}`,
      status,
      now,
      runId,
    ),
  advanceRuns: async (connection, advances) => {
    const held: boolean[] = [];
    for (const batch of advanceBatches(advances)) held.push(...await advanceBatch(connection, batch));
    return held;
  },
  advancesAtomic: (advances) => advanceBatches(advances).length === 1,
  claimAtomic: true,
  upsertStep: (step) => statement(UPSERT_STEP, ...stepParams(step, bytes)),
  upsertStepIfRun: (step) => statement(UPSERT_STEP_IF_RUN, ...stepParams(step, bytes)),
  upsertStepIfLeased: (step, leaseId) =>
    statement(UPSERT_STEP_IF_LEASED, ...stepParams(step, bytes), leaseId),
  async deliverEvent(connection, runId, { name, payload, createdAt }) {
    const [run] = await connection.query(
      statement(`SELECT 1 AS found FROM reflow_runs WHERE id = $1 AND ${UNFINISHED} FOR UPDATE`, runId),
    );
    if (run === undefined) return false;
    // Only an event a wait can still consume: the wait of that name is not over, and no event of
    // that name is stored (a wait takes one). Decided under the run's lock, which waits also take.
    const inserted = await connection.execute(
      statement(
        "INSERT INTO reflow_events (run_id, name, payload, created_at) " +
          "SELECT $1::text, $2::text, $3::bytea, $4::bigint WHERE NOT EXISTS (SELECT 1 FROM reflow_steps " +
          "WHERE run_id = $1 AND step_name = $2 AND status <> 'waiting') AND NOT EXISTS " +
          "(SELECT 1 FROM reflow_events WHERE run_id = $1 AND name = $2)",
        runId,
        name,
        bytes(payload),
        createdAt,
      ),
    );
    if (inserted.changes !== 1) return false;
    await connection.execute(
      statement(
        "UPDATE reflow_runs SET due_at = least(coalesce(due_at, $1::bigint), $1::bigint), " +
          "updated_at = greatest(updated_at, $1::bigint) WHERE id = $2 AND status = 'waiting' AND EXISTS " +
          "(SELECT 1 FROM reflow_steps WHERE run_id = $2 AND step_name = $3 AND status = 'waiting')",
        createdAt,
        runId,
        name,
      ),
    );
    return true;
  },
  async findWait(connection, runId, leaseId, name): Promise<WaitFinding> {
    const [run] = await connection.query(
      statement(
        "SELECT 1 AS held FROM reflow_runs WHERE id = $1 AND status = 'running' AND lease_id = $2 FOR UPDATE",
        runId,
        leaseId,
      ),
    );
    if (run === undefined) return { held: false };
    // A statement of its own, after the lock: it sees every delivery committed before the lock was had.
    const [event] = await connection.query(
      statement(
        "SELECT seq, payload FROM reflow_events WHERE run_id = $1 AND name = $2 ORDER BY seq LIMIT 1",
        runId,
        name,
      ),
    );
    return {
      held: true,
      event: event === undefined ? null : { seq: Number(event.seq), payload: event.payload! },
    };
  },
  deleteEvent: (seq) => statement("DELETE FROM reflow_events WHERE seq = $1::bigint", seq),
  // A finished run's events stay until it is purged or re-queued, but no wait will take them.
  selectEvents: (runId) =>
    statement(
      "SELECT name, payload, created_at FROM reflow_events WHERE run_id = $1 AND EXISTS " +
        `(SELECT 1 FROM reflow_runs WHERE id = $1 AND ${UNFINISHED}) ORDER BY seq`,
      runId,
    ),
  selectRunsPage({ statuses = [], workflowName, limit, before, beforeId }) {
    const params: SqlParameter[] = [];
    const next = (value: SqlParameter) => `$${params.push(value)}`;
    const arms = (statuses.length === 0 ? [undefined] : statuses).map((status) => {
      const terms: string[] = [];
      if (status !== undefined) terms.push(`status = ${next(status)}`);
      if (workflowName !== undefined) terms.push(`workflow_name = ${next(workflowName)}`);
      if (before !== undefined && beforeId === undefined) terms.push(`created_at < ${next(before)}::bigint`);
      if (before !== undefined && beforeId !== undefined) {
        terms.push(`(created_at, id) < (${next(before)}::bigint, ${next(beforeId)})`);
      }
      const where = terms.length === 0 ? "" : ` WHERE ${terms.join(" AND ")}`;
      return `SELECT ${RUN_COLUMNS} FROM reflow_runs${where}`;
    });
    const sql = `${arms.join(" UNION ALL ")} ORDER BY created_at DESC, id DESC LIMIT ${next(limit)}`;
    return statement(sql, ...params);
  },
  // One capped count per status, each walking the (status, created_at, id) index.
  countRuns(statuses, cap) {
    const params: SqlParameter[] = [];
    const next = (value: SqlParameter) => `$${params.push(value)}`;
    const arms = statuses.map((status) =>
      `SELECT ${next(status)}::text AS status, (SELECT count(*) FROM (SELECT 1 FROM reflow_runs ` +
      `WHERE status = ${next(status)} LIMIT ${next(cap)}) capped) AS n`
    );
    return statement(arms.join(" UNION ALL "), ...params);
  },
  requeueRun: (runId, now) =>
    statement(
      "UPDATE reflow_runs SET status = 'pending', due_at = $1::bigint, updated_at = $1::bigint, " +
        "output = NULL, error_code = NULL, error_name = NULL, error_message = NULL, error_step = NULL, " +
        "lease_id = NULL WHERE id = $2 AND status IN ('failed', 'cancelled', 'parked')",
      now,
      runId,
    ),
  deleteFailedSteps: (runId) =>
    statement("DELETE FROM reflow_steps WHERE run_id = $1 AND status = 'failed'", runId),
  // A parked run keeps its events for when it continues.
  deleteEventsOfFinishedRun: (runId) =>
    statement(
      "DELETE FROM reflow_events WHERE run_id = $1 AND EXISTS " +
        "(SELECT 1 FROM reflow_runs WHERE id = $1 AND status IN ('failed', 'cancelled'))",
      runId,
    ),
  updateRunVersion: (runId, leaseId, version) =>
    statement(
      "UPDATE reflow_runs SET workflow_version = $1 WHERE id = $2 AND status = 'running' AND lease_id = $3",
      version,
      runId,
      leaseId,
    ),
  insertWorkflowVersion: ({ workflowName, version, shape, createdAt }) =>
    statement(
      "INSERT INTO reflow_workflow_versions (workflow_name, version, shape, created_at) " +
        "VALUES ($1, $2, $3::bytea, $4::bigint) ON CONFLICT DO NOTHING",
      workflowName,
      version,
      bytes(shape),
      createdAt,
    ),
  selectWorkflowVersions: () =>
    statement(
      "SELECT workflow_name, version, shape, created_at FROM reflow_workflow_versions " +
        "ORDER BY workflow_name, version",
    ),
  selectPurgeable: ({ finishedBefore, statuses, limit }) =>
    statement(
      "SELECT seq, id FROM reflow_runs WHERE status IN " + jsonSet(1) +
        " AND created_at < $2::bigint AND updated_at < $2::bigint ORDER BY created_at, id LIMIT $3",
      JSON.stringify(statuses),
      finishedBefore,
      limit,
    ),
  deleteStepsOfRuns: (runIds) =>
    statement(`DELETE FROM reflow_steps WHERE run_id IN ${jsonSet(1)}`, JSON.stringify(runIds)),
  deleteEventsOfRuns: (runIds) =>
    statement(`DELETE FROM reflow_events WHERE run_id IN ${jsonSet(1)}`, JSON.stringify(runIds)),
  deleteRuns: (seqs) =>
    statement(
      "DELETE FROM reflow_runs WHERE seq IN (SELECT v::bigint FROM json_array_elements_text($1::json) v)",
      JSON.stringify(seqs),
    ),
  selectSchedule: (key) => statement(`SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules WHERE key = $1`, key),
  lockSchedule: (key) =>
    statement(`SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules WHERE key = $1 FOR UPDATE`, key),
  selectSchedules: () => statement(`SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules ORDER BY key`),
  selectDueSchedules: (names, now, limit) =>
    statement(
      `SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules WHERE next_run_at <= $1::bigint ` +
        `AND workflow_name IN ${jsonSet(2)} ORDER BY next_run_at, key LIMIT $3`,
      now,
      JSON.stringify(names),
      limit,
    ),
  insertSchedule: (schedule) =>
    statement(`${SCHEDULE_INSERT} ON CONFLICT (key) DO NOTHING`, ...scheduleParams(schedule, bytes)),
  upsertSchedule: (schedule) =>
    statement(
      `${SCHEDULE_INSERT} ON CONFLICT (key) DO UPDATE SET workflow_name = excluded.workflow_name, ` +
        "input = excluded.input, recurrence = excluded.recurrence, next_run_at = excluded.next_run_at, " +
        "last_run_at = excluded.last_run_at, last_run_id = excluded.last_run_id, " +
        "created_at = excluded.created_at, updated_at = excluded.updated_at",
      ...scheduleParams(schedule, bytes),
    ),
  deleteSchedule: (key) => statement("DELETE FROM reflow_schedules WHERE key = $1", key),
};

/** The most advances one statement carries (24 parameters each, of the 65,535 a statement may have). */
const MAX_BATCH = 1_024;

/**
 * Splits a group of advances into batches of one statement each, in order: a run's second advance
 * in a group starts a new batch, since one statement cannot update a row twice, and the second must
 * see the first's effect (as it would one statement after the other).
 */
function advanceBatches(advances: readonly Advance[]): Advance[][] {
  // advancesAtomic() and advanceRuns() ask for the same group's batches, on every step commit.
  const known = batchesOfGroup.get(advances);
  if (known !== undefined) return known;
  const batches: Advance[][] = [[]];
  let runs = new Set<string>();
  for (const advance of advances) {
    if (runs.has(advance.move.runId) || batches.at(-1)!.length === MAX_BATCH) {
      batches.push([]);
      runs = new Set();
    }
    runs.add(advance.move.runId);
    batches.at(-1)!.push(advance);
  }
  batchesOfGroup.set(advances, batches);
  return batches;
}

const batchesOfGroup = new WeakMap<readonly Advance[], Advance[][]>();

/** The columns of one advance in the batch statement, with their types. */
const ADVANCE_COLUMNS: readonly (readonly [string, string])[] = [
  ["ord", "integer"],
  ["run_id", "text"],
  ["lease_id", "text"],
  ["status", "text"],
  ["now", "bigint"],
  ["due_at", "bigint"],
  ["expiry", "bigint"],
  ["set_output", "boolean"],
  ["output", "bytea"],
  ["set_error", "boolean"],
  ["error_code", "bytea"],
  ["error_name", "bytea"],
  ["error_message", "bytea"],
  ["error_step", "bytea"],
  ["step_name", "text"],
  ["step_status", "text"],
  ["step_output", "bytea"],
  ["step_error_code", "bytea"],
  ["step_error_name", "bytea"],
  ["step_error_message", "bytea"],
  ["step_error_step", "bytea"],
  ["attempts", "integer"],
  ["step_due_at", "bigint"],
  ["step_updated_at", "bigint"],
];

const ERROR_COLUMNS = ["error_code", "error_name", "error_message", "error_step"];
const NO_STEP: readonly null[] = STEP_TYPES.slice(1).map(() => null);

// The fence is the UPDATE's WHERE (its = ANY finds the runs by id, for the same reason as the
// claim's, rather than by scanning every running run's status index entry); a step is upserted
// only for the advances it returned (a data-modifying CTE sees the others' RETURNING, not their
// effects). A renewal (status NULL) keeps
// the run running under its lease; a park sets what renewRun and parkRun set. The last arm sends one
// NOTIFY when a held advance released a run due now.
const ADVANCE_BODY = "moved AS (UPDATE reflow_runs r SET status = coalesce(i.status, r.status), " +
  "lease_id = CASE WHEN i.status IS NULL THEN r.lease_id END, " +
  "due_at = CASE WHEN i.status IS NULL THEN coalesce(i.expiry, i.now + r.lease_ms) ELSE i.due_at END, " +
  "updated_at = i.now, recoveries = CASE WHEN i.status IS NULL THEN 0 ELSE r.recoveries END, " +
  "output = CASE WHEN i.set_output THEN i.output ELSE r.output END, " +
  ERROR_COLUMNS.map((column) => `${column} = CASE WHEN i.set_error THEN i.${column} ELSE r.${column} END`)
    .join(", ") +
  " FROM input i WHERE r.id = i.run_id AND r.id = ANY (ARRAY(SELECT run_id FROM input)) " +
  "AND r.status = 'running' AND r.lease_id = i.lease_id " +
  "RETURNING i.ord, i.due_at <= i.now AS released), " +
  `stepped AS (INSERT INTO reflow_steps (${STEP_COLUMNS}) SELECT i.run_id, i.step_name, i.step_status, ` +
  "i.step_output, i.step_error_code, i.step_error_name, i.step_error_message, i.step_error_step, " +
  "i.attempts, i.step_due_at, i.step_updated_at FROM input i JOIN moved m ON m.ord = i.ord " +
  `WHERE i.step_name IS NOT NULL ORDER BY i.ord${STEP_UPSERT}) ` +
  "SELECT ord FROM moved UNION ALL SELECT 0 FROM " +
  `(SELECT pg_notify('${CHANNEL}', '') FROM moved WHERE released LIMIT 1) woke`;

/**
 * The rows a batch statement of `n` advances has: `n` up to 8, then the next power of two, the
 * rest padded with NULL rows that match no run. So there are at most 15 texts (each prepared once
 * per connection), instead of one per group size up to 1,024, whose texts alone would take 180 MB.
 */
function batchRows(n: number): number {
  return n <= 8 ? n : 2 ** Math.ceil(Math.log2(n));
}

/** The batch statement's text per row count, built once so that it stays constant. */
const advanceTexts = new Map<number, string>();

function advanceText(n: number): string {
  let sql = advanceTexts.get(n);
  if (sql === undefined) {
    const width = ADVANCE_COLUMNS.length;
    const rows = Array.from(
      { length: n },
      (_, row) =>
        `(${ADVANCE_COLUMNS.map(([, type], column) => `$${row * width + column + 1}::${type}`).join(", ")})`,
    );
    const names = ADVANCE_COLUMNS.map(([name]) => name).join(", ");
    sql = `WITH input (${names}) AS (VALUES ${rows.join(", ")}), ${ADVANCE_BODY}`;
    advanceTexts.set(n, sql);
  }
  return sql;
}

/** The batch statement for advances of distinct runs. */
function advanceStatement(batch: readonly Advance[]): SqlStatement {
  const params: SqlParameter[] = [];
  batch.forEach(({ move, step }, i) => {
    const renewal = move.status === "running" ? move : undefined;
    const park = move.status === "running" ? undefined : move;
    const error = park?.error;
    params.push(
      i + 1,
      move.runId,
      move.leaseId,
      park?.status ?? null,
      move.now,
      park?.dueAt ?? null,
      renewal?.expiry ?? null,
      park?.output !== undefined,
      bytes(park?.output ?? null),
      error !== undefined,
      bytes(error?.code ?? null),
      bytes(error?.name ?? null),
      bytes(error?.message ?? null),
      bytes(error?.stepName ?? null),
    );
    // A step's columns but its run id (the advance's own); all NULL for an advance without a step.
    if (step === undefined) params.push(...NO_STEP);
    else params.push(...stepParams(step, bytes).slice(1));
  });
  const rows = batchRows(batch.length);
  for (let i = params.length; i < rows * ADVANCE_COLUMNS.length; i++) params.push(null);
  return statement(advanceText(rows), ...params);
}

/** Sends one batch statement; per advance, whether its fence held. */
async function advanceBatch(connection: SqlConnection, batch: readonly Advance[]): Promise<boolean[]> {
  const rows = await connection.query(advanceStatement(batch));
  const held = new Array<boolean>(batch.length).fill(false);
  for (const row of rows) {
    const ord = Number(row.ord);
    if (ord > 0) held[ord - 1] = true;
  }
  return held;
}
