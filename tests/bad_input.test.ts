// Bad input, as one table: each case is refused with its typed error (its `code`, and the field that
// names the offending value: `field`, `path`, `issues`, `workflowName`, `kind`), or with the documented
// `false`, and leaves every run already stored in the database exactly as it was (runs, step results
// and events, compared row by row before and after; on MemoryStorage what its methods read), on every
// storage of the shared table.
//
// Cases tested elsewhere are not repeated here:
// - the codec's rejection of every kind of value (NaN, ±Infinity, functions, symbols, Map/Set, typed
//   arrays, depth > 1,000, ...) with its path: tests/codec.test.ts ("encodeValue");
// - a NaN output failing its run without retries: tests/engine.test.ts;
// - negative, NaN and malformed sleep durations, duplicate step/branch/sleep/wait names:
//   tests/primitives.test.ts ("primitives in the builder");
// - invalid retry policies, step timeouts of 0 and Infinity, NaN or negative engine options, a
//   poll interval of 0 or NaN, duplicate step and workflow names, an empty idempotency key:
//   tests/engine.test.ts;
// - an event payload its schema rejects: tests/sqlite_processes.test.ts;
// - a file that is not a database, and a newer schema, at the storage level: tests/sql_storage.test.ts;
// - every malformed cron field and recurrence shape: tests/cron.test.ts and tests/schedules.test.ts.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ConfigError,
  createEngine,
  createWorkflow,
  type Engine,
  MalformedNameError,
  MAX_VALUE_BYTES,
  type ReflowError,
  SerializationError,
  StorageError,
  ValidationError,
  WorkflowNotFoundError,
} from "../mod.ts";
import { MemoryStorage, testEngine } from "../testing.ts";
import { schema } from "./support/fixtures.ts";
import { runtimeName } from "./support/runtime.ts";
import { type DriverModule, type SqliteSubject, sqliteSubjects } from "./support/sqlite_subjects.ts";
import { storages } from "./support/storages.ts";
import type { StorageAdapter } from "../src/storage/adapter.ts";

const numbered = schema<{ n: number }>((value) =>
  typeof (value as { n?: unknown })?.n === "number" ? undefined : "n must be a number"
);
const approval = schema<{ by: string }>((value) =>
  typeof (value as { by?: unknown })?.by === "string" ? undefined : "by must be a string"
);
const order = createWorkflow({ name: "order", input: numbered })
  .step("a", ({ input }) => input.n + 1)
  .waitForEvent("approve", { schema: approval })
  .step("b", ({ prev }) => prev.by);

class Point {
  x = 1;
}
/** What the `emit` workflow's step returns for each `kind` of input. */
const outputs: Record<string, () => unknown> = {
  fine: () => ({ ok: true }),
  bigint: () => ({ total: 10n }),
  cycle: () => {
    const node: Record<string, unknown> = { name: "loop" };
    node.next = { back: node };
    return node;
  },
  instance: () => ({ at: [new Point()] }),
  oversized: () => ({ blob: "x".repeat(MAX_VALUE_BYTES) }),
};
const emit = createWorkflow({ name: "emit", input: schema<{ kind: string }>() })
  .step("out", ({ input }) => outputs[input.kind]!());
const WORKFLOWS = [order, emit];
// Workflows the `returns` cases run on an engine of their own (so no stored run is touched).
const prototypeSteps = createWorkflow({ name: "prototype-steps", input: numbered })
  .step("__proto__", () => ({ isAdmin: true }))
  .step("constructor", () => 2)
  .step("prototype", ({ steps }) => ({
    keys: Object.keys(steps),
    plain: Object.getPrototypeOf(steps) === Object.prototype,
    isAdmin: (steps as { isAdmin?: unknown }).isAdmin,
    proto: Object.getOwnPropertyDescriptor(steps, "__proto__")?.value,
  }))
  .step("out", ({ prev }) => prev);
const prototypeBranches = createWorkflow({ name: "prototype-branches", input: numbered })
  .parallel({ ["__proto__"]: () => ({ isAdmin: true }), constructor: () => 2, prototype: () => 3 })
  .step("out", ({ prev }) => ({
    keys: Object.keys(prev),
    plain: Object.getPrototypeOf(prev) === Object.prototype,
    values: Object.values(prev),
  }));
const slowStep = createWorkflow({ name: "slow-step", input: numbered })
  .step("slow", {
    retry: { maxAttempts: 2, initialDelayMs: 0, timeoutMs: 20 },
    handler: ({ signal }) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
  });
const shortWait = createWorkflow({ name: "short-wait", input: numbered })
  .waitForEvent("never", { timeoutMs: 50 });

/**
 * Runs one run of `workflow` to its end on its own engine over `storage`, on a clock that moves
 * `advanceMs` between rounds; returns its outcome and whether `Object.prototype` was polluted.
 */
async function runOne(
  storage: StorageAdapter,
  workflow: typeof prototypeSteps | typeof prototypeBranches | typeof slowStep | typeof shortWait,
  input: { n: number },
  advanceMs = 0,
): Promise<Record<string, unknown>> {
  let clock = Date.now();
  const engine = createEngine({ storage, workflows: [workflow], now: () => clock });
  try {
    const { runId } = await engine.enqueue(workflow.name, input);
    for (let round = 0; round < 5; round++) {
      await engine.tick();
      const details = await engine.getRunStatus(runId);
      const status = details?.run.status;
      if (status === "completed") {
        return { status, output: details!.run.output, polluted: "isAdmin" in {} };
      }
      if (status === "failed") {
        const attempts = details!.steps.reduce((sum, step) => sum + step.attempts, 0);
        return { status, error: details!.run.error?.code, attempts, polluted: "isAdmin" in {} };
      }
      clock += advanceMs;
    }
    return { status: "stuck" };
  } finally {
    await engine.stop();
  }
}

/** The key of a schedule stored before the cases run (yearly from then: never due during them). */
const STORED_SCHEDULE = "yearly-order";
type Flows = (typeof WORKFLOWS)[number];

/** What a case runs against: an engine on the shared database, its ids of runs, and its storage. */
interface Context {
  readonly engine: Engine<Flows>;
  /** An engine of `emit` alone, so that its ticks run no other stored run. */
  readonly emitter: Engine<typeof emit>;
  readonly store: StorageAdapter;
  readonly waitingRunId: string;
  readonly finishedRunId: string;
  /** SQLite only: the driver and a copy of the shared file, for cases that damage a file. */
  readonly file?: {
    readonly driver: DriverModule;
    copy(): Promise<string>;
  };
}

/** How a case must end. */
type Expect =
  | {
    readonly throws: abstract new (...args: never[]) => ReflowError;
    readonly code: string;
    readonly check: (error: never) => void;
  }
  | { readonly returns: unknown }
  | { readonly failsRun: { readonly path: string } };

interface Case {
  readonly name: string;
  /** Whether the case damages a SQLite file (it runs where there is one). */
  readonly file?: true;
  readonly act: (cx: Context) => unknown;
  readonly expect: Expect;
}

// deno-lint-ignore no-explicit-any
const loose = (value: unknown): any => value;
const at = (path: string) => ({
  throws: SerializationError,
  code: "SERIALIZATION",
  check: (e: SerializationError) => assert.equal(e.path, path),
});
const config = (field: string) => ({
  throws: ConfigError,
  code: "CONFIG",
  check: (e: ConfigError) => assert.equal(e.field, field),
});
/** A `MalformedNameError` on `field`, naming the code unit at `index`. */
const malformed = (field: string, index: number, codeUnit: string) => ({
  throws: MalformedNameError,
  code: "CONFIG",
  check: (e: MalformedNameError) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual([e.field, e.index, e.codeUnit], [field, index, codeUnit]);
    assert.ok(e.message.includes(`code unit ${codeUnit} at index ${index}`), e.message);
  },
});
/** "order:" and the first half of an emoji: a lone high surrogate at index 6. */
const loneHigh = (emoji: string) => "order:" + emoji.slice(0, 1);
const storage = (kind: string) => ({
  throws: StorageError,
  code: "STORAGE",
  check: (e: StorageError) => assert.equal(e.kind, kind),
});

const CASES: Case[] = [
  {
    name: "an input its schema rejects",
    act: ({ engine }) => engine.enqueue("order", loose({ n: "seven" })),
    expect: {
      throws: ValidationError,
      code: "VALIDATION",
      check: (e: ValidationError) =>
        assert.deepEqual(e.issues, [{ message: "n must be a number", path: ["value"] }]),
    },
  },
  {
    name: "an unknown workflow",
    act: ({ engine }) => engine.enqueue(loose("nope"), { n: 1 }),
    expect: {
      throws: WorkflowNotFoundError,
      code: "WORKFLOW_NOT_FOUND",
      check: (e: WorkflowNotFoundError) => assert.equal(e.workflowName, "nope"),
    },
  },
  {
    name: "a workflow version that is not registered",
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, { version: "no-such-version" }),
    expect: config("version"),
  },
  {
    name: "an unknown checkRuns() option",
    act: ({ engine }) => engine.checkRuns(loose({ pagesize: 10 })),
    expect: config("pagesize"),
  },
  {
    name: "an unknown enqueue option next to version",
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, loose({ version: "x", verison: "y" })),
    expect: config("verison"),
  },
  {
    name: "a checkRuns() page size out of range",
    act: ({ engine }) => engine.checkRuns({ pageSize: 0 }),
    expect: config("pageSize"),
  },
  {
    name: "an input of more than MAX_VALUE_BYTES encoded",
    act: ({ engine }) => engine.enqueue("order", loose({ n: 1, pad: "x".repeat(MAX_VALUE_BYTES) })),
    expect: at("$"),
  },
  {
    name: "an input with a bigint",
    act: ({ engine }) => engine.enqueue("order", loose({ n: 1, id: 7n })),
    expect: at("$.id"),
  },
  {
    name: "an event payload of more than MAX_VALUE_BYTES encoded",
    act: ({ engine, waitingRunId }) =>
      engine.sendEvent(waitingRunId, "approve", { by: "x".repeat(MAX_VALUE_BYTES) }),
    expect: at("$"),
  },
  {
    name: "an event name the run's workflow does not wait for",
    act: ({ engine, waitingRunId }) => engine.sendEvent(waitingRunId, loose("approved"), { by: "ada" }),
    expect: config("name"),
  },
  {
    name: "an event for an unknown run",
    act: ({ engine }) => engine.sendEvent("no-such-run", "approve", { by: "ada" }),
    expect: { returns: false },
  },
  {
    name: "an event for a finished run",
    act: ({ engine, finishedRunId }) => engine.sendEvent(finishedRunId, "approve", { by: "ada" }),
    expect: { returns: false },
  },
  {
    name: "a cancel of an unknown run",
    act: ({ engine }) => engine.cancel("no-such-run"),
    expect: { returns: false },
  },
  { name: "an output with a bigint", act: () => "bigint", expect: { failsRun: { path: "$.total" } } },
  { name: "a cyclic output", act: () => "cycle", expect: { failsRun: { path: "$.next.back" } } },
  {
    name: "an output holding a class instance",
    act: () => "instance",
    expect: { failsRun: { path: "$.at[0]" } },
  },
  {
    name: "an output of more than MAX_VALUE_BYTES encoded",
    act: () => "oversized",
    expect: { failsRun: { path: "$" } },
  },
  {
    name: "a negative step timeout",
    act: () => order.step("c", { handler: () => 1, timeoutMs: -1 }),
    expect: config("timeoutMs"),
  },
  {
    name: "a NaN step timeout",
    act: () => order.step("c", { handler: () => 1, timeoutMs: Number.NaN }),
    expect: config("timeoutMs"),
  },
  {
    name: "a negative wait timeout",
    act: () => order.waitForEvent("later", { timeout: -1 }),
    expect: config("timeout"),
  },
  {
    name: "a NaN wait timeout",
    act: () => order.waitForEvent("later", { timeout: Number.NaN }),
    expect: config("timeout"),
  },
  {
    name: "a cron field out of range",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { cron: "61 * * * *" }),
    expect: config("cron.minute"),
  },
  {
    name: "a cron expression that never fires (30 February)",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { cron: "0 0 30 2 *" }),
    expect: config("cron.dayOfMonth"),
  },
  {
    name: "a cron expression of four fields, re-registering a stored schedule's key",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { cron: "* * * *" }, { key: STORED_SCHEDULE }),
    expect: config("cron"),
  },
  {
    name: "a negative schedule interval",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, -5),
    expect: config("recurrence"),
  },
  {
    name: "a NaN schedule interval",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { every: Number.NaN }),
    expect: config("recurrence"),
  },
  {
    name: "a recurrence with both every and cron",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, loose({ every: 1000, cron: "* * * * *" })),
    expect: config("recurrence"),
  },
  {
    name: "a schedule input its schema rejects",
    act: ({ engine }) => engine.schedule("order", loose({ n: "daily" }), { every: "1h" }),
    expect: {
      throws: ValidationError,
      code: "VALIDATION",
      check: (e: ValidationError) => assert.equal(e.issues[0]?.message, "n must be a number"),
    },
  },
  {
    name: "a negative poll interval",
    act: ({ engine }) => engine.start(-1),
    expect: config("pollIntervalMs"),
  },
  {
    name: "a NaN heartbeat interval",
    act: ({ store }) => createEngine({ storage: store, workflows: [], heartbeatIntervalMs: Number.NaN }),
    expect: config("heartbeatIntervalMs"),
  },
  // Names and keys: well-formed Unicode without NUL, or refused (SQLite would store a lone
  // surrogate as U+FFFD, so these two keys would collide; node:sqlite cuts text at a NUL).
  {
    name: "an idempotency key ending in a lone surrogate (from 😀)",
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, { idempotencyKey: loneHigh("😀") }),
    expect: malformed("idempotencyKey", 6, "0xD83D"),
  },
  {
    name: "a second idempotency key differing only in its lone surrogate (from 😎)",
    act: async ({ engine }) => {
      await assert.rejects(engine.enqueue("order", { n: 1 }, { idempotencyKey: loneHigh("😀") }));
      return await engine.enqueue("order", { n: 2 }, { idempotencyKey: loneHigh("😎") });
    },
    expect: malformed("idempotencyKey", 6, "0xD83D"),
  },
  {
    name: "an idempotency key with NUL",
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, { idempotencyKey: "order\u00001" }),
    expect: malformed("idempotencyKey", 5, "0x0000"),
  },
  {
    name: "a step name ending in a lone surrogate",
    act: () => order.step("charge\uD83D", () => 1),
    expect: malformed("name", 6, "0xD83D"),
  },
  {
    name: "a step name with a lone low surrogate",
    act: () => order.step("\uDE00x", () => 1),
    expect: malformed("name", 0, "0xDE00"),
  },
  {
    name: "a workflow name with NUL",
    act: () => createWorkflow({ name: "order\u0000v2", input: numbered }),
    expect: malformed("name", 5, "0x0000"),
  },
  {
    name: "a wait name with NUL",
    act: () => order.waitForEvent("shipped\u0000"),
    expect: malformed("name", 7, "0x0000"),
  },
  {
    name: "a parallel branch name with a lone surrogate",
    act: () => order.parallel({ ["fan\uD800"]: () => 1 }),
    expect: malformed("name", 3, "0xD800"),
  },
  {
    name: "a schedule key with NUL",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { every: "1h" }, { key: "nightly\u0000" }),
    expect: malformed("key", 7, "0x0000"),
  },
  {
    name: "unschedule of a key with a lone surrogate",
    act: ({ engine }) => engine.unschedule("yearly\uDBFF"),
    expect: malformed("key", 6, "0xDBFF"),
  },
  {
    name: "unschedule(5)",
    act: ({ engine }) => engine.unschedule(loose(5)),
    expect: config("key"),
  },
  {
    name: "a listRuns workflow filter with a lone surrogate",
    act: ({ engine }) => engine.listRuns({ workflow: "order\uD83D" }),
    expect: malformed("workflow", 5, "0xD83D"),
  },
  {
    name: "an event name with a lone surrogate",
    act: ({ engine, waitingRunId }) => engine.sendEvent(waitingRunId, loose("approve\uD83D"), { by: "ada" }),
    expect: config("name"),
  },
  {
    name: "a well-formed emoji key beside its lone-surrogate half: stored exactly, apart",
    act: async ({ engine }) => {
      const a = await engine.enqueue("order", { n: 1 }, { idempotencyKey: "order:😀" });
      const b = await engine.enqueue("order", { n: 2 }, { idempotencyKey: "order:😎" });
      const again = await engine.enqueue("order", { n: 1 }, { idempotencyKey: "order:😀" });
      const keys = await Promise.all(
        [a, b].map(async ({ runId }) => (await engine.getRunStatus(runId))?.run),
      );
      return {
        distinct: a.runId !== b.runId,
        again: again.runId === a.runId && !again.created,
        keys: keys.map((run) => run?.idempotencyKey),
      };
    },
    expect: { returns: { distinct: true, again: true, keys: ["order:😀", "order:😎"] } },
  },
  // Objects keyed by user-chosen names: own properties, never the prototype.
  {
    name: "steps named __proto__, constructor and prototype",
    act: ({ store }) => runOne(store, prototypeSteps, { n: 1 }),
    expect: {
      returns: {
        status: "completed",
        output: {
          keys: ["__proto__", "constructor"],
          plain: true,
          isAdmin: undefined,
          proto: { isAdmin: true },
        },
        polluted: false,
      },
    },
  },
  {
    name: "parallel branches named __proto__, constructor and prototype",
    act: ({ store }) => runOne(store, prototypeBranches, { n: 1 }),
    expect: {
      returns: {
        status: "completed",
        output: {
          keys: ["__proto__", "constructor", "prototype"],
          plain: true,
          values: [{ isAdmin: true }, 2, 3],
        },
        polluted: false,
      },
    },
  },
  // Unknown keys and non-objects where options belong.
  {
    name: "a hook typo (onRunStartt)",
    act: ({ store }) =>
      createEngine({ storage: store, workflows: WORKFLOWS, hooks: loose({ onRunStartt: () => {} }) }),
    expect: config("hooks.onRunStartt"),
  },
  {
    name: "hooks: 5",
    act: ({ store }) => createEngine({ storage: store, workflows: WORKFLOWS, hooks: loose(5) }),
    expect: config("hooks"),
  },
  {
    name: "an unknown engine option",
    act: ({ store }) => createEngine(loose({ storage: store, workflows: WORKFLOWS, concurency: 4 })),
    expect: config("concurency"),
  },
  {
    name: "an unknown retention option",
    act: ({ store }) =>
      createEngine({
        storage: store,
        workflows: WORKFLOWS,
        retention: loose({ olderThan: "30d", every: "1h" }),
      }),
    expect: config("retention.every"),
  },
  {
    name: 'enqueue(name, input, "key")',
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, loose("key")),
    expect: config("options"),
  },
  {
    name: "an unknown enqueue option",
    act: ({ engine }) => engine.enqueue("order", { n: 1 }, loose({ idempotency: "k" })),
    expect: config("idempotency"),
  },
  {
    name: "an unknown schedule option",
    act: ({ engine }) => engine.schedule("order", { n: 1 }, { every: "1h" }, loose({ name: "k" })),
    expect: config("name"),
  },
  {
    name: "an unknown stream option",
    act: ({ engine }) => engine.stream(loose({ buffer: 10 })),
    expect: config("buffer"),
  },
  {
    name: "an unknown purge option",
    act: ({ engine }) => engine.purge(loose({ olderThan: 0, statuses: ["failed"] })),
    expect: config("statuses"),
  },
  {
    name: "an unknown listRuns option",
    act: ({ engine }) => engine.listRuns(loose({ state: "failed" })),
    expect: config("state"),
  },
  {
    name: "an unknown step config key",
    act: () => order.step("c", loose({ handler: () => 1, retries: 3 })),
    expect: config("retries"),
  },
  {
    name: "an unknown branch config key",
    act: () => order.parallel({ c: loose({ handler: () => 1, timeout: 5 }) }),
    expect: config("timeout"),
  },
  {
    name: "an unknown retry key",
    act: () => order.step("c", { handler: () => 1, retry: loose({ maxAttempts: 2, timeoutMz: 5 }) }),
    expect: config("retry.timeoutMz"),
  },
  {
    name: "retry: 5",
    act: () => order.step("c", { handler: () => 1, retry: loose(5) }),
    expect: config("retry"),
  },
  {
    name: "an unknown waitForEvent option",
    act: () => order.waitForEvent("later", loose({ timeoutMz: 50 })),
    expect: config("timeoutMz"),
  },
  {
    name: "waitForEvent with both timeout and timeoutMs",
    act: () => order.waitForEvent("later", { timeout: "1s", timeoutMs: 1000 }),
    expect: config("timeoutMs"),
  },
  {
    name: "a waitForEvent timeoutMs that is not a number",
    act: () => order.waitForEvent("later", { timeoutMs: loose("50ms") }),
    expect: config("timeoutMs"),
  },
  {
    name: "a NaN retry.timeoutMs",
    act: () => order.step("c", { handler: () => 1, retry: { timeoutMs: Number.NaN } }),
    expect: config("retry.timeoutMs"),
  },
  {
    name: "an unknown workflow option",
    act: () => createWorkflow(loose({ name: "w", input: numbered, inputs: numbered })),
    expect: config("inputs"),
  },
  {
    name: "an unknown MemoryStorage option",
    act: () => new MemoryStorage(loose({ clock: () => 0 })),
    expect: config("clock"),
  },
  {
    name: "an unknown testEngine option",
    act: () => testEngine(loose({ workflows: WORKFLOWS, start: 0 })),
    expect: config("start"),
  },
  {
    name: "an unknown SQLiteStorage option, opening (or creating) no file",
    file: true,
    act: ({ file }) => {
      const path = join(mkdtempSync(join(tmpdir(), "reflow-options-")), "never.sqlite");
      try {
        return file!.driver.open(path, loose({ journalMode: "WAL" }));
      } finally {
        assert.equal(existsSync(path), false, `${path} was created`);
      }
    },
    expect: config("journalMode"),
  },
  // The reflow-ts spellings.
  {
    name: "retry: { timeoutMs } limits each attempt",
    act: ({ store }) => runOne(store, slowStep, { n: 1 }),
    expect: { returns: { status: "failed", error: "STEP_TIMEOUT", attempts: 2, polluted: false } },
  },
  {
    name: "waitForEvent(name, { timeoutMs: 50 }) times out",
    act: ({ store }) => runOne(store, shortWait, { n: 1 }, 51),
    expect: { returns: { status: "failed", error: "WAIT_TIMEOUT", attempts: 1, polluted: false } },
  },
  {
    name: "a damaged database file, left as it is",
    file: true,
    act: async ({ file }) => {
      const { copy, driver } = file!;
      const path = await copy();
      const bytes = readFileSync(path);
      // Page 1 (the schema) stays readable; every page of the tables after it is garbage.
      bytes.fill(0xa5, 4096);
      writeFileSync(path, bytes);
      return await unchangedFile(path, () => enqueueOn(driver, path));
    },
    expect: storage("corrupt"),
  },
  {
    name: "a foreign file that is not SQLite, left as it is",
    file: true,
    act: async ({ file }) => {
      const { copy, driver } = file!;
      const path = await copy();
      writeFileSync(path, "%PDF-1.7\n".repeat(2000));
      return await unchangedFile(path, () => enqueueOn(driver, path));
    },
    expect: storage("corrupt"),
  },
  {
    name: "a database of a newer schema version, left as it is",
    file: true,
    act: async ({ file }) => {
      const { copy, driver } = file!;
      const path = await copy();
      const handle = await driver.openHandle(path);
      handle.prepare("UPDATE reflow_meta SET value = value + 1").run();
      handle.close();
      return await unchangedFile(path, () => enqueueOn(driver, path));
    },
    expect: storage("schema"),
  },
  {
    name: "a database whose reflow_meta holds a non-numeric version, left as it is",
    file: true,
    act: async ({ file }) => {
      const { copy, driver } = file!;
      const path = await copy();
      const handle = await driver.openHandle(path);
      handle.prepare("UPDATE reflow_meta SET value = 'three'").run();
      handle.close();
      return await unchangedFile(path, () => enqueueOn(driver, path));
    },
    expect: storage("schema"),
  },
  {
    name: "another program's file with its own reflow_runs table, left as it is (journal mode too)",
    file: true,
    act: async ({ file }) => {
      const { copy, driver } = file!;
      const path = `${await copy()}.foreign`;
      const handle = await driver.openHandle(path);
      handle.prepare("CREATE TABLE reflow_runs (id INTEGER PRIMARY KEY, note TEXT)").run();
      handle.close();
      return await unchangedFile(path, () => enqueueOn(driver, path));
    },
    expect: storage("schema"),
  },
];

/** Enqueues on a new engine over `path`, closing its storage whatever happens. */
async function enqueueOn(driver: DriverModule, path: string): Promise<unknown> {
  const storage = driver.open(path);
  try {
    return await createEngine({ storage, workflows: WORKFLOWS }).enqueue("order", { n: 1 });
  } finally {
    await storage.close();
  }
}

/** Runs `act`, then asserts that the file's bytes are what they were; `act`'s outcome passes through. */
async function unchangedFile(path: string, act: () => Promise<unknown>): Promise<unknown> {
  const bytes = readFileSync(path);
  try {
    return await act();
  } finally {
    assert.ok(readFileSync(path).equals(bytes), `${path} changed`);
  }
}

type Read = (sql: string) => Promise<Record<string, unknown>[]>;

/** What is stored, compared before and after each case. */
interface Stored {
  readonly runs: unknown[];
  readonly rows: unknown[];
}

/** Every stored row of the runs in `runIds` (all runs if omitted): runs, step results, events. */
async function snapshot(read: Read, runIds?: ReadonlySet<string>): Promise<Stored> {
  const keep = (row: Record<string, unknown>) =>
    runIds === undefined || runIds.has(String(row.id ?? row.run_id));
  return {
    runs: (await read("SELECT * FROM reflow_runs ORDER BY seq")).filter(keep),
    rows: [
      ...(await read("SELECT * FROM reflow_steps ORDER BY seq")).filter(keep),
      ...(await read("SELECT * FROM reflow_events ORDER BY seq")).filter(keep),
      ...(await read("SELECT * FROM reflow_schedules ORDER BY key")),
    ],
  };
}

/** MemoryStorage has no rows to read: what its own methods return (events have no reader). */
async function storedInMemory(storage: StorageAdapter, runIds?: ReadonlySet<string>): Promise<Stored> {
  const runs = (await storage.listRuns({ limit: 1_000_000 }))
    .filter((run) => runIds === undefined || runIds.has(run.id))
    .sort((a, b) => (a.id < b.id ? -1 : 1)); // runs of one millisecond have no other order
  const steps = await Promise.all(runs.map((run) => storage.getStepResults(run.id)));
  return { runs, rows: [...steps.flat(), ...await storage.listSchedules()] };
}

/** The SQLite subject behind an entry, for the cases that damage a file. */
function sqliteSubjectOf(name: string): SqliteSubject | undefined {
  return sqliteSubjects.find((subject) => subject.name === name);
}

for (const entry of storages) {
  describe(`bad input on ${entry.name} on ${runtimeName}`, { skip: entry.skip }, () => {
    let cx: Context;
    let stored: (runIds?: ReadonlySet<string>) => Promise<Stored>;
    let closeAll: () => Promise<void>;
    const subject = entry.kind === "sqlite" ? sqliteSubjectOf(entry.name) : undefined;

    before(async () => {
      const database = await entry.database();
      const storage = await database.open();
      const read = database.read;
      stored = read === undefined
        ? (runIds) => storedInMemory(storage, runIds)
        : (runIds) => snapshot(read, runIds);
      const engine = createEngine({ storage, workflows: WORKFLOWS });
      // Already stored: a run parked at its wait, a finished run, and a run not claimed yet.
      const waitingRunId = (await engine.enqueue("order", { n: 1 })).runId;
      const finishedRunId = (await engine.enqueue("emit", { kind: "fine" })).runId;
      await engine.tick();
      await engine.enqueue("order", { n: 2 }, { idempotencyKey: "second" });
      await engine.schedule("order", { n: 3 }, { every: "365d" }, { key: STORED_SCHEDULE });
      let copies = 0;
      const path = database.path;
      const driver = subject === undefined ? undefined : await subject.load();
      cx = {
        engine,
        emitter: createEngine({ storage, workflows: [emit] }),
        store: storage,
        waitingRunId,
        finishedRunId,
        file: driver === undefined || path === undefined ? undefined : {
          driver,
          copy: async () => {
            const copy = subject!.tempPath(`copy-${++copies}.sqlite`);
            // Not VACUUM INTO: Deno's SQLite allows no ATTACH. With the WAL folded in, the file is whole.
            await read!("PRAGMA wal_checkpoint(TRUNCATE)");
            copyFileSync(path, copy);
            return copy;
          },
        },
      };
      closeAll = async () => {
        await engine.stop();
        await database.close();
        await entry.cleanup();
      };
    });
    after(() => closeAll?.());

    test("the storage holds a waiting, a finished and a pending run to protect", async () => {
      const { runs } = await stored();
      const statuses = runs.map((run) => (run as { status: string }).status);
      assert.deepEqual(statuses.sort(), ["completed", "pending", "waiting"]);
    });

    for (const { name, act, expect, file } of CASES) {
      if (file && entry.kind !== "sqlite") continue;
      const outcome = "throws" in expect
        ? expect.code
        : "returns" in expect
        ? `returns ${JSON.stringify(expect.returns)}`
        : "fails its run";
      test(`${name}: ${outcome}`, async () => {
        const before = await stored();
        const ids = new Set(before.runs.map((run) => (run as { id: string }).id));
        if ("failsRun" in expect) {
          const { runId } = await cx.emitter.enqueue("emit", { kind: act(cx) as string });
          await cx.emitter.tick();
          const details = await cx.engine.getRunStatus(runId);
          assert.equal(details?.run.status, "failed");
          assert.equal(details.run.error?.code, "SERIALIZATION");
          assert.equal(details.run.error?.stepName, "out");
          assert.ok(
            details.run.error?.message.endsWith(` at ${expect.failsRun.path}`),
            details.run.error?.message,
          );
          assert.deepEqual(details.steps.map((s) => [s.name, s.status, s.attempts]), [["out", "failed", 1]]);
        } else if ("returns" in expect) {
          assert.deepEqual(await act(cx), expect.returns);
        } else {
          let thrown: unknown;
          try {
            await act(cx);
          } catch (error) {
            thrown = error;
          }
          assert.ok(thrown instanceof expect.throws, `expected ${expect.throws.name}, got ${String(thrown)}`);
          assert.equal(thrown.code, expect.code);
          expect.check(thrown as never);
        }
        assert.deepEqual(await stored(ids), before);
      });
    }
  });
}
