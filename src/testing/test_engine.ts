import { createEngine, type Engine, type EnqueueOptions, type WorkflowNamed } from "../engine/engine.ts";
import type { EngineHooks } from "../engine/events.ts";
import type { RunDetails } from "../engine/run_info.ts";
import { ConfigError, InternalError, TestRunIncompleteError } from "../errors.ts";
import type { RunStatus, StepStatus, StorageAdapter, StoredError } from "../storage/adapter.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import { MemoryStorage } from "../storage/memory.ts";
import type {
  AnyWorkflow,
  EventName,
  EventPayloadInput,
  WorkflowInput,
  WorkflowOutput,
  WorkflowSteps,
} from "../workflow/workflow.ts";

/** Options of {@linkcode testEngine}. */
export interface TestEngineOptions<W extends AnyWorkflow> {
  /** The workflows under test. */
  readonly workflows: readonly W[];
  /** Storage to use; default a fresh `MemoryStorage`. */
  readonly storage?: StorageAdapter;
  /** The virtual clock's start, in ms since the epoch. Default the real time at creation. */
  readonly startTime?: number;
  /** Hooks, as for `createEngine`. */
  readonly hooks?: EngineHooks;
}

const TEST_ENGINE_OPTION_KEYS: OptionKeys<TestEngineOptions<AnyWorkflow>> = {
  workflows: true,
  storage: true,
  startTime: true,
  hooks: true,
};

/**
 * One unit's result in {@linkcode TestRunResult.steps}, as reflow-ts's test engine has it:
 * `completed` with its output, `failed` with its error's message, or `skipped` (a `when` said no).
 * A unit the run left in another state (a wait being waited on, a retry) shows that status.
 */
export type TestStepResult<Output> =
  | { readonly status: "completed"; readonly output: Output; readonly error: null }
  | { readonly status: "skipped"; readonly output: undefined; readonly error: null }
  | {
    readonly status: Exclude<StepStatus, "completed" | "skipped">;
    readonly output: null;
    readonly error: string | null;
  };

/** The units' results of a run of `W` by name, each typed by its step's output. */
export type TestStepResults<W extends AnyWorkflow> = {
  readonly [K in keyof WorkflowSteps<W>]?: TestStepResult<Exclude<WorkflowSteps<W>[K], undefined>>;
};

/** What {@linkcode TestEngine.run} returns: the run's outcome with its units' results typed by name. */
export interface TestRunResult<W extends AnyWorkflow> {
  /** The run's id. */
  readonly runId: string;
  /** Where the run ended up: finished, `waiting` for an event, or `parked` (a version mismatch). */
  readonly status: RunStatus;
  /** The run's output once completed. */
  readonly output: WorkflowOutput<W> | undefined;
  /** Why it failed, once failed. */
  readonly error: StoredError | null;
  /** Each unit's result by name, `{ status, output, error }`; units not reached are absent. */
  readonly steps: TestStepResults<W>;
  /** Everything stored about the run. */
  readonly details: RunDetails;
}

/** An engine on a virtual clock that drives runs to completion without real waiting. */
export interface TestEngine<W extends AnyWorkflow> extends AsyncDisposable {
  /** The underlying engine (its `now` is the virtual clock). */
  readonly engine: Engine<W>;
  /** The storage it runs on. */
  readonly storage: StorageAdapter;
  /** The virtual time, ms since the epoch. */
  now(): number;
  /**
   * Moves the virtual clock forward.
   *
   * @param ms How far; must be 0 or more.
   */
  advance(ms: number): void;
  /**
   * Enqueues a run and drives it until it finishes or waits for an event. Sleeps and retry delays
   * are skipped by advancing the virtual clock.
   *
   * @example Read a step's result
   * ```ts ignore
   * const result = await te.run("checkout", { amount: 5 });
   * if (result.steps.charge?.status === "completed") console.log(result.steps.charge.output);
   * ```
   *
   * @param name The workflow.
   * @param input Its input.
   * @param options The idempotency key, if any.
   * @returns The run's outcome.
   * @throws {TestRunIncompleteError} When the run neither finishes nor reaches a wait (its workflow
   *   is not one of this engine's, or it retries without end).
   */
  run<N extends W["name"]>(
    name: N,
    input: WorkflowInput<WorkflowNamed<W, N>>,
    options?: EnqueueOptions,
  ): Promise<TestRunResult<WorkflowNamed<W, N>>>;
  /**
   * Drives an already enqueued run, as `run()` does.
   *
   * @param runId The run.
   * @returns The run's outcome.
   * @throws {TestRunIncompleteError} As `run()`.
   */
  drive(runId: string): Promise<TestRunResult<W>>;
  /**
   * Sends an event (as `engine.sendEvent`) and drives the run on, as `run()` does.
   *
   * @param runId The run, usually one `run()` left `waiting`.
   * @param name The `waitForEvent` unit's name.
   * @param payload The event's data.
   * @returns The run's outcome.
   * @throws {ConfigError} When the run's workflow has no wait of that name.
   * @throws {ValidationError} When the wait's schema rejects the payload.
   */
  sendEvent<N extends EventName<W>>(
    runId: string,
    name: N,
    payload: EventPayloadInput<W, N>,
  ): Promise<TestRunResult<W>>;
}

const MAX_ROUNDS = 100_000;

/**
 * Creates an engine on `MemoryStorage` and a virtual clock, for testing workflows.
 *
 * @example Test a workflow
 * ```ts
 * import { createWorkflow, type StandardSchemaV1 } from "@reflow/core";
 * import { testEngine } from "@reflow/core/test";
 *
 * const order: StandardSchemaV1<{ amount: number }> = {
 *   "~standard": { version: 1, vendor: "example", validate: (value) => ({ value: value as { amount: number } }) },
 * };
 * const checkout = createWorkflow({ name: "checkout", input: order })
 *   .step("charge", ({ input }) => ({ charged: input.amount }))
 *   .step("receipt", ({ prev }) => `receipt for ${prev.charged}`);
 *
 * await using te = testEngine({ workflows: [checkout] });
 * const result = await te.run("checkout", { amount: 5 });
 * console.log(result.status, result.steps.charge?.output?.charged, result.output); // completed 5 receipt for 5
 * ```
 *
 * @param options The workflows and, optionally, storage, start time and hooks.
 * @returns A test engine.
 */
export function testEngine<const W extends AnyWorkflow>(options: TestEngineOptions<W>): TestEngine<W> {
  checkOptionKeys(options, TEST_ENGINE_OPTION_KEYS, undefined, "testEngine options");
  let clock = options.startTime ?? Date.now();
  const storage = options.storage ?? new MemoryStorage({ now: () => clock });
  const engine = createEngine({
    storage,
    workflows: options.workflows,
    now: () => clock,
    ...(options.hooks === undefined ? {} : { hooks: options.hooks }),
  });

  async function drive(runId: string): Promise<TestRunResult<W>> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const claimed = await engine.tick();
      const details = await engine.getRunStatus(runId);
      if (details === null) throw new InternalError(`Run "${runId}" disappeared from storage`);
      const { status, dueAt } = details.run;
      // A parked run moves only when a definition that can continue it is registered.
      if (status === "completed" || status === "failed" || status === "cancelled" || status === "parked") {
        return toResult(details);
      }
      // Due, yet nothing was claimed: no workflow here can run it (its workflow is not registered).
      if (claimed === 0 && (status === "pending" || status === "running") && (dueAt ?? clock) <= clock) {
        throw new TestRunIncompleteError(runId, status);
      }
      // A wait is left to the test: send the event, or advance() past its timeout and drive() again.
      if (status === "waiting" && (dueAt === null || dueAt > clock)) return toResult(details);
      if (dueAt !== null && dueAt > clock) clock = dueAt; // a sleep or a retry delay: skip it
    }
    const details = await engine.getRunStatus(runId);
    throw new TestRunIncompleteError(runId, details?.run.status ?? "gone");
  }

  return {
    engine,
    storage,
    now: () => clock,
    advance(ms: number): void {
      if (!(ms >= 0)) throw new ConfigError(`Cannot move the virtual clock by ${ms} ms: expected 0 or more`);
      clock += ms;
    },
    async run(name, input, enqueueOptions) {
      const { runId } = await engine.enqueue(name, input, enqueueOptions);
      return await drive(runId) as TestRunResult<never>;
    },
    drive,
    async sendEvent(runId, name, payload) {
      await engine.sendEvent(runId, name, payload);
      return await drive(runId);
    },
    async [Symbol.asyncDispose]() {
      await engine.stop();
      await storage.close();
    },
  };
}

function toResult<W extends AnyWorkflow>(details: RunDetails): TestRunResult<W> {
  // Entries are built as a list and turned into own properties, so a step named "__proto__" is a key.
  const steps = Object.fromEntries(
    details.steps.map(({ name, status, output, error }): [string, TestStepResult<unknown>] => [
      name,
      status === "completed"
        ? { status, output, error: null }
        : status === "skipped"
        ? { status, output: undefined, error: null }
        : { status, output: null, error: error?.message ?? null },
    ]),
  );
  return {
    runId: details.run.id,
    status: details.run.status,
    output: details.run.output as WorkflowOutput<W> | undefined,
    error: details.run.error,
    steps: steps as TestStepResults<W>,
    details,
  };
}
