import { HookError, type ReflowError } from "../errors.ts";
import type { OptionKeys } from "../option_keys.ts";

/** A run was claimed by a worker for the first time. */
export interface RunStartEvent {
  /** The event type. */
  readonly type: "runStart";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** Its validated input. */
  readonly input: unknown;
}

/** An attempt of a step is about to run. */
export interface StepStartEvent {
  /** The event type. */
  readonly type: "stepStart";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The step. */
  readonly stepName: string;
  /** The attempt's number, from 1. */
  readonly attempt: number;
}

/** A conditional step was skipped (its `when` returned false); the skip is stored. */
export interface StepSkippedEvent {
  /** The event type. */
  readonly type: "stepSkipped";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The step. */
  readonly stepName: string;
}

/** A step's result was committed. */
export interface StepCompleteEvent {
  /** The event type. */
  readonly type: "stepComplete";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The step. */
  readonly stepName: string;
  /** The attempt that succeeded. */
  readonly attempt: number;
  /** The same number, under reflow-ts's name for it. */
  readonly attempts: number;
  /** The step's output. */
  readonly output: unknown;
  /** How long the successful attempt took, in ms. */
  readonly durationMs: number;
}

/** A step attempt failed and the next one is scheduled. */
export interface StepRetryEvent {
  /** The event type. */
  readonly type: "stepRetry";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The step. */
  readonly stepName: string;
  /** The attempt that failed. */
  readonly attempt: number;
  /** Why it failed. */
  readonly error: Error;
  /** When the next attempt is due (ms since the epoch). */
  readonly nextAttemptAt: number;
}

/** A run completed; its output is committed. */
export interface RunCompleteEvent {
  /** The event type. */
  readonly type: "runComplete";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The run's output. */
  readonly output: unknown;
}

/** A run failed; the failure is committed. */
export interface RunFailedEvent {
  /** The event type. */
  readonly type: "runFailed";
  /** The run. */
  readonly runId: string;
  /** Its workflow. */
  readonly workflow: string;
  /** The unit that failed, if any. */
  readonly stepName: string | undefined;
  /** Why it failed. */
  readonly error: Error;
}

/** Everything the engine reports about runs, to hooks and streams. */
export type EngineEvent =
  | RunStartEvent
  | StepStartEvent
  | StepSkippedEvent
  | StepCompleteEvent
  | StepRetryEvent
  | RunCompleteEvent
  | RunFailedEvent;

/** An event's own fields: the executor adds its type, run id, workflow name (and `attempts`). */
export type EventFields<T extends EngineEvent["type"]> = Omit<
  Extract<EngineEvent, { readonly type: T }>,
  "type" | "runId" | "workflow" | "attempts"
>;

/**
 * Callbacks on the engine's events. Each may be synchronous or asynchronous; the engine does not
 * wait for them, and a hook that throws or rejects never changes a run's outcome: the error is
 * passed to `onError` as a `HookError`.
 */
export interface EngineHooks {
  /** A run was claimed for the first time. */
  readonly onRunStart?: (event: RunStartEvent) => void | Promise<void>;
  /** A step attempt is starting. */
  readonly onStepStart?: (event: StepStartEvent) => void | Promise<void>;
  /** A conditional step was skipped. */
  readonly onStepSkipped?: (event: StepSkippedEvent) => void | Promise<void>;
  /** A step's result was committed. */
  readonly onStepComplete?: (event: StepCompleteEvent) => void | Promise<void>;
  /** A step attempt failed and will be retried. */
  readonly onStepRetry?: (event: StepRetryEvent) => void | Promise<void>;
  /** A run completed. */
  readonly onRunComplete?: (event: RunCompleteEvent) => void | Promise<void>;
  /** A run failed. */
  readonly onRunFailed?: (event: RunFailedEvent) => void | Promise<void>;
  /**
   * Background errors: failing hooks (`HookError`), storage failures in the worker loop, failing
   * `onFailure` handlers. Without this hook they are written to `console.error`.
   */
  readonly onError?: (error: ReflowError) => void | Promise<void>;
}

/** The keys of {@linkcode EngineHooks}; every other key is refused. */
export const HOOK_KEYS: OptionKeys<EngineHooks> = {
  onRunStart: true,
  onStepStart: true,
  onStepSkipped: true,
  onStepComplete: true,
  onStepRetry: true,
  onRunComplete: true,
  onRunFailed: true,
  onError: true,
};

const HOOK_BY_TYPE = {
  "runStart": "onRunStart",
  "stepStart": "onStepStart",
  "stepSkipped": "onStepSkipped",
  "stepComplete": "onStepComplete",
  "stepRetry": "onStepRetry",
  "runComplete": "onRunComplete",
  "runFailed": "onRunFailed",
} as const satisfies Record<EngineEvent["type"], keyof EngineHooks>;

/** A listener on every engine event (streams subscribe through this). */
export type EventListener = (event: EngineEvent) => void;

/** Routes events to hooks and listeners, containing every failure. */
export class EventBus {
  readonly #hooks: EngineHooks;
  readonly #listeners = new Set<EventListener>();
  /** Bounded streams whose buffer is full; runs wait while any is. */
  readonly #congested = new Set<object>();
  #flowing: { promise: Promise<void>; resolve: () => void } | undefined;
  #ignoreCongestion = false;

  readonly #onFlowing: () => void;

  /**
   * @param hooks The engine's hooks.
   * @param onFlowing Called when the last full stream is relieved.
   */
  constructor(hooks: EngineHooks, onFlowing: () => void = () => {}) {
    this.#hooks = hooks;
    this.#onFlowing = onFlowing;
  }

  /** Whether anyone listens to `type`, so callers can skip building an event nobody reads. */
  wants(type: EngineEvent["type"]): boolean {
    return this.#listeners.size > 0 || this.#hooks[HOOK_BY_TYPE[type]] !== undefined;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** True while a bounded stream's buffer is full: runs should await {@linkcode EventBus.whenFlowing}. */
  get congested(): boolean {
    return this.#congested.size > 0 && !this.#ignoreCongestion;
  }

  /** Marks `stream` full. */
  congest(stream: object): void {
    this.#congested.add(stream);
  }

  /** Marks `stream` no longer full (or gone); wakes the waiting runs once no stream is full. */
  relieve(stream: object): void {
    if (!this.#congested.delete(stream) || this.congested) return;
    this.#flowing?.resolve();
    this.#flowing = undefined;
    this.#onFlowing();
  }

  /**
   * Lifts backpressure for good (an engine that is stopping must not wait on a stalled consumer),
   * or restores it.
   */
  setIgnoreCongestion(ignore: boolean): void {
    this.#ignoreCongestion = ignore;
    if (ignore) {
      this.#flowing?.resolve();
      this.#flowing = undefined;
    }
  }

  /** Resolves once no stream is full, or when `signal` aborts (a cancel or a stop is never held up). */
  whenFlowing(signal: AbortSignal): Promise<void> {
    if (!this.congested || signal.aborted) return Promise.resolve();
    if (this.#flowing === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      this.#flowing = { promise, resolve };
    }
    const flowing = this.#flowing.promise;
    return new Promise<void>((resolve) => {
      const onAbort = () => resolve();
      signal.addEventListener("abort", onAbort, { once: true });
      void flowing.then(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  emit(event: EngineEvent): void {
    const name = HOOK_BY_TYPE[event.type];
    const hook = this.#hooks[name] as ((event: EngineEvent) => unknown) | undefined;
    if (hook !== undefined) this.#call(name, () => hook(event));
    for (const listener of this.#listeners) this.#call("stream", () => listener(event));
  }

  /** Reports a background error to `onError`, or to `console.error` when there is no such hook. */
  reportError(error: ReflowError): void {
    const onError = this.#hooks.onError;
    if (onError === undefined) {
      console.error("[reflow]", error);
      return;
    }
    try {
      const result = onError(error);
      if (isPromise(result)) {
        result.catch((thrown) => console.error("[reflow] onError hook failed:", thrown, error));
      }
    } catch (thrown) {
      console.error("[reflow] onError hook failed:", thrown, error);
    }
  }

  #call(source: string, invoke: () => unknown): void {
    try {
      const result = invoke();
      if (isPromise(result)) result.catch((thrown) => this.reportError(new HookError(source, thrown)));
    } catch (thrown) {
      this.reportError(new HookError(source, thrown));
    }
  }
}

function isPromise(value: unknown): value is Promise<unknown> {
  return typeof (value as Promise<unknown> | undefined)?.then === "function";
}
