/**
 * Every SQL text {@linkcode SqlStorage} sends to SQLite. The texts are constants, so a driver's
 * statement cache hits on every call after the first; values always travel as anonymous `?` parameters (better-sqlite3 binds
 * numbered ones such as `?1` by name), repeated where a statement needs one twice.
 *
 * @module
 */

// Encoded values are read as blobs (and decoded by the core) because node:sqlite before Node 24,
// and in Deno, cuts a text value at its first NUL character; a blob comes back whole. So are an
// error's texts, which hold whatever the user's error said. (Names and keys cannot hold NUL.)
const ERROR_COLUMNS = "CAST(error_code AS BLOB) AS error_code, CAST(error_name AS BLOB) AS error_name, " +
  "CAST(error_message AS BLOB) AS error_message, CAST(error_step AS BLOB) AS error_step";

const RUN_COLUMNS =
  "id, workflow_name, workflow_version, status, CAST(input AS BLOB) AS input, CAST(output AS BLOB) AS output, " +
  `${ERROR_COLUMNS}, idempotency_key, created_at, updated_at, due_at, lease_id, claim_count`;

const STEP_COLUMNS =
  "run_id, step_name, status, output, error_code, error_name, error_message, error_step, " +
  "attempts, due_at, updated_at";

const STEP_RESULT_COLUMNS = "run_id, step_name, status, CAST(output AS BLOB) AS output, " +
  `${ERROR_COLUMNS}, attempts, due_at, updated_at`;

/** Must match the WHERE clause of the `reflow_runs_claim` index, term for term, for SQLite to use it. */
const CLAIMABLE = "status IN ('pending', 'running', 'sleeping', 'waiting')";

/** Write transactions take the write lock up front, so they never fail half-way on a lock upgrade. */
export const BEGIN = "BEGIN IMMEDIATE";
/** Ends a transaction. */
export const COMMIT = "COMMIT";
/** Abandons a transaction. */
export const ROLLBACK = "ROLLBACK";

/** Connection settings, sent once per connection; values are validated integers or keywords. */
export const pragmas = {
  busyTimeout: (ms: number): string => `PRAGMA busy_timeout = ${ms}`,
  synchronous: (mode: "NORMAL" | "FULL"): string => `PRAGMA synchronous = ${mode}`,
  /** The WAL size, in pages, at which a commit checkpoints it (SQLite's default is 1000). */
  walAutocheckpoint: (pages: number): string => `PRAGMA wal_autocheckpoint = ${pages}`,
  /** What a WAL file is truncated back to when a checkpoint resets it (SQLite's default: never). */
  journalSizeLimit: (bytes: number): string => `PRAGMA journal_size_limit = ${bytes}`,
  journalModeWal: "PRAGMA journal_mode = WAL",
} as const;

/**
 * Copies the whole WAL into the database and truncates it to zero bytes, as a row `{ busy, log,
 * checkpointed }`; `busy` is 1 when another connection's read or write kept it from finishing (the
 * WAL is then left as it was). Sent with the busy timeout at 0, so that it never waits for others.
 */
export const CHECKPOINT_TRUNCATE = "PRAGMA wal_checkpoint(TRUNCATE)";

/**
 * Which of some table and index names exist, as rows `{ name }`: the version table, and what
 * pending migrations would create. Parameters: JSON array of names.
 */
export const SELECT_SCHEMA_OBJECTS =
  "SELECT name FROM sqlite_master WHERE name IN (SELECT value FROM json_each(?)) ORDER BY name";
/** The schema version, as a row `{ value }`. */
export const SELECT_SCHEMA_VERSION = "SELECT value FROM reflow_meta WHERE key = 'schema_version'";
/** Records the schema version: version. */
export const UPSERT_SCHEMA_VERSION = "INSERT INTO reflow_meta (key, value) VALUES ('schema_version', ?) " +
  "ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/**
 * Stores a new pending run unless its workflow already has a run with its idempotency key
 * (NULL keys never collide). A duplicate id still fails, with a unique violation.
 * Parameters: id, workflow, version, input, key, created at, updated at, due at.
 */
export const INSERT_RUN = "INSERT INTO reflow_runs (id, workflow_name, workflow_version, status, input, " +
  "idempotency_key, created_at, updated_at, due_at, claim_count) " +
  "VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, 0) " +
  "ON CONFLICT (workflow_name, idempotency_key) DO NOTHING";

/** Reads the run that holds an idempotency key. Parameters: workflow, key. */
export const SELECT_RUN_BY_KEY =
  `SELECT ${RUN_COLUMNS} FROM reflow_runs WHERE workflow_name = ? AND idempotency_key = ?`;

/** Reads a run. Parameters: id. */
export const SELECT_RUN = `SELECT ${RUN_COLUMNS} FROM reflow_runs WHERE id = ?`;

/** Reads a run's steps in first-written order. Parameters: run id. */
export const SELECT_STEPS = `SELECT ${STEP_RESULT_COLUMNS} FROM reflow_steps WHERE run_id = ? ORDER BY seq`;

/** Reads the steps of several runs, each run's in first-written order. Parameters: JSON array of run ids. */
export const SELECT_STEPS_OF_RUNS = `SELECT ${STEP_RESULT_COLUMNS} FROM reflow_steps ` +
  "WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY seq";

/**
 * The due runs a claim takes, oldest `due_at` first and ties by creation. Parameters: now, JSON
 * array of workflow names, limit.
 *
 * The `+` on `workflow_name` keeps SQLite from choosing the idempotency index to match the names
 * (and then sorting): the claim index serves the ORDER BY and bounds the scan at `now`. INDEXED BY
 * keeps it from choosing the listing index on `(status, created_at, id)` for the `IN` (four
 * lookups, then a sort of every unfinished run), as it does without statistics.
 *
 * Claiming is this SELECT plus one {@linkcode CLAIM_RUN} per row inside `BEGIN IMMEDIATE`.
 * Measured against a single `UPDATE … FROM (window) … RETURNING` that hands out lease ids by row
 * number: the single statement cost 68 µs for one run and 185 µs for 25, these 45 µs and 163 µs.
 */
export const SELECT_CLAIMABLE =
  `SELECT seq, recoveries, ${RUN_COLUMNS} FROM reflow_runs INDEXED BY reflow_runs_claim ` +
  `WHERE ${CLAIMABLE} AND due_at <= ? AND +workflow_name IN (SELECT value FROM json_each(?)) ` +
  "ORDER BY due_at, seq LIMIT ?";

/**
 * Claims one run found by {@linkcode SELECT_CLAIMABLE}. Parameters: lease id, lease expiry, lease
 * duration, recoveries, now, seq.
 */
export const CLAIM_RUN =
  "UPDATE reflow_runs SET status = 'running', lease_id = ?, due_at = ?, lease_ms = ?, " +
  "claim_count = claim_count + 1, recoveries = ?, updated_at = ? WHERE seq = ?";

/**
 * Renews a held lease to an expiry, or (when it is NULL) to now plus the claim's duration.
 * Parameters: expiry, now, run id, lease id.
 */
export const HEARTBEAT_RUN = "UPDATE reflow_runs SET due_at = coalesce(?, ? + lease_ms) " +
  "WHERE id = ? AND status = 'running' AND lease_id = ?";

/**
 * Makes the unexpired leases of one engine instance (lease ids beginning with its prefix) due
 * now; the status index finds the running runs. Parameters: now, prefix length, prefix, now.
 */
export const EXPIRE_INSTANCE_LEASES = "UPDATE reflow_runs SET due_at = ? " +
  "WHERE status = 'running' AND substr(lease_id, 1, ?) = ? AND due_at > ?";

/** Whether a lease is held. Parameters: run id, lease id. */
export const SELECT_LEASE_HELD =
  "SELECT 1 AS held FROM reflow_runs WHERE id = ? AND status = 'running' AND lease_id = ?";

/**
 * Keeps a held run running and moves its lease expiry, or (when it is NULL) renews it to now
 * plus the claim's duration. Parameters: expiry, now, now, run id, lease id.
 */
export const RENEW_RUN =
  "UPDATE reflow_runs SET due_at = coalesce(?, ? + lease_ms), updated_at = ?, recoveries = 0 " +
  "WHERE id = ? AND status = 'running' AND lease_id = ?";

/**
 * Moves a held run to a status other than running and releases its lease. Parameters: status,
 * due at, now, output, error code, name, message and step, run id, lease id. The output and
 * error columns take the given values only where a flag says so (the value is then repeated):
 * `iif(flag, value, column)`, in the order set-output flag, output, set-error flag, code,
 * set-error flag, name, set-error flag, message, set-error flag, step.
 */
export const PARK_RUN = "UPDATE reflow_runs SET status = ?, due_at = ?, lease_id = NULL, updated_at = ?, " +
  "output = iif(?, ?, output), error_code = iif(?, ?, error_code), error_name = iif(?, ?, error_name), " +
  "error_message = iif(?, ?, error_message), error_step = iif(?, ?, error_step) " +
  "WHERE id = ? AND status = 'running' AND lease_id = ?";

/**
 * Sets the status of an unfinished run without a lease check, releasing any lease. Due time:
 * finished or parked, none; `pending`, now; `sleeping`, its wake time unless it was running (then now);
 * `waiting`, its timeout unless it was running (then none). The right-hand sides read the row's
 * values from before the update. Parameters: status, now, then the status three times and now
 * twice for the CASE (status, status, now, status, now), then the run id.
 */
export const UPDATE_RUN_STATUS = "UPDATE reflow_runs SET status = ?, lease_id = NULL, updated_at = ?, " +
  "due_at = CASE " +
  "WHEN ? IN ('completed', 'failed', 'cancelled', 'parked') THEN NULL " +
  "WHEN ? = 'sleeping' AND status <> 'running' THEN coalesce(due_at, ?) " +
  "WHEN ? = 'waiting' THEN iif(status = 'running', NULL, due_at) " +
  "ELSE ? END " +
  "WHERE id = ? AND status NOT IN ('completed', 'failed', 'cancelled')";

const STEP_VALUES = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
const STEP_UPSERT = " ON CONFLICT (run_id, step_name) DO UPDATE SET status = excluded.status, " +
  "output = excluded.output, error_code = excluded.error_code, error_name = excluded.error_name, " +
  "error_message = excluded.error_message, error_step = excluded.error_step, " +
  "attempts = excluded.attempts, due_at = excluded.due_at, updated_at = excluded.updated_at";

/**
 * Inserts or replaces a step result, keeping a replaced row's first-written position.
 * Parameters: run id, step name, status, output, error code, name, message, step, attempts,
 * due at, updated at.
 */
export const UPSERT_STEP = `INSERT INTO reflow_steps (${STEP_COLUMNS}) VALUES (${STEP_VALUES})${STEP_UPSERT}`;

/** {@linkcode UPSERT_STEP} only if the run exists. Parameters: those of `UPSERT_STEP`, then the run id. */
export const UPSERT_STEP_IF_RUN = `INSERT INTO reflow_steps (${STEP_COLUMNS}) SELECT ${STEP_VALUES} ` +
  `WHERE EXISTS (SELECT 1 FROM reflow_runs WHERE id = ?)${STEP_UPSERT}`;

/**
 * {@linkcode UPSERT_STEP} only if the run is running under a lease. Parameters: those of
 * `UPSERT_STEP`, then the run id and the lease id.
 */
export const UPSERT_STEP_IF_LEASED = `INSERT INTO reflow_steps (${STEP_COLUMNS}) SELECT ${STEP_VALUES} ` +
  `WHERE EXISTS (SELECT 1 FROM reflow_runs WHERE id = ? AND status = 'running' AND lease_id = ?)${STEP_UPSERT}`;

/** Must match `FINISHED` of the checks: the statuses of a finished run. */
const UNFINISHED = "status NOT IN ('completed', 'failed', 'cancelled')";

/**
 * Stores an event only if a wait can still consume it: its run exists and has not finished, the
 * run has no step result of the event's name other than a waiting one (the wait is not over), and
 * no event of that name is stored (a wait takes one). No row changes otherwise. Parameters: run
 * id, name, payload, created at, then the run id, the run id and the name, the run id and the name.
 */
export const INSERT_EVENT = "INSERT INTO reflow_events (run_id, name, payload, created_at) " +
  `SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM reflow_runs WHERE id = ? AND ${UNFINISHED}) ` +
  "AND NOT EXISTS (SELECT 1 FROM reflow_steps WHERE run_id = ? AND step_name = ? AND status <> 'waiting') " +
  "AND NOT EXISTS (SELECT 1 FROM reflow_events WHERE run_id = ? AND name = ?)";

/**
 * Wakes a run waiting on a step result of the event's name that is itself waiting: `due_at` is
 * lowered to the event's time (an earlier timeout stays) and `updated_at` raised to it.
 * Parameters: created at three times, run id, run id, event name.
 */
export const WAKE_RUN = "UPDATE reflow_runs SET due_at = min(coalesce(due_at, ?), ?), " +
  "updated_at = max(updated_at, ?) WHERE id = ? AND status = 'waiting' AND EXISTS " +
  "(SELECT 1 FROM reflow_steps WHERE run_id = ? AND step_name = ? AND status = 'waiting')";

/**
 * The fence and the event of a wait in one read: no row when the run is not running under the
 * lease; otherwise one row with the unconsumed event of the name (`seq` and `payload`, both NULL
 * when there is none; the oldest, should a database written before one event per name hold more).
 * Parameters: event name, run id, lease id.
 */
export const SELECT_WAIT = "SELECT e.seq AS seq, CAST(e.payload AS BLOB) AS payload FROM reflow_runs r " +
  "LEFT JOIN reflow_events e ON e.seq = " +
  "(SELECT seq FROM reflow_events WHERE run_id = r.id AND name = ? ORDER BY seq LIMIT 1) " +
  "WHERE r.id = ? AND r.status = 'running' AND r.lease_id = ?";

/**
 * A run's unconsumed events, in delivery order; none once it has finished (a finished run's
 * events stay until it is purged or re-queued, but no wait will take them). Parameters: run id twice.
 */
export const SELECT_EVENTS = "SELECT name, CAST(payload AS BLOB) AS payload, created_at FROM reflow_events " +
  `WHERE run_id = ? AND EXISTS (SELECT 1 FROM reflow_runs WHERE id = ? AND ${UNFINISHED}) ORDER BY seq`;

/** Consumes an event. Parameters: seq. */
export const DELETE_EVENT = "DELETE FROM reflow_events WHERE seq = ?";

/**
 * The text of one `listRuns()` page. One SELECT per status (one in all without a status filter),
 * merged by UNION ALL under the page's ORDER BY: each arm walks an index in page order, so SQLite
 * merges them instead of sorting the matching runs (as `status IN (…)` would). Parameters, per
 * arm: the status (when filtered), the workflow (when filtered), the cursor's createdAt and (with
 * `beforeId`) its id; then the limit.
 *
 * @param arms How many statuses are filtered for (0: any status).
 * @param byWorkflow Whether a workflow is filtered for.
 * @param cursor Which cursor the page continues from.
 * @returns The SQL text; the same for the same shape, so the driver's statement cache hits.
 */
export function selectRunsPage(
  arms: number,
  byWorkflow: boolean,
  cursor: "none" | "before" | "beforeId",
): string {
  const terms = [
    ...(arms > 0 ? ["status = ?"] : []),
    ...(byWorkflow ? ["workflow_name = ?"] : []),
    ...(cursor === "before"
      ? ["created_at < ?"]
      : cursor === "beforeId"
      ? ["(created_at, id) < (?, ?)"]
      : []),
  ];
  const where = terms.length === 0 ? "" : ` WHERE ${terms.join(" AND ")}`;
  const arm = `SELECT ${RUN_COLUMNS} FROM reflow_runs${where}`;
  return `${
    Array(Math.max(arms, 1)).fill(arm).join(" UNION ALL ")
  } ORDER BY created_at DESC, id DESC LIMIT ?`;
}

/**
 * Counts runs per status, each count capped: one arm per status, each reading at most the cap's
 * entries of the `(status, created_at, id)` index, so a million runs cost no more than a thousand.
 * Parameters, per arm: the status (as the row's label), the status again, the cap.
 *
 * @param arms How many statuses.
 * @returns The SQL text; rows `{ status, n }`.
 */
export function countRunsByStatus(arms: number): string {
  const arm = "SELECT ? AS status, (SELECT count(*) FROM (SELECT 1 FROM reflow_runs " +
    "INDEXED BY reflow_runs_status_created WHERE status = ? LIMIT ?)) AS n";
  return Array(arms).fill(arm).join(" UNION ALL ");
}

/**
 * Re-queues a failed, cancelled or parked run: pending, due now, no output, error or lease.
 * Parameters: now (due at), now (updated at), run id.
 */
export const REQUEUE_RUN = "UPDATE reflow_runs SET status = 'pending', due_at = ?, updated_at = ?, " +
  "output = NULL, error_code = NULL, error_name = NULL, error_message = NULL, error_step = NULL, " +
  "lease_id = NULL WHERE id = ? AND status IN ('failed', 'cancelled', 'parked')";

/** Deletes a run's failed step results, so that those steps run again. Parameters: run id. */
export const DELETE_FAILED_STEPS = "DELETE FROM reflow_steps WHERE run_id = ? AND status = 'failed'";

/**
 * Deletes a run's unconsumed events if it has finished (failed or cancelled): a parked run keeps
 * them for when it continues. Parameters: run id, run id.
 */
export const DELETE_EVENTS_OF_FINISHED_RUN = "DELETE FROM reflow_events WHERE run_id = ? AND EXISTS " +
  "(SELECT 1 FROM reflow_runs WHERE id = ? AND status IN ('failed', 'cancelled'))";

/** Records the version a held run continues under. Parameters: version, run id, lease id. */
export const UPDATE_RUN_VERSION = "UPDATE reflow_runs SET workflow_version = ? " +
  "WHERE id = ? AND status = 'running' AND lease_id = ?";

/** Stores a workflow version's shape unless the version is stored. Parameters: name, version, shape, created at. */
export const INSERT_WORKFLOW_VERSION = "INSERT INTO reflow_workflow_versions " +
  "(workflow_name, version, shape, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING";

/** Reads every workflow version, by name then version. */
export const SELECT_WORKFLOW_VERSIONS = "SELECT workflow_name, version, CAST(shape AS BLOB) AS shape, " +
  "created_at FROM reflow_workflow_versions ORDER BY workflow_name, version";

/**
 * The text of the query for up to a limit of finished runs that finished before a time, oldest
 * `(created_at, id)` first: one arm per status, each walking the status index forwards and
 * stopping at the first run created after the cutoff (a run finishes after it is created, so no
 * later one qualifies), merged by UNION ALL. Parameters, per arm: the status, the cutoff twice;
 * then the limit.
 *
 * @param arms How many statuses (1 to 3).
 * @returns The SQL text; the same for the same number of statuses.
 */
export function selectPurgeable(arms: number): string {
  const arm =
    "SELECT seq, id, created_at FROM reflow_runs WHERE status = ? AND created_at < ? AND updated_at < ?";
  return `${Array(arms).fill(arm).join(" UNION ALL ")} ORDER BY created_at, id LIMIT ?`;
}

/** Deletes the steps of several runs. Parameters: JSON array of run ids. */
export const DELETE_STEPS_OF_RUNS =
  "DELETE FROM reflow_steps WHERE run_id IN (SELECT value FROM json_each(?))";

/** Deletes the events of several runs. Parameters: JSON array of run ids. */
export const DELETE_EVENTS_OF_RUNS =
  "DELETE FROM reflow_events WHERE run_id IN (SELECT value FROM json_each(?))";

/** Deletes runs. Parameters: JSON array of seqs. */
export const DELETE_RUNS = "DELETE FROM reflow_runs WHERE seq IN (SELECT value FROM json_each(?))";

// The input and the recurrence are read as blobs, as encoded values are (see RUN_COLUMNS).
const SCHEDULE_COLUMNS = "key, workflow_name, CAST(input AS BLOB) AS input, " +
  "CAST(recurrence AS BLOB) AS recurrence, next_run_at, last_run_at, last_run_id, created_at, updated_at";

/** Reads a schedule. Parameters: key. */
export const SELECT_SCHEDULE = `SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules WHERE key = ?`;

/** Reads every schedule by key. */
export const SELECT_SCHEDULES = `SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules ORDER BY key`;

/**
 * Up to a limit of due schedules of some workflows, earliest first, ties by key. The `+` keeps
 * the `reflow_schedules_due` index in charge of the order. Parameters: now, JSON array of
 * workflow names, limit.
 */
export const SELECT_DUE_SCHEDULES = `SELECT ${SCHEDULE_COLUMNS} FROM reflow_schedules ` +
  "WHERE next_run_at <= ? AND +workflow_name IN (SELECT value FROM json_each(?)) " +
  "ORDER BY next_run_at, key LIMIT ?";

const SCHEDULE_INSERT = "INSERT INTO reflow_schedules (key, workflow_name, input, recurrence, " +
  "next_run_at, last_run_at, last_run_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/**
 * Inserts a schedule unless its key exists. Parameters: those of {@linkcode UPSERT_SCHEDULE}.
 */
export const INSERT_SCHEDULE = `${SCHEDULE_INSERT} ON CONFLICT (key) DO NOTHING`;

/**
 * Writes a whole schedule, inserting or replacing it. Parameters: key, workflow, input,
 * recurrence, next run at, last run at, last run id, created at, updated at.
 */
export const UPSERT_SCHEDULE = `${SCHEDULE_INSERT} ` +
  "ON CONFLICT (key) DO UPDATE SET workflow_name = excluded.workflow_name, input = excluded.input, " +
  "recurrence = excluded.recurrence, next_run_at = excluded.next_run_at, " +
  "last_run_at = excluded.last_run_at, last_run_id = excluded.last_run_id, " +
  "created_at = excluded.created_at, updated_at = excluded.updated_at";

/** Deletes a schedule. Parameters: key. */
export const DELETE_SCHEDULE = "DELETE FROM reflow_schedules WHERE key = ?";
