import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ConfigError,
  createEngine,
  createWorkflow,
  type EngineEvent,
  type EventStream,
  StreamLaggedError,
} from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { eventually, schema, thrownBy } from "./support/fixtures.ts";

const counted = createWorkflow({ name: "counted", input: schema<{ steps: number }>() })
  .step("one", ({ input }) => input.steps)
  .step("two", ({ prev }) => prev + 1)
  .step("three", ({ prev }) => prev + 1)
  .step("four", ({ prev }) => prev + 1)
  .step("five", ({ prev }) => prev + 1);

function newEngine(stopTimeoutMs = 60_000) {
  return createEngine({ storage: new MemoryStorage(), workflows: [counted], stopTimeoutMs });
}

async function take(stream: EventStream, count: number): Promise<EngineEvent[]> {
  const events: EngineEvent[] = [];
  while (events.length < count) {
    const next = await stream.next();
    if (next.done) break;
    events.push(next.value);
  }
  return events;
}

/** Fails instead of hanging when a promise that must settle does not (a deadlock check, not a timing one). */
function settlesWithin<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function completedSteps(engine: ReturnType<typeof newEngine>, runId: string): Promise<number> {
  const details = await engine.getRunStatus(runId);
  return details?.steps.filter((step) => step.status === "completed").length ?? 0;
}

/**
 * A started engine with a stream of 2 that nobody reads: runStart and stepStart fill it, so the run
 * finishes the step it is in and then waits. Resolves once that first step is committed.
 */
async function stalledRun() {
  const engine = newEngine();
  const stream = engine.stream({ bufferSize: 2 });
  const { runId } = await engine.enqueue("counted", { steps: 1 });
  await engine.start(10);
  await eventually(async () => (await completedSteps(engine, runId)) >= 1 ? true : undefined);
  return { engine, stream, runId };
}

describe("engine.stream()", () => {
  test("delivers a run's events in order to every stream opened before them", async () => {
    const engine = newEngine();
    const first = engine.stream();
    const second = engine.stream();
    const { runId } = await engine.enqueue("counted", { steps: 1 });
    await engine.tick();
    const expected = [
      "runStart",
      ...["one", "two", "three", "four", "five"].flatMap(() => ["stepStart", "stepComplete"]),
      "runComplete",
    ];
    for (const stream of [first, second]) {
      const events = await take(stream, expected.length);
      assert.deepEqual(events.map((event) => event.type), expected);
      assert.ok(events.every((event) => event.runId === runId));
      assert.deepEqual(events.at(-1), { type: "runComplete", runId, workflow: "counted", output: 5 });
    }
    await engine.stop();
  });

  test("break ends the stream and unsubscribes it; other streams go on", async () => {
    const engine = newEngine();
    const leaving = engine.stream({ bufferSize: 1 });
    const staying = engine.stream();
    await engine.enqueue("counted", { steps: 1 });
    const tick = engine.tick();
    for await (const event of leaving) {
      assert.equal(event.type, "runStart");
      break;
    }
    await settlesWithin(tick, "a tick after the bounded stream's consumer left");
    assert.deepEqual(await leaving.next(), { value: undefined, done: true });
    assert.equal((await take(staying, 12)).length, 12);
    await engine.stop();
  });

  test("a full bounded stream pauses runs at their next step until the consumer reads", async () => {
    const { engine, stream, runId } = await stalledRun();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(await completedSteps(engine, runId), 1, "the run went on past a full buffer");
    const events = await take(stream, 12);
    assert.equal(events.at(-1)?.type, "runComplete");
    assert.equal(await completedSteps(engine, runId), 5);
    await engine.stop();
  });

  test("a stalled consumer does not hold up a cancellation", async () => {
    const { engine, stream, runId } = await stalledRun();
    assert.equal(await engine.cancel(runId), true);
    await eventually(async () => (await engine.getRunStatus(runId))?.run.status === "cancelled" || undefined);
    await settlesWithin(engine.stop(), "stop() after a cancel");
    assert.ok((await completedSteps(engine, runId)) < 5);
    await stream.return?.();
  });

  test("stop() is not held up by a stalled consumer, lets runs finish, then ends the stream after its events", async () => {
    const { engine, stream, runId } = await stalledRun();
    await settlesWithin(engine.stop(), "stop() with a stalled consumer");
    const events: EngineEvent[] = [];
    for await (const event of stream) events.push(event);
    assert.equal(events[0]?.type, "runStart");
    // stop() lets the step in flight finish; the run is handed back before its next step.
    assert.equal(events.some((event) => event.type === "runComplete"), false);
    assert.equal((await engine.getRunStatus(runId))?.run.status, "pending");
  });

  test("asyncDispose and close() end a stream and resolve a pending read as done", async () => {
    const engine = newEngine();
    const disposed = engine.stream();
    const pending = disposed.next();
    await disposed[Symbol.asyncDispose]();
    assert.deepEqual(await pending, { value: undefined, done: true });
    const closed = engine.stream();
    closed.close();
    await engine.enqueue("counted", { steps: 1 });
    await engine.tick();
    assert.deepEqual(await closed.next(), { value: undefined, done: true });
  });

  test("a stream opened after stop() works when the engine runs again", async () => {
    const engine = newEngine();
    await engine.stop();
    const stream = engine.stream();
    await engine.enqueue("counted", { steps: 1 });
    await engine.tick();
    assert.equal((await take(stream, 12)).at(-1)?.type, "runComplete");
  });

  test("a buffer left full for lagTimeoutMs ends the stream with StreamLaggedError; the runs go on", async () => {
    const engine = newEngine();
    const stream = engine.stream({ bufferSize: 2, lagTimeoutMs: 20 });
    const { runId } = await engine.enqueue("counted", { steps: 1 });
    await engine.start(10);
    await eventually(async () => (await engine.getRunStatus(runId))?.run.status === "completed" || undefined);
    const events = await take(stream, 3);
    assert.deepEqual(events.map((event) => event.type), ["runStart", "stepStart", "stepComplete"]);
    await assert.rejects(stream.next(), (error) => {
      assert.ok(error instanceof StreamLaggedError);
      assert.equal(error.code, "STREAM_LAGGED");
      assert.deepEqual([error.bufferSize, error.lagTimeoutMs], [2, 20]);
      return true;
    });
    assert.deepEqual(await stream.next(), { value: undefined, done: true });
    await engine.stop();
  });

  test("tick() returns while a bounded stream is unread, once the stream gives up on its consumer", async () => {
    const engine = newEngine();
    const stream = engine.stream({ bufferSize: 1, lagTimeoutMs: 20 });
    const { runId } = await engine.enqueue("counted", { steps: 1 });
    assert.equal(await settlesWithin(engine.tick(), "tick() with an unread bounded stream"), 1);
    assert.equal((await engine.getRunStatus(runId))?.run.status, "completed");
    assert.equal((await take(stream, 1))[0]?.type, "runStart");
    await assert.rejects(stream.next(), StreamLaggedError);
  });

  test("an engine whose stream is full claims no run, so another engine takes the queued ones", async () => {
    const storage = new MemoryStorage();
    const stalled = createEngine({ storage, workflows: [counted], concurrency: 1 });
    const stream = stalled.stream({ bufferSize: 1, lagTimeoutMs: 60_000 });
    const other = createEngine({ storage, workflows: [counted] });
    const runIds = [];
    for (let i = 0; i < 5; i++) runIds.push((await stalled.enqueue("counted", { steps: 1 })).runId);
    await stalled.start(5);
    await eventually(async () =>
      (await storage.listRuns({ statuses: ["running"], limit: 5 })).length === 1 || undefined
    );
    await other.start(5);
    await eventually(async () =>
      (await storage.listRuns({ statuses: ["completed"], limit: 5 })).length === 4 || undefined
    );
    const paused = (await storage.listRuns({ statuses: ["running"], limit: 5 }))[0];
    assert.ok(paused !== undefined, "the run the stalled engine claimed waits for its consumer");
    stream.close();
    await eventually(async () => (await storage.getRun(paused.id))?.status === "completed" || undefined);
    await Promise.all([stalled.stop(), other.stop()]);
  });

  for (const lagTimeoutMs of [0, -1, 1.5, Infinity, "10"]) {
    test(`lagTimeoutMs ${String(lagTimeoutMs)} is a ConfigError on field lagTimeoutMs`, () => {
      const engine = newEngine();
      const error = thrownBy(() => engine.stream({ lagTimeoutMs: lagTimeoutMs as number }), ConfigError);
      assert.equal(error.field, "lagTimeoutMs");
    });
  }

  for (const bufferSize of [-1, 1.5, Number.NaN, "10"]) {
    test(`bufferSize ${String(bufferSize)} is a ConfigError on field bufferSize`, () => {
      const engine = newEngine();
      const error = thrownBy(() => engine.stream({ bufferSize: bufferSize as number }), ConfigError);
      assert.equal(error.field, "bufferSize");
    });
  }
});
