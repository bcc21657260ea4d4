import type { EncodedValue, StepResult, StoredError } from "../storage/adapter.ts";
import { decodeValue, deepFreeze, encodeValue } from "../storage/codec.ts";

/** The encoding of undefined: the output of a skipped step or a sleep, and `prev` before the first unit. */
export const NOTHING: EncodedValue = encodeValue(undefined);

/** A deep-frozen copy of a stored value: what hooks, streams and `onFailure` get, so they cannot reach run state. */
export function frozenCopy(encoded: EncodedValue): unknown {
  return deepFreeze(decodeValue(encoded));
}

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
  // Thrown errors are user objects: a field may be a throwing getter or not a string.
  const code = readField(error, "code");
  const name = readField(error, "name");
  const message = readField(error, "message");
  const stored = {
    code: typeof code === "string" ? code : typeof code === "number" ? String(code) : null,
    name: typeof name === "string" ? name : "Error",
    message: typeof message === "string" ? message : "(unreadable message)",
  };
  return stepName === undefined ? stored : { ...stored, stepName };
}

/** Rebuilds an error from its stored form, for a run whose failure must be committed again. */
export { restoreError } from "../errors.ts";

function readField(error: Error, field: "code" | "name" | "message"): unknown {
  try {
    return (error as unknown as Record<string, unknown>)[field];
  } catch {
    return undefined;
  }
}
