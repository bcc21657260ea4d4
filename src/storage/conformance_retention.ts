/**
 * Conformance cases of `purgeRuns()`: the cutoff, the statuses, the limit and its order, what is
 * deleted with a run, and the runs it never touches.
 *
 * @module
 */

import type { PurgeRequest, StorageAdapter } from "./adapter.ts";
import type { ContractCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  claimAndAwait,
  claimOnly,
  create,
  createAndClaim,
  event,
  expectInvalid,
  finishRuns,
  ids,
  newRun,
  NOT_DUE,
  parkedInWait,
  step,
  T0,
  wait,
} from "./conformance_support.ts";

/** The ids of every stored run, oldest createdAt first, ties by id ascending. */
async function storedIds(storage: StorageAdapter): Promise<string[]> {
  return ids(await storage.listRuns({ limit: 1_000 })).reverse();
}

/** The conformance cases of `purgeRuns()`. */
export const retentionCases: readonly ContractCase[] = [
  {
    name: "`purgeRuns()` deletes finished runs whose updatedAt is before the cutoff, and returns how many",
    async run(storage) {
      await finishRuns(storage, [
        ["c1", "completed", T0 + 10],
        ["f1", "failed", T0 + 20],
        ["x1", "cancelled", T0 + 30],
        ["c2", "completed", T0 + 40],
      ]);
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 10, limit: 100 }), 0, "purge before T0 + 10");
      checkEqual(await storedIds(storage), ["c1", "c2", "f1", "x1"], "runs after purging nothing");
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 40, limit: 100 }), 3, "purge before T0 + 40");
      checkEqual(await storedIds(storage), ["c2"], "runs after the purge");
      for (const id of ["c1", "f1", "x1"]) checkEqual(await storage.getRun(id), null, `getRun(${id})`);
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 40, limit: 100 }), 0, "the same purge again");
    },
  },
  {
    name:
      "`purgeRuns()` deletes at most limit runs, oldest createdAt first, ties by id, whatever their finish times",
    async run(storage) {
      await finishRuns(storage, [
        ["c", "completed", T0 + 20],
        ["a", "failed", T0 + 30],
        ["b", "cancelled", T0 + 10],
      ]);
      const purge = { finishedBefore: T0 + 1_000, limit: 2 };
      checkEqual(await storage.purgeRuns({ ...purge, limit: 0 }), 0, "purge with limit 0");
      checkEqual(await storage.purgeRuns(purge), 2, "first purge of 2");
      checkEqual(await storedIds(storage), ["c"], "runs after the first purge");
      checkEqual(await storage.purgeRuns(purge), 1, "last purge");
      checkEqual(await storedIds(storage), [], "runs at the end");
    },
  },
  {
    name:
      "`purgeRuns()` keeps a run created long ago that finished after the cutoff, and purges the later-created runs that finished before it",
    async run(storage) {
      await create(storage, "long", { createdAt: T0 - 1_000 });
      await create(storage, "quick-1", { createdAt: T0 - 500 });
      await create(storage, "quick-2", { createdAt: T0 - 400 });
      const claimed = await claim(storage, T0, 3);
      const finish = async (id: string, now: number) => {
        const leaseId = claimed.find((run) => run.id === id)!.leaseId;
        check(
          await storage.advanceRun(id, leaseId, { now, status: "completed", output: "1" }),
          `finish ${id}`,
        );
      };
      await finish("quick-1", T0 + 10);
      await finish("quick-2", T0 + 20);
      await finish("long", T0 + 5_000);
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 1_000, limit: 1 }), 1, "first purge of 1");
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 1_000, limit: 10 }), 1, "second purge");
      checkEqual(await storedIds(storage), ["long"], "runs after the purges");
    },
  },
  {
    name: "`purgeRuns()` deletes only the statuses asked for",
    async run(storage) {
      await finishRuns(storage, [
        ["c1", "completed", T0 + 10],
        ["f1", "failed", T0 + 10],
        ["x1", "cancelled", T0 + 10],
      ]);
      const before = T0 + 100;
      checkEqual(
        await storage.purgeRuns({ finishedBefore: before, limit: 10, statuses: ["failed"] }),
        1,
        "failed",
      );
      checkEqual(await storedIds(storage), ["c1", "x1"], "runs after purging failed runs");
      checkEqual(
        await storage.purgeRuns({ finishedBefore: before, limit: 10, statuses: ["cancelled", "cancelled"] }),
        1,
        "cancelled, named twice",
      );
      checkEqual(await storedIds(storage), ["c1"], "runs after purging cancelled runs");
    },
  },
  {
    name: "`purgeRuns()` never touches a pending, running, sleeping or waiting run, however old",
    async run(storage) {
      const held = await createAndClaim(storage, "running");
      const sleeper = await createAndClaim(storage, "sleeping");
      const nap = step("sleeping", "nap", { status: "sleeping", output: null, dueAt: T0 + NOT_DUE });
      check(
        await storage.advanceRun("sleeping", sleeper.leaseId, {
          now: T0 + 1,
          step: nap,
          status: "sleeping",
          dueAt: T0 + NOT_DUE,
        }),
        "sleep",
      );
      await parkedInWait(storage, "waiting", wait("approve", T0 + 1, null));
      check(await storage.deliverEvent("waiting", event("other", '"kept"', T0 + 2)), "deliverEvent()");
      await create(storage, "pending", { createdAt: T0 + NOT_DUE });
      const a = step("running", "a");
      check(await storage.saveStepResult(a, held.leaseId), "saveStepResult()");
      const snapshot = async () =>
        await Promise.all(
          ["pending", "running", "sleeping", "waiting"].map(async (id) => [
            await storage.getRun(id),
            await storage.getStepResults(id),
          ]),
        );
      const before = await snapshot();
      checkEqual(
        await storage.purgeRuns({ finishedBefore: T0 + 100 * NOT_DUE, limit: 100 }),
        0,
        "purge of every finished run",
      );
      checkEqual(await snapshot(), before, "unfinished runs and their steps after the purge");
      check(await storage.deliverEvent("waiting", event("approve", '"go"', T0 + 3)), "wake the waiting run");
      const kept = { outcome: "received", payload: '"kept"' } as const;
      await claimAndAwait(
        storage,
        "waiting",
        T0 + 3,
        "other",
        kept,
        "the waiting run's event survived the purge",
      );
    },
  },
  {
    name: "`purgeRuns()` deletes a run's step results and events, and frees its idempotency key",
    async run(storage) {
      await create(storage, "r1", { idempotencyKey: "k" });
      const held = await claimOnly(storage, T0, "r1");
      check(await storage.saveStepResult(step("r1", "a"), held.leaseId), "saveStepResult()");
      check(await storage.deliverEvent("r1", event("approve", '"unconsumed"', T0 + 1)), "deliverEvent()");
      check(
        await storage.advanceRun("r1", held.leaseId, { now: T0 + 2, status: "completed", output: "1" }),
        "complete",
      );
      checkEqual(await storage.purgeRuns({ finishedBefore: T0 + 3, limit: 10 }), 1, "purge");
      checkEqual(await storage.getStepResults("r1"), [], "steps of the purged run");
      const keyed = await storage.createRun(newRun("r2", { idempotencyKey: "k", createdAt: T0 + NOT_DUE }));
      checkEqual([keyed.created, keyed.run.id], [true, "r2"], "createRun() with the purged run's key");
      // A run created again with the purged id finds neither the old steps nor the old event.
      const again = await createAndClaim(storage, "r1", T0 + 5);
      checkEqual([again.claimCount, again.steps], [1, []], "the new run with that id: claimCount, steps");
      checkEqual(
        await storage.awaitEvent("r1", again.leaseId, wait("approve", T0 + 6, null)),
        { outcome: "parked" },
        "awaitEvent() of the new run with that id",
      );
    },
  },
  {
    name: "`purgeRuns()` rejects a malformed request with a StorageError and deletes nothing",
    async run(storage) {
      await finishRuns(storage, [["c1", "completed", T0 + 1], ["f1", "failed", T0 + 1]]);
      const good: PurgeRequest = { finishedBefore: T0 + 100, limit: 10 };
      const bad: [string, unknown][] = [
        ["no request", null],
        ["an unfinished status", { ...good, statuses: ["completed", "pending"] }],
        ["status running", { ...good, statuses: ["running"] }],
        ["an unknown status", { ...good, statuses: ["bogus"] }],
        ["an empty statuses", { ...good, statuses: [] }],
        ["statuses not an array", { ...good, statuses: "failed" }],
        ["a NaN finishedBefore", { ...good, finishedBefore: Number.NaN }],
        ["no finishedBefore", { limit: 10 }],
        ["a limit of -1", { ...good, limit: -1 }],
        ["a fractional limit", { ...good, limit: 1.5 }],
      ];
      for (const [what, request] of bad) {
        await expectInvalid("purgeRuns", what, () => storage.purgeRuns(request as PurgeRequest));
      }
      checkEqual(await storedIds(storage), ["c1", "f1"], "runs after the rejected purges");
    },
  },
];
