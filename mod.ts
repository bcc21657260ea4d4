/**
 * Reflow: durable workflows for TypeScript that run inside your process, on Deno, Node.js and
 * Bun. A workflow is a typed chain of steps; every finished step is committed to storage, so a
 * crash or a deploy never repeats finished work and never loses a run.
 *
 * @example A workflow on an embedded SQLite file
 * ```ts ignore
 * import { createEngine, createWorkflow } from "@reflow/core";
 * import { SQLiteStorage } from "@reflow/core/sqlite-deno";
 * import { z } from "zod";
 *
 * const signup = createWorkflow({ name: "signup", input: z.object({ email: z.string() }) })
 *   .step("create-user", ({ input }) => ({ id: crypto.randomUUID(), email: input.email }))
 *   .step("send-welcome", ({ prev }) => ({ sent: prev.email }));
 *
 * await using engine = createEngine({ storage: new SQLiteStorage("app.db"), workflows: [signup] });
 * await engine.start();
 * await engine.enqueue("signup", { email: "ada@example.com" });
 * ```
 *
 * @module
 */

export { createWorkflow } from "./src/workflow/workflow.ts";
export type {
  AddOptionalStep,
  AddStep,
  AnyWorkflow,
  CompletionValue,
  CreateWorkflowOptions,
  EventInput,
  EventName,
  EventPayload,
  EventPayloadInput,
  FailureContext,
  FailureHandler,
  NoSteps,
  ParallelBranch,
  ParallelOutputs,
  ParallelUnit,
  Simplify,
  SleepUnit,
  StepConfig,
  StepContext,
  StepHandler,
  StepOutput,
  StepUnit,
  WaitForEventOptions,
  WaitUnit,
  WhenContext,
  Workflow,
  WorkflowEvents,
  WorkflowInput,
  WorkflowOutput,
  WorkflowParsedInput,
  WorkflowSteps,
  WorkflowTypes,
  WorkflowUnit,
} from "./src/workflow/workflow.ts";
export { Completion } from "./src/workflow/workflow.ts";
export type { Duration } from "./src/workflow/duration.ts";
export type { ResolvedRetryPolicy, RetryPolicy } from "./src/workflow/retry.ts";

export { createEngine } from "./src/engine/engine.ts";
export type { Engine, EnqueueOptions, EnqueueResult, RunHandle, WorkflowNamed } from "./src/engine/engine.ts";
export type { WaitForRunOptions } from "./src/engine/run_waiter.ts";
export type { EngineOptions } from "./src/engine/options.ts";
export type {
  EngineEvent,
  EngineHooks,
  RunCompleteEvent,
  RunFailedEvent,
  RunStartEvent,
  StepCompleteEvent,
  StepRetryEvent,
  StepSkippedEvent,
  StepStartEvent,
} from "./src/engine/events.ts";
export type { RunDetails, RunInfo, StepInfo } from "./src/engine/run_info.ts";
export type { ScheduleInfo, ScheduleMethods, ScheduleOptions } from "./src/engine/scheduler.ts";
export type { Recurrence, ScheduleRecurrence } from "./src/schedule/recurrence.ts";
export { type CronSchedule, nextCronOccurrence, parseCron } from "./src/schedule/cron.ts";
export type { EventStream, StreamOptions } from "./src/engine/stream.ts";
export type { ListRunsOptions, RunCursor, RunPage } from "./src/engine/run_listing.ts";
export type { PurgeOptions, RetentionOptions } from "./src/engine/retention.ts";
export type { CheckRunsOptions, RunCheckReport, VersionCheck } from "./src/engine/run_check.ts";

export {
  ConditionError,
  ConfigError,
  DuplicateStepError,
  DuplicateWorkflowError,
  EngineStoppedError,
  EventLoopBlockedError,
  HookError,
  IdempotencyConflictError,
  InternalError,
  LeaseExpiredError,
  LeasesHeldError,
  MalformedNameError,
  ParallelCompleteError,
  RecoveryLimitError,
  ReflowError,
  ResultTimeoutError,
  RunCancelledError,
  RunFailedError,
  RunNotFoundError,
  SerializationError,
  StepFailedError,
  // reflow-ts's name for the error of a non-Error thrown by a handler (its code here: STEP_FAILED).
  StepFailedError as ThrownValueError,
  StepTimeoutError,
  StorageError,
  StreamLaggedError,
  TestRunIncompleteError,
  ValidationError,
  VersionMismatchError,
  WaitTimeoutError,
  WorkerLostError,
  WorkflowNotFoundError,
} from "./src/errors.ts";
export type {
  HeldLease,
  ReflowErrorCode,
  ReflowErrorJSON,
  ReflowErrorOptions,
  StorageErrorKind,
  ValidationIssue,
  VersionMismatchReason,
} from "./src/errors.ts";

export type {
  ClaimedRun,
  ClaimRequest,
  CreateRunResult,
  EncodedValue,
  EventWait,
  EventWaitResult,
  FinishedRunStatus,
  NewEvent,
  NewRun,
  NewSchedule,
  PurgeRequest,
  RunAdvance,
  RunCounts,
  RunQuery,
  RunStatus,
  ScheduleRecord,
  StepResult,
  StepStatus,
  StorageAdapter,
  StoredError,
  StoredEvent,
  UpsertScheduleResult,
  WorkflowRun,
  WorkflowVersionRecord,
} from "./src/storage/adapter.ts";
export { decodeValue, encodeValue, MAX_VALUE_BYTES } from "./src/storage/codec.ts";

export type {
  InferSchemaInput,
  InferSchemaOutput,
  StandardSchemaFailure,
  StandardSchemaIssue,
  StandardSchemaProps,
  StandardSchemaResult,
  StandardSchemaSuccess,
  StandardSchemaTypes,
  StandardSchemaV1,
} from "./src/standard_schema.ts";
export type {
  SqlConnection,
  SqlConnectionLease,
  SqlDialect,
  SqlDriver,
  SqlErrorKind,
  SqlExecuteResult,
  SqlParameter,
  SqlRow,
  SqlStatement,
  SqlSubscription,
  SqlValue,
} from "./src/sql/driver.ts";
export { SqlStorage, type SqlStorageOptions } from "./src/sql/sql_storage.ts";
export {
  classifySqliteError,
  createSqliteDriver,
  type SqliteHandle,
  type SqliteLibrary,
  type SqliteStatement,
} from "./src/sql/sqlite/support.ts";
