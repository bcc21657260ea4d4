import type { RunStatus, StepResult, StepStatus, StoredError, WorkflowRun } from "../storage/adapter.ts";
import { decodeValue } from "../storage/codec.ts";

/** A run as `getRunStatus` reports it, with its values decoded. */
export interface RunInfo {
  /** The run's id. */
  readonly id: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The version of the workflow's definition it runs under; null when none was recorded. */
  readonly version: string | null;
  /** Where it is; `parked` when no registered definition can continue it (`error` says why). */
  readonly status: RunStatus;
  /** Its validated input. */
  readonly input: unknown;
  /** Its output once `completed`, else undefined. */
  readonly output: unknown;
  /** Why it failed, once `failed`; why it cannot continue (code `VERSION_MISMATCH`), once `parked`; else null. */
  readonly error: StoredError | null;
  /** The idempotency key it was enqueued with, or null. */
  readonly idempotencyKey: string | null;
  /** Creation time, ms since the epoch. */
  readonly createdAt: number;
  /** Time of the last change, ms since the epoch. */
  readonly updatedAt: number;
  /** When a parked run is due again (pending, sleeping, waiting) or when a running run's lease expires. */
  readonly dueAt: number | null;
  /** How many times a worker has claimed it. */
  readonly claimCount: number;
}

/** One unit's stored result, as `getRunStatus` reports it. */
export interface StepInfo {
  /** The row's id: `<runId>/<name>`, stable (a run has one row per unit). */
  readonly id: string;
  /** The run it belongs to. */
  readonly runId: string;
  /** The unit's name. */
  readonly name: string;
  /** Where it is. */
  readonly status: StepStatus;
  /** Its output once `completed`, else undefined. */
  readonly output: unknown;
  /** The last failed attempt's error, or null. */
  readonly error: StoredError | null;
  /** Attempts made. */
  readonly attempts: number;
  /** When the next attempt is due (`retrying`), the wake time (`sleeping`), or the timeout (`waiting`). */
  readonly dueAt: number | null;
  /** When it was last written, ms since the epoch. */
  readonly updatedAt: number;
}

/** A run and its units' results. */
export interface RunDetails {
  /** The run. */
  readonly run: RunInfo;
  /** Its units' results, in the order they were first written. */
  readonly steps: readonly StepInfo[];
}

/** Decodes a stored run for callers. */
export function toRunInfo(run: WorkflowRun): RunInfo {
  return {
    id: run.id,
    workflow: run.workflowName,
    version: run.workflowVersion,
    status: run.status,
    input: decodeValue(run.input),
    output: run.output === null ? undefined : decodeValue(run.output),
    error: run.error,
    idempotencyKey: run.idempotencyKey,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    dueAt: run.dueAt,
    claimCount: run.claimCount,
  };
}

/** Decodes a stored step result for callers. */
export function toStepInfo(step: StepResult): StepInfo {
  return {
    id: `${step.runId}/${step.stepName}`,
    runId: step.runId,
    name: step.stepName,
    status: step.status,
    output: step.output === null ? undefined : decodeValue(step.output),
    error: step.error,
    attempts: step.attempts,
    dueAt: step.dueAt,
    updatedAt: step.updatedAt,
  };
}
