import {
  ConditionError,
  EngineStoppedError,
  HookError,
  RecoveryLimitError,
  SerializationError,
  StepFailedError,
  type VersionMismatchError,
  WaitTimeoutError,
  WorkerLostError,
} from "../errors.ts";
import type { ClaimedRun, EncodedValue, RunAdvance, StepResult } from "../storage/adapter.ts";
import { decodeValue, deepFreeze, encodeValue } from "../storage/codec.ts";
import { retryDelayMs } from "../workflow/retry.ts";
import { Completion } from "../workflow/workflow.ts";
import type {
  AnyWorkflow,
  ParallelUnit,
  SleepUnit,
  StepContext,
  StepUnit,
  WaitUnit,
} from "../workflow/workflow.ts";
import type { EngineEvent, EventBus, EventFields } from "./events.ts";
import type { ResolvedEngineOptions } from "./options.ts";
import { type GroupHost, runParallelGroup } from "./parallel_group.ts";
import { runAttempt } from "./step_attempt.ts";
import { frozenCopy, NOTHING, restoreError, stepResult, toStoredError } from "./step_result.ts";
import type { VersionRegistry } from "./versions.ts";

/** A run this engine holds: its lease and the switch that aborts its handlers. */
export interface HeldRun {
  readonly runId: string;
  readonly leaseId: string;
  readonly controller: AbortController;
  /** When the lease was last renewed, by a heartbeat or a step commit. */
  renewedAt: number;
}

/**
 * How an execution ended: `finished` (completed or failed), `parked` (due again at `dueAt`),
 * `released` (handed back because the engine stops), or `lost` (lease lost: cancelled or reclaimed).
 */
export type RunExit =
  | { readonly kind: "finished" | "released" | "lost" }
  | { readonly kind: "parked"; readonly dueAt: number | null };

const FINISHED: RunExit = { kind: "finished" };
const LOST: RunExit = { kind: "lost" };
const RELEASED: RunExit = { kind: "released" };
/** Parked for a version mismatch: due again only when a definition that can continue it is registered. */
const PARKED: RunExit = { kind: "parked", dueAt: null };

/** What an execution needs from its engine. */
export interface ExecutorDeps {
  readonly options: ResolvedEngineOptions;
  readonly events: EventBus;
  readonly isStopping: () => boolean;
  /** The registered versions, which decide the definition a run executes under. */
  readonly versions: VersionRegistry;
  /** Reports a run this execution parked for a version mismatch. */
  readonly reportMismatch: (error: VersionMismatchError) => void;
}

/**
 * Runs a claimed run from its first unfinished unit until it finishes, parks, or loses its lease.
 * Every outcome is committed through `advanceRun`, fenced by the lease, before the next unit starts.
 */
export async function executeRun(deps: ExecutorDeps, claimed: ClaimedRun, held: HeldRun): Promise<RunExit> {
  // The common case, a run of a registered version, costs two map lookups and no write.
  const workflow = deps.versions.exact(claimed) ?? await chooseVersion(deps, claimed, held);
  if (!("units" in workflow)) return workflow;
  const execution = new RunExecution(deps, workflow, claimed, held);
  return await execution.run();
}

/**
 * For a run whose version is not registered: stores its move to a registered version that agrees
 * with everything it has done, or parks it with the reason none does.
 */
async function chooseVersion(
  deps: ExecutorDeps,
  claimed: ClaimedRun,
  held: HeldRun,
): Promise<AnyWorkflow | RunExit> {
  const { versions, options } = deps;
  if (!versions.knowsShape(claimed)) await versions.refresh();
  const decision = versions.decide(claimed, claimed.steps.map((step) => step.stepName));
  if (decision.kind === "run") {
    const stored = await options.storage.updateRunVersion(
      claimed.id,
      held.leaseId,
      decision.workflow.version,
    );
    return stored ? decision.workflow : LOST;
  }
  const { error } = decision;
  const change: RunAdvance = { now: options.now(), status: "parked", error: toStoredError(error, undefined) };
  if (!await options.storage.advanceRun(claimed.id, held.leaseId, change)) return LOST;
  deps.reportMismatch(error);
  return PARKED;
}

class RunExecution {
  readonly #deps: ExecutorDeps;
  readonly #workflow: AnyWorkflow;
  readonly #run: ClaimedRun;
  readonly #held: HeldRun;
  readonly #input: unknown;
  /** Encoded outputs of finished units by name; skipped units map to the encoding of undefined. */
  readonly #outputs = new Map<string, EncodedValue>();
  #frozenSteps: Record<string, unknown> | undefined;
  /** The previous unit's output as a live value, when this execution produced it. */
  #prev: { readonly value: unknown } | undefined = { value: undefined };
  #prevEncoded: EncodedValue = NOTHING;
  /**
   * The run was taken from a worker that died or lost its lease: the first unit without a
   * finished result was in progress there, and a step or branch is charged that lost attempt.
   */
  #lostAttempt: boolean;

  constructor(deps: ExecutorDeps, workflow: AnyWorkflow, run: ClaimedRun, held: HeldRun) {
    this.#deps = deps;
    this.#workflow = workflow;
    this.#run = run;
    this.#held = held;
    this.#input = decodeValue(run.input);
    this.#lostAttempt = run.recoveries > 0;
  }

  async run(): Promise<RunExit> {
    if (this.#run.claimCount === 1) this.#emit("runStart", () => ({ input: frozenCopy(this.#run.input) }));
    const { maxRecoveries } = this.#deps.options;
    if (this.#run.recoveries > maxRecoveries) {
      return await this.#fail(
        undefined,
        new RecoveryLimitError(this.#run.id, this.#run.recoveries, maxRecoveries),
        0,
      );
    }
    const stored = new Map<string, StepResult>();
    for (const step of this.#run.steps) stored.set(step.stepName, step);
    const units = this.#workflow.units;

    for (let index = 0; index < units.length; index++) {
      const unit = units[index];
      const isLast = index === units.length - 1;
      if (unit.kind === "parallel") {
        const exit = await this.#runParallel(unit, isLast, stored);
        if (exit !== undefined) return exit;
        continue;
      }
      const previous = stored.get(unit.name);
      if (previous?.status === "completed" || previous?.status === "skipped") {
        // A sleep passes `prev` through and has no output of its own.
        if (unit.kind !== "sleep") this.#remember(unit.name, previous.output ?? NOTHING, undefined);
        continue;
      }
      if (this.#deps.events.congested) {
        const exit = await this.#waitForConsumers();
        if (exit !== undefined) return exit;
      }
      if (this.#deps.isStopping()) return await this.#release();
      if (previous?.status === "failed") {
        // A failed unit always fails its run in the same commit; finish what a partial write began.
        return await this.#fail(unit.name, restoreError(previous.error), previous.attempts);
      }
      const lostAttempt = this.#lostAttempt;
      this.#lostAttempt = false;
      const exit = unit.kind === "step"
        ? await this.#runStep(unit, isLast, previous, lostAttempt)
        : unit.kind === "sleep"
        ? await this.#runSleep(unit, isLast, previous)
        : await this.#runWait(unit, isLast, previous);
      if (exit !== undefined) return exit;
    }
    // Every unit is done but the run is not completed: no units at all, or the last unit's result
    // was committed apart from the completion (a wait, a parallel group) and the process died between.
    return await this.#completeWith(this.#prevEncoded);
  }

  /**
   * Parks the run until the sleep's wake time, fixed in its step result the first time it is
   * reached, or passes through once that time has come.
   */
  async #runSleep(
    unit: SleepUnit,
    isLast: boolean,
    previous: StepResult | undefined,
  ): Promise<RunExit | undefined> {
    const now = this.#deps.options.now();
    const wakeAt = previous?.status === "sleeping" && previous.dueAt !== null
      ? previous.dueAt
      : now + unit.durationMs;
    if (wakeAt > now) {
      const step = stepResult(this.#run.id, unit.name, "sleeping", null, null, 1, wakeAt, now);
      if (!await this.#advance({ now, step, status: "sleeping", dueAt: wakeAt })) return LOST;
      return { kind: "parked", dueAt: wakeAt };
    }
    const step = stepResult(this.#run.id, unit.name, "completed", NOTHING, null, 1, null, now);
    if (!await this.#commitStep(step, isLast ? this.#prevEncoded : undefined)) return LOST;
    this.#emit("stepComplete", {
      stepName: unit.name,
      attempt: 1,
      output: undefined,
      durationMs: now - (wakeAt - unit.durationMs),
    });
    return isLast ? this.#emitComplete(this.#prevEncoded) : undefined;
  }

  /** Takes the awaited event if one was sent, or parks the run until one is (or the wait times out). */
  async #runWait(
    unit: WaitUnit,
    isLast: boolean,
    previous: StepResult | undefined,
  ): Promise<RunExit | undefined> {
    const { options } = this.#deps;
    const now = options.now();
    const timeoutAt = previous?.status === "waiting"
      ? previous.dueAt
      : unit.timeoutMs === null
      ? null
      : now + unit.timeoutMs;
    const timeout = new WaitTimeoutError(unit.name, unit.timeoutMs ?? 0);
    // The storage decides the timeout and commits the failure in one transaction, so an event
    // sent at that moment is either consumed here or refused: never acknowledged and then lost.
    const result = await options.storage.awaitEvent(this.#run.id, this.#held.leaseId, {
      now,
      stepName: unit.name,
      timeoutAt,
      timeoutError: toStoredError(timeout, unit.name),
    });
    switch (result.outcome) {
      case "lost":
        return LOST;
      case "parked":
        return { kind: "parked", dueAt: timeoutAt };
      case "timedOut":
        return await this.#failed(unit.name, timeout);
    }
    // The event and the step result were committed together; only the run's completion is left.
    this.#emit("stepComplete", () => ({
      stepName: unit.name,
      attempt: 1,
      output: frozenCopy(result.payload),
      durationMs: 0,
    }));
    if (isLast) return await this.#completeWith(result.payload);
    this.#remember(unit.name, result.payload, undefined);
    return undefined;
  }

  /** Runs a parallel group (its branches run in parallel_group.ts) and settles the run if it ends there. */
  async #runParallel(
    unit: ParallelUnit,
    isLast: boolean,
    stored: ReadonlyMap<string, StepResult>,
  ): Promise<RunExit | undefined> {
    const lostAttempt = this.#lostAttempt;
    if (unit.branches.some((branch) => !isFinished(stored.get(branch.name)))) this.#lostAttempt = false;
    const group = await runParallelGroup(this.#groupHost(), unit, stored, lostAttempt);
    switch (group.kind) {
      case "failed":
        return await this.#fail(group.stepName, group.error, group.attempts);
      case "stopping":
        return await this.#release();
      case "aborted":
        return await this.#abandon(group.reason);
      case "lost":
        return LOST;
    }
    for (const [name, encoded] of group.outputs) this.#outputs.set(name, encoded);
    if (isLast) return await this.#completeWith(group.encoded);
    this.#setPrev(group.encoded, { value: group.value });
    return undefined;
  }

  /** What a parallel group's branches use of this execution; retry delays are waited out holding the lease. */
  #groupHost(): GroupHost {
    const { options, events, isStopping } = this.#deps;
    return {
      runId: this.#run.id,
      options,
      events,
      runSignal: this.#held.controller.signal,
      isStopping,
      emit: (type, fields) => this.#emit(type, fields),
      context: (stepName, signal, attempt, onComplete) =>
        this.#context(stepName, signal, attempt, onComplete),
      recordRetry: (unit, attempt, error) => this.#recordRetry(unit, attempt, error, false),
      commitStep: (step) => this.#commitStep(step),
    };
  }

  /**
   * Commits a unit's result. Given `runOutput`, the same transaction completes the run with it
   * (the last unit, or an early completion); otherwise the run goes on and its lease is renewed.
   */
  #commitStep(step: StepResult, runOutput?: EncodedValue): Promise<boolean> {
    const now = step.updatedAt;
    return runOutput === undefined
      ? this.#advance({ now, step, leaseExpiresAt: now + this.#deps.options.leaseDurationMs })
      : this.#advance({ now, step, status: "completed", output: runOutput });
  }

  /**
   * Runs a step's attempts; returns an exit if the run stops here, or undefined to go on. A lost
   * attempt (see {@linkcode RunExecution.#lostAttempt}) is committed first, as a failed attempt.
   */
  async #runStep(
    unit: StepUnit,
    isLast: boolean,
    previous: StepResult | undefined,
    lostAttempt: boolean,
  ): Promise<RunExit | undefined> {
    const { options } = this.#deps;
    // `when` is asked until it has answered: before the first attempt, and again after an
    // attempt that failed in `when` itself or was lost (whether `when` had answered is unknown).
    let decided = unit.when === null || (previous !== undefined && !awaitsCondition(previous));
    let attempt = previous?.status === "retrying" ? previous.attempts : 0;
    if (lostAttempt) {
      attempt++;
      const lost = new WorkerLostError(this.#run.id, unit.name, attempt);
      const exit = await this.#attemptFailed(unit, attempt, lost);
      if (exit !== undefined) return exit;
    }
    for (;;) {
      attempt++;
      const signal = this.#held.controller.signal;
      if (!decided) {
        const decision = await this.#decide(unit, signal);
        if (!decision.ok) {
          if (signal.aborted) return await this.#abandon(signal.reason);
          const exit = await this.#attemptFailed(unit, attempt, decision.error);
          if (exit !== undefined) return exit;
          continue;
        }
        if (!decision.value) return await this.#skip(unit.name, isLast);
        decided = true;
      }
      this.#emit("stepStart", { stepName: unit.name, attempt });
      const startedAt = options.now();
      let completion: Completion<unknown> | undefined;
      const outcome = await runAttempt(unit.name, unit.timeoutMs, signal, (attemptSignal) => {
        const context = this.#context(
          unit.name,
          attemptSignal,
          attempt,
          (value) => (completion = new Completion(value)),
        );
        return unit.handler(context);
      });
      if (!outcome.ok) {
        if (signal.aborted) return await this.#abandon(signal.reason);
        const exit = await this.#attemptFailed(unit, attempt, outcome.error);
        if (exit !== undefined) return exit;
        continue;
      }
      if (Completion.is(outcome.value)) completion = outcome.value;
      return await this.#stepSucceeded(unit.name, isLast, attempt, startedAt, completion, outcome.value);
    }
  }

  /** Asks a step's `when`, under the run's signal; what it throws or rejects with becomes a ConditionError. */
  async #decide(
    unit: StepUnit,
    signal: AbortSignal,
  ): Promise<{ readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error }> {
    const outcome = await runAttempt(
      unit.name,
      null,
      signal,
      () => unit.when!({ input: this.#input, prev: this.#prevValue(), steps: this.#stepsSnapshot() }),
    );
    if (outcome.ok || signal.aborted) return outcome;
    const thrown = outcome.error instanceof StepFailedError ? outcome.error.value : outcome.error;
    return { ok: false, error: new ConditionError(unit.name, thrown) };
  }

  /** Commits a step whose `when` said no. */
  async #skip(stepName: string, isLast: boolean): Promise<RunExit | undefined> {
    const now = this.#deps.options.now();
    const step = stepResult(this.#run.id, stepName, "skipped", NOTHING, null, 0, null, now);
    if (!await this.#commitStep(step, isLast ? NOTHING : undefined)) return LOST;
    this.#emit("stepSkipped", { stepName });
    if (isLast) return this.#emitComplete(NOTHING);
    this.#remember(stepName, NOTHING, { value: undefined });
    return undefined;
  }

  async #stepSucceeded(
    stepName: string,
    isLast: boolean,
    attempt: number,
    startedAt: number,
    completion: Completion<unknown> | undefined,
    value: unknown,
  ): Promise<RunExit | undefined> {
    const { options } = this.#deps;
    const output = completion === undefined ? value : completion.value;
    let encoded: EncodedValue;
    try {
      encoded = encodeValue(output);
    } catch (error) {
      // The same value would fail every attempt, so this is final.
      if (error instanceof SerializationError) return await this.#fail(stepName, error, attempt);
      throw error;
    }
    const now = options.now();
    const step = stepResult(this.#run.id, stepName, "completed", encoded, null, attempt, null, now);
    const ends = isLast || completion !== undefined;
    if (!await this.#commitStep(step, ends ? encoded : undefined)) return LOST;
    // Hooks and streams get a frozen copy: the live value goes on as the next step's `prev`.
    this.#emit("stepComplete", () => ({
      stepName,
      attempt,
      output: frozenCopy(encoded),
      durationMs: now - startedAt,
    }));
    if (ends) return this.#emitComplete(encoded);
    this.#remember(stepName, encoded, { value: output });
    return undefined;
  }

  /** Stores a failed attempt: parks the run for a retry, retries at once, or fails the run. */
  async #attemptFailed(unit: StepUnit, attempt: number, error: Error): Promise<RunExit | undefined> {
    if (attempt >= unit.retry.maxAttempts) return await this.#fail(unit.name, error, attempt);
    const retry = await this.#recordRetry(unit, attempt, error, true);
    if (retry === undefined) return LOST;
    return retry.delayMs === 0 ? undefined : { kind: "parked", dueAt: retry.dueAt };
  }

  /**
   * Commits a failed attempt as `retrying`, with the next attempt's due time. With `mayPark`, a
   * delay parks the run without a lease until due; otherwise (a zero delay, or a parallel branch,
   * whose siblings keep running) the worker keeps the lease and waits itself.
   * Returns undefined when the lease was lost.
   */
  async #recordRetry(
    unit: StepUnit,
    attempt: number,
    error: Error,
    mayPark: boolean,
  ): Promise<{ readonly delayMs: number; readonly dueAt: number } | undefined> {
    const { options } = this.#deps;
    const now = options.now();
    const delayMs = retryDelayMs(unit.retry, attempt, options.random);
    const dueAt = now + delayMs;
    const stored = toStoredError(error, unit.name);
    const step = stepResult(this.#run.id, unit.name, "retrying", null, stored, attempt, dueAt, now);
    const committed = mayPark && delayMs > 0
      ? await this.#advance({ now, step, status: "pending", dueAt })
      : await this.#commitStep(step);
    if (!committed) return undefined;
    this.#emit("stepRetry", { stepName: unit.name, attempt, error, nextAttemptAt: dueAt });
    return { delayMs, dueAt };
  }

  async #fail(stepName: string | undefined, error: Error, attempts: number): Promise<RunExit> {
    const { options } = this.#deps;
    const now = options.now();
    const storedError = toStoredError(error, stepName);
    const change: RunAdvance = stepName === undefined ? { now, status: "failed", error: storedError } : {
      now,
      step: stepResult(this.#run.id, stepName, "failed", null, storedError, attempts, null, now),
      status: "failed",
      error: storedError,
    };
    return await this.#advance(change) ? await this.#failed(stepName, error) : LOST;
  }

  /** After the failure is committed: reports it and runs the workflow's `onFailure` once. */
  async #failed(stepName: string | undefined, error: Error): Promise<RunExit> {
    this.#emit("runFailed", { stepName, error });
    const handler = this.#workflow.failureHandler;
    if (handler === null) return FINISHED;
    try {
      await handler({ runId: this.#run.id, error, stepName, input: frozenCopy(this.#run.input) });
    } catch (thrown) {
      this.#deps.events.reportError(new HookError("onFailure", thrown));
    }
    return FINISHED;
  }

  /** Completes the run with `output`, when no unit's commit could carry the completion. */
  async #completeWith(output: EncodedValue): Promise<RunExit> {
    const now = this.#deps.options.now();
    if (!await this.#advance({ now, status: "completed", output })) return LOST;
    return this.#emitComplete(output);
  }

  /**
   * Emits an event of this run, building it only when a hook or a stream listens (`fields` may
   * be a function, for fields that cost a copy).
   */
  #emit<T extends EngineEvent["type"]>(type: T, fields: EventFields<T> | (() => EventFields<T>)): void {
    const { events } = this.#deps;
    if (!events.wants(type)) return;
    const values = typeof fields === "function" ? fields() : fields;
    const event: Record<string, unknown> = {
      type,
      runId: this.#run.id,
      workflow: this.#workflow.name,
      ...values,
    };
    // reflow-ts's name for the successful attempt's number.
    if (type === "stepComplete") event.attempts = event.attempt;
    events.emit(event as unknown as EngineEvent);
  }

  #emitComplete(output: EncodedValue): RunExit {
    this.#emit("runComplete", () => ({ output: frozenCopy(output) }));
    return FINISHED;
  }

  /** Backpressure from a full stream: waits at a unit boundary; a cancel, a stop or a lost lease ends the wait. */
  async #waitForConsumers(): Promise<RunExit | undefined> {
    const signal = this.#held.controller.signal;
    await this.#deps.events.whenFlowing(signal);
    return signal.aborted ? await this.#abandon(signal.reason) : undefined;
  }

  /** After an abort: a stopping engine hands the run back; a cancel or a lost lease leaves nothing to write. */
  async #abandon(reason: unknown): Promise<RunExit> {
    return reason instanceof EngineStoppedError ? await this.#release() : LOST;
  }

  async #release(): Promise<RunExit> {
    const released = await this.#deps.options.storage.updateClaimedRunStatus(
      this.#run.id,
      this.#held.leaseId,
      "pending",
    );
    return released ? RELEASED : LOST;
  }

  async #advance(change: RunAdvance): Promise<boolean> {
    const committed = await this.#deps.options.storage.advanceRun(this.#run.id, this.#held.leaseId, change);
    if (committed) this.#held.renewedAt = change.now;
    return committed;
  }

  #remember(name: string, encoded: EncodedValue, live: { readonly value: unknown } | undefined): void {
    this.#outputs.set(name, encoded);
    this.#setPrev(encoded, live);
  }

  #setPrev(encoded: EncodedValue, live: { readonly value: unknown } | undefined): void {
    this.#frozenSteps = undefined;
    this.#prevEncoded = encoded;
    this.#prev = live;
  }

  #prevValue(): unknown {
    if (this.#prev === undefined) this.#prev = { value: decodeValue(this.#prevEncoded) };
    return this.#prev.value;
  }

  /** A deep-frozen copy of every earlier output, built only when a handler reads `steps`. */
  #stepsSnapshot(): Record<string, unknown> {
    if (this.#frozenSteps === undefined) {
      // fromEntries defines own properties: a unit named "__proto__" is a key, not the prototype.
      const snapshot = Object.fromEntries(
        Array.from(this.#outputs, ([name, encoded]) => [name, decodeValue(encoded)]),
      );
      this.#frozenSteps = deepFreeze(snapshot);
    }
    return this.#frozenSteps;
  }

  #context(
    stepName: string,
    signal: AbortSignal,
    attempt: number,
    onComplete: (value: unknown) => Completion<unknown>,
  ): StepContext<unknown, unknown, unknown> {
    // Snapshots are built on first read only: most handlers never touch `prev` or `steps`.
    const prev = () => this.#prevValue();
    const steps = () => this.#stepsSnapshot();
    return {
      runId: this.#run.id,
      stepName,
      input: this.#input,
      get prev() {
        return prev();
      },
      get steps() {
        return steps();
      },
      signal,
      attempt,
      // Thrown, so code after `complete()` does not run (as in reflow-ts); `return complete(v)` still
      // type-checks, and a handler that swallows the throw still ends the run (onComplete noted it).
      complete: (...value: [] | [unknown]) => {
        throw onComplete(value[0]);
      },
    } as StepContext<unknown, unknown, unknown>;
  }
}

/** Whether a unit has a result that needs no more work. */
function isFinished(result: StepResult | undefined): boolean {
  return result?.status === "completed" || result?.status === "skipped" || result?.status === "failed";
}

/** Whether a step's stored retry leaves its `when` unanswered: its last attempt failed there, or was lost. */
function awaitsCondition(previous: StepResult): boolean {
  const code = previous.status === "retrying" ? previous.error?.code : undefined;
  return code === "CONDITION_FAILED" || code === "WORKER_LOST";
}
