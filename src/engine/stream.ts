/**
 * `engine.stream()`: a pull-based async iterable of engine events with optional backpressure.
 *
 * @module
 */

import { ConfigError, StreamLaggedError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { EngineEvent, EventBus } from "./events.ts";

/** Options of `engine.stream()`. */
export interface StreamOptions {
  /**
   * How many unread events the stream holds before it pushes back: once it holds this many, runs
   * on this engine pause before their next step, and the engine claims no new run, until the
   * consumer reads. A positive integer,
   * `Infinity` (the default) for an unbounded buffer that never slows the engine, or `0` for a
   * rendezvous: runs pause whenever an event is unread, so each is handed over as the consumer asks.
   */
  readonly bufferSize?: number;
  /**
   * How long (ms) a bounded stream's buffer may stay full before the stream gives up on its
   * consumer: it then stops holding runs back and ends; the consumer reads the buffered events,
   * then `next()` rejects with a `StreamLaggedError`. A positive integer; default 10,000.
   */
  readonly lagTimeoutMs?: number;
}

const STREAM_OPTION_KEYS: OptionKeys<StreamOptions> = { bufferSize: true, lagTimeoutMs: true };

/** A stream's checked options. */
export interface ResolvedStreamOptions {
  readonly bufferSize: number;
  readonly lagTimeoutMs: number;
}

const DEFAULT_LAG_TIMEOUT_MS = 10_000;
/** The longest delay a timer takes (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The engine's events from the moment `engine.stream()` was called, in the order they happened.
 * Ends when the consumer leaves (`break`, `return()`, `await using`, `close()`) or when the engine
 * stops (after the events of the runs `stop()` let finish).
 */
export interface EventStream extends AsyncIterableIterator<EngineEvent>, AsyncDisposable {
  /** Ends the stream, as leaving a `for await` loop does; resolves as done. */
  return(): Promise<IteratorResult<EngineEvent>>;
  /**
   * Ends the stream, as an async generator does when it is thrown into: unread events are
   * dropped, and the returned promise rejects with `error`.
   */
  throw(error?: unknown): Promise<IteratorResult<EngineEvent>>;
  /** Ends the stream now; unread events are dropped and a pending `next()` resolves as done. */
  close(): void;
}

/** Checks the options, so a typo fails at the call rather than as a stream that never pushes back. */
export function resolveStreamOptions(options: StreamOptions | undefined): ResolvedStreamOptions {
  const checked = checkOptionKeys(options, STREAM_OPTION_KEYS, undefined, "stream options");
  const size = checked?.bufferSize ?? Infinity;
  if (size !== Infinity && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new ConfigError(`Invalid bufferSize ${String(size)}: expected 0, a positive integer or Infinity`, {
      field: "bufferSize",
    });
  }
  const lag = checked?.lagTimeoutMs ?? DEFAULT_LAG_TIMEOUT_MS;
  if (!(Number.isSafeInteger(lag) && lag > 0 && lag <= MAX_TIMER_MS)) {
    throw new ConfigError(
      `Invalid lagTimeoutMs ${
        String(lag)
      }: expected a positive integer number of ms (at most ${MAX_TIMER_MS})`,
      { field: "lagTimeoutMs" },
    );
  }
  // A rendezvous pushes back on the first unread event, as a buffer of one does.
  return { bufferSize: Math.max(size, 1), lagTimeoutMs: lag };
}

/**
 * One subscriber of the engine's events. A full buffer does not refuse events (emitting is
 * synchronous and must never fail a run); it marks the bus congested, and runs wait at their next
 * step boundary, so the buffer overshoots by at most one event per run in flight. A buffer left
 * full for `lagTimeoutMs` ends the stream with a {@linkcode StreamLaggedError}, so that a stalled
 * consumer holds runs back for a bounded time only.
 */
export class BufferedEventStream implements EventStream {
  readonly #bus: EventBus;
  readonly #bufferSize: number;
  readonly #lagTimeoutMs: number;
  readonly #onEnd: (stream: BufferedEventStream) => void;
  readonly #unsubscribe: () => void;
  #buffer: EngineEvent[] = [];
  #head = 0;
  readonly #readers: ((result: IteratorResult<EngineEvent>) => void)[] = [];
  /** "open": receiving; "ending": no new events, unread ones still delivered; "closed": done. */
  #state: "open" | "ending" | "closed" = "open";
  /** Armed while the buffer is full; when it fires the consumer is lagging. */
  #lagTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set when the stream ended because its consumer lagged: the read after the buffered events rejects with it. */
  #lagged: StreamLaggedError | undefined;

  constructor(bus: EventBus, options: ResolvedStreamOptions, onEnd: (stream: BufferedEventStream) => void) {
    this.#bus = bus;
    this.#bufferSize = options.bufferSize;
    this.#lagTimeoutMs = options.lagTimeoutMs;
    this.#onEnd = onEnd;
    this.#unsubscribe = bus.subscribe((event) => this.#push(event));
  }

  next(): Promise<IteratorResult<EngineEvent>> {
    if (this.#head < this.#buffer.length) return Promise.resolve({ value: this.#shift(), done: false });
    if (this.#state !== "open") {
      const lagged = this.#lagged;
      this.#lagged = undefined;
      this.#finish();
      return lagged === undefined
        ? Promise.resolve({ value: undefined, done: true })
        : Promise.reject(lagged);
    }
    return new Promise((resolve) => this.#readers.push(resolve));
  }

  return(): Promise<IteratorResult<EngineEvent>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<EngineEvent>> {
    this.close();
    return Promise.reject(error);
  }

  close(): void {
    this.#buffer = [];
    this.#head = 0;
    this.#lagged = undefined;
    this.#finish();
  }

  /** Stops receiving; what is buffered is still read, then the stream is done. */
  end(): void {
    if (this.#state !== "open") return;
    this.#state = "ending";
    this.#unsubscribe();
    this.#relieve();
    if (this.#head >= this.#buffer.length) this.#finish();
  }

  [Symbol.asyncIterator](): EventStream {
    return this;
  }

  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }

  #push(event: EngineEvent): void {
    if (this.#state !== "open") return;
    const reader = this.#readers.shift();
    if (reader !== undefined) {
      reader({ value: event, done: false });
      return;
    }
    this.#buffer.push(event);
    if (this.#buffer.length - this.#head >= this.#bufferSize) this.#congest();
  }

  #congest(): void {
    this.#bus.congest(this);
    if (this.#lagTimer !== undefined) return;
    this.#lagTimer = setTimeout(() => this.#lag(), this.#lagTimeoutMs);
    // A stalled stream must not keep the process alive (Node and Bun have unref; Deno needs nothing).
    (this.#lagTimer as { unref?: () => void }).unref?.();
  }

  #relieve(): void {
    if (this.#lagTimer !== undefined) {
      clearTimeout(this.#lagTimer);
      this.#lagTimer = undefined;
    }
    this.#bus.relieve(this);
  }

  /** The consumer left the buffer full too long: stop holding runs back and end after the buffer. */
  #lag(): void {
    this.#lagTimer = undefined;
    if (this.#state !== "open") return;
    this.#lagged = new StreamLaggedError(this.#bufferSize, this.#lagTimeoutMs);
    this.end();
  }

  #shift(): EngineEvent {
    const event = this.#buffer[this.#head]!;
    this.#head++;
    // Compact now and then rather than on every read: shift() on a long array is O(n).
    if (this.#head >= 1024 && this.#head * 2 >= this.#buffer.length) {
      this.#buffer = this.#buffer.slice(this.#head);
      this.#head = 0;
    }
    if (this.#buffer.length - this.#head < this.#bufferSize) this.#relieve();
    return event;
  }

  #finish(): void {
    if (this.#state === "closed") return;
    if (this.#state === "open") this.#unsubscribe();
    this.#state = "closed";
    this.#relieve();
    for (const reader of this.#readers.splice(0)) reader({ value: undefined, done: true });
    this.#onEnd(this);
  }
}
