/**
 * Conformance cases of `requeueRun()`: which statuses it re-queues from, what it resets, and which
 * step results it keeps.
 *
 * @module
 */

import type { StepResult, StorageAdapter, WorkflowRun } from "./adapter.ts";
import type { ContractCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  checkUnchanged,
  claim,
  claimAndAwait,
  claimOnly,
  create,
  createAndClaim,
  event,
  expectInvalid,
  getRun,
  LEASE,
  NOT_DUE,
  parkedInWait,
  step,
  T0,
  wait,
} from "./conformance_support.ts";

const ERROR = { code: null, name: "Error", message: "boom" };

/** One step result of each status, the failed one last (the run's failure commits it). */
function stepsOfEveryStatus(runId: string): StepResult[] {
  return [
    step(runId, "done"),
    step(runId, "skipped", { status: "skipped", output: null, attempts: 0 }),
    step(runId, "retrying", { status: "retrying", output: null, error: ERROR, dueAt: T0 + 50 }),
    step(runId, "nap", { status: "sleeping", output: null, attempts: 1, dueAt: T0 + 60 }),
    step(runId, "approve", { status: "waiting", output: null, attempts: 1, dueAt: null }),
    step(runId, "charge", { status: "failed", output: null, error: ERROR, attempts: 3 }),
  ];
}

/** Runs "r1" to a failure with a step result of every status; returns the failed run. */
async function failedWithSteps(storage: StorageAdapter): Promise<WorkflowRun> {
  const held = await createAndClaim(storage, "r1");
  const steps = stepsOfEveryStatus("r1");
  for (const result of steps.slice(0, -1)) {
    check(await storage.saveStepResult(result, held.leaseId), `saveStepResult(${result.stepName})`);
  }
  check(
    await storage.advanceRun("r1", held.leaseId, {
      now: T0 + 100,
      step: steps[steps.length - 1]!,
      status: "failed",
      error: { ...ERROR, stepName: "charge" },
    }),
    "advanceRun(failed)",
  );
  return await getRun(storage, "r1");
}

/** The conformance cases of `requeueRun()`. */
export const requeueCases: readonly ContractCase[] = [
  {
    name:
      "`requeueRun()` makes a failed run pending and due at now, clears output, error and lease, keeps claimCount",
    async run(storage) {
      const failed = await failedWithSteps(storage);
      check(await storage.requeueRun("r1", T0 + 1_000), "requeueRun() of a failed run should succeed");
      checkEqual(
        await getRun(storage, "r1"),
        {
          ...failed,
          status: "pending",
          output: null,
          error: null,
          dueAt: T0 + 1_000,
          leaseId: null,
          updatedAt: T0 + 1_000,
          claimCount: 1,
        },
        "requeued run",
      );
      checkEqual(await claim(storage, T0 + 999), [], "claim before the requeue time");
    },
  },
  {
    name: "`requeueRun()` deletes the failed step results and keeps every other step result, in order",
    async run(storage) {
      await failedWithSteps(storage);
      check(await storage.requeueRun("r1", T0 + 1_000), "requeueRun()");
      const kept = stepsOfEveryStatus("r1").filter((result) => result.status !== "failed");
      checkEqual(await storage.getStepResults("r1"), kept, "steps after the requeue");
      const again = await claimOnly(storage, T0 + 1_000, "r1");
      checkEqual(
        [again.claimCount, again.steps],
        [2, kept],
        "the claim after the requeue: claimCount, steps",
      );
      const rerun = step("r1", "charge", { attempts: 1, updatedAt: T0 + 1_001 });
      check(await storage.saveStepResult(rerun, again.leaseId), "the failed step runs again");
      checkEqual(await storage.getStepResults("r1"), [...kept, rerun], "steps after the step ran again");
    },
  },
  {
    name: "`requeueRun()` re-queues a cancelled run, keeping the wait it was parked in",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, null));
      check(await storage.updateRunStatus("r1", "cancelled"), "cancel");
      const waiting = await storage.getStepResults("r1");
      check(await storage.requeueRun("r1", T0 + 500), "requeueRun() of a cancelled run should succeed");
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.dueAt, run.updatedAt, run.leaseId, run.claimCount],
        ["pending", T0 + 500, T0 + 500, null, 1],
        "requeued run: status, dueAt, updatedAt, leaseId, claimCount",
      );
      checkEqual(await storage.getStepResults("r1"), waiting, "steps after the requeue");
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 500)), "deliverEvent()");
      const received = { outcome: "received", payload: '"yes"' } as const;
      await claimAndAwait(storage, "r1", T0 + 500, "approve", received, "awaitEvent() after the requeue");
    },
  },
  {
    name: "`requeueRun()` does not keep events delivered before the run finished",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, null));
      check(await storage.deliverEvent("r1", event("approve", '"early"', T0 + 20)), "deliverEvent()");
      check(await storage.updateRunStatus("r1", "cancelled"), "cancel");
      check(await storage.requeueRun("r1", T0 + 30), "requeueRun()");
      await claimAndAwait(
        storage,
        "r1",
        T0 + 30,
        "approve",
        { outcome: "parked" },
        "awaitEvent() after the requeue",
      );
    },
  },
  {
    name: "`requeueRun()` returns false and changes nothing for a run in any other status, or an unknown run",
    async run(storage) {
      const completed = await createAndClaim(storage, "completed");
      check(
        await storage.advanceRun("completed", completed.leaseId, {
          now: T0 + 1,
          status: "completed",
          output: "1",
        }),
        "complete",
      );
      await createAndClaim(storage, "running");
      const sleeper = await createAndClaim(storage, "sleeping");
      check(
        await storage.advanceRun("sleeping", sleeper.leaseId, {
          now: T0 + 1,
          step: step("sleeping", "nap", { status: "sleeping", output: null, dueAt: T0 + NOT_DUE }),
          status: "sleeping",
          dueAt: T0 + NOT_DUE,
        }),
        "sleep",
      );
      await parkedInWait(storage, "waiting", wait("approve", T0 + 1, null));
      await create(storage, "pending", { createdAt: T0 + NOT_DUE });
      for (const id of ["pending", "running", "sleeping", "waiting", "completed"]) {
        const before = await getRun(storage, id);
        const steps = await storage.getStepResults(id);
        check(!(await storage.requeueRun(id, T0 + 2)), `requeueRun() of a ${id} run should return false`);
        await checkUnchanged(storage, before, `${id} run after requeueRun()`);
        checkEqual(await storage.getStepResults(id), steps, `steps of the ${id} run after requeueRun()`);
      }
      check(!(await storage.requeueRun("missing", T0 + 2)), "requeueRun() of an unknown run");
      checkEqual(await storage.getRun("missing"), null, "getRun() of the unknown run");
      checkEqual(
        (await getRun(storage, "running")).dueAt,
        T0 + LEASE,
        "the running run keeps its lease",
      );
    },
  },
  {
    name: "`requeueRun()` with a malformed time rejects with a StorageError and changes nothing",
    async run(storage) {
      const failed = await failedWithSteps(storage);
      const steps = await storage.getStepResults("r1");
      for (const now of [Number.NaN, Number.POSITIVE_INFINITY, "1", undefined]) {
        await expectInvalid(
          "requeueRun",
          `now ${String(now)}`,
          () => storage.requeueRun("r1", now as number),
        );
      }
      await checkUnchanged(storage, failed, "run after the rejected calls");
      checkEqual(await storage.getStepResults("r1"), steps, "steps after the rejected calls");
    },
  },
];
