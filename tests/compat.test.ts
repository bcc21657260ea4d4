// reflow-ts 0.7 code, written the way its users write it, running on Reflow (issue 14): the run
// handle and waiting, listRuns as an array, typed test results, complete(), the extra exports, and
// a reflow-ts SQLite database whose in-flight runs continue after initialize() imports it.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  createEngine,
  createWorkflow,
  type EngineEvent,
  nextCronOccurrence,
  ParallelCompleteError,
  parseCron,
  ResultTimeoutError,
  RunCancelledError,
  RunFailedError,
  RunNotFoundError,
  StepTimeoutError,
  StorageError,
  TestRunIncompleteError,
  ThrownValueError,
  ValidationError,
} from "../mod.ts";
import { MemoryStorage, testEngine } from "../testing.ts";
import { storageConformanceCases } from "../conformance.ts";
import type { SqlStorage } from "../src/sql/sql_storage.ts";
import type { StorageAdapter } from "../src/storage/adapter.ts";
import { eventually, schema } from "./support/fixtures.ts";
import { describeEachStorage } from "./support/storages.ts";
import { FIXTURE_RUNS, PLACED_AT, writeReflowTsFixture } from "./support/reflow_ts_fixture.ts";
import { runtimeName } from "./support/runtime.ts";
import { sqliteSubjects } from "./support/sqlite_subjects.ts";
import { type Equal, expectType } from "./support/type_assertions.ts";

const charge = createWorkflow({ name: "charge", input: schema<{ amount: number }>() })
  .step("validate", ({ input }) => {
    if (input.amount < 0) throw new Error("negative amount");
    return { cents: input.amount * 100 };
  })
  .step("receipt", ({ prev }) => `charged ${prev.cents}`);

const approval = createWorkflow({ name: "approval", input: schema<{ id: string }>() })
  .waitForEvent("approved", { schema: schema<{ by: string }>() })
  .step("record", ({ prev, input }) => `${input.id} approved by ${prev.by}`);

type Use = <T extends AsyncDisposable>(resource: T) => T;

/** A test whose engines are disposed at its end (`await using` needs Node 24; the suite runs on 22 too). */
function check(name: string, body: (use: Use) => Promise<void>): void {
  test(name, async () => {
    const held: AsyncDisposable[] = [];
    try {
      await body((resource) => (held.push(resource), resource));
    } finally {
      for (const resource of held.reverse()) await resource[Symbol.asyncDispose]();
    }
  });
}

function engineOn(storage: StorageAdapter = new MemoryStorage()) {
  return createEngine({ storage, workflows: [charge, approval] });
}

// item 1: enqueue() resolves to the stored run, with result()
describeEachStorage((cell) => {
  const engineHere = async () => cell.stopAfter(engineOn(await cell.open()));
  cell.it("the handle has reflow-ts's run fields and Reflow's runId and created", async () => {
    const engine = await engineHere();
    const run = await engine.enqueue("charge", { amount: 5 }, { idempotencyKey: "order-1" });
    assert.equal(run.id, run.runId);
    assert.equal(run.workflow, "charge");
    assert.equal(run.status, "pending");
    assert.deepEqual(run.input, { amount: 5 });
    assert.equal(run.idempotencyKey, "order-1");
    assert.equal(typeof run.createdAt, "number");
    assert.equal(run.updatedAt, run.createdAt);
    assert.equal(run.created, true);
    const again = await engine.enqueue("charge", { amount: 5 }, { idempotencyKey: "order-1" });
    assert.deepEqual([again.id, again.created], [run.id, false]);
  });

  cell.it("result() resolves to the output of a run this engine finishes", async () => {
    const engine = await engineHere();
    await engine.start(10);
    const run = await engine.enqueue("charge", { amount: 5 });
    const output = await run.result({ timeout: "10s" });
    expectType<Equal<typeof output, string>>();
    assert.equal(output, "charged 500");
  });

  cell.it("result() of a failed run rejects with RunFailedError carrying the stored error", async () => {
    const engine = await engineHere();
    await engine.start(10);
    const run = await engine.enqueue("charge", { amount: -1 });
    const error = await run.result().catch((thrown: unknown) => thrown);
    assert.ok(error instanceof RunFailedError);
    assert.equal(error.code, "RUN_FAILED");
    assert.equal(error.runId, run.id);
    assert.equal(error.stepName, "validate");
    assert.deepEqual(error.error, {
      code: null,
      name: "Error",
      message: "negative amount",
      stepName: "validate",
    });
    assert.ok(error.cause instanceof Error);
    assert.equal(error.cause.message, "negative amount");
  });

  cell.it(
    "result() of a cancelled run rejects with RunCancelledError as soon as it is cancelled",
    async () => {
      const engine = await engineHere();
      await engine.start(10);
      const run = await engine.enqueue("approval", { id: "a" });
      const outcome = run.result().catch((thrown: unknown) => thrown);
      await eventually(async () =>
        (await engine.getRunStatus(run.id))?.run.status === "waiting" || undefined
      );
      assert.equal(await engine.cancel(run.id), true);
      const error = await outcome;
      assert.ok(error instanceof RunCancelledError);
      assert.equal(error.runId, run.id);
    },
  );

  cell.it(
    "a timeout rejects with ResultTimeoutError and an aborted signal with its reason; the run goes on",
    async () => {
      const engine = await engineHere();
      await engine.start(10);
      const run = await engine.enqueue("approval", { id: "b" });
      const timedOut = await run.result({ timeout: 20 }).catch((thrown: unknown) => thrown);
      assert.ok(timedOut instanceof ResultTimeoutError);
      assert.deepEqual([timedOut.code, timedOut.runId, timedOut.timeoutMs], ["RESULT_TIMEOUT", run.id, 20]);
      const controller = new AbortController();
      const waiting = engine.waitForRun(run.id, { signal: controller.signal });
      const reason = new Error("no longer needed");
      controller.abort(reason);
      await assert.rejects(waiting, (thrown) => thrown === reason);
      await engine.sendEvent(run.id, "approved", { by: "ada" });
      assert.equal(await run.result(), "b approved by ada");
    },
  );

  cell.it("waitForRun() notices a run another engine finished, by reading storage", async () => {
    const waiter = cell.stopAfter(engineOn(await cell.open()));
    const worker = cell.stopAfter(engineOn(await cell.openPeer()));
    const { runId } = await worker.enqueue("charge", { amount: 2 });
    const output = waiter.waitForRun(runId, { timeout: "10s" });
    await worker.start(10);
    assert.equal(await output, "charged 200");
  });

  cell.it("waitForRun() on an unknown id rejects with RunNotFoundError", async () => {
    const engine = await engineHere();
    const error = await engine.waitForRun("no-such-run").catch((thrown: unknown) => thrown);
    assert.ok(error instanceof RunNotFoundError);
    assert.equal(error.runId, "no-such-run");
  });
});

describe("events and records carry reflow-ts's field names", () => {
  check("stepComplete has attempts beside attempt; steps have id and runId", async (use) => {
    const events: EngineEvent[] = [];
    const engine = use(createEngine({
      storage: new MemoryStorage(),
      workflows: [charge],
      hooks: { onStepComplete: (event) => void events.push(event) },
    }));
    const { runId } = await engine.enqueue("charge", { amount: 1 });
    await engine.tick();
    const first = events[0];
    assert.ok(first?.type === "stepComplete");
    assert.deepEqual([first.workflow, first.stepName, first.attempt, first.attempts], [
      "charge",
      "validate",
      1,
      1,
    ]);
    const details = await engine.getRunStatus(runId);
    assert.deepEqual(details?.steps.map((step) => [step.id, step.runId, step.name]), [
      [`${runId}/validate`, runId, "validate"],
      [`${runId}/receipt`, runId, "receipt"],
    ]);
  });
});

describe("testEngine().run() returns { status, output, error } per step (item 3)", () => {
  check("completed, failed and skipped steps, typed by step name", async (use) => {
    const flow = createWorkflow({ name: "flow", input: schema<{ fail: boolean }>() })
      .step("first", () => ({ n: 1 }))
      .step("optional", { when: () => false, handler: () => "never" })
      .step("last", ({ input }) => {
        if (input.fail) throw new Error("boom");
        return "done";
      });
    const te = use(testEngine({ workflows: [flow] }));
    const ok = await te.run("flow", { fail: false });
    assert.equal(ok.status, "completed");
    assert.deepEqual(ok.steps.first, { status: "completed", output: { n: 1 }, error: null });
    assert.deepEqual(ok.steps.optional, { status: "skipped", output: undefined, error: null });
    if (ok.steps.first?.status === "completed") {
      expectType<Equal<typeof ok.steps.first.output, { n: number }>>();
    }
    const failed = await te.run("flow", { fail: true });
    assert.equal(failed.status, "failed");
    assert.deepEqual(failed.steps.last, { status: "failed", output: null, error: "boom" });
  });

  check("a run no engine here can finish throws TestRunIncompleteError", async (use) => {
    const te = use(testEngine({ workflows: [charge] }));
    const { run } = await te.storage.createRun({
      id: "foreign",
      workflowName: "not-registered-here",
      input: "1",
      idempotencyKey: null,
      createdAt: te.now(),
    });
    const error = await te.drive(run.id).catch((thrown: unknown) => thrown);
    assert.ok(error instanceof TestRunIncompleteError);
    assert.deepEqual([error.code, error.runId, error.status], ["TEST_RUN_INCOMPLETE", "foreign", "pending"]);
  });
});

describe("listRuns() resolves to an array (item 4)", () => {
  check("an array of runs, with the keyset cursor as a non-enumerable next", async (use) => {
    const engine = use(engineOn());
    for (const amount of [-1, -2, 3]) await engine.enqueue("charge", { amount });
    await engine.tick();
    const runs = await engine.listRuns({ status: "failed" });
    assert.ok(Array.isArray(runs));
    assert.equal(runs.length, 2);
    assert.ok(runs.every((run) => run.status === "failed" && run.workflow === "charge"));
    assert.equal(runs.next, null);
    assert.deepEqual(Object.keys(runs), ["0", "1"]);
    const firstPage = await engine.listRuns({ limit: 2 });
    assert.notEqual(firstPage.next, null);
    const rest = await engine.listRuns({ limit: 2, ...firstPage.next });
    assert.equal(firstPage.length + rest.length, 3);
    assert.equal(rest.next, null);
  });
});

describe("complete() ends the run where it is called (item 6)", () => {
  check("code after complete() does not run, and the returned form still works", async (use) => {
    let after = false;
    const early = createWorkflow({ name: "early", input: schema<{ returned: boolean }>() })
      .step("check", ({ input, complete }) => {
        if (input.returned) return complete({ cached: "returned" });
        complete({ cached: "called" });
        after = true;
        return { cached: "not reached" };
      })
      .step("compute", () => ({ cached: "computed" }));
    const te = use(testEngine({ workflows: [early] }));
    const called = await te.run("early", { returned: false });
    assert.deepEqual([called.status, called.output, after], ["completed", { cached: "called" }, false]);
    assert.equal(called.steps.compute, undefined, "no later step runs");
    const returned = await te.run("early", { returned: true });
    assert.deepEqual(returned.output, { cached: "returned" });
  });

  check("complete() in a parallel branch still fails the run with ParallelCompleteError", async (use) => {
    const fan = createWorkflow({ name: "fan", input: schema<number>() })
      .parallel({ a: ({ complete }) => complete(1), b: () => 2 });
    const te = use(testEngine({ workflows: [fan] }));
    const result = await te.run("fan", 1);
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, new ParallelCompleteError("a").code);
  });
});

describe("the exports reflow-ts code imports (item 7)", () => {
  test("parseCron and nextCronOccurrence", () => {
    const after = new Date("2026-12-01T10:07:00Z");
    assert.equal(
      new Date(parseCron("*/15 * * * *").next(after.getTime())).toISOString(),
      "2026-12-01T10:15:00.000Z",
    );
    assert.equal(nextCronOccurrence("0 3 * * *", after).toISOString(), "2026-12-02T03:00:00.000Z");
    assert.equal(
      nextCronOccurrence("0 3 * * *", after.getTime()).getTime(),
      Date.parse("2026-12-02T03:00:00Z"),
    );
  });

  test("workflow.parseInput validates synchronously and throws ValidationError", () => {
    const positive = schema<{ amount: number }>((value) =>
      (value as { amount?: unknown })?.amount === undefined ? "amount is required" : undefined
    );
    const flow = createWorkflow({ name: "p", input: positive }).step("s", ({ input }) => input.amount);
    assert.deepEqual(flow.parseInput({ amount: 1 }), { amount: 1 });
    assert.throws(() => flow.parseInput({}), ValidationError);
  });

  check("storageConformanceCases run as case.run(storage), without a context", async () => {
    assert.ok(storageConformanceCases.length > 50);
    for (const conformanceCase of storageConformanceCases) {
      const storage = new MemoryStorage();
      await storage.initialize();
      try {
        await conformanceCase.run(storage);
      } finally {
        await storage.close();
      }
    }
  });

  check(
    "a thrown non-Error is a ThrownValueError in hooks; onFailure gets { error, stepName, input }",
    async (use) => {
      const seen: unknown[] = [];
      const throwsString = createWorkflow({ name: "throws", input: schema<{ id: number }>() })
        .step("bad", () => {
          throw "plain string";
        })
        .onFailure(({ error, stepName, input }) =>
          void seen.push(["onFailure", error instanceof ThrownValueError, stepName, input])
        );
      const engine = use(createEngine({
        storage: new MemoryStorage(),
        workflows: [throwsString],
        hooks: {
          onRunFailed: (event) => void seen.push(["onRunFailed", event.error instanceof ThrownValueError]),
        },
      }));
      await engine.enqueue("throws", { id: 7 });
      await engine.tick();
      await eventually(() => seen.length === 2 || undefined);
      assert.deepEqual(seen, [["onRunFailed", true], ["onFailure", true, "bad", { id: 7 }]]);
    },
  );

  check(
    "stream.throw() ends the stream, and bufferSize 0 hands events over as they are asked for",
    async (use) => {
      const engine = use(engineOn());
      const thrown = engine.stream();
      const reason = new Error("consumer gave up");
      await assert.rejects(thrown.throw(reason), (error) => error === reason);
      assert.deepEqual(await thrown.next(), { value: undefined, done: true });

      const rendezvous = engine.stream({ bufferSize: 0 });
      await engine.start(10);
      const { runId } = await engine.enqueue("charge", { amount: 1 });
      const types: string[] = [];
      for await (const event of rendezvous) {
        if (event.runId !== runId) continue;
        types.push(event.type);
        if (event.type === "runComplete") break;
      }
      assert.deepEqual(types, [
        "runStart",
        "stepStart",
        "stepComplete",
        "stepStart",
        "stepComplete",
        "runComplete",
      ]);
    },
  );

  test("toJSON() puts the error's fields under context as well", () => {
    const json = new StepTimeoutError("charge", 5000).toJSON();
    assert.equal(json.code, "STEP_TIMEOUT");
    assert.deepEqual(json.context, { stepName: "charge", timeoutMs: 5000 });
    assert.equal(json.timeoutMs, 5000);
  });
});

// The fixture's workflows as reflow-ts code would have declared them.
const order = createWorkflow({
  name: "order",
  input: schema<{ id: string; placedAt: Date; note?: undefined }>(),
})
  .step("reserve", ({ input }) => ({ reserved: input.id, at: input.placedAt }))
  .sleep("cool-off", "10ms")
  .waitForEvent("approved", { schema: schema<{ by: string }>() })
  .step("ship", ({ steps, prev }) => ({ shipped: steps.reserve.reserved, by: prev.by }));
const gate = createWorkflow({ name: "gate", input: schema<{ id: string }>() })
  .step("check", ({ complete }) => complete({ skipped: true, at: new Date() }))
  .step("never", () => ({ skipped: false, at: new Date() }));

for (const subject of sqliteSubjects) {
  describe(`a reflow-ts 0.7 database on ${subject.name} on ${runtimeName} (item 8)`, {
    skip: subject.skipReason,
  }, () => {
    after(() => subject.cleanup());

    test("a row Reflow cannot hold fails initialize() with a schema StorageError, changing nothing", async () => {
      const mod = await subject.load();
      const path = subject.tempPath();
      const handle = await mod.openHandle(path);
      writeReflowTsFixture(handle, Date.now());
      handle.prepare("UPDATE workflow_runs SET status = 'paused' WHERE id = ?").run(FIXTURE_RUNS.waiting);
      handle.close();
      const storage = mod.open(path);
      try {
        const error = await storage.initialize().catch((thrown: unknown) => thrown);
        assert.ok(error instanceof StorageError);
        assert.equal(error.kind, "schema");
        assert.match(error.message, /run "rts-waiting" has status "paused"/);
      } finally {
        await storage.close();
      }
      const raw = await mod.openHandle(path, { readonly: true });
      try {
        const tables = raw.prepare(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'reflow%'",
        ).all();
        assert.deepEqual(tables, [], "the migration transaction was rolled back");
        const [mode] = raw.prepare("PRAGMA journal_mode").all() as { journal_mode: string }[];
        assert.equal(mode?.journal_mode, "delete", "the journal mode was left as it was");
      } finally {
        raw.close();
      }
    });

    check(
      "initialize() imports it once, keeps its tables, and its in-flight runs complete under Reflow",
      async (use) => {
        const mod = await subject.load();
        const path = subject.tempPath();
        const handle = await mod.openHandle(path);
        writeReflowTsFixture(handle, Date.now());
        handle.close();

        // Two connections initialise at once, as two processes starting together would.
        const storages: SqlStorage[] = [mod.open(path), mod.open(path)];
        try {
          await Promise.all(storages.map((storage) => storage.initialize()));
          const engine = use(createEngine({ storage: storages[0]!, workflows: [order, gate] }));
          const status = async (id: string) => (await engine.getRunStatus(id))?.run;

          const pending = await status(FIXTURE_RUNS.pending);
          assert.deepEqual([pending?.status, pending?.idempotencyKey], ["pending", "order-42"]);
          assert.ok((pending?.input as { placedAt: unknown }).placedAt instanceof Date);
          assert.ok(Object.hasOwn(pending?.input as object, "note"), "undefined properties are kept");
          assert.equal((await status(FIXTURE_RUNS.running))?.status, "running");
          assert.deepEqual((await status(FIXTURE_RUNS.early))?.output, { skipped: true, at: PLACED_AT });
          const completed = await status(FIXTURE_RUNS.completed);
          assert.deepEqual([completed?.status, completed?.output], [
            "completed",
            { shipped: FIXTURE_RUNS.completed, by: "linus" },
          ]);
          const failed = await status(FIXTURE_RUNS.failed);
          assert.deepEqual([failed?.status, failed?.error?.message, failed?.error?.stepName], [
            "failed",
            "card declined",
            "reserve",
          ]);
          assert.equal((await status(FIXTURE_RUNS.cancelled))?.status, "cancelled");
          const schedules = await engine.listSchedules();
          assert.deepEqual(
            schedules.map((s) => [s.key, s.workflow, s.recurrence, s.intervalMs, s.cron]),
            [
              ["hourly-report", "order", { every: 3_600_000 }, 3_600_000, null],
              ["nightly-report", "order", { cron: "0 3 * * *" }, null, "0 3 * * *"],
            ],
          );
          const again = await engine.enqueue("order", {
            id: FIXTURE_RUNS.pending,
            placedAt: PLACED_AT,
            note: undefined,
          }, {
            idempotencyKey: "order-42",
          });
          assert.deepEqual([again.id, again.created], [FIXTURE_RUNS.pending, false]);

          await engine.start(10);
          // The waiting run takes the older of its two buffered events.
          assert.deepEqual(await engine.waitForRun(FIXTURE_RUNS.waiting, { timeout: "20s" }), {
            shipped: FIXTURE_RUNS.waiting,
            by: "ada",
          });
          // The rest (the dead lease reclaimed, the sleep woken, the pending run started) reach the wait.
          const inFlight = [FIXTURE_RUNS.pending, FIXTURE_RUNS.running, FIXTURE_RUNS.sleeping];
          for (const id of inFlight) {
            await eventually(async () => (await status(id))?.status === "waiting" || undefined, 20_000);
            assert.equal(await engine.sendEvent(id, "approved", { by: "grace" }), true);
            assert.deepEqual(await engine.waitForRun(id, { timeout: "20s" }), { shipped: id, by: "grace" });
          }
          const reserve = (await engine.getRunStatus(FIXTURE_RUNS.running))?.steps[0];
          assert.equal(reserve?.name, "reserve");
          assert.deepEqual(reserve?.output, { reserved: FIXTURE_RUNS.running, at: PLACED_AT });
          await engine.stop();

          // Opening it again imports nothing twice; reflow-ts's own tables are left as they were.
          const third = mod.open(path);
          storages.push(third);
          await third.initialize();
          assert.equal((await third.listRuns({ limit: 100 })).length, 8);
          const raw = await mod.openHandle(path, { readonly: true });
          try {
            const count = (table: string) =>
              (raw.prepare(`SELECT count(*) AS n FROM ${table}`).all()[0] as { n: number }).n;
            assert.deepEqual(
              [count("workflow_runs"), count("workflow_events"), count("workflow_schedules")],
              [
                8,
                2,
                2,
              ],
            );
            assert.equal(count("reflow_events"), 1, "the newer event is still buffered");
          } finally {
            raw.close();
          }
        } finally {
          for (const storage of storages) await storage.close();
        }
      },
    );
  });
}
