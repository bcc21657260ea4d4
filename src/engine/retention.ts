/**
 * Retention: deleting finished runs past an age, in bounded batches, on demand (`engine.purge()`)
 * or periodically while the engine runs (the `retention` option).
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { FinishedRunStatus, PurgeRequest, StorageAdapter } from "../storage/adapter.ts";
import { FINISHED_RUN_STATUSES, isFinishedStatus } from "../storage/statuses.ts";
import { type Duration, durationMs } from "../workflow/duration.ts";
import { setLongInterval } from "../timers.ts";

const DEFAULT_BATCH_SIZE = 500;
const DEFAULT_INTERVAL_MS = 3_600_000;

/** What `engine.purge()` deletes. */
export interface PurgeOptions {
  /** Only runs that finished at least this long ago, e.g. `"30d"`; `0` means every finished run. */
  readonly olderThan: Duration;
  /** Only runs that finished this way (or one of these ways). Default: completed, failed and cancelled. */
  readonly status?: FinishedRunStatus | readonly FinishedRunStatus[];
  /** Runs deleted per transaction, so a large purge never blocks other writers for long. Default 500. */
  readonly batchSize?: number;
}

/**
 * The `retention` option of `createEngine`: while `start()`ed, the engine purges finished runs
 * (with their steps and events) older than `olderThan` once at start and then every `interval`.
 * Unfinished runs are never purged.
 */
export interface RetentionOptions extends PurgeOptions {
  /** How often to purge. Default `"1h"`. */
  readonly interval?: Duration;
}

const PURGE_OPTION_KEYS: OptionKeys<PurgeOptions> = { olderThan: true, status: true, batchSize: true };
const RETENTION_OPTION_KEYS: OptionKeys<RetentionOptions> = { ...PURGE_OPTION_KEYS, interval: true };

/** A checked purge: the storage request without its time, and the batch size. */
export interface PurgePlan {
  readonly ageMs: number;
  readonly statuses: readonly FinishedRunStatus[];
  readonly batchSize: number;
}

/** A checked retention option. */
export interface RetentionPlan extends PurgePlan {
  readonly intervalMs: number;
}

/** Checks `engine.purge()` options; `field` prefixes error fields (`"retention"` for the engine option). */
export function resolvePurge(
  options: PurgeOptions | undefined,
  field?: string,
  keys: OptionKeys<PurgeOptions> = PURGE_OPTION_KEYS,
): PurgePlan {
  const name = (key: string) => field === undefined ? key : `${field}.${key}`;
  if (options === undefined) {
    throw new ConfigError("Invalid purge options: expected { olderThan, status?, batchSize? }", {
      field: field ?? "options",
    });
  }
  checkOptionKeys(options, keys, field, field ?? "purge options");
  const ageMs = durationMs(options.olderThan, name("olderThan"), "purging finished runs");
  const status = options.status ?? FINISHED_RUN_STATUSES;
  const statuses = typeof status === "string" ? [status] : status;
  if (!Array.isArray(statuses) || statuses.length === 0 || !statuses.every((s) => isFinishedStatus(s))) {
    throw new ConfigError(
      `Invalid ${name("status")} ${JSON.stringify(status)}: expected ${
        FINISHED_RUN_STATUSES.join(", ")
      }, or a non-empty array of them`,
      { field: name("status") },
    );
  }
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new ConfigError(`Invalid ${name("batchSize")} ${String(batchSize)}: expected a positive integer`, {
      field: name("batchSize"),
    });
  }
  return { ageMs, statuses, batchSize };
}

/** Checks the engine's `retention` option; undefined when there is none. */
export function resolveRetention(options: RetentionOptions | undefined): RetentionPlan | undefined {
  if (options === undefined) return undefined;
  const plan = resolvePurge(options, "retention", RETENTION_OPTION_KEYS);
  const intervalMs = durationMs(options.interval ?? DEFAULT_INTERVAL_MS, "retention.interval", "retention");
  if (intervalMs < 1) {
    throw new ConfigError("Invalid retention.interval 0: expected at least 1 ms", {
      field: "retention.interval",
    });
  }
  return { ...plan, intervalMs };
}

/**
 * Deletes every finished run the plan covers, one bounded batch per transaction, and yields to the
 * event loop between batches so that runs in flight keep committing. Stops early when `signal` aborts;
 * `onBatch` hears the running total after each batch (the CLI's progress).
 *
 * @returns How many runs were deleted.
 */
export async function purgeFinishedRuns(
  storage: StorageAdapter,
  plan: PurgePlan,
  now: number,
  signal?: AbortSignal,
  onBatch?: (total: number) => void,
): Promise<number> {
  const request: PurgeRequest = {
    finishedBefore: now - plan.ageMs,
    statuses: plan.statuses,
    limit: plan.batchSize,
  };
  let total = 0;
  for (;;) {
    const deleted = await storage.purgeRuns(request);
    total += deleted;
    onBatch?.(total);
    if (deleted < plan.batchSize || signal?.aborted) return total;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

/** Runs the retention purge at start and then every interval, one sweep at a time, until stopped. */
export class RetentionSweeper {
  readonly #storage: StorageAdapter;
  readonly #plan: RetentionPlan;
  readonly #now: () => number;
  readonly #report: (error: unknown) => void;
  readonly #stopped = new AbortController();
  #cancelTimer: (() => void) | undefined;
  #sweeping: Promise<void> | undefined;

  constructor(
    storage: StorageAdapter,
    plan: RetentionPlan,
    now: () => number,
    report: (error: unknown) => void,
  ) {
    this.#storage = storage;
    this.#plan = plan;
    this.#now = now;
    this.#report = report;
  }

  start(): void {
    this.#sweep();
    // The engine's worker loop keeps a started process alive; the sweeper alone must not.
    this.#cancelTimer = setLongInterval(() => this.#sweep(), this.#plan.intervalMs, { unref: true });
  }

  /** Stops the timer and waits for a sweep in progress to end (after its current batch). */
  async stop(): Promise<void> {
    this.#cancelTimer?.();
    this.#stopped.abort();
    await this.#sweeping;
  }

  #sweep(): void {
    // A slow database must not stack sweeps; the next interval catches up.
    if (this.#sweeping !== undefined) return;
    this.#sweeping = purgeFinishedRuns(this.#storage, this.#plan, this.#now(), this.#stopped.signal)
      .then(() => undefined, this.#report)
      .finally(() => this.#sweeping = undefined);
  }
}
