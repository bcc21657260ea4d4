// Durable primitives (sleep, waitForEvent, parallel, when) through the engine, on MemoryStorage and
// on every SQLite driver that loads in this runtime.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, createEngine, createWorkflow, DuplicateStepError, ValidationError } from "../mod.ts";
import { testEngine } from "../testing.ts";
import { describeEachStorage } from "./support/storages.ts";
import { crashable, eventually, gate, schema, thrownBy } from "./support/fixtures.ts";

const HOUR = 3_600_000;
const input = schema<{ n: number }>();
const approval = schema<{ by: string }>((value) =>
  typeof (value as { by?: unknown })?.by === "string" ? undefined : "by must be a string"
);

describe("primitives in the builder", () => {
  const base = createWorkflow({ name: "w", input });

  for (const bad of [-1, Number.NaN, Infinity, "5 minutes", "1w", "", "-3s"]) {
    test(`sleep duration ${String(bad)} is a ConfigError on field duration`, () => {
      assert.equal(thrownBy(() => base.sleep("nap", bad as "1s"), ConfigError).field, "duration");
    });
  }

  test("a bad wait timeout or schema is a ConfigError", () => {
    assert.equal(
      thrownBy(() => base.waitForEvent("e", { timeout: "soon" as "1s" }), ConfigError).field,
      "timeout",
    );
    assert.equal(
      thrownBy(() => base.waitForEvent("e", { schema: {} as typeof approval }), ConfigError).field,
      "schema",
    );
  });

  test("names are unique across steps, sleeps, waits and parallel branches", () => {
    const w = base.step("a", () => 1).parallel({ b: () => 2, c: () => 3 });
    thrownBy(() => w.sleep("b", 1), DuplicateStepError);
    thrownBy(() => w.waitForEvent("c"), DuplicateStepError);
    thrownBy(() => w.parallel({ a: () => 1 }), DuplicateStepError);
    thrownBy(() => w.step("c", () => 1), DuplicateStepError);
  });

  test("an empty parallel group, or a branch with when, is a ConfigError", () => {
    thrownBy(() => base.parallel({}), ConfigError);
    const withWhen = { handler: () => 1, when: () => true } as unknown as () => number;
    assert.equal(thrownBy(() => base.parallel({ a: withWhen }), ConfigError).field, "when");
  });
});

describeEachStorage(({ it, open }) => {
  it("sleep parks the run without a lease until the wake time, and passes prev through", async () => {
    const workflow = createWorkflow({ name: "w", input })
      .step("before", ({ input }) => input.n + 1)
      .sleep("nap", "1h")
      .step("after", ({ prev, steps }) => ({ prev, names: Object.keys(steps) }));
    const te = testEngine({ workflows: [workflow], storage: await open(), startTime: 1_000 });
    const { runId } = await te.engine.enqueue("w", { n: 1 });
    assert.equal(await te.engine.tick(), 1);
    const parked = await te.engine.getRunStatus(runId);
    assert.equal(parked?.run.status, "sleeping");
    assert.equal(parked?.run.dueAt, 1_000 + HOUR);
    assert.equal(parked?.steps[1].status, "sleeping");
    te.advance(HOUR - 1);
    assert.equal(await te.engine.tick(), 0, "not due yet");
    const result = await te.drive(runId);
    assert.equal(result.status, "completed");
    assert.deepEqual(result.output, { prev: 2, names: ["before"] });
    assert.equal(te.now(), 1_000 + HOUR);
  });

  it("a sleep's wake time is fixed when first reached: a reclaim does not stretch it", async () => {
    const storage = await open();
    let clock = 0;
    const workflow = createWorkflow({ name: "w", input }).sleep("nap", 10_000).step("done", () => "ok");
    const engine = () => createEngine({ storage, workflows: [workflow], now: () => clock });
    const { runId } = await engine().enqueue("w", { n: 1 });
    await engine().tick();
    clock = 9_999;
    assert.equal(await engine().tick(), 0);
    clock = 10_000;
    assert.equal(await engine().tick(), 1);
    const details = await engine().getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.equal(details?.run.claimCount, 2);
  });

  it("a local engine wakes for a due sleep on time, not at the next poll", async () => {
    const workflow = createWorkflow({ name: "w", input }).sleep("nap", 30).step("done", () => "ok");
    const engine = createEngine({ storage: await open(), workflows: [workflow] });
    try {
      const { runId } = await engine.enqueue("w", { n: 1 });
      await engine.start(HOUR);
      await eventually(async () =>
        (await engine.getRunStatus(runId))?.run.status === "completed" ? true : undefined
      );
    } finally {
      await engine.stop();
    }
  });

  it("waitForEvent parks the run; sendEvent validates, stores and wakes it with the payload", async () => {
    const workflow = createWorkflow({ name: "w", input })
      .waitForEvent("approved", { schema: approval })
      .step("ship", ({ prev, steps }) => ({ by: prev.by, same: steps.approved.by === prev.by }));
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const first = await te.run("w", { n: 1 });
    assert.equal(first.status, "waiting");
    assert.equal(first.details.run.dueAt, null, "no timeout: never due without an event");
    assert.equal(await te.engine.tick(), 0);
    // @ts-expect-error: the payload does not match the wait's schema.
    await assert.rejects(te.engine.sendEvent(first.runId, "approved", { by: 7 }), ValidationError);
    // @ts-expect-error: the workflow has no wait named "rejected".
    await assert.rejects(te.engine.sendEvent(first.runId, "rejected", {}), ConfigError);
    assert.equal(await te.engine.tick(), 0, "rejected events store nothing and wake nothing");
    const done = await te.sendEvent(first.runId, "approved", { by: "ada" });
    assert.equal(done.status, "completed");
    assert.deepEqual(done.output, { by: "ada", same: true });
    assert.equal(await te.engine.sendEvent(first.runId, "approved", { by: "ada" }), false, "finished");
    assert.equal(await te.engine.sendEvent("no-such-run", "approved", { by: "ada" }), false);
  });

  it("an event sent before the wait is reached is kept for it; a second of that name is refused", async () => {
    const workflow = createWorkflow({ name: "w", input })
      .step("first", () => 1)
      .waitForEvent("go", { schema: approval });
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const { runId } = await te.engine.enqueue("w", { n: 1 });
    assert.equal(await te.engine.sendEvent(runId, "go", { by: "first" }), true);
    assert.equal(await te.engine.sendEvent(runId, "go", { by: "second" }), false, "a wait takes one event");
    const result = await te.drive(runId);
    assert.equal(result.status, "completed");
    assert.deepEqual(result.output, { by: "first" });
  });

  it("an event sent after its wait is over is refused, while the run goes on", async () => {
    const workflow = createWorkflow({ name: "w", input })
      .waitForEvent("go", { schema: approval })
      .sleep("nap", "1h")
      .step("done", ({ steps }) => steps.go);
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const { runId } = await te.engine.enqueue("w", { n: 1 });
    assert.equal(await te.engine.sendEvent(runId, "go", { by: "first" }), true);
    await te.engine.tick();
    assert.equal((await te.engine.getRunStatus(runId))?.run.status, "sleeping");
    assert.equal(await te.engine.sendEvent(runId, "go", { by: "late" }), false, "the wait is over");
    const result = await te.drive(runId);
    assert.equal(result.status, "completed");
    assert.deepEqual(result.output, { by: "first" });
    assert.equal(await te.engine.sendEvent(runId, "go", { by: "after" }), false, "the run is finished");
  });

  it("only an event of the awaited name wakes a waiting run", async () => {
    const workflow = createWorkflow({ name: "w", input })
      .waitForEvent("approve")
      .waitForEvent("ship")
      .step("done", ({ steps }) => [steps.approve, steps.ship]);
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const { runId } = await te.run("w", { n: 1 });
    await te.engine.sendEvent(runId, "ship", "early");
    assert.equal(await te.engine.tick(), 0, "a ship event does not wake a run waiting for approve");
    const result = await te.sendEvent(runId, "approve", "yes");
    assert.equal(result.status, "completed", "the stored ship event is consumed when that wait is reached");
    assert.deepEqual(result.output, ["yes", "early"]);
  });

  it("a wait that times out fails the run with WAIT_TIMEOUT", async () => {
    let compensated = false;
    const workflow = createWorkflow({ name: "w", input })
      .waitForEvent("reply", { timeout: "2h" })
      .onFailure(() => {
        compensated = true;
      });
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const waiting = await te.run("w", { n: 1 });
    assert.equal(waiting.status, "waiting");
    te.advance(2 * HOUR);
    const result = await te.drive(waiting.runId);
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "WAIT_TIMEOUT");
    assert.equal(result.error?.stepName, "reply");
    assert.equal(compensated, true);
  });

  it("parallel branches run concurrently and the next unit's prev holds their outputs", async () => {
    const bothStarted = gate();
    let started = 0;
    const branch = (value: string) => async () => {
      if (++started === 2) bothStarted.open();
      await bothStarted.promise; // deadlocks unless both run at once
      return value;
    };
    const workflow = createWorkflow({ name: "w", input })
      .parallel({ left: branch("L"), right: { handler: branch("R"), timeoutMs: 5000 } })
      .step("join", ({ prev, steps }) => `${prev.left}${prev.right}${steps.left}`);
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "completed");
    assert.equal(result.output, "LRL");
    assert.deepEqual([result.steps.left?.output, result.steps.right?.output], ["L", "R"]);
  });

  it("a failing branch aborts its siblings and fails the run, attributed to that branch", async () => {
    let siblingReason: unknown;
    const workflow = createWorkflow({ name: "w", input }).parallel({
      slow: ({ signal }) =>
        new Promise((resolve) => {
          signal.addEventListener("abort", () => {
            siblingReason = signal.reason;
            resolve("late");
          });
        }),
      broken: {
        retry: { maxAttempts: 2, initialDelayMs: 1 },
        handler: () => Promise.reject(new Error("boom")),
      },
    });
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.stepName, "broken");
    assert.equal(result.error?.message, "boom");
    assert.equal((siblingReason as Error)?.message, "boom");
    const broken = result.details.steps.find((step) => step.name === "broken");
    assert.equal(broken?.attempts, 2);
    assert.equal(
      result.details.steps.find((step) => step.name === "slow"),
      undefined,
      "nothing stored for it",
    );
  });

  it("complete() in a branch fails the run with PARALLEL_COMPLETE", async () => {
    const workflow = createWorkflow({ name: "w", input }).parallel({ a: ({ complete }) => complete("x") });
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "PARALLEL_COMPLETE");
  });

  it("each branch commits when it finishes: after a crash only unfinished branches run again", async () => {
    const storage = await open();
    const calls = { fast: 0, slow: 0 };
    const fastDone = gate();
    const workflow = createWorkflow({ name: "w", input })
      .parallel({
        fast: () => {
          calls.fast++;
          return "f";
        },
        slow: {
          // The attempt lost with the process counts.
          retry: { maxAttempts: 2, initialDelayMs: 0 },
          handler: async () => {
            calls.slow++;
            if (calls.slow === 1) {
              await fastDone.promise;
              return await new Promise<string>(() => {}); // the process dies here
            }
            return "s";
          },
        },
      })
      .step("join", ({ prev }) => prev);
    const doomed = crashable(storage);
    let stepsCompleted = 0;
    const a = createEngine({
      storage: doomed.storage,
      workflows: [workflow],
      runLeaseDurationMs: 60,
      heartbeatIntervalMs: 20,
      hooks: {
        onStepComplete: () => {
          if (++stepsCompleted === 1) fastDone.open();
        },
      },
    });
    const { runId } = await a.enqueue("w", { n: 1 });
    void a.tick();
    await fastDone.promise;
    await new Promise((resolve) => setTimeout(resolve, 5));
    doomed.crash();
    await new Promise((resolve) => setTimeout(resolve, 80));
    const b = createEngine({ storage, workflows: [workflow] });
    assert.equal(await b.tick(), 1);
    const details = await b.getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.deepEqual(details?.run.output, { fast: "f", slow: "s" });
    assert.deepEqual(calls, { fast: 1, slow: 2 });
  });

  it("a skipped step is not re-evaluated after a sleep and a reclaim", async () => {
    let evaluated = 0;
    const workflow = createWorkflow({ name: "w", input })
      .step("maybe", {
        when: () => (evaluated++, false),
        handler: () => "ran",
      })
      .sleep("nap", "5m")
      .step("after", ({ steps }) => steps.maybe ?? "skipped");
    const te = testEngine({ workflows: [workflow], storage: await open() });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.output, "skipped");
    assert.equal(evaluated, 1);
    assert.equal(result.details.run.claimCount, 2);
  });
});
