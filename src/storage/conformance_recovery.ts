/**
 * Conformance cases of `ClaimedRun.recoveries`: how claims count the runs they take from lost
 * workers, and what resets the count.
 *
 * @module
 */

import type { ConformanceCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  claimOnly,
  createAndClaim,
  LEASE,
  step,
  T0,
} from "./conformance_support.ts";

/** The conformance cases of `recoveries`. */
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
];
