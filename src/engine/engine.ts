/**
 * The engine: enqueues runs, claims them from storage and executes them under leases.
 *
 * @module
 */

import { delay, setLongInterval, setLongTimeout } from "../timers.ts";
import {
  ConfigError,
  EngineStoppedError,
  EventLoopBlockedError,
  type HeldLease,
  IdempotencyConflictError,
  InternalError,
  LeaseExpiredError,
  LeasesHeldError,
  ReflowError,
  RunCancelledError,
  StorageError,
  type VersionMismatchError,
} from "../errors.ts";
import type { ClaimedRun, RunStatus } from "../storage/adapter.ts";
import { decodeValue, valuesEqual } from "../storage/codec.ts";
import { isFinishedStatus } from "../storage/statuses.ts";
import type {
  AnyWorkflow,
  EventName,
  EventPayloadInput,
  WaitUnit,
  WorkflowInput,
  WorkflowOutput,
  WorkflowParsedInput,
} from "../workflow/workflow.ts";
import { EventBus } from "./events.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import { optionalKey, registeredWorkflow, storableValue } from "./inputs.ts";
import { type EngineOptions, type ResolvedEngineOptions, resolveEngineOptions } from "./options.ts";
import { executeRun, type HeldRun, type RunExit } from "./run_executor.ts";
import { newRunId } from "./run_id.ts";
import { type RunDetails, toRunInfo, toStepInfo } from "./run_info.ts";
import { purgeFinishedRuns, type PurgeOptions, resolvePurge, RetentionSweeper } from "./retention.ts";
import { listRunPage, type ListRunsOptions, type RunPage, toRunQuery } from "./run_listing.ts";
import { type ScheduleInfo, type ScheduleMethods, type ScheduleOptions, Scheduler } from "./scheduler.ts";
import { RunWaiters, type WaitForRunOptions } from "./run_waiter.ts";
import { BufferedEventStream, type EventStream, resolveStreamOptions, type StreamOptions } from "./stream.ts";
import { checkRuns, type CheckRunsOptions, type RunCheckReport } from "./run_check.ts";
import { VersionRegistry } from "./versions.ts";
import { sweepParked } from "./parked_sweep.ts";

/** Options of `engine.enqueue()`. */
export interface EnqueueOptions {
  /**
   * At most one run per workflow and key: enqueuing again with the same key and an equal input
   * returns the existing run; with a different input it throws `IdempotencyConflictError`.
   */
  readonly idempotencyKey?: string;
  /**
   * The registered version of the workflow to start the run under (its `version`). Default: the
   * newest, the one listed last in `workflows`.
   */
  readonly version?: string;
}

const ENQUEUE_OPTION_KEYS: OptionKeys<EnqueueOptions> = { idempotencyKey: true, version: true };

/** The answer of `engine.enqueue()`. */
export interface EnqueueResult {
  /** The run's id. */
  readonly runId: string;
  /** False when an existing run with the same idempotency key was returned. */
  readonly created: boolean;
}

/**
 * What `engine.enqueue()` resolves to: the stored run as it was at that moment (the fields
 * reflow-ts returns), Reflow's `runId` and `created`, and `result()` to await the outcome.
 */
export interface RunHandle<Input = unknown, Output = unknown> extends EnqueueResult {
  /** The run's id (the same as `runId`). */
  readonly id: string;
  /** Its workflow's name. */
  readonly workflow: string;
  /** The version of the workflow's definition it runs under (null: none recorded, for an older run). */
  readonly version: string | null;
  /** Its status when `enqueue` returned: `pending` for a new run. */
  readonly status: RunStatus;
  /** Its validated input. */
  readonly input: Input;
  /** The idempotency key it was enqueued with, or null. */
  readonly idempotencyKey: string | null;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  /** Time of the last change when `enqueue` returned, ms since the epoch. */
  readonly updatedAt: number;
  /**
   * Waits for the run to finish, as {@linkcode Engine.waitForRun} does.
   *
   * @param options A timeout and an abort signal.
   * @returns The run's output.
   * @throws {RunFailedError} When the run failed (its stored error is on `error`, rebuilt on `cause`).
   * @throws {RunCancelledError} When it was cancelled.
   * @throws {ResultTimeoutError} When the timeout passed first.
   */
  result(options?: WaitForRunOptions): Promise<Output>;
}

/** The workflow of `W` named `N`. */
export type WorkflowNamed<W extends AnyWorkflow, N extends string> = Extract<W, { readonly name: N }>;

/**
 * A durable workflow engine bound to one storage. Create it with {@linkcode createEngine}.
 * `await using` stops it on scope exit.
 */
export interface Engine<W extends AnyWorkflow = AnyWorkflow> extends AsyncDisposable, ScheduleMethods<W> {
  /**
   * Initialises storage and starts the worker loop: up to `concurrency` runs in flight, a free
   * slot refilled as soon as it frees, an immediate wake on a local enqueue, and a poll every
   * `pollIntervalMs` (default 1000) only to notice work from other processes. Due schedules fire on
   * time, each round before claiming.
   *
   * @example Run workflows in the background
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * await engine.start(); // `await using` stops it at the end of the scope
   * const run = await engine.enqueue("greet", "ada");
   * console.log(await run.result()); // hello ada
   * ```
   *
   * @param pollIntervalMs How often to look for work this engine was not told about.
   * @throws {ConfigError} On an invalid interval.
   * @throws {StorageError} When storage cannot be initialised.
   */
  start(pollIntervalMs?: number): Promise<void>;

  /**
   * Stops claiming, lets in-flight steps finish within `stopTimeoutMs` (then aborts their
   * signals), and hands the runs it holds back to storage so another engine continues at once.
   *
   * @example Stop without `await using`
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * const engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * await engine.start();
   * try {
   *   await engine.enqueue("greet", "ada");
   * } finally {
   *   await engine.stop(); // in-flight runs finish or are handed back to storage
   * }
   * ```
   */
  stop(): Promise<void>;

  /**
   * One explicit round: fires due schedules, then claims up to `concurrency` due runs and
   * executes each until it finishes or parks. For CLIs and tests; `start()` is the production path.
   * Like the worker loop, it reads schedules from storage when one it knows of is due, after a
   * local `schedule()`, and otherwise at most once per poll interval (1 s unless `start()` set
   * another), so a tight `tick()` loop does not pay a schedule query per round.
   *
   * @example Drive runs by hand, as a CLI would
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * const { runId } = await engine.enqueue("greet", "ada");
   * console.log(await engine.tick()); // 1
   * console.log((await engine.getRunStatus(runId))?.run.output); // hello ada
   * ```
   *
   * @returns How many runs were claimed.
   */
  tick(): Promise<number>;

  /**
   * Validates the input with the workflow's schema and stores a new pending run.
   *
   * @example Enqueue a run and wait for its output
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * await engine.start();
   * const run = await engine.enqueue("greet", "ada", { idempotencyKey: "greet-ada" });
   * console.log(run.id === run.runId, run.workflow, run.status, run.created); // true greet pending true
   * console.log(await run.result({ timeout: "30s" })); // hello ada
   * ```
   *
   * @param name A registered workflow's name.
   * @param input The workflow's input.
   * @param options The idempotency key, if any.
   * @returns A handle on the stored run: its fields, `runId`, `created`, and `result()`.
   * @throws {WorkflowNotFoundError} For an unknown name.
   * @throws {ConfigError} For a `version` that is not registered (field `version`).
   * @throws {ValidationError} When the schema rejects the input.
   * @throws {SerializationError} When the validated input cannot be stored.
   * @throws {IdempotencyConflictError} When the key is held by a run with a different input.
   */
  enqueue<N extends W["name"]>(
    name: N,
    input: WorkflowInput<WorkflowNamed<W, N>>,
    options?: EnqueueOptions,
  ): Promise<RunHandle<WorkflowParsedInput<WorkflowNamed<W, N>>, WorkflowOutput<WorkflowNamed<W, N>>>>;

  /**
   * Waits for a run to finish: at once for a run this engine finishes or cancels, and within the
   * poll interval (`start()`'s, default 1 s) for a run another process finishes. Waiting does not
   * run anything: some engine on the storage must be started (or ticked) for the run to progress.
   *
   * @example Wait for a run by its id
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * import { RunFailedError } from "@reflow/core";
   *
   * const charge = createWorkflow({ name: "charge", input: z.number() }).step("charge", ({ input }) => {
   *   if (input < 0) throw new Error("negative amount");
   *   return input;
   * });
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [charge] });
   * await engine.start();
   * const { runId } = await engine.enqueue("charge", -5);
   * try {
   *   await engine.waitForRun(runId, { timeout: "5m" });
   * } catch (error) {
   *   if (error instanceof RunFailedError) console.log(error.stepName, error.error.message); // charge negative amount
   * }
   * ```
   *
   * @param runId The run.
   * @param options A timeout (a {@linkcode Duration}) and an abort signal.
   * @returns The run's output.
   * @throws {RunFailedError} When the run failed (its stored error is on `error`, rebuilt on `cause`).
   * @throws {RunCancelledError} When it was cancelled.
   * @throws {RunNotFoundError} When there is no such run.
   * @throws {ResultTimeoutError} When the timeout passed first; the run goes on.
   * @throws {ConfigError} On an invalid timeout or signal.
   */
  waitForRun(runId: string, options?: WaitForRunOptions): Promise<unknown>;

  /**
   * Cancels an unfinished run. Its handlers' `signal` aborts with `RunCancelledError` (at once
   * on this engine, at the next heartbeat on another) and no later write of theirs lands.
   *
   * @param runId The run.
   * @example Cancel a run that waits
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const publish = createWorkflow({ name: "publish", input: z.string() })
   *   .waitForEvent("approved", { schema: z.object({ by: z.string() }) })
   *   .step("post", ({ input, prev }) => `${input}, approved by ${prev.by}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [publish] });
   * const { runId } = await engine.enqueue("publish", "draft");
   * await engine.tick(); // the run parks at the wait
   * console.log(await engine.cancel(runId)); // true
   * console.log((await engine.getRunStatus(runId))?.run.status); // cancelled
   * ```
   *
   * @returns True if it cancelled, false if the run had already finished or does not exist.
   */
  cancel(runId: string): Promise<boolean>;

  /**
   * Sends an event to a run. The payload is validated by the wait's schema and stored; a run
   * waiting for this name wakes at once, and a run that has not reached the wait yet finds the
   * event there when it does (events of one name are consumed oldest first). A parked run, or a
   * run whose version or workflow is not registered here, keeps the event for when it continues
   * (validated by the newest registered definition's wait of that name, if it has one).
   *
   * @example Approve a waiting run
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const publish = createWorkflow({ name: "publish", input: z.string() })
   *   .waitForEvent("approved", { schema: z.object({ by: z.string() }) })
   *   .step("post", ({ input, prev }) => `${input}, approved by ${prev.by}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [publish] });
   * await engine.start();
   * const run = await engine.enqueue("publish", "post #1");
   * await engine.sendEvent(run.id, "approved", { by: "ada" });
   * console.log(await run.result()); // post #1, approved by ada
   * ```
   *
   * @param runId The run.
   * @param name The name of a `waitForEvent` unit of the run's workflow.
   * @param payload The event's data.
   * @returns True if stored, false if the run does not exist or has already finished.
   * @throws {ConfigError} When the run's definition has no wait of that name (field `name`).
   * @throws {ValidationError} When the wait's schema rejects the payload.
   * @throws {SerializationError} When the payload cannot be stored.
   */
  sendEvent<N extends EventName<W>>(
    runId: string,
    name: N,
    payload: EventPayloadInput<W, N>,
  ): Promise<boolean>;

  /**
   * Reads a run and its units' results.
   *
   * @example Inspect a run's steps
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * const { runId } = await engine.enqueue("greet", "ada");
   * await engine.tick();
   * const details = await engine.getRunStatus(runId);
   * console.log(details?.run.status, details?.steps.map((step) => [step.name, step.status])); // completed [["hello", "completed"]]
   * ```
   *
   * @param runId The run.
   * @returns The run and its steps, or null for an unknown id.
   */
  getRunStatus(runId: string): Promise<RunDetails | null>;

  /**
   * The engine's events from now on, as an async iterable. Each call is an independent
   * subscription. It ends when the consumer leaves the loop (`break`, `await using`, `close()`)
   * or when `stop()` has let in-flight runs finish; a stalled consumer never holds up `stop()`
   * or a cancellation, and holds runs back for `lagTimeoutMs` at most.
   *
   * @example Follow runs as they finish
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * const events = engine.stream({ bufferSize: 100 });
   * await engine.start();
   * await engine.enqueue("greet", "ada");
   * for await (const event of events) {
   *   if (event.type === "runComplete") {
   *     console.log(event.workflow, event.output); // greet hello ada
   *     break; // leaving the loop ends the stream
   *   }
   * }
   * ```
   *
   * @param options `bufferSize`: unread events held before runs on this engine pause for the
   *   consumer (default `Infinity`: never pause); `lagTimeoutMs`: how long a full buffer may hold
   *   them before the stream ends with a `StreamLaggedError` after its buffered events (default 10 s).
   * @throws {ConfigError} On an invalid `bufferSize` or `lagTimeoutMs`.
   */
  stream(options?: StreamOptions): EventStream;

  /**
   * Lists runs newest first, one page at a time, as an array that carries an exact keyset cursor
   * (`next`): runs created at the same millisecond are neither repeated nor skipped across pages.
   *
   * @example Page through failed runs
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const charge = createWorkflow({ name: "charge", input: z.number() }).step("charge", ({ input }) => {
   *   if (input < 0) throw new Error("negative amount");
   *   return input;
   * });
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [charge] });
   * for (const amount of [-1, -2, 3]) await engine.enqueue("charge", amount);
   * while (await engine.tick() > 0);
   *
   * let runs = await engine.listRuns({ status: "failed", limit: 1 });
   * for (;;) {
   *   for (const run of runs) console.log(run.id, run.error?.message); // <id> negative amount (twice)
   *   if (runs.next === null) break;
   *   runs = await engine.listRuns({ status: "failed", limit: 1, ...runs.next });
   * }
   * ```
   *
   * @param options Filters (`status`, `workflow`), page size (`limit`, default 100, at most 1000)
   *   and the cursor (`before`, `beforeId`) from the previous page's `next`.
   * @returns The page's runs; its `next` is the next page's cursor (null on the last page).
   * @throws {ConfigError} On an invalid filter, limit or cursor (field names it).
   */
  listRuns(options?: ListRunsOptions): Promise<RunPage>;

  /**
   * Reports, per workflow and version, how many runs are in flight, how many the registered
   * definitions will continue, and which they cannot, with the reason: run it from a script
   * holding the new definitions before a deploy, while the old processes still run. Reads the
   * store in pages; step results only of started runs whose fate depends on where they are.
   * Changes nothing.
   *
   * @example Check a changed definition before deploying it
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const storage = new MemoryStorage();
   * const v1 = createWorkflow({ name: "order", version: "1", input: z.string() })
   *   .step("charge", ({ input }) => `charged ${input}`)
   *   .step("ship", ({ prev }) => `${prev}, shipped`);
   * await using old = createEngine({ storage, workflows: [v1] });
   * await old.enqueue("order", "o-1");
   *
   * // Version 2 inserts a step before "charge": fine for runs that have not started yet.
   * const v2 = createWorkflow({ name: "order", version: "2", input: z.string() })
   *   .step("reserve", ({ input }) => input)
   *   .step("charge", ({ input }) => `charged ${input}`)
   *   .step("ship", ({ prev }) => `${prev}, shipped`);
   * await using next = createEngine({ storage, workflows: [v2] });
   * const report = await next.checkRuns();
   * console.log(report.inFlight, report.continuing, report.blocked); // 1 1 0
   * ```
   *
   * @param options The page size, and how many blocked runs to list per version.
   * @returns The report.
   * @throws {ConfigError} On an invalid option.
   */
  checkRuns(options?: CheckRunsOptions): Promise<RunCheckReport>;

  /**
   * Puts a failed or cancelled run back in the queue. Its completed and skipped steps are kept
   * and not run again; the step that failed starts over with fresh attempts. A parked run goes
   * back too, and is checked again against the registered definitions when next claimed.
   *
   * @example Retry a failed run once the cause is fixed
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * let healthy = false;
   * const sync = createWorkflow({ name: "sync", input: z.string() }).step("push", ({ input }) => {
   *   if (!healthy) throw new Error("remote is down");
   *   return `pushed ${input}`;
   * });
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [sync] });
   * const { runId } = await engine.enqueue("sync", "inventory");
   * await engine.tick(); // fails: the remote is down
   * healthy = true;
   * console.log(await engine.resume(runId)); // true
   * await engine.tick();
   * console.log((await engine.getRunStatus(runId))?.run.output); // pushed inventory
   * ```
   *
   * @param runId The run.
   * @returns True if it was re-queued; false if it does not exist or is not failed, cancelled or parked.
   */
  resume(runId: string): Promise<boolean>;

  /**
   * Deletes finished runs (with their steps and events) that finished at least `olderThan` ago,
   * in batches of `batchSize` per transaction. Runs that are not finished are never touched.
   *
   * @example Keep failed runs for a month, the rest for a week
   * ```ts
   * import { createEngine, createWorkflow } from "@reflow/core";
   * import { MemoryStorage } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const greet = createWorkflow({ name: "greet", input: z.string() }).step("hello", ({ input }) => `hello ${input}`);
   *
   * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [greet] });
   * await engine.purge({ olderThan: "7d", status: ["completed", "cancelled"] });
   * await engine.purge({ olderThan: "30d", status: "failed" });
   * ```
   *
   * @param options The age, the statuses (default all finished ones) and the batch size.
   * @returns How many runs were deleted.
   * @throws {ConfigError} On an invalid age, status or batch size.
   */
  purge(options: PurgeOptions): Promise<number>;
}

/**
 * Creates an engine over a storage and a set of workflows.
 *
 * @example Run a workflow on MemoryStorage
 * ```ts
 * import { createEngine, createWorkflow, type StandardSchemaV1 } from "@reflow/core";
 * import { MemoryStorage } from "@reflow/core/test";
 *
 * const anything: StandardSchemaV1<{ n: number }> = {
 *   "~standard": { version: 1, vendor: "example", validate: (value) => ({ value: value as { n: number } }) },
 * };
 * const double = createWorkflow({ name: "double", input: anything })
 *   .step("double", ({ input }) => input.n * 2);
 *
 * await using engine = createEngine({ storage: new MemoryStorage(), workflows: [double] });
 * const { runId } = await engine.enqueue("double", { n: 21 });
 * await engine.tick();
 * const details = await engine.getRunStatus(runId);
 * console.log(details?.run.output); // 42
 * ```
 *
 * @param options Storage, workflows and tuning.
 * @returns A stopped engine; call `start()` or `tick()`.
 * @throws {ConfigError} On an invalid option.
 * @throws {DuplicateWorkflowError} When two workflows share a name.
 */
export function createEngine<const W extends AnyWorkflow>(options: EngineOptions<W>): Engine<W> {
  return new WorkflowEngine(resolveEngineOptions(options)) as Engine<W>;
}

type LoopState = "idle" | "started" | "stopping";

/** At most this many held runs are listed at start (the report names a few and counts the rest). */
const HELD_REPORT_LIMIT = 100;
/** How many runs let go on storage failures an engine remembers (a few hundred KB at most). */
const FAILED_ON_STORAGE_LIMIT = 10_000;

class WorkflowEngine implements Engine<AnyWorkflow> {
  readonly #options: ResolvedEngineOptions;
  readonly #events: EventBus;
  readonly #held = new Map<string, HeldRun>();
  readonly #executions = new Set<Promise<void>>();
  /**
   * Runs whose execution here ended on a storage failure, leaving the lease to lapse. When this
   * engine reclaims one, the worker did not die: the attempt is not charged as lost.
   */
  readonly #failedOnStorage = new Set<string>();
  readonly #streams = new Set<BufferedEventStream>();
  #initialized: Promise<void> | undefined;
  #state: LoopState = "idle";
  #loop: Promise<void> | undefined;
  #pollIntervalMs = 1000;
  #wake: (() => void) | undefined;
  /** Ends the storage's wake-ups of this engine (see `StorageAdapter.watch`). */
  #unwatch: (() => void) | undefined;
  /** Set by a wake-up that found the loop busy (claiming), so its next sleep returns at once. */
  #wakePending = false;
  #nextDueAt = Infinity;
  /** Whether this engine has taken back (or reported) the leases held at its start. */
  #leasesChecked = false;
  #cancelLeaseRecheck: (() => void) | undefined;
  #cancelHeartbeats: (() => void) | undefined;
  #retention: RetentionSweeper | undefined;
  readonly #scheduler: Scheduler;
  readonly #waiters: RunWaiters;
  readonly #versions: VersionRegistry;
  /** Parked runs reported to `onError` since this engine started, so each is reported once. */
  readonly #reportedParked = new Set<string>();
  /** Whether parked runs were looked at since the engine started (or was first ticked). */
  #parkedSwept = false;

  constructor(options: ResolvedEngineOptions) {
    this.#options = options;
    this.#versions = new VersionRegistry(options.versions, options.storage);
    // A consumer that catches up wakes the loop, which claims nothing while a stream is full.
    this.#events = new EventBus(options.hooks, () => this.#notify());
    this.#waiters = new RunWaiters({
      storage: options.storage,
      events: this.#events,
      pollIntervalMs: () => this.#pollIntervalMs,
    });
    this.#scheduler = new Scheduler({
      options,
      initialize: () => this.#initialize(),
      notify: () => this.#notify(),
      reportError: (error, operation) => this.#events.reportError(asReflowError(error, operation)),
    });
  }

  async start(pollIntervalMs = 1000): Promise<void> {
    if (typeof pollIntervalMs !== "number" || !(pollIntervalMs > 0) || !Number.isFinite(pollIntervalMs)) {
      throw new ConfigError(
        `Invalid pollIntervalMs ${String(pollIntervalMs)}: expected a positive number of ms`,
        {
          field: "pollIntervalMs",
        },
      );
    }
    if (this.#state === "stopping") await this.#loop;
    if (this.#state === "started") return;
    await this.#initialize();
    await this.#sweepParked();
    await this.#reclaimOwnLeases(true);
    this.#pollIntervalMs = pollIntervalMs;
    this.#state = "started";
    this.#loop = this.#runLoop();
    const { retention, storage, now } = this.#options;
    // Another process's enqueue, event or release wakes the loop now rather than at its next poll.
    this.#unwatch = typeof storage.watch === "function" ? storage.watch(() => this.#notify()) : undefined;
    if (retention !== undefined) {
      this.#retention = new RetentionSweeper(
        storage,
        retention,
        now,
        (error) => this.#events.reportError(asReflowError(error, "purgeRuns")),
      );
      this.#retention.start();
    }
  }

  async stop(): Promise<void> {
    this.#unwatch?.();
    this.#unwatch = undefined;
    this.#cancelLeaseRecheck?.();
    this.#cancelLeaseRecheck = undefined;
    if (this.#state === "started") {
      this.#state = "stopping";
      this.#notify();
      await this.#loop;
    }
    this.#state = "stopping";
    const retention = this.#retention;
    this.#retention = undefined;
    await retention?.stop();
    // Runs finishing below must not wait on a consumer that stopped reading.
    this.#events.setIgnoreCongestion(true);
    try {
      if (this.#executions.size > 0) {
        const allSettled = Promise.allSettled(this.#executions);
        // The grace timer is cleared once runs settle, or it would keep the process alive for its length.
        const grace = new AbortController();
        await Promise.race([allSettled, delay(this.#options.stopTimeoutMs, grace.signal)]);
        grace.abort();
        if (this.#executions.size > 0) {
          for (const held of this.#held.values()) held.controller.abort(new EngineStoppedError());
          await allSettled;
        }
      }
    } finally {
      this.#stopHeartbeats();
      for (const stream of this.#streams) stream.end();
      this.#events.setIgnoreCongestion(false);
      this.#state = "idle";
      this.#parkedSwept = false;
      this.#reportedParked.clear();
    }
  }

  async checkRuns(options?: CheckRunsOptions): Promise<RunCheckReport> {
    await this.#initialize();
    return await checkRuns(this.#options.storage, this.#versions, options);
  }

  /** Once per start (or first tick): re-queues parked runs that can continue now, reports the others. */
  async #sweepParked(): Promise<void> {
    if (this.#parkedSwept) return;
    this.#parkedSwept = true;
    const { storage, versions, now } = this.#options;
    await sweepParked({
      storage,
      versions: this.#versions,
      names: versions,
      now,
      report: (error) => this.#reportParked(error),
      notify: () => this.#notify(),
    });
  }

  #reportParked(error: VersionMismatchError): void {
    if (this.#reportedParked.has(error.runId)) return;
    this.#reportedParked.add(error.runId);
    this.#events.reportError(error);
  }

  async listRuns(options?: ListRunsOptions): Promise<RunPage> {
    const query = toRunQuery(options);
    await this.#initialize();
    return await listRunPage(this.#options.storage, query);
  }

  async resume(runId: string): Promise<boolean> {
    // A parked run goes back as any other: the next claim checks its version again.
    await this.#initialize();
    const resumed = await this.#options.storage.requeueRun(runId, this.#options.now());
    if (resumed) this.#notify();
    return resumed;
  }

  async purge(options: PurgeOptions): Promise<number> {
    const plan = resolvePurge(options);
    await this.#initialize();
    return await purgeFinishedRuns(this.#options.storage, plan, this.#options.now());
  }

  stream(options?: StreamOptions): EventStream {
    const stream = new BufferedEventStream(
      this.#events,
      resolveStreamOptions(options),
      (ended) => this.#streams.delete(ended),
    );
    this.#streams.add(stream);
    return stream;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async tick(): Promise<number> {
    await this.#initialize();
    if (!this.#parkedSwept) await this.#sweepParked();
    await this.#reclaimOwnLeases(false);
    await this.#scheduler.fireIfDue(this.#pollIntervalMs);
    const claimed = await this.#claim(this.#options.concurrency - this.#held.size);
    await Promise.all(claimed.map((run) => this.#launch(run)));
    return claimed.length;
  }

  waitForRun(runId: string, options?: WaitForRunOptions): Promise<unknown> {
    return this.#initialize().then(() => this.#waiters.wait(runId, options));
  }

  async enqueue(name: string, input: unknown, options?: EnqueueOptions): Promise<RunHandle> {
    const checked = checkOptionKeys(options, ENQUEUE_OPTION_KEYS, undefined, "enqueue options");
    const workflow = registeredVersion(this.#options, name, checked?.version);
    const idempotencyKey = optionalKey(checked?.idempotencyKey, "idempotencyKey") ?? null;
    const { value: validated, encoded } = await storableValue(
      workflow.inputSchema,
      input,
      `input for workflow "${name}"`,
    );
    await this.#initialize();
    const { run, created } = await this.#options.storage.createRun({
      id: newRunId(),
      workflowName: name,
      workflowVersion: workflow.version,
      input: encoded,
      idempotencyKey,
      createdAt: this.#options.now(),
    });
    if (!created && run.input !== encoded && !valuesEqual(decodeValue(run.input), validated)) {
      throw new IdempotencyConflictError(name, idempotencyKey as string, run.id);
    }
    if (created) this.#notify();
    return {
      runId: run.id,
      created,
      id: run.id,
      workflow: run.workflowName,
      version: run.workflowVersion,
      status: run.status,
      input: created ? validated : decodeValue(run.input),
      idempotencyKey: run.idempotencyKey,
      createdAt: run.createdAt,
      updatedAt: run.updatedAt,
      result: (resultOptions) => this.#waiters.wait(run.id, resultOptions),
    };
  }

  schedule(name: string, input: unknown, recurrence: unknown, options?: ScheduleOptions): Promise<string> {
    return this.#scheduler.schedule(name, input, recurrence, options);
  }

  unschedule(key: string): Promise<boolean> {
    return this.#scheduler.unschedule(key);
  }

  listSchedules(): Promise<ScheduleInfo[]> {
    return this.#scheduler.list();
  }

  async cancel(runId: string): Promise<boolean> {
    await this.#initialize();
    const cancelled = await this.#options.storage.updateRunStatus(runId, "cancelled");
    if (cancelled) {
      this.#held.get(runId)?.controller.abort(new RunCancelledError(runId));
      this.#waiters.notify(runId);
    }
    return cancelled;
  }

  async sendEvent(runId: string, name: string, payload: unknown): Promise<boolean> {
    await this.#initialize();
    const { storage, workflows, now } = this.#options;
    const run = await storage.getRun(runId);
    if (run === null || isFinishedStatus(run.status)) return false;
    // A run this engine would not execute as it stands keeps the event for when it continues.
    const own = run.status === "parked" ? undefined : this.#versions.exact(run);
    const workflow = own ?? workflows.get(run.workflowName);
    const wait = workflow?.units.find((unit): unit is WaitUnit => unit.kind === "wait" && unit.name === name);
    if (wait === undefined && own !== undefined) {
      throw new ConfigError(
        `Cannot send event "${name}" to run "${runId}": workflow "${own.name}" has no waitForEvent("${name}")`,
        { field: "name" },
      );
    }
    const { encoded } = await storableValue(wait?.schema ?? null, payload, `payload of event "${name}"`);
    const delivered = await storage.deliverEvent(runId, { name, payload: encoded, createdAt: now() });
    if (delivered) this.#notify();
    return delivered;
  }

  async getRunStatus(runId: string): Promise<RunDetails | null> {
    await this.#initialize();
    const run = await this.#options.storage.getRun(runId);
    if (run === null) return null;
    const steps = run.claimCount === 0 ? [] : await this.#options.storage.getStepResults(runId);
    return { run: toRunInfo(run), steps: steps.map(toStepInfo) };
  }

  #initialize(): Promise<void> {
    if (this.#initialized === undefined) {
      const { storage, now } = this.#options;
      const ready = storage.initialize().then(async () => {
        for (const reused of await this.#versions.register(now())) {
          this.#events.reportError(
            new ConfigError(
              `Version ${JSON.stringify(reused.version)} of workflow "${reused.name}" is registered with a ` +
                "shape other than the one stored for it: give a changed definition a new version",
              { field: "version" },
            ),
          );
        }
      });
      this.#initialized = ready.catch((error) => {
        this.#initialized = undefined; // let a later call retry
        throw error;
      });
    }
    return this.#initialized;
  }

  /**
   * Claims up to `limit` runs; none while a bounded stream is full, since they could only wait for
   * its consumer while holding leases that other engines could use.
   */
  async #claim(limit: number): Promise<ClaimedRun[]> {
    if (limit <= 0 || this.#events.congested) return [];
    const { storage, workflowNames, now, leaseDurationMs, instanceId } = this.#options;
    return await storage.claimRuns({
      workflowNames,
      limit,
      now: now(),
      leaseDurationMs,
      ...(instanceId === undefined ? {} : { instanceId }),
    });
  }

  /**
   * Once per engine: with an `instanceId`, makes the runs a previous incarnation of this slot held
   * due now, so the first claim takes them back; without one, `start()` looks for runs that wait
   * for another worker's lease and reports the ones whose lease was not renewed two heartbeats
   * later (they may be this process's, from before a restart). A live peer renews its leases at
   * every heartbeat and step, so a healthy fleet of hosts reports nothing.
   */
  async #reclaimOwnLeases(starting: boolean): Promise<void> {
    if (this.#leasesChecked) return;
    const { storage, instanceId, heartbeatIntervalMs, leaseDurationMs } = this.#options;
    if (instanceId === undefined && !starting) return;
    this.#leasesChecked = true;
    try {
      if (instanceId !== undefined) {
        await storage.expireInstanceLeases(instanceId, this.#options.now());
        return;
      }
      const held = await this.#heldLeases();
      if (held.length === 0) return;
      this.#cancelLeaseRecheck = setLongTimeout(
        () => void this.#reportUnrenewed(held),
        Math.min(2 * heartbeatIntervalMs, leaseDurationMs * 0.75),
        { unref: true },
      );
    } catch (error) {
      this.#events.reportError(asReflowError(error, "expireInstanceLeases"));
    }
  }

  /** The runs of this engine's workflows held by an unexpired lease, with its expiry. */
  async #heldLeases(): Promise<HeldLease[]> {
    const { storage, now, workflows } = this.#options;
    const time = now();
    const running = await storage.listRuns({ statuses: ["running"], limit: HELD_REPORT_LIMIT });
    return running
      .filter((run) => run.dueAt !== null && run.dueAt > time && workflows.has(run.workflowName))
      .map((run) => ({ runId: run.id, until: run.dueAt! }));
  }

  /** Reports the runs of `before` still held by the same, unrenewed lease expiry. */
  async #reportUnrenewed(before: readonly HeldLease[]): Promise<void> {
    this.#cancelLeaseRecheck = undefined;
    try {
      const now = new Map((await this.#heldLeases()).map((lease) => [lease.runId, lease.until]));
      const stale = before.filter((lease) => now.get(lease.runId) === lease.until);
      if (stale.length > 0) this.#events.reportError(new LeasesHeldError(stale));
    } catch (error) {
      this.#events.reportError(asReflowError(error, "listRuns"));
    }
  }

  /** The worker loop: claim into free slots, then sleep until woken, polled, or a parked run is due. */
  async #runLoop(): Promise<void> {
    while (this.#state === "started") {
      const free = this.#events.congested ? 0 : this.#options.concurrency - this.#held.size;
      let saturated = free <= 0;
      // Cleared before the claim: a wake-up arriving while the claim runs must not be lost.
      this.#wakePending = false;
      let sleepMs = this.#pollIntervalMs;
      try {
        await this.#scheduler.fireIfDue(this.#pollIntervalMs);
        if (free > 0) {
          try {
            const claimed = await this.#claim(free);
            for (const run of claimed) void this.#launch(run);
            saturated = claimed.length === free;
          } catch (error) {
            this.#events.reportError(asReflowError(error, "claimRuns"));
          }
        }
        if (this.#state !== "started") break;
        // With every slot taken, only a finishing run frees one; otherwise nothing is due until
        // a local enqueue, the next poll, or the earliest run this engine parked.
        const now = this.#options.now();
        const dueIn = this.#nextDueAt - now;
        if (dueIn <= 0) this.#nextDueAt = Infinity;
        const scheduleIn = this.#scheduler.wakeAt() - now;
        sleepMs = Math.max(
          0,
          Math.min(saturated ? this.#pollIntervalMs : Math.min(this.#pollIntervalMs, dueIn), scheduleIn),
        );
      } catch (error) {
        // A broken clock (see the `now` option) is reported, and the loop waits a poll interval.
        this.#events.reportError(asReflowError(error, "workerLoop"));
      }
      await this.#sleep(sleepMs);
    }
  }

  /** Wakes the worker loop now, or makes its next sleep return at once if it is busy. */
  #notify(): void {
    this.#wakePending = true;
    this.#wake?.();
  }

  #sleep(ms: number): Promise<void> {
    if (this.#wakePending) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const cancel = setLongTimeout(done, ms);
      const wake = () => done();
      this.#wake = wake;
      function done(): void {
        cancel();
        resolve();
      }
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  /**
   * Remembers a run this engine let go on a storage failure. Another host may reclaim it, and then
   * this engine never sees it again: the oldest entries go past {@linkcode FAILED_ON_STORAGE_LIMIT}.
   */
  #noteStorageFailure(runId: string): void {
    this.#failedOnStorage.add(runId);
    if (this.#failedOnStorage.size > FAILED_ON_STORAGE_LIMIT) {
      this.#failedOnStorage.delete(this.#failedOnStorage.values().next().value!);
    }
  }

  #launch(claimed: ClaimedRun): Promise<void> {
    if (this.#failedOnStorage.delete(claimed.id) && claimed.recoveries > 0) {
      claimed = { ...claimed, recoveries: 0 };
    }
    const held: HeldRun = {
      runId: claimed.id,
      leaseId: claimed.leaseId,
      controller: new AbortController(),
      renewedAt: this.#options.now(),
    };
    // This engine's own expired lease was reclaimed (by itself): the older execution must stop writing.
    this.#held.get(claimed.id)?.controller.abort(new LeaseExpiredError(claimed.id));
    this.#held.set(claimed.id, held);
    this.#startHeartbeats();
    const execution = executeRun(
      {
        options: this.#options,
        events: this.#events,
        isStopping: () => this.#state === "stopping",
        versions: this.#versions,
        reportMismatch: (error) => this.#reportParked(error),
      },
      claimed,
      held,
    ).then(
      (exit) => this.#noteExit(exit),
      (error) => {
        if (error instanceof StorageError) this.#noteStorageFailure(claimed.id);
        this.#events.reportError(asReflowError(error, "executeRun"));
      },
    ).finally(() => {
      if (this.#held.get(claimed.id) === held) this.#held.delete(claimed.id);
      if (this.#held.size === 0) this.#stopHeartbeats();
      this.#executions.delete(execution);
      this.#notify();
    });
    this.#executions.add(execution);
    return execution;
  }

  #noteExit(exit: RunExit): void {
    if (exit.kind === "parked" && exit.dueAt !== null && exit.dueAt < this.#nextDueAt) {
      this.#nextDueAt = exit.dueAt;
    }
  }

  #startHeartbeats(): void {
    if (this.#cancelHeartbeats !== undefined) return;
    const { heartbeatIntervalMs, leaseDurationMs } = this.#options;
    const interval = Math.max(1, Math.floor(heartbeatIntervalMs / 2));
    let inFlight = false;
    // Measured on the monotonic clock, not the injectable one: this is about the event loop.
    let expectedAt = performance.now() + interval;
    // The step being guarded keeps the process alive if it needs to; the heartbeat alone must not.
    this.#cancelHeartbeats = setLongInterval(
      () => {
        const firedAt = performance.now();
        const lateMs = firedAt - expectedAt;
        expectedAt = firedAt + interval;
        // Half the lease late: the renewals are that close to lapsing (a heartbeat alone keeps them).
        if (lateMs > leaseDurationMs / 2) {
          this.#events.reportError(new EventLoopBlockedError(Math.round(lateMs), leaseDurationMs));
        }
        // A slow storage must not pile up renewals; the next tick catches up.
        if (inFlight) return;
        inFlight = true;
        void this.#heartbeat()
          .catch((error) => this.#events.reportError(asReflowError(error, "heartbeatRun")))
          .finally(() => inFlight = false);
      },
      interval,
      { unref: true },
    );
  }

  #stopHeartbeats(): void {
    this.#cancelHeartbeats?.();
    this.#cancelHeartbeats = undefined;
  }

  /** Renews the leases that have gone half a heartbeat interval without a renewal. */
  async #heartbeat(): Promise<void> {
    const { storage, now, heartbeatIntervalMs, leaseDurationMs } = this.#options;
    const time = now();
    const due = [...this.#held.values()].filter((held) => time - held.renewedAt >= heartbeatIntervalMs / 2);
    await Promise.all(due.map(async (held) => {
      if (held.controller.signal.aborted) return;
      try {
        const renewed = await storage.heartbeatRun(held.runId, held.leaseId, time + leaseDurationMs);
        if (renewed) {
          held.renewedAt = time;
          return;
        }
        const run = await storage.getRun(held.runId);
        held.controller.abort(
          run?.status === "cancelled" ? new RunCancelledError(held.runId) : new LeaseExpiredError(held.runId),
        );
      } catch (error) {
        this.#events.reportError(asReflowError(error, "heartbeatRun"));
      }
    }));
  }
}

/**
 * The registered definition `enqueue` starts a run under: the named version, or the newest.
 *
 * @throws {WorkflowNotFoundError} For an unknown name.
 * @throws {ConfigError} For a version that is not a registered one (field `version`).
 */
function registeredVersion(options: ResolvedEngineOptions, name: string, version: unknown): AnyWorkflow {
  const newest = registeredWorkflow(options.workflows, name);
  if (version === undefined) return newest;
  const named = typeof version === "string" ? options.versions.get(name)?.get(version) : undefined;
  if (named === undefined) {
    const known = [...options.versions.get(name)!.keys()].map((key) => JSON.stringify(key)).join(", ");
    throw new ConfigError(
      `Invalid version ${JSON.stringify(version)} of workflow "${name}": registered versions are ${known}`,
      { field: "version" },
    );
  }
  return named;
}

function asReflowError(error: unknown, operation: string): ReflowError {
  if (error instanceof ReflowError) return error;
  return new InternalError(
    `Unexpected failure in ${operation}: ${(error as Error)?.message ?? String(error)}`,
    {
      cause: error,
    },
  );
}
