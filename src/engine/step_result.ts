import type { EncodedValue, StepResult, StoredError } from "../storage/adapter.ts";
import { encodeValue } from "../storage/codec.ts";

/** The encoding of undefined: the output of a skipped step or a sleep, and `prev` before the first unit. */
export const NOTHING: EncodedValue = encodeValue(undefined);

/** A unit's result row, as `advanceRun` commits it. */
export function stepResult(
  runId: string,
  stepName: string,
  status: StepResult["status"],
  output: EncodedValue | null,
  error: StoredError | null,
  attempts: number,
  dueAt: number | null,
  updatedAt: number,
): StepResult {
  return { runId, stepName, status, output, error, attempts, dueAt, updatedAt };
}

/** The stored form of an error: class name, code (when it has one) and message. */
export function toStoredError(error: Error, stepName: string | undefined): StoredError {
  const code = (error as { code?: unknown }).code;
  const stored = {
    code: typeof code === "string" ? code : typeof code === "number" ? String(code) : null,
    name: error.name,
    message: error.message,
  };
  return stepName === undefined ? stored : { ...stored, stepName };
}

/** Rebuilds an error from its stored form, for a run whose failure must be committed again. */
export { restoreError } from "../errors.ts";
