/**
 * Conformance cases of workflow versions: the version a run stores, the fenced version update,
 * the stored shapes of versions, and the `parked` status (never claimed, events kept, re-queued).
 *
 * @module
 */

import type { StorageAdapter } from "./adapter.ts";
import type { ConformanceCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  create,
  createAndClaim,
  event,
  expectInvalid,
  getRun,
  LEASE,
  T0,
  wait,
  WF,
} from "./conformance_support.ts";

const MISMATCH = { code: "VERSION_MISMATCH", name: "VersionMismatchError", message: "cannot continue" };

/** Creates and claims run `id`, then parks it at `at` with {@linkcode MISMATCH}. */
async function parkedRun(storage: StorageAdapter, id: string, at: number): Promise<void> {
  const held = await createAndClaim(storage, id);
  check(
    await storage.advanceRun(id, held.leaseId, { now: at, status: "parked", error: MISMATCH }),
    "advanceRun(parked)",
  );
}

/** The conformance cases of versions and parking. */
export const versionCases: readonly ConformanceCase[] = [
  {
    name: "`createRun()` stores `workflowVersion` (null when omitted) and every read returns it",
    async run(storage) {
      const created = await create(storage, "r1", { workflowVersion: "v1" });
      await create(storage, "r2");
      checkEqual(
        [created.workflowVersion, (await getRun(storage, "r1")).workflowVersion],
        ["v1", "v1"],
        "r1",
      );
      checkEqual((await getRun(storage, "r2")).workflowVersion, null, "r2 without a version");
      const [claimed] = await claim(storage, T0, 1);
      checkEqual(claimed?.workflowVersion, "v1", "claimRuns() result");
      const listed = await storage.listRuns({ limit: 10 });
      checkEqual(listed.map((run) => run.workflowVersion).sort(), ["v1", null].sort(), "listRuns() results");
    },
  },
  {
    name: "`updateRunVersion()` is fenced by the lease and changes only the version",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const before = await getRun(storage, "r1");
      check(!await storage.updateRunVersion("r1", "other-lease", "v2"), "a wrong lease must not write");
      check(!await storage.updateRunVersion("nope", held.leaseId, "v2"), "an unknown run must not write");
      check(await storage.updateRunVersion("r1", held.leaseId, "v2"), "the lease holder writes");
      checkEqual(await getRun(storage, "r1"), { ...before, workflowVersion: "v2" }, "run after the update");
      await expectInvalid(
        "updateRunVersion",
        "a version that is not a string",
        () => storage.updateRunVersion("r1", held.leaseId, 7 as unknown as string),
      );
    },
  },
  {
    name:
      "`saveWorkflowVersions()` keeps the first shape per name and version; `listWorkflowVersions()` orders them",
    async run(storage) {
      checkEqual(await storage.listWorkflowVersions(), [], "nothing stored");
      const v = (workflowName: string, version: string, shape: string, createdAt = T0) => ({
        workflowName,
        version,
        shape,
        createdAt,
      });
      await storage.saveWorkflowVersions([v("wf", "2", "[b]"), v("wf", "1", "[a]"), v("alpha", "1", "[x]")]);
      await storage.saveWorkflowVersions([v("wf", "1", "[changed]", T0 + 5), v("wf", "3", "[c]", T0 + 5)]);
      await storage.saveWorkflowVersions([]);
      checkEqual(
        await storage.listWorkflowVersions(),
        [v("alpha", "1", "[x]"), v("wf", "1", "[a]"), v("wf", "2", "[b]"), v("wf", "3", "[c]", T0 + 5)],
        "stored versions",
      );
      await expectInvalid(
        "saveWorkflowVersions",
        "a record without a shape",
        () => storage.saveWorkflowVersions([{ workflowName: "wf", version: "9", createdAt: T0 } as never]),
      );
      checkEqual((await storage.listWorkflowVersions()).length, 4, "a rejected call stores nothing");
    },
  },
  {
    name: "`advanceRun()` to `parked` stores the error, releases the lease, and the run is never claimed",
    async run(storage) {
      await parkedRun(storage, "r1", T0 + 5);
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.error, run.leaseId, run.dueAt, run.updatedAt],
        ["parked", MISMATCH, null, null, T0 + 5],
        "parked run: status, error, leaseId, dueAt, updatedAt",
      );
      checkEqual(await claim(storage, T0 + 10 * LEASE), [], "a parked run is not claimed");
      check(await storage.updateRunStatus("r1", "parked"), "updateRunStatus() of a parked run (unfinished)");
      checkEqual(await claim(storage, T0 + 10 * LEASE), [], "still not claimed");
      checkEqual(
        (await storage.listRuns({ statuses: ["parked"], workflowName: WF, limit: 10 })).map((r) => r.id),
        ["r1"],
        "listRuns() by the parked status",
      );
    },
  },
  {
    name: "a parked run keeps delivered events, and `requeueRun()` makes it pending with them kept",
    async run(storage) {
      await parkedRun(storage, "r1", T0 + 30);
      check(
        await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 40)),
        "deliverEvent() to a parked run",
      );
      checkEqual((await getRun(storage, "r1")).status, "parked", "an event does not wake a parked run");
      check(await storage.requeueRun("r1", T0 + 50), "requeueRun() of a parked run");
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.error, run.dueAt],
        ["pending", null, T0 + 50],
        "requeued: status, error, dueAt",
      );
      const [again] = await claim(storage, T0 + 50, 1);
      check(again !== undefined, "the requeued run is claimed");
      const result = await storage.awaitEvent("r1", again.leaseId, wait("approve", T0 + 51, null));
      checkEqual(result, { outcome: "received", payload: '"yes"' }, "the kept event is consumed");
    },
  },
];
