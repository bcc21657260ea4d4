/**
 * Conformance cases of names and keys (workflow, step and event names, idempotency and schedule
 * keys): well-formed Unicode without NUL is stored exactly and kept apart; a lone UTF-16
 * surrogate or a NUL is refused, since SQLite would store U+FFFD for the one and some drivers cut
 * text at the other.
 *
 * @module
 */

import type { StorageAdapter } from "./adapter.ts";
import type { ConformanceCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claimOnly,
  create,
  event,
  expectInvalid,
  newRun,
  step,
  T0,
  wait,
} from "./conformance_support.ts";

/** Odd but well-formed: an astral character, U+FFFD, the last code point, a line separator. */
const ODD = ["k😀", "k😎", "k\uFFFD", "k\u{10FFFF}", "k\u2028"];
/** Each breaks the rule at its last code unit. */
const MALFORMED = ["k\uD83D", "k\uDE00", "k\u0000"];

function schedule(key: string, workflowName = "wf") {
  return { key, workflowName, input: "{}", recurrence: '{"every":60000}', nextRunAt: T0 + 60_000, now: T0 };
}

async function everyNameRefused(storage: StorageAdapter, bad: string): Promise<void> {
  const what = JSON.stringify(bad);
  await expectInvalid(
    "createRun",
    `idempotency key ${what}`,
    () => storage.createRun(newRun("x", { idempotencyKey: bad })),
  );
  await expectInvalid(
    "createRun",
    `workflow name ${what}`,
    () => storage.createRun(newRun("x", { workflowName: bad })),
  );
  await expectInvalid("saveStepResult", `step name ${what}`, () => storage.saveStepResult(step("r1", bad)));
  await expectInvalid(
    "deliverEvent",
    `event name ${what}`,
    () => storage.deliverEvent("r1", event(bad, "1", T0 + 1)),
  );
  await expectInvalid("upsertSchedule", `key ${what}`, () => storage.upsertSchedule(schedule(bad)));
  await expectInvalid("deleteSchedule", `key ${what}`, () => storage.deleteSchedule(bad));
  await expectInvalid(
    "listRuns",
    `workflowName ${what}`,
    () => storage.listRuns({ limit: 10, workflowName: bad }),
  );
  await expectInvalid("dueSchedules", `workflow name ${what}`, () => storage.dueSchedules([bad], T0, 10));
}

/** The name cases; see the module documentation. */
export const nameCases: readonly ConformanceCase[] = [
  {
    name: "names and keys of well-formed Unicode are stored exactly and kept apart",
    async run(storage) {
      for (const [i, key] of ODD.entries()) {
        await create(storage, `r${i}`, { idempotencyKey: key, workflowName: key });
      }
      for (const [i, key] of ODD.entries()) {
        const again = await storage.createRun(
          newRun(`again-${i}`, { idempotencyKey: key, workflowName: key }),
        );
        checkEqual(
          [again.created, again.run.id, again.run.idempotencyKey],
          [false, `r${i}`, key],
          `key ${i}`,
        );
        const listed = await storage.listRuns({ limit: 10, workflowName: key });
        checkEqual(listed.map((run) => run.id), [`r${i}`], `listRuns(workflowName ${i})`);
      }
      await create(storage, "w");
      const held = await claimOnly(storage, T0, "w");
      for (const name of ODD) await storage.saveStepResult(step("w", name), held.leaseId);
      checkEqual((await storage.getStepResults("w")).map((s) => s.stepName), ODD, "step names");
      // On a run of its own: a step result of the name would mean its wait is over.
      await create(storage, "e");
      const waiting = await claimOnly(storage, T0, "e");
      check(
        await storage.deliverEvent("e", event(ODD[1]!, '"one"', T0 + 1)),
        "deliverEvent() of an astral name",
      );
      const taken = await storage.awaitEvent("e", waiting.leaseId, wait(ODD[1]!, T0 + 2, null));
      checkEqual(taken, { outcome: "received", payload: '"one"' }, "the event of an astral name");
      for (const key of ODD) await storage.upsertSchedule(schedule(key));
      checkEqual((await storage.listSchedules()).map((s) => s.key).sort(), [...ODD].sort(), "schedule keys");
    },
  },
  {
    name: "names and keys with a lone surrogate or a NUL are refused with a StorageError, storing nothing",
    async run(storage) {
      await create(storage, "r1");
      for (const bad of MALFORMED) await everyNameRefused(storage, bad);
      checkEqual((await storage.listRuns({ limit: 10 })).map((run) => run.id), ["r1"], "runs");
      checkEqual(await storage.getStepResults("r1"), [], "step results");
      checkEqual(await storage.listSchedules(), [], "schedules");
    },
  },
];
