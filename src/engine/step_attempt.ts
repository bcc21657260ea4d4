import { isPromiseLike } from "../async.ts";
import { setLongTimeout } from "../timers.ts";
import { StepFailedError, StepTimeoutError } from "../errors.ts";
import { Completion } from "../workflow/workflow.ts";

/** How one attempt ended. */
export type AttemptOutcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: Error };

/**
 * Runs one attempt of a handler under the run's signal and an optional time limit.
 * The attempt ends when the handler settles or its signal aborts, whichever is first: a
 * handler that ignores its signal cannot hold the worker past a timeout, a cancel or a stop.
 */
export async function runAttempt(
  stepName: string,
  timeoutMs: number | null,
  runSignal: AbortSignal,
  invoke: (signal: AbortSignal) => unknown,
): Promise<AttemptOutcome> {
  let signal = runSignal;
  let cleanup: (() => void) | undefined;
  if (timeoutMs !== null) {
    const controller = new AbortController();
    const cancelTimer = setLongTimeout(
      () => controller.abort(new StepTimeoutError(stepName, timeoutMs)),
      timeoutMs,
    );
    const forwardRunAbort = () => controller.abort(runSignal.reason);
    if (runSignal.aborted) forwardRunAbort();
    else runSignal.addEventListener("abort", forwardRunAbort, { once: true });
    signal = controller.signal;
    cleanup = () => {
      cancelTimer();
      runSignal.removeEventListener("abort", forwardRunAbort);
    };
  }
  try {
    const result = invoke(signal);
    const value = isPromiseLike(result) ? await untilAborted(result, signal) : result;
    return { ok: true, value };
  } catch (thrown) {
    // `complete()` throws its completion to end the handler there: a success, not a failure.
    if (Completion.is(thrown)) return { ok: true, value: thrown };
    const error = signal.aborted && thrown === signal.reason ? signal.reason : thrown;
    return { ok: false, error: toError(error, stepName) };
  } finally {
    cleanup?.();
  }
}

/** Errors are stored and reported by class, code and message; a thrown string gets a class too. */
export function toError(thrown: unknown, stepName: string): Error {
  return isError(thrown) ? thrown : new StepFailedError(stepName, thrown);
}

/** `instanceof Error`, false for a revoked Proxy (whose prototype cannot be read) rather than a throw. */
function isError(value: unknown): value is Error {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

function untilAborted<T>(promise: PromiseLike<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
