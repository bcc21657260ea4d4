// A wall clock that jumps (an NTP step, a VM resumed, a fixed misconfiguration), through the engine's
// injectable clock (`createEngine({ now })`, and the storage's `now`) on a SQLite file shared by two
// engines. Leases, sleeps and retry delays are absolute times in that clock, so a jump moves what is
// due: a forward jump makes leases expire and sleeps and retries end early; a backward jump delays
// what was due by the size of the jump. Either way no run is lost or runs twice, and every unit's
// result is committed once: a holder whose lease was taken over cannot commit.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, createWorkflow, type Engine, type EngineHooks } from "../mod.ts";
import { eventually, gate, schema } from "./support/fixtures.ts";
import { runtimeName } from "./support/runtime.ts";
import { sqliteSubjects } from "./support/sqlite_subjects.ts";

const HOUR = 3_600_000;
const MINUTE = 60_000;
/** Long enough that no heartbeat (every lease / 6 of real time) fires during a test: only the jumps move time. */
const LEASE_MS = 60_000;
const input = schema<{ n: number }>();
const subject = sqliteSubjects.find((s) => s.available);

/** A clock that the test moves by hand, starting at a fixed time. */
function handClock() {
  let time = Date.UTC(2026, 0, 1);
  return {
    now: () => time,
    jump(ms: number) {
      time += ms;
    },
  };
}

describe(`clock jumps on ${subject?.name ?? "no SQLite driver"} on ${runtimeName}`, {
  skip: subject === undefined,
}, () => {
  after(() => subject!.cleanup());

  /** Two engines on one new file with one clock, and every handler call and run completion they report. */
  async function twoEngines<W extends Parameters<typeof createEngine>[0]["workflows"][number]>(
    workflow: W,
    clock: ReturnType<typeof handClock>,
  ): Promise<{ a: Engine<W>; b: Engine<W>; completions: string[]; close(): Promise<void> }> {
    const driver = await subject!.load();
    const path = subject!.tempPath();
    const completions: string[] = [];
    const hooks: EngineHooks = { onRunComplete: (event) => void completions.push(event.runId) };
    const storages = [driver.open(path, { now: clock.now }), driver.open(path, { now: clock.now })];
    const [a, b] = storages.map((storage) =>
      createEngine({ storage, workflows: [workflow], runLeaseDurationMs: LEASE_MS, now: clock.now, hooks })
    );
    const close = async () => {
      for (const engine of [a!, b!]) await engine.stop();
      for (const storage of storages) await storage.close();
    };
    return { a: a!, b: b!, completions, close };
  }

  test("a forward jump past the lease lets another engine take over a run mid-step; the first engine's late commit is refused", async () => {
    const clock = handClock();
    const calls: string[] = [];
    const held = gate();
    let entered = false;
    const workflow = createWorkflow({ name: "w", input })
      .step("a", ({ input }) => (calls.push("a"), input.n + 1))
      .step("b", {
        retry: { maxAttempts: 2, initialDelayMs: 0 },
        handler: async ({ prev }) => {
          calls.push("b");
          // Only the first call (engine A's) waits, so that A still holds the step when the clock jumps.
          if (!entered) {
            entered = true;
            await held.promise;
          }
          return prev * 2;
        },
      })
      .step("c", ({ prev }) => (calls.push("c"), { result: prev }));
    const { a, b, completions, close } = await twoEngines(workflow, clock);
    try {
      const { runId } = await a.enqueue("w", { n: 4 });
      const aTick = a.tick();
      await eventually(() => entered || undefined);

      assert.equal(await b.tick(), 0, "B must not take a run whose lease is valid");
      clock.jump(HOUR);
      assert.equal(await b.tick(), 1, "after the jump, A's lease has expired and B reclaims the run");
      held.open();
      assert.equal(await aTick, 1);

      const details = await a.getRunStatus(runId);
      assert.equal(details?.run.status, "completed");
      assert.deepEqual(details.run.output, { result: 10 });
      assert.equal(details.run.claimCount, 2);
      assert.deepEqual(details.steps.map((s) => [s.name, s.attempts, s.output]), [["a", 1, 5], ["b", 2, 10], [
        "c",
        1,
        { result: 10 },
      ]]);
      // Step a is not repeated; b ran on both engines (the at-least-once window of the takeover),
      // A's attempt counted as lost, and was committed once, by B; the run completed once.
      assert.deepEqual(calls, ["a", "b", "b", "c"]);
      assert.deepEqual(completions, [runId]);
    } finally {
      held.open();
      await close();
    }
  });

  test("a backward jump lets no engine take a leased run, and delays but never loses runs that were due", async () => {
    const clock = handClock();
    const calls: string[] = [];
    const held = gate();
    let entered = 0;
    const workflow = createWorkflow({ name: "w", input })
      .step("only", async ({ input }) => {
        calls.push(`only ${input.n}`);
        if (input.n === 1) {
          entered++;
          await held.promise;
        }
        return input.n * 10;
      });
    const { a, b, completions, close } = await twoEngines(workflow, clock);
    try {
      const first = (await a.enqueue("w", { n: 1 })).runId;
      const aTick = a.tick();
      await eventually(() => entered > 0 || undefined);
      const second = (await a.enqueue("w", { n: 2 })).runId;

      clock.jump(-HOUR);
      // A's lease now ends an hour and a minute away, and the second run is due an hour away.
      assert.equal(await b.tick(), 0);
      const third = (await b.enqueue("w", { n: 3 })).runId;
      assert.equal(await b.tick(), 1, "a run enqueued after the jump is due at once");
      held.open();
      assert.equal(await aTick, 1, "A still holds its lease and commits");
      assert.equal(await b.tick(), 0, "the second run waits until the clock is back past its due time");

      clock.jump(HOUR);
      assert.equal(await b.tick(), 1);
      for (const [runId, n] of [[first, 1], [second, 2], [third, 3]] as const) {
        const details = await a.getRunStatus(runId);
        assert.equal(details?.run.status, "completed");
        assert.equal(details.run.output, n * 10);
        assert.equal(details.run.claimCount, 1);
      }
      assert.deepEqual(calls.sort(), ["only 1", "only 2", "only 3"]);
      assert.deepEqual(completions.sort(), [first, second, third].sort());
    } finally {
      held.open();
      await close();
    }
  });

  test("sleeps and retry delays keep their due times: jumps move them, never re-arm them or reset attempts", async () => {
    const clock = handClock();
    const calls: string[] = [];
    const workflow = createWorkflow({ name: "w", input })
      .step("a", ({ input }) => (calls.push("a"), input.n))
      .sleep("nap", "10m")
      .step("b", {
        retry: { maxAttempts: 3, backoff: "linear", initialDelayMs: 10 * MINUTE },
        handler: ({ prev, attempt }) => {
          calls.push(`b#${attempt}`);
          if (attempt === 1) throw new Error("not yet");
          return prev + 1;
        },
      })
      .step("c", ({ prev }) => (calls.push("c"), { result: prev }));
    const { a, b, completions, close } = await twoEngines(workflow, clock);
    try {
      const { runId } = await a.enqueue("w", { n: 7 });
      assert.equal(await a.tick(), 1); // runs a, parks in the sleep until +10m
      clock.jump(-HOUR);
      assert.equal(await b.tick(), 0, "a backward jump stretches the sleep");
      clock.jump(HOUR + 10 * MINUTE);
      assert.equal(await b.tick(), 1); // wakes once; b fails its first attempt and parks for 10m
      assert.equal(await a.tick(), 0, "the retry is not due yet");
      clock.jump(-HOUR);
      assert.equal(await a.tick(), 0, "a backward jump stretches the retry delay");
      clock.jump(2 * HOUR);
      assert.equal(await a.tick(), 1); // the second attempt succeeds; c runs; the run completes
      assert.equal(await b.tick(), 0);

      const details = await a.getRunStatus(runId);
      assert.equal(details?.run.status, "completed");
      assert.deepEqual(details.run.output, { result: 8 });
      assert.deepEqual(details.steps.map((s) => [s.name, s.status, s.attempts]), [
        ["a", "completed", 1],
        ["nap", "completed", 1],
        ["b", "completed", 2],
        ["c", "completed", 1],
      ]);
      assert.deepEqual(calls, ["a", "b#1", "b#2", "c"]);
      assert.deepEqual(completions, [runId]);
    } finally {
      await close();
    }
  });
});
