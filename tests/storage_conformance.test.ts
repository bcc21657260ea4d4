// Runs every storage conformance case against every storage of the shared table, plus MemoryStorage's own tests.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { StorageError } from "../src/errors.ts";
import type { StorageAdapter } from "../src/storage/adapter.ts";
import { conformanceCases } from "../src/storage/conformance.ts";
import { MemoryStorage } from "../src/storage/memory.ts";
import { runtimeName } from "./support/runtime.ts";
import { storages } from "./support/storages.ts";

const T0 = 1_700_000_000_000;

// A case may close the storage itself (the close() case); closing it again may then report "closed".
async function closeQuietly(storage: StorageAdapter): Promise<void> {
  try {
    await storage.close();
  } catch (error) {
    if (!(error instanceof StorageError && error.kind === "closed")) throw error;
  }
}

for (const entry of storages) {
  for (const conformanceCase of conformanceCases) {
    test(`${entry.name} on ${runtimeName}: ${conformanceCase.name}`, { skip: entry.skip }, async () => {
      const database = await entry.database();
      const storage = await database.open();
      const peers: StorageAdapter[] = [];
      try {
        await conformanceCase.run(storage, {
          async openPeer() {
            const peer = await database.open();
            if (peer !== storage) peers.push(peer);
            return peer;
          },
        });
      } finally {
        for (const peer of peers) await closeQuietly(peer);
        await closeQuietly(storage);
        await database.close();
      }
    });
  }
  after(() => entry.cleanup());
}

async function rejectsWithStorageError(call: () => Promise<unknown>, operation: string): Promise<void> {
  await assert.rejects(call, (error: unknown) => {
    assert.ok(error instanceof StorageError, `expected a StorageError, got ${String(error)}`);
    assert.equal(error.operation, operation);
    return true;
  });
}

test("MemoryStorage: claims stay correct and ordered with 100,000 runs that are not due", async () => {
  const storage = new MemoryStorage();
  for (let i = 0; i < 100_000; i++) {
    await storage.createRun({
      id: `later-${i}`,
      workflowName: "wf",
      input: "0",
      idempotencyKey: null,
      createdAt: T0 + 1e9 + i,
    });
    if (i % 100 === 0) {
      await storage.createRun({
        id: `due-${i / 100}`,
        workflowName: "wf",
        input: "0",
        idempotencyKey: null,
        createdAt: T0 - i,
      });
    }
  }
  // Due runs were created with decreasing createdAt, so the oldest due run is the last created.
  for (let n = 999; n >= 0; n--) {
    const claimed = await storage.claimRuns({
      workflowNames: ["wf"],
      limit: 1,
      now: T0,
      leaseDurationMs: 60_000,
    });
    assert.deepEqual(claimed.map((run) => run.id), [`due-${n}`]);
  }
  assert.deepEqual(
    await storage.claimRuns({ workflowNames: ["wf"], limit: 10, now: T0, leaseDurationMs: 60_000 }),
    [],
  );
});

test("MemoryStorage: many heartbeats keep claims correct, and an earlier expiry is honoured", async () => {
  const storage = new MemoryStorage();
  await storage.createRun({ id: "r1", workflowName: "wf", input: "0", idempotencyKey: null, createdAt: T0 });
  await storage.createRun({ id: "r2", workflowName: "wf", input: "0", idempotencyKey: null, createdAt: T0 });
  const claimAt = (now: number) =>
    storage.claimRuns({ workflowNames: ["wf"], limit: 5, now, leaseDurationMs: 1_000 });
  const [r1, r2] = await claimAt(T0);
  assert.ok(r1 && r2);
  for (let i = 1; i <= 10_000; i++) {
    assert.equal(await storage.heartbeatRun("r1", r1.leaseId, T0 + 2_000 + i), true);
    assert.equal(await storage.heartbeatRun("r2", r2.leaseId, T0 + 500_000 - (i % 2) * 1_000), true);
    // A claim past the original expiries moves both index entries to the renewed expiries, so the
    // next earlier expiry of r2 must be indexed anew (and the replaced entries compacted away).
    if (i % 10 === 0) assert.deepEqual(await claimAt(T0 + 1_500), []);
  }
  assert.equal(await storage.heartbeatRun("r2", r2.leaseId, T0 + 5_000), true);
  assert.deepEqual(await claimAt(T0 + 4_999), []);
  assert.deepEqual((await claimAt(T0 + 20_000)).map((run) => run.id), ["r2", "r1"]);
});

test("MemoryStorage: the injected clock drives the methods that take no time", async () => {
  let now = T0;
  const storage = new MemoryStorage({ now: () => now });
  await storage.createRun({
    id: "r1",
    workflowName: "wf",
    input: "0",
    idempotencyKey: null,
    createdAt: T0 + 10,
  });
  assert.equal(await storage.claimNextRun(["wf"]), null);
  now = T0 + 10;
  const run = await storage.claimNextRun(["wf"]);
  assert.equal(run?.dueAt, T0 + 10 + 30_000);
  now = T0 + 20;
  assert.equal(await storage.heartbeatRun("r1", run.leaseId), true);
  assert.equal((await storage.getRun("r1"))?.dueAt, T0 + 20 + 30_000);
  now = T0 + 30;
  assert.equal(await storage.updateRunStatus("r1", "pending"), true);
  const parked = await storage.getRun("r1");
  assert.deepEqual([parked?.status, parked?.dueAt, parked?.updatedAt, parked?.leaseId], [
    "pending",
    T0 + 30,
    T0 + 30,
    null,
  ]);
});

test("MemoryStorage: bad input rejects with a StorageError, never a TypeError", async () => {
  const storage = new MemoryStorage();
  const claim = (limit: number, extra: object = {}) =>
    storage.claimRuns({ workflowNames: ["wf"], limit, now: T0, leaseDurationMs: 1_000, ...extra });
  assert.deepEqual(await claim(0), []);
  await rejectsWithStorageError(() => claim(-1), "claimRuns");
  await rejectsWithStorageError(() => claim(Number.NaN), "claimRuns");
  await rejectsWithStorageError(() => claim(1.5), "claimRuns");
  await rejectsWithStorageError(() => claim(1, { now: Number.NaN }), "claimRuns");
  await rejectsWithStorageError(() => claim(1, { leaseDurationMs: -1 }), "claimRuns");
  await rejectsWithStorageError(() => claim(1, { workflowNames: "wf" }), "claimRuns");
  await rejectsWithStorageError(() => storage.claimRuns(null as never), "claimRuns");
  await rejectsWithStorageError(() => storage.claimNextRun(["wf"], Number.POSITIVE_INFINITY), "claimNextRun");
  await rejectsWithStorageError(() => storage.createRun(null as never), "createRun");
  await rejectsWithStorageError(
    () =>
      storage.createRun({
        id: "r1",
        workflowName: "wf",
        input: 1 as never,
        idempotencyKey: null,
        createdAt: T0,
      }),
    "createRun",
  );
  await rejectsWithStorageError(() => storage.saveStepResult(undefined as never), "saveStepResult");
  await rejectsWithStorageError(() => storage.updateRunStatus("r1", "bogus" as never), "updateRunStatus");
  await rejectsWithStorageError(() => storage.updateRunStatus("r1", "running"), "updateRunStatus");
  await rejectsWithStorageError(() => storage.advanceRun("r1", "lease", null as never), "advanceRun");
  await rejectsWithStorageError(() => storage.heartbeatRun("r1", "lease", Number.NaN), "heartbeatRun");
  // Ids that match nothing are a no-op, not an error.
  assert.equal(await storage.getRun(42 as never), null);
  assert.equal(await storage.heartbeatRun("missing", "lease"), false);
});

test("MemoryStorage: a duplicate run id rejects with a StorageError of kind unique and keeps the first run", async () => {
  const storage = new MemoryStorage();
  await storage.createRun({
    id: "r1",
    workflowName: "wf",
    input: '"a"',
    idempotencyKey: null,
    createdAt: T0,
  });
  await assert.rejects(
    () =>
      storage.createRun({ id: "r1", workflowName: "wf", input: '"b"', idempotencyKey: null, createdAt: T0 }),
    (error: unknown) => error instanceof StorageError && error.kind === "unique",
  );
  assert.equal((await storage.getRun("r1"))?.input, '"a"');
});

test("MemoryStorage: advanceRun() checks the whole change before writing any of it", async () => {
  const storage = new MemoryStorage();
  await storage.createRun({ id: "r1", workflowName: "wf", input: "0", idempotencyKey: null, createdAt: T0 });
  const [run] = await storage.claimRuns({ workflowNames: ["wf"], limit: 1, now: T0, leaseDurationMs: 1_000 });
  assert.ok(run);
  const step = {
    runId: "r1",
    stepName: "a",
    status: "completed",
    output: "1",
    error: null,
    attempts: 1,
    dueAt: null,
    updatedAt: T0,
  } as const;
  await rejectsWithStorageError(
    () =>
      storage.advanceRun("r1", run.leaseId, {
        now: T0,
        step,
        status: "failed",
        error: { name: "E" } as never,
      }),
    "advanceRun",
  );
  await rejectsWithStorageError(
    () => storage.advanceRun("r1", run.leaseId, { now: T0, step: { ...step, runId: "r2" } }),
    "advanceRun",
  );
  assert.deepEqual(await storage.getStepResults("r1"), []);
  assert.equal((await storage.getRun("r1"))?.status, "running");
});

test("MemoryStorage: deliverEvent() and awaitEvent() reject bad input with a StorageError", async () => {
  const storage = new MemoryStorage();
  await storage.createRun({ id: "r1", workflowName: "wf", input: "0", idempotencyKey: null, createdAt: T0 });
  const [run] = await storage.claimRuns({ workflowNames: ["wf"], limit: 1, now: T0, leaseDurationMs: 1_000 });
  assert.ok(run);
  for (
    const event of [null, { name: 1, payload: "1", createdAt: T0 }, { name: "e", payload: 1, createdAt: T0 }]
  ) {
    await rejectsWithStorageError(() => storage.deliverEvent("r1", event as never), "deliverEvent");
  }
  await rejectsWithStorageError(
    () => storage.deliverEvent("r1", { name: "e", payload: "1", createdAt: Number.NaN }),
    "deliverEvent",
  );
  const waits = [undefined, { now: T0, stepName: 1, timeoutAt: null }, {
    now: T0,
    stepName: "e",
    timeoutAt: null,
  }];
  for (const wait of waits) {
    await rejectsWithStorageError(() => storage.awaitEvent("r1", run.leaseId, wait as never), "awaitEvent");
  }
  assert.equal((await storage.getRun("r1"))?.status, "running");
  assert.deepEqual(await storage.getStepResults("r1"), []);
});

test("MemoryStorage: close() may be called twice", async () => {
  const storage = new MemoryStorage();
  await storage.close();
  await storage.close();
  await rejectsWithStorageError(() => storage.getRun("r1"), "getRun");
});
