import { EngineStoppedError, HookError, SerializationError } from "../errors.ts";
import type { ClaimedRun, EncodedValue, RunAdvance, StepResult, StoredError } from "../storage/adapter.ts";
import { decodeValue, deepFreeze, encodeValue } from "../storage/codec.ts";
import { retryDelayMs } from "../workflow/retry.ts";
import { Completion } from "../workflow/workflow.ts";
import type { AnyWorkflow, StepContext, StepUnit } from "../workflow/workflow.ts";
import type { EventBus } from "./events.ts";
import type { ResolvedEngineOptions } from "./options.ts";
import { runAttempt } from "./step_attempt.ts";
import { isPromiseLike } from "../async.ts";

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

/** What an execution needs from its engine. */
export interface ExecutorDeps {
  readonly options: ResolvedEngineOptions;
  readonly events: EventBus;
  readonly isStopping: () => boolean;
}

/** No unit ran before the first one, so its `prev` is undefined. */
const NOTHING: EncodedValue = encodeValue(undefined);

/**
 * Runs a claimed run from its first unfinished unit until it finishes, parks, or loses its lease.
 * Every outcome is committed through `advanceRun`, fenced by the lease, before the next unit starts.
 */
export async function executeRun(deps: ExecutorDeps, claimed: ClaimedRun, held: HeldRun): Promise<RunExit> {
  const workflow = deps.options.workflows.get(claimed.workflowName) as AnyWorkflow;
  const execution = new RunExecution(deps, workflow, claimed, held);
  return await execution.run();
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

  constructor(deps: ExecutorDeps, workflow: AnyWorkflow, run: ClaimedRun, held: HeldRun) {
    this.#deps = deps;
    this.#workflow = workflow;
    this.#run = run;
    this.#held = held;
    this.#input = decodeValue(run.input);
  }

  async run(): Promise<RunExit> {
    const { events } = this.#deps;
    if (this.#run.claimCount === 1 && events.wants("run:start")) {
      events.emit({
        type: "run:start",
        runId: this.#run.id,
        workflowName: this.#workflow.name,
        input: this.#input,
      });
    }
    const stored = new Map<string, StepResult>();
    for (const step of this.#run.steps) stored.set(step.stepName, step);
    const units = this.#workflow.units;
    if (units.length === 0) return await this.#complete();

    for (let index = 0; index < units.length; index++) {
      const unit = units[index];
      const previous = stored.get(unit.name);
      if (previous?.status === "completed" || previous?.status === "skipped") {
        this.#remember(unit.name, previous.output ?? NOTHING, undefined);
        continue;
      }
      if (this.#deps.isStopping()) return await this.#release();
      if (previous?.status === "failed") {
        // A failed unit always fails its run in the same commit; finish what a partial write began.
        return await this.#fail(unit.name, restoreError(previous.error), previous.attempts);
      }
      const exit = await this.#runStep(unit, index === units.length - 1, previous);
      if (exit !== undefined) return exit;
    }
    return FINISHED;
  }

  /** Runs a step's attempts; returns an exit if the run stops here, or undefined to go on. */
  async #runStep(
    unit: StepUnit,
    isLast: boolean,
    previous: StepResult | undefined,
  ): Promise<RunExit | undefined> {
    const { options, events } = this.#deps;
    const runId = this.#run.id;
    const workflowName = this.#workflow.name;

    if (unit.when !== null && previous === undefined) {
      const decision = unit.when({
        input: this.#input,
        prev: this.#prevValue(),
        steps: this.#stepsSnapshot(),
      });
      const runIt = isPromiseLike(decision) ? await decision : decision;
      if (!runIt) {
        const now = options.now();
        const step = stepResult(runId, unit.name, "skipped", NOTHING, null, 0, null, now);
        const committed = isLast
          ? await this.#advance({ now, step, status: "completed", output: NOTHING })
          : await this.#advance({ now, step, leaseExpiresAt: now + options.leaseDurationMs });
        if (!committed) return LOST;
        if (events.wants("step:skipped")) {
          events.emit({ type: "step:skipped", runId, workflowName, stepName: unit.name });
        }
        if (isLast) return this.#emitComplete(undefined);
        this.#remember(unit.name, NOTHING, { value: undefined });
        return undefined;
      }
    }

    let attempt = previous?.status === "retrying" ? previous.attempts : 0;
    for (;;) {
      attempt++;
      if (events.wants("step:start")) {
        events.emit({ type: "step:start", runId, workflowName, stepName: unit.name, attempt });
      }
      const startedAt = options.now();
      let completion: Completion<unknown> | undefined;
      const outcome = await runAttempt(unit.name, unit.timeoutMs, this.#held.controller.signal, (signal) => {
        const context = this.#context(
          unit.name,
          signal,
          attempt,
          (value) => (completion = new Completion(value)),
        );
        return unit.handler(context);
      });
      const signal = this.#held.controller.signal;
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

  async #stepSucceeded(
    stepName: string,
    isLast: boolean,
    attempt: number,
    startedAt: number,
    completion: Completion<unknown> | undefined,
    value: unknown,
  ): Promise<RunExit | undefined> {
    const { options, events } = this.#deps;
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
    const committed = ends
      ? await this.#advance({ now, step, status: "completed", output: encoded })
      : await this.#advance({ now, step, leaseExpiresAt: now + options.leaseDurationMs });
    if (!committed) return LOST;
    if (events.wants("step:complete")) {
      events.emit({
        type: "step:complete",
        runId: this.#run.id,
        workflowName: this.#workflow.name,
        stepName,
        attempt,
        output,
        durationMs: now - startedAt,
      });
    }
    if (ends) return this.#emitComplete(output);
    this.#remember(stepName, encoded, { value: output });
    return undefined;
  }

  /** Stores a failed attempt: parks the run for a retry, retries at once, or fails the run. */
  async #attemptFailed(unit: StepUnit, attempt: number, error: Error): Promise<RunExit | undefined> {
    const { options, events } = this.#deps;
    if (attempt >= unit.retry.maxAttempts) return await this.#fail(unit.name, error, attempt);
    const now = options.now();
    const delay = retryDelayMs(unit.retry, attempt, options.random);
    const dueAt = now + delay;
    const step = stepResult(
      this.#run.id,
      unit.name,
      "retrying",
      null,
      toStoredError(error, unit.name),
      attempt,
      dueAt,
      now,
    );
    // A zero delay retries in this worker; any other parks the run without a lease until due.
    const committed = delay === 0
      ? await this.#advance({ now, step, leaseExpiresAt: now + options.leaseDurationMs })
      : await this.#advance({ now, step, status: "pending", dueAt });
    if (!committed) return LOST;
    if (events.wants("step:retry")) {
      events.emit({
        type: "step:retry",
        runId: this.#run.id,
        workflowName: this.#workflow.name,
        stepName: unit.name,
        attempt,
        error,
        nextAttemptAt: dueAt,
      });
    }
    return delay === 0 ? undefined : { kind: "parked", dueAt };
  }

  async #fail(stepName: string | undefined, error: Error, attempts: number): Promise<RunExit> {
    const { options, events } = this.#deps;
    const now = options.now();
    const storedError = toStoredError(error, stepName);
    const change: RunAdvance = stepName === undefined ? { now, status: "failed", error: storedError } : {
      now,
      step: stepResult(this.#run.id, stepName, "failed", null, storedError, attempts, null, now),
      status: "failed",
      error: storedError,
    };
    if (!await this.#advance(change)) return LOST;
    if (events.wants("run:failed")) {
      events.emit({
        type: "run:failed",
        runId: this.#run.id,
        workflowName: this.#workflow.name,
        stepName,
        error,
      });
    }
    await this.#compensate(error, stepName);
    return FINISHED;
  }

  async #compensate(error: Error, stepName: string | undefined): Promise<void> {
    const handler = this.#workflow.failureHandler;
    if (handler === null) return;
    try {
      await handler({ runId: this.#run.id, error, stepName, input: this.#input });
    } catch (thrown) {
      this.#deps.events.reportError(new HookError("onFailure", thrown));
    }
  }

  /** Completes a workflow that has no units. */
  async #complete(): Promise<RunExit> {
    const now = this.#deps.options.now();
    if (!await this.#advance({ now, status: "completed", output: NOTHING })) return LOST;
    return this.#emitComplete(undefined);
  }

  #emitComplete(output: unknown): RunExit {
    const { events } = this.#deps;
    if (events.wants("run:complete")) {
      events.emit({ type: "run:complete", runId: this.#run.id, workflowName: this.#workflow.name, output });
    }
    return FINISHED;
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
      const snapshot: Record<string, unknown> = {};
      for (const [name, encoded] of this.#outputs) snapshot[name] = decodeValue(encoded);
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
      complete: (...value: [] | [unknown]) => onComplete(value[0]),
    } as StepContext<unknown, unknown, unknown>;
  }
}

function stepResult(
  runId: string,
  stepName: string,
  status: StepResult["status"],
  output: EncodedValue | null,
  error: StoredError | null,
  attempts: number,
  dueAt: number | null,
  updatedAt: number,
): StepResult {
  return { runId, stepName, status, output, error, attempts, dueAt, updatedAt };
}

/** The stored form of an error: class name, code (when it has one) and message. */
export function toStoredError(error: Error, stepName: string | undefined): StoredError {
  const code = (error as { code?: unknown }).code;
  const stored = {
    code: typeof code === "string" ? code : typeof code === "number" ? String(code) : null,
    name: error.name,
    message: error.message,
  };
  return stepName === undefined ? stored : { ...stored, stepName };
}

/** Rebuilds an error from its stored form, for a run whose failure must be committed again. */
function restoreError(stored: StoredError | null): Error {
  const error = new Error(stored?.message ?? "Unknown failure");
  error.name = stored?.name ?? "Error";
  if (stored?.code != null) (error as Error & { code: string }).code = stored.code;
  return error;
}
