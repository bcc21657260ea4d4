/**
 * Waiting for a run's outcome: `handle.result()` and `engine.waitForRun()`. A run this engine
 * finishes or cancels wakes its waiters at once (through the event bus and `cancel()`); a run
 * finished elsewhere is noticed by reading storage every poll interval.
 *
 * @module
 */

import { delay } from "../timers.ts";
import {
  ConfigError,
  ResultTimeoutError,
  RunCancelledError,
  RunFailedError,
  RunNotFoundError,
} from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { StorageAdapter } from "../storage/adapter.ts";
import { decodeValue } from "../storage/codec.ts";
import { type Duration, durationMs } from "../workflow/duration.ts";
import type { EventBus } from "./events.ts";

/** Options of `handle.result()` and `engine.waitForRun()`. */
export interface WaitForRunOptions {
  /** How long to wait before rejecting with `ResultTimeoutError`; default no limit. */
  readonly timeout?: Duration;
  /** Stops waiting when it aborts: the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

const WAIT_FOR_RUN_OPTION_KEYS: OptionKeys<WaitForRunOptions> = { timeout: true, signal: true };

/** What the waiters need of the engine. */
export interface RunWaiterDeps {
  /** Where runs are read. */
  readonly storage: StorageAdapter;
  /** Local runs' events. */
  readonly events: EventBus;
  /** How often to read storage for a run finished elsewhere, in ms. */
  pollIntervalMs(): number;
}

/** The waiters of one engine, keyed by run id. */
export class RunWaiters {
  readonly #deps: RunWaiterDeps;
  readonly #wakers = new Map<string, Set<() => void>>();
  #unsubscribe: (() => void) | undefined;

  constructor(deps: RunWaiterDeps) {
    this.#deps = deps;
  }

  /** Wakes the waiters of `runId` (it finished, or was cancelled, on this engine). */
  notify(runId: string): void {
    for (const wake of this.#wakers.get(runId) ?? []) wake();
  }

  /**
   * Resolves to the run's output once it completes.
   *
   * @throws {RunFailedError} When it failed.
   * @throws {RunCancelledError} When it was cancelled.
   * @throws {RunNotFoundError} When there is no such run.
   * @throws {ResultTimeoutError} When `timeout` passed first.
   * @throws {ConfigError} On invalid options.
   */
  async wait(runId: string, options?: WaitForRunOptions): Promise<unknown> {
    const { timeout, signal } =
      checkOptionKeys(options, WAIT_FOR_RUN_OPTION_KEYS, undefined, "wait options") ?? {};
    const timeoutMs = timeout === undefined ? null : durationMs(timeout, "timeout", "waiting for a run");
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new ConfigError("Invalid signal for waiting for a run: expected an AbortSignal", {
        field: "signal",
      });
    }
    signal?.throwIfAborted();
    const deadline = timeoutMs === null ? Infinity : Date.now() + timeoutMs;
    let wake = new AbortController();
    const stopWaking = this.#register(runId, () => wake.abort());
    try {
      for (;;) {
        // Armed before the read, so a finish between the read and the sleep is not missed.
        wake = new AbortController();
        const run = await this.#deps.storage.getRun(runId);
        if (run === null) throw new RunNotFoundError(runId);
        if (run.status === "completed") return run.output === null ? undefined : decodeValue(run.output);
        if (run.status === "failed") throw new RunFailedError(runId, run.error);
        if (run.status === "cancelled") throw new RunCancelledError(runId);
        const left = deadline - Date.now();
        if (left <= 0) throw new ResultTimeoutError(runId, timeoutMs ?? 0);
        const woken = signal === undefined ? wake.signal : AbortSignal.any([wake.signal, signal]);
        await delay(Math.min(left, this.#deps.pollIntervalMs()), woken);
        signal?.throwIfAborted();
      }
    } finally {
      stopWaking();
    }
  }

  #register(runId: string, wake: () => void): () => void {
    let wakers = this.#wakers.get(runId);
    if (wakers === undefined) this.#wakers.set(runId, wakers = new Set());
    wakers.add(wake);
    // Subscribed only while someone waits, so the bus builds no events for nobody.
    this.#unsubscribe ??= this.#deps.events.subscribe((event) => {
      if (event.type === "runComplete" || event.type === "runFailed") this.notify(event.runId);
    });
    return () => {
      wakers.delete(wake);
      if (wakers.size === 0) this.#wakers.delete(runId);
      if (this.#wakers.size === 0) {
        this.#unsubscribe?.();
        this.#unsubscribe = undefined;
      }
    };
  }
}
