/**
 * The storage contract: what the engine needs from a database, and the records it stores.
 *
 * Values the engine persists (inputs, outputs, event payloads) reach storage already
 * encoded as text by the engine's codec ({@linkcode EncodedValue}); storage keeps them
 * opaque and returns them byte for byte.
 *
 * Time is passed in by the engine (`now`, due times) so that a storage adapter never
 * reads its own clock for decisions that must agree across engines; methods kept from
 * the original interface fall back to `Date.now()` when no time is given.
 *
 * @module
 */

/** A persisted value encoded by the engine's codec: JSON text with tagged `Date` and `undefined`. */
export type EncodedValue = string;

/**
 * Where a run is in its life.
 *
 * - `pending`: waiting to be claimed once `dueAt` has passed (new, released, or parked between retry attempts);
 * - `running`: claimed by a worker that holds its lease until `dueAt`;
 * - `sleeping`: parked in a durable sleep until `dueAt`;
 * - `waiting`: parked until an event arrives, or until `dueAt` (the wait's timeout) if set;
 * - `parked`: set aside because no registered definition can continue it (its `error` says why,
 *   code `VERSION_MISMATCH`); never claimed, not finished: events are kept, and `requeueRun`
 *   puts it back in the queue;
 * - `completed`, `failed`, `cancelled`: finished; never claimed again.
 */
export type RunStatus =
  | "pending"
  | "running"
  | "sleeping"
  | "waiting"
  | "parked"
  | "completed"
  | "failed"
  | "cancelled";

/** The statuses of a finished run. */
export type FinishedRunStatus = "completed" | "failed" | "cancelled";

/**
 * Where a unit of a run (a step, a parallel branch, a sleep, a wait) is.
 *
 * - `completed`: finished with `output`;
 * - `skipped`: its `when` returned false; never re-evaluated;
 * - `failed`: its last attempt failed with `error` and no attempt is left;
 * - `retrying`: an attempt failed with `error`; the next one is due at `dueAt`;
 * - `sleeping`: a sleep reached, to end at `dueAt`;
 * - `waiting`: a wait for an event reached, timing out at `dueAt` (null: never).
 */
export type StepStatus = "completed" | "skipped" | "failed" | "retrying" | "sleeping" | "waiting";

/** The stored form of an error: enough to report it and branch on it, without the stack. */
export interface StoredError {
  /** The error's `code` (a {@linkcode ReflowErrorCode} for Reflow errors, or the thrown error's own `code`), or null. */
  readonly code: string | null;
  /** The error's class name, such as `"TypeError"`. */
  readonly name: string;
  /** The error's message. */
  readonly message: string;
  /** The step or branch that failed, when the error came from one. */
  readonly stepName?: string;
}

/** A stored workflow run. */
export interface WorkflowRun {
  /** Unique id, chosen by the engine. */
  readonly id: string;
  /** The workflow it runs. */
  readonly workflowName: string;
  /**
   * The version of the workflow's definition it runs under (`Workflow.version`), or null for a
   * run stored before versions were recorded.
   */
  readonly workflowVersion: string | null;
  /** Where the run is. */
  readonly status: RunStatus;
  /** The validated input. */
  readonly input: EncodedValue;
  /** The final output, once `completed`. */
  readonly output: EncodedValue | null;
  /** Why it failed, once `failed`; why it cannot continue, once `parked`. */
  readonly error: StoredError | null;
  /** The key given at enqueue, unique per workflow, or null. */
  readonly idempotencyKey: string | null;
  /** When it was created (ms since the epoch). */
  readonly createdAt: number;
  /** When it last changed (ms since the epoch). */
  readonly updatedAt: number;
  /**
   * `pending`/`sleeping`: when it may be claimed; `waiting`: when its wait times out (null: never);
   * `running`: when its lease expires; finished: null.
   */
  readonly dueAt: number | null;
  /** The lease of the worker that holds it while `running`; otherwise null. */
  readonly leaseId: string | null;
  /** How many times it has been claimed. 0 means no worker has started it, so it has no step results. */
  readonly claimCount: number;
}

/** What the engine gives {@linkcode StorageAdapter.createRun}: the storage fills in the rest. */
export interface NewRun {
  /** Unique id, chosen by the engine. */
  readonly id: string;
  /** The workflow it runs. */
  readonly workflowName: string;
  /** The version of the definition it starts under; omitted or null: none recorded. */
  readonly workflowVersion?: string | null;
  /** The validated input. */
  readonly input: EncodedValue;
  /** At most one run per workflow and key; null for none. */
  readonly idempotencyKey: string | null;
  /** Creation time (ms since the epoch); also when it becomes claimable. */
  readonly createdAt: number;
}

/** The answer of {@linkcode StorageAdapter.createRun}. */
export interface CreateRunResult {
  /** The new run, or the existing run that already held the idempotency key. */
  readonly run: WorkflowRun;
  /** False when an existing run with the same workflow and idempotency key was returned instead. */
  readonly created: boolean;
}

/** A stored result of one unit of a run. */
export interface StepResult {
  /** The run it belongs to. */
  readonly runId: string;
  /** The unit's name (for a parallel branch: the branch's name, unique within the workflow). */
  readonly stepName: string;
  /** Where the unit is. */
  readonly status: StepStatus;
  /** The output, once `completed`. */
  readonly output: EncodedValue | null;
  /** The last attempt's error, when `failed` or `retrying`. */
  readonly error: StoredError | null;
  /** Attempts made so far (0 for a skipped step; 1 for a sleep or a wait, reached once). */
  readonly attempts: number;
  /** `retrying`: the next attempt's due time; `sleeping`: the wake time; `waiting`: the timeout (or null). */
  readonly dueAt: number | null;
  /** When it was written (ms since the epoch). */
  readonly updatedAt: number;
}

/** A run claimed by a worker, with its lease and the step results it had at claim time. */
export interface ClaimedRun extends WorkflowRun {
  /** The lease the claim took; every later write by the worker must present it. */
  readonly leaseId: string;
  /** The run's step results in the order they were first written (empty when `claimCount` is 1). */
  readonly steps: readonly StepResult[];
  /**
   * How many claims in a row, this one included, took the run while it was `running` (its
   * previous worker's lease had expired: the worker died or lost the lease) with no
   * `advanceRun` that kept it running in between. 0 when this claim took a `pending`,
   * `sleeping` or `waiting` run (the previous holder, if any, parked or released it).
   */
  readonly recoveries: number;
}

/** What {@linkcode StorageAdapter.claimRuns} should claim. */
export interface ClaimRequest {
  /** Only runs of these workflows. */
  readonly workflowNames: readonly string[];
  /** At most this many runs. */
  readonly limit: number;
  /** The current time: runs due at or before it are claimable. */
  readonly now: number;
  /** The lease lasts until `now + leaseDurationMs` unless renewed. */
  readonly leaseDurationMs: number;
  /**
   * The claiming engine's `instanceId` (letters, digits, `.`, `_` and `-`, at most 128): each
   * lease id this claim takes then begins with `instanceId + ":"`, so that
   * {@linkcode StorageAdapter.expireInstanceLeases} can find them after a restart.
   */
  readonly instanceId?: string;
}

/** A change a lease holder makes to its run in one transaction; see {@linkcode StorageAdapter.advanceRun}. */
export interface RunAdvance {
  /** The current time. */
  readonly now: number;
  /** A step result to insert or replace (by run id and step name). */
  readonly step?: StepResult;
  /**
   * The run's next status. Omitted: the run stays `running` and its lease is renewed to
   * `leaseExpiresAt`. Any other status releases the lease.
   */
  readonly status?: Exclude<RunStatus, "running">;
  /** With `completed`: the run's output. */
  readonly output?: EncodedValue;
  /** With `failed` or `parked`: why. */
  readonly error?: StoredError;
  /** With `pending`/`sleeping`/`waiting`: when the run may be claimed again (waiting: its timeout, or null). */
  readonly dueAt?: number | null;
  /** When the run stays `running`: the lease's new expiry. */
  readonly leaseExpiresAt?: number;
}

/** An event sent to a run; see {@linkcode StorageAdapter.deliverEvent}. */
export interface NewEvent {
  /** The event's name: the name of the `waitForEvent` unit it is meant for. */
  readonly name: string;
  /** The validated, encoded payload. */
  readonly payload: EncodedValue;
  /** When it was sent. */
  readonly createdAt: number;
}

/** An event stored for a run and not yet consumed by a wait; see {@linkcode StorageAdapter.listEvents}. */
export interface StoredEvent {
  /** The event's name: the name of the wait unit that will consume it. */
  readonly name: string;
  /** The encoded payload, as delivered. */
  readonly payload: EncodedValue;
  /** When it was sent. */
  readonly createdAt: number;
}

/** What a worker asks when its run reaches a wait; see {@linkcode StorageAdapter.awaitEvent}. */
export interface EventWait {
  /** The current time. */
  readonly now: number;
  /** The wait unit's name, which is also the event name it waits for. */
  readonly stepName: string;
  /** When the wait times out (fixed when the wait was first reached), or null for never. */
  readonly timeoutAt: number | null;
  /** What the run fails with when the wait has timed out: committed by the same transaction. */
  readonly timeoutError: StoredError;
}

/**
 * The answer of {@linkcode StorageAdapter.awaitEvent}:
 *
 * - `received`: the oldest unconsumed event of that name was consumed and committed as the wait's
 *   output (`payload`); the run stays `running` under the same lease;
 * - `parked`: no event yet; the run is now `waiting` with no lease, due at `timeoutAt`;
 * - `timedOut`: no event and `timeoutAt` has passed; the wait's step result is now `failed` with
 *   `timeoutError` and the run `failed` with it, with no lease (decided and committed together, so
 *   an event delivered at that moment is either consumed or refused, never acknowledged and lost);
 * - `lost`: the lease is not held; nothing was changed.
 */
export type EventWaitResult =
  | { readonly outcome: "received"; readonly payload: EncodedValue }
  | { readonly outcome: "parked" | "timedOut" | "lost" };

/**
 * A page request for {@linkcode StorageAdapter.listRuns}. Runs come newest first, by
 * `(createdAt DESC, id DESC)`; ids compare by Unicode code point (the byte order of their UTF-8
 * form, as SQLite's `BINARY` collation orders them).
 */
export interface RunQuery {
  /** Only runs in one of these statuses; omitted or empty: any status. */
  readonly statuses?: readonly RunStatus[];
  /** Only runs of this workflow; omitted: any workflow. */
  readonly workflowName?: string;
  /** At most this many runs: a positive integer. */
  readonly limit: number;
  /**
   * Keyset cursor: only runs strictly before `(before, beforeId)` in the page order. Without
   * `beforeId`: only runs with `createdAt < before`.
   */
  readonly before?: number;
  /**
   * With `before`: the id of the last run of the previous page, so that runs sharing its
   * `createdAt` continue by id, none repeated or skipped. Not allowed without `before`.
   */
  readonly beforeId?: string;
}

/**
 * How many runs are in each status, as {@linkcode StorageAdapter.countRuns} reports it: every status
 * is present; a count equal to the cap asked for means "at least that many".
 */
export type RunCounts = Readonly<Record<RunStatus, number>>;

/** The shape of one version of a workflow, as engines register it; see {@linkcode StorageAdapter.saveWorkflowVersions}. */
export interface WorkflowVersionRecord {
  /** The workflow's name. */
  readonly workflowName: string;
  /** The version (`Workflow.version`). */
  readonly version: string;
  /** The definition's shape (`Workflow.shape`), opaque text compared byte for byte. */
  readonly shape: string;
  /** When it was first stored (ms since the epoch). */
  readonly createdAt: number;
}

/** A stored schedule: a workflow run created at every slot of a recurrence. */
export interface ScheduleRecord {
  /** Unique key, chosen by the application. */
  readonly key: string;
  /** The workflow each slot runs. */
  readonly workflowName: string;
  /** The input each slot's run gets, encoded. */
  readonly input: EncodedValue;
  /** The recurrence, encoded by the engine as opaque text (e.g. JSON); storage compares it byte for byte. */
  readonly recurrence: string;
  /** The next slot due (ms since the epoch). */
  readonly nextRunAt: number;
  /** The slot of the last run created from it, or null. */
  readonly lastRunAt: number | null;
  /** The id of the last run created from it (or that held its idempotency key), or null. */
  readonly lastRunId: string | null;
  /** When it was first stored. */
  readonly createdAt: number;
  /** When it last changed. */
  readonly updatedAt: number;
}

/** What {@linkcode StorageAdapter.upsertSchedule} stores. */
export interface NewSchedule {
  /** Unique key, chosen by the application. */
  readonly key: string;
  /** The workflow each slot runs. */
  readonly workflowName: string;
  /** The input each slot's run gets, encoded. */
  readonly input: EncodedValue;
  /** The recurrence, as opaque text. */
  readonly recurrence: string;
  /** The first slot, used when the schedule is new or its recurrence changed. */
  readonly nextRunAt: number;
  /** The current time. */
  readonly now: number;
}

/** The answer of {@linkcode StorageAdapter.upsertSchedule}. */
export interface UpsertScheduleResult {
  /** The schedule as stored. */
  readonly schedule: ScheduleRecord;
  /** True when the key was new. */
  readonly created: boolean;
}

/** What {@linkcode StorageAdapter.purgeRuns} deletes. */
export interface PurgeRequest {
  /** Only finished runs whose `updatedAt` (the time they finished) is < this. */
  readonly finishedBefore: number;
  /** Only these finished statuses (not empty); omitted: completed, failed and cancelled. */
  readonly statuses?: readonly FinishedRunStatus[];
  /** At most this many runs in this call (one bounded transaction): an integer >= 0. */
  readonly limit: number;
}

/**
 * The storage contract. The engine calls nothing else, so any database that implements
 * these methods with the atomicity written on each can back Reflow; `./conformance`
 * holds one test case per rule.
 *
 * "Fenced by the lease" means: the write happens only if the run is `running` and its
 * `leaseId` equals the one given, checked in the same atomic step as the write; otherwise
 * nothing changes and the method returns `false`.
 *
 * Names and keys (workflow, step and event names, idempotency and schedule keys, run ids given to
 * `createRun()`) are stored exactly as given and compared code unit by code unit. They are
 * well-formed Unicode without NUL; a method given one with a lone surrogate or a NUL rejects with
 * a `StorageError` of kind `"other"` and stores nothing.
 */
export interface StorageAdapter {
  /**
   * Creates tables and indexes, or applies pending migrations. Idempotent; safe when several
   * processes call it on one database at once. Called by `engine.start()` and `engine.tick()`.
   */
  initialize(): Promise<void>;

  /**
   * Stores a new `pending` run, due at `createdAt`, with `claimCount` 0.
   * Atomic with the idempotency check: when `idempotencyKey` is not null and a run of the same
   * workflow already holds it, nothing is written and that run is returned with `created: false`.
   */
  createRun(run: NewRun): Promise<CreateRunResult>;

  /**
   * Claims one run, as {@linkcode StorageAdapter.claimRuns} with a limit of 1, at time
   * `staleBefore` (default `Date.now()`) and a 30 s lease: a due `pending`, `sleeping` or
   * `waiting` run, or a `running` one whose lease expired before `staleBefore`.
   */
  claimNextRun(workflowNames: readonly string[], staleBefore?: number): Promise<ClaimedRun | null>;

  /**
   * Atomically claims up to `limit` runs of the given workflows whose `dueAt` is at or before
   * `now`: `pending`, `sleeping` and `waiting` runs, and `running` runs whose lease expired.
   * Oldest `dueAt` first, ties in creation order. Each claimed run becomes `running` with a new
   * unique `leaseId`, `dueAt = now + leaseDurationMs` and `claimCount + 1`; its `recoveries`
   * becomes one more than before when it was `running`, else 0 (see {@linkcode ClaimedRun}); an
   * `advanceRun` that keeps the run running sets it back to 0. Two concurrent
   * claims never return the same run. Must use an index for the order: cost does not grow with
   * the number of runs that are not due.
   */
  claimRuns(request: ClaimRequest): Promise<ClaimedRun[]>;

  /**
   * Ends the leases a previous incarnation of a restarted engine holds: every `running` run whose
   * lease id begins with `instanceId + ":"` (see {@linkcode ClaimRequest.instanceId}) and has not
   * expired by `now` gets `dueAt = now`, so that the next claim takes it back as an expired lease
   * (counted in `recoveries`). Its lease id is kept until then, so a late write of the old
   * incarnation is fenced off by that claim. One atomic step; returns how many runs it changed.
   */
  expireInstanceLeases(instanceId: string, now: number): Promise<number>;

  /**
   * Renews a lease until `leaseExpiresAt` (default: the time of the call plus the duration the
   * claim asked for). Fenced by the lease: returns false if the lease was lost (reclaimed,
   * cancelled, released), and the worker must then stop writing.
   */
  heartbeatRun(runId: string, leaseId: string, leaseExpiresAt?: number): Promise<boolean>;

  /** Reads a run, or null when there is none with that id. */
  getRun(runId: string): Promise<WorkflowRun | null>;

  /** Reads a run's step results in the order they were first written (empty for an unknown run). */
  getStepResults(runId: string): Promise<StepResult[]>;

  /**
   * Inserts or replaces a step result (by run id and step name). With a `leaseId`, fenced by the
   * lease; without one, unconditional (for tools and tests). Returns whether it was written.
   */
  saveStepResult(result: StepResult, leaseId?: string): Promise<boolean>;

  /**
   * Sets the status of an unfinished run without a lease check, releasing any lease (used for
   * cancellation). `pending` makes it due at once. Returns false, changing nothing, if the run does
   * not exist or has already finished.
   */
  updateRunStatus(runId: string, status: RunStatus): Promise<boolean>;

  /**
   * Sets the status of a run the caller holds, fenced by the lease. Any status but `running`
   * releases the lease; `pending` makes the run due at once (how `engine.stop()` hands a run over).
   */
  updateClaimedRunStatus(runId: string, leaseId: string, status: RunStatus): Promise<boolean>;

  /**
   * Applies one {@linkcode RunAdvance} in a single transaction, fenced by the lease: writes the
   * step result (if any) and moves the run to its next status (if any), or changes nothing.
   * This is how a worker commits a step together with the run's completion, failure, retry
   * parking or sleep, so that no crash can separate the two.
   */
  advanceRun(runId: string, leaseId: string, change: RunAdvance): Promise<boolean>;

  /**
   * Stores an event for an unfinished run, in one atomic step with waking it: when the run is
   * `waiting` and its step result named `event.name` has status `waiting`, the run becomes due at
   * once (`dueAt` lowered to `event.createdAt`), so the next claim picks it up; a run waiting for
   * another name is not woken. An event is kept until the wait of its name consumes it. Not fenced:
   * anyone may send.
   *
   * A wait consumes one event, so `true` promises that this event is the one its wait will take
   * (unless the run finishes first). Returns false, storing nothing, when no wait could consume
   * it: the run does not exist or has finished; the run has a step result named `event.name` in
   * any status but `waiting` (the wait is over: it received an event or timed out); or an earlier
   * event of that name is stored, unconsumed (the first one delivered wins).
   */
  deliverEvent(runId: string, event: NewEvent): Promise<boolean>;

  /**
   * Resolves a wait in one transaction, fenced by the lease, so that an event delivered at the
   * same moment either is consumed here or wakes the parked run (never neither): takes the oldest
   * unconsumed event named `wait.stepName` and commits it as the step result (`completed`, output
   * = payload, attempts 1); or, with none and `timeoutAt` passed, fails the run (`timedOut`: step
   * result `failed` with `timeoutError`, attempts 1, run `failed` with `timeoutError`, no lease);
   * or parks the run: step result `waiting` with `dueAt = timeoutAt`, run `waiting` with
   * `dueAt = timeoutAt` and no lease. An event wins over a timeout that has passed.
   */
  awaitEvent(runId: string, leaseId: string, wait: EventWait): Promise<EventWaitResult>;

  /**
   * Reads a run's stored events that no wait has consumed yet, in delivery order (empty for an
   * unknown or finished run, since a finished run's events are dropped). An event a wait consumed
   * is that wait's step result instead. Reads only.
   */
  listEvents(runId: string): Promise<StoredEvent[]>;

  /**
   * Reads one page of runs, newest first by `(createdAt DESC, id DESC)`, filtered by status and
   * workflow and continued from a keyset cursor (see {@linkcode RunQuery}): paging with the last
   * run of each page as the next cursor returns every matching run exactly once, even when many
   * share one `createdAt`. Reads only. Must use an index for the order when filtering by nothing,
   * by status or by workflow: cost grows with the page, not with the number of runs.
   */
  listRuns(query: RunQuery): Promise<WorkflowRun[]>;

  /**
   * Counts the runs in each status, up to `cap` per status (an integer >= 1): a status holding
   * more than `cap` runs reports `cap`, so that the count stays cheap on a large store. Reads only.
   * Must use an index per status: cost grows with `cap`, not with the number of runs.
   */
  countRuns(cap: number): Promise<RunCounts>;

  /**
   * Re-queues a failed, cancelled or parked run, atomically: only if its status is `failed`,
   * `cancelled` or `parked`, it becomes `pending` and due at `now`, with no output, error or
   * lease and `updatedAt = now`; its `failed` step results are deleted (so those steps run again
   * with fresh attempts) and every other step result is kept; `claimCount` is kept. Events
   * delivered before a run finished are not kept; a parked run's events are (it never finished).
   * Returns false, changing nothing, for an unknown run or any other status.
   */
  requeueRun(runId: string, now: number): Promise<boolean>;

  /**
   * Records a run's decision to continue under another version of its workflow, fenced by the
   * lease: sets `workflowVersion` and nothing else (not even `updatedAt`).
   */
  updateRunVersion(runId: string, leaseId: string, workflowVersion: string): Promise<boolean>;

  /**
   * Stores the shapes of workflow versions, each unless one with the same workflow name and
   * version is stored already (the first shape stored for a version is kept). Idempotent; safe
   * when several engines register at once.
   */
  saveWorkflowVersions(versions: readonly WorkflowVersionRecord[]): Promise<void>;

  /** Reads every stored workflow version, ordered by workflow name, then version (by code point). */
  listWorkflowVersions(): Promise<WorkflowVersionRecord[]>;

  /**
   * Creates or replaces a schedule, atomically. A new key is inserted with `createdAt =
   * updatedAt = now` and no last run. For an existing key with the same `recurrence` text, the
   * cadence is kept (`nextRunAt`, `lastRunAt`, `lastRunId`, `createdAt`) and `workflowName`,
   * `input` and `updatedAt` are replaced; with a different `recurrence`, `recurrence` and
   * `nextRunAt` are replaced too.
   */
  upsertSchedule(schedule: NewSchedule): Promise<UpsertScheduleResult>;

  /** Deletes a schedule; runs created from it are kept. Returns whether it existed. */
  deleteSchedule(key: string): Promise<boolean>;

  /** Reads every schedule, ordered by key (by code point, as run ids in {@linkcode RunQuery}). */
  listSchedules(): Promise<ScheduleRecord[]>;

  /**
   * Reads up to `limit` schedules of the given workflows whose `nextRunAt <= now`, earliest
   * `nextRunAt` first, ties by key. Reads only; a slot is taken with
   * {@linkcode StorageAdapter.claimScheduleSlot}. Must use an index on `nextRunAt`.
   */
  dueSchedules(workflowNames: readonly string[], now: number, limit: number): Promise<ScheduleRecord[]>;

  /**
   * Claims one due slot, in one transaction: if schedule `key` exists and its `nextRunAt` still
   * equals `slot`, sets `nextRunAt` to the given `nextRunAt` (which must be later than `slot`),
   * `lastRunAt = slot`, `lastRunId` to the run's id (the existing run's, when its idempotency
   * key was held) and `updatedAt = run.createdAt`, and creates `run` exactly as
   * {@linkcode StorageAdapter.createRun} does. Otherwise (the slot was claimed already, the
   * schedule is gone or was changed) changes nothing and returns null. This compare-and-set is
   * what makes engines sharing one database create exactly one run per slot. A run id that is
   * taken fails the whole call, changing nothing.
   */
  claimScheduleSlot(
    key: string,
    slot: number,
    nextRunAt: number,
    run: NewRun,
  ): Promise<CreateRunResult | null>;

  /**
   * Deletes up to `limit` finished runs whose `updatedAt < finishedBefore`, oldest first (by
   * `createdAt`, then id: the {@linkcode RunQuery} order reversed), with their step results and unconsumed events, in one
   * transaction. Never touches a run that has not finished. Returns how many runs were deleted.
   * The idempotency keys they held are free again. Must use an index: cost does not grow with
   * the number of unfinished runs.
   */
  purgeRuns(request: PurgeRequest): Promise<number>;

  /**
   * Optional: the time (ms since the epoch) on the clock that decides leases and due times, for a
   * storage shared by hosts whose clocks may disagree (the database server's). An engine given no
   * `now` of its own uses it, so every host computes with the same clock.
   */
  currentTime?(): number;

  /**
   * Optional: calls `listener` when another process may have made work due (a new run, an event, a
   * released or re-queued run, a changed schedule), so that an idle engine claims at once instead
   * of at its next poll. A missed call only delays work until that poll.
   *
   * @returns A function that ends the calls.
   */
  watch?(listener: () => void): () => void;

  /** Releases resources. Later calls fail with a `StorageError`. */
  close(): void | Promise<void>;
}
