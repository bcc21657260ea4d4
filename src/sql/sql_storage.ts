/**
 * The one SQL implementation of the {@linkcode StorageAdapter} contract, over any
 * {@linkcode SqlDriver}: schema and migrations, every query, transactions, busy retries.
 *
 * @module
 */

import { ConfigError, ReflowError, StorageError, type StorageErrorKind } from "../errors.ts";
import type {
  ClaimedRun,
  ClaimRequest,
  CreateRunResult,
  EventWait,
  EventWaitResult,
  NewEvent,
  NewRun,
  NewSchedule,
  PurgeRequest,
  RunAdvance,
  RunCounts,
  RunQuery,
  RunStatus,
  ScheduleRecord,
  StepResult,
  StorageAdapter,
  StoredError,
  StoredEvent,
  UpsertScheduleResult,
  WorkflowRun,
  WorkflowVersionRecord,
} from "../storage/adapter.ts";
import {
  checkClaimRequest,
  checkError,
  checkEventWait,
  checkInstanceId,
  checkLimit,
  checkName,
  checkNames,
  checkNewRun,
  checkNewSchedule,
  checkPurgeRequest,
  checkRunQuery,
  checkSlotClaim,
  checkStatus,
  checkStep,
  checkString,
  checkTime,
  checkTimeOrNull,
  checkWorkflowVersions,
  describe,
  FINISHED,
  invalid,
  isObject,
} from "../storage/checks.ts";
import type {
  SqlConnection,
  SqlConnectionLease,
  SqlDriver,
  SqlRow,
  SqlStatement,
  SqlSubscription,
  SqlValue,
} from "./driver.ts";
import {
  type Advance,
  type ClaimedRow,
  createdNames,
  type Dialect,
  type Park,
  type Renewal,
} from "./dialect.ts";
import { DIALECTS } from "./dialects.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import { GroupCommit } from "./group_commit.ts";
import {
  claimedSchedule,
  pendingRun,
  upsertedSchedule,
  waitStepResult,
  zeroCounts,
} from "../storage/records.ts";
import { RUN_STATUSES } from "../storage/statuses.ts";

/** Options of {@linkcode SqlStorage} (and of every `SQLiteStorage`). */
export interface SqlStorageOptions {
  /**
   * SQLite's `synchronous` setting in WAL mode. `"NORMAL"` (default): a commit survives a crash
   * of the process, but the last commits before a power loss or OS crash may be lost (never
   * corrupted). `"FULL"`: every commit is synced to disk before it returns, so it survives power
   * loss too, at the cost of one fsync per transaction.
   */
  readonly synchronous?: "NORMAL" | "FULL";
  /**
   * How long a statement waits for another connection's lock before it fails as busy (SQLite's
   * `busy_timeout`). Default 5000. A busy failure is then retried a few times with backoff.
   */
  readonly busyTimeoutMs?: number;
  /**
   * The clock (ms since the epoch), read only by methods that take no time: `claimNextRun()`
   * without `staleBefore`, `heartbeatRun()` without an expiry, `updateRunStatus()` and
   * `updateClaimedRunStatus()`. Default: `Date.now`.
   */
  readonly now?: () => number;
  /** Makes a lease id; it must be unique. Default: `crypto.randomUUID`. */
  readonly newId?: () => string;
  /**
   * The size, in pages, at which a commit checkpoints the write-ahead log into the database
   * (SQLite's `wal_autocheckpoint`). Default 1000 (about 4 MB with 4 KiB pages). A lower value
   * keeps the WAL smaller on a small disk at the cost of more frequent checkpoints; 0 turns
   * automatic checkpoints off (the idle and disk-full checkpoints still run).
   */
  readonly walAutocheckpointPages?: number;
  /**
   * The size, in bytes, that the WAL file is truncated back to whenever a checkpoint lets SQLite
   * start it over (SQLite's `journal_size_limit`), so a WAL that once outgrew it (a long read held
   * checkpoints back) gives the space back. Default 4 MiB (4,194,304).
   */
  readonly walSizeLimitBytes?: number;
  /**
   * After this many ms without a write, the storage checkpoints the WAL into the database and
   * truncates it to zero bytes, unless another connection's read or write keeps it from doing so
   * at once (it never waits for one). Default 1000; `null`: never.
   */
  readonly idleCheckpointMs?: number | null;
}

/** The keys of {@linkcode SqlStorageOptions}; every other key is refused. */
const SQL_STORAGE_OPTION_KEYS: OptionKeys<SqlStorageOptions> = {
  synchronous: true,
  busyTimeoutMs: true,
  now: true,
  newId: true,
  walAutocheckpointPages: true,
  walSizeLimitBytes: true,
  idleCheckpointMs: true,
};

/** {@linkcode SqlStorageOptions} with defaults applied. */
interface ResolvedSqlStorageOptions {
  readonly synchronous: "NORMAL" | "FULL";
  readonly busyTimeoutMs: number;
  readonly now: () => number;
  readonly newId: () => string;
  readonly walAutocheckpointPages: number;
  readonly walSizeLimitBytes: number;
  readonly idleCheckpointMs: number | null;
}

/**
 * Checks storage options. The `SQLiteStorage` constructors call it before they open the file, so
 * that a bad option opens (or creates) nothing.
 *
 * @param options The options as given.
 * @returns The options with defaults applied.
 * @throws {ConfigError} If an option is unknown or invalid.
 */
export function checkSqlStorageOptions(options: SqlStorageOptions | undefined): ResolvedSqlStorageOptions {
  const {
    synchronous = "NORMAL",
    busyTimeoutMs = 5000,
    now = Date.now,
    newId,
    walAutocheckpointPages = 1000,
    walSizeLimitBytes = DEFAULT_WAL_SIZE_LIMIT_BYTES,
    idleCheckpointMs = 1000,
  } = checkOptionKeys(options, SQL_STORAGE_OPTION_KEYS, undefined, "storage options") ?? {};
  if (synchronous !== "NORMAL" && synchronous !== "FULL") {
    throw new ConfigError(`Invalid synchronous ${describe(synchronous)}: expected "NORMAL" or "FULL"`, {
      field: "synchronous",
    });
  }
  checkCount("busyTimeoutMs", busyTimeoutMs, "milliseconds");
  checkCount("walAutocheckpointPages", walAutocheckpointPages, "pages");
  checkCount("walSizeLimitBytes", walSizeLimitBytes, "bytes");
  if (idleCheckpointMs !== null) checkCount("idleCheckpointMs", idleCheckpointMs, "milliseconds", "or null");
  if (typeof now !== "function") {
    throw new ConfigError(`Invalid now ${describe(now)}: expected a function`, { field: "now" });
  }
  if (newId !== undefined && typeof newId !== "function") {
    throw new ConfigError(`Invalid newId ${describe(newId)}: expected a function`, { field: "newId" });
  }
  return {
    synchronous,
    busyTimeoutMs,
    now,
    newId: newId ?? (() => crypto.randomUUID()),
    walAutocheckpointPages,
    walSizeLimitBytes,
    idleCheckpointMs,
  };
}

/** How often the offset to the database server's clock is measured again. */
const CLOCK_SYNC_INTERVAL_MS = 60_000;
/** Round trips per measurement; the fastest one gives the offset. */
const CLOCK_SAMPLES = 3;

/** The lease `claimNextRun()` takes, as the contract fixes it. */
const CLAIM_NEXT_LEASE_MS = 30_000;
/** Attempts of one operation that keeps failing as busy, each after SQLite's own busy wait. */
const BUSY_ATTEMPTS = 6;
const BUSY_BASE_DELAY_MS = 10;
const BUSY_MAX_DELAY_MS = 500;

const DEFAULT_WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024;
/** Operations that never write, so they do not postpone the idle checkpoint. */
const READ_ONLY = new Set([
  "getRun",
  "getStepResults",
  "listEvents",
  "listRuns",
  "listSchedules",
  "dueSchedules",
  "checkpoint",
]);

/** How an operation uses its connection: single statements, or one write transaction. */
type Mode = "statements" | "transaction";

/**
 * The storage contract on a SQL database, written once for every driver: a driver only runs
 * statements, and everything else (SQL text, transactions, migrations, retries) is here.
 *
 * Each method is one transaction or one statement, so each is atomic, as
 * {@linkcode StorageAdapter} requires. A statement that finds the database locked waits up to
 * `busyTimeoutMs`, and an operation that still fails as busy is retried from the start with
 * jittered exponential backoff, then rejects with a {@linkcode StorageError} of kind `"busy"`.
 * Driver failures reject with a `StorageError` whose `kind` tells what happened and whose `cause`
 * is the driver's error; malformed arguments reject with kind `"other"`; after
 * {@linkcode SqlStorage.close}, every method rejects with kind `"closed"`.
 *
 * @example Run a storage on a driver
 * ```ts
 * import type { SqlDriver } from "@reflow/core";
 *
 * async function firstRunStatus(driver: SqlDriver): Promise<string | undefined> {
 *   await using storage = new SqlStorage(driver, { synchronous: "FULL" });
 *   await storage.initialize();
 *   const { run } = await storage.createRun({
 *     id: crypto.randomUUID(),
 *     workflowName: "signup",
 *     input: "{}",
 *     idempotencyKey: null,
 *     createdAt: Date.now(),
 *   });
 *   return run.status; // "pending"
 * }
 * ```
 */
export class SqlStorage implements StorageAdapter, AsyncDisposable {
  #driver: SqlDriver;
  #dialect: Dialect;
  #schemaVersion: number;
  #setup: readonly SqlStatement[];
  #clock: () => number;
  #newId: () => string;
  #busyTimeoutMs: number;
  #idleCheckpointMs: number | null;
  /** Writes so far, and the count when the idle timer was armed: unchanged when it fires means idle. */
  #writes = 0;
  #writesAtArm = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** The sessions (connections) already set up; drivers without sessions have one connection. */
  #configured = new WeakSet<object>();
  /** The database server's clock minus this host's, where the dialect has a server clock. */
  #clockOffset = 0;
  #clockSyncedAt = -Infinity;
  #clockSync: Promise<void> | undefined;
  #watchers = new Set<() => void>();
  #subscription: Promise<SqlSubscription | undefined> | undefined;
  /**
   * The database server's clock (ms since the epoch): this host's clock (`now`) corrected by the
   * offset measured at `initialize()` and every minute after. Present only for a database that
   * several hosts share (PostgreSQL), so that an engine on it computes leases and due times on
   * one clock whatever its host's clock says; absent for SQLite, whose host is the worker's.
   */
  readonly currentTime?: () => number;
  #closed = false;
  /** Concurrent runs' advances share transactions (or statements); see {@linkcode GroupCommit}. */
  #advances = new GroupCommit<Advance, boolean>(
    (group) =>
      this.#run(
        "advanceRun",
        this.#dialect.advancesAtomic(group) ? "statements" : "transaction",
        (c) => this.#dialect.advanceRuns(c, group),
      ),
    (error) => error instanceof StorageError && error.kind === "busy",
  );

  /**
   * Creates a storage over a driver. Nothing is sent to the database until the first call.
   *
   * @param driver The driver; {@linkcode SqlStorage.close} closes it.
   * @param options SQLite durability and lock waiting, the clock and the lease ids.
   * @throws {ConfigError} If the driver's dialect is not supported or an option is invalid.
   */
  constructor(driver: SqlDriver, options?: SqlStorageOptions) {
    const dialect = isObject(driver) && Object.hasOwn(DIALECTS, driver.dialect as string)
      ? DIALECTS[driver.dialect]
      : undefined;
    if (dialect === undefined) {
      const name = isObject(driver) ? describe(driver.dialect) : describe(driver);
      const known = Object.keys(DIALECTS).map((key) => JSON.stringify(key)).join(" or ");
      throw new ConfigError(`Unsupported SQL driver dialect ${name}: expected ${known}`, {
        field: "driver",
      });
    }
    const {
      synchronous,
      busyTimeoutMs,
      now,
      newId,
      walAutocheckpointPages,
      walSizeLimitBytes,
      idleCheckpointMs,
    } = checkSqlStorageOptions(options);
    this.#driver = driver;
    this.#dialect = dialect;
    this.#schemaVersion = dialect.migrations[dialect.migrations.length - 1]!.version;
    this.#setup = dialect.connectionSetup({
      synchronous,
      busyTimeoutMs,
      walAutocheckpointPages,
      walSizeLimitBytes,
    });
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#clock = now;
    this.#newId = newId;
    this.#idleCheckpointMs = idleCheckpointMs;
    if (dialect.serverClock !== null) {
      this.currentTime = () => {
        if (this.#clock() - this.#clockSyncedAt >= CLOCK_SYNC_INTERVAL_MS && !this.#closed) {
          // In the background: a failed measurement keeps the last offset and is tried again later.
          this.#clockSync ??= this.#syncClock().catch(() => {}).finally(() => this.#clockSync = undefined);
        }
        return this.#now();
      };
    }
  }

  /**
   * Checks the file, switches it to WAL and applies pending schema migrations, in one `BEGIN
   * IMMEDIATE` transaction that checks the file again under the write lock, so concurrent
   * callers (other processes included) apply each migration exactly once. A database already
   * at this version is only read. Every check comes before the first write or lasting setting
   * (WAL is one), so a file that is refused is left byte for byte as it was. A reflow-ts 0.7
   * database (its `workflow_*` tables) is imported in the same transaction, its tables kept; see
   * `sqlite/reflow_ts_import.ts`.
   *
   * @returns When the schema is current.
   * @throws {StorageError} Kind `"schema"`, changing nothing, if the database was written by a
   *   newer Reflow, its schema version table holds no valid version, or it has tables or indexes of
   *   Reflow's names that its version does not account for (another program's); kind
   *   `"corrupt"` if the file is not a database; kind `"closed"` after close.
   */
  async initialize(): Promise<void> {
    const op = "initialize";
    const dialect = this.#dialect;
    const latest = this.#schemaVersion;
    const version = await this.#run(op, "statements", (c) => this.#inspectSchema(op, c));
    if (version !== latest) await this.#migrate(op);
    // Only now that the file is known to be Reflow's (checked, migrated, imported), so that a file
    // this code must not touch keeps even its journal mode.
    await this.#run(op, "statements", async (c) => {
      for (const setup of dialect.databaseSetup) await c.query(setup);
    });
    if (dialect.serverClock !== null) await this.#syncClock();
  }

  /** Applies the pending migrations (and a foreign import) in one write transaction, checking again under its lock. */
  async #migrate(op: string): Promise<void> {
    const dialect = this.#dialect;
    const latest = this.#schemaVersion;
    await this.#run(op, "transaction", async (c) => {
      // First, before any read: a lock taken later would let two initialisers read the same version.
      if (dialect.migrationLock !== null) await c.query(dialect.migrationLock);
      const current = await this.#inspectSchema(op, c);
      for (const migration of dialect.migrations) {
        if (migration.version <= current) continue;
        for (const sql of migration.statements) await c.execute({ sql, params: [] });
      }
      // A file Reflow never opened may hold another engine's tables (a reflow-ts 0.7 database).
      if (current === 0) await dialect.importForeign?.(c, this.#clock());
      if (current < latest) await c.execute(dialect.writeSchemaVersion(latest));
    });
  }

  /**
   * Stores a new `pending` run due at `createdAt`, or returns the run of the same workflow that
   * already holds `idempotencyKey`; the check and the insert are one statement.
   *
   * @param run The run to store.
   * @returns The stored or existing run and whether it was created.
   * @throws {StorageError} Kind `"unique"` if a run with that id exists; kind `"other"` for
   *   malformed input.
   */
  async createRun(run: NewRun): Promise<CreateRunResult> {
    const op = "createRun";
    this.#open(op);
    const checked = checkNewRun(op, run);
    // Two statements without a transaction, the common case's cheapest form. A purge may delete
    // the key's holder between them; then again in one transaction, where nothing can.
    // The dialect's insert wakes other processes' idle workers itself when it stores the run.
    const insert = (c: SqlConnection) => insertRun(this.#dialect, c, checked);
    return await takenRunId(op, checked.id, async () => {
      return await this.#run(op, "statements", insert) ?? await this.#run(op, "transaction", insert) ??
        notFound(op, checked.id);
    });
  }

  /**
   * Claims the oldest due run at `staleBefore` (default: the clock) with a 30 s lease, as
   * {@linkcode SqlStorage.claimRuns} with a limit of 1.
   *
   * @param workflowNames The workflows to claim from.
   * @param staleBefore The claim time.
   * @returns The claimed run, or null when none is due.
   * @throws {StorageError} On a driver failure or malformed input.
   */
  async claimNextRun(workflowNames: readonly string[], staleBefore?: number): Promise<ClaimedRun | null> {
    const op = "claimNextRun";
    this.#open(op);
    const now = staleBefore === undefined ? this.#now() : checkTime(op, "staleBefore", staleBefore);
    return (await this.#claim(op, workflowNames, 1, now, CLAIM_NEXT_LEASE_MS))[0] ?? null;
  }

  /**
   * Claims up to `limit` due runs in one `BEGIN IMMEDIATE` transaction: one query walks the claim
   * index in `(dueAt, creation)` order, one update per run takes it with a fresh lease, and one
   * query reads the steps of the runs claimed before (`claimCount > 1`). On PostgreSQL the claim
   * is one `FOR UPDATE SKIP LOCKED` statement, sent without a transaction.
   *
   * @param request What to claim; a `limit` of 0 claims nothing.
   * @returns The claimed runs, in claim order.
   * @throws {StorageError} On a driver failure or malformed input.
   */
  async claimRuns(request: ClaimRequest): Promise<ClaimedRun[]> {
    const op = "claimRuns";
    this.#open(op);
    const { workflowNames, limit, now, leaseDurationMs, instanceId } = checkClaimRequest(op, request);
    return await this.#claim(op, workflowNames, limit, now, leaseDurationMs, instanceId);
  }

  /**
   * Makes the unexpired leases taken with `instanceId` due at `now`, in one statement.
   *
   * @param instanceId The restarted engine's instance id.
   * @param now The current time.
   * @returns How many runs were made due.
   * @throws {StorageError} On a driver failure or malformed arguments.
   */
  async expireInstanceLeases(instanceId: string, now: number): Promise<number> {
    const op = "expireInstanceLeases";
    this.#open(op);
    const prefix = `${checkInstanceId(op, instanceId)}:`;
    const time = checkTime(op, "now", now);
    const expire = this.#dialect.expireInstanceLeases(prefix, time);
    return (await this.#run(op, "statements", (c) => c.execute(expire))).changes;
  }

  /**
   * Renews a lease, fenced by it, in one statement.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param leaseExpiresAt The new expiry (default: the clock plus the claim's lease duration).
   * @returns Whether the lease was held and renewed.
   * @throws {StorageError} On a driver failure or a non-finite expiry.
   */
  async heartbeatRun(runId: string, leaseId: string, leaseExpiresAt?: number): Promise<boolean> {
    const op = "heartbeatRun";
    this.#open(op);
    const expiry = leaseExpiresAt === undefined ? null : checkTime(op, "leaseExpiresAt", leaseExpiresAt);
    if (typeof runId !== "string" || typeof leaseId !== "string") return false;
    const renew = this.#dialect.heartbeatRun(runId, leaseId, expiry, expiry === null ? this.#now() : 0);
    return (await this.#run(op, "statements", (c) => c.execute(renew))).changes === 1;
  }

  /**
   * Reads a run.
   *
   * @param runId The run.
   * @returns The run, or null when there is none with that id.
   * @throws {StorageError} On a driver failure.
   */
  async getRun(runId: string): Promise<WorkflowRun | null> {
    const op = "getRun";
    this.#open(op);
    if (typeof runId !== "string") return null;
    const rows = await this.#run(op, "statements", (c) => c.query(this.#dialect.selectRun(runId)));
    return rows[0] === undefined ? null : toRun(rows[0]);
  }

  /**
   * Reads a run's step results.
   *
   * @param runId The run.
   * @returns Its step results in first-written order; empty for an unknown run.
   * @throws {StorageError} On a driver failure.
   */
  async getStepResults(runId: string): Promise<StepResult[]> {
    const op = "getStepResults";
    this.#open(op);
    if (typeof runId !== "string") return [];
    const rows = await this.#run(op, "statements", (c) => c.query(this.#dialect.selectSteps(runId)));
    return rows.map(toStep);
  }

  /**
   * Reads a run's unconsumed events in one statement, in delivery order.
   *
   * @param runId The run.
   * @returns Its events; empty for an unknown or finished run.
   * @throws {StorageError} On a driver failure.
   */
  async listEvents(runId: string): Promise<StoredEvent[]> {
    const op = "listEvents";
    this.#open(op);
    if (typeof runId !== "string") return [];
    const rows = await this.#run(op, "statements", (c) => c.query(this.#dialect.selectEvents(runId)));
    return rows.map((row) => ({
      name: row.name as string,
      payload: text(row.payload) as string,
      createdAt: Number(row.created_at),
    }));
  }

  /**
   * Inserts or replaces a step result in one statement, fenced by `leaseId` when one is given.
   *
   * @param result The step result.
   * @param leaseId The lease the caller holds, or undefined for an unconditional write.
   * @returns Whether it was written: false if the lease is not held, or if the run does not exist.
   * @throws {StorageError} On a driver failure or a malformed step result.
   */
  async saveStepResult(result: StepResult, leaseId?: string): Promise<boolean> {
    const op = "saveStepResult";
    this.#open(op);
    const step = checkStep(op, result);
    if (leaseId !== undefined && typeof leaseId !== "string") return false;
    const upsert = leaseId === undefined
      ? this.#dialect.upsertStepIfRun(step)
      : this.#dialect.upsertStepIfLeased(step, leaseId);
    return (await this.#run(op, "statements", (c) => c.execute(upsert))).changes === 1;
  }

  /**
   * Sets the status of an unfinished run without a lease check, releasing any lease, in one
   * statement. `pending` and (for a run that was `running`) `sleeping` make it due at once;
   * `waiting` keeps its timeout, or has none if it was `running`.
   *
   * @param runId The run.
   * @param status Any status but `running` (a run cannot be running without a lease).
   * @returns False, changing nothing, if the run does not exist or has finished.
   * @throws {StorageError} On a driver failure or a status that is not a status other than `running`.
   */
  async updateRunStatus(runId: string, status: RunStatus): Promise<boolean> {
    const op = "updateRunStatus";
    this.#open(op);
    checkStatus(op, status, false);
    if (typeof runId !== "string") return false;
    const update = this.#dialect.updateRunStatus(runId, status, this.#now());
    return await this.#run(op, "statements", async (c) => {
      if ((await c.execute(update)).changes !== 1) return false;
      if (!FINISHED.has(status)) await this.#wake(c);
      return true;
    });
  }

  /**
   * Sets the status of a run the caller holds, fenced by the lease, in one statement. Any status
   * but `running` releases the lease; `pending` and `sleeping` make the run due at once,
   * `waiting` waits with no timeout.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param status The new status; `running` only confirms the lease is held.
   * @returns Whether the lease was held and the status written.
   * @throws {StorageError} On a driver failure or an unknown status.
   */
  async updateClaimedRunStatus(runId: string, leaseId: string, status: RunStatus): Promise<boolean> {
    const op = "updateClaimedRunStatus";
    this.#open(op);
    checkStatus(op, status, true);
    if (typeof runId !== "string" || typeof leaseId !== "string") return false;
    if (status === "running") {
      const rows = await this.#run(
        op,
        "statements",
        (c) => c.query(this.#dialect.selectLeaseHeld(runId, leaseId)),
      );
      return rows.length === 1;
    }
    const now = this.#now();
    const dueAt = status === "waiting" || status === "parked" || FINISHED.has(status) ? null : now;
    const park = this.#dialect.parkRun({
      runId,
      leaseId,
      status,
      now,
      dueAt,
      output: undefined,
      error: undefined,
    });
    return await this.#run(op, "statements", async (c) => {
      if ((await c.execute(park)).changes !== 1) return false;
      // A released run is due now: a worker elsewhere may take it.
      if (dueAt !== null) await this.#wake(c);
      return true;
    });
  }

  /**
   * Applies a {@linkcode RunAdvance}, fenced by the lease: the run update (which is the fence)
   * and the step upsert share one `BEGIN IMMEDIATE` transaction (on PostgreSQL, one statement).
   * Advances submitted at the same time (by other runs) share that transaction (or statement) too,
   * each with its own fence and result (group commit): the promise resolves once it has committed,
   * and a failed one rejects every advance in it. A run released due at once wakes idle workers
   * of other processes (PostgreSQL's `NOTIFY`, at most one per group). Without a status the lease
   * is renewed to `leaseExpiresAt` (default: `now` plus the claim's lease duration); `pending` and
   * `sleeping` without a `dueAt` are due at `now`, `waiting` without one never times out.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param change What to write.
   * @returns Whether the lease was held and the change written.
   * @throws {StorageError} On a driver failure, a malformed change, or a step of another run.
   */
  async advanceRun(runId: string, leaseId: string, change: RunAdvance): Promise<boolean> {
    const op = "advanceRun";
    this.#open(op);
    if (!isObject(change)) throw invalid(op, `invalid change ${describe(change)}: expected an object`);
    const now = checkTime(op, "now", change.now);
    const step = change.step === undefined ? undefined : checkStep(op, change.step);
    if (step !== undefined && step.runId !== runId) {
      throw invalid(op, `step ${JSON.stringify(step.stepName)} belongs to run ${JSON.stringify(step.runId)}`);
    }
    const status = change.status === undefined
      ? undefined
      : checkStatus(op, change.status, false) as Exclude<RunStatus, "running">;
    const output = change.output === undefined ? null : checkString(op, "output", change.output);
    const error = change.error === undefined ? null : checkError(op, "error", change.error);
    const dueAt = change.dueAt === undefined ? undefined : checkTimeOrNull(op, "dueAt", change.dueAt);
    const leaseExpiresAt = change.leaseExpiresAt === undefined
      ? null
      : checkTime(op, "leaseExpiresAt", change.leaseExpiresAt);
    if (typeof runId !== "string" || typeof leaseId !== "string") return false;

    let move: Renewal | Park;
    if (status === undefined) {
      move = { runId, leaseId, status: "running", now, expiry: leaseExpiresAt };
    } else {
      const due = status === "waiting" || status === "parked" ? dueAt ?? null : dueAt ?? now;
      move = {
        runId,
        leaseId,
        status,
        now,
        dueAt: FINISHED.has(status) ? null : due,
        output: status === "completed" ? output : undefined,
        error: status === "completed" ? null : status === "failed" || status === "parked" ? error : undefined,
      };
    }
    return await this.#advances.submit({ move, step });
  }

  /**
   * Stores an event for an unfinished run and wakes the run if it is `waiting` on a step result
   * of the event's name with status `waiting`, in one `BEGIN IMMEDIATE` transaction: the insert
   * (which checks the run) and the wake. A woken run's `dueAt` is lowered to `event.createdAt`
   * (an earlier timeout stays) and its `updatedAt` raised to it.
   *
   * @param runId The run.
   * @param event The event.
   * @returns False, storing nothing, if the run does not exist or has finished, its wait of that
   *   name is over, or an event of that name is already stored.
   * @throws {StorageError} On a driver failure or a malformed event.
   */
  async deliverEvent(runId: string, event: NewEvent): Promise<boolean> {
    const op = "deliverEvent";
    this.#open(op);
    if (!isObject(event)) throw invalid(op, `invalid event ${describe(event)}: expected an object`);
    const name = checkName(op, "event name", event.name);
    const payload = checkString(op, "event payload", event.payload);
    const createdAt = checkTime(op, "event createdAt", event.createdAt);
    if (typeof runId !== "string") return false;
    const delivery = { name, payload, createdAt };
    return await this.#run(op, "transaction", async (c) => {
      if (!await this.#dialect.deliverEvent(c, runId, delivery)) return false;
      await this.#wake(c);
      return true;
    });
  }

  /**
   * Resolves a wait in one `BEGIN IMMEDIATE` transaction, fenced by the lease: one query checks
   * the lease and finds the unconsumed event of the name; then either the event is deleted and
   * committed as the step's result, or (with none and `timeoutAt` passed) the wait and the run
   * are failed with `timeoutError`, or the run is parked as `waiting` until `timeoutAt` with a
   * `waiting` step result.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param wait The time, the wait's name, its timeout and the error of a timeout.
   * @returns `received` with the payload, `parked`, `timedOut`, or `lost` if the lease is not held.
   * @throws {StorageError} On a driver failure or a malformed wait.
   */
  async awaitEvent(runId: string, leaseId: string, wait: EventWait): Promise<EventWaitResult> {
    const op = "awaitEvent";
    this.#open(op);
    const { now, stepName, timeoutAt, timeoutError } = checkEventWait(op, wait);
    if (typeof runId !== "string" || typeof leaseId !== "string") return { outcome: "lost" };
    const dialect = this.#dialect;
    return await this.#run(op, "transaction", async (c): Promise<EventWaitResult> => {
      const found = await dialect.findWait(c, runId, leaseId, stepName);
      if (!found.held) return { outcome: "lost" };
      if (found.event !== null) {
        const { seq } = found.event;
        const payload = text(found.event.payload) as string;
        await c.execute(dialect.deleteEvent(seq));
        await c.execute(dialect.upsertStep(waitStepResult(runId, stepName, now, { payload })));
        return { outcome: "received", payload };
      }
      // findWait checked the lease under a lock this transaction keeps, so neither write can miss,
      // and an event sent meanwhile waits for that lock, then finds the wait over and is refused.
      const timedOut = timeoutAt !== null && timeoutAt <= now;
      const result = waitStepResult(runId, stepName, now, timedOut ? { error: timeoutError } : { timeoutAt });
      const held = { runId, leaseId, now, output: undefined } as const;
      await c.execute(dialect.parkRun(
        timedOut
          ? { ...held, status: "failed", dueAt: null, error: timeoutError }
          : { ...held, status: "waiting", dueAt: timeoutAt, error: undefined },
      ));
      await c.execute(dialect.upsertStep(result));
      return { outcome: timedOut ? "timedOut" : "parked" };
    });
  }

  /**
   * Reads one page of runs in one query that walks an index in page order: `(created_at, id)`,
   * `(status, created_at, id)` (one arm per status, merged) or `(workflow_name, created_at, id)`.
   *
   * @param query The filters, the page size and the cursor.
   * @returns The runs of the page.
   * @throws {StorageError} On a driver failure or a malformed query.
   */
  async listRuns(query: RunQuery): Promise<WorkflowRun[]> {
    const op = "listRuns";
    this.#open(op);
    const page = this.#dialect.selectRunsPage(checkRunQuery(op, query));
    return (await this.#run(op, "statements", (c) => c.query(page))).map(toRun);
  }

  /**
   * Counts runs per status in one query, each arm reading at most `cap` entries of the status index.
   *
   * @param cap The most counted per status (an integer >= 1).
   * @returns The count of every status.
   * @throws {StorageError} On a driver failure or a malformed `cap`.
   */
  async countRuns(cap: number): Promise<RunCounts> {
    const op = "countRuns";
    this.#open(op);
    const limit = checkLimit(op, cap, 1);
    const count = this.#dialect.countRuns(RUN_STATUSES, limit);
    const counts = zeroCounts();
    for (const row of await this.#run(op, "statements", (c) => c.query(count))) {
      counts[row.status as RunStatus] = Number(row.n);
    }
    return counts;
  }

  /**
   * Re-queues a `failed` or `cancelled` run in one `BEGIN IMMEDIATE` transaction: the update,
   * then (if it matched) the deletion of its `failed` step results and leftover events.
   *
   * @param runId The run.
   * @param now The current time.
   * @returns False, changing nothing, for an unknown run or any other status.
   * @throws {StorageError} On a driver failure or a non-finite `now`.
   */
  async requeueRun(runId: string, now: number): Promise<boolean> {
    const op = "requeueRun";
    this.#open(op);
    checkTime(op, "now", now);
    if (typeof runId !== "string") return false;
    const dialect = this.#dialect;
    return await this.#run(op, "transaction", async (c) => {
      // MemoryStorage drops a run's events when it finishes; the SQL storage leaves them until now.
      // Before the update, which changes the status the delete asks about (a parked run keeps them).
      await c.execute(dialect.deleteEventsOfFinishedRun(runId));
      if ((await c.execute(dialect.requeueRun(runId, now))).changes !== 1) return false;
      await c.execute(dialect.deleteFailedSteps(runId));
      await this.#wake(c);
      return true;
    });
  }

  /**
   * Records the version a held run continues under, fenced by the lease, in one statement.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param workflowVersion The version.
   * @returns Whether the lease was held and the version written.
   * @throws {StorageError} On a driver failure or a version that is not a string.
   */
  async updateRunVersion(runId: string, leaseId: string, workflowVersion: string): Promise<boolean> {
    const op = "updateRunVersion";
    this.#open(op);
    checkName(op, "workflowVersion", workflowVersion);
    if (typeof runId !== "string" || typeof leaseId !== "string") return false;
    const update = this.#dialect.updateRunVersion(runId, leaseId, workflowVersion);
    return (await this.#run(op, "statements", (c) => c.execute(update))).changes === 1;
  }

  /**
   * Stores workflow version shapes in one transaction, keeping the first shape stored for each
   * name and version.
   *
   * @param versions The records.
   * @returns When committed.
   * @throws {StorageError} On a driver failure or a malformed record.
   */
  async saveWorkflowVersions(versions: readonly WorkflowVersionRecord[]): Promise<void> {
    const op = "saveWorkflowVersions";
    this.#open(op);
    const checked = checkWorkflowVersions(op, versions);
    if (checked.length === 0) return;
    const dialect = this.#dialect;
    await this.#run(op, "transaction", async (c) => {
      for (const record of checked) await c.execute(dialect.insertWorkflowVersion(record));
    });
  }

  /**
   * Reads every stored workflow version.
   *
   * @returns The records, by workflow name, then version.
   * @throws {StorageError} On a driver failure.
   */
  async listWorkflowVersions(): Promise<WorkflowVersionRecord[]> {
    const op = "listWorkflowVersions";
    this.#open(op);
    const select = this.#dialect.selectWorkflowVersions();
    const rows = await this.#run(op, "statements", (c) => c.query(select));
    return rows.map((row) => ({
      workflowName: row.workflow_name as string,
      version: row.version as string,
      shape: text(row.shape) as string,
      createdAt: Number(row.created_at),
    }));
  }

  /**
   * Creates or replaces a schedule in one transaction: it reads the stored schedule under a lock
   * (SQLite's write lock, a row lock elsewhere), then writes the merged record; a new key is
   * inserted only if no concurrent caller inserted it first (then the merge is made on theirs).
   *
   * @param schedule The schedule.
   * @returns The stored schedule and whether the key was new.
   * @throws {StorageError} On a driver failure or a malformed schedule.
   */
  async upsertSchedule(schedule: NewSchedule): Promise<UpsertScheduleResult> {
    const op = "upsertSchedule";
    this.#open(op);
    const checked = checkNewSchedule(op, schedule);
    const dialect = this.#dialect;
    return await this.#run(op, "transaction", async (c) => {
      for (;;) {
        const [row] = await c.query(dialect.lockSchedule(checked.key));
        const result = upsertedSchedule(row === undefined ? null : toSchedule(row), checked);
        if (row !== undefined) {
          await c.execute(dialect.upsertSchedule(result.schedule));
        } else if ((await c.execute(dialect.insertSchedule(result.schedule))).changes !== 1) {
          // Another caller's insert of the key committed in between: merge on theirs.
          continue;
        }
        await this.#wake(c);
        return result;
      }
    });
  }

  /**
   * Deletes a schedule in one statement.
   *
   * @param key The schedule's key.
   * @returns Whether it existed.
   * @throws {StorageError} On a driver failure or a key that is not a string.
   */
  async deleteSchedule(key: string): Promise<boolean> {
    const op = "deleteSchedule";
    this.#open(op);
    const remove = this.#dialect.deleteSchedule(checkName(op, "key", key));
    return (await this.#run(op, "statements", (c) => c.execute(remove))).changes === 1;
  }

  /**
   * Reads every schedule.
   *
   * @returns The schedules, ordered by key.
   * @throws {StorageError} On a driver failure.
   */
  async listSchedules(): Promise<ScheduleRecord[]> {
    const op = "listSchedules";
    this.#open(op);
    return (await this.#run(op, "statements", (c) => c.query(this.#dialect.selectSchedules()))).map(
      toSchedule,
    );
  }

  /**
   * Reads the due schedules of the given workflows in one query on the `(next_run_at, key)` index.
   *
   * @param workflowNames The workflows.
   * @param now The current time.
   * @param limit At most this many (an integer >= 0).
   * @returns The due schedules, earliest first, ties by key.
   * @throws {StorageError} On a driver failure or a malformed argument.
   */
  async dueSchedules(
    workflowNames: readonly string[],
    now: number,
    limit: number,
  ): Promise<ScheduleRecord[]> {
    const op = "dueSchedules";
    this.#open(op);
    const names = checkNames(op, workflowNames);
    const select = this.#dialect.selectDueSchedules(
      names,
      checkTime(op, "now", now),
      checkLimit(op, limit, 0),
    );
    if (limit === 0 || names.length === 0) return [];
    return (await this.#run(op, "statements", (c) => c.query(select))).map(toSchedule);
  }

  /**
   * Claims a schedule's slot in one transaction: reads the schedule under a lock (SQLite's write
   * lock, a row lock elsewhere), and only if its `nextRunAt` is still `slot` creates the run (as
   * {@linkcode SqlStorage.createRun}) and moves the schedule to `nextRunAt`.
   *
   * @param key The schedule's key.
   * @param slot The slot, as read from `nextRunAt`.
   * @param nextRunAt The slot after it (> `slot`).
   * @param run The run to create.
   * @returns The run's creation result, or null when the slot was not there to claim.
   * @throws {StorageError} Kind `"unique"`, changing nothing, if the run id is taken; kind
   *   `"other"` for malformed input.
   */
  async claimScheduleSlot(
    key: string,
    slot: number,
    nextRunAt: number,
    run: NewRun,
  ): Promise<CreateRunResult | null> {
    const op = "claimScheduleSlot";
    this.#open(op);
    const checked = checkSlotClaim(op, key, slot, nextRunAt, run);
    const dialect = this.#dialect;
    return await takenRunId(op, checked.id, () =>
      this.#run(op, "transaction", async (c) => {
        const [row] = await c.query(dialect.lockSchedule(key));
        const schedule = row === undefined ? null : toSchedule(row);
        if (schedule === null || schedule.nextRunAt !== slot) return null;
        const result = await insertRun(dialect, c, checked) ?? notFound(op, checked.id);
        await c.execute(
          dialect.upsertSchedule(claimedSchedule(schedule, nextRunAt, result.run.id, checked.createdAt)),
        );
        return result;
      }));
  }

  /**
   * Deletes up to `limit` finished runs in one transaction: one query walks
   * the status index from the oldest run of each status, then their steps, events and rows are
   * deleted.
   *
   * @param request The cutoff, the statuses and the limit.
   * @returns How many runs were deleted.
   * @throws {StorageError} On a driver failure or a malformed request.
   */
  async purgeRuns(request: PurgeRequest): Promise<number> {
    const op = "purgeRuns";
    this.#open(op);
    const checked = checkPurgeRequest(op, request);
    if (checked.limit === 0) return 0;
    const dialect = this.#dialect;
    const select = dialect.selectPurgeable(checked);
    return await this.#run(op, "transaction", async (c) => {
      const rows = await c.query(select);
      if (rows.length === 0) return 0;
      const runIds = rows.map((row) => row.id as string);
      await c.execute(dialect.deleteStepsOfRuns(runIds));
      await c.execute(dialect.deleteEventsOfRuns(runIds));
      await c.execute(dialect.deleteRuns(rows.map((row) => Number(row.seq))));
      return rows.length;
    });
  }

  /**
   * Checkpoints the write-ahead log into the database and truncates it to zero bytes, without
   * waiting for other connections: if one of them is reading or writing, nothing is done and
   * false is returned. The storage does this by itself after `idleCheckpointMs` without a write
   * and after a write fails because the disk is full; call it to give the space back at once.
   *
   * @example Shrink the WAL after a burst of writes
   * ```ts
   * import type { SqlDriver } from "./driver.ts";
   *
   * async function compact(driver: SqlDriver): Promise<boolean> {
   *   await using storage = new SqlStorage(driver, { idleCheckpointMs: null });
   *   await storage.initialize();
   *   return await storage.checkpoint();
   * }
   * ```
   *
   * @returns Whether the whole WAL was checkpointed and truncated (true also when not in WAL mode).
   * @throws {StorageError} On a driver failure; kind `"closed"` after close.
   */
  async checkpoint(): Promise<boolean> {
    const op = "checkpoint";
    this.#open(op);
    return await this.#run(op, "statements", (c) => this.#dialect.checkpoint(c, this.#busyTimeoutMs));
  }

  /**
   * Closes the driver after the operations in progress. Later calls reject with a
   * {@linkcode StorageError} of kind `"closed"`; closing again does nothing.
   *
   * @returns When closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#watchers.clear();
    await this.#unsubscribe();
    await this.#clockSync;
    await this.#driver.close();
  }

  /**
   * Calls `listener` when another process may have made work due: a run created, an event
   * delivered, a run released or re-queued, a schedule changed. Only where the driver can listen
   * for the database's notifications (PostgreSQL's `LISTEN`); elsewhere it is never called, and
   * the engine's poll finds such work.
   *
   * @param listener Called with no arguments, possibly for work this process made itself.
   * @returns A function that ends the calls.
   */
  watch(listener: () => void): () => void {
    const { listen } = this.#dialect;
    if (listen === null || typeof this.#driver.listen !== "function" || this.#closed) return () => {};
    this.#watchers.add(listener);
    const notify = () => {
      for (const watcher of this.#watchers) watcher();
    };
    // Once subscribed, a call: work made due before the subscription took effect was not notified.
    this.#subscription ??= this.#driver.listen(listen, notify).then((subscription) => {
      notify();
      return subscription;
    }, () => {
      // Without notifications the engine still polls; the next watch() tries again.
      this.#subscription = undefined;
      return undefined;
    });
    return () => {
      if (this.#watchers.delete(listener) && this.#watchers.size === 0) void this.#unsubscribe();
    };
  }

  /**
   * Closes the storage, for `await using`.
   *
   * @returns When closed.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #claim(
    op: string,
    workflowNames: readonly string[],
    limit: number,
    now: number,
    leaseDurationMs: number,
    instanceId?: string,
  ): Promise<ClaimedRun[]> {
    if (!Array.isArray(workflowNames)) {
      throw invalid(op, `invalid workflowNames ${describe(workflowNames)}: expected an array of names`);
    }
    const names = workflowNames.filter((name) => typeof name === "string");
    if (limit === 0 || names.length === 0) return [];
    const dialect = this.#dialect;
    const plan = {
      names,
      limit,
      now,
      expiry: now + leaseDurationMs,
      leaseMs: leaseDurationMs,
      newLeaseId: instanceId === undefined ? this.#newId : () => `${instanceId}:${this.#newId()}`,
    };
    const claimedRuns = (claimed: readonly ClaimedRow[]) =>
      claimed.map(({ row, leaseId }): ClaimedRun => ({
        ...toRun(row),
        leaseId,
        steps: [],
        recoveries: Number(row.recoveries),
      }));
    if (!dialect.claimAtomic) {
      return await this.#run(op, "transaction", async (c) => {
        return await withSteps(dialect, c, claimedRuns(await dialect.claim(c, plan)));
      });
    }
    const runs = claimedRuns(await this.#run(op, "statements", (c) => dialect.claim(c, plan)));
    // The claim has committed: a failed read of the steps is retried alone. Retrying the claim with
    // it would take other runs and strand these under leases no one holds until they expire.
    if (!runs.some(reclaimed)) return runs;
    return await this.#run(op, "statements", (c) => withSteps(dialect, c, runs));
  }

  /** This host's clock corrected to the database server's (no correction without a server clock). */
  #now(): number {
    return this.#clock() + this.#clockOffset;
  }

  /** Measures the server clock's offset, from the fastest of a few round trips (NTP's estimate). */
  async #syncClock(): Promise<void> {
    const query = this.#dialect.serverClock!;
    let best = Infinity;
    let offset = 0;
    await this.#run("initialize", "statements", async (c) => {
      for (let sample = 0; sample < CLOCK_SAMPLES; sample++) {
        const sent = this.#clock();
        const [row] = await c.query(query);
        const received = this.#clock();
        if (received - sent < best) {
          best = received - sent;
          offset = Number(row!.now) - (sent + received) / 2;
        }
      }
    });
    // An offset within the measurement's uncertainty (half the round trip) is no offset: one host.
    this.#clockOffset = Math.abs(offset) <= best / 2 + 1 ? 0 : Math.round(offset);
    this.#clockSyncedAt = this.#clock();
  }

  /** Sends the dialect's wake-up for other processes' idle workers, inside the caller's transaction. */
  async #wake(connection: SqlConnection): Promise<void> {
    if (this.#dialect.wake !== null) await connection.query(this.#dialect.wake);
  }

  async #unsubscribe(): Promise<void> {
    const subscription = this.#subscription;
    this.#subscription = undefined;
    await (await subscription)?.close();
  }

  #open(operation: string): void {
    if (this.#closed) throw new StorageError(operation, "the storage is closed", { kind: "closed" });
  }

  /**
   * Runs `body` on a connection, inside the dialect's transaction in transaction mode. Retries
   * the whole operation when it fails as busy, and turns driver errors into `StorageError`s.
   */
  async #run<T>(operation: string, mode: Mode, body: (connection: SqlConnection) => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      this.#open(operation);
      let failure: unknown;
      let connection: SqlConnectionLease;
      try {
        connection = await this.#driver.acquire();
      } catch (error) {
        // close() won the race for the connection.
        this.#open(operation);
        throw this.#translate(operation, error);
      }
      let inTransaction = false;
      try {
        const session = connection.session ?? this.#driver;
        if (!this.#configured.has(session)) await this.#configure(connection, session);
        if (mode === "transaction") {
          await connection.execute(this.#dialect.begin);
          inTransaction = true;
        }
        const result = await body(connection);
        if (inTransaction) {
          await connection.execute(this.#dialect.commit);
          inTransaction = false;
        }
        if (!READ_ONLY.has(operation)) this.#wrote();
        return result;
      } catch (error) {
        failure = error;
        if (inTransaction) {
          try {
            await connection.execute(this.#dialect.rollback);
          } catch {
            // SQLite may already have rolled back (after SQLITE_FULL, say); nothing is left to undo.
          }
        }
      } finally {
        connection.release();
      }
      const translated = this.#translate(operation, failure);
      // The WAL may hold most of a small disk: folding it into the database and truncating it
      // gives that space back, so the next write can succeed once the disk has room at all.
      if (translated.kind === "full" && operation !== "checkpoint") await this.#checkpointQuietly();
      if (translated.kind !== "busy" || attempt >= BUSY_ATTEMPTS || failure instanceof ReflowError) {
        throw translated;
      }
      // Full jitter: competing processes that collided spread out instead of colliding again.
      const cap = Math.min(BUSY_MAX_DELAY_MS, BUSY_BASE_DELAY_MS * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
    }
  }

  /** Per-connection settings, once per session: a pool's new connection gets them before its first use. */
  async #configure(connection: SqlConnection, session: object): Promise<void> {
    for (const setup of this.#setup) await connection.query(setup);
    this.#configured.add(session);
  }

  /**
   * Reads the schema version, refusing (before anything is written) a database this code must
   * not touch: a newer version, a version table without a valid version, or tables and indexes
   * that the pending migrations would create and that are already there (not Reflow's).
   */
  async #inspectSchema(operation: string, connection: SqlConnection): Promise<number> {
    const latest = this.#schemaVersion;
    const state = await this.#dialect.readSchemaState(connection);
    const stored = state.version;
    if (stored !== undefined && (typeof stored !== "number" || !Number.isSafeInteger(stored) || stored < 1)) {
      throw refused(operation, `its schema version table holds no valid version (${describe(stored)})`);
    }
    const version = stored ?? 0;
    if (version > latest) {
      throw refused(
        operation,
        `it has Reflow schema version ${version}, newer than version ${latest} that this Reflow knows; ` +
          "upgrade Reflow to use it",
      );
    }
    const foreign = this.#dialect.migrations.filter((m) => m.version > version).flatMap(createdNames)
      .filter((name) => state.present.has(name));
    if (foreign.length > 0) {
      const held = version === 0 ? "no schema version" : `schema version ${version}`;
      throw refused(
        operation,
        `it has ${foreign.join(", ")} with ${held}, so they are not Reflow's (another program's tables?)`,
      );
    }
    return version;
  }

  /** Counts a write and arms the idle checkpoint, which fires once a whole interval passed without one. */
  #wrote(): void {
    this.#writes++;
    if (this.#idleTimer !== undefined || this.#idleCheckpointMs === null) return;
    this.#armIdleCheckpoint(this.#idleCheckpointMs);
  }

  #armIdleCheckpoint(delayMs: number): void {
    this.#writesAtArm = this.#writes;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#closed) return;
      if (this.#writes !== this.#writesAtArm) this.#armIdleCheckpoint(delayMs);
      else void this.#checkpointQuietly();
    }, delayMs);
    // The checkpoint is housekeeping: it must not keep a process alive that is otherwise done.
    (this.#idleTimer as { unref?: () => void }).unref?.();
  }

  /** A checkpoint whose failure changes nothing for the caller (it is retried at the next chance). */
  async #checkpointQuietly(): Promise<void> {
    try {
      if (!this.#closed) await this.checkpoint();
    } catch {
      // Closed meanwhile, or the disk is still full: the next write or idle period tries again.
    }
  }

  #translate(operation: string, error: unknown): StorageError {
    if (error instanceof StorageError) return error;
    if (error instanceof ReflowError) {
      return new StorageError(operation, error.message, { kind: "other", cause: error });
    }
    let kind: StorageErrorKind;
    try {
      kind = this.#driver.classifyError(error);
    } catch {
      kind = "other";
    }
    const message = error instanceof Error ? error.message : describe(error);
    return new StorageError(operation, `${message}${HINTS[kind] ?? ""}`, { kind, cause: error });
  }
}

/** Checks an integer option >= 0 (at most 2^31 - 1, what SQLite's settings and timers take). */
function checkCount(field: string, value: unknown, unit: string, alternative = ""): void {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= 2_147_483_647) {
    return;
  }
  const expected = `an integer number of ${unit} >= 0${alternative === "" ? "" : ` ${alternative}`}`;
  throw new ConfigError(`Invalid ${field} ${describe(value)}: expected ${expected}`, { field });
}

function refused(operation: string, why: string): StorageError {
  return new StorageError(operation, `Cannot use the database: ${why} (nothing was changed)`, {
    kind: "schema",
  });
}

const HINTS: Partial<Record<StorageErrorKind, string>> = {
  busy: " (the database stayed locked by another connection; raise busyTimeoutMs if this persists)",
  corrupt: " (is the path a Reflow database?)",
  readonly: " (the database or its directory is read-only)",
};

/**
 * Stores a checked new run, or reads the run of its workflow that holds its idempotency key;
 * null when neither happened (the holder was deleted between the two statements).
 */
async function insertRun(
  dialect: Dialect,
  connection: SqlConnection,
  run: NewRun,
): Promise<CreateRunResult | null> {
  if ((await connection.execute(dialect.insertRun(run))).changes === 1) {
    return { run: pendingRun(run), created: true };
  }
  const [row] = await connection.query(dialect.selectRunByKey(run.workflowName, run.idempotencyKey));
  return row === undefined ? null : { run: toRun(row), created: false };
}

/** Names the run id in the message of a unique violation that `call` rejects with. */
async function takenRunId<T>(operation: string, id: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof StorageError && error.kind === "unique") {
      throw new StorageError(operation, `a run with id ${JSON.stringify(id)} already exists`, {
        kind: "unique",
        cause: error.cause,
      });
    }
    throw error;
  }
}

/** A run that a transaction neither inserted nor found: only a broken database gets here. */
function notFound(operation: string, id: string): never {
  throw invalid(operation, `run ${JSON.stringify(id)} was neither created nor found`);
}

async function withSteps(
  dialect: Dialect,
  connection: SqlConnection,
  runs: ClaimedRun[],
): Promise<ClaimedRun[]> {
  const runIds = runs.filter(reclaimed).map((run) => run.id);
  if (runIds.length === 0) return runs;
  const rows = await connection.query(dialect.selectStepsOfRuns(runIds));
  const byRun = new Map<string, StepResult[]>();
  for (const row of rows) {
    const step = toStep(row);
    const list = byRun.get(step.runId);
    if (list === undefined) byRun.set(step.runId, [step]);
    else list.push(step);
  }
  return runs.map((run) => reclaimed(run) ? { ...run, steps: byRun.get(run.id) ?? [] } : run);
}

/** Whether a claimed run was claimed before, so that it may have steps to read. */
function reclaimed(run: ClaimedRun): boolean {
  return run.claimCount > 1;
}

// ignoreBOM: a leading U+FEFF is part of the value, not a marker to drop.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** An encoded value read as a blob (see the statements), back to its text. */
function text(value: SqlValue): string | null {
  if (value === null || typeof value === "string") return value;
  if (value instanceof Uint8Array) return utf8.decode(value);
  return String(value);
}

// An error's texts are blobs where the dialect stores them as bytes (PostgreSQL's text holds no NUL).
function toError(row: SqlRow): StoredError | null {
  if (row.error_name === null) return null;
  const error: StoredError = {
    code: text(row.error_code),
    name: text(row.error_name) as string,
    message: text(row.error_message) as string,
  };
  return row.error_step === null ? error : { ...error, stepName: text(row.error_step) as string };
}

function toRun(row: SqlRow): WorkflowRun {
  return {
    id: row.id as string,
    workflowName: row.workflow_name as string,
    workflowVersion: row.workflow_version as string | null,
    status: row.status as RunStatus,
    input: text(row.input) as string,
    output: text(row.output),
    error: toError(row),
    idempotencyKey: row.idempotency_key as string | null,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    dueAt: row.due_at as number | null,
    leaseId: row.lease_id as string | null,
    claimCount: row.claim_count as number,
  };
}

function toStep(row: SqlRow): StepResult {
  return {
    runId: row.run_id as string,
    stepName: row.step_name as string,
    status: row.status as StepResult["status"],
    output: text(row.output),
    error: toError(row),
    attempts: row.attempts as number,
    dueAt: row.due_at as number | null,
    updatedAt: row.updated_at as number,
  };
}

function toSchedule(row: SqlRow): ScheduleRecord {
  return {
    key: row.key as string,
    workflowName: row.workflow_name as string,
    input: text(row.input) as string,
    recurrence: text(row.recurrence) as string,
    nextRunAt: row.next_run_at as number,
    lastRunAt: row.last_run_at as number | null,
    lastRunId: row.last_run_id as string | null,
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
  };
}
