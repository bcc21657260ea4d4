/**
 * An in-memory {@linkcode StorageAdapter}: for tests and ephemeral work, with no durability
 * across process exit.
 *
 * @module
 */

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
  REQUEUEABLE,
} from "./checks.ts";
import { claimedSchedule, pendingRun, upsertedSchedule, waitStepResult, zeroCounts } from "./records.ts";
import { ConfigError, StorageError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
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
} from "./adapter.ts";

/** Options for {@linkcode MemoryStorage}. */
export interface MemoryStorageOptions {
  /**
   * The clock (ms since the epoch), read only by methods that take no time: `claimNextRun()`
   * without `staleBefore`, `heartbeatRun()` without an expiry, `updateRunStatus()` and
   * `updateClaimedRunStatus()`. Default: `Date.now`.
   */
  readonly now?: () => number;
}

const MEMORY_STORAGE_OPTION_KEYS: OptionKeys<MemoryStorageOptions> = { now: true };

// The mutable stored form of a run, plus its place in the claim index.
interface RunRecord {
  readonly id: string;
  readonly workflowName: string;
  workflowVersion: string | null;
  status: RunStatus;
  readonly input: string;
  output: string | null;
  error: StoredError | null;
  readonly idempotencyKey: string | null;
  readonly createdAt: number;
  updatedAt: number;
  dueAt: number | null;
  leaseId: string | null;
  claimCount: number;
  /** See {@linkcode ClaimedRun.recoveries}. */
  recoveries: number;
  /** Creation order: breaks dueAt ties. */
  readonly seq: number;
  /** Bumped whenever the run's index entry is replaced or removed, so older entries read as stale. */
  version: number;
  /** Whether the run has a live index entry (it is claimable at some time). */
  indexed: boolean;
  /** The key of the live entry; may lag behind `dueAt` for a running run whose lease was extended. */
  indexKey: number;
  /** The lease duration its last claim asked for, for heartbeats without an expiry. */
  leaseDurationMs: number;
}

interface IndexEntry {
  readonly key: number;
  readonly seq: number;
  readonly runId: string;
  readonly version: number;
}

/** The lease `claimNextRun()` takes, as the contract fixes it. */
const CLAIM_NEXT_LEASE_MS = 30_000;
/** Below this many entries a due queue is never compacted: rebuilding a tiny heap buys nothing. */
const COMPACT_MIN = 64;

function before(a: IndexEntry, b: IndexEntry): boolean {
  return a.key < b.key || (a.key === b.key && a.seq < b.seq);
}

/** A binary min-heap of index entries ordered by (key, creation sequence). */
class DueQueue {
  #entries: IndexEntry[] = [];
  /** How many entries are live; the rest are stale and dropped when they surface or on compaction. */
  live = 0;

  get size(): number {
    return this.#entries.length;
  }

  peek(): IndexEntry | undefined {
    return this.#entries[0];
  }

  push(entry: IndexEntry): void {
    const entries = this.#entries;
    let i = entries.push(entry) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(entry, entries[parent]!)) break;
      entries[i] = entries[parent]!;
      i = parent;
    }
    entries[i] = entry;
  }

  pop(): IndexEntry | undefined {
    const entries = this.#entries;
    const top = entries[0];
    const last = entries.pop();
    if (entries.length > 0 && last !== undefined) this.#siftDown(0, last);
    return top;
  }

  /** Keeps only the entries `keep` accepts, then restores the heap order. */
  retain(keep: (entry: IndexEntry) => boolean): void {
    const kept = this.#entries.filter(keep);
    this.#entries = kept;
    for (let i = (kept.length >> 1) - 1; i >= 0; i--) this.#siftDown(i, kept[i]!);
  }

  #siftDown(start: number, entry: IndexEntry): void {
    const entries = this.#entries;
    const n = entries.length;
    let i = start;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && before(entries[child + 1]!, entries[child]!)) child++;
      if (!before(entries[child]!, entry)) break;
      entries[i] = entries[child]!;
      i = child;
    }
    entries[i] = entry;
  }
}

function copyError(error: StoredError | null): StoredError | null {
  return error === null ? null : { ...error };
}

function copyStep(step: StepResult): StepResult {
  return { ...step, error: copyError(step.error) };
}

function copySchedule(schedule: ScheduleRecord): ScheduleRecord {
  return { ...schedule };
}

function copyRun(record: RunRecord): WorkflowRun {
  return {
    id: record.id,
    workflowName: record.workflowName,
    workflowVersion: record.workflowVersion,
    status: record.status,
    input: record.input,
    output: record.output,
    error: copyError(record.error),
    idempotencyKey: record.idempotencyKey,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    dueAt: record.dueAt,
    leaseId: record.leaseId,
    claimCount: record.claimCount,
  };
}

/**
 * Orders strings by Unicode code point, which is the byte order of their UTF-8 form and so the
 * order of SQLite's BINARY collation. `<` compares UTF-16 code units instead, which puts
 * characters above U+FFFF (surrogate pairs) before U+E000..U+FFFF.
 */
function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

/** Moves surrogates (U+D800..U+DFFF) above U+E000..U+FFFF, keeping every other unit's order. */
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit < 0xe000 ? unit + 0x2000 : unit - 0x800;
}

/** The map key of a workflow version: the two strings cannot run into each other across the NUL. */
function versionKey(workflowName: string, version: string): string {
  return `${workflowName}\u0000${version}`;
}

/** Compares runs in `listRuns()` order: newest first, then by id descending. */
function newerFirst(a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): number {
  return b.createdAt - a.createdAt || compareCodePoints(b.id, a.id);
}

/**
 * An in-memory {@linkcode StorageAdapter}, for tests and ephemeral work. Nothing survives the
 * process. Every method is atomic (it runs to completion without yielding), returns copies
 * of stored records, and copies what it is given.
 *
 * Claims use per-workflow min-heaps over claimable runs ordered by `(dueAt, creation order)`,
 * so a claim costs O(log n) per run examined and never scans runs that are not due; finished
 * runs and `waiting` runs without a timeout are not in the index. Unconsumed events are kept per
 * run and per name in delivery order, so a wait finds its event without scanning, and are dropped
 * when their run finishes.
 *
 * Bad input (a non-object, a value of the wrong type, a non-finite time, a negative or fractional
 * `limit`, an unknown status, a duplicate run id) rejects with a {@linkcode StorageError}; ids,
 * lease ids and workflow names that match nothing are a no-op (`null`, `[]` or `false`).
 * After {@linkcode MemoryStorage.close} every method rejects with a `StorageError` of kind `"closed"`.
 *
 * @example Claim a run and complete it
 * ```ts
 * const storage = new MemoryStorage();
 * await storage.createRun({ id: "r1", workflowName: "signup", input: "{}", idempotencyKey: null, createdAt: 0 });
 *
 * const [run] = await storage.claimRuns({ workflowNames: ["signup"], limit: 1, now: 0, leaseDurationMs: 30_000 });
 * if (run !== undefined) {
 *   await storage.advanceRun(run.id, run.leaseId, { now: 10, status: "completed", output: '"done"' });
 * }
 * console.log((await storage.getRun("r1"))?.status); // completed
 * ```
 */
export class MemoryStorage implements StorageAdapter {
  #clock: () => number;
  #closed = false;
  #seq = 0;
  #runs = new Map<string, RunRecord>();
  /** Step results by run, then by step name; a Map keeps first-insertion order on replace. */
  #steps = new Map<string, Map<string, StepResult>>();
  /** Run ids by workflow name, then by idempotency key. */
  #keys = new Map<string, Map<string, string>>();
  /** The claim index: one queue per workflow name. */
  #queues = new Map<string, DueQueue>();
  /**
   * Unconsumed events by run, then by name: a wait takes one event, so one per name; a Map keeps
   * delivery order, since an event of a name is only stored while none is.
   */
  #events = new Map<string, Map<string, StoredEvent>>();
  /** Schedules by key. */
  #schedules = new Map<string, ScheduleRecord>();
  /** Workflow version shapes by {@linkcode versionKey}. */
  #versions = new Map<string, WorkflowVersionRecord>();

  /**
   * Creates an empty storage.
   *
   * @param options The clock to read where a method takes no time.
   */
  constructor(options?: MemoryStorageOptions) {
    const now = checkOptionKeys(options, MEMORY_STORAGE_OPTION_KEYS, undefined, "MemoryStorage options")?.now;
    if (now !== undefined && typeof now !== "function") {
      throw new ConfigError(`Invalid now ${describe(now)}: expected a function`, { field: "now" });
    }
    this.#clock = now ?? Date.now;
  }

  /**
   * Does nothing but check that the storage is open: there is no schema to create.
   *
   * @returns When done.
   * @throws {StorageError} If the storage is closed.
   */
  initialize(): Promise<void> {
    return this.#run("initialize", () => undefined);
  }

  /**
   * Stores a new `pending` run due at `createdAt`, or returns the run of the same workflow that
   * already holds `idempotencyKey` (writing nothing).
   *
   * @param run The run to store; copied.
   * @returns The stored or existing run and whether it was created.
   * @throws {StorageError} If the storage is closed, the input is malformed, or (kind `"unique"`)
   *   a run with that id already exists.
   */
  createRun(run: NewRun): Promise<CreateRunResult> {
    return this.#run("createRun", (op) => this.#insertRun(op, checkNewRun(op, run)));
  }

  /**
   * Claims the oldest due run of the given workflows with a 30 s lease, as
   * {@linkcode MemoryStorage.claimRuns} with a limit of 1.
   *
   * @param workflowNames The workflows to claim from.
   * @param staleBefore The claim time (default: the clock).
   * @returns The claimed run, or null when none is due.
   * @throws {StorageError} If the storage is closed or the input is malformed.
   */
  claimNextRun(workflowNames: readonly string[], staleBefore?: number): Promise<ClaimedRun | null> {
    return this.#run("claimNextRun", (op) => {
      const now = staleBefore === undefined ? this.#clock() : checkTime(op, "staleBefore", staleBefore);
      return this.#claim(op, workflowNames, 1, now, CLAIM_NEXT_LEASE_MS)[0] ?? null;
    });
  }

  /**
   * Claims up to `limit` due runs of the given workflows, oldest `dueAt` first and ties in
   * creation order, giving each a new lease.
   *
   * @param request What to claim; a `limit` of 0 claims nothing.
   * @returns The claimed runs, in claim order, with their step results.
   * @throws {StorageError} If the storage is closed, `limit` is not an integer >= 0,
   *   `workflowNames` is not an array, or `now`/`leaseDurationMs` is not a finite time (>= 0 for the duration).
   */
  claimRuns(request: ClaimRequest): Promise<ClaimedRun[]> {
    return this.#run("claimRuns", (op) => {
      const { workflowNames, limit, now, leaseDurationMs, instanceId } = checkClaimRequest(op, request);
      return this.#claim(op, workflowNames, limit, now, leaseDurationMs, instanceId);
    });
  }

  /**
   * Makes the unexpired leases taken with `instanceId` due at `now`. Scans every run: it is
   * called once per engine start.
   *
   * @param instanceId The restarted engine's instance id.
   * @param now The current time.
   * @returns How many runs were made due.
   * @throws {StorageError} If the storage is closed or the arguments are malformed.
   */
  expireInstanceLeases(instanceId: string, now: number): Promise<number> {
    return this.#run("expireInstanceLeases", (op) => {
      const prefix = `${checkInstanceId(op, instanceId)}:`;
      const time = checkTime(op, "now", now);
      let expired = 0;
      for (const record of this.#runs.values()) {
        if (record.status !== "running" || !record.leaseId?.startsWith(prefix)) continue;
        if (record.dueAt !== null && record.dueAt <= time) continue;
        record.dueAt = time;
        this.#index(record, time);
        expired++;
      }
      return expired;
    });
  }

  /**
   * Renews a lease, if the caller still holds it.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param leaseExpiresAt The new expiry (default: the clock plus the claim's lease duration).
   * @returns Whether the lease was held and renewed.
   * @throws {StorageError} If the storage is closed or `leaseExpiresAt` is not a finite time.
   */
  heartbeatRun(runId: string, leaseId: string, leaseExpiresAt?: number): Promise<boolean> {
    return this.#run("heartbeatRun", (op) => {
      if (leaseExpiresAt !== undefined) checkTime(op, "leaseExpiresAt", leaseExpiresAt);
      const record = this.#held(runId, leaseId);
      if (record === undefined) return false;
      this.#renew(record, leaseExpiresAt ?? this.#clock() + record.leaseDurationMs);
      return true;
    });
  }

  /**
   * Reads a run.
   *
   * @param runId The run.
   * @returns A copy of the run, or null when there is none with that id.
   * @throws {StorageError} If the storage is closed.
   */
  getRun(runId: string): Promise<WorkflowRun | null> {
    return this.#run("getRun", () => {
      const record = this.#runs.get(runId);
      return record === undefined ? null : copyRun(record);
    });
  }

  /**
   * Reads a run's step results.
   *
   * @param runId The run.
   * @returns Copies of its step results in first-written order; empty for an unknown run.
   * @throws {StorageError} If the storage is closed.
   */
  getStepResults(runId: string): Promise<StepResult[]> {
    return this.#run("getStepResults", () => {
      return this.#stepsOf(runId);
    });
  }

  /**
   * Inserts or replaces a step result, fenced by `leaseId` when one is given.
   *
   * @param result The step result; copied.
   * @param leaseId The lease the caller holds, or undefined for an unconditional write.
   * @returns Whether it was written: false if the lease is not held, or if the run does not exist.
   * @throws {StorageError} If the storage is closed or the step result is malformed.
   */
  saveStepResult(result: StepResult, leaseId?: string): Promise<boolean> {
    return this.#run("saveStepResult", (op) => {
      const step = checkStep(op, result);
      const record = leaseId === undefined ? this.#runs.get(step.runId) : this.#held(step.runId, leaseId);
      if (record === undefined) return false;
      this.#writeStep(step);
      return true;
    });
  }

  /**
   * Sets the status of an unfinished run without a lease check, releasing any lease. `pending`
   * and (for a run that was `running`) `sleeping` make it due at once; `waiting` keeps its
   * timeout, or has none if it was `running`.
   *
   * @param runId The run.
   * @param status Any status but `running` (a run cannot be running without a lease).
   * @returns False, changing nothing, if the run does not exist or has finished.
   * @throws {StorageError} If the storage is closed or `status` is not a status other than `running`.
   */
  updateRunStatus(runId: string, status: RunStatus): Promise<boolean> {
    return this.#run("updateRunStatus", (op) => {
      checkStatus(op, status, false);
      const record = this.#runs.get(runId);
      if (record === undefined || FINISHED.has(record.status)) return false;
      const now = this.#clock();
      const wasRunning = record.status === "running";
      let dueAt: number | null = now;
      if (status === "sleeping" && !wasRunning) dueAt = record.dueAt ?? now;
      else if (status === "waiting") dueAt = wasRunning ? null : record.dueAt;
      else if (status === "parked") dueAt = null;
      this.#park(record, status, now, dueAt);
      return true;
    });
  }

  /**
   * Sets the status of a run the caller holds, fenced by the lease. Any status but `running`
   * releases the lease; `pending` and `sleeping` make the run due at once, `waiting` waits with no timeout.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param status The new status; `running` only confirms the lease is held.
   * @returns Whether the lease was held and the status written.
   * @throws {StorageError} If the storage is closed or `status` is not a run status.
   */
  updateClaimedRunStatus(runId: string, leaseId: string, status: RunStatus): Promise<boolean> {
    return this.#run("updateClaimedRunStatus", (op) => {
      checkStatus(op, status, true);
      const record = this.#held(runId, leaseId);
      if (record === undefined) return false;
      if (status !== "running") {
        const now = this.#clock();
        this.#park(record, status, now, status === "waiting" || status === "parked" ? null : now);
      }
      return true;
    });
  }

  /**
   * Applies a {@linkcode RunAdvance} atomically, fenced by the lease: writes the step (if any)
   * and moves the run to its next status (if any), or changes nothing. Without a status the lease
   * is renewed to `leaseExpiresAt` (default: `now` plus the claim's lease duration); `pending` and
   * `sleeping` without a `dueAt` are due at `now`, `waiting` without one never times out.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param change What to write.
   * @returns Whether the lease was held and the change written.
   * @throws {StorageError} If the storage is closed, the change is malformed, or its step belongs to another run.
   */
  advanceRun(runId: string, leaseId: string, change: RunAdvance): Promise<boolean> {
    return this.#run("advanceRun", (op) => {
      if (!isObject(change)) throw invalid(op, `invalid change ${describe(change)}: expected an object`);
      const now = checkTime(op, "now", change.now);
      const step = change.step === undefined ? undefined : checkStep(op, change.step);
      if (step !== undefined && step.runId !== runId) {
        throw invalid(
          op,
          `step ${JSON.stringify(step.stepName)} belongs to run ${JSON.stringify(step.runId)}`,
        );
      }
      const status = change.status === undefined ? undefined : checkStatus(op, change.status, false);
      const output = change.output === undefined ? null : checkString(op, "output", change.output);
      const error = change.error === undefined ? null : checkError(op, "error", change.error);
      const dueAt = change.dueAt === undefined ? undefined : checkTimeOrNull(op, "dueAt", change.dueAt);
      const leaseExpiresAt = change.leaseExpiresAt === undefined
        ? undefined
        : checkTime(op, "leaseExpiresAt", change.leaseExpiresAt);

      // Every check is done: from here on the change is applied whole or not at all.
      const record = this.#held(runId, leaseId);
      if (record === undefined) return false;
      if (step !== undefined) this.#writeStep(step);
      if (status === undefined) {
        record.updatedAt = now;
        record.recoveries = 0;
        this.#renew(record, leaseExpiresAt ?? now + record.leaseDurationMs);
        return true;
      }
      if (status === "completed") {
        record.output = output;
        record.error = null;
      } else if (status === "failed" || status === "parked") {
        record.error = error;
      }
      const unclaimable = status === "waiting" || status === "parked";
      this.#park(record, status, now, unclaimable ? dueAt ?? null : dueAt ?? now);
      return true;
    });
  }

  /**
   * Stores an event for an unfinished run and, in the same atomic step, wakes the run if it is
   * `waiting` on a step result of the event's name with status `waiting`: its `dueAt` is lowered
   * to `event.createdAt` (a timeout that is earlier stays). The `updatedAt` of a woken run
   * becomes `event.createdAt` unless that is earlier than its current value.
   *
   * @param runId The run.
   * @param event The event; copied.
   * @returns False, storing nothing, if the run does not exist or has finished, its wait of that
   *   name is over, or an event of that name is already stored.
   * @throws {StorageError} If the storage is closed or the event is malformed.
   */
  deliverEvent(runId: string, event: NewEvent): Promise<boolean> {
    return this.#run("deliverEvent", (op) => {
      if (!isObject(event)) throw invalid(op, `invalid event ${describe(event)}: expected an object`);
      const name = checkName(op, "event name", event.name);
      const payload = checkString(op, "event payload", event.payload);
      const createdAt = checkTime(op, "event createdAt", event.createdAt);
      const record = this.#runs.get(runId);
      if (record === undefined || FINISHED.has(record.status)) return false;
      const waitStatus = this.#steps.get(runId)?.get(name)?.status;
      if (waitStatus !== undefined && waitStatus !== "waiting") return false;
      let byName = this.#events.get(runId);
      if (byName?.has(name)) return false;

      if (byName === undefined) this.#events.set(runId, byName = new Map());
      byName.set(name, { name, payload, createdAt });
      if (record.status === "waiting" && waitStatus === "waiting") {
        const dueAt = record.dueAt === null ? createdAt : Math.min(record.dueAt, createdAt);
        record.dueAt = dueAt;
        record.updatedAt = Math.max(record.updatedAt, createdAt);
        this.#index(record, dueAt);
      }
      return true;
    });
  }

  /**
   * Resolves a wait atomically, fenced by the lease: consumes the stored event named
   * `wait.stepName` and commits it as the step's result; or, with none and `timeoutAt` passed,
   * fails the wait and the run with `wait.timeoutError`; or parks the run as `waiting` until
   * `timeoutAt` (null: until an event wakes it).
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param wait The time, the wait's name, its timeout and the error of a timeout.
   * @returns `received` with the payload, `parked`, `timedOut`, or `lost` if the lease is not held.
   * @throws {StorageError} If the storage is closed or the wait is malformed.
   */
  awaitEvent(runId: string, leaseId: string, wait: EventWait): Promise<EventWaitResult> {
    return this.#run("awaitEvent", (op): EventWaitResult => {
      const { now, stepName, timeoutAt, timeoutError } = checkEventWait(op, wait);
      const record = this.#held(runId, leaseId);
      if (record === undefined) return { outcome: "lost" };

      const byName = this.#events.get(runId);
      const payload = byName?.get(stepName)?.payload;
      if (payload !== undefined) {
        byName!.delete(stepName);
        if (byName!.size === 0) this.#events.delete(runId);
        this.#writeStep(waitStepResult(runId, stepName, now, { payload }));
        return { outcome: "received", payload };
      }
      if (timeoutAt !== null && timeoutAt <= now) {
        this.#writeStep(waitStepResult(runId, stepName, now, { error: timeoutError }));
        record.error = timeoutError;
        this.#park(record, "failed", now, null);
        return { outcome: "timedOut" };
      }
      this.#writeStep(waitStepResult(runId, stepName, now, { timeoutAt }));
      this.#park(record, "waiting", now, timeoutAt);
      return { outcome: "parked" };
    });
  }

  /**
   * Reads a run's unconsumed events, in delivery order.
   *
   * @param runId The run.
   * @returns Copies of its events; empty for an unknown or finished run.
   * @throws {StorageError} If the storage is closed.
   */
  listEvents(runId: string): Promise<StoredEvent[]> {
    return this.#run("listEvents", () => [...this.#events.get(runId)?.values() ?? []].map((e) => ({ ...e })));
  }

  /**
   * Reads one page of runs, newest first. Scans every run (O(n log n) in the matches): this
   * storage is for tests and small ephemeral workloads.
   *
   * @param query The filters, the page size and the cursor.
   * @returns Copies of the runs of the page.
   * @throws {StorageError} If the storage is closed or the query is malformed.
   */
  listRuns(query: RunQuery): Promise<WorkflowRun[]> {
    return this.#run("listRuns", (op) => {
      const { statuses, workflowName, limit, before, beforeId } = checkRunQuery(op, query);
      const wanted = statuses === undefined ? undefined : new Set<string>(statuses);
      const cursor = before === undefined ? undefined : { createdAt: before, id: beforeId };
      const page: RunRecord[] = [];
      for (const record of this.#runs.values()) {
        if (wanted !== undefined && !wanted.has(record.status)) continue;
        if (workflowName !== undefined && record.workflowName !== workflowName) continue;
        if (cursor !== undefined) {
          const older = record.createdAt < cursor.createdAt ||
            (record.createdAt === cursor.createdAt && cursor.id !== undefined &&
              compareCodePoints(record.id, cursor.id) < 0);
          if (!older) continue;
        }
        page.push(record);
      }
      return page.sort(newerFirst).slice(0, limit).map(copyRun);
    });
  }

  /**
   * Counts the runs per status, capped. Scans every run (O(n)): this storage is for tests and small
   * ephemeral workloads.
   *
   * @param cap The most counted per status (an integer >= 1).
   * @returns The count of every status.
   * @throws {StorageError} If the storage is closed or `cap` is malformed.
   */
  countRuns(cap: number): Promise<RunCounts> {
    return this.#run("countRuns", (op) => {
      const limit = checkLimit(op, cap, 1);
      const counts = zeroCounts();
      for (const record of this.#runs.values()) {
        counts[record.status] = Math.min(limit, counts[record.status] + 1);
      }
      return counts;
    });
  }

  /**
   * Re-queues a `failed` or `cancelled` run: `pending`, due at `now`, its `failed` step results
   * deleted and the others kept.
   *
   * @param runId The run.
   * @param now The current time.
   * @returns False, changing nothing, for an unknown run or any other status.
   * @throws {StorageError} If the storage is closed or `now` is not a finite time.
   */
  requeueRun(runId: string, now: number): Promise<boolean> {
    return this.#run("requeueRun", (op) => {
      checkTime(op, "now", now);
      const record = this.#runs.get(runId);
      if (record === undefined || !REQUEUEABLE.has(record.status)) return false;
      const steps = this.#steps.get(runId);
      for (const [name, step] of steps ?? []) if (step.status === "failed") steps!.delete(name);
      record.output = null;
      record.error = null;
      this.#park(record, "pending", now, now);
      return true;
    });
  }

  /**
   * Records a run's decision to continue under another version, fenced by the lease.
   *
   * @param runId The run.
   * @param leaseId The lease the caller holds.
   * @param workflowVersion The version it continues under.
   * @returns Whether the lease was held and the version written.
   * @throws {StorageError} If the storage is closed or an argument is not a string.
   */
  updateRunVersion(runId: string, leaseId: string, workflowVersion: string): Promise<boolean> {
    return this.#run("updateRunVersion", (op) => {
      const version = checkName(op, "workflowVersion", workflowVersion);
      const record = this.#held(runId, leaseId);
      if (record === undefined) return false;
      record.workflowVersion = version;
      return true;
    });
  }

  /**
   * Stores workflow version shapes, keeping the first shape stored for each name and version.
   *
   * @param versions The records; copied.
   * @returns When stored.
   * @throws {StorageError} If the storage is closed or a record is malformed.
   */
  saveWorkflowVersions(versions: readonly WorkflowVersionRecord[]): Promise<void> {
    return this.#run("saveWorkflowVersions", (op) => {
      for (const record of checkWorkflowVersions(op, versions)) {
        const key = versionKey(record.workflowName, record.version);
        if (!this.#versions.has(key)) this.#versions.set(key, record);
      }
    });
  }

  /**
   * Reads every stored workflow version.
   *
   * @returns Copies, ordered by workflow name, then version.
   * @throws {StorageError} If the storage is closed.
   */
  listWorkflowVersions(): Promise<WorkflowVersionRecord[]> {
    return this.#run("listWorkflowVersions", () =>
      [...this.#versions.values()]
        .sort((a, b) =>
          compareCodePoints(a.workflowName, b.workflowName) || compareCodePoints(a.version, b.version)
        )
        .map((record) => ({ ...record })));
  }

  /**
   * Creates or replaces a schedule, keeping its cadence while the recurrence text is unchanged.
   *
   * @param schedule The schedule; copied.
   * @returns A copy of the stored schedule and whether the key was new.
   * @throws {StorageError} If the storage is closed or the schedule is malformed.
   */
  upsertSchedule(schedule: NewSchedule): Promise<UpsertScheduleResult> {
    return this.#run("upsertSchedule", (op) => {
      const checked = checkNewSchedule(op, schedule);
      const result = upsertedSchedule(this.#schedules.get(checked.key) ?? null, checked);
      this.#schedules.set(checked.key, result.schedule);
      return { schedule: { ...result.schedule }, created: result.created };
    });
  }

  /**
   * Deletes a schedule.
   *
   * @param key The schedule's key.
   * @returns Whether it existed.
   * @throws {StorageError} If the storage is closed or `key` is not a string.
   */
  deleteSchedule(key: string): Promise<boolean> {
    return this.#run("deleteSchedule", (op) => this.#schedules.delete(checkName(op, "key", key)));
  }

  /**
   * Reads every schedule.
   *
   * @returns Copies, ordered by key.
   * @throws {StorageError} If the storage is closed.
   */
  listSchedules(): Promise<ScheduleRecord[]> {
    return this.#run("listSchedules", () => {
      return [...this.#schedules.values()].sort((a, b) => compareCodePoints(a.key, b.key)).map(copySchedule);
    });
  }

  /**
   * Reads the due schedules of the given workflows, earliest `nextRunAt` first, ties by key.
   * Scans every schedule.
   *
   * @param workflowNames The workflows.
   * @param now The current time.
   * @param limit At most this many (an integer >= 0).
   * @returns Copies of the due schedules.
   * @throws {StorageError} If the storage is closed or an argument is malformed.
   */
  dueSchedules(workflowNames: readonly string[], now: number, limit: number): Promise<ScheduleRecord[]> {
    return this.#run("dueSchedules", (op) => {
      const names = new Set(checkNames(op, workflowNames));
      checkTime(op, "now", now);
      checkLimit(op, limit, 0);
      return [...this.#schedules.values()]
        .filter((schedule) => schedule.nextRunAt <= now && names.has(schedule.workflowName))
        .sort((a, b) => a.nextRunAt - b.nextRunAt || compareCodePoints(a.key, b.key))
        .slice(0, limit)
        .map(copySchedule);
    });
  }

  /**
   * Claims a schedule's slot and creates its run, or changes nothing if `nextRunAt` is no longer `slot`.
   *
   * @param key The schedule's key.
   * @param slot The slot, as read from `nextRunAt`.
   * @param nextRunAt The slot after it (> `slot`).
   * @param run The run to create, as for {@linkcode MemoryStorage.createRun}.
   * @returns The run's creation result, or null when the slot was not there to claim.
   * @throws {StorageError} If the storage is closed, an argument is malformed, or (kind
   *   `"unique"`, changing nothing) the run id is taken.
   */
  claimScheduleSlot(
    key: string,
    slot: number,
    nextRunAt: number,
    run: NewRun,
  ): Promise<CreateRunResult | null> {
    return this.#run("claimScheduleSlot", (op) => {
      const checked = checkSlotClaim(op, key, slot, nextRunAt, run);
      const schedule = this.#schedules.get(key);
      if (schedule === undefined || schedule.nextRunAt !== slot) return null;
      // Throws before the schedule moves when the run id is taken, so nothing changes.
      const result = this.#insertRun(op, checked);
      this.#schedules.set(key, claimedSchedule(schedule, nextRunAt, result.run.id, checked.createdAt));
      return result;
    });
  }

  /**
   * Deletes up to `limit` finished runs that finished before `finishedBefore`, oldest first, with
   * their step results and events. Scans every run.
   *
   * @param request The cutoff, the statuses and the limit.
   * @returns How many runs were deleted.
   * @throws {StorageError} If the storage is closed or the request is malformed.
   */
  purgeRuns(request: PurgeRequest): Promise<number> {
    return this.#run("purgeRuns", (op) => {
      const { finishedBefore, statuses, limit } = checkPurgeRequest(op, request);
      const wanted = new Set<string>(statuses);
      const doomed = [...this.#runs.values()]
        .filter((record) => wanted.has(record.status) && record.updatedAt < finishedBefore)
        .sort((a, b) => newerFirst(b, a))
        .slice(0, limit);
      for (const record of doomed) {
        this.#runs.delete(record.id);
        this.#steps.delete(record.id);
        this.#events.delete(record.id);
        const keys = this.#keys.get(record.workflowName);
        if (record.idempotencyKey !== null && keys?.get(record.idempotencyKey) === record.id) {
          keys.delete(record.idempotencyKey);
        }
      }
      return doomed.length;
    });
  }

  /**
   * Drops all data. Later calls reject with a {@linkcode StorageError} of kind `"closed"`;
   * closing again does nothing, so a harness may close a storage a test already closed.
   *
   * @returns When done.
   */
  close(): Promise<void> {
    this.#closed = true;
    this.#runs.clear();
    this.#steps.clear();
    this.#keys.clear();
    this.#queues.clear();
    this.#events.clear();
    this.#schedules.clear();
    return Promise.resolve();
  }

  // Bodies run synchronously, so each call is atomic; a throw becomes a rejection, as from a database.
  #run<T>(operation: string, body: (operation: string) => T): Promise<T> {
    try {
      if (this.#closed) throw new StorageError(operation, "the storage is closed", { kind: "closed" });
      return Promise.resolve(body(operation));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The run, if it is running under `leaseId`. */
  #held(runId: string, leaseId: string): RunRecord | undefined {
    const record = this.#runs.get(runId);
    return record !== undefined && record.status === "running" && record.leaseId === leaseId
      ? record
      : undefined;
  }

  /** Stores a checked new run, or returns the run of its workflow that holds its idempotency key. */
  #insertRun(op: string, checked: NewRun): CreateRunResult {
    const { id, workflowName, idempotencyKey, createdAt } = checked;
    const keys = this.#keys.get(workflowName);
    const holder = idempotencyKey === null ? undefined : keys?.get(idempotencyKey);
    const existing = holder === undefined ? undefined : this.#runs.get(holder);
    if (existing !== undefined) return { run: copyRun(existing), created: false };
    if (this.#runs.has(id)) {
      throw new StorageError(op, `a run with id ${JSON.stringify(id)} already exists`, { kind: "unique" });
    }

    const record: RunRecord = {
      ...pendingRun(checked),
      seq: this.#seq++,
      version: 0,
      indexed: false,
      indexKey: createdAt,
      leaseDurationMs: 0,
      recoveries: 0,
    };
    this.#runs.set(id, record);
    if (idempotencyKey !== null) {
      if (keys === undefined) this.#keys.set(workflowName, new Map([[idempotencyKey, id]]));
      else keys.set(idempotencyKey, id);
    }
    this.#index(record, createdAt);
    return { run: copyRun(record), created: true };
  }

  #stepsOf(runId: string): StepResult[] {
    const steps = this.#steps.get(runId);
    return steps === undefined ? [] : Array.from(steps.values(), copyStep);
  }

  #writeStep(step: StepResult): void {
    const steps = this.#steps.get(step.runId);
    if (steps === undefined) this.#steps.set(step.runId, new Map([[step.stepName, step]]));
    else steps.set(step.stepName, step);
  }

  #claim(
    operation: string,
    workflowNames: readonly string[],
    limit: number,
    now: number,
    leaseDurationMs: number,
    instanceId?: string,
  ): ClaimedRun[] {
    if (!Array.isArray(workflowNames)) {
      throw invalid(
        operation,
        `invalid workflowNames ${describe(workflowNames)}: expected an array of names`,
      );
    }
    const queues: DueQueue[] = [];
    for (const name of new Set(workflowNames)) {
      const queue = this.#queues.get(name);
      if (queue !== undefined) queues.push(queue);
    }
    const claimed: RunRecord[] = [];
    while (claimed.length < limit) {
      let best: DueQueue | undefined;
      let bestEntry: IndexEntry | undefined;
      for (const queue of queues) {
        const entry = this.#top(queue);
        if (entry !== undefined && (bestEntry === undefined || before(entry, bestEntry))) {
          best = queue;
          bestEntry = entry;
        }
      }
      if (best === undefined || bestEntry === undefined || bestEntry.key > now) break;
      best.pop();
      const record = this.#owner(bestEntry)!;
      this.#unindex(record);
      record.recoveries = record.status === "running" ? record.recoveries + 1 : 0;
      record.status = "running";
      record.leaseId = instanceId === undefined
        ? crypto.randomUUID()
        : `${instanceId}:${crypto.randomUUID()}`;
      record.dueAt = now + leaseDurationMs;
      record.claimCount++;
      record.updatedAt = now;
      record.leaseDurationMs = leaseDurationMs;
      claimed.push(record);
    }
    // Indexed only now, so that a zero-length lease cannot be claimed twice by one call.
    for (const record of claimed) this.#index(record, record.dueAt!);
    return claimed.map((record) => ({
      ...copyRun(record),
      leaseId: record.leaseId!,
      steps: this.#stepsOf(record.id),
      recoveries: record.recoveries,
    }));
  }

  /** The queue's first live entry, dropping stale entries and re-keying extended leases on the way. */
  #top(queue: DueQueue): IndexEntry | undefined {
    for (;;) {
      const entry = queue.peek();
      if (entry === undefined) return undefined;
      const record = this.#owner(entry);
      if (record === undefined) {
        queue.pop();
        continue;
      }
      if (record.dueAt !== null && record.dueAt !== entry.key) {
        // A heartbeat moved the lease later without touching the heap; the entry moves now.
        queue.pop();
        queue.push({ ...entry, key: record.dueAt });
        record.indexKey = record.dueAt;
        continue;
      }
      return entry;
    }
  }

  /** Moves a held lease's expiry. Later expiries are applied to the heap lazily, so heartbeats do not grow it. */
  #renew(record: RunRecord, leaseExpiresAt: number): void {
    record.dueAt = leaseExpiresAt;
    if (leaseExpiresAt < record.indexKey) this.#index(record, leaseExpiresAt);
  }

  /** Releases the lease and sets a status other than running, placing the run in or out of the index. */
  #park(record: RunRecord, status: RunStatus, now: number, dueAt: number | null): void {
    record.status = status;
    record.leaseId = null;
    record.updatedAt = now;
    record.dueAt = FINISHED.has(status) ? null : dueAt;
    // No wait of a finished run will consume its events, and no event is delivered to one again.
    if (FINISHED.has(status)) this.#events.delete(record.id);
    if (record.dueAt === null) this.#unindex(record);
    else this.#index(record, record.dueAt);
  }

  #index(record: RunRecord, key: number): void {
    this.#unindex(record);
    let queue = this.#queues.get(record.workflowName);
    if (queue === undefined) this.#queues.set(record.workflowName, queue = new DueQueue());
    record.version++;
    record.indexed = true;
    record.indexKey = key;
    queue.push({ key, seq: record.seq, runId: record.id, version: record.version });
    queue.live++;
    // Replaced entries stay in the heap until they surface; rebuild once they outnumber the live ones.
    if (queue.size > COMPACT_MIN && queue.size > 2 * queue.live) {
      queue.retain((entry) => this.#owner(entry) !== undefined);
    }
  }

  /** The run an index entry stands for, or undefined if the entry is stale. */
  #owner(entry: IndexEntry): RunRecord | undefined {
    const record = this.#runs.get(entry.runId);
    return record !== undefined && record.indexed && record.version === entry.version ? record : undefined;
  }

  #unindex(record: RunRecord): void {
    if (!record.indexed) return;
    record.indexed = false;
    record.version++;
    const queue = this.#queues.get(record.workflowName);
    if (queue !== undefined) queue.live--;
  }
}
