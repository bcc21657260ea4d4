import type { EncodedValue, StepResult } from "./adapter.ts";

/**
 * The step result `awaitEvent()` writes, the same in every storage: `completed` with the consumed
 * event's payload, or `waiting` until `timeoutAt`. A wait counts as one attempt either way.
 */
export function waitStepResult(
  runId: string,
  stepName: string,
  now: number,
  outcome: { readonly payload: EncodedValue } | { readonly timeoutAt: number | null },
): StepResult {
  const received = "payload" in outcome;
  return {
    runId,
    stepName,
    status: received ? "completed" : "waiting",
    output: received ? outcome.payload : null,
    error: null,
    attempts: 1,
    dueAt: received ? null : outcome.timeoutAt,
    updatedAt: now,
  };
}
