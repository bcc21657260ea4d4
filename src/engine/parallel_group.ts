import { LeaseExpiredError, ParallelCompleteError, SerializationError, WorkerLostError } from "../errors.ts";
import type { EncodedValue, StepResult } from "../storage/adapter.ts";
import { decodeValue, encodeValue } from "../storage/codec.ts";
import { Completion } from "../workflow/workflow.ts";
import type { ParallelUnit, StepContext, StepUnit } from "../workflow/workflow.ts";
import type { EngineEvent, EventBus, EventFields } from "./events.ts";
import type { ResolvedEngineOptions } from "./options.ts";
import { runAttempt } from "./step_attempt.ts";
import { frozenCopy, NOTHING, restoreError, stepResult } from "./step_result.ts";
import { delay } from "../timers.ts";

/** What a parallel group needs from the execution of its run. */
export interface GroupHost {
  readonly runId: string;
  readonly options: ResolvedEngineOptions;
  readonly events: EventBus;
  /** Aborted by a cancel, a stop or a lost lease; it aborts every branch. */
  readonly runSignal: AbortSignal;
  /** True once the engine stops: a group that has not begun hands its run back. */
  isStopping(): boolean;
  /** Emits an event of this run. */
  emit<T extends EngineEvent["type"]>(type: T, fields: EventFields<T>): void;
  /** A handler's context; `onComplete` backs its `complete()`. */
  context(
    stepName: string,
    signal: AbortSignal,
    attempt: number,
    onComplete: (value: unknown) => Completion<unknown>,
  ): StepContext<unknown, unknown, unknown>;
  /**
   * Commits a failed attempt as `retrying`, keeping the lease: the siblings keep running.
   * Returns undefined when the lease was lost.
   */
  recordRetry(
    unit: StepUnit,
    attempt: number,
    error: Error,
  ): Promise<{ readonly delayMs: number } | undefined>;
  /** Commits a branch's result and renews the lease; false when the lease was lost. */
  commitStep(step: StepResult): Promise<boolean>;
}

/** A branch that failed for good (in this execution or, stored, in an earlier one), and so fails its run. */
interface BranchFailure {
  readonly kind: "failed";
  readonly stepName: string;
  readonly error: Error;
  readonly attempts: number;
}

/**
 * How a group ended: every branch `done` (with its outputs in branch order and the group's value),
 * `failed` (fails the run), `stopping` (the engine stops before the group began: hand the run back),
 * `aborted` by the run's signal, or its lease `lost`.
 */
export type GroupOutcome =
  | {
    readonly kind: "done";
    readonly outputs: ReadonlyMap<string, EncodedValue>;
    readonly value: Record<string, unknown>;
    readonly encoded: EncodedValue;
  }
  | BranchFailure
  | { readonly kind: "stopping" | "lost" }
  | { readonly kind: "aborted"; readonly reason: unknown };

/** How one branch ended: committed, failed for good, aborted (by a sibling or the run), or its lease lost. */
type BranchOutcome =
  | { readonly kind: "done"; readonly encoded: EncodedValue }
  | BranchFailure
  | { readonly kind: "aborted" | "lost" };

const STOPPING: GroupOutcome = { kind: "stopping" };
const GROUP_LOST: GroupOutcome = { kind: "lost" };
const ABORTED: BranchOutcome = { kind: "aborted" };
const BRANCH_LOST: BranchOutcome = { kind: "lost" };

/**
 * Runs a parallel group's unfinished branches concurrently; each commits its own result. The first
 * branch to fail for good aborts the others and fails the run. With `lostAttempt` (the run was
 * taken from a lost worker while the group ran), every unfinished branch is charged that attempt.
 */
export async function runParallelGroup(
  host: GroupHost,
  unit: ParallelUnit,
  stored: ReadonlyMap<string, StepResult>,
  lostAttempt: boolean,
): Promise<GroupOutcome> {
  const outputs = new Map<string, EncodedValue>();
  const unfinished: StepUnit[] = [];
  for (const branch of unit.branches) {
    const previous = stored.get(branch.name);
    if (previous?.status === "completed") outputs.set(branch.name, previous.output ?? NOTHING);
    else if (previous?.status === "failed") {
      return {
        kind: "failed",
        stepName: branch.name,
        error: restoreError(previous.error),
        attempts: previous.attempts,
      };
    } else unfinished.push(branch);
  }
  if (unfinished.length > 0) {
    if (host.isStopping()) return STOPPING;
    const runSignal = host.runSignal;
    const group = new AbortController();
    const forward = () => group.abort(runSignal.reason);
    runSignal.addEventListener("abort", forward, { once: true });
    let failure: BranchFailure | undefined;
    let lost = false;
    try {
      await Promise.all(unfinished.map(async (branch) => {
        let outcome: BranchOutcome;
        try {
          outcome = await runBranch(host, branch, stored.get(branch.name), group.signal, lostAttempt);
        } catch (error) {
          // A storage failure abandons the run (its lease lapses and it is reclaimed): the
          // siblings must stop too, or they would run on, unseen, beside the next execution.
          group.abort(error);
          throw error;
        }
        if (outcome.kind === "done") outputs.set(branch.name, outcome.encoded);
        else if (outcome.kind === "failed" && failure === undefined && !group.signal.aborted) {
          failure = outcome;
          group.abort(outcome.error);
        } else if (outcome.kind === "lost") {
          lost = true;
          group.abort(new LeaseExpiredError(host.runId));
        }
      }));
    } finally {
      runSignal.removeEventListener("abort", forward);
    }
    if (runSignal.aborted) return { kind: "aborted", reason: runSignal.reason };
    if (lost) return GROUP_LOST;
    if (failure !== undefined) return failure;
  }
  const ordered = new Map<string, EncodedValue>();
  for (const branch of unit.branches) ordered.set(branch.name, outputs.get(branch.name)!);
  // fromEntries defines own properties: a branch named "__proto__" is a key, not the prototype.
  const value = Object.fromEntries(Array.from(ordered, ([name, encoded]) => [name, decodeValue(encoded)]));
  // Re-encoding decoded outputs cannot fail: each was accepted, and their sum may pass the size
  // limit (which bounds what one handler produces), so it is not applied to the group's value.
  return { kind: "done", outputs: ordered, value, encoded: encodeValue(value, Infinity) };
}

/** One branch's attempts; retry delays are waited out in this worker, which keeps the lease. */
async function runBranch(
  host: GroupHost,
  unit: StepUnit,
  previous: StepResult | undefined,
  signal: AbortSignal,
  lostAttempt: boolean,
): Promise<BranchOutcome> {
  const { options, events } = host;
  let attempt = previous?.status === "retrying" ? previous.attempts : 0;
  if (lostAttempt) {
    attempt++;
    const lost = new WorkerLostError(host.runId, unit.name, attempt);
    const failed = await failedAttempt(host, unit, attempt, lost, signal);
    if (failed !== undefined) return failed;
  } else if (previous?.status === "retrying" && previous.dueAt !== null) {
    await delay(previous.dueAt - options.now(), signal);
  }
  for (;;) {
    // Backpressure from a full stream: the wait ends early if the group is aborted.
    if (events.congested) await events.whenFlowing(signal);
    if (signal.aborted) return ABORTED;
    attempt++;
    host.emit("stepStart", { stepName: unit.name, attempt });
    const startedAt = options.now();
    let completed = false;
    const outcome = await runAttempt(unit.name, unit.timeoutMs, signal, (attemptSignal) => {
      const context = host.context(unit.name, attemptSignal, attempt, (value) => {
        completed = true;
        return new Completion(value);
      });
      return unit.handler(context);
    });
    if (signal.aborted) return ABORTED;
    if (outcome.ok && (completed || Completion.is(outcome.value))) {
      return {
        kind: "failed",
        stepName: unit.name,
        error: new ParallelCompleteError(unit.name),
        attempts: attempt,
      };
    }
    if (!outcome.ok) {
      const failed = await failedAttempt(host, unit, attempt, outcome.error, signal);
      if (failed !== undefined) return failed;
      continue;
    }
    let encoded: EncodedValue;
    try {
      encoded = encodeValue(outcome.value);
    } catch (error) {
      if (error instanceof SerializationError) {
        return { kind: "failed", stepName: unit.name, error, attempts: attempt };
      }
      throw error;
    }
    const now = options.now();
    const step = stepResult(host.runId, unit.name, "completed", encoded, null, attempt, null, now);
    if (!await host.commitStep(step)) return BRANCH_LOST;
    host.emit("stepComplete", {
      stepName: unit.name,
      attempt: attempt,
      output: frozenCopy(encoded),
      durationMs: now - startedAt,
    });
    return { kind: "done", encoded };
  }
}

/**
 * A failed attempt of a branch: fails it for good when no attempt is left, or commits the retry
 * and waits out its delay (returning undefined to go on), or reports the lease lost.
 */
async function failedAttempt(
  host: GroupHost,
  unit: StepUnit,
  attempt: number,
  error: Error,
  signal: AbortSignal,
): Promise<BranchOutcome | undefined> {
  if (attempt >= unit.retry.maxAttempts) {
    return { kind: "failed", stepName: unit.name, error, attempts: attempt };
  }
  const wait = await host.recordRetry(unit, attempt, error);
  if (wait === undefined) return BRANCH_LOST;
  await delay(wait.delayMs, signal);
  return undefined;
}
