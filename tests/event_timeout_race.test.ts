// An event sent while a wait times out: `sendEvent()` returns true only if the run consumes the
// event; otherwise it returns false and the run fails with WAIT_TIMEOUT. The interleavings are
// forced, not hoped for: a storage wrapper delays the call that commits the timeout (on every
// storage) and sends the event just before or just after it; on SQLite a driver wrapper also holds
// the failure's write inside its transaction while the event is sent.
import assert from "node:assert/strict";
import { createEngine, createWorkflow, SqlStorage, type StorageAdapter } from "../mod.ts";
import type { EventWait, RunAdvance } from "../src/storage/adapter.ts";
import { describeEachStorage, type StorageCell } from "./support/storages.ts";
import { faultyDriver } from "./support/faulty_driver.ts";
import { schema } from "./support/fixtures.ts";
import { interceptedStorage, type Interceptor } from "./support/intercepted_storage.ts";

const T0 = 1_700_000_000_000;
const TIMEOUT_MS = 1_000;

function harness(storage: StorageAdapter, wrap: (storage: StorageAdapter) => StorageAdapter = (s) => s) {
  let clock = T0;
  const failures: string[] = [];
  const workflow = createWorkflow({ name: "approval", input: schema<{ n: number }>() })
    .waitForEvent("approve", { schema: schema<string>(), timeout: TIMEOUT_MS })
    .step("done", ({ prev }) => `approved by ${prev}`)
    .onFailure(({ error }) => void failures.push(error.message));
  const engine = createEngine({ storage: wrap(storage), workflows: [workflow], now: () => clock });
  return {
    engine,
    failures,
    /** Enqueues a run, parks it in its wait and moves the clock to the wait's timeout. */
    async timingOutRun(): Promise<string> {
      const { runId } = await engine.enqueue("approval", { n: 1 });
      await engine.tick();
      assert.equal((await engine.getRunStatus(runId))?.run.status, "waiting");
      clock += TIMEOUT_MS;
      return runId;
    },
  };
}

/** Whether a storage call commits a wait's timeout: the wait itself past its timeout, or a failure. */
function commitsTimeout(method: string, args: readonly unknown[]): boolean {
  if (method === "awaitEvent") {
    const wait = args[2] as EventWait;
    return wait.timeoutAt !== null && wait.timeoutAt <= wait.now;
  }
  return method === "advanceRun" && (args[2] as RunAdvance).status === "failed";
}

/** An interceptor that runs `send` once, before or after the first call that commits a timeout. */
function sendingAround(when: "before" | "after", send: () => Promise<void>): Interceptor {
  let sent = false;
  return async (method, args, forward) => {
    if (sent || !commitsTimeout(method, args)) return await forward();
    sent = true;
    if (when === "before") await send();
    const result = await forward();
    if (when === "after") await send();
    return result;
  };
}

/** Times a run's wait out with an event sent just `when` the timeout commits; returns what sendEvent() said. */
async function raceTheTimeout(cell: StorageCell, when: "before" | "after") {
  let send = async () => {};
  const h = harness(await cell.open(), (s) => interceptedStorage(s, sendingAround(when, () => send())));
  cell.stopAfter(h.engine);
  const runId = await h.timingOutRun();
  let acknowledged: boolean | undefined;
  send = async () => void (acknowledged = await h.engine.sendEvent(runId, "approve", "ops"));
  await h.engine.tick();
  return { ...h, runId, acknowledged, details: await h.engine.getRunStatus(runId) };
}

describeEachStorage((cell) => {
  cell.it("an event sent just before the timeout is committed is acknowledged and consumed", async () => {
    const { acknowledged, details, failures } = await raceTheTimeout(cell, "before");
    assert.equal(acknowledged, true, "the event was sent while the run could still take it");
    assert.equal(details?.run.status, "completed");
    assert.equal(details?.run.output, "approved by ops");
    assert.deepEqual(failures, []);
  });

  cell.it("an event sent just after the timeout is committed is refused", async () => {
    const { acknowledged, details, failures, engine, runId } = await raceTheTimeout(cell, "after");
    assert.equal(acknowledged, false, "the run had already timed out");
    assert.equal(details?.run.status, "failed");
    assert.equal(details?.run.error?.code, "WAIT_TIMEOUT");
    assert.deepEqual(details?.steps.map((s) => [s.name, s.status]), [["approve", "failed"]]);
    assert.equal(failures.length, 1, "onFailure ran once");
    await engine.resume(runId);
    assert.equal(await engine.sendEvent(runId, "approve", "again"), true, "a resumed wait takes an event");
    await engine.tick();
    assert.equal((await engine.getRunStatus(runId))?.run.output, "approved by again");
  });
});

describeEachStorage((cell) => {
  cell.it(
    "an event sent while the timeout's write is held waits for its transaction, then is refused",
    async () => {
      await cell.open();
      const faults = faultyDriver(cell.database().driver!());
      const storage = new SqlStorage(faults.driver);
      const h = harness(storage);
      try {
        const runId = await h.timingOutRun();
        // The write that fails the run, inside the transaction that decided the timeout.
        const held = faults.hold((s) =>
          s.sql.startsWith("UPDATE reflow_runs SET status = ?") && s.params[0] === "failed"
        );
        const tick = h.engine.tick();
        await held.reached;
        let settled = false;
        const sent = h.engine.sendEvent(runId, "approve", "ops").finally(() => (settled = true));
        for (let turn = 0; turn < 20; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
        assert.equal(settled, false, "sendEvent() waits for the transaction that decides the timeout");
        held.release();
        await tick;
        assert.equal(await sent, false);
        const details = await h.engine.getRunStatus(runId);
        assert.equal(details?.run.status, "failed");
        assert.equal(details?.run.error?.code, "WAIT_TIMEOUT");
        assert.equal(h.failures.length, 1);
      } finally {
        await h.engine.stop();
        await storage.close();
      }
    },
  );
}, (entry) => entry.kind === "sqlite");
