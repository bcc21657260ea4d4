// Schedules through the engine (registration, listing, firing with fake clocks, several engines on one
// database, a started engine), on MemoryStorage and on every SQLite driver that loads in this runtime.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConfigError,
  createEngine,
  createWorkflow,
  type EngineOptions,
  type ReflowError,
  type StorageAdapter,
  StorageError,
  ValidationError,
  WorkflowNotFoundError,
  type WorkflowRun,
} from "../mod.ts";
import { testEngine } from "../testing.ts";
import { describeEachStorage } from "./support/storages.ts";
import { eventually, schema } from "./support/fixtures.ts";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const SECOND = 1_000;
const MINUTE = 60_000;

const input = schema<{ n: number }>((value) =>
  typeof (value as { n?: unknown })?.n === "number" ? undefined : "n must be a number"
);
const tick = createWorkflow({ name: "tick", input }).step("echo", ({ input }) => input.n);
const other = createWorkflow({ name: "other", input }).step("echo", ({ input }) => input.n);
const WORKFLOWS = [tick, other];

/** The slot a scheduled run was created for, read from its idempotency key. */
function slotOf(run: WorkflowRun): number {
  const match = /^schedule:.*:(\d+)$/.exec(run.idempotencyKey ?? "");
  assert.ok(match !== null, `run ${run.id} has no schedule key: ${run.idempotencyKey}`);
  return Number(match[1]);
}

/** The runs of `tick`, oldest slot first. */
async function scheduledRuns(storage: StorageAdapter, workflowName = "tick"): Promise<WorkflowRun[]> {
  const runs = await storage.listRuns({ workflowName, limit: 10_000 });
  return runs.sort((a, b) => slotOf(a) - slotOf(b));
}

describeEachStorage(({ it, open, openPeer, stopAfter }) => {
  /** An engine on `storage` with a clock the test moves. */
  const clocked = (
    storage: StorageAdapter,
    extra: Partial<EngineOptions<typeof tick | typeof other>> = {},
  ) => {
    const clock = { now: T0 };
    const engine = stopAfter(createEngine({ storage, workflows: WORKFLOWS, now: () => clock.now, ...extra }));
    return { engine, clock };
  };
  it("schedule() returns the key; the default key is stable and differs by input and recurrence", async () => {
    const { engine } = clocked(await open());
    assert.equal(await engine.schedule("tick", { n: 1 }, MINUTE, { key: "mine" }), "mine");
    const key = await engine.schedule("tick", { n: 1 }, MINUTE);
    assert.match(key, /^tick:[0-9a-f]{16}$/);
    assert.equal(
      await engine.schedule("tick", { n: 1 }, { every: "1m" }),
      key,
      "the same interval, spelt otherwise",
    );
    assert.notEqual(await engine.schedule("tick", { n: 2 }, MINUTE), key);
    assert.notEqual(await engine.schedule("tick", { n: 1 }, 2 * MINUTE), key);
    assert.notEqual(await engine.schedule("other", { n: 1 }, MINUTE), key.replace("tick", "other"));
    const cron = await engine.schedule("tick", { n: 1 }, { cron: "*/5 * * * *" });
    assert.equal(await engine.schedule("tick", { n: 1 }, { cron: "  */5   * * *  * " }), cron, "spacing");
    const keys = (await engine.listSchedules()).map((schedule) => schedule.key);
    assert.equal(keys.length, 6);
    assert.deepEqual(keys, [...keys].sort());
  });

  it("the default key does not depend on the order of the input's properties", async () => {
    const wide = createWorkflow({ name: "wide", input: schema<{ a: number; b: number }>() })
      .step("s", () => 1);
    const engine = createEngine({ storage: await open(), workflows: [wide], now: () => T0 });
    const key = await engine.schedule("wide", { a: 1, b: 2 }, MINUTE);
    assert.equal(await engine.schedule("wide", { b: 2, a: 1 }, MINUTE), key);
  });

  it("the same key registered again keeps its cadence; a new recurrence resets it", async () => {
    const { engine, clock } = clocked(await open());
    await engine.schedule("tick", { n: 1 }, MINUTE, { key: "k" });
    clock.now += 20 * SECOND;
    await engine.schedule("tick", { n: 2 }, { every: "60s" }, { key: "k" });
    let [schedule] = await engine.listSchedules();
    assert.deepEqual(
      [schedule?.nextRunAt, schedule?.input, schedule?.createdAt, schedule?.updatedAt],
      [T0 + MINUTE, { n: 2 }, T0, T0 + 20 * SECOND],
      "cadence kept, input replaced",
    );
    await engine.schedule("tick", { n: 2 }, 2 * MINUTE, { key: "k" });
    [schedule] = await engine.listSchedules();
    assert.deepEqual([schedule?.nextRunAt, schedule?.recurrence], [T0 + 20 * SECOND + 2 * MINUTE, {
      every: 2 * MINUTE,
    }]);
    await engine.schedule("tick", { n: 2 }, { cron: "0 * * * *" }, { key: "k" });
    [schedule] = await engine.listSchedules();
    assert.deepEqual([schedule?.nextRunAt, schedule?.recurrence], [T0 + 60 * MINUTE, {
      cron: "0 * * * *",
    }]);
  });

  it("listSchedules() shows every field, decoded; unschedule() says whether the key existed", async () => {
    const storage = await open();
    const { engine, clock } = clocked(storage);
    await engine.schedule("tick", { n: 7 }, { every: "30s" }, { key: "b" });
    await engine.schedule("other", { n: 8 }, { cron: "@daily" }, { key: "a" });
    clock.now = T0 + 30 * SECOND;
    await engine.tick();
    const [run] = await scheduledRuns(storage);
    assert.deepEqual(await engine.listSchedules(), [
      {
        key: "a",
        workflow: "other",
        input: { n: 8 },
        recurrence: { cron: "@daily" },
        intervalMs: null,
        cron: "@daily",
        nextRunAt: T0 + 24 * 60 * MINUTE,
        lastRunAt: null,
        lastRunId: null,
        createdAt: T0,
        updatedAt: T0,
      },
      {
        key: "b",
        workflow: "tick",
        input: { n: 7 },
        recurrence: { every: 30 * SECOND },
        intervalMs: 30 * SECOND,
        cron: null,
        nextRunAt: T0 + 60 * SECOND,
        lastRunAt: T0 + 30 * SECOND,
        lastRunId: run?.id,
        createdAt: T0,
        updatedAt: T0 + 30 * SECOND,
      },
    ]);
    assert.equal(await engine.unschedule("b"), true);
    assert.equal(await engine.unschedule("b"), false);
    assert.equal(await engine.unschedule("never"), false);
    assert.deepEqual((await engine.listSchedules()).map((schedule) => schedule.key), ["a"]);
    assert.equal((await scheduledRuns(storage)).length, 1, "its runs are kept");
  });

  const badRecurrences: [string, unknown, string][] = [
    ["0", 0, "recurrence"],
    ["-5", -5, "recurrence"],
    ["NaN", Number.NaN, "recurrence"],
    ["Infinity", Infinity, "recurrence"],
    ["0.4 (rounds to 0)", 0.4, "recurrence"],
    ["a string", "5m", "recurrence"],
    ["null", null, "recurrence"],
    ["an array", [MINUTE], "recurrence"],
    ["{}", {}, "recurrence"],
    ["{ every, cron }", { every: MINUTE, cron: "* * * * *" }, "recurrence"],
    ["an unknown key", { evry: MINUTE }, "recurrence"],
    ["{ every: '5 minutes' }", { every: "5 minutes" }, "recurrence"],
    ["{ every: 0 }", { every: 0 }, "recurrence"],
    ["{ every: '0s' }", { every: "0s" }, "recurrence"],
    ["{ every: true }", { every: true }, "recurrence"],
    ["{ cron: 5 }", { cron: 5 }, "recurrence"],
    ["{ cron: '60 * * * *' }", { cron: "60 * * * *" }, "cron.minute"],
    ["{ cron: '* 24 * * *' }", { cron: "* 24 * * *" }, "cron.hour"],
    ["{ cron: '0 0 30 2 *' }", { cron: "0 0 30 2 *" }, "cron.dayOfMonth"],
    ["{ cron: '* * * 13 *' }", { cron: "* * * 13 *" }, "cron.month"],
    ["{ cron: '* * * * 8' }", { cron: "* * * * 8" }, "cron.dayOfWeek"],
    ["{ cron: '* * * *' }", { cron: "* * * *" }, "cron"],
    ["{ cron: '@often' }", { cron: "@often" }, "cron"],
  ];
  for (const [label, recurrence, field] of badRecurrences) {
    it(`recurrence ${label} is a ConfigError on field ${field}, and nothing is stored`, async () => {
      const { engine } = clocked(await open());
      await assert.rejects(
        engine.schedule("tick", { n: 1 }, recurrence as number),
        (error: unknown) => error instanceof ConfigError && error.field === field,
      );
      assert.deepEqual(await engine.listSchedules(), []);
    });
  }

  it("an unknown workflow, an invalid input or a bad key is refused, and nothing is stored", async () => {
    const { engine } = clocked(await open());
    // @ts-expect-error: not a registered workflow.
    await assert.rejects(engine.schedule("nope", { n: 1 }, MINUTE), WorkflowNotFoundError);
    // @ts-expect-error: the input does not match the workflow's type.
    await assert.rejects(engine.schedule("tick", { n: "1" }, MINUTE), ValidationError);
    await assert.rejects(
      engine.schedule("tick", { n: 1 }, MINUTE, { key: "" }),
      (error: unknown) => error instanceof ConfigError && error.field === "key",
    );
    // @ts-expect-error: both every and cron.
    await assert.rejects(engine.schedule("tick", { n: 1 }, { every: 5, cron: "* * * * *" }), ConfigError);
    assert.deepEqual(await engine.listSchedules(), []);
  });

  it("tick() fires each slot on time, exactly once, with the schedule's input and key", async () => {
    const storage = await open();
    const { engine, clock } = clocked(storage);
    const key = await engine.schedule("tick", { n: 3 }, { every: "10s" });
    clock.now = T0 + 10 * SECOND - 1;
    await engine.tick();
    assert.equal((await scheduledRuns(storage)).length, 0, "not due yet");
    clock.now += 1;
    assert.equal(await engine.tick(), 1, "the slot's run is created, then claimed and run");
    await engine.tick();
    clock.now += 5 * SECOND;
    await engine.tick();
    const runs = await scheduledRuns(storage);
    assert.deepEqual(runs.map((run) => [run.idempotencyKey, run.input, run.status, run.output]), [
      [`schedule:${key}:${T0 + 10 * SECOND}`, '{"n":3}', "completed", "3"],
    ]);
    for (let i = 2; i <= 5; i++) {
      clock.now = T0 + i * 10 * SECOND;
      await engine.tick();
      await engine.tick();
    }
    assert.deepEqual(
      (await scheduledRuns(storage)).map(slotOf),
      [1, 2, 3, 4, 5].map((i) => T0 + i * 10 * SECOND),
    );
  });

  it("missed slots are skipped: ten intervals late, one run, and the next slot keeps the phase", async () => {
    const storage = await open();
    const { engine, clock } = clocked(storage);
    await engine.schedule("tick", { n: 1 }, MINUTE, { key: "k" });
    clock.now = T0 + 10 * MINUTE + 25 * SECOND;
    await engine.tick();
    await engine.tick();
    assert.deepEqual((await scheduledRuns(storage)).map(slotOf), [T0 + MINUTE]);
    const [schedule] = await engine.listSchedules();
    assert.deepEqual([schedule?.lastRunAt, schedule?.nextRunAt], [T0 + MINUTE, T0 + 11 * MINUTE]);
    clock.now = T0 + 11 * MINUTE;
    await engine.tick();
    assert.deepEqual((await scheduledRuns(storage)).map(slotOf), [T0 + MINUTE, T0 + 11 * MINUTE]);
  });

  it("a cron schedule fires at the cron times (UTC)", async () => {
    const storage = await open();
    const { engine, clock } = clocked(storage);
    clock.now = T0 + 7 * MINUTE;
    await engine.schedule("tick", { n: 1 }, { cron: "*/15 * * * *" });
    for (let minute = 8; minute <= 75; minute++) {
      clock.now = T0 + minute * MINUTE + 30 * SECOND;
      await engine.tick();
    }
    assert.deepEqual(
      (await scheduledRuns(storage)).map(slotOf),
      [15, 30, 45, 60, 75].map((m) => T0 + m * MINUTE),
    );
    const [schedule] = await engine.listSchedules();
    assert.equal(schedule?.nextRunAt, T0 + 90 * MINUTE);
  });

  it("4 engines ticking at once on one database, with clocks a little apart, make one run per slot", async () => {
    const storage = await open();
    const peers = [storage, await openPeer(), await openPeer(), await openPeer()];
    const time = { now: T0 };
    const all = peers.map((peer, i) =>
      stopAfter(createEngine({ storage: peer, workflows: WORKFLOWS, now: () => time.now + i * 7 }))
    );
    await all[0]!.schedule("tick", { n: 1 }, SECOND, { key: "a" });
    await all[0]!.schedule("other", { n: 1 }, { every: "2s" }, { key: "b" });
    const SLOTS = 40;
    for (let i = 1; i <= SLOTS; i++) {
      time.now = T0 + i * SECOND;
      await Promise.all(all.map((engine) => engine.tick()));
    }
    const slots = (await scheduledRuns(storage)).map(slotOf);
    assert.deepEqual(slots, Array.from({ length: SLOTS }, (_, i) => T0 + (i + 1) * SECOND));
    const otherSlots = (await scheduledRuns(storage, "other")).map(slotOf);
    assert.deepEqual(otherSlots, Array.from({ length: SLOTS / 2 }, (_, i) => T0 + (i + 1) * 2 * SECOND));
  });

  it("a clock that jumps back does not fire a slot twice, even when the cadence is reset onto it", async () => {
    const storage = await open();
    const { engine, clock } = clocked(storage);
    await engine.schedule("tick", { n: 1 }, MINUTE, { key: "k" });
    clock.now = T0 + MINUTE;
    await engine.tick();
    clock.now = T0; // back: nothing is due
    await engine.tick();
    assert.equal((await scheduledRuns(storage)).length, 1);
    // Changing the recurrence and back puts nextRunAt on the slot that already fired.
    await engine.schedule("tick", { n: 1 }, { cron: "@hourly" }, { key: "k" });
    await engine.schedule("tick", { n: 1 }, MINUTE, { key: "k" });
    assert.equal((await engine.listSchedules())[0]?.nextRunAt, T0 + MINUTE);
    clock.now = T0 + MINUTE;
    await engine.tick();
    const runs = await scheduledRuns(storage);
    assert.deepEqual(runs.map(slotOf), [T0 + MINUTE], "the slot's idempotency key held");
    const [schedule] = await engine.listSchedules();
    assert.deepEqual(
      [schedule?.lastRunId, schedule?.nextRunAt],
      [runs[0]?.id, T0 + 2 * MINUTE],
      "the cadence moved on past it",
    );
  });

  it("a started engine with a poll of an hour fires an every-50-ms schedule on time", async () => {
    const storage = await open();
    const engine = stopAfter(createEngine({ storage, workflows: WORKFLOWS }));
    await engine.start(3_600_000);
    await engine.schedule("tick", { n: 1 }, 50);
    // Not a timing assertion: without waking for the schedule, nothing would fire for an hour.
    const runs = await eventually(async () => {
      const runs = await scheduledRuns(storage);
      return runs.filter((run) => run.status === "completed").length >= 5 ? runs : undefined;
    }, 10_000);
    const slots = runs.map(slotOf);
    assert.equal(new Set(slots).size, slots.length);
    for (const slot of slots) assert.equal((slot - slots[0]!) % 50, 0, "slots on the schedule's grid");
  });

  it("a storage failure while firing goes to onError; the round after the poll interval fires", async () => {
    const storage = await open();
    let failures = 1;
    const flaky = new Proxy(storage, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        if (property !== "dueSchedules") return value.bind(target);
        return (...args: unknown[]) => {
          if (failures-- > 0) {
            return Promise.reject(new StorageError("dueSchedules", "disk on fire", { kind: "io" }));
          }
          return value.apply(target, args);
        };
      },
    });
    const errors: ReflowError[] = [];
    const { engine, clock } = clocked(flaky, { hooks: { onError: (error) => void errors.push(error) } });
    await engine.schedule("tick", { n: 1 }, MINUTE);
    clock.now = T0 + MINUTE;
    await engine.tick();
    assert.deepEqual(errors.map((error) => error.message), [
      'Storage operation "dueSchedules" failed: disk on fire',
    ]);
    assert.equal((await scheduledRuns(storage)).length, 0);
    await engine.tick();
    assert.equal((await scheduledRuns(storage)).length, 0, "a failing database is not asked again at once");
    clock.now += 1_000; // the default poll interval
    await engine.tick();
    assert.equal((await scheduledRuns(storage)).length, 1);
  });
});

test("testEngine fires schedules on its virtual clock", async () => {
  const te = testEngine({ workflows: WORKFLOWS, startTime: T0 });
  await te.engine.schedule("tick", { n: 3 }, { every: "1h" }, { key: "hourly" });
  assert.equal(await te.engine.tick(), 0, "nothing due at registration");
  te.advance(60 * MINUTE);
  assert.equal(await te.engine.tick(), 1);
  const runs = await te.engine.listRuns();
  assert.deepEqual(runs.map((run) => [run.status, run.output, run.idempotencyKey]), [
    ["completed", 3, `schedule:hourly:${T0 + 60 * MINUTE}`],
  ]);
  assert.equal((await te.engine.listSchedules())[0]?.nextRunAt, T0 + 120 * MINUTE);
});
