/**
 * The run statuses as values, for the checks and filters that need to list them.
 *
 * @module
 */

import type { FinishedRunStatus, RunStatus } from "./adapter.ts";

/** Every finished status: a run in one of these is never claimed again. */
export const FINISHED_RUN_STATUSES: readonly FinishedRunStatus[] = ["completed", "failed", "cancelled"];

/** Every run status. */
export const RUN_STATUSES: readonly RunStatus[] = [
  "pending",
  "running",
  "sleeping",
  "waiting",
  "parked",
  ...FINISHED_RUN_STATUSES,
];

const finished: ReadonlySet<string> = new Set(FINISHED_RUN_STATUSES);
const known: ReadonlySet<string> = new Set(RUN_STATUSES);

/** Whether `status` is a finished status. */
export function isFinishedStatus(status: unknown): status is FinishedRunStatus {
  return finished.has(status as string);
}

/** Whether `status` is a run status at all. */
export function isRunStatus(status: unknown): status is RunStatus {
  return known.has(status as string);
}
