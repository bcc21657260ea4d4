/**
 * Records that every storage writes the same way, so that their shape is decided once.
 *
 * @module
 */

import type { EncodedValue, NewRun, StepResult, WorkflowRun } from "./adapter.ts";

/** A newly created run: `pending`, due at once, never claimed. */
export function pendingRun(run: NewRun): WorkflowRun {
  return {
    id: run.id,
    workflowName: run.workflowName,
    status: "pending",
    input: run.input,
    output: null,
    error: null,
    idempotencyKey: run.idempotencyKey,
    createdAt: run.createdAt,
    updatedAt: run.createdAt,
    dueAt: run.createdAt,
    leaseId: null,
    claimCount: 0,
  };
}

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
