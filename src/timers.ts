/**
 * Timers for any duration the API accepts. Every runtime's `setTimeout` fires at once for a delay
 * above 2^31−1 ms (about 24.8 days), so longer delays are chained from timers below that limit.
 * Every timer of the core goes through here.
 *
 * @module
 */

/** The longest delay `setTimeout` honours on every runtime. */
export const MAX_TIMER_MS = 2_147_483_647;

/** How a timer is armed: `unref` lets the process exit while only this timer is pending. */
export interface TimerOptions {
  readonly unref?: boolean;
  /** The ceiling of one underlying timer; tests lower it to count the chained firings. */
  readonly maxTimerMs?: number;
}

/**
 * Calls `callback` once, `ms` from now (a negative or NaN delay fires as soon as possible;
 * Infinity never does).
 *
 * @returns The function that cancels the timer.
 */
export function setLongTimeout(callback: () => void, ms: number, options: TimerOptions = {}): () => void {
  const ceiling = options.maxTimerMs ?? MAX_TIMER_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (remaining: number): void => {
    const chunk = Math.min(remaining, ceiling);
    timer = setTimeout(() => remaining > chunk ? arm(remaining - chunk) : callback(), chunk);
    // Node and Bun return a timer object with unref; Deno returns a number and needs nothing.
    if (options.unref) (timer as { unref?: () => void }).unref?.();
  };
  arm(ms > 0 ? ms : 0);
  return () => clearTimeout(timer);
}

/**
 * Calls `callback` every `ms`, each period counted from the end of the previous call.
 *
 * @returns The function that cancels the timer.
 */
export function setLongInterval(callback: () => void, ms: number, options: TimerOptions = {}): () => void {
  let cancel = (): void => {};
  let cancelled = false;
  const again = (): void => {
    cancel = setLongTimeout(
      () => {
        callback();
        if (!cancelled) again();
      },
      ms,
      options,
    );
  };
  again();
  return () => {
    cancelled = true;
    cancel();
  };
}

/**
 * Resolves after `ms`, or as soon as `signal` aborts (it never rejects: the caller checks the
 * signal). The timer is cleared on abort, so nothing is left pending.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || !(ms > 0)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const cancel = setLongTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
