import { ConfigError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";

/**
 * How a step retries after a failed attempt. Attempt counts and the next attempt's due time
 * are stored, so a crash between attempts neither resets the count nor skips the delay.
 */
export interface RetryPolicy {
  /** Attempts in all, the first included (an integer ≥ 1). Default 3. */
  readonly maxAttempts?: number;
  /** `"exponential"` doubles the delay after each failure; `"linear"` adds `initialDelayMs`. Default exponential. */
  readonly backoff?: "linear" | "exponential";
  /** The delay before the second attempt, in ms (≥ 0). Default 1000. */
  readonly initialDelayMs?: number;
  /** No delay exceeds this, in ms (≥ `initialDelayMs`). Default 60,000. */
  readonly maxDelayMs?: number;
  /**
   * Randomises each delay downwards to spread retries of many runs: `true` draws it uniformly
   * from [0, delay]; a fraction `j` in [0, 1] from [delay × (1 − j), delay]. Default false.
   */
  readonly jitter?: boolean | number;
  /**
   * Each attempt's time limit in ms, as reflow-ts spells it; the step's own `timeoutMs` wins
   * over it.
   */
  readonly timeoutMs?: number;
}

const RETRY_POLICY_KEYS: OptionKeys<RetryPolicy> = {
  maxAttempts: true,
  backoff: true,
  initialDelayMs: true,
  maxDelayMs: true,
  jitter: true,
  timeoutMs: true,
};

/** A {@linkcode RetryPolicy} with every default filled in. */
export interface ResolvedRetryPolicy {
  /** Total attempts, the first included. */
  readonly maxAttempts: number;
  /** How the delay grows between attempts. */
  readonly backoff: "linear" | "exponential";
  /** The delay before the second attempt. */
  readonly initialDelayMs: number;
  /** The ceiling on any one delay. */
  readonly maxDelayMs: number;
  /** The fraction (0..1) of each delay that is randomized. */
  readonly jitter: number;
}

/** A step without a retry policy makes one attempt. */
export const NO_RETRY: ResolvedRetryPolicy = Object.freeze({
  maxAttempts: 1,
  backoff: "exponential",
  initialDelayMs: 0,
  maxDelayMs: 0,
  jitter: 0,
});

/** Validates a retry policy when the workflow is built, so a typo fails at startup rather than mid-run. */
export function resolveRetryPolicy(policy: RetryPolicy | undefined, where: string): ResolvedRetryPolicy {
  if (policy === undefined) return NO_RETRY;
  checkOptionKeys(policy, RETRY_POLICY_KEYS, "retry", `the retry policy of ${where}`);
  const maxAttempts = policy.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new ConfigError(
      `Invalid retry.maxAttempts ${String(maxAttempts)} for ${where}: expected an integer of at least 1`,
      { field: "retry.maxAttempts" },
    );
  }
  const backoff = policy.backoff ?? "exponential";
  if (backoff !== "linear" && backoff !== "exponential") {
    throw new ConfigError(
      `Invalid retry.backoff ${JSON.stringify(backoff)} for ${where}: expected "linear" or "exponential"`,
      { field: "retry.backoff" },
    );
  }
  const initialDelayMs = policy.initialDelayMs ?? 1000;
  checkDelay(initialDelayMs, "initialDelayMs", where);
  const maxDelayMs = policy.maxDelayMs ?? Math.max(60_000, initialDelayMs);
  checkDelay(maxDelayMs, "maxDelayMs", where);
  if (maxDelayMs < initialDelayMs) {
    throw new ConfigError(
      `Invalid retry.maxDelayMs ${maxDelayMs} for ${where}: it is below initialDelayMs ${initialDelayMs}`,
      { field: "retry.maxDelayMs" },
    );
  }
  const jitter = policy.jitter === undefined || policy.jitter === false
    ? 0
    : policy.jitter === true
    ? 1
    : policy.jitter;
  if (typeof jitter !== "number" || !(jitter >= 0 && jitter <= 1)) {
    throw new ConfigError(
      `Invalid retry.jitter ${
        String(policy.jitter)
      } for ${where}: expected a boolean or a number from 0 to 1`,
      { field: "retry.jitter" },
    );
  }
  return Object.freeze({ maxAttempts, backoff, initialDelayMs, maxDelayMs, jitter });
}

function checkDelay(value: unknown, field: string, where: string): void {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new ConfigError(
      `Invalid retry.${field} ${String(value)} for ${where}: expected a finite number of ms, 0 or more`,
      { field: `retry.${field}` },
    );
  }
}

/**
 * The delay before the attempt after `failedAttempt` (1-based).
 *
 * @param random A source of uniform numbers in [0, 1), injectable for tests.
 */
export function retryDelayMs(
  policy: ResolvedRetryPolicy,
  failedAttempt: number,
  random: () => number,
): number {
  const base = policy.backoff === "linear"
    ? policy.initialDelayMs * failedAttempt
    : policy.initialDelayMs * 2 ** (failedAttempt - 1);
  const capped = Math.min(base, policy.maxDelayMs);
  return Math.round(capped - capped * policy.jitter * random());
}
