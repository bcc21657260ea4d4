// Listing, resuming and purging runs through the engine, on MemoryStorage and every SQLite driver
// that loads in this runtime.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, createEngine, createWorkflow, type RunInfo, type StorageAdapter } from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { describeEachStorage } from "./support/storages.ts";
import { eventually, schema, thrownBy } from "./support/fixtures.ts";

const HOUR = 3_600_000;
const input = schema<{ n: number }>();
const echo = createWorkflow({ name: "echo", input }).step("echo", ({ input }) => input.n);
const other = createWorkflow({ name: "other", input }).step("noop", () => null);
const waiter = createWorkflow({ name: "waiter", input }).waitForEvent("go").step("done", () => "went");

/** An engine on `storage` whose clock the test sets. */
function engineAt(storage: StorageAdapter, failing?: { times: number }) {
  const clock = { now: 1_000_000 };
  const counts = { prepare: 0, flaky: 0 };
  const flaky = createWorkflow({ name: "flaky", input })
    .step("prepare", ({ input }) => {
      counts.prepare++;
      return input.n;
    })
    .step("flaky", {
      retry: { maxAttempts: 2, initialDelayMs: 0 },
      handler: ({ prev }) => {
        counts.flaky++;
        if (failing !== undefined && failing.times-- > 0) throw new Error("not yet");
        return prev * 10;
      },
    });
  const engine = createEngine({ storage, workflows: [echo, other, waiter, flaky], now: () => clock.now });
  return { engine, clock, counts };
}

async function allPages(
  engine: ReturnType<typeof engineAt>["engine"],
  filters: { status?: RunInfo["status"] | RunInfo["status"][]; workflow?: string },
  limit: number,
): Promise<string[]> {
  const ids: string[] = [];
  let page = await engine.listRuns({ ...filters, limit });
  for (;;) {
    assert.ok(page.length <= limit);
    ids.push(...page.map((run) => run.id));
    if (page.next === null) return ids;
    page = await engine.listRuns({ ...filters, limit, ...page.next });
  }
}

describe("listRuns, purge and retention options", () => {
  const engine = createEngine({ storage: new MemoryStorage(), workflows: [echo] });
  for (
    const [label, options, field] of [
      ["limit 0", { limit: 0 }, "limit"],
      ["limit 1001", { limit: 1001 }, "limit"],
      ["fractional limit", { limit: 2.5 }, "limit"],
      ["unknown status", { status: "done" }, "status"],
      ["unknown status in a list", { status: ["failed", "lost"] }, "status"],
      ["NaN before", { before: Number.NaN }, "before"],
      ["beforeId without before", { beforeId: "r1" }, "beforeId"],
      ["numeric workflow", { workflow: 7 }, "workflow"],
    ] as const
  ) {
    test(`listRuns with ${label} is a ConfigError on field ${field}`, async () => {
      const thrown = await engine.listRuns(options as never).then(() => undefined, (e: unknown) => e);
      assert.ok(thrown instanceof ConfigError);
      assert.equal(thrown.field, field);
    });
  }

  for (
    const [label, options, field] of [
      ["a negative age", { olderThan: -1 }, "olderThan"],
      ["an unparseable age", { olderThan: "a week" }, "olderThan"],
      ["an unfinished status", { olderThan: "1d", status: "running" }, "status"],
      ["an empty status list", { olderThan: "1d", status: [] }, "status"],
      ["batchSize 0", { olderThan: "1d", batchSize: 0 }, "batchSize"],
    ] as const
  ) {
    test(`purge with ${label} is a ConfigError on field ${field}; retention on retention.${field}`, async () => {
      const thrown = await engine.purge(options as never).then(() => undefined, (e: unknown) => e);
      assert.ok(thrown instanceof ConfigError);
      assert.equal(thrown.field, field);
      const error = thrownBy(
        () => createEngine({ storage: new MemoryStorage(), workflows: [echo], retention: options as never }),
        ConfigError,
      );
      assert.equal(error.field, `retention.${field}`);
    });
  }

  test("a zero retention interval is a ConfigError", () => {
    const error = thrownBy(
      () =>
        createEngine({
          storage: new MemoryStorage(),
          workflows: [echo],
          retention: { olderThan: "1d", interval: 0 },
        }),
      ConfigError,
    );
    assert.equal(error.field, "retention.interval");
  });
});

describeEachStorage(({ it, open }) => {
  it("listRuns pages newest first without repeating or dropping runs that share a createdAt", async () => {
    const { engine, clock } = engineAt(await open());
    const expected: string[] = [];
    for (let i = 0; i < 11; i++) {
      if (i === 2 || i === 9) clock.now += 1; // three groups of runs created in the same ms
      expected.push((await engine.enqueue("echo", { n: i })).runId);
    }
    const sorted = (ids: string[]) => [...ids].sort((a, b) => a < b ? 1 : a > b ? -1 : 0);
    const newestFirst = [
      ...sorted(expected.slice(9)),
      ...sorted(expected.slice(2, 9)),
      ...sorted(expected.slice(0, 2)),
    ];
    for (const limit of [1, 3, 4, 11, 50]) {
      assert.deepEqual(await allPages(engine, {}, limit), newestFirst, `pages of ${limit}`);
    }
    const last = await engine.listRuns({ limit: 11 });
    assert.equal(last.next, null, "a page that holds the last run has no next cursor");
    assert.deepEqual(last.map((run) => run.id), newestFirst);
    assert.deepEqual(last.find((run) => run.id === expected[10])?.input, { n: 10 });
  });

  it("listRuns filters by status and workflow, also across pages", async () => {
    const { engine, clock } = engineAt(await open());
    const echoes = [];
    for (let i = 0; i < 5; i++) echoes.push((await engine.enqueue("echo", { n: i })).runId);
    const others = [];
    for (let i = 0; i < 3; i++) others.push((await engine.enqueue("other", { n: i })).runId);
    clock.now += 1;
    await engine.cancel(echoes[1]);
    await engine.cancel(others[0]);
    assert.deepEqual(new Set(await allPages(engine, { workflow: "other" }, 2)), new Set(others));
    assert.deepEqual(
      new Set(await allPages(engine, { status: "cancelled" }, 1)),
      new Set([echoes[1], others[0]]),
    );
    assert.deepEqual(await allPages(engine, { status: "cancelled", workflow: "echo" }, 1), [echoes[1]]);
    const pendingOrCancelled = await allPages(engine, { status: ["pending", "cancelled"] }, 3);
    assert.equal(pendingOrCancelled.length, 8);
    assert.deepEqual(await allPages(engine, { status: "completed" }, 3), []);
  });

  it("resume re-queues a failed run: completed steps are kept, the failed step starts over", async () => {
    const { engine, counts } = engineAt(await open(), { times: 2 });
    const { runId } = await engine.enqueue("flaky", { n: 4 });
    await engine.tick();
    const failed = await engine.getRunStatus(runId);
    assert.equal(failed?.run.status, "failed");
    assert.deepEqual([counts.prepare, counts.flaky], [1, 2]);
    assert.equal(await engine.resume(runId), true);
    const requeued = await engine.getRunStatus(runId);
    assert.equal(requeued?.run.status, "pending");
    assert.equal(requeued?.run.error, null);
    await engine.tick();
    const done = await engine.getRunStatus(runId);
    assert.equal(done?.run.status, "completed");
    assert.equal(done?.run.output, 40);
    assert.deepEqual([counts.prepare, counts.flaky], [1, 3], "prepare not re-run; flaky got fresh attempts");
    assert.deepEqual(done?.steps.map((s) => [s.name, s.attempts]), [["prepare", 1], ["flaky", 1]]);
    assert.equal(await engine.resume(runId), false, "a completed run is not resumed");
  });

  it("resume re-queues a cancelled run and only finished-unsuccessfully runs", async () => {
    const { engine } = engineAt(await open());
    const { runId } = await engine.enqueue("echo", { n: 7 });
    assert.equal(await engine.resume(runId), false, "a pending run is not resumed");
    assert.equal(await engine.resume("no-such-run"), false);
    assert.equal(await engine.cancel(runId), true);
    assert.equal(await engine.resume(runId), true);
    await engine.tick();
    assert.equal((await engine.getRunStatus(runId))?.run.output, 7);
  });

  it("purge deletes finished runs past the age with their steps, in batches, and never unfinished ones", async () => {
    const { engine, clock } = engineAt(await open(), { times: 100 });
    const old: string[] = [];
    for (let i = 0; i < 5; i++) old.push((await engine.enqueue("echo", { n: i })).runId);
    const oldFailed = (await engine.enqueue("flaky", { n: 1 })).runId;
    const oldWaiting = (await engine.enqueue("waiter", { n: 0 })).runId;
    await engine.tick();
    assert.equal((await engine.getRunStatus(oldWaiting))?.run.status, "waiting");
    clock.now += 2 * HOUR;
    const recent = (await engine.enqueue("echo", { n: 9 })).runId;
    await engine.tick();

    assert.equal(await engine.purge({ olderThan: "1h", status: "failed" }), 1);
    assert.equal(await engine.getRunStatus(oldFailed), null);
    assert.equal(await engine.purge({ olderThan: "1h", batchSize: 2 }), 5);
    for (const runId of old) assert.equal(await engine.getRunStatus(runId), null);
    assert.deepEqual(new Set(await allPages(engine, {}, 10)), new Set([recent, oldWaiting]));
    assert.equal(await engine.purge({ olderThan: 0 }), 0, "finished at this very ms: not older than 0 yet");
    clock.now += 1;
    assert.equal(await engine.purge({ olderThan: 0 }), 1);
    assert.equal((await engine.getRunStatus(oldWaiting))?.run.status, "waiting", "unfinished runs are kept");
    assert.equal(await engine.sendEvent(oldWaiting, "go", null), true);
    await engine.tick();
    assert.equal((await engine.getRunStatus(oldWaiting))?.run.status, "completed");
  });

  it("the retention option purges old finished runs while started, and keeps unfinished ones", async () => {
    const storage = await open();
    const clock = { now: 1_000_000 };
    const workflows = [echo, waiter];
    const filler = createEngine({ storage, workflows, now: () => clock.now });
    const finished = (await filler.enqueue("echo", { n: 1 })).runId;
    const parked = (await filler.enqueue("waiter", { n: 1 })).runId;
    await filler.tick();
    clock.now += 2 * HOUR;
    const engine = createEngine({
      storage,
      workflows,
      now: () => clock.now,
      retention: { olderThan: "1h", interval: "10ms" },
    });
    await engine.start(HOUR);
    try {
      await eventually(async () => (await engine.getRunStatus(finished)) === null || undefined);
      const young = (await engine.enqueue("echo", { n: 2 })).runId;
      await eventually(async () =>
        (await engine.getRunStatus(young))?.run.status === "completed" || undefined
      );
      clock.now += 2 * HOUR;
      await eventually(async () => (await engine.getRunStatus(young)) === null || undefined);
      assert.equal((await engine.getRunStatus(parked))?.run.status, "waiting");
    } finally {
      await engine.stop();
    }
  });
});
