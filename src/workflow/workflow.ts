/**
 * The typed, immutable workflow builder.
 *
 * @module
 */

import { ConfigError, DuplicateStepError } from "../errors.ts";
import { checkName } from "../names.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { InferSchemaInput, InferSchemaOutput, StandardSchemaV1 } from "../standard_schema.ts";
import { type Duration, durationMs } from "./duration.ts";
import { isPromiseLike } from "../async.ts";
import { resolveRetryPolicy } from "./retry.ts";
import { validateWithSchema } from "./validate.ts";
import { fingerprint, shapeText } from "./shape.ts";
import type { ResolvedRetryPolicy, RetryPolicy } from "./retry.ts";

/**
 * The value a handler returns to end its run early; made by `complete()` in the step context.
 * The run's output becomes `value`, and no later unit runs.
 */
export class Completion<T> {
  /** The run's output. */
  readonly value: T;
  // Makes the class nominal, so a plain `{ value }` returned by a handler is not a completion.
  #brand = true;

  /**
   * Creates a completion; handlers get one from `ctx.complete(value)` instead.
   *
   * @param value The run's output.
   */
  constructor(value: T) {
    this.value = value;
  }

  /**
   * Whether a value is a completion.
   *
   * @param value Any value.
   * @returns True for values made by `complete()`.
   */
  static is(value: unknown): value is Completion<unknown> {
    return typeof value === "object" && value !== null && #brand in value;
  }
}

/** The output a step contributes: its handler's resolved value, without early completions. */
export type StepOutput<R> = Exclude<Awaited<R>, Completion<unknown>>;

/** The values a handler may complete its run with. */
export type CompletionValue<R> = Awaited<R> extends infer A ? A extends Completion<infer C> ? C : never
  : never;

/** What a step handler receives. */
export interface StepContext<Input, Prev, Steps> {
  /** The run's id. */
  readonly runId: string;
  /** The step's name. */
  readonly stepName: string;
  /** The run's validated input. */
  readonly input: Input;
  /** The previous unit's output (`undefined` for the first step, or after a skipped step). */
  readonly prev: Prev;
  /** Every earlier unit's output by name: a deep-frozen snapshot. */
  readonly steps: Steps;
  /** Aborts on cancellation, lease loss, engine stop, and this attempt's timeout. */
  readonly signal: AbortSignal;
  /** This attempt's number, from 1. */
  readonly attempt: number;
  /**
   * Ends the run early with `value` as its output, once this step's result is committed. It ends
   * the handler where it is called (code after it does not run), so `complete(value)` and
   * `return complete(value)` do the same; the returned form lets TypeScript see the value's type.
   */
  complete<T = undefined>(...value: [] | [T]): Completion<T>;
}

/** What a `when` predicate receives. */
export interface WhenContext<Input, Prev, Steps> {
  /** The run's validated input. */
  readonly input: Input;
  /** The previous unit's output. */
  readonly prev: Prev;
  /** Every earlier unit's output by name. */
  readonly steps: Steps;
}

/** A step handler: may be synchronous or asynchronous. */
export type StepHandler<Input, Prev, Steps, R> = (context: StepContext<Input, Prev, Steps>) => R;

/** A step with options. */
export interface StepConfig<Input, Prev, Steps, R> {
  /** The work. */
  readonly handler: StepHandler<Input, Prev, Steps, R>;
  /** Retries after failed attempts; without it a step makes one attempt. */
  readonly retry?: RetryPolicy;
  /** Each attempt's time limit in ms: past it, `signal` aborts and the attempt fails with `StepTimeoutError`. */
  readonly timeoutMs?: number;
  /**
   * Runs the step only if this returns true. A skip is stored and never re-evaluated on recovery;
   * the skipped step's output is `undefined`.
   */
  readonly when?: (context: WhenContext<Input, Prev, Steps>) => boolean | Promise<boolean>;
}

/** The keys of {@linkcode StepConfig} (and of a parallel branch's config, which refuses `when`). */
const STEP_CONFIG_KEYS: OptionKeys<StepConfig<unknown, unknown, unknown, unknown>> = {
  handler: true,
  retry: true,
  timeoutMs: true,
  when: true,
};

/** What an `onFailure` handler receives. */
export interface FailureContext<Input> {
  /** The failed run's id. */
  readonly runId: string;
  /** The error that failed the run. */
  readonly error: Error;
  /** The unit that failed, if the failure came from one. */
  readonly stepName: string | undefined;
  /** The run's validated input. */
  readonly input: Input;
}

/** A compensation handler, run once after a run is marked failed. */
export type FailureHandler<Input> = (context: FailureContext<Input>) => void | Promise<void>;

/** A step as the engine runs it, with defaults resolved. */
export interface StepUnit {
  /** The unit kind. */
  readonly kind: "step";
  /** Unique within the workflow. */
  readonly name: string;
  /** The work. */
  readonly handler: (context: StepContext<unknown, unknown, unknown>) => unknown;
  /** The resolved retry policy. */
  readonly retry: ResolvedRetryPolicy;
  /** Each attempt's time limit, or null. */
  readonly timeoutMs: number | null;
  /** The skip predicate, or null. */
  readonly when: ((context: WhenContext<unknown, unknown, unknown>) => boolean | Promise<boolean>) | null;
}

/** A durable sleep as the engine runs it. */
export interface SleepUnit {
  /** The unit kind. */
  readonly kind: "sleep";
  /** Unique within the workflow. */
  readonly name: string;
  /** How long the run sleeps, in ms. */
  readonly durationMs: number;
}

/** A wait for an event as the engine runs it. */
export interface WaitUnit {
  /** The unit kind. */
  readonly kind: "wait";
  /** Unique within the workflow; also the name of the event it waits for. */
  readonly name: string;
  /** Validates payloads on `sendEvent`, or null to accept any storable value. */
  readonly schema: StandardSchemaV1 | null;
  /** How long the wait may last, in ms, or null for no limit. */
  readonly timeoutMs: number | null;
}

/** Concurrent branches as the engine runs them. */
export interface ParallelUnit {
  /** The unit kind. */
  readonly kind: "parallel";
  /** The branch names joined, for messages; the branches' own names are the unique ones. */
  readonly name: string;
  /** The branches, each a step with its own retry policy and timeout. */
  readonly branches: readonly StepUnit[];
}

/** One unit of a workflow, as the engine runs it. */
export type WorkflowUnit = StepUnit | SleepUnit | WaitUnit | ParallelUnit;

/** Options of `.waitForEvent()`. */
export interface WaitForEventOptions<S extends StandardSchemaV1 | undefined> {
  /** Validates the payload when it is sent; `sendEvent` throws `ValidationError` on a bad one. */
  readonly schema?: S;
  /** How long to wait before the run fails with `WaitTimeoutError`; default no limit. */
  readonly timeout?: Duration;
  /** The same limit in ms, as reflow-ts spells it; give `timeout` or `timeoutMs`, not both. */
  readonly timeoutMs?: number;
}

const WAIT_FOR_EVENT_OPTION_KEYS: OptionKeys<WaitForEventOptions<undefined>> = {
  schema: true,
  timeout: true,
  timeoutMs: true,
};

/** What `sendEvent` accepts for a wait: the schema's input, or `unknown` without a schema. */
export type EventInput<S> = S extends StandardSchemaV1 ? InferSchemaInput<S> : unknown;

/** The payload a wait yields: the schema's output, or `unknown` without a schema. */
export type EventPayload<S> = S extends StandardSchemaV1 ? InferSchemaOutput<S> : unknown;

/** A parallel branch: a handler, or a handler with `retry` and `timeoutMs` (no `when`). */
export type ParallelBranch<Input, Prev, Steps, R> =
  | StepHandler<Input, Prev, Steps, R>
  | (Omit<StepConfig<Input, Prev, Steps, R>, "when"> & { readonly when?: never });

/** The outputs of a parallel group by branch name, as the next unit's `prev`. */
export type ParallelOutputs<R> = { readonly [K in keyof R]: StepOutput<R[K]> };

/** The `steps` record after a step named `N` with output `Out` is added. */
export type AddStep<Steps, N extends string, Out> = Simplify<Steps & { readonly [K in N]: Out }>;
/** The `steps` record after a conditional step is added: its entry is absent when it was skipped. */
export type AddOptionalStep<Steps, N extends string, Out> = Simplify<Steps & { readonly [K in N]?: Out }>;
/** Flattens an intersection into one object type, so editors show the `steps` record plainly. */
// deno-lint-ignore ban-types
export type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** The `steps` record of a workflow with no steps yet. */
export type NoSteps = Record<never, never>;

/** The type parameters of a workflow, for type-level lookups. */
export interface WorkflowTypes<Name extends string, EnqueueInput, Input, Output, Steps, Events = unknown> {
  /** The workflow's name. */
  readonly name: Name;
  /** What `enqueue` accepts. */
  readonly enqueueInput: EnqueueInput;
  /** What handlers receive as `input`. */
  readonly input: Input;
  /** A completed run's output. */
  readonly output: Output;
  /** The outputs by unit name. */
  readonly steps: Steps;
  /** What `sendEvent` accepts, by event name. */
  readonly events: Events;
}

/**
 * A workflow: a name, an input schema and a chain of units. Immutable: every builder method
 * returns a new workflow.
 *
 * Type parameters: `Name` (a literal), `EnqueueInput`/`Input` (the schema's input and output),
 * `Prev` (the last unit's output), `Steps` (outputs by name), `Early` (values of early completions),
 * `Events` (what `sendEvent` accepts, by event name).
 */
export interface Workflow<
  Name extends string = string,
  EnqueueInput = unknown,
  Input = unknown,
  Prev = unknown,
  Steps = unknown,
  Early = unknown,
  Events = unknown,
> {
  /** The workflow's name, unique within an engine. */
  readonly name: Name;
  /**
   * The version each run stores: the one given to `createWorkflow`, or else the fingerprint of
   * the shape (`s` and 8 hex digits; see {@linkcode Workflow.shape}).
   */
  readonly version: string;
  /**
   * The definition's shape as canonical text: unit kinds, names and order, and branch names
   * (not handlers or options). Stored with the version, so that engines can tell which runs of
   * another version a definition can continue.
   */
  readonly shape: string;
  /** The input schema. */
  readonly inputSchema: StandardSchemaV1<EnqueueInput, Input>;
  /** The units in order. */
  readonly units: readonly WorkflowUnit[];
  /** The compensation handler, if any. */
  readonly failureHandler: FailureHandler<Input> | null;
  /** Type-level information; never present at run time. */
  readonly "~types"?: WorkflowTypes<Name, EnqueueInput, Input, Prev | Early, Steps, Events>;

  /**
   * Adds a step.
   *
   * @example Chain steps: each gets the previous output as `prev`
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const signup = createWorkflow({ name: "signup", input: z.object({ email: z.string() }) })
   *   .step("create-user", ({ input }) => ({ id: "u1", email: input.email }))
   *   .step("welcome", ({ prev, steps }) => `welcome ${prev.email} (${steps["create-user"].id})`);
   *
   * await using te = testEngine({ workflows: [signup] });
   * console.log((await te.run("signup", { email: "ada@example.com" })).output); // welcome ada@example.com (u1)
   * ```
   *
   * @param name Unique within the workflow.
   * @param handler The work; its resolved value is the step's output.
   * @returns A new workflow.
   * @throws {DuplicateStepError} When the name is taken.
   */
  step<N extends string, R>(
    name: N,
    handler: StepHandler<Input, Prev, Steps, R>,
  ): Workflow<
    Name,
    EnqueueInput,
    Input,
    StepOutput<R>,
    AddStep<Steps, N, StepOutput<R>>,
    Early | CompletionValue<R>,
    Events
  >;
  /**
   * Adds a conditional step: it runs only when `when` returns true, else its output is `undefined`.
   *
   * @example Skip a step
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const ship = createWorkflow({ name: "ship", input: z.object({ gift: z.boolean() }) })
   *   .step("wrap", { when: ({ input }) => input.gift, handler: () => "wrapped" })
   *   .step("send", ({ prev }) => prev ?? "plain box");
   *
   * await using te = testEngine({ workflows: [ship] });
   * const result = await te.run("ship", { gift: false });
   * console.log(result.steps.wrap?.status, result.output); // skipped plain box
   * ```
   *
   * @throws {DuplicateStepError} When the name is taken.
   * @throws {ConfigError} When an option is invalid.
   */
  step<N extends string, R>(
    name: N,
    config: StepConfig<Input, Prev, Steps, R> & {
      readonly when: NonNullable<StepConfig<Input, Prev, Steps, R>["when"]>;
    },
  ): Workflow<
    Name,
    EnqueueInput,
    Input,
    StepOutput<R> | undefined,
    AddOptionalStep<Steps, N, StepOutput<R>>,
    Early | CompletionValue<R>,
    Events
  >;
  /**
   * Adds a step with options (retry, timeout).
   *
   * @example Retries with backoff, a time limit per attempt
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * let calls = 0;
   * const pay = createWorkflow({ name: "pay", input: z.number() })
   *   .step("charge", {
   *     retry: { maxAttempts: 3, backoff: "exponential", initialDelayMs: 500 },
   *     timeoutMs: 10_000,
   *     handler: ({ input, attempt }) => {
   *       calls++;
   *       if (attempt < 2) throw new Error("gateway busy");
   *       return { charged: input };
   *     },
   *   });
   *
   * await using te = testEngine({ workflows: [pay] }); // retry delays pass on its virtual clock
   * console.log((await te.run("pay", 42)).output, calls); // { charged: 42 } 2
   * ```
   *
   * @throws {DuplicateStepError} When the name is taken.
   * @throws {ConfigError} When an option is invalid.
   */
  step<N extends string, R>(
    name: N,
    config: StepConfig<Input, Prev, Steps, R>,
  ): Workflow<
    Name,
    EnqueueInput,
    Input,
    StepOutput<R>,
    AddStep<Steps, N, StepOutput<R>>,
    Early | CompletionValue<R>,
    Events
  >;

  /**
   * Adds a durable sleep. The run is parked as `sleeping` without a lease, and any engine on the
   * same storage continues it once the time has passed; the wake time is fixed when the sleep is
   * first reached. A sleep passes `prev` through unchanged and adds nothing to `steps`.
   *
   * @example Wait three days, durably
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const trial = createWorkflow({ name: "trial", input: z.string() })
   *   .step("start", ({ input }) => input)
   *   .sleep("trial-period", "3d")
   *   .step("remind", ({ prev }) => `trial over for ${prev}`);
   *
   * await using te = testEngine({ workflows: [trial] }); // the sleep passes on its virtual clock
   * console.log((await te.run("trial", "ada")).output); // trial over for ada
   * ```
   *
   * @param name Unique within the workflow.
   * @param duration Milliseconds, or a string such as `"30s"`, `"5m"`, `"24h"`, `"7d"`.
   * @returns A new workflow.
   * @throws {DuplicateStepError} When the name is taken.
   * @throws {ConfigError} When the duration is invalid.
   */
  sleep<N extends string>(
    name: N,
    duration: Duration,
  ): Workflow<Name, EnqueueInput, Input, Prev, Steps, Early, Events>;

  /**
   * Parks the run as `waiting` until `engine.sendEvent(runId, name, payload)`. Events sent before
   * the run reaches the wait are kept and consumed oldest first. The payload becomes `prev` for
   * the next unit and `steps[name]`.
   *
   * @example Wait for an approval
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const publish = createWorkflow({ name: "publish", input: z.string() })
   *   .waitForEvent("approved", { schema: z.object({ by: z.string() }), timeout: "7d" })
   *   .step("post", ({ input, prev }) => `${input}, approved by ${prev.by}`);
   *
   * await using te = testEngine({ workflows: [publish] });
   * const parked = await te.run("publish", "post #1"); // status "waiting"
   * const done = await te.sendEvent(parked.runId, "approved", { by: "ada" });
   * console.log(done.output); // post #1, approved by ada
   * ```
   *
   * @param name Unique within the workflow; also the event's name.
   * @param options A schema for the payload and a timeout.
   * @returns A new workflow.
   * @throws {DuplicateStepError} When the name is taken.
   * @throws {ConfigError} When the schema or the timeout is invalid.
   */
  waitForEvent<N extends string, S extends StandardSchemaV1 | undefined = undefined>(
    name: N,
    options?: WaitForEventOptions<S>,
  ): Workflow<
    Name,
    EnqueueInput,
    Input,
    EventPayload<S>,
    AddStep<Steps, N, EventPayload<S>>,
    Early,
    Simplify<Events & { readonly [K in N]: EventInput<S> }>
  >;

  /**
   * Adds branches that run concurrently, each with its own retry policy and timeout. Each
   * branch's result is committed as soon as it finishes, so a recovered run re-runs only the
   * unfinished ones. The first branch to fail for good aborts its siblings' signals and fails the
   * run. The next unit's `prev` is the outputs by branch name. `complete()` is not allowed in a
   * branch (`ParallelCompleteError`).
   *
   * @example Fetch two things at once
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const profile = createWorkflow({ name: "profile", input: z.string() })
   *   .parallel({
   *     orders: ({ input }) => [`${input}-order-1`],
   *     tickets: { retry: { maxAttempts: 3 }, handler: () => 0 },
   *   })
   *   .step("summary", ({ prev }) => `${prev.orders.length} orders, ${prev.tickets} tickets`);
   *
   * await using te = testEngine({ workflows: [profile] });
   * console.log((await te.run("profile", "u1")).output); // 1 orders, 0 tickets
   * ```
   *
   * @param branches Branch handlers or configs by name; the names are unique within the workflow.
   * @returns A new workflow.
   * @throws {DuplicateStepError} When a name is taken.
   * @throws {ConfigError} When there is no branch or a branch is invalid.
   */
  parallel<R extends Record<string, unknown>>(
    branches: { readonly [K in keyof R]: ParallelBranch<Input, Prev, Steps, R[K]> },
  ): Workflow<
    Name,
    EnqueueInput,
    Input,
    ParallelOutputs<R>,
    Simplify<Steps & ParallelOutputs<R>>,
    Early,
    Events
  >;

  /**
   * Validates a value with the workflow's input schema, synchronously, as `enqueue` would.
   *
   * @example Check input before enqueuing
   * ```ts
   * import { createWorkflow, type StandardSchemaV1 } from "@reflow/core";
   *
   * const positive: StandardSchemaV1<number> = {
   *   "~standard": {
   *     version: 1,
   *     vendor: "example",
   *     validate: (value) =>
   *       typeof value === "number" && value > 0 ? { value } : { issues: [{ message: "Expected a positive number" }] },
   *   },
   * };
   * const charge = createWorkflow({ name: "charge", input: positive }).step("charge", ({ input }) => input);
   * console.log(charge.parseInput(5)); // 5
   * ```
   *
   * @param value The candidate input.
   * @returns The schema's output for it.
   * @throws {ValidationError} When the schema rejects it.
   * @throws {ConfigError} When the schema validates asynchronously (use `enqueue`, which awaits it).
   */
  parseInput(value: unknown): Input;

  /**
   * Sets the compensation handler: run once, after the run is marked failed (not on cancellation).
   * If it throws, the error goes to the engine's `onError` hook; the run stays failed.
   *
   * @example Undo a reservation when a later step fails
   * ```ts
   * import { createWorkflow } from "@reflow/core";
   * import { testEngine } from "@reflow/core/test";
   * import { z } from "zod";
   *
   * const released: string[] = [];
   * const book = createWorkflow({ name: "book", input: z.object({ seat: z.string() }) })
   *   .step("reserve", ({ input }) => input.seat)
   *   .step("pay", () => {
   *     throw new Error("card declined");
   *   })
   *   .onFailure(({ error, stepName, input }) => {
   *     released.push(`${input.seat} after ${stepName}: ${error.message}`);
   *   });
   *
   * await using te = testEngine({ workflows: [book] });
   * console.log((await te.run("book", { seat: "12A" })).status); // failed
   * await new Promise((resolve) => setTimeout(resolve, 0)); // onFailure runs after the failure is stored
   * console.log(released); // ["12A after pay: card declined"]
   * ```
   *
   * @param handler The compensation.
   * @returns A new workflow.
   */
  onFailure(handler: FailureHandler<Input>): Workflow<Name, EnqueueInput, Input, Prev, Steps, Early, Events>;
}

/** Any workflow, whatever its types. */
// deno-lint-ignore no-explicit-any
export type AnyWorkflow = Workflow<string, any, any, any, any, any, any>;

/** The output of a completed run of `W`. */
export type WorkflowOutput<W extends AnyWorkflow> = NonNullable<W["~types"]>["output"];
/** What handlers receive as `input` for `W`: its schema's output. */
export type WorkflowParsedInput<W extends AnyWorkflow> = NonNullable<W["~types"]>["input"];
/** What `enqueue` accepts for `W`. */
export type WorkflowInput<W extends AnyWorkflow> = NonNullable<W["~types"]>["enqueueInput"];
/** The outputs by unit name of `W`. */
export type WorkflowSteps<W extends AnyWorkflow> = NonNullable<W["~types"]>["steps"];
/** What `sendEvent` accepts for `W`, by event name. */
export type WorkflowEvents<W extends AnyWorkflow> = NonNullable<W["~types"]>["events"];
/** The event names of any workflow in the union `W`. */
export type EventName<W extends AnyWorkflow> = W extends AnyWorkflow ? keyof WorkflowEvents<W> & string
  : never;
/** What `sendEvent` accepts for event `N` of whichever workflow in `W` waits for it. */
export type EventPayloadInput<W extends AnyWorkflow, N extends string> = W extends AnyWorkflow
  ? N extends keyof WorkflowEvents<W> ? WorkflowEvents<W>[N] : never
  : never;

/** Options of {@linkcode createWorkflow}. */
export interface CreateWorkflowOptions<Name extends string, S extends StandardSchemaV1> {
  /** Unique within an engine; stored with each run. */
  readonly name: Name;
  /**
   * The definition's version, stored with each run (a non-empty string, e.g. `"2"` or a release
   * tag). Default: a fingerprint of the shape, which changes whenever a unit is added, removed,
   * renamed, reordered or changes kind. Declare one to name versions yourself; change it whenever
   * the shape changes.
   */
  readonly version?: string;
  /** Any Standard Schema v1 (zod, valibot, arktype, ...); validated on enqueue. */
  readonly input: S;
}

const CREATE_WORKFLOW_OPTION_KEYS: OptionKeys<CreateWorkflowOptions<string, StandardSchemaV1>> = {
  name: true,
  version: true,
  input: true,
};

/**
 * Creates a workflow: a name, an input schema, and (through `.step()`) a typed chain of steps.
 *
 * @example A two-step signup
 * ```ts
 * import { createWorkflow, type StandardSchemaV1 } from "@reflow/core";
 *
 * const signupInput: StandardSchemaV1<{ email: string }> = {
 *   "~standard": {
 *     version: 1,
 *     vendor: "example",
 *     validate: (value) =>
 *       typeof (value as { email?: unknown })?.email === "string"
 *         ? { value: value as { email: string } }
 *         : { issues: [{ message: "Expected an email", path: ["email"] }] },
 *   },
 * };
 *
 * const signup = createWorkflow({ name: "signup", input: signupInput })
 *   .step("create-user", ({ input }) => ({ userId: `u-${input.email}` }))
 *   .step("send-welcome", {
 *     retry: { maxAttempts: 5, backoff: "exponential", initialDelayMs: 500 },
 *     handler: ({ prev }) => ({ sentTo: prev.userId }),
 *   });
 * ```
 *
 * @param options The name, the version (optional) and the input schema.
 * @returns An empty workflow to add steps to.
 * @throws {ConfigError} When the name or a given version is empty or not well-formed Unicode without
 *   NUL (`MalformedNameError`), an option is unknown, or the schema is not a Standard Schema.
 */
export function createWorkflow<const Name extends string, S extends StandardSchemaV1>(
  options: CreateWorkflowOptions<Name, S>,
): Workflow<Name, InferSchemaInput<S>, InferSchemaOutput<S>, undefined, NoSteps, never, NoSteps> {
  if (options === undefined) {
    throw new ConfigError("Invalid workflow options: expected an object with name and input", {
      field: "options",
    });
  }
  checkOptionKeys(options, CREATE_WORKFLOW_OPTION_KEYS, undefined, "workflow options");
  const { input } = options;
  const name = checkName(options.name, "name", " for a workflow");
  const version = options.version === undefined
    ? undefined
    : checkName(options.version, "version", ` for workflow "${name}"`);
  if (typeof (input as StandardSchemaV1 | undefined)?.["~standard"]?.validate !== "function") {
    throw new ConfigError(`Invalid input schema for workflow "${name}": expected a Standard Schema v1`, {
      field: "input",
    });
  }
  return new WorkflowDefinition(name, version ?? null, input, [], null) as unknown as Workflow<
    Name,
    InferSchemaInput<S>,
    InferSchemaOutput<S>,
    undefined,
    NoSteps,
    never,
    NoSteps
  >;
}

class WorkflowDefinition implements AnyWorkflow {
  readonly name: string;
  readonly version: string;
  readonly shape: string;
  readonly #declaredVersion: string | null;
  readonly inputSchema: StandardSchemaV1;
  readonly units: readonly WorkflowUnit[];
  readonly failureHandler: FailureHandler<unknown> | null;

  constructor(
    name: string,
    declaredVersion: string | null,
    inputSchema: StandardSchemaV1,
    units: readonly WorkflowUnit[],
    failureHandler: FailureHandler<unknown> | null,
  ) {
    this.name = name;
    this.#declaredVersion = declaredVersion;
    this.shape = shapeText(units);
    this.version = declaredVersion ?? fingerprint(this.shape);
    this.inputSchema = inputSchema;
    this.units = Object.freeze(units);
    this.failureHandler = failureHandler;
    Object.freeze(this);
  }

  step(name: string, handlerOrConfig: unknown): AnyWorkflow {
    this.#checkNewName(name);
    return this.#with(this.#stepUnit(name, handlerOrConfig, `step "${name}" of workflow "${this.name}"`));
  }

  sleep(name: string, duration: Duration): AnyWorkflow {
    this.#checkNewName(name);
    const where = `sleep "${name}" of workflow "${this.name}"`;
    return this.#with(
      Object.freeze({ kind: "sleep", name, durationMs: durationMs(duration, "duration", where) }),
    );
  }

  waitForEvent(name: string, options?: WaitForEventOptions<StandardSchemaV1 | undefined>): AnyWorkflow {
    this.#checkNewName(name);
    const where = `wait "${name}" of workflow "${this.name}"`;
    const checked = checkOptionKeys(options, WAIT_FOR_EVENT_OPTION_KEYS, undefined, where);
    const { schema, timeout, timeoutMs: ms } = checked ?? {};
    if (schema !== undefined && typeof schema?.["~standard"]?.validate !== "function") {
      throw new ConfigError(`Invalid schema for ${where}: expected a Standard Schema v1`, {
        field: "schema",
      });
    }
    if (timeout !== undefined && ms !== undefined) {
      throw new ConfigError(`Invalid options for ${where}: give timeout or timeoutMs, not both`, {
        field: "timeoutMs",
      });
    }
    const timeoutMs = timeout !== undefined
      ? durationMs(timeout, "timeout", where)
      : ms !== undefined
      ? Math.round(checkMs(ms, "timeoutMs", where, false))
      : null;
    return this.#with(Object.freeze({ kind: "wait", name, schema: schema ?? null, timeoutMs }));
  }

  parallel(branches: Record<string, unknown>): AnyWorkflow {
    const names = typeof branches === "object" && branches !== null ? Object.keys(branches) : [];
    if (names.length === 0) {
      throw new ConfigError(
        `Invalid parallel branches in workflow "${this.name}": expected an object with at least one branch`,
        { field: "branches" },
      );
    }
    const units = names.map((name) => {
      this.#checkNewName(name);
      const where = `branch "${name}" of workflow "${this.name}"`;
      const unit = this.#stepUnit(name, branches[name], where);
      if (unit.when !== null) {
        throw new ConfigError(`Invalid ${where}: parallel branches take no when`, { field: "when" });
      }
      return unit;
    });
    return this.#with(
      Object.freeze({ kind: "parallel", name: names.join("+"), branches: Object.freeze(units) }),
    );
  }

  #with(unit: WorkflowUnit): AnyWorkflow {
    return new WorkflowDefinition(
      this.name,
      this.#declaredVersion,
      this.inputSchema,
      [...this.units, unit],
      this.failureHandler,
    );
  }

  #stepUnit(name: string, handlerOrConfig: unknown, where: string): StepUnit {
    const config =
      (typeof handlerOrConfig === "function" ? { handler: handlerOrConfig } : handlerOrConfig) as StepConfig<
        unknown,
        unknown,
        unknown,
        unknown
      >;
    if (typeof config !== "object" || config === null || typeof config.handler !== "function") {
      throw new ConfigError(`Invalid ${where}: expected a handler function or { handler }`, {
        field: "handler",
      });
    }
    checkOptionKeys(config, STEP_CONFIG_KEYS, undefined, where);
    const { when } = config;
    if (when !== undefined && typeof when !== "function") {
      throw new ConfigError(`Invalid when for ${where}: expected a function`, { field: "when" });
    }
    const retry = resolveRetryPolicy(config.retry, where);
    // reflow-ts puts the attempt timeout in the retry policy too; the step's own wins.
    const retryTimeoutMs = config.retry?.timeoutMs === undefined
      ? null
      : checkMs(config.retry.timeoutMs, "retry.timeoutMs", where, true);
    const timeoutMs = config.timeoutMs === undefined
      ? retryTimeoutMs
      : checkMs(config.timeoutMs, "timeoutMs", where, true);
    return Object.freeze({
      kind: "step",
      name,
      handler: config.handler as StepUnit["handler"],
      retry,
      timeoutMs,
      when: (when as StepUnit["when"]) ?? null,
    });
  }

  parseInput(value: unknown): unknown {
    const result = validateWithSchema(this.inputSchema, value, `input for workflow "${this.name}"`);
    if (isPromiseLike(result)) {
      // The rejection of an async check must not go unhandled; the caller gets a clear error instead.
      result.then(undefined, () => {});
      throw new ConfigError(
        `Cannot parse input of workflow "${this.name}" synchronously: its schema validates asynchronously`,
        { field: "input" },
      );
    }
    return result;
  }

  onFailure(handler: FailureHandler<unknown>): AnyWorkflow {
    if (typeof handler !== "function") {
      throw new ConfigError(`Invalid onFailure handler for workflow "${this.name}": expected a function`, {
        field: "onFailure",
      });
    }
    return new WorkflowDefinition(this.name, this.#declaredVersion, this.inputSchema, this.units, handler);
  }

  #checkNewName(name: string): void {
    checkName(name, "name", ` in workflow "${this.name}"`);
    const taken = this.units.some((unit) =>
      unit.kind === "parallel" ? unit.branches.some((branch) => branch.name === name) : unit.name === name
    );
    if (taken) throw new DuplicateStepError(this.name, name);
  }
}

/**
 * Checks a time limit given in ms: finite, and positive for an attempt's timeout (which must give
 * the attempt a chance) or 0 or more for a wait (which may time out at once).
 */
function checkMs(value: unknown, field: string, where: string, positive: boolean): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (positive && value === 0)) {
    const expected = positive ? "a positive number of ms" : "a number of ms, 0 or more";
    throw new ConfigError(`Invalid ${field} ${String(value)} for ${where}: expected ${expected}`, { field });
  }
  return value;
}
