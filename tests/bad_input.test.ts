// Bad input, as one table: each case is refused with its typed error (its `code`, and the field that
// names the offending value: `field`, `path`, `issues`, `workflowName`, `kind`), or with the documented
// `false`, and leaves every run already stored in the database exactly as it was (runs, step results
// and events, compared row by row before and after), on every SQL storage of the shared table.
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
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import {
  ConfigError,
  createEngine,
  createWorkflow,
  type Engine,
  MAX_VALUE_BYTES,
  type ReflowError,
  SerializationError,
  StorageError,
  ValidationError,
  WorkflowNotFoundError,
} from "../mod.ts";
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

/** Every stored row of the runs in `runIds` (all runs if omitted): runs, step results, events. */
async function snapshot(
  read: Read,
  runIds?: ReadonlySet<string>,
): Promise<{ runs: unknown[]; rows: unknown[] }> {
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

/** The SQLite subject behind an entry, for the cases that damage a file. */
function sqliteSubjectOf(name: string): SqliteSubject | undefined {
  return sqliteSubjects.find((subject) => subject.name === name);
}

for (const entry of storages.filter((entry) => entry.kind !== "memory")) {
  describe(`bad input on ${entry.name} on ${runtimeName}`, { skip: entry.skip }, () => {
    let cx: Context;
    let read: Read;
    let closeAll: () => Promise<void>;
    const subject = entry.kind === "sqlite" ? sqliteSubjectOf(entry.name) : undefined;

    before(async () => {
      const database = await entry.database();
      const storage = await database.open();
      read = database.read!;
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
            await read("PRAGMA wal_checkpoint(TRUNCATE)");
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

    test("the database holds a waiting, a finished and a pending run to protect", async () => {
      const { runs } = await snapshot(read);
      assert.deepEqual(runs.map((run) => (run as { status: string }).status), [
        "waiting",
        "completed",
        "pending",
      ]);
    });

    for (const { name, act, expect, file } of CASES) {
      if (file && entry.kind !== "sqlite") continue;
      test(`${name}: ${"throws" in expect ? expect.code : "returns" in expect ? `returns ${expect.returns}` : "fails its run"}`, async () => {
        const before = await snapshot(read);
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
          assert.equal(await act(cx), expect.returns);
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
        assert.deepEqual(await snapshot(read, ids), before);
      });
    }
  });
}
