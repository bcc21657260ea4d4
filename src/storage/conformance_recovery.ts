/**
 * Conformance cases of `ClaimedRun.recoveries` (how claims count the runs they take from lost
 * workers, and what resets the count) and of `expireInstanceLeases()`.
 *
 * @module
 */

import type { ConformanceCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  claimOnly,
  create,
  createAndClaim,
  expectInvalid,
  getRun,
  LEASE,
  step,
  T0,
  WF,
} from "./conformance_support.ts";

/** The conformance cases of `recoveries` and of `expireInstanceLeases()`. */
export const recoveryCases: readonly ConformanceCase[] = [
  {
    name: "claims count consecutive reclaims of expired leases in `recoveries`; a parked or new run has 0",
    async run(storage) {
      const first = await createAndClaim(storage, "r1");
      checkEqual(first.recoveries, 0, "recoveries of a first claim");
      const second = await claimOnly(storage, T0 + LEASE + 1, "r1");
      checkEqual(second.recoveries, 1, "recoveries after one expired lease");
      const third = await claimOnly(storage, T0 + 2 * LEASE + 2, "r1");
      checkEqual(third.recoveries, 2, "recoveries after two expired leases in a row");
      check(
        await storage.advanceRun("r1", third.leaseId, {
          now: T0 + 2 * LEASE + 3,
          step: step("r1", "a", { updatedAt: T0 + 2 * LEASE + 3 }),
          status: "pending",
          dueAt: T0 + 2 * LEASE + 3,
        }),
        "advanceRun(pending)",
      );
      const parked = await claimOnly(storage, T0 + 2 * LEASE + 4, "r1");
      checkEqual(parked.recoveries, 0, "recoveries of a claim after the run was parked");
    },
  },
  {
    name: "an `advanceRun()` that keeps the run running resets `recoveries`; a heartbeat does not",
    async run(storage) {
      await createAndClaim(storage, "r1");
      const reclaimed = await claimOnly(storage, T0 + LEASE + 1, "r1");
      checkEqual(reclaimed.recoveries, 1, "recoveries after an expired lease");
      const later = T0 + LEASE + 2;
      check(await storage.heartbeatRun("r1", reclaimed.leaseId, later), "heartbeatRun()");
      const afterHeartbeat = await claimOnly(storage, later + 1, "r1");
      checkEqual(afterHeartbeat.recoveries, 2, "recoveries after a heartbeat and an expiry");
      check(
        await storage.advanceRun("r1", afterHeartbeat.leaseId, {
          now: later + 2,
          step: step("r1", "a", { updatedAt: later + 2 }),
          leaseExpiresAt: later + 3,
        }),
        "advanceRun(step)",
      );
      const [afterProgress] = await claim(storage, later + 4);
      checkEqual(afterProgress?.recoveries, 1, "recoveries after a committed step and an expiry");
    },
  },
  {
    name:
      "a claim with `instanceId` prefixes its lease ids; `expireInstanceLeases()` makes only that instance's live leases due, and the next claim takes them back",
    async run(storage) {
      for (const id of ["mine", "other", "plain"]) await create(storage, id);
      const take = async (id: string, instanceId?: string) => {
        const [run] = await storage.claimRuns({
          workflowNames: [WF],
          limit: 1,
          now: T0,
          leaseDurationMs: LEASE,
          ...(instanceId === undefined ? {} : { instanceId }),
        });
        checkEqual(run?.id, id, "claimed run");
        return run!;
      };
      const mine = await take("mine", "slot-1");
      check(mine.leaseId.startsWith("slot-1:"), `lease id ${mine.leaseId} should begin with "slot-1:"`);
      await take("other", "slot-10");
      await take("plain");
      checkEqual(await storage.expireInstanceLeases("slot-1", T0 + 5), 1, "expireInstanceLeases() count");
      checkEqual((await getRun(storage, "mine")).dueAt, T0 + 5, "dueAt of the expired lease");
      checkEqual((await getRun(storage, "other")).dueAt, T0 + LEASE, "dueAt of another instance's lease");
      const back = await claimOnly(storage, T0 + 5, "mine");
      checkEqual(back.recoveries, 1, "recoveries of the run taken back");
      check(
        !await storage.heartbeatRun("mine", mine.leaseId, T0 + 6),
        "the old incarnation's lease is fenced off",
      );
      checkEqual(
        await storage.expireInstanceLeases("slot-1", T0 + 6),
        0,
        "a lease taken without instanceId is kept",
      );
      await expectInvalid(
        "expireInstanceLeases",
        "an instance id with a colon",
        () => storage.expireInstanceLeases("a:b", T0),
      );
      await expectInvalid(
        "claimRuns",
        "an empty instance id",
        () =>
          storage.claimRuns({
            workflowNames: [WF],
            limit: 1,
            now: T0,
            leaseDurationMs: LEASE,
            instanceId: "",
          }),
      );
    },
  },
];
