/**
 * The seam between the dialect-neutral runner ({@linkcode SqlStorage}) and one SQL dialect: every
 * statement text with the builder of its parameters, the migrations, how a transaction begins,
 * what each new connection is told, the migration lock, and the few operations whose safety
 * depends on how the database arbitrates concurrent writers (claims, schedule slots, event waits).
 *
 * SQLite admits one writer at a time, so a read followed by a write inside `BEGIN IMMEDIATE` sees
 * no interleaving. A database with row locks (PostgreSQL under READ COMMITTED) does interleave, so
 * its dialect claims in one `FOR UPDATE SKIP LOCKED` statement and reads schedules and runs under
 * row locks. The runner only ever calls the dialect, so both stay correct on the same code.
 *
 * @module
 */

import type {
  NewEvent,
  NewRun,
  PurgeRequest,
  RunQuery,
  RunStatus,
  ScheduleRecord,
  StepResult,
  StoredError,
  WorkflowVersionRecord,
} from "../storage/adapter.ts";
import type { SqlConnection, SqlDialect, SqlParameter, SqlRow, SqlStatement, SqlValue } from "./driver.ts";

/** One step of the schema's history. */
export interface Migration {
  /** The schema version this migration produces; versions count up from 1 without gaps. */
  readonly version: number;
  /** The statements, one statement per string, applied in order inside one transaction. */
  readonly statements: readonly string[];
}

/** What a database holds of Reflow's schema, as `initialize()` finds it before changing anything. */
export interface SchemaState {
  /** Which of the tables and indexes the migrations create exist. */
  readonly present: ReadonlySet<string>;
  /** The stored schema version as read: null when the version table has none, undefined when there is no such table. */
  readonly version: SqlValue | undefined;
}

/**
 * The names of the tables and indexes a migration creates, read off its statements.
 *
 * @param migration The migration.
 * @returns The names, in statement order.
 */
export function createdNames(migration: Migration): string[] {
  return migration.statements.flatMap((sql) =>
    /^\s*CREATE (?:UNIQUE )?(?:TABLE|INDEX) (\w+)/i.exec(sql)?.[1] ?? []
  );
}

/** The settings a dialect turns into per-connection statements. */
export interface ConnectionSettings {
  /** SQLite's `synchronous` mode. */
  readonly synchronous: "NORMAL" | "FULL";
  /** How long a statement waits for a lock before failing as busy. */
  readonly busyTimeoutMs: number;
  /** SQLite's `wal_autocheckpoint`: the WAL size, in pages, at which a commit checkpoints it. */
  readonly walAutocheckpointPages: number;
  /** SQLite's `journal_size_limit`: what a WAL file is truncated back to when it starts over. */
  readonly walSizeLimitBytes: number;
}

/** What a claim takes: the due runs of some workflows, each with a fresh lease. */
export interface ClaimPlan {
  /** The workflows (not empty). */
  readonly names: readonly string[];
  /** At most this many runs (> 0). */
  readonly limit: number;
  /** The claim time: runs due at or before it are claimable. */
  readonly now: number;
  /** The lease expiry, `now + leaseMs`. */
  readonly expiry: number;
  /** The lease duration. */
  readonly leaseMs: number;
  /** Makes one lease id. */
  readonly newLeaseId: () => string;
}

/** A claimed run's row (the run's columns after the claim) and its lease. */
export interface ClaimedRow {
  /** The run's columns, as read by the run statements, plus `recoveries` (see `ClaimedRun.recoveries`). */
  readonly row: SqlRow;
  /** The lease the claim took. */
  readonly leaseId: string;
}

/** What a wait found under its fence. */
export type WaitFinding =
  | { readonly held: false }
  | { readonly held: true; readonly event: { readonly seq: number; readonly payload: SqlValue } | null };

/** A move of a held run to a status other than running; see {@linkcode Dialect.parkRun}. */
export interface Park {
  readonly runId: string;
  readonly leaseId: string;
  readonly status: Exclude<RunStatus, "running">;
  readonly now: number;
  readonly dueAt: number | null;
  /** The output to store; undefined keeps the stored one. */
  readonly output: string | null | undefined;
  /** The error to store; undefined keeps the stored one. */
  readonly error: StoredError | null | undefined;
}

/** A renewal of a held run's lease that keeps it running; see {@linkcode Dialect.renewRun}. */
export interface Renewal {
  readonly runId: string;
  readonly leaseId: string;
  readonly status: "running";
  readonly now: number;
  /** The new expiry; null: now plus the claim's duration. */
  readonly expiry: number | null;
}

/** One checked `advanceRun()`: the held run's move, fenced by its lease, and the step result it commits. */
export interface Advance {
  /** A renewal keeps the run running; a park moves it to another status and releases the lease. */
  readonly move: Renewal | Park;
  /** The step result to insert or replace once the fence held; undefined for none. */
  readonly step: StepResult | undefined;
}

/**
 * One SQL dialect, as the runner uses it. Statement builders return constant texts (so drivers'
 * statement caches hit) with their parameters in order; strategies run a few statements on a
 * connection the runner lent them, inside the runner's transaction where one is named.
 */
export interface Dialect {
  /** The dialect's name, as drivers declare it. */
  readonly name: SqlDialect;
  /** Every migration, oldest first; the last one's version is the schema version. */
  readonly migrations: readonly Migration[];
  /** Starts a write transaction. */
  readonly begin: SqlStatement;
  /** Ends a transaction. */
  readonly commit: SqlStatement;
  /** Abandons a transaction. */
  readonly rollback: SqlStatement;
  /**
   * Taken as the first statement of the migration transaction, so that concurrent initialisers
   * migrate one after the other; null where `begin` already excludes other writers.
   */
  readonly migrationLock: SqlStatement | null;
  /**
   * Statements for each new connection, before its first use.
   *
   * @param settings The storage's settings.
   * @returns The statements, in order.
   */
  connectionSetup(settings: ConnectionSettings): readonly SqlStatement[];
  /**
   * Folds the write-ahead log into the database and truncates it, without waiting for other
   * connections; a dialect without such a log does nothing.
   *
   * @param connection The connection to run it on.
   * @param busyTimeoutMs The connection's busy timeout, restored afterwards.
   * @returns False when another connection kept it from finishing (nothing was then changed).
   */
  checkpoint(connection: SqlConnection, busyTimeoutMs: number): Promise<boolean>;
  /** Statements for the database as a whole, once the schema version is known to be ours. */
  readonly databaseSetup: readonly SqlStatement[];
  /**
   * Reads what `initialize()` checks before it changes anything (reads only).
   *
   * @param connection The connection to read on.
   * @returns Which of the tables and indexes the migrations create exist, and the stored version.
   */
  readSchemaState(connection: SqlConnection): Promise<SchemaState>;
  /** Records the schema version. */
  writeSchemaVersion(version: number): SqlStatement;
  /**
   * Copies another engine's tables found in a database Reflow initialises for the first time
   * into Reflow's, inside the migration transaction; absent where there is nothing to adopt.
   *
   * @param connection The migration's connection, inside its transaction.
   * @param now The storage clock's time.
   */
  importForeign?(connection: SqlConnection, now: number): Promise<unknown>;
  /**
   * Reads the database server's clock as a row `{ now }` (ms since the epoch), where workers on
   * several hosts share the database; null where the database lives on the worker's host.
   */
  readonly serverClock: SqlStatement | null;
  /**
   * Tells other processes' idle workers that work may have become due, sent in the transaction of
   * the write that made it so (delivered at its commit); null where the dialect has no such signal.
   */
  readonly wake: SqlStatement | null;
  /** Subscribes a driver's connection to {@linkcode Dialect.wake}; null with no such signal. */
  readonly listen: SqlStatement | null;

  /**
   * Stores a new pending run unless its workflow already has a run with its idempotency key; a
   * dialect with a {@linkcode Dialect.wake} sends it from the same statement when the run is
   * stored. The statement's change count is 1 when it stored the run.
   */
  insertRun(run: NewRun): SqlStatement;
  /** Reads the run of a workflow that holds an idempotency key. */
  selectRunByKey(workflowName: string, idempotencyKey: string | null): SqlStatement;
  /** Reads a run. */
  selectRun(runId: string): SqlStatement;
  /** Reads a run's steps in first-written order. */
  selectSteps(runId: string): SqlStatement;
  /** Reads the steps of several runs, each run's in first-written order. */
  selectStepsOfRuns(runIds: readonly string[]): SqlStatement;
  /**
   * Claims the due runs of a plan inside the runner's transaction, oldest due first, ties by
   * creation, so that no two claimers get the same run.
   *
   * @param connection The transaction's connection.
   * @param plan What to claim.
   * @returns The claimed rows, in claim order.
   */
  claim(connection: SqlConnection, plan: ClaimPlan): Promise<ClaimedRow[]>;
  /** Renews a held lease to an expiry, or (null) to now plus the claim's duration. */
  heartbeatRun(runId: string, leaseId: string, expiry: number | null, now: number): SqlStatement;
  /** Makes the unexpired leases whose ids begin with `prefix` due at `now` (`StorageAdapter.expireInstanceLeases`). */
  expireInstanceLeases(prefix: string, now: number): SqlStatement;
  /** Whether a lease is held (a row when it is). */
  selectLeaseHeld(runId: string, leaseId: string): SqlStatement;
  /** Keeps a held run running, moving its expiry (null: now plus the claim's duration). */
  renewRun(runId: string, leaseId: string, expiry: number | null, now: number): SqlStatement;
  /** Moves a held run to another status and releases its lease. */
  parkRun(park: Park): SqlStatement;
  /** Sets the status of an unfinished run without a lease check; see `SqlStorage.updateRunStatus`. */
  updateRunStatus(runId: string, status: RunStatus, now: number): SqlStatement;
  /**
   * Applies a group of advances (of the runs in flight, submitted together; see `GroupCommit`),
   * each fenced by its lease on its own: one whose fence fails changes nothing and leaves the others
   * alone. Inside the runner's transaction unless {@linkcode Dialect.advancesAtomic} says the group
   * needs none. Sends {@linkcode Dialect.wake} at most once, when some advance releases a run that
   * is due at once, so that idle workers elsewhere take it.
   *
   * @param connection The connection, inside the group's transaction where there is one.
   * @param advances The advances, in submission order (a run may appear more than once).
   * @returns Per advance, whether its fence held and it was applied.
   */
  advanceRuns(connection: SqlConnection, advances: readonly Advance[]): Promise<boolean[]>;
  /**
   * Whether {@linkcode Dialect.advanceRuns} applies this group in a single statement, which is
   * atomic by itself, so that the runner sends no `BEGIN`/`COMMIT` around it.
   */
  advancesAtomic(advances: readonly Advance[]): boolean;
  /**
   * Whether {@linkcode Dialect.claim} is a single statement, atomic by itself: the runner then sends
   * it without a transaction, and reads the steps of reclaimed runs after it, as an operation of its
   * own, so that a failed read is retried without claiming again (under their new leases, which
   * fence out every writer of steps but the unfenced `saveStepResult`).
   */
  readonly claimAtomic: boolean;
  /** Inserts or replaces a step result, keeping a replaced row's first-written position. */
  upsertStep(step: StepResult): SqlStatement;
  /** {@linkcode Dialect.upsertStep} only if the run exists. */
  upsertStepIfRun(step: StepResult): SqlStatement;
  /** {@linkcode Dialect.upsertStep} only if the run is running under the lease. */
  upsertStepIfLeased(step: StepResult, leaseId: string): SqlStatement;
  /**
   * Stores an event for an unfinished run and wakes the run if it waits on it, inside the
   * runner's transaction, ordered against {@linkcode Dialect.findWait} so that a wait either
   * sees the event or is woken by it.
   *
   * @returns False, storing nothing, if no wait could consume the event: the run does not exist
   *   or has finished, its wait of that name is over, or an event of that name is already stored.
   */
  deliverEvent(connection: SqlConnection, runId: string, event: NewEvent): Promise<boolean>;
  /**
   * Checks the lease of a wait and finds the unconsumed event of its name, inside the
   * runner's transaction; the run stays locked against {@linkcode Dialect.deliverEvent} until
   * the transaction ends.
   */
  findWait(connection: SqlConnection, runId: string, leaseId: string, name: string): Promise<WaitFinding>;
  /** Reads an unfinished run's unconsumed events (name, payload, created_at) in delivery order. */
  selectEvents(runId: string): SqlStatement;
  /** Consumes an event. */
  deleteEvent(seq: number): SqlStatement;
  /** One `listRuns()` page. */
  selectRunsPage(query: RunQuery): SqlStatement;
  /** The runs per status, each count reading at most `cap` index entries; rows `{ status, n }`. */
  countRuns(statuses: readonly RunStatus[], cap: number): SqlStatement;
  /** Re-queues a failed, cancelled or parked run. */
  requeueRun(runId: string, now: number): SqlStatement;
  /** Deletes a run's failed step results. */
  deleteFailedSteps(runId: string): SqlStatement;
  /** Deletes a run's unconsumed events if it has finished (failed or cancelled; not parked). */
  deleteEventsOfFinishedRun(runId: string): SqlStatement;
  /** Records the version a held run continues under, fenced by the lease. */
  updateRunVersion(runId: string, leaseId: string, workflowVersion: string): SqlStatement;
  /** Stores a workflow version's shape unless that name and version is stored already. */
  insertWorkflowVersion(record: WorkflowVersionRecord): SqlStatement;
  /** Reads every workflow version, by name then version. */
  selectWorkflowVersions(): SqlStatement;
  /** Up to a limit of purgeable runs (`seq`, `id`), oldest `(created_at, id)` first. */
  selectPurgeable(request: Required<PurgeRequest>): SqlStatement;
  /** Deletes the steps of several runs. */
  deleteStepsOfRuns(runIds: readonly string[]): SqlStatement;
  /** Deletes the events of several runs. */
  deleteEventsOfRuns(runIds: readonly string[]): SqlStatement;
  /** Deletes runs by seq. */
  deleteRuns(seqs: readonly number[]): SqlStatement;
  /** Reads a schedule. */
  selectSchedule(key: string): SqlStatement;
  /**
   * Reads a schedule and keeps it from changing until the transaction ends (the slot and upsert
   * decisions are made on this read).
   */
  lockSchedule(key: string): SqlStatement;
  /** Reads every schedule by key. */
  selectSchedules(): SqlStatement;
  /** Up to a limit of due schedules of some workflows, earliest first, ties by key. */
  selectDueSchedules(names: readonly string[], now: number, limit: number): SqlStatement;
  /** Inserts a schedule unless its key exists (no row changes then). */
  insertSchedule(schedule: ScheduleRecord): SqlStatement;
  /** Writes a whole schedule, inserting or replacing it. */
  upsertSchedule(schedule: ScheduleRecord): SqlStatement;
  /** Deletes a schedule. */
  deleteSchedule(key: string): SqlStatement;
}

/**
 * A statement from its text and parameters.
 *
 * @param sql The text.
 * @param params The parameters, in order.
 * @returns The statement.
 */
export function statement(sql: string, ...params: SqlParameter[]): SqlStatement {
  return { sql, params };
}

/**
 * The parameters of a step result, in column order: run id, step name, status, output, error
 * code, name, message, step, attempts, due at, updated at.
 *
 * @param step The step result.
 * @param encode Turns an encoded value, and each text of its error (which may hold any character,
 *   NUL included), into the parameter the dialect stores it as.
 * @returns The parameters.
 */
export function stepParams(step: StepResult, encode: Encode = asIs): SqlParameter[] {
  const error = step.error;
  return [
    step.runId,
    step.stepName,
    step.status,
    encode(step.output),
    encode(error?.code ?? null),
    encode(error?.name ?? null),
    encode(error?.message ?? null),
    encode(error?.stepName ?? null),
    step.attempts,
    step.dueAt,
    step.updatedAt,
  ];
}

/** Turns an encoded value or an error's text (or null) into the parameter a dialect stores it as. */
export type Encode = (value: string | null) => SqlParameter;

const asIs: Encode = (value) => value;

/**
 * The parameters of a schedule, in column order: key, workflow, input, recurrence, next run at,
 * last run at, last run id, created at, updated at.
 *
 * @param schedule The schedule.
 * @param encode Turns the input and the recurrence into the parameters the dialect stores them as.
 * @returns The parameters.
 */
export function scheduleParams(schedule: ScheduleRecord, encode: Encode = asIs): SqlParameter[] {
  return [
    schedule.key,
    schedule.workflowName,
    encode(schedule.input),
    encode(schedule.recurrence),
    schedule.nextRunAt,
    schedule.lastRunAt,
    schedule.lastRunId,
    schedule.createdAt,
    schedule.updatedAt,
  ];
}

/**
 * Whether a move releases its run to other workers at once: due at or before its own time.
 *
 * @param move The move.
 * @returns True for a park to a status with a due time that has come.
 */
export function releasesNow(move: Renewal | Park): boolean {
  return move.status !== "running" && move.dueAt !== null && move.dueAt <= move.now;
}

/**
 * {@linkcode Dialect.advanceRuns} one statement at a time, inside the runner's transaction: per
 * advance the run's update (whose change count is the fence), then its step's upsert; then the
 * dialect's wake once, if a held advance released a run due now.
 *
 * @param dialect The dialect whose statements to send.
 * @param connection The group transaction's connection.
 * @param advances The advances, in order.
 * @returns Per advance, whether its fence held.
 */
export async function advanceOneByOne(
  dialect: Dialect,
  connection: SqlConnection,
  advances: readonly Advance[],
): Promise<boolean[]> {
  const held: boolean[] = [];
  let release = false;
  for (const { move, step } of advances) {
    const update = move.status === "running"
      ? dialect.renewRun(move.runId, move.leaseId, move.expiry, move.now)
      : dialect.parkRun(move);
    const applied = (await connection.execute(update)).changes === 1;
    if (applied && step !== undefined) await connection.execute(dialect.upsertStep(step));
    if (applied && releasesNow(move)) release = true;
    held.push(applied);
  }
  if (release && dialect.wake !== null) await connection.query(dialect.wake);
  return held;
}
