/**
 * Input checks shared by every storage (`MemoryStorage`, `SqlStorage`): a malformed argument
 * rejects with a `StorageError` naming the field and the value, instead of reaching the database
 * or the in-memory indexes as a value of the wrong type.
 *
 * @module
 */

import { describe } from "../describe.ts";
import { StorageError } from "../errors.ts";
import { malformedName } from "../names.ts";
import type {
  ClaimRequest,
  EventWait,
  FinishedRunStatus,
  NewRun,
  NewSchedule,
  PurgeRequest,
  RunQuery,
  RunStatus,
  StepResult,
  StepStatus,
  StoredError,
  WorkflowVersionRecord,
} from "./adapter.ts";
import { FINISHED_RUN_STATUSES, RUN_STATUSES } from "./statuses.ts";

const RUN_STATUS_SET: ReadonlySet<string> = new Set(RUN_STATUSES);

const STEP_STATUSES: ReadonlySet<string> = new Set<StepStatus>([
  "completed",
  "skipped",
  "failed",
  "retrying",
  "sleeping",
  "waiting",
]);

/** The statuses of a finished run. */
export const FINISHED: ReadonlySet<string> = new Set(FINISHED_RUN_STATUSES);

/** The statuses `requeueRun()` re-queues from. */
export const REQUEUEABLE: ReadonlySet<string> = new Set<RunStatus>(["failed", "cancelled", "parked"]);

/**
 * A `StorageError` of kind `"other"` for a malformed argument.
 *
 * @param operation The storage method.
 * @param message What is wrong.
 * @returns The error.
 */
export function invalid(operation: string, message: string): StorageError {
  return new StorageError(operation, message, { kind: "other" });
}

export { describe };

/**
 * Whether a value is a non-null object.
 *
 * @param value Any value.
 * @returns True for objects and arrays.
 */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/**
 * Checks that a value is a string.
 *
 * @param operation The storage method.
 * @param field The argument's name, for the message.
 * @param value The value.
 * @returns The string.
 * @throws {StorageError} If it is not a string.
 */
export function checkString(operation: string, field: string, value: unknown): string {
  if (typeof value !== "string") {
    throw invalid(operation, `invalid ${field} ${describe(value)}: expected a string`);
  }
  return value;
}

/**
 * Checks a name or key to be stored (a workflow, step or event name, an idempotency or schedule
 * key, a run id): a string of well-formed Unicode without NUL, the only text every driver stores
 * exactly.
 *
 * @param operation The storage method.
 * @param field The argument's name, for the message.
 * @param value The value.
 * @returns The name.
 * @throws {StorageError} If it is not a string, or breaks the naming rule.
 */
export function checkName(operation: string, field: string, value: unknown): string {
  const error = malformedName(field, checkString(operation, field, value));
  if (error !== undefined) throw invalid(operation, error.message);
  return value as string;
}

/**
 * Checks that a value is a finite number of milliseconds.
 *
 * @param operation The storage method.
 * @param field The argument's name, for the message.
 * @param value The value.
 * @returns The number.
 * @throws {StorageError} If it is not a finite number.
 */
export function checkTime(operation: string, field: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw invalid(operation, `invalid ${field} ${describe(value)}: expected a finite number of milliseconds`);
  }
  return value;
}

/**
 * Checks that a value is null or a finite number of milliseconds.
 *
 * @param operation The storage method.
 * @param field The argument's name, for the message.
 * @param value The value.
 * @returns The value.
 * @throws {StorageError} If it is neither.
 */
export function checkTimeOrNull(operation: string, field: string, value: unknown): number | null {
  return value === null ? null : checkTime(operation, field, value);
}

/**
 * Checks a stored error and copies its fields.
 *
 * @param operation The storage method.
 * @param field The argument's name, for the message.
 * @param value The value.
 * @returns A copy, with `stepName` only when given.
 * @throws {StorageError} If it is not a stored error.
 */
export function checkError(operation: string, field: string, value: unknown): StoredError {
  if (!isObject(value)) {
    throw invalid(operation, `invalid ${field} ${describe(value)}: expected a stored error`);
  }
  const code = value.code === null ? null : checkString(operation, `${field}.code`, value.code);
  const error: StoredError = {
    code,
    name: checkString(operation, `${field}.name`, value.name),
    message: checkString(operation, `${field}.message`, value.message),
  };
  return value.stepName === undefined
    ? error
    : { ...error, stepName: checkString(operation, `${field}.stepName`, value.stepName) };
}

/**
 * Checks an event wait and copies it.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy.
 * @throws {StorageError} If it is not an event wait.
 */
export function checkEventWait(operation: string, value: unknown): EventWait {
  if (!isObject(value)) throw invalid(operation, `invalid wait ${describe(value)}: expected an object`);
  return {
    now: checkTime(operation, "now", value.now),
    stepName: checkName(operation, "stepName", value.stepName),
    timeoutAt: checkTimeOrNull(operation, "timeoutAt", value.timeoutAt),
    timeoutError: checkError(operation, "timeoutError", value.timeoutError),
  };
}

/**
 * Checks a step result and copies it.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy.
 * @throws {StorageError} If it is not a step result.
 */
export function checkStep(operation: string, value: unknown): StepResult {
  if (!isObject(value)) {
    throw invalid(operation, `invalid step result ${describe(value)}: expected an object`);
  }
  const status = value.status;
  if (typeof status !== "string" || !STEP_STATUSES.has(status)) {
    throw invalid(operation, `invalid step status ${describe(status)}`);
  }
  const attempts = value.attempts;
  if (typeof attempts !== "number" || !Number.isInteger(attempts) || attempts < 0) {
    throw invalid(operation, `invalid step attempts ${describe(attempts)}: expected an integer >= 0`);
  }
  return {
    runId: checkString(operation, "step runId", value.runId),
    stepName: checkName(operation, "stepName", value.stepName),
    status: status as StepStatus,
    output: value.output === null ? null : checkString(operation, "step output", value.output),
    error: value.error === null ? null : checkError(operation, "step error", value.error),
    attempts,
    dueAt: checkTimeOrNull(operation, "step dueAt", value.dueAt),
    updatedAt: checkTime(operation, "step updatedAt", value.updatedAt),
  };
}

/**
 * Checks a run status.
 *
 * @param operation The storage method.
 * @param value The value.
 * @param allowRunning Whether `"running"` is acceptable.
 * @returns The status.
 * @throws {StorageError} If it is not an acceptable status.
 */
export function checkStatus(operation: string, value: unknown, allowRunning: boolean): RunStatus {
  if (typeof value !== "string" || !RUN_STATUS_SET.has(value) || (!allowRunning && value === "running")) {
    const expected = allowRunning ? "a run status" : 'a run status other than "running"';
    throw invalid(operation, `invalid status ${describe(value)}: expected ${expected}`);
  }
  return value as RunStatus;
}

/**
 * Checks the argument of `createRun()` and copies it; a missing idempotency key becomes null.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy.
 * @throws {StorageError} If it is not a new run.
 */
export function checkNewRun(operation: string, value: unknown): NewRun {
  if (!isObject(value)) throw invalid(operation, `invalid run ${describe(value)}: expected an object`);
  return {
    id: checkName(operation, "id", value.id),
    workflowName: checkName(operation, "workflowName", value.workflowName),
    workflowVersion: value.workflowVersion == null
      ? null
      : checkName(operation, "workflowVersion", value.workflowVersion),
    input: checkString(operation, "input", value.input),
    idempotencyKey: value.idempotencyKey == null
      ? null
      : checkName(operation, "idempotencyKey", value.idempotencyKey),
    createdAt: checkTime(operation, "createdAt", value.createdAt),
  };
}

/**
 * Checks the argument of `saveWorkflowVersions()` and copies it.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy of each record.
 * @throws {StorageError} If it is not an array of workflow version records.
 */
export function checkWorkflowVersions(operation: string, value: unknown): WorkflowVersionRecord[] {
  if (!Array.isArray(value)) {
    throw invalid(operation, `invalid versions ${describe(value)}: expected an array`);
  }
  return value.map((entry: unknown) => {
    if (!isObject(entry)) throw invalid(operation, `invalid version ${describe(entry)}: expected an object`);
    return {
      workflowName: checkName(operation, "workflowName", entry.workflowName),
      version: checkName(operation, "version", entry.version),
      shape: checkString(operation, "shape", entry.shape),
      createdAt: checkTime(operation, "createdAt", entry.createdAt),
    };
  });
}

/**
 * Checks the argument of `claimRuns()` (its workflow names are checked where they are used).
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns The request.
 * @throws {StorageError} If the limit, the time or the lease duration is malformed.
 */
export function checkClaimRequest(operation: string, value: unknown): ClaimRequest {
  if (!isObject(value)) throw invalid(operation, `invalid request ${describe(value)}: expected an object`);
  const { leaseDurationMs } = value;
  checkLimit(operation, value.limit, 0);
  checkTime(operation, "now", value.now);
  if (checkTime(operation, "leaseDurationMs", leaseDurationMs) < 0) {
    throw invalid(operation, `invalid leaseDurationMs ${leaseDurationMs}: expected a duration >= 0`);
  }
  if (value.instanceId !== undefined) checkInstanceId(operation, value.instanceId);
  return value as unknown as ClaimRequest;
}

/** What an engine's `instanceId` may be: the `:` that follows it in a lease id stays unambiguous. */
export const INSTANCE_ID: RegExp = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Checks an engine instance id: 1 to 128 letters, digits, `.`, `_` or `-` (so that the `:` after
 * it in a lease id is unambiguous).
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns The instance id.
 * @throws {StorageError} If it is not such a string.
 */
export function checkInstanceId(operation: string, value: unknown): string {
  if (typeof value !== "string" || !INSTANCE_ID.test(value)) {
    throw invalid(
      operation,
      `invalid instanceId ${describe(value)}: expected 1 to 128 letters, digits, ".", "_" or "-"`,
    );
  }
  return value;
}

/**
 * Checks a `limit`: a safe integer no smaller than `min`.
 *
 * @param operation The storage method.
 * @param value The value.
 * @param min The smallest limit allowed (0 or 1).
 * @returns The limit.
 * @throws {StorageError} If it is not such an integer.
 */
export function checkLimit(operation: string, value: unknown, min: 0 | 1): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw invalid(operation, `invalid limit ${describe(value)}: expected an integer >= ${min}`);
  }
  return value;
}

/**
 * Checks a list of workflow names.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns The names, without repeats.
 * @throws {StorageError} If it is not an array of strings.
 */
export function checkNames(operation: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw invalid(operation, `invalid workflowNames ${describe(value)}: expected an array of names`);
  }
  for (const name of value) checkName(operation, "workflowNames", name);
  return [...new Set<string>(value)];
}

/**
 * Checks an optional list of run statuses, each one of `allowed`.
 *
 * @param operation The storage method.
 * @param value The value.
 * @param allowed The statuses accepted.
 * @param expected What `allowed` is, for the message.
 * @returns The statuses without repeats, or undefined when the value is undefined.
 * @throws {StorageError} If it is not an array of allowed statuses.
 */
function checkStatuses(
  operation: string,
  value: unknown,
  allowed: ReadonlySet<string>,
  expected: string,
): RunStatus[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) {
    throw invalid(operation, `invalid statuses ${describe(value)}: expected an array of ${expected}`);
  }
  for (const status of value) {
    if (typeof status !== "string" || !allowed.has(status)) {
      throw invalid(operation, `invalid status ${describe(status)}: expected ${expected}`);
    }
  }
  return [...new Set<RunStatus>(value)];
}

/**
 * Checks the argument of `listRuns()` and copies it; an empty `statuses` becomes undefined.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy, with `statuses` free of repeats.
 * @throws {StorageError} If it is malformed, or `beforeId` is given without `before`.
 */
export function checkRunQuery(operation: string, value: unknown): RunQuery {
  if (!isObject(value)) throw invalid(operation, `invalid query ${describe(value)}: expected an object`);
  const statuses = checkStatuses(operation, value.statuses, RUN_STATUS_SET, "run statuses");
  const { workflowName, before, beforeId } = value;
  if (beforeId !== undefined && before === undefined) {
    throw invalid(operation, `invalid beforeId ${describe(beforeId)}: it needs a before`);
  }
  return {
    limit: checkLimit(operation, value.limit, 1),
    ...(statuses === undefined || statuses.length === 0 ? {} : { statuses }),
    ...(workflowName === undefined
      ? {}
      : { workflowName: checkName(operation, "workflowName", workflowName) }),
    ...(before === undefined ? {} : { before: checkTime(operation, "before", before) }),
    ...(beforeId === undefined ? {} : { beforeId: checkString(operation, "beforeId", beforeId) }),
  };
}

/**
 * Checks the argument of `upsertSchedule()` and copies it.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy.
 * @throws {StorageError} If it is not a new schedule.
 */
export function checkNewSchedule(operation: string, value: unknown): NewSchedule {
  if (!isObject(value)) throw invalid(operation, `invalid schedule ${describe(value)}: expected an object`);
  return {
    key: checkName(operation, "key", value.key),
    workflowName: checkName(operation, "workflowName", value.workflowName),
    input: checkString(operation, "input", value.input),
    recurrence: checkString(operation, "recurrence", value.recurrence),
    nextRunAt: checkTime(operation, "nextRunAt", value.nextRunAt),
    now: checkTime(operation, "now", value.now),
  };
}

/**
 * Checks the arguments of `claimScheduleSlot()`: the key, two times with `nextRunAt` after
 * `slot`, and the run to create.
 *
 * @param operation The storage method.
 * @param key The schedule's key.
 * @param slot The slot being claimed.
 * @param nextRunAt The slot after it.
 * @param run The run to create.
 * @returns A copy of the run.
 * @throws {StorageError} If any is malformed, or `nextRunAt <= slot`.
 */
export function checkSlotClaim(
  operation: string,
  key: unknown,
  slot: unknown,
  nextRunAt: unknown,
  run: unknown,
): NewRun {
  checkName(operation, "key", key);
  const from = checkTime(operation, "slot", slot);
  if (checkTime(operation, "nextRunAt", nextRunAt) <= from) {
    throw invalid(operation, `invalid nextRunAt ${nextRunAt}: expected a time after the slot ${from}`);
  }
  return checkNewRun(operation, run);
}

/**
 * Checks the argument of `purgeRuns()` and copies it, filling in the default statuses.
 *
 * @param operation The storage method.
 * @param value The value.
 * @returns A copy whose `statuses` is always set, without repeats.
 * @throws {StorageError} If it is malformed, or `statuses` is empty or names an unfinished status.
 */
export function checkPurgeRequest(
  operation: string,
  value: unknown,
): PurgeRequest & { readonly statuses: readonly FinishedRunStatus[] } {
  if (!isObject(value)) throw invalid(operation, `invalid request ${describe(value)}: expected an object`);
  const statuses = checkStatuses(operation, value.statuses, FINISHED, "finished statuses") ??
    [...FINISHED];
  // An empty list would delete nothing, or everything: neither is a safe guess for a delete.
  if (statuses.length === 0) {
    throw invalid(operation, "invalid statuses []: expected at least one finished status (omit it for all)");
  }
  return {
    finishedBefore: checkTime(operation, "finishedBefore", value.finishedBefore),
    statuses: statuses as FinishedRunStatus[],
    limit: checkLimit(operation, value.limit, 0),
  };
}
