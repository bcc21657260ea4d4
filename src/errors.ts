/**
 * Typed errors. Every error Reflow throws or stores extends {@link ReflowError}
 * and carries a stable `code`, so callers branch on `error.code` (an exhaustive
 * `switch` over {@link ReflowErrorCode}) instead of parsing messages.
 *
 * @module
 */

import type { StoredError } from "./storage/adapter.ts";

/** Every code a {@linkcode ReflowError} can carry. The union is closed: a `switch` over it can be exhaustive. */
export type ReflowErrorCode =
  | "CONFIG"
  | "WORKFLOW_NOT_FOUND"
  | "DUPLICATE_WORKFLOW"
  | "DUPLICATE_STEP"
  | "VALIDATION"
  | "IDEMPOTENCY_CONFLICT"
  | "SERIALIZATION"
  | "STEP_TIMEOUT"
  | "WAIT_TIMEOUT"
  | "RUN_CANCELLED"
  | "LEASE_EXPIRED"
  | "STORAGE"
  | "HOOK"
  | "PARALLEL_COMPLETE"
  | "STEP_FAILED"
  | "ENGINE_STOPPED"
  | "RUN_FAILED"
  | "RUN_NOT_FOUND"
  | "RESULT_TIMEOUT"
  | "TEST_RUN_INCOMPLETE"
  | "STREAM_LAGGED"
  | "WORKER_LOST"
  | "RECOVERY_LIMIT"
  | "CONDITION_FAILED"
  | "EVENT_LOOP_BLOCKED"
  | "LEASES_HELD"
  | "VERSION_MISMATCH"
  | "INTERNAL";

/** The plain-object form of a {@linkcode ReflowError}, as returned by `toJSON()`. */
export interface ReflowErrorJSON {
  /** The class name, e.g. `"ConfigError"`. */
  readonly name: string;
  /** The stable error code. */
  readonly code: string;
  /** The human-readable message. */
  readonly message: string;
  /** The error's structured fields again, grouped as reflow-ts's `toJSON()` has them. */
  readonly context: Readonly<Record<string, unknown>>;
  /** The error's structured fields (such as `path` or `workflowName`). */
  readonly [field: string]: unknown;
}

/** Options accepted by every {@linkcode ReflowError} constructor. */
export interface ReflowErrorOptions {
  /** The underlying error, kept on `error.cause` and serialised by `toJSON()`. */
  readonly cause?: unknown;
}

/**
 * The base class of every Reflow error.
 *
 * @example Branch on the code
 * ```ts
 * import { ReflowError } from "@reflow/core";
 *
 * function describe(error: unknown): string {
 *   if (error instanceof ReflowError) return `${error.code}: ${error.message}`;
 *   return String(error);
 * }
 * ```
 */
export abstract class ReflowError extends Error {
  /** The stable code of this error class. */
  abstract readonly code: ReflowErrorCode;

  /**
   * Creates a ReflowError.
   *
   * @param message Sentence-case description naming the action and the value.
   * @param options The cause, if any.
   */
  constructor(message: string, options?: ReflowErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
  }

  /**
   * A JSON-safe plain object: name, code, message, the class's own fields (at the top level and,
   * as reflow-ts has them, under `context`) and the cause chain.
   *
   * @returns The serialisable form of this error.
   */
  toJSON(): ReflowErrorJSON {
    const context: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this)) {
      if (key !== "name" && key !== "code" && key !== "cause") context[key] = toJSONValue(value);
    }
    const json: Record<string, unknown> = { name: this.name, code: this.code, message: this.message };
    Object.assign(json, context);
    json.context = context;
    if (this.cause !== undefined) json.cause = causeToJSON(this.cause);
    return json as ReflowErrorJSON;
  }
}

function toJSONValue(value: unknown): unknown {
  return value instanceof Error ? causeToJSON(value) : value;
}

function causeToJSON(cause: unknown): unknown {
  if (cause instanceof ReflowError) return cause.toJSON();
  if (cause instanceof Error) {
    const json: Record<string, unknown> = { name: cause.name, message: cause.message };
    const code = (cause as { code?: unknown }).code;
    if (code !== undefined) json.code = code;
    if (cause.cause !== undefined) json.cause = causeToJSON(cause.cause);
    return json;
  }
  return cause;
}

/**
 * Invalid configuration: engine or storage options, retry settings, durations, cron
 * expressions, or a call that the workflow does not support.
 *
 * @example
 * ```ts
 * import { ConfigError } from "@reflow/core";
 *
 * const error = new ConfigError('Invalid concurrency 0: expected a positive integer', { field: "concurrency" });
 * console.log(error.code, error.field); // CONFIG concurrency
 * ```
 */
export class ConfigError extends ReflowError {
  /** Always `"CONFIG"`. */
  readonly code = "CONFIG" as const;
  /** The option or field at fault, when there is one. */
  readonly field?: string;

  /**
   * Creates a ConfigError.
   *
   * @param message What is wrong, quoting the value.
   * @param options The field at fault and the cause.
   */
  constructor(message: string, options?: ReflowErrorOptions & { readonly field?: string }) {
    super(message, options);
    if (options?.field !== undefined) this.field = options.field;
  }
}

/**
 * A name or key that cannot be stored exactly: Reflow accepts only well-formed Unicode without
 * NUL in workflow, step, branch and event names, idempotency keys and schedule keys (SQLite turns
 * a lone surrogate into U+FFFD, and some drivers cut text at a NUL). It is a {@linkcode ConfigError}
 * (code `"CONFIG"`) with the offending code unit.
 *
 * @example
 * ```ts
 * import { MalformedNameError } from "@reflow/core";
 *
 * const error = new MalformedNameError("idempotencyKey", "order:\uD83D", 6, "0xD83D", "a lone surrogate");
 * console.log(error.field, error.index, error.codeUnit); // idempotencyKey 6 0xD83D
 * ```
 */
export class MalformedNameError extends ConfigError {
  /** The option or argument holding the name. */
  declare readonly field: string;
  /** The UTF-16 index of the offending code unit. */
  readonly index: number;
  /** The offending code unit as hex, e.g. `"0xD83D"` or `"0x0000"`. */
  readonly codeUnit: string;

  /**
   * Creates a MalformedNameError.
   *
   * @param field The option or argument holding the name.
   * @param name The name as given.
   * @param index The UTF-16 index of the offending code unit.
   * @param codeUnit The code unit as hex.
   * @param reason What is wrong with it (`"a lone surrogate"`, `"NUL"`).
   */
  constructor(
    field: string,
    name: string,
    index: number,
    codeUnit: string,
    reason: "a lone surrogate" | "NUL",
  ) {
    super(
      `Invalid ${field} ${JSON.stringify(name)}: code unit ${codeUnit} at index ${index} is ${reason}; ` +
        "names and keys must be well-formed Unicode without NUL",
      { field },
    );
    this.index = index;
    this.codeUnit = codeUnit;
  }
}

/**
 * A workflow name that no registered workflow has.
 *
 * @example
 * ```ts
 * import { WorkflowNotFoundError } from "@reflow/core";
 *
 * const error = new WorkflowNotFoundError("signup");
 * console.log(error.workflowName); // signup
 * ```
 */
export class WorkflowNotFoundError extends ReflowError {
  /** Always `"WORKFLOW_NOT_FOUND"`. */
  readonly code = "WORKFLOW_NOT_FOUND" as const;
  /** The unknown name. */
  readonly workflowName: string;

  /**
   * Creates a WorkflowNotFoundError.
   *
   * @param workflowName The unknown name.
   */
  constructor(workflowName: string) {
    super(`Unknown workflow "${workflowName}": it is not registered with this engine`);
    this.workflowName = workflowName;
  }
}

/**
 * Two workflows registered with one engine under the same name and version (several versions of
 * one name may be registered side by side).
 *
 * @example
 * ```ts
 * import { DuplicateWorkflowError } from "@reflow/core";
 *
 * console.log(new DuplicateWorkflowError("signup").code); // DUPLICATE_WORKFLOW
 * ```
 */
export class DuplicateWorkflowError extends ReflowError {
  /** Always `"DUPLICATE_WORKFLOW"`. */
  readonly code = "DUPLICATE_WORKFLOW" as const;
  /** The name registered twice. */
  readonly workflowName: string;
  /** The version registered twice, when known. */
  readonly version: string | undefined;

  /**
   * Creates a DuplicateWorkflowError.
   *
   * @param workflowName The name registered twice.
   * @param version The version registered twice, when known.
   */
  constructor(workflowName: string, version?: string) {
    super(
      version === undefined
        ? `Cannot register workflow "${workflowName}" twice`
        : `Cannot register version ${JSON.stringify(version)} of workflow "${workflowName}" twice`,
    );
    this.workflowName = workflowName;
    this.version = version;
  }
}

/**
 * Two units (steps, parallel groups, sleeps, waits) of one workflow with the same name.
 *
 * @example
 * ```ts
 * import { DuplicateStepError } from "@reflow/core";
 *
 * const error = new DuplicateStepError("signup", "send-email");
 * console.log(error.stepName); // send-email
 * ```
 */
export class DuplicateStepError extends ReflowError {
  /** Always `"DUPLICATE_STEP"`. */
  readonly code = "DUPLICATE_STEP" as const;
  /** The workflow being built. */
  readonly workflowName: string;
  /** The name used twice. */
  readonly stepName: string;

  /**
   * Creates a DuplicateStepError.
   *
   * @param workflowName The workflow being built.
   * @param stepName The name used twice.
   */
  constructor(workflowName: string, stepName: string) {
    super(`Cannot add step "${stepName}" to workflow "${workflowName}": the name is already used`);
    this.workflowName = workflowName;
    this.stepName = stepName;
  }
}

/** One problem found by a schema, as reported by Standard Schema validators. */
export interface ValidationIssue {
  /** What is wrong. */
  readonly message: string;
  /** Where, as a list of keys from the root of the value (Standard Schema `{ key }` segments are accepted). */
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>;
}

/**
 * A value rejected by a workflow's input schema or an event's payload schema.
 *
 * @example
 * ```ts
 * import { ValidationError } from "@reflow/core";
 *
 * const error = new ValidationError("Invalid input for workflow \"signup\"", [{ message: "Required", path: ["email"] }]);
 * console.log(error.issues.length); // 1
 * ```
 */
export class ValidationError extends ReflowError {
  /** Always `"VALIDATION"`. */
  readonly code = "VALIDATION" as const;
  /** The schema's issues. */
  readonly issues: readonly ValidationIssue[];

  /**
   * Creates a ValidationError.
   *
   * @param message What was being validated.
   * @param issues The schema's issues.
   * @param options The cause, when the schema itself threw.
   */
  constructor(message: string, issues: readonly ValidationIssue[], options?: ReflowErrorOptions) {
    const first = issues[0];
    const detail = first === undefined
      ? ""
      : `: ${formatIssue(first)}${issues.length > 1 ? ` (+${issues.length - 1} more)` : ""}`;
    super(message + detail, options);
    this.issues = issues.map((issue) => ({
      message: issue.message,
      ...(issue.path === undefined ? {} : { path: issue.path.map(pathKey) }),
    }));
  }
}

function pathKey(key: unknown): PropertyKey {
  // Standard Schema allows `{ key }` segments; keep only the key.
  if (typeof key === "object" && key !== null && "key" in key) return (key as { key: PropertyKey }).key;
  return key as PropertyKey;
}

function formatIssue(issue: ValidationIssue): string {
  if (issue.path === undefined || issue.path.length === 0) return issue.message;
  return `${issue.path.map((key) => String(pathKey(key))).join(".")}: ${issue.message}`;
}

/**
 * An idempotency key reused with a different input.
 *
 * @example
 * ```ts
 * import { IdempotencyConflictError } from "@reflow/core";
 *
 * const error = new IdempotencyConflictError("signup", "user-42");
 * console.log(error.idempotencyKey); // user-42
 * ```
 */
export class IdempotencyConflictError extends ReflowError {
  /** Always `"IDEMPOTENCY_CONFLICT"`. */
  readonly code = "IDEMPOTENCY_CONFLICT" as const;
  /** The workflow of the existing run. */
  readonly workflowName: string;
  /** The key used twice. */
  readonly idempotencyKey: string;
  /** The id of the run that already holds the key. */
  readonly existingRunId?: string;

  /**
   * Creates an IdempotencyConflictError.
   *
   * @param workflowName The workflow of the existing run.
   * @param idempotencyKey The key used twice.
   * @param existingRunId The id of the run that already holds the key.
   */
  constructor(workflowName: string, idempotencyKey: string, existingRunId?: string) {
    super(
      `Cannot enqueue "${workflowName}" with idempotency key "${idempotencyKey}": ` +
        `a run with that key and a different input already exists`,
    );
    this.workflowName = workflowName;
    this.idempotencyKey = idempotencyKey;
    if (existingRunId !== undefined) this.existingRunId = existingRunId;
  }
}

/**
 * A value that cannot be stored: persisted values are JSON data plus `Date` and `undefined`.
 *
 * @example
 * ```ts
 * import { SerializationError } from "@reflow/core";
 *
 * const error = new SerializationError("Cannot store NaN", "$.total");
 * console.log(error.path); // $.total
 * ```
 */
export class SerializationError extends ReflowError {
  /** Always `"SERIALIZATION"`. */
  readonly code = "SERIALIZATION" as const;
  /** Where in the value, as `$.a[2].b`. */
  readonly path: string;

  /**
   * Creates a SerializationError.
   *
   * @param message What cannot be stored.
   * @param path Where in the value, as `$.a[2].b`.
   * @param options The cause, when reading the value threw.
   */
  constructor(message: string, path: string, options?: ReflowErrorOptions) {
    super(`${message} at ${path}`, options);
    this.path = path;
  }
}

/**
 * A step attempt that ran longer than its `timeoutMs`.
 *
 * @example
 * ```ts
 * import { StepTimeoutError } from "@reflow/core";
 *
 * console.log(new StepTimeoutError("charge", 5000).timeoutMs); // 5000
 * ```
 */
export class StepTimeoutError extends ReflowError {
  /** Always `"STEP_TIMEOUT"`. */
  readonly code = "STEP_TIMEOUT" as const;
  /** The step that timed out. */
  readonly stepName: string;
  /** The limit that was exceeded. */
  readonly timeoutMs: number;

  /**
   * Creates a StepTimeoutError.
   *
   * @param stepName The step that timed out.
   * @param timeoutMs The limit that was exceeded.
   */
  constructor(stepName: string, timeoutMs: number) {
    super(`Step "${stepName}" timed out after ${timeoutMs} ms`);
    this.stepName = stepName;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A `waitForEvent` that reached its timeout before the event arrived.
 *
 * @example
 * ```ts
 * import { WaitTimeoutError } from "@reflow/core";
 *
 * console.log(new WaitTimeoutError("approved", 60000).eventName); // approved
 * ```
 */
export class WaitTimeoutError extends ReflowError {
  /** Always `"WAIT_TIMEOUT"`. */
  readonly code = "WAIT_TIMEOUT" as const;
  /** The awaited event. */
  readonly eventName: string;
  /** The limit that was reached. */
  readonly timeoutMs: number;

  /**
   * Creates a WaitTimeoutError.
   *
   * @param eventName The awaited event.
   * @param timeoutMs The limit that was reached.
   */
  constructor(eventName: string, timeoutMs: number) {
    super(`Timed out after ${timeoutMs} ms waiting for event "${eventName}"`);
    this.eventName = eventName;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The reason a step's `signal` aborts when its run is cancelled.
 *
 * @example
 * ```ts
 * import { RunCancelledError } from "@reflow/core";
 *
 * console.log(new RunCancelledError("r1").runId); // r1
 * ```
 */
export class RunCancelledError extends ReflowError {
  /** Always `"RUN_CANCELLED"`. */
  readonly code = "RUN_CANCELLED" as const;
  /** The cancelled run. */
  readonly runId: string;

  /**
   * Creates a RunCancelledError.
   *
   * @param runId The cancelled run.
   */
  constructor(runId: string) {
    super(`Run "${runId}" was cancelled`);
    this.runId = runId;
  }
}

/**
 * The reason a step's `signal` aborts when this engine lost the run's lease
 * (another engine reclaimed it, or it was cancelled or released).
 *
 * @example
 * ```ts
 * import { LeaseExpiredError } from "@reflow/core";
 *
 * console.log(new LeaseExpiredError("r1").code); // LEASE_EXPIRED
 * ```
 */
export class LeaseExpiredError extends ReflowError {
  /** Always `"LEASE_EXPIRED"`. */
  readonly code = "LEASE_EXPIRED" as const;
  /** The run whose lease was lost. */
  readonly runId: string;

  /**
   * Creates a LeaseExpiredError.
   *
   * @param runId The run whose lease was lost.
   */
  constructor(runId: string) {
    super(`Lost the lease on run "${runId}": another worker owns it now or it was cancelled`);
    this.runId = runId;
  }
}

/** What kind of failure a driver reported; see {@linkcode StorageError.kind}. */
export type StorageErrorKind =
  | "busy"
  | "unique"
  | "readonly"
  | "corrupt"
  | "full"
  | "io"
  | "schema"
  | "closed"
  | "other";

/**
 * A storage operation that failed. The driver's own error is on `cause`.
 *
 * @example
 * ```ts
 * import { StorageError } from "@reflow/core";
 *
 * const error = new StorageError("claimRuns", "Database is locked", { kind: "busy" });
 * console.log(error.operation, error.kind); // claimRuns busy
 * ```
 */
export class StorageError extends ReflowError {
  /** Always `"STORAGE"`. */
  readonly code = "STORAGE" as const;
  /** The storage operation that failed, such as `"createRun"`. */
  readonly operation: string;
  /** The failure's kind, so callers can tell transient (`busy`) from permanent failures. */
  readonly kind: StorageErrorKind;

  /**
   * Creates a StorageError.
   *
   * @param operation The storage operation that failed.
   * @param message What went wrong.
   * @param options The kind and the driver's error.
   */
  constructor(
    operation: string,
    message: string,
    options?: ReflowErrorOptions & { readonly kind?: StorageErrorKind },
  ) {
    super(`Storage operation "${operation}" failed: ${message}`, options);
    this.operation = operation;
    this.kind = options?.kind ?? "other";
  }
}

/**
 * A hook that threw or rejected. It never changes a run's outcome; it is reported to `onError`.
 *
 * @example
 * ```ts
 * import { HookError } from "@reflow/core";
 *
 * const error = new HookError("onRunComplete", new Error("metrics down"));
 * console.log(error.source); // onRunComplete
 * ```
 */
export class HookError extends ReflowError {
  /** Always `"HOOK"`. */
  readonly code = "HOOK" as const;
  /** The hook that failed, such as `"onRunComplete"`. */
  readonly source: string;

  /**
   * Creates a HookError.
   *
   * @param source The hook that failed.
   * @param cause What it threw.
   */
  constructor(source: string, cause: unknown) {
    super(`Hook "${source}" threw: ${describeThrown(cause)}`, { cause });
    this.source = source;
  }
}

/**
 * `complete()` called inside a parallel branch, where early completion is not allowed.
 *
 * @example
 * ```ts
 * import { ParallelCompleteError } from "@reflow/core";
 *
 * console.log(new ParallelCompleteError("fan-out").stepName); // fan-out
 * ```
 */
export class ParallelCompleteError extends ReflowError {
  /** Always `"PARALLEL_COMPLETE"`. */
  readonly code = "PARALLEL_COMPLETE" as const;
  /** The parallel branch that called `complete()`. */
  readonly stepName: string;

  /**
   * Creates a ParallelCompleteError.
   *
   * @param stepName The parallel branch that called `complete()`.
   */
  constructor(stepName: string) {
    super(`Cannot call complete() in parallel branch "${stepName}": only a step can end a run early`);
    this.stepName = stepName;
  }
}

/**
 * A step handler threw something that is not an `Error` (a string, a number, ...).
 * The thrown value is kept on `value`.
 *
 * @example
 * ```ts
 * import { StepFailedError } from "@reflow/core";
 *
 * const error = new StepFailedError("charge", "card declined");
 * console.log(error.message); // Step "charge" threw a non-Error value: "card declined"
 * ```
 */
export class StepFailedError extends ReflowError {
  /** Always `"STEP_FAILED"`. */
  readonly code = "STEP_FAILED" as const;
  /** The step that threw. */
  readonly stepName: string;
  /** What it threw. */
  readonly value: unknown;

  /**
   * Creates a StepFailedError.
   *
   * @param stepName The step that threw.
   * @param value What it threw.
   */
  constructor(stepName: string, value: unknown) {
    super(`Step "${stepName}" threw a non-Error value: ${describeThrown(value)}`);
    this.stepName = stepName;
    this.value = value;
  }
}

/**
 * The reason a step's `signal` aborts when the engine stops before the step finished
 * within `stopTimeoutMs`. The run is handed back and continues on the next engine.
 *
 * @example
 * ```ts
 * import { EngineStoppedError } from "@reflow/core";
 *
 * console.log(new EngineStoppedError().code); // ENGINE_STOPPED
 * ```
 */
export class EngineStoppedError extends ReflowError {
  /** Always `"ENGINE_STOPPED"`. */
  readonly code = "ENGINE_STOPPED" as const;

  /** Creates an EngineStoppedError. */
  constructor() {
    super("The engine stopped before the step finished; the run will continue on the next engine");
  }
}

/**
 * Why `handle.result()` or `engine.waitForRun()` rejected: the run failed. `error` is its stored
 * failure, and `cause` that failure rebuilt as an `Error` with the same name, code and message,
 * so `error.cause.code === "STEP_TIMEOUT"` tells a timeout from a handler's own throw.
 *
 * @example Tell a failed run from a timeout
 * ```ts
 * import { RunFailedError } from "@reflow/core";
 *
 * const error = new RunFailedError("r1", { code: "STEP_TIMEOUT", name: "StepTimeoutError", message: "Step \"charge\" timed out after 5000 ms", stepName: "charge" });
 * console.log(error.code, error.stepName, error.error.code); // RUN_FAILED charge STEP_TIMEOUT
 * ```
 */
export class RunFailedError extends ReflowError {
  /** Always `"RUN_FAILED"`. */
  readonly code = "RUN_FAILED" as const;
  /** The failed run. */
  readonly runId: string;
  /** The unit that failed, if the failure came from one. */
  readonly stepName?: string;
  /** The run's stored failure. */
  readonly error: StoredError;

  /**
   * Creates a RunFailedError.
   *
   * @param runId The failed run.
   * @param error Its stored failure (unknown failures read as an `Error` without a message).
   */
  constructor(runId: string, error: StoredError | null) {
    const cause = restoreError(error);
    super(`Run "${runId}" failed: ${cause.message}`, { cause });
    const failure = error ?? { code: null, name: cause.name, message: cause.message };
    this.runId = runId;
    if (failure.stepName !== undefined) this.stepName = failure.stepName;
    this.error = failure;
  }
}

/**
 * A stored failure as an `Error` again: same name, code and message (the stack is gone).
 *
 * @param stored The stored failure, or null for an unknown one.
 * @returns The rebuilt error.
 */
export function restoreError(stored: StoredError | null): Error {
  const error = new Error(stored?.message ?? "Unknown failure");
  error.name = stored?.name ?? "Error";
  if (stored?.code != null) (error as Error & { code: string }).code = stored.code;
  return error;
}

/**
 * `engine.waitForRun()` was given the id of a run that does not exist (or was purged).
 *
 * @example
 * ```ts
 * import { RunNotFoundError } from "@reflow/core";
 *
 * console.log(new RunNotFoundError("r1").runId); // r1
 * ```
 */
export class RunNotFoundError extends ReflowError {
  /** Always `"RUN_NOT_FOUND"`. */
  readonly code = "RUN_NOT_FOUND" as const;
  /** The unknown run id. */
  readonly runId: string;

  /**
   * Creates a RunNotFoundError.
   *
   * @param runId The unknown run id.
   */
  constructor(runId: string) {
    super(`Unknown run "${runId}": it does not exist or was purged`);
    this.runId = runId;
  }
}

/**
 * `handle.result({ timeout })` or `engine.waitForRun(runId, { timeout })` gave up before the run
 * finished. The run itself is untouched and goes on.
 *
 * @example
 * ```ts
 * import { ResultTimeoutError } from "@reflow/core";
 *
 * console.log(new ResultTimeoutError("r1", 5000).timeoutMs); // 5000
 * ```
 */
export class ResultTimeoutError extends ReflowError {
  /** Always `"RESULT_TIMEOUT"`. */
  readonly code = "RESULT_TIMEOUT" as const;
  /** The run waited for. */
  readonly runId: string;
  /** How long the caller waited, in ms. */
  readonly timeoutMs: number;

  /**
   * Creates a ResultTimeoutError.
   *
   * @param runId The run waited for.
   * @param timeoutMs How long the caller waited, in ms.
   */
  constructor(runId: string, timeoutMs: number) {
    super(`Gave up waiting for run "${runId}" after ${timeoutMs} ms; the run goes on`);
    this.runId = runId;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * `testEngine().run()` (or `drive()`, `sendEvent()`) left a run unfinished: it waits for an event,
 * or did not settle. The run's id and status are on the error; `te.sendEvent()` or `te.advance()`
 * and `te.drive(runId)` take it further.
 *
 * @example
 * ```ts
 * import { TestRunIncompleteError } from "@reflow/core";
 *
 * console.log(new TestRunIncompleteError("r1", "waiting").status); // waiting
 * ```
 */
export class TestRunIncompleteError extends ReflowError {
  /** Always `"TEST_RUN_INCOMPLETE"`. */
  readonly code = "TEST_RUN_INCOMPLETE" as const;
  /** The unfinished run. */
  readonly runId: string;
  /** Where it stopped, such as `"waiting"`. */
  readonly status: string;

  /**
   * Creates a TestRunIncompleteError.
   *
   * @param runId The unfinished run.
   * @param status Where it stopped.
   */
  constructor(runId: string, status: string) {
    super(`Run "${runId}" did not finish in the test: it is ${status}`);
    this.runId = runId;
    this.status = status;
  }
}

/**
 * An attempt of a step or parallel branch that ended because its worker died (a crash, an OOM
 * kill, `kill -9`) or lost the run's lease (a blocked event loop, a network partition). It counts
 * as a failed attempt: it is retried under the unit's retry policy, and fails the run once the
 * attempts are used up.
 *
 * @example
 * ```ts
 * import { WorkerLostError } from "@reflow/core";
 *
 * const error = new WorkerLostError("r1", "charge", 2);
 * console.log(error.code, error.stepName, error.attempt); // WORKER_LOST charge 2
 * ```
 */
export class WorkerLostError extends ReflowError {
  /** Always `"WORKER_LOST"`. */
  readonly code = "WORKER_LOST" as const;
  /** The run whose worker was lost. */
  readonly runId: string;
  /** The step or parallel branch that was in progress. */
  readonly stepName: string;
  /** The attempt that was lost. */
  readonly attempt: number;

  /**
   * Creates a WorkerLostError.
   *
   * @param runId The run whose worker was lost.
   * @param stepName The step or parallel branch that was in progress.
   * @param attempt The attempt that was lost.
   */
  constructor(runId: string, stepName: string, attempt: number) {
    super(
      `Attempt ${attempt} of step "${stepName}" in run "${runId}" was lost: its worker died or lost the lease`,
    );
    this.runId = runId;
    this.stepName = stepName;
    this.attempt = attempt;
  }
}

/**
 * A run reclaimed from lost workers more times in a row than the engine's `maxRecoveries`
 * allows, with nothing committed in between: something kills its worker outside any step's
 * attempts, so the run is failed rather than recovered forever.
 *
 * @example
 * ```ts
 * import { RecoveryLimitError } from "@reflow/core";
 *
 * console.log(new RecoveryLimitError("r1", 11, 10).recoveries); // 11
 * ```
 */
export class RecoveryLimitError extends ReflowError {
  /** Always `"RECOVERY_LIMIT"`. */
  readonly code = "RECOVERY_LIMIT" as const;
  /** The run that was failed. */
  readonly runId: string;
  /** Consecutive reclaims without progress, this one included. */
  readonly recoveries: number;
  /** The engine's `maxRecoveries`. */
  readonly maxRecoveries: number;

  /**
   * Creates a RecoveryLimitError.
   *
   * @param runId The run that was failed.
   * @param recoveries Consecutive reclaims without progress, this one included.
   * @param maxRecoveries The engine's `maxRecoveries`.
   */
  constructor(runId: string, recoveries: number, maxRecoveries: number) {
    super(
      `Run "${runId}" was reclaimed from a lost worker ${recoveries} times in a row without progress ` +
        `(maxRecoveries ${maxRecoveries})`,
    );
    this.runId = runId;
    this.recoveries = recoveries;
    this.maxRecoveries = maxRecoveries;
  }
}

/**
 * A step's `when` predicate threw or rejected. It fails that attempt of the step, which is
 * retried (and `when` asked again) under the step's retry policy. The thrown value is on `cause`.
 *
 * @example
 * ```ts
 * import { ConditionError } from "@reflow/core";
 *
 * console.log(new ConditionError("notify", new Error("flag service down")).stepName); // notify
 * ```
 */
export class ConditionError extends ReflowError {
  /** Always `"CONDITION_FAILED"`. */
  readonly code = "CONDITION_FAILED" as const;
  /** The step whose `when` threw. */
  readonly stepName: string;

  /**
   * Creates a ConditionError.
   *
   * @param stepName The step whose `when` threw.
   * @param cause What it threw.
   */
  constructor(stepName: string, cause: unknown) {
    super(`The when() of step "${stepName}" threw: ${describeThrown(cause)}`, { cause });
    this.stepName = stepName;
  }
}

/**
 * Reported to `onError` when a heartbeat ran late by more than half the lease: the event
 * loop was blocked (a synchronous CPU-bound step, a long GC pause), so the leases of the runs in
 * flight may have expired and other engines may have reclaimed them.
 *
 * @example
 * ```ts
 * import { EventLoopBlockedError } from "@reflow/core";
 *
 * console.log(new EventLoopBlockedError(2000, 500).blockedMs); // 2000
 * ```
 */
export class EventLoopBlockedError extends ReflowError {
  /** Always `"EVENT_LOOP_BLOCKED"`. */
  readonly code = "EVENT_LOOP_BLOCKED" as const;
  /** How late the heartbeat ran, in ms. */
  readonly blockedMs: number;
  /** The engine's lease duration, in ms. */
  readonly leaseDurationMs: number;

  /**
   * Creates an EventLoopBlockedError.
   *
   * @param blockedMs How late the heartbeat ran, in ms.
   * @param leaseDurationMs The engine's lease duration, in ms.
   */
  constructor(blockedMs: number, leaseDurationMs: number) {
    super(
      `The event loop was blocked for about ${blockedMs} ms (lease ${leaseDurationMs} ms): ` +
        "leases may have been lost and their runs reclaimed; move CPU-bound work off the event loop or lengthen runLeaseDurationMs",
    );
    this.blockedMs = blockedMs;
    this.leaseDurationMs = leaseDurationMs;
  }
}

/** A run held by another worker's lease; see {@linkcode LeasesHeldError}. */
export interface HeldLease {
  /** The run. */
  readonly runId: string;
  /** When its lease expires and this engine may take it (ms since the epoch). */
  readonly until: number;
}

/**
 * Reported once to `onError` by an engine started without `instanceId` when runs were held at
 * `start()` by leases that nobody renewed in the two heartbeat intervals after (a live worker
 * renews its leases at every heartbeat): most likely a crashed worker's, maybe this process's
 * before a restart. The runs continue when those leases expire.
 *
 * @example
 * ```ts
 * import { LeasesHeldError } from "@reflow/core";
 *
 * console.log(new LeasesHeldError([{ runId: "r1", until: 0 }]).runs.length); // 1
 * ```
 */
export class LeasesHeldError extends ReflowError {
  /** Always `"LEASES_HELD"`. */
  readonly code = "LEASES_HELD" as const;
  /** The runs held, with their lease expiries. */
  readonly runs: readonly HeldLease[];

  /**
   * Creates a LeasesHeldError.
   *
   * @param runs The runs held, with their lease expiries.
   */
  constructor(runs: readonly HeldLease[]) {
    const listed = runs.slice(0, 5).map((run) => `"${run.runId}" until ${new Date(run.until).toISOString()}`);
    const more = runs.length > 5 ? ` and ${runs.length - 5} more` : "";
    super(
      `${runs.length} run(s) are held by leases that no worker renews, and continue when they expire: ` +
        `${
          listed.join(", ")
        }${more}. If they were this process's before a restart, set instanceId to take them back at once`,
    );
    this.runs = runs;
  }
}

/**
 * What a bounded `engine.stream()` rejects with, after its buffered events, when its consumer left
 * the buffer full for `lagTimeoutMs`: the stream ended then, so that runs paused for it could go
 * on, and the events after the ones it delivered are not in it (open a new stream to follow on).
 *
 * @example
 * ```ts
 * import { StreamLaggedError } from "@reflow/core";
 *
 * console.log(new StreamLaggedError(100, 10000).code); // STREAM_LAGGED
 * ```
 */
export class StreamLaggedError extends ReflowError {
  /** Always `"STREAM_LAGGED"`. */
  readonly code = "STREAM_LAGGED" as const;
  /** The stream's `bufferSize`. */
  readonly bufferSize: number;
  /** How long the buffer stayed full before the stream ended (its `lagTimeoutMs`). */
  readonly lagTimeoutMs: number;

  /**
   * Creates a StreamLaggedError.
   *
   * @param bufferSize The stream's `bufferSize`.
   * @param lagTimeoutMs How long the buffer stayed full.
   */
  constructor(bufferSize: number, lagTimeoutMs: number) {
    super(
      `The stream's consumer left its buffer of ${bufferSize} events full for ${lagTimeoutMs} ms: the stream ` +
        "ended there so that runs could go on; later events are not in it",
    );
    this.bufferSize = bufferSize;
    this.lagTimeoutMs = lagTimeoutMs;
  }
}

/**
 * Why a run cannot continue under the registered definitions of its workflow:
 *
 * - `inserted`: a unit was inserted at or before the run's position;
 * - `removed`: a unit the run has passed or is in is gone (or renamed);
 * - `reordered`: a unit the run has passed or is in moved;
 * - `kindChanged`: a unit the run has passed or is in changed kind (step, sleep, wait, parallel)
 *   or, for a parallel group, its branches;
 * - `unknownVersion`: the run's version was never registered on this database, so its shape is
 *   unknown, and the run has already started;
 * - `workflowNotRegistered`: no registered definition has the run's workflow name (renamed or deleted).
 */
export type VersionMismatchReason =
  | "inserted"
  | "removed"
  | "reordered"
  | "kindChanged"
  | "unknownVersion"
  | "workflowNotRegistered";

/**
 * A run that no registered definition can continue without contradicting what it has already
 * done. The engine parks the run (status `parked`, this error stored as its `error`) and reports
 * it to `onError`; registering its version again, or a compatible one, lets it continue.
 *
 * @example
 * ```ts
 * import { VersionMismatchError } from "@reflow/core";
 *
 * const error = new VersionMismatchError("r1", "orders", "s1a2b3c4d", "charge", "reordered");
 * console.log(error.code, error.unit, error.reason); // VERSION_MISMATCH charge reordered
 * ```
 */
export class VersionMismatchError extends ReflowError {
  /** Always `"VERSION_MISMATCH"`. */
  readonly code = "VERSION_MISMATCH" as const;
  /** The run that cannot continue. */
  readonly runId: string;
  /** The run's workflow. */
  readonly workflowName: string;
  /** The version the run stored (null: none recorded). */
  readonly version: string | null;
  /** The first unit (of the run's definition) that differs, or null when none is known. */
  readonly unit: string | null;
  /** Why it cannot continue. */
  readonly reason: VersionMismatchReason;

  /**
   * Creates a VersionMismatchError.
   *
   * @param runId The run.
   * @param workflowName The run's workflow.
   * @param version The run's stored version.
   * @param unit The first unit that differs, or null.
   * @param reason Why the run cannot continue.
   */
  constructor(
    runId: string,
    workflowName: string,
    version: string | null,
    unit: string | null,
    reason: VersionMismatchReason,
  ) {
    super(
      `Run "${runId}" of workflow "${workflowName}" (version ${JSON.stringify(version)}) cannot continue ` +
        `under the registered definitions: ${describeMismatch(unit, reason)}`,
    );
    this.runId = runId;
    this.workflowName = workflowName;
    this.version = version;
    this.unit = unit;
    this.reason = reason;
  }
}

function describeMismatch(unit: string | null, reason: VersionMismatchReason): string {
  const named = unit === null ? "" : ` (unit "${unit}")`;
  switch (reason) {
    case "inserted":
      return `a unit was inserted at or before its position${named}`;
    case "removed":
      return `a unit it has reached was removed or renamed${named}`;
    case "reordered":
      return `a unit it has reached moved${named}`;
    case "kindChanged":
      return `a unit it has reached changed kind or branches${named}`;
    case "unknownVersion":
      return "its version was never registered on this storage, so its shape is unknown";
    case "workflowNotRegistered":
      return "no registered workflow has its name";
  }
}

/**
 * A broken internal invariant: a bug in Reflow or a storage adapter. Please report it.
 *
 * @example
 * ```ts
 * import { InternalError } from "@reflow/core";
 *
 * console.log(new InternalError("Unexpected unit kind").code); // INTERNAL
 * ```
 */
export class InternalError extends ReflowError {
  /** Always `"INTERNAL"`. */
  readonly code = "INTERNAL" as const;
}

function describeThrown(value: unknown): string {
  // What user code throws may be hostile: a revoked Proxy, a throwing getter or toString.
  try {
    if (value instanceof Error) return value.message;
    if (typeof value === "string") return JSON.stringify(value);
    return JSON.stringify(value) ?? String(value);
  } catch {
    try {
      return String(value);
    } catch {
      return "(a value that cannot be described)";
    }
  }
}
