/**
 * Conformance cases of schedules: `upsertSchedule()` keeping or restarting the cadence,
 * `deleteSchedule()`, `listSchedules()`, `dueSchedules()`, and the compare-and-set of
 * `claimScheduleSlot()`, raced on two connections.
 *
 * @module
 */

import { StorageError } from "../errors.ts";
import type { NewSchedule, ScheduleRecord, StorageAdapter, UpsertScheduleResult } from "./adapter.ts";
import type { ContractCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  create,
  expectInvalid,
  getRun,
  newRun,
  scribble,
  show,
  T0,
  WF,
} from "./conformance_support.ts";

const MINUTE = 60_000;

function schedule(key: string, overrides: Partial<NewSchedule> = {}): NewSchedule {
  return {
    key,
    workflowName: WF,
    input: `{"schedule":${JSON.stringify(key)}}`,
    recurrence: '{"every":60000}',
    nextRunAt: T0 + MINUTE,
    now: T0,
    ...overrides,
  };
}

async function upsert(storage: StorageAdapter, key: string, overrides: Partial<NewSchedule> = {}) {
  return await storage.upsertSchedule(schedule(key, overrides));
}

async function getSchedule(storage: StorageAdapter, key: string): Promise<ScheduleRecord> {
  const found = (await storage.listSchedules()).find((record) => record.key === key);
  check(found !== undefined, `listSchedules() should hold ${show(key)}`);
  return found;
}

function keys(schedules: readonly ScheduleRecord[]): string[] {
  return schedules.map((record) => record.key);
}

/** Claims the slot at T0 + MINUTE of schedule `key` for run `runId`, checking that it is claimed. */
async function claimFirstSlot(storage: StorageAdapter, key: string, runId: string): Promise<void> {
  const result = await storage.claimScheduleSlot(
    key,
    T0 + MINUTE,
    T0 + 2 * MINUTE,
    newRun(runId, { createdAt: T0 + MINUTE }),
  );
  check(result?.created === true, `claimScheduleSlot(${show(key)}) should create run ${show(runId)}`);
}

/**
 * Stores schedule "k" with `first`, claims its first slot for run "run-1", then upserts "k" again
 * with `second` at T0 + 90 s; returns the schedule as claimed and the second upsert's answer.
 */
async function upsertAgainAfterAClaim(
  storage: StorageAdapter,
  first: Partial<NewSchedule>,
  second: Partial<NewSchedule>,
): Promise<{ claimed: ScheduleRecord; again: UpsertScheduleResult }> {
  await upsert(storage, "k", first);
  await claimFirstSlot(storage, "k", "run-1");
  const claimed = await getSchedule(storage, "k");
  return { claimed, again: await upsert(storage, "k", { ...second, now: T0 + 90_000 }) };
}

/** The conformance cases of schedules. */
export const scheduleCases: readonly ContractCase[] = [
  {
    name: "`upsertSchedule()` stores a new key with createdAt = updatedAt = now and no last run",
    async run(storage) {
      const expected: ScheduleRecord = {
        key: "nightly",
        workflowName: WF,
        input: '{"schedule":"nightly"}',
        recurrence: '{"every":60000}',
        nextRunAt: T0 + MINUTE,
        lastRunAt: null,
        lastRunId: null,
        createdAt: T0,
        updatedAt: T0,
      };
      checkEqual(await upsert(storage, "nightly"), { schedule: expected, created: true }, "upsertSchedule()");
      checkEqual(await storage.listSchedules(), [expected], "listSchedules()");
    },
  },
  {
    name: "`upsertSchedule()` with the same recurrence keeps the cadence and replaces workflow and input",
    async run(storage) {
      const { claimed, again } = await upsertAgainAfterAClaim(storage, {}, {
        workflowName: "other",
        input: '"new input"',
        nextRunAt: T0 + 99 * MINUTE,
      });
      const expected: ScheduleRecord = {
        ...claimed,
        workflowName: "other",
        input: '"new input"',
        updatedAt: T0 + 90_000,
      };
      checkEqual(again, { schedule: expected, created: false }, "upsertSchedule() again");
      checkEqual(
        [expected.nextRunAt, expected.lastRunAt, expected.lastRunId, expected.createdAt],
        [T0 + 2 * MINUTE, T0 + MINUTE, "run-1", T0],
        "kept: nextRunAt, lastRunAt, lastRunId, createdAt",
      );
      checkEqual(await storage.listSchedules(), [expected], "listSchedules()");
    },
  },
  {
    name: "`upsertSchedule()` with a changed recurrence (compared byte for byte) restarts from nextRunAt",
    async run(storage) {
      // The same text once Unicode-normalised, but other bytes: a different recurrence.
      const { claimed, again } = await upsertAgainAfterAClaim(storage, { recurrence: "caf\u00e9" }, {
        recurrence: "cafe\u0301",
        nextRunAt: T0 + 10 * MINUTE,
      });
      const expected: ScheduleRecord = {
        ...claimed,
        recurrence: "cafe\u0301",
        nextRunAt: T0 + 10 * MINUTE,
        updatedAt: T0 + 90_000,
      };
      checkEqual(again, { schedule: expected, created: false }, "upsertSchedule() with a new recurrence");
      checkEqual(await storage.listSchedules(), [expected], "listSchedules()");
    },
  },
  {
    name: "`deleteSchedule()` deletes a schedule, keeps its runs, and returns whether it existed",
    async run(storage) {
      await upsert(storage, "a");
      await upsert(storage, "b");
      await claimFirstSlot(storage, "a", "run-a");
      check(await storage.deleteSchedule("a"), "deleteSchedule(a) should return true");
      check(!(await storage.deleteSchedule("a")), "deleteSchedule(a) again should return false");
      check(!(await storage.deleteSchedule("missing")), "deleteSchedule() of an unknown key");
      checkEqual(keys(await storage.listSchedules()), ["b"], "schedules left");
      checkEqual((await getRun(storage, "run-a")).status, "pending", "the deleted schedule's run");
      checkEqual(
        await storage.claimScheduleSlot("a", T0 + 2 * MINUTE, T0 + 3 * MINUTE, newRun("run-a2")),
        null,
        "claimScheduleSlot() of the deleted schedule",
      );
      checkEqual(await storage.getRun("run-a2"), null, "run of the claim of a deleted schedule");
    },
  },
  {
    name: "`listSchedules()` orders schedules by key, by code point",
    async run(storage) {
      const order = ["A", "B", "a", "b", "\u00e9", "\u{FF61}", "\u{1F600}"];
      for (const key of [...order].reverse()) await upsert(storage, key);
      checkEqual(keys(await storage.listSchedules()), order, "keys");
      const listed = await storage.listSchedules();
      const copy = structuredClone(listed);
      scribble(listed);
      checkEqual(await storage.listSchedules(), copy, "schedules after mutating a returned list");
    },
  },
  {
    name:
      "`dueSchedules()` returns due schedules of the given workflows, earliest first, ties by key, at most limit",
    async run(storage) {
      await upsert(storage, "late", { nextRunAt: T0 + 3 * MINUTE });
      await upsert(storage, "tie-b", { nextRunAt: T0 + MINUTE });
      await upsert(storage, "tie-a", { nextRunAt: T0 + MINUTE });
      await upsert(storage, "early", { nextRunAt: T0 });
      await upsert(storage, "other", { nextRunAt: T0, workflowName: "other" });
      await upsert(storage, "future", { nextRunAt: T0 + 60 * MINUTE });
      const due = (names: string[], now: number, limit: number) => storage.dueSchedules(names, now, limit);
      checkEqual(
        keys(await due([WF], T0 + 3 * MINUTE, 10)),
        ["early", "tie-a", "tie-b", "late"],
        "due at +3 min",
      );
      checkEqual(keys(await due([WF], T0 + 3 * MINUTE - 1, 10)), ["early", "tie-a", "tie-b"], "1 ms before");
      checkEqual(keys(await due([WF], T0 + 3 * MINUTE, 2)), ["early", "tie-a"], "limit 2");
      checkEqual(keys(await due(["other", WF, "none"], T0, 10)), ["early", "other"], "two workflows");
      checkEqual(await due([], T0 + 99 * MINUTE, 10), [], "no workflow names");
      checkEqual(await due([WF], T0 + 99 * MINUTE, 0), [], "limit 0");
      checkEqual(await due([WF], T0 - 1, 10), [], "before every schedule");
      checkEqual(await due([WF], T0, 1), [await getSchedule(storage, "early")], "the records returned");
    },
  },
  {
    name: "`claimScheduleSlot()` creates the slot's run and moves the schedule on, in one step",
    async run(storage) {
      const { schedule: stored } = await upsert(storage, "k");
      const run = newRun("slot-1", {
        input: stored.input,
        idempotencyKey: "k@1",
        createdAt: T0 + MINUTE + 5,
      });
      const result = await storage.claimScheduleSlot("k", T0 + MINUTE, T0 + 2 * MINUTE, run);
      check(result !== null, "claimScheduleSlot() should claim the slot");
      checkEqual(result.created, true, "created");
      checkEqual(result.run, await getRun(storage, "slot-1"), "the run returned");
      checkEqual(
        [result.run.status, result.run.dueAt, result.run.claimCount, result.run.idempotencyKey],
        ["pending", T0 + MINUTE + 5, 0, "k@1"],
        "the slot's run: status, dueAt, claimCount, idempotencyKey",
      );
      checkEqual(
        await getSchedule(storage, "k"),
        {
          ...stored,
          nextRunAt: T0 + 2 * MINUTE,
          lastRunAt: T0 + MINUTE,
          lastRunId: "slot-1",
          updatedAt: T0 + MINUTE + 5,
        },
        "the schedule after the claim",
      );
    },
  },
  {
    name:
      "`claimScheduleSlot()` of a slot already claimed, changed or unknown returns null and changes nothing",
    async run(storage) {
      await upsert(storage, "k");
      await claimFirstSlot(storage, "k", "run-1");
      const after = await getSchedule(storage, "k");
      const attempts: [string, number, string][] = [
        ["the slot claimed already", T0 + MINUTE, "k"],
        ["a slot that is not the next one", T0 + 3 * MINUTE, "k"],
        ["an unknown schedule", T0 + MINUTE, "missing"],
      ];
      for (const [what, slot, key] of attempts) {
        const result = await storage.claimScheduleSlot(key, slot, slot + MINUTE, newRun("run-2"));
        checkEqual(result, null, `claimScheduleSlot() of ${what}`);
        checkEqual(await storage.getRun("run-2"), null, `run after the claim of ${what}`);
      }
      checkEqual(await storage.listSchedules(), [after], "schedules after the failed claims");
      await upsert(storage, "k", { recurrence: "changed", nextRunAt: T0 + 5 * MINUTE });
      checkEqual(
        await storage.claimScheduleSlot("k", T0 + 2 * MINUTE, T0 + 3 * MINUTE, newRun("run-3")),
        null,
        "claimScheduleSlot() of the slot before the recurrence changed",
      );
      checkEqual(await storage.getRun("run-3"), null, "run after the claim of a changed schedule");
    },
  },
  {
    name:
      "`claimScheduleSlot()` with a held idempotency key returns the existing run and records it as the last run",
    async run(storage) {
      await upsert(storage, "k");
      const holder = await create(storage, "holder", { idempotencyKey: "k@1" });
      const result = await storage.claimScheduleSlot(
        "k",
        T0 + MINUTE,
        T0 + 2 * MINUTE,
        newRun("slot-1", { idempotencyKey: "k@1", createdAt: T0 + MINUTE }),
      );
      checkEqual(result, { run: holder, created: false }, "claimScheduleSlot() result");
      checkEqual(await storage.getRun("slot-1"), null, "the run that was not created");
      const moved = await getSchedule(storage, "k");
      checkEqual(
        [moved.nextRunAt, moved.lastRunAt, moved.lastRunId],
        [T0 + 2 * MINUTE, T0 + MINUTE, "holder"],
        "schedule: nextRunAt, lastRunAt, lastRunId",
      );
    },
  },
  {
    name: "`claimScheduleSlot()` with a run id that is taken rejects with kind unique and changes nothing",
    async run(storage) {
      await upsert(storage, "k");
      await create(storage, "taken");
      const before = await storage.listSchedules();
      let failure: unknown;
      try {
        await storage.claimScheduleSlot("k", T0 + MINUTE, T0 + 2 * MINUTE, newRun("taken", { input: '"x"' }));
      } catch (error) {
        failure = error;
      }
      check(failure instanceof StorageError, `expected a StorageError, got ${show(String(failure))}`);
      checkEqual([failure.operation, failure.kind], ["claimScheduleSlot", "unique"], "operation, kind");
      checkEqual(await storage.listSchedules(), before, "schedules after the failed claim");
      checkEqual((await getRun(storage, "taken")).input, newRun("taken").input, "the run holding the id");
    },
  },
  {
    name: "`claimScheduleSlot()` on two connections at once creates exactly one run per slot",
    async run(storage, context) {
      const peer = await context.openPeer();
      const count = 10;
      for (let i = 0; i < count; i++) await upsert(storage, `k${i}`);
      // Both connections claim every slot; alternate which starts first so that both orders race.
      const results = await Promise.all(Array.from({ length: count }, async (_, i) => {
        const on = (side: StorageAdapter, tag: string) =>
          side.claimScheduleSlot(
            `k${i}`,
            T0 + MINUTE,
            T0 + 2 * MINUTE,
            newRun(`k${i}-${tag}`, { createdAt: T0 + MINUTE }),
          );
        return i % 2 === 0
          ? await Promise.all([on(storage, "a"), on(peer, "b")])
          : await Promise.all([on(peer, "b"), on(storage, "a")]);
      }));
      const runs = await storage.listRuns({ limit: 100 });
      checkEqual(runs.length, count, "runs created");
      for (const [i, pair] of results.entries()) {
        const won = pair.filter((result) => result !== null);
        checkEqual(won.length, 1, `non-null results for slot k${i}`);
        const schedule = await getSchedule(storage, `k${i}`);
        checkEqual(schedule.lastRunId, won[0]!.run.id, `k${i}: lastRunId is the winner's run`);
        checkEqual(schedule.nextRunAt, T0 + 2 * MINUTE, `k${i}: nextRunAt`);
      }
      checkEqual((await claim(storage, T0 + MINUTE, 100)).length, count, "claimable runs");
    },
  },
  {
    name: "schedule methods reject malformed input with a StorageError and change nothing",
    async run(storage) {
      await upsert(storage, "k");
      const before = await storage.listSchedules();
      const slot = T0 + MINUTE;
      const good = newRun("r1", { createdAt: slot });
      const calls: [string, string, () => Promise<unknown>][] = [
        [
          "claimScheduleSlot",
          "nextRunAt equal to the slot",
          () => storage.claimScheduleSlot("k", slot, slot, good),
        ],
        [
          "claimScheduleSlot",
          "nextRunAt before the slot",
          () => storage.claimScheduleSlot("k", slot, slot - 1, good),
        ],
        ["claimScheduleSlot", "a NaN slot", () => storage.claimScheduleSlot("k", Number.NaN, slot, good)],
        [
          "claimScheduleSlot",
          "a malformed run",
          () => storage.claimScheduleSlot("k", slot, slot + 1, null as never),
        ],
        [
          "claimScheduleSlot",
          "a key that is not a string",
          () => storage.claimScheduleSlot(1 as never, slot, slot + 1, good),
        ],
        ["upsertSchedule", "no schedule", () => storage.upsertSchedule(undefined as never)],
        [
          "upsertSchedule",
          "an input that is not a string",
          () => storage.upsertSchedule(schedule("k", { input: 1 as never })),
        ],
        [
          "upsertSchedule",
          "no recurrence",
          () => storage.upsertSchedule(schedule("k", { recurrence: undefined as never })),
        ],
        [
          "upsertSchedule",
          "a NaN nextRunAt",
          () => storage.upsertSchedule(schedule("k", { nextRunAt: Number.NaN })),
        ],
        [
          "upsertSchedule",
          "a new key with no now",
          () => storage.upsertSchedule(schedule("new", { now: undefined as never })),
        ],
        ["deleteSchedule", "a key that is not a string", () => storage.deleteSchedule(null as never)],
        ["dueSchedules", "names that are not an array", () => storage.dueSchedules("wf" as never, T0, 1)],
        ["dueSchedules", "a name that is not a string", () => storage.dueSchedules([1] as never, T0, 1)],
        ["dueSchedules", "a NaN now", () => storage.dueSchedules([WF], Number.NaN, 1)],
        ["dueSchedules", "a limit of -1", () => storage.dueSchedules([WF], T0, -1)],
        ["dueSchedules", "a fractional limit", () => storage.dueSchedules([WF], T0, 0.5)],
      ];
      for (const [name, what, call] of calls) await expectInvalid(name, what, call);
      checkEqual(await storage.listSchedules(), before, "schedules after the rejected calls");
      checkEqual(await storage.getRun("r1"), null, "no run was created");
    },
  },
];
