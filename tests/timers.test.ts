// Durations above 2^31−1 ms (about 24.8 days) wait: every runtime's setTimeout fires such a delay
// at once, so src/timers.ts chains shorter timers, and every duration the API accepts goes through it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createEngine, createWorkflow, type StorageAdapter } from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { delay, MAX_TIMER_MS, setLongInterval, setLongTimeout } from "../src/timers.ts";
import { schema } from "./support/fixtures.ts";

const DAY_MS = 86_400_000;
const THIRTY_DAYS = 30 * DAY_MS;
const input = schema<{ n: number }>();

/** Replaces the global setTimeout while `body` runs: timers are recorded and fired by hand. */
async function withFakeTimers(
  body: (timers: { delays: number[]; fireNext(): void }) => Promise<void> | void,
) {
  const realSet = globalThis.setTimeout;
  const realClear = globalThis.clearTimeout;
  const pending = new Map<number, () => void>();
  const delays: number[] = [];
  let next = 1;
  globalThis.setTimeout = ((callback: () => void, ms: number) => {
    delays.push(ms);
    const id = next++;
    pending.set(id, callback);
    return id;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((id: number) => void pending.delete(id)) as typeof clearTimeout;
  try {
    await body({
      delays,
      fireNext() {
        const [id, callback] = pending.entries().next().value!;
        pending.delete(id);
        callback();
      },
    });
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
  }
}

test("setLongTimeout chains timers below the runtimes' limit and fires once, at the end", async () => {
  await withFakeTimers(({ delays, fireNext }) => {
    let fired = 0;
    setLongTimeout(() => fired++, THIRTY_DAYS);
    assert.deepEqual(delays, [MAX_TIMER_MS]);
    fireNext();
    assert.equal(fired, 0, "30 days have not passed after the first timer");
    assert.deepEqual(delays, [MAX_TIMER_MS, THIRTY_DAYS - MAX_TIMER_MS]);
    fireNext();
    assert.equal(fired, 1);
  });
});

test("setLongTimeout's cancel stops a chain mid-way; setLongInterval re-arms after each call", async () => {
  await withFakeTimers(({ delays, fireNext }) => {
    let fired = 0;
    const cancel = setLongTimeout(() => fired++, THIRTY_DAYS);
    fireNext();
    cancel();
    assert.equal(delays.length, 2);
    let ticks = 0;
    const stop = setLongInterval(() => ticks++, 10);
    fireNext();
    fireNext();
    stop();
    assert.equal(ticks, 2);
    assert.deepEqual(delays.slice(2), [10, 10, 10]);
    assert.equal(fired, 0);
  });
});

test("delay() waits out a 30-day duration in chained timers and ends early on abort", async () => {
  await withFakeTimers(async ({ delays }) => {
    const controller = new AbortController();
    const waited = delay(THIRTY_DAYS, controller.signal);
    assert.deepEqual(delays, [MAX_TIMER_MS]);
    controller.abort();
    await waited;
  });
});

/** A storage that counts calls of some methods. */
function counting(storage: StorageAdapter, methods: readonly string[]) {
  const counts: Record<string, number> = Object.fromEntries(methods.map((m) => [m, 0]));
  const proxy = new Proxy(storage, {
    get(target, property, receiver) {
      if (typeof property === "string" && property in counts) counts[property]!++;
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { storage: proxy, counts };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("a step with a 30-day timeoutMs is not timed out at once", async () => {
  const workflow = createWorkflow({ name: "w", input }).step("s", {
    timeoutMs: THIRTY_DAYS,
    handler: async () => {
      await pause(20);
      return "done";
    },
  });
  const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow] });
  const { runId } = await engine.enqueue("w", { n: 1 });
  await engine.tick();
  assert.equal((await engine.getRunStatus(runId))?.run.status, "completed");
});

test("start(30 days), a 30-day retention interval and a 60-day lease's heartbeats do not fire in a loop", async () => {
  const { storage, counts } = counting(new MemoryStorage(), ["claimRuns", "purgeRuns", "heartbeatRun"]);
  const workflow = createWorkflow({ name: "w", input }).step("s", async () => {
    await pause(60);
    return 1;
  });
  const engine = createEngine({
    storage,
    workflows: [workflow],
    retention: { olderThan: "1d", interval: "30d" },
    runLeaseDurationMs: 2 * THIRTY_DAYS,
  });
  await engine.enqueue("w", { n: 1 });
  await engine.start(THIRTY_DAYS);
  await pause(100);
  await engine.stop();
  // A timer that fired at once would have made hundreds of calls in 100 ms.
  assert.ok(counts.claimRuns! <= 5, `claimRuns called ${counts.claimRuns} times`);
  assert.equal(counts.purgeRuns, 1, "only the sweep at start");
  assert.equal(counts.heartbeatRun, 0, "no renewal is due in a 60-day lease");
});

test("a 30-day stopTimeoutMs lets a step finish instead of aborting it at once", async () => {
  let aborted = false;
  const workflow = createWorkflow({ name: "w", input }).step("s", async ({ signal }) => {
    signal.addEventListener("abort", () => (aborted = true));
    await pause(40);
    return "finished";
  });
  const storage = new MemoryStorage();
  const engine = createEngine({ storage, workflows: [workflow], stopTimeoutMs: THIRTY_DAYS });
  const { runId } = await engine.enqueue("w", { n: 1 });
  await engine.start(10);
  while ((await storage.getRun(runId))?.status !== "running") await pause(5);
  await engine.stop();
  assert.equal(aborted, false);
  assert.equal((await engine.getRunStatus(runId))?.run.status, "completed");
});

test("a parallel branch's 30-day retry delay is waited, not retried at once", async () => {
  let calls = 0;
  const workflow = createWorkflow({ name: "w", input }).parallel({
    b: {
      retry: { maxAttempts: 3, initialDelayMs: THIRTY_DAYS, maxDelayMs: THIRTY_DAYS, jitter: 0 },
      handler: () => {
        calls++;
        throw new Error("try again in a month");
      },
    },
  });
  const storage = new MemoryStorage();
  const engine = createEngine({ storage, workflows: [workflow], stopTimeoutMs: 0 });
  const { runId } = await engine.enqueue("w", { n: 1 });
  await engine.start(10);
  while ((await storage.getStepResults(runId)).length === 0) await pause(5);
  await pause(50);
  await engine.stop();
  assert.equal(calls, 1);
  const [branch] = await storage.getStepResults(runId);
  assert.equal(branch?.status, "retrying");
  assert.ok(branch!.dueAt! - branch!.updatedAt >= THIRTY_DAYS - 1);
});
