/**
 * Records that every storage writes the same way, so that their shape is decided once.
 *
 * @module
 */

import type {
  EncodedValue,
  NewRun,
  NewSchedule,
  RunCounts,
  RunStatus,
  ScheduleRecord,
  StepResult,
  StoredError,
  UpsertScheduleResult,
  WorkflowRun,
} from "./adapter.ts";
import { RUN_STATUSES } from "./statuses.ts";

/** A newly created run: `pending`, due at once, never claimed. */
export function pendingRun(run: NewRun): WorkflowRun {
  return {
    id: run.id,
    workflowName: run.workflowName,
    workflowVersion: run.workflowVersion ?? null,
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

/** How a wait ends in `awaitEvent()`: an event's payload, a park until `timeoutAt`, or a timeout's error. */
export type WaitOutcome =
  | { readonly payload: EncodedValue }
  | { readonly timeoutAt: number | null }
  | { readonly error: StoredError };

/**
 * The step result `awaitEvent()` writes, the same in every storage: `completed` with the consumed
 * event's payload, `waiting` until `timeoutAt`, or `failed` with the timeout's error. A wait counts
 * as one attempt in each case.
 */
export function waitStepResult(
  runId: string,
  stepName: string,
  now: number,
  outcome: WaitOutcome,
): StepResult {
  const base = { runId, stepName, attempts: 1, updatedAt: now };
  if ("payload" in outcome) {
    return { ...base, status: "completed", output: outcome.payload, error: null, dueAt: null };
  }
  if ("error" in outcome) {
    return { ...base, status: "failed", output: null, error: outcome.error, dueAt: null };
  }
  return { ...base, status: "waiting", output: null, error: null, dueAt: outcome.timeoutAt };
}

/**
 * The schedule `upsertSchedule()` stores, the same in every storage: a new key starts with no
 * last run; an existing key keeps its cadence (next slot, last run, creation time) while its
 * recurrence text is unchanged, and starts again from `nextRunAt` when it changed.
 *
 * @param existing The stored schedule with that key, or null.
 * @param schedule The checked argument.
 * @returns The record to store and whether the key is new.
 */
export function upsertedSchedule(
  existing: ScheduleRecord | null,
  schedule: NewSchedule,
): UpsertScheduleResult {
  const { key, workflowName, input, recurrence, nextRunAt, now } = schedule;
  if (existing === null) {
    const created = { lastRunAt: null, lastRunId: null, createdAt: now };
    return {
      schedule: { key, workflowName, input, recurrence, nextRunAt, ...created, updatedAt: now },
      created: true,
    };
  }
  const kept = existing.recurrence === recurrence ? existing : { ...existing, recurrence, nextRunAt };
  return { schedule: { ...kept, workflowName, input, updatedAt: now }, created: false };
}

/**
 * A schedule after `claimScheduleSlot()` took its slot for `runId`, the same in every storage.
 *
 * @param existing The stored schedule, whose `nextRunAt` was the slot.
 * @param nextRunAt The slot after it.
 * @param runId The id of the run created for the slot (or of the run that held its key).
 * @param now The run's `createdAt`.
 * @returns The record to store.
 */
export function claimedSchedule(
  existing: ScheduleRecord,
  nextRunAt: number,
  runId: string,
  now: number,
): ScheduleRecord {
  return { ...existing, nextRunAt, lastRunAt: existing.nextRunAt, lastRunId: runId, updatedAt: now };
}

/** Counts of zero for every status, for `countRuns()` to fill in. */
export function zeroCounts(): Record<RunStatus, number> & RunCounts {
  return Object.fromEntries(RUN_STATUSES.map((status) => [status, 0])) as Record<RunStatus, number>;
}
