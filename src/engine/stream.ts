/**
 * `engine.stream()`: a pull-based async iterable of engine events with optional backpressure.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { EngineEvent, EventBus } from "./events.ts";

/** Options of `engine.stream()`. */
export interface StreamOptions {
  /**
   * How many unread events the stream holds before it pushes back: once it holds this many, runs
   * on this engine pause before their next step until the consumer reads. A positive integer,
   * `Infinity` (the default) for an unbounded buffer that never slows the engine, or `0` for a
   * rendezvous: runs pause whenever an event is unread, so each is handed over as the consumer asks.
   */
  readonly bufferSize?: number;
}

const STREAM_OPTION_KEYS: OptionKeys<StreamOptions> = { bufferSize: true };

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

/** Checks `bufferSize`, so a typo fails at the call rather than as a stream that never pushes back. */
export function resolveBufferSize(options: StreamOptions | undefined): number {
  const size = checkOptionKeys(options, STREAM_OPTION_KEYS, undefined, "stream options")?.bufferSize ??
    Infinity;
  if (size !== Infinity && !(Number.isSafeInteger(size) && size >= 0)) {
    throw new ConfigError(`Invalid bufferSize ${String(size)}: expected 0, a positive integer or Infinity`, {
      field: "bufferSize",
    });
  }
  // A rendezvous pushes back on the first unread event, as a buffer of one does.
  return Math.max(size, 1);
}

/**
 * One subscriber of the engine's events. A full buffer does not refuse events (emitting is
 * synchronous and must never fail a run); it marks the bus congested, and runs wait at their next
 * step boundary, so the buffer overshoots by at most one event per run in flight.
 */
export class BufferedEventStream implements EventStream {
  readonly #bus: EventBus;
  readonly #bufferSize: number;
  readonly #onEnd: (stream: BufferedEventStream) => void;
  readonly #unsubscribe: () => void;
  #buffer: EngineEvent[] = [];
  #head = 0;
  readonly #readers: ((result: IteratorResult<EngineEvent>) => void)[] = [];
  /** "open": receiving; "ending": no new events, unread ones still delivered; "closed": done. */
  #state: "open" | "ending" | "closed" = "open";

  constructor(bus: EventBus, bufferSize: number, onEnd: (stream: BufferedEventStream) => void) {
    this.#bus = bus;
    this.#bufferSize = bufferSize;
    this.#onEnd = onEnd;
    this.#unsubscribe = bus.subscribe((event) => this.#push(event));
  }

  next(): Promise<IteratorResult<EngineEvent>> {
    if (this.#head < this.#buffer.length) return Promise.resolve({ value: this.#shift(), done: false });
    if (this.#state !== "open") {
      this.#finish();
      return Promise.resolve({ value: undefined, done: true });
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
    this.#finish();
  }

  /** Stops receiving; what is buffered is still read, then the stream is done. */
  end(): void {
    if (this.#state !== "open") return;
    this.#state = "ending";
    this.#unsubscribe();
    this.#bus.relieve(this);
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
    if (this.#buffer.length - this.#head >= this.#bufferSize) this.#bus.congest(this);
  }

  #shift(): EngineEvent {
    const event = this.#buffer[this.#head]!;
    this.#head++;
    // Compact now and then rather than on every read: shift() on a long array is O(n).
    if (this.#head >= 1024 && this.#head * 2 >= this.#buffer.length) {
      this.#buffer = this.#buffer.slice(this.#head);
      this.#head = 0;
    }
    if (this.#buffer.length - this.#head < this.#bufferSize) this.#bus.relieve(this);
    return event;
  }

  #finish(): void {
    if (this.#state === "closed") return;
    if (this.#state === "open") this.#unsubscribe();
    this.#state = "closed";
    this.#bus.relieve(this);
    for (const reader of this.#readers.splice(0)) reader({ value: undefined, done: true });
    this.#onEnd(this);
  }
}
