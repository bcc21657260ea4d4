/**
 * Input checks shared by every storage (`MemoryStorage`, `SqlStorage`): a malformed argument
 * rejects with a `StorageError` naming the field and the value, instead of reaching the database
 * or the in-memory indexes as a value of the wrong type.
 *
 * @module
 */

import { StorageError } from "../errors.ts";
import type { ClaimRequest, NewRun, RunStatus, StepResult, StepStatus, StoredError } from "./adapter.ts";

const RUN_STATUSES: ReadonlySet<string> = new Set<RunStatus>([
  "pending",
  "running",
  "sleeping",
  "waiting",
  "completed",
  "failed",
  "cancelled",
]);

const STEP_STATUSES: ReadonlySet<string> = new Set<StepStatus>([
  "completed",
  "skipped",
  "failed",
  "retrying",
  "sleeping",
  "waiting",
]);

/** The statuses of a finished run. */
export const FINISHED: ReadonlySet<string> = new Set<RunStatus>(["completed", "failed", "cancelled"]);

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

/**
 * Quotes a value for an error message.
 *
 * @param value Any value.
 * @returns Strings as JSON, anything else as `String(value)`.
 */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

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
    stepName: checkString(operation, "stepName", value.stepName),
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
  if (typeof value !== "string" || !RUN_STATUSES.has(value) || (!allowRunning && value === "running")) {
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
    id: checkString(operation, "id", value.id),
    workflowName: checkString(operation, "workflowName", value.workflowName),
    input: checkString(operation, "input", value.input),
    idempotencyKey: value.idempotencyKey == null
      ? null
      : checkString(operation, "idempotencyKey", value.idempotencyKey),
    createdAt: checkTime(operation, "createdAt", value.createdAt),
  };
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
  const { limit, leaseDurationMs } = value;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0) {
    throw invalid(operation, `invalid limit ${describe(limit)}: expected an integer >= 0`);
  }
  checkTime(operation, "now", value.now);
  if (checkTime(operation, "leaseDurationMs", leaseDurationMs) < 0) {
    throw invalid(operation, `invalid leaseDurationMs ${leaseDurationMs}: expected a duration >= 0`);
  }
  return value as unknown as ClaimRequest;
}
