/**
 * The storage conformance cases: one per rule of the {@linkcode StorageAdapter} contract,
 * framework-free. Run each against a fresh, initialised, empty storage; a case rejects with an
 * `Error` naming what differed.
 *
 * Times are fixed (around 1_700_000_000_000) and passed explicitly, except in the
 * cases of methods that read the clock (`claimNextRun()` without `staleBefore`, `heartbeatRun()`
 * without an expiry, `updateRunStatus()`, `updateClaimedRunStatus()`): those assume the storage
 * reads the real clock and bracket its answer with `Date.now()`.
 *
 * @module
 */

import type { StepResult, StorageAdapter, StoredError, WorkflowRun } from "./adapter.ts";
import type { ConformanceCase, ConformanceContext, ContractCase } from "./conformance_types.ts";
import { listingCases } from "./conformance_listing.ts";
import { nameCases } from "./conformance_names.ts";
import { recoveryCases } from "./conformance_recovery.ts";
import { requeueCases } from "./conformance_requeue.ts";
import { retentionCases } from "./conformance_retention.ts";
import { scheduleCases } from "./conformance_schedules.ts";
import { versionCases } from "./conformance_versions.ts";
import {
  asRun,
  between,
  check,
  checkEqual,
  checkUnchanged,
  claim,
  claimOnly,
  create,
  createAndClaim,
  createAndClaimMany,
  ENCODED_VALUES,
  event,
  expectClosed,
  finishOneRunEachWay,
  getRun,
  ids,
  LEASE,
  newRun,
  NOT_DUE,
  parkedInWait,
  scribble,
  show,
  step,
  T0,
  timeoutError,
  wait,
  WF,
} from "./conformance_support.ts";

/** The cases of the methods a run's life goes through: creation, claims, steps, status changes, events. */
const lifecycleCases: readonly ContractCase[] = [
  {
    name: "`initialize()` may be called again and keeps what is stored",
    async run(storage) {
      await create(storage, "r1");
      await storage.initialize();
      checkEqual((await getRun(storage, "r1")).status, "pending", "run after a second initialize()");
    },
  },
  {
    name: "`createRun()` stores a pending run due at createdAt with claimCount 0",
    async run(storage) {
      const result = await storage.createRun(newRun("r1", { input: '{"a":1}', idempotencyKey: "k1" }));
      const expected: WorkflowRun = {
        id: "r1",
        workflowName: WF,
        workflowVersion: null,
        status: "pending",
        input: '{"a":1}',
        output: null,
        error: null,
        idempotencyKey: "k1",
        createdAt: T0,
        updatedAt: T0,
        dueAt: T0,
        leaseId: null,
        claimCount: 0,
      };
      checkEqual(result, { run: expected, created: true }, "createRun() result");
      checkEqual(await storage.getRun("r1"), expected, "getRun() after createRun()");
      checkEqual(await storage.getStepResults("r1"), [], "getStepResults() of a new run");
    },
  },
  {
    name:
      "`createRun()` with a held idempotency key returns the existing run, created false, and writes nothing",
    async run(storage) {
      const first = await create(storage, "r1", { idempotencyKey: "k", input: '"first"' });
      const again = await storage.createRun(
        newRun("r2", { idempotencyKey: "k", input: '"second"', createdAt: T0 - 5 }),
      );
      checkEqual(again, { run: first, created: false }, "createRun() with a held key");
      checkEqual(await storage.getRun("r2"), null, "getRun() of the run that was not created");
      checkEqual(ids(await claim(storage, T0 + 1, 10)), ["r1"], "claimable runs");
    },
  },
  {
    name: "`createRun()` scopes idempotency keys to their workflow",
    async run(storage) {
      await create(storage, "r1", { idempotencyKey: "k" });
      const other = await storage.createRun(newRun("r2", { workflowName: "other", idempotencyKey: "k" }));
      checkEqual(
        [other.created, other.run.id, other.run.workflowName],
        [true, "r2", "other"],
        "same key, other workflow",
      );
    },
  },
  {
    name: "`createRun()` never treats a null idempotency key as held",
    async run(storage) {
      await create(storage, "r1");
      const second = await storage.createRun(newRun("r2"));
      checkEqual([second.created, second.run.id], [true, "r2"], "second run without a key");
    },
  },
  {
    name: "`createRun()` lets only one of two concurrent calls with the same idempotency key create a run",
    async run(storage, context) {
      const peer = await context.openPeer();
      const [a, b] = await Promise.all([
        storage.createRun(newRun("r1", { idempotencyKey: "k" })),
        peer.createRun(newRun("r2", { idempotencyKey: "k" })),
      ]);
      checkEqual([a.created, b.created].filter(Boolean).length, 1, "how many calls created a run");
      checkEqual(a.run.id, b.run.id, "the run both calls returned");
      checkEqual(ids(await claim(storage, T0, 10)), [a.run.id], "claimable runs");
    },
  },
  {
    name: "`getRun()` returns null for an unknown id",
    async run(storage) {
      checkEqual(await storage.getRun("missing"), null, "getRun() of an unknown id");
    },
  },
  {
    name: "`getStepResults()` returns [] for an unknown run",
    async run(storage) {
      checkEqual(await storage.getStepResults("missing"), [], "getStepResults() of an unknown run");
    },
  },
  {
    name: "`claimRuns()` makes a run running with a new lease until now + leaseDurationMs and claimCount 1",
    async run(storage) {
      await create(storage, "r1");
      await create(storage, "r2");
      const claimed = await claim(storage, T0 + 100, 2, [WF], 5_000);
      checkEqual(ids(claimed), ["r1", "r2"], "claimed runs");
      for (const run of claimed) {
        checkEqual(
          [run.status, run.dueAt, run.claimCount, run.steps],
          ["running", T0 + 5_100, 1, []],
          `claimed ${run.id}: status, dueAt, claimCount, steps`,
        );
        check(
          typeof run.leaseId === "string" && run.leaseId.length > 0,
          `claimed ${run.id}: leaseId should be a string`,
        );
        checkEqual(await storage.getRun(run.id), asRun(run), `getRun(${show(run.id)}) after the claim`);
      }
      check(claimed[0]!.leaseId !== claimed[1]!.leaseId, "two claimed runs should get different lease ids");
    },
  },
  {
    name: "`claimRuns()` claims the oldest dueAt first, ties in creation order",
    async run(storage) {
      await create(storage, "c", { createdAt: T0 + 10 });
      await create(storage, "z", { createdAt: T0 });
      await create(storage, "a", { createdAt: T0 });
      await create(storage, "m", { createdAt: T0 });
      await create(storage, "d", { createdAt: T0 - 5 });
      checkEqual(ids(await claim(storage, T0 + 10, 2)), ["d", "z"], "first claim of 2");
      checkEqual(ids(await claim(storage, T0 + 10, 10)), ["a", "m", "c"], "second claim");
    },
  },
  {
    name: "`claimRuns()` breaks a dueAt tie by creation order, not by when the run was parked",
    async run(storage) {
      const old = await createAndClaim(storage, "old");
      await create(storage, "new", { createdAt: T0 + 100 });
      check(
        await storage.advanceRun("old", old.leaseId, { now: T0 + 50, status: "pending", dueAt: T0 + 100 }),
        "advanceRun() to pending should succeed",
      );
      checkEqual(ids(await claim(storage, T0 + 100, 2)), ["old", "new"], "claim order");
    },
  },
  {
    name: "`claimRuns()` orders a run whose lease expired by its lease expiry among due runs",
    async run(storage) {
      const held = await createAndClaim(storage, "held");
      check(await storage.heartbeatRun("held", held.leaseId, T0 + 45_000), "heartbeatRun() should renew");
      await create(storage, "early", { createdAt: T0 + 40_000 });
      await create(storage, "late", { createdAt: T0 + 50_000 });
      checkEqual(ids(await claim(storage, T0 + 60_000, 1)), ["early"], "first claim");
      checkEqual(ids(await claim(storage, T0 + 60_000, 1)), ["held"], "second claim");
      checkEqual(ids(await claim(storage, T0 + 60_000, 1)), ["late"], "third claim");
    },
  },
  {
    name: "`claimRuns()` claims only runs of the requested workflows",
    async run(storage) {
      await create(storage, "a");
      await create(storage, "b", { workflowName: "other" });
      await create(storage, "c", { workflowName: "third" });
      checkEqual(await claim(storage, T0, 10, []), [], "claim with no workflow names");
      checkEqual(ids(await claim(storage, T0, 10, ["third", WF, "unknown"])), ["a", "c"], "claimed runs");
      checkEqual((await getRun(storage, "b")).status, "pending", "status of the other workflow's run");
    },
  },
  {
    name: "`claimRuns()` claims at most limit runs",
    async run(storage) {
      for (let i = 0; i < 5; i++) await create(storage, `r${i}`, { createdAt: T0 + i });
      checkEqual(ids(await claim(storage, T0 + 10, 3)), ["r0", "r1", "r2"], "claim with limit 3");
      checkEqual((await getRun(storage, "r3")).status, "pending", "status of an unclaimed run");
      checkEqual(ids(await claim(storage, T0 + 10, 3)), ["r3", "r4"], "claim of the rest");
    },
  },
  {
    name: "`claimRuns()` skips a run that is not yet due and claims it once dueAt is reached",
    async run(storage) {
      await create(storage, "r1", { createdAt: T0 + 1_000 });
      checkEqual(await claim(storage, T0 + 999), [], "claim 1 ms before the run is due");
      await claimOnly(storage, T0 + 1_000, "r1");
    },
  },
  {
    name: "`claimRuns()` skips a run whose lease is live",
    async run(storage) {
      await createAndClaim(storage, "r1");
      const held = await getRun(storage, "r1");
      checkEqual(await claim(storage, T0 + LEASE - 1), [], "claim 1 ms before the lease expires");
      await checkUnchanged(storage, held, "run after a claim that skipped it");
    },
  },
  {
    name:
      "`claimRuns()` reclaims an expired lease with a new leaseId, claimCount + 1 and the steps written so far",
    async run(storage) {
      const first = await createAndClaim(storage, "r1");
      const a = step("r1", "a");
      const b = step("r1", "b", { status: "retrying", output: null, attempts: 1, dueAt: T0 + 10 });
      check(await storage.saveStepResult(a, first.leaseId), "saveStepResult(a) should succeed");
      check(await storage.saveStepResult(b, first.leaseId), "saveStepResult(b) should succeed");
      const second = await claimOnly(storage, T0 + LEASE + 1, "r1");
      check(second.leaseId !== first.leaseId, "the reclaim should take a new lease id");
      checkEqual(
        [second.status, second.claimCount, second.dueAt],
        ["running", 2, T0 + 2 * LEASE + 1],
        "reclaimed run: status, claimCount, dueAt",
      );
      checkEqual(second.steps, [a, b], "steps returned with the reclaim");
      check(
        !(await storage.heartbeatRun("r1", first.leaseId, T0 + 99_000)),
        "the old lease's heartbeat should fail",
      );
    },
  },
  {
    name: "`claimRuns()` on two connections at once never returns the same run, and claims each due run once",
    async run(storage, context) {
      const peer = await context.openPeer();
      const count = 20;
      for (let i = 0; i < count; i++) {
        await create(storage, `r${String(i).padStart(2, "0")}`, { createdAt: T0 + i });
      }
      await create(storage, "later", { createdAt: T0 + 1_000 });
      const won: string[][] = [[], [], [], []];
      const racer = async (on: StorageAdapter, mine: string[], limit: number): Promise<void> => {
        for (;;) {
          const claimed = await claim(on, T0 + 100, limit);
          if (claimed.length === 0) return;
          mine.push(...ids(claimed));
        }
      };
      await Promise.all([
        racer(storage, won[0]!, 1),
        racer(peer, won[1]!, 1),
        racer(storage, won[2]!, 2),
        racer(peer, won[3]!, 3),
      ]);
      const all = won.flat();
      checkEqual(all.length, count, "number of claims");
      checkEqual(new Set(all).size, count, "number of distinct runs claimed");
      check(!all.includes("later"), "a run that is not due should not be claimed");
    },
  },
  {
    name: "`claimRuns()` on two connections at once lets only one take an expired lease",
    async run(storage, context) {
      const peer = await context.openPeer();
      for (let i = 0; i < 5; i++) await create(storage, `r${i}`);
      check((await claim(storage, T0, 5)).length === 5, "the first claim should take all 5 runs");
      const now = T0 + LEASE + 1;
      const [a, b] = await Promise.all([claim(storage, now, 5), claim(peer, now, 5)]);
      const all = [...ids(a), ...ids(b)];
      checkEqual(all.length, 5, "number of reclaims");
      checkEqual(new Set(all).size, 5, "number of distinct runs reclaimed");
    },
  },
  {
    name: "`heartbeatRun()` renews the lease, so a claim before the new expiry does not take the run",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      check(await storage.heartbeatRun("r1", held.leaseId, T0 + 60_000), "heartbeatRun() should succeed");
      checkEqual((await getRun(storage, "r1")).dueAt, T0 + 60_000, "dueAt after the heartbeat");
      checkEqual(await claim(storage, T0 + LEASE + 1), [], "claim after the old expiry");
      checkEqual(await claim(storage, T0 + 59_999), [], "claim just before the new expiry");
      const reclaimed = await claimOnly(storage, T0 + 60_001, "r1");
      checkEqual(reclaimed.claimCount, 2, "claimCount after the reclaim");
    },
  },
  {
    name: "`heartbeatRun()` without an expiry renews by the claim's lease duration from the current time",
    async run(storage) {
      const duration = 600_000;
      await create(storage, "r1", { createdAt: T0 });
      const [held] = await claim(storage, Date.now(), 1, [WF], duration);
      check(held !== undefined, "the run should be claimed");
      const before = Date.now();
      check(await storage.heartbeatRun("r1", held.leaseId), "heartbeatRun() should succeed");
      const after = Date.now();
      between(
        (await getRun(storage, "r1")).dueAt,
        before + duration,
        after + duration,
        "dueAt after the heartbeat",
      );
    },
  },
  {
    name: "`heartbeatRun()` with a wrong or superseded lease returns false and changes nothing",
    async run(storage) {
      const first = await createAndClaim(storage, "r1");
      const held = await getRun(storage, "r1");
      check(!(await storage.heartbeatRun("r1", "not-the-lease", T0 + 99_000)), "a wrong lease should fail");
      check(
        !(await storage.heartbeatRun("missing", first.leaseId, T0 + 99_000)),
        "an unknown run should fail",
      );
      await checkUnchanged(storage, held, "run after the failed heartbeats");
      const second = await claimOnly(storage, T0 + LEASE + 1, "r1");
      check(
        !(await storage.heartbeatRun("r1", first.leaseId, T0 + 99_000)),
        "the superseded lease should fail",
      );
      checkEqual((await getRun(storage, "r1")).dueAt, second.dueAt, "dueAt after the failed heartbeat");
    },
  },
  {
    name: "`saveStepResult()` with a lease writes only while that lease is held",
    async run(storage) {
      await create(storage, "idle", { createdAt: T0 + NOT_DUE });
      check(
        !(await storage.saveStepResult(step("idle", "a"), "any-lease")),
        "a lease on an unclaimed run should fail",
      );
      const held = await createAndClaim(storage, "r1", T0 + 1);
      const a = step("r1", "a");
      check(await storage.saveStepResult(a, held.leaseId), "the held lease should write");
      check(
        !(await storage.saveStepResult(step("r1", "a", { output: '"x"' }), "wrong")),
        "a wrong lease should fail",
      );
      check(!(await storage.saveStepResult(step("r1", "b"), "wrong")), "a wrong lease should fail");
      checkEqual(await storage.getStepResults("r1"), [a], "steps after the fenced writes");
      checkEqual(await storage.getStepResults("idle"), [], "steps of the unclaimed run");
    },
  },
  {
    name: "`saveStepResult()` without a lease writes unconditionally",
    async run(storage) {
      await create(storage, "idle", { createdAt: T0 + NOT_DUE });
      const held = await createAndClaim(storage, "r1", T0 + 1);
      const a = step("idle", "a");
      const b = step("r1", "b");
      check(await storage.saveStepResult(a), "an unfenced write to an unclaimed run should succeed");
      check(await storage.saveStepResult(b), "an unfenced write to a run someone holds should succeed");
      checkEqual(await storage.getStepResults("idle"), [a], "steps of the unclaimed run");
      checkEqual(await storage.getStepResults("r1"), [b], "steps of the held run");
      check(
        await storage.heartbeatRun("r1", held.leaseId, T0 + 10_000),
        "the holder's lease should be intact",
      );
    },
  },
  {
    name: "`saveStepResult()` upserts by run and step name, keeping first-written order",
    async run(storage) {
      await create(storage, "r1");
      await create(storage, "r2");
      const a = step("r1", "a", { status: "retrying", output: null, attempts: 1, dueAt: T0 + 5 });
      const b = step("r1", "b");
      const c = step("r1", "c", { status: "skipped", output: null, attempts: 0 });
      for (const result of [a, b, c]) {
        check(await storage.saveStepResult(result), `saveStepResult(${result.stepName})`);
      }
      const a2 = step("r1", "a", { status: "completed", output: '"done"', attempts: 2, updatedAt: T0 + 9 });
      const other = step("r2", "a", { output: '"other run"' });
      check(await storage.saveStepResult(a2), "saveStepResult(a) again");
      check(await storage.saveStepResult(other), "saveStepResult(a) on another run");
      checkEqual(await storage.getStepResults("r1"), [a2, b, c], "steps of r1");
      checkEqual(await storage.getStepResults("r2"), [other], "steps of r2");
    },
  },
  {
    name: "encoded values round-trip byte for byte through runs and steps",
    async run(storage) {
      const runIds = ENCODED_VALUES.map((_, i) => `v${String(i).padStart(2, "0")}`);
      for (const [i, value] of ENCODED_VALUES.entries()) await create(storage, runIds[i]!, { input: value });
      const claimed = await claim(storage, T0, ENCODED_VALUES.length);
      checkEqual(ids(claimed), runIds, "claimed runs");
      for (const [i, value] of ENCODED_VALUES.entries()) {
        const run = claimed[i]!;
        check(run.input === value, `claimed input of value #${i} differs: ${show(run.input)}`);
        const result = step(run.id, "s", { output: value });
        const ok = await storage.advanceRun(run.id, run.leaseId, {
          now: T0 + 1,
          step: result,
          status: "completed",
          output: value,
        });
        check(ok, `advanceRun() of value #${i} should succeed`);
        const stored = await getRun(storage, run.id);
        check(stored.input === value, `stored input of value #${i} differs: ${show(stored.input)}`);
        check(stored.output === value, `stored output of value #${i} differs: ${show(stored.output)}`);
        const [saved] = await storage.getStepResults(run.id);
        check(saved?.output === value, `step output of value #${i} differs: ${show(saved?.output)}`);
      }
    },
  },
  {
    name: "error texts round-trip byte for byte through runs and steps, NUL included",
    async run(storage) {
      const claimed = await createAndClaimMany(storage, ENCODED_VALUES.length);
      const errorOf = (value: string): StoredError => ({
        code: value,
        name: value,
        message: value,
        stepName: value,
      });
      // Submitted together, so that a storage that groups advances writes them as one group.
      const results = claimed.map((run, i) =>
        step(run.id, "s", { status: "failed", output: null, error: errorOf(ENCODED_VALUES[i]!), attempts: 2 })
      );
      const applied = await Promise.all(claimed.map((run, i) =>
        storage.advanceRun(run.id, run.leaseId, {
          now: T0 + 1,
          step: results[i]!,
          status: "failed",
          error: errorOf(ENCODED_VALUES[i]!),
        })
      ));
      checkEqual(applied, claimed.map(() => true), "advanceRun() results");
      for (const [i, value] of ENCODED_VALUES.entries()) {
        const run = await getRun(storage, claimed[i]!.id);
        check(
          JSON.stringify(run.error) === JSON.stringify(errorOf(value)),
          `stored run error of value #${i} differs: ${show(run.error)}`,
        );
        const [saved] = await storage.getStepResults(run.id);
        check(
          JSON.stringify(saved?.error) === JSON.stringify(errorOf(value)),
          `stored step error of value #${i} differs: ${show(saved?.error)}`,
        );
      }
      // A step saved by saveStepResult() comes back with its error when the run is claimed again.
      const again = await createAndClaim(storage, "again");
      const retry = step("again", "s", {
        status: "retrying",
        output: null,
        error: errorOf("a\u0000b"),
        dueAt: T0,
      });
      check(await storage.saveStepResult(retry, again.leaseId), "saveStepResult() should succeed");
      const [reclaimed] = await claim(storage, T0 + LEASE + 1);
      checkEqual(reclaimed?.steps, [retry], "steps of the reclaimed run");
    },
  },
  {
    name: "two advances of one run submitted together apply in order, each fenced",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const renewed = storage.advanceRun("r1", held.leaseId, { now: T0 + 1, step: step("r1", "a") });
      const completed = storage.advanceRun("r1", held.leaseId, {
        now: T0 + 2,
        step: step("r1", "b", { updatedAt: T0 + 2 }),
        status: "completed",
        output: "1",
      });
      const late = storage.advanceRun("r1", held.leaseId, { now: T0 + 3, step: step("r1", "c") });
      checkEqual(await Promise.all([renewed, completed, late]), [true, true, false], "advanceRun() results");
      const run = await getRun(storage, "r1");
      checkEqual([run.status, run.output, run.leaseId], ["completed", "1", null], "run after the advances");
      checkEqual(
        (await storage.getStepResults("r1")).map((s) => s.stepName),
        ["a", "b"],
        "steps after the advances",
      );
    },
  },
  {
    name: "`advanceRun()` commits a step and the run's completion together",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const result = step("r1", "last", { output: '{"total":3}' });
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 5,
          step: result,
          status: "completed",
          output: '{"total":3}',
        }),
        "advanceRun() should succeed",
      );
      checkEqual(
        await storage.getRun("r1"),
        {
          ...asRun(held),
          status: "completed",
          output: '{"total":3}',
          error: null,
          updatedAt: T0 + 5,
          dueAt: null,
          leaseId: null,
        },
        "completed run",
      );
      checkEqual(await storage.getStepResults("r1"), [result], "steps of the completed run");
      check(!(await storage.heartbeatRun("r1", held.leaseId, T0 + 10_000)), "the lease should be released");
    },
  },
  {
    name: "`advanceRun()` fails a run, storing its error and the failed step's error",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const runError: StoredError = {
        code: "STEP_TIMEOUT",
        name: "StepTimeoutError",
        message: 'Step "charge" timed out',
        stepName: "charge",
      };
      const stepError: StoredError = {
        code: null,
        name: "TypeError",
        message: 'boom — "quoted" ü\nsecond line',
      };
      const result = step("r1", "charge", { status: "failed", output: null, error: stepError, attempts: 3 });
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 7,
          step: result,
          status: "failed",
          error: runError,
        }),
        "advanceRun() should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.error, run.output, run.leaseId, run.dueAt, run.updatedAt],
        ["failed", runError, null, null, null, T0 + 7],
        "failed run: status, error, output, leaseId, dueAt, updatedAt",
      );
      checkEqual(await storage.getStepResults("r1"), [result], "steps of the failed run");
    },
  },
  {
    name: "`advanceRun()` to pending with a future dueAt releases the lease until then",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const retry = step("r1", "a", {
        status: "retrying",
        output: null,
        error: { code: null, name: "Error", message: "flaky" },
        attempts: 1,
        dueAt: T0 + 5_000,
      });
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 10,
          step: retry,
          status: "pending",
          dueAt: T0 + 5_000,
        }),
        "advanceRun() should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt],
        ["pending", null, T0 + 5_000],
        "parked run: status, leaseId, dueAt",
      );
      check(!(await storage.heartbeatRun("r1", held.leaseId, T0 + 99_000)), "the released lease should fail");
      checkEqual(await claim(storage, T0 + 4_999), [], "claim before the retry is due");
      const again = await claimOnly(storage, T0 + 5_000, "r1");
      checkEqual([again.claimCount, again.steps], [2, [retry]], "reclaimed run: claimCount, steps");
    },
  },
  {
    name: "`advanceRun()` parks a run as sleeping until dueAt",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const nap = step("r1", "nap", { status: "sleeping", output: null, attempts: 0, dueAt: T0 + 3_600_000 });
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 10,
          step: nap,
          status: "sleeping",
          dueAt: T0 + 3_600_000,
        }),
        "advanceRun() should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual([run.status, run.leaseId, run.dueAt], ["sleeping", null, T0 + 3_600_000], "sleeping run");
      checkEqual(await claim(storage, T0 + 3_599_999), [], "claim before the wake time");
      await claimOnly(storage, T0 + 3_600_000, "r1");
    },
  },
  {
    name: "`claimRuns()` never claims a waiting run without a timeout, and claims one whose timeout passed",
    async run(storage) {
      const forever = await createAndClaim(storage, "forever");
      const timed = await createAndClaim(storage, "timed");
      check(
        await storage.advanceRun("forever", forever.leaseId, { now: T0 + 1, status: "waiting", dueAt: null }),
        "advanceRun(waiting) should succeed",
      );
      check(
        await storage.advanceRun("timed", timed.leaseId, {
          now: T0 + 1,
          status: "waiting",
          dueAt: T0 + 60_000,
        }),
        "advanceRun(waiting with a timeout) should succeed",
      );
      const run = await getRun(storage, "forever");
      checkEqual(
        [run.status, run.leaseId, run.dueAt],
        ["waiting", null, null],
        "waiting run without a timeout",
      );
      checkEqual(await claim(storage, T0 + 59_999, 10), [], "claim before the timeout");
      checkEqual(
        ids(await claim(storage, T0 + 10 * 365 * 86_400_000, 10)),
        ["timed"],
        "claim ten years later",
      );
    },
  },
  {
    name: "`advanceRun()` without a status keeps the run running and renews its lease to leaseExpiresAt",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const a = step("r1", "a");
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 1_000,
          step: a,
          leaseExpiresAt: T0 + 90_000,
        }),
        "advanceRun() should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt, run.claimCount],
        ["running", held.leaseId, T0 + 90_000, 1],
        "run after the step: status, leaseId, dueAt, claimCount",
      );
      checkEqual(await storage.getStepResults("r1"), [a], "steps");
      checkEqual(await claim(storage, T0 + LEASE + 1), [], "claim after the original expiry");
      check(await storage.heartbeatRun("r1", held.leaseId, T0 + 95_000), "the lease should still be held");
    },
  },
  {
    name: "`advanceRun()` with a wrong lease writes neither the step nor the status",
    async run(storage) {
      const first = await createAndClaim(storage, "r1");
      const change = { now: T0 + 5, step: step("r1", "a"), status: "completed", output: '"x"' } as const;
      const held = await getRun(storage, "r1");
      check(!(await storage.advanceRun("r1", "wrong", change)), "a wrong lease should fail");
      await checkUnchanged(storage, held, "run after the failed advance");
      await claimOnly(storage, T0 + LEASE + 1, "r1");
      const reclaimed = await getRun(storage, "r1");
      check(!(await storage.advanceRun("r1", first.leaseId, change)), "a superseded lease should fail");
      await checkUnchanged(storage, reclaimed, "run after the superseded advance");
      checkEqual(await storage.getStepResults("r1"), [], "steps after the failed advances");
      check(
        !(await storage.advanceRun("missing", first.leaseId, { now: T0 + 5 })),
        "an unknown run should fail",
      );
    },
  },
  {
    name: "`advanceRun()` on a finished run returns false and changes nothing",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      check(
        await storage.advanceRun("r1", held.leaseId, { now: T0 + 5, status: "completed", output: '"once"' }),
        "the first advanceRun() should succeed",
      );
      const done = await getRun(storage, "r1");
      const change = {
        now: T0 + 6,
        step: step("r1", "late"),
        status: "failed",
        error: { code: null, name: "Error", message: "late" },
      } as const;
      check(
        !(await storage.advanceRun("r1", held.leaseId, change)),
        "advanceRun() on a finished run should fail",
      );
      await checkUnchanged(storage, done, "finished run");
      checkEqual(await storage.getStepResults("r1"), [], "steps of the finished run");
    },
  },
  {
    name:
      "concurrent `advanceRun()` calls each get their own answer: held leases write, stale and wrong ones do not",
    async run(storage) {
      // Concurrent advances may share a transaction (group commit); each must still be fenced alone.
      const count = 24;
      for (let i = 0; i < count; i++) await create(storage, `r${i}`, { createdAt: T0 + i });
      const first = await claim(storage, T0 + count, count);
      checkEqual(first.length, count, "runs claimed");
      // Every fourth run is handed back and claimed again, so its first lease is superseded.
      for (const run of first.filter((_, i) => i % 4 === 3)) {
        const release = { now: T0 + count, status: "pending", dueAt: T0 + count } as const;
        check(await storage.advanceRun(run.id, run.leaseId, release), `release ${run.id}`);
      }
      const current = new Map(first.map((run) => [run.id, run.leaseId]));
      for (const run of await claim(storage, T0 + count + 1, count)) current.set(run.id, run.leaseId);
      const expiry = T0 + 2 * LEASE;
      const calls = first.map((run, i): { expected: boolean; call: Promise<boolean> } => {
        const now = T0 + 100 + i;
        switch (i % 4) {
          case 0: // goes on: step written, lease renewed
            return {
              expected: true,
              call: storage.advanceRun(run.id, run.leaseId, {
                now,
                step: step(run.id, "a"),
                leaseExpiresAt: expiry,
              }),
            };
          case 1: // the last step, fused with the completion
            return {
              expected: true,
              call: storage.advanceRun(run.id, run.leaseId, {
                now,
                step: step(run.id, "a"),
                status: "completed",
                output: `"${run.id}"`,
              }),
            };
          case 2: // a lease that was never this run's
            return {
              expected: false,
              call: storage.advanceRun(run.id, `${run.leaseId}-wrong`, {
                now,
                step: step(run.id, "a"),
                status: "completed",
                output: '"wrong"',
              }),
            };
          default: // the superseded first lease
            return {
              expected: false,
              call: storage.advanceRun(run.id, run.leaseId, {
                now,
                step: step(run.id, "a"),
                leaseExpiresAt: expiry,
              }),
            };
        }
      });
      // Two advances of one run, submitted in order: the completion lands first, so the later one is fenced out.
      const held = first[1]!;
      const late = storage.advanceRun(held.id, held.leaseId, { now: T0 + 200, step: step(held.id, "late") });
      const answers = await Promise.all([...calls.map((c) => c.call), late]);
      checkEqual(answers, [...calls.map((c) => c.expected), false], "answers of the concurrent advances");
      for (let i = 0; i < count; i++) {
        const run = await getRun(storage, `r${i}`);
        const steps = await storage.getStepResults(`r${i}`);
        const leaseId = current.get(`r${i}`)!;
        const [status, lease, output, stepNames] = i % 4 === 0
          ? ["running", leaseId, null, ["a"]]
          : i % 4 === 1
          ? ["completed", null, `"r${i}"`, ["a"]]
          : ["running", leaseId, null, []];
        checkEqual(
          [run.status, run.leaseId, run.output, steps.map((s) => s.stepName)],
          [status, lease, output, stepNames],
          `r${i}: status, leaseId, output, steps`,
        );
        if (i % 4 === 0) checkEqual(run.dueAt, expiry, `r${i}: renewed lease expiry`);
      }
    },
  },
  {
    name: "`updateRunStatus()` cancels an unfinished run and releases its lease",
    async run(storage) {
      await create(storage, "idle", { createdAt: T0 + NOT_DUE });
      const held = await createAndClaim(storage, "r1", T0 + 1);
      check(await storage.updateRunStatus("r1", "cancelled"), "cancelling a running run should succeed");
      check(await storage.updateRunStatus("idle", "cancelled"), "cancelling a pending run should succeed");
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt],
        ["cancelled", null, null],
        "cancelled run: status, leaseId, dueAt",
      );
      check(
        !(await storage.heartbeatRun("r1", held.leaseId, T0 + 99_000)),
        "the old holder's heartbeat should fail",
      );
      check(
        !(await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 2,
          step: step("r1", "a"),
          status: "completed",
        })),
        "the old holder's advanceRun() should fail",
      );
      check(
        !(await storage.saveStepResult(step("r1", "b"), held.leaseId)),
        "the old holder's saveStepResult() should fail",
      );
      checkEqual(await storage.getStepResults("r1"), [], "steps of the cancelled run");
      checkEqual((await getRun(storage, "r1")).status, "cancelled", "status after the old holder's attempts");
      checkEqual(await claim(storage, T0 + 10 * LEASE, 10), [], "claim after cancelling");
    },
  },
  {
    name: "`updateRunStatus()` returns false for a finished or unknown run and changes nothing",
    async run(storage) {
      const held = await createAndClaim(storage, "done");
      check(
        await storage.advanceRun("done", held.leaseId, { now: T0 + 5, status: "completed", output: "1" }),
        "complete",
      );
      await create(storage, "cancelled");
      check(await storage.updateRunStatus("cancelled", "cancelled"), "cancel");
      const done = await getRun(storage, "done");
      const cancelled = await getRun(storage, "cancelled");
      check(!(await storage.updateRunStatus("done", "cancelled")), "cancelling a completed run should fail");
      check(
        !(await storage.updateRunStatus("cancelled", "pending")),
        "re-queueing a cancelled run should fail",
      );
      check(!(await storage.updateRunStatus("missing", "cancelled")), "an unknown run should fail");
      await checkUnchanged(storage, done, "completed run");
      await checkUnchanged(storage, cancelled, "cancelled run");
    },
  },
  {
    name: "`updateRunStatus()` to pending releases the lease and makes the run due at once",
    async run(storage) {
      await create(storage, "r1");
      const [held] = await claim(storage, Date.now(), 1, [WF], 3_600_000);
      check(held !== undefined, "the run should be claimed");
      const before = Date.now();
      check(await storage.updateRunStatus("r1", "pending"), "updateRunStatus(pending) should succeed");
      const after = Date.now();
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId],
        ["pending", null],
        "run after updateRunStatus(pending): status, leaseId",
      );
      between(run.dueAt, before, after, "dueAt after updateRunStatus(pending)");
      check(!(await storage.heartbeatRun("r1", held.leaseId, after + 99_000)), "the old lease should fail");
      await claimOnly(storage, Date.now(), "r1");
    },
  },
  {
    name: "`updateClaimedRunStatus()` writes only while the lease is held, and releases it",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const before = await getRun(storage, "r1");
      check(!(await storage.updateClaimedRunStatus("r1", "wrong", "cancelled")), "a wrong lease should fail");
      check(
        !(await storage.updateClaimedRunStatus("missing", held.leaseId, "cancelled")),
        "an unknown run should fail",
      );
      await checkUnchanged(storage, before, "run after the failed updates");
      check(
        await storage.updateClaimedRunStatus("r1", held.leaseId, "cancelled"),
        "the held lease should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt],
        ["cancelled", null, null],
        "cancelled run: status, leaseId, dueAt",
      );
      check(
        !(await storage.updateClaimedRunStatus("r1", held.leaseId, "pending")),
        "the released lease should fail",
      );
      checkEqual(
        (await getRun(storage, "r1")).status,
        "cancelled",
        "status after the released lease's update",
      );
    },
  },
  {
    name: "`updateClaimedRunStatus()` to pending hands the run to another claimer at once",
    async run(storage, context) {
      const peer = await context.openPeer();
      await create(storage, "r1");
      const [held] = await claim(storage, Date.now(), 1, [WF], 3_600_000);
      check(held !== undefined, "the run should be claimed");
      check(
        await storage.updateClaimedRunStatus("r1", held.leaseId, "pending"),
        "updateClaimedRunStatus(pending)",
      );
      const [taken] = await claim(peer, Date.now());
      check(taken !== undefined, "the peer should claim the released run at once");
      checkEqual([taken.id, taken.claimCount], ["r1", 2], "the peer's claim: id, claimCount");
      check(taken.leaseId !== held.leaseId, "the peer should get a new lease");
      check(!(await storage.heartbeatRun("r1", held.leaseId)), "the old lease should fail");
    },
  },
  {
    name: "`claimNextRun()` returns null when no run is due",
    async run(storage) {
      checkEqual(await storage.claimNextRun([WF]), null, "claimNextRun() on an empty storage");
      await create(storage, "later", { createdAt: T0 + 1_000 });
      checkEqual(await storage.claimNextRun([WF], T0 + 999), null, "claimNextRun() before the run is due");
      checkEqual(
        await storage.claimNextRun(["other"], T0 + 1_000),
        null,
        "claimNextRun() of another workflow",
      );
    },
  },
  {
    name: "`claimNextRun()` claims the oldest run due at staleBefore with a 30 s lease",
    async run(storage) {
      await create(storage, "b", { createdAt: T0 + 20 });
      await create(storage, "a", { createdAt: T0 + 10 });
      const run = await storage.claimNextRun([WF], T0 + 100);
      check(run !== null, "claimNextRun() should claim a run");
      checkEqual(
        [run.id, run.status, run.claimCount, run.dueAt, run.steps],
        ["a", "running", 1, T0 + 100 + 30_000, []],
        "claimed run: id, status, claimCount, dueAt, steps",
      );
      checkEqual(await storage.getRun("a"), asRun(run), "getRun() after claimNextRun()");
      checkEqual(
        await storage.claimNextRun([WF], T0 + 100 + 30_000 + 1).then((next) => next?.id),
        "b",
        "next claim",
      );
      const reclaimed = await storage.claimNextRun([WF], T0 + 100 + 30_000 + 1);
      checkEqual([reclaimed?.id, reclaimed?.claimCount], ["a", 2], "reclaim of the expired lease");
    },
  },
  {
    name: "`claimNextRun()` without staleBefore claims at the current time",
    async run(storage) {
      await create(storage, "r1", { createdAt: T0 });
      await create(storage, "future", { createdAt: Date.now() + 86_400_000 });
      const before = Date.now();
      const run = await storage.claimNextRun([WF]);
      const after = Date.now();
      check(run !== null, "claimNextRun() should claim the due run");
      checkEqual(run.id, "r1", "claimed run");
      between(run.dueAt, before + 30_000, after + 30_000, "lease expiry");
      checkEqual(
        await storage.claimNextRun([WF]),
        null,
        "claimNextRun() while the lease is live and the other run is not due",
      );
    },
  },
  {
    name: "finished runs are never claimed",
    async run(storage) {
      await finishOneRunEachWay(storage, "fenced");
      checkEqual(await claim(storage, T0 + 100 * 365 * 86_400_000, 10), [], "claim a century later");
      checkEqual(await storage.claimNextRun([WF]), null, "claimNextRun() now");
    },
  },
  {
    name:
      "`advanceRun()` to sleeping releases the lease until dueAt, and the sleep's step result keeps its dueAt",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      const wakeAt = T0 + 60_000;
      const nap = step("r1", "nap", { status: "sleeping", output: null, attempts: 0, dueAt: wakeAt });
      check(
        await storage.advanceRun("r1", held.leaseId, {
          now: T0 + 10,
          step: nap,
          status: "sleeping",
          dueAt: wakeAt,
        }),
        "advanceRun(sleeping) should succeed",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt, run.updatedAt],
        ["sleeping", null, wakeAt, T0 + 10],
        "sleeping run: status, leaseId, dueAt, updatedAt",
      );
      check(!(await storage.heartbeatRun("r1", held.leaseId, T0 + 99_000)), "the released lease should fail");
      check(
        !(await storage.advanceRun("r1", held.leaseId, { now: T0 + 11, status: "completed", output: "1" })),
        "the released lease's advanceRun() should fail",
      );
      checkEqual(await claim(storage, wakeAt - 1, 10), [], "claim 1 ms before the wake time");
      const woken = await claimOnly(storage, wakeAt, "r1");
      checkEqual(
        [woken.status, woken.claimCount, woken.steps],
        ["running", 2, [nap]],
        "reclaimed run: status, claimCount, steps",
      );
      checkEqual(await storage.getStepResults("r1"), [nap], "stored steps after the reclaim");
    },
  },
  {
    name: "`deliverEvent()` returns false for an unknown run and stores nothing",
    async run(storage) {
      check(
        !(await storage.deliverEvent("r1", event("approve", '"early"', T0))),
        "deliverEvent() to an unknown run should return false",
      );
      checkEqual(await storage.getRun("r1"), null, "getRun() after the delivery");
      const held = await createAndClaim(storage, "r1", T0 + 1);
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("approve", T0 + 2, null)),
        { outcome: "parked" },
        "awaitEvent() on a run created with that id afterwards",
      );
    },
  },
  {
    name: "`deliverEvent()` returns false for a finished run and changes nothing",
    async run(storage) {
      await finishOneRunEachWay(storage, "unfenced");
      for (const id of ["completed", "failed", "cancelled"]) {
        const before = await getRun(storage, id);
        check(
          !(await storage.deliverEvent(id, event("approve", '"late"', T0 + 5))),
          `deliverEvent() to a ${id} run should return false`,
        );
        await checkUnchanged(storage, before, `${id} run after the delivery`);
        checkEqual(await storage.getStepResults(id), [], `steps of the ${id} run`);
      }
      checkEqual(await claim(storage, T0 + 10 * LEASE, 10), [], "claim after the deliveries");
    },
  },
  {
    name: "`awaitEvent()` consumes the event delivered before the wait; a second one of that name is refused",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      check(await storage.deliverEvent("r1", event("approve", '"first"', T0 + 50)), "deliver first");
      check(await storage.deliverEvent("r1", event("other", '"other"', T0 + 20)), "deliver other");
      // A wait takes one event: a second of the name would be acknowledged and never consumed.
      check(
        !(await storage.deliverEvent("r1", event("approve", '"second"', T0 + 10))),
        "a second event of a name already stored should be refused",
      );
      const before = await getRun(storage, "r1");
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("approve", T0 + 100, T0 + 60_000)),
        { outcome: "received", payload: '"first"' },
        "awaitEvent()",
      );
      const received = step("r1", "approve", { output: '"first"', updatedAt: T0 + 100 });
      checkEqual(await storage.getStepResults("r1"), [received], "steps after awaitEvent()");
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt, run.claimCount],
        [before.status, before.leaseId, before.dueAt, before.claimCount],
        "run after receiving: status, leaseId, dueAt, claimCount",
      );
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("other", T0 + 200, null)),
        { outcome: "received", payload: '"other"' },
        "awaitEvent(other): the event of another name was kept",
      );
    },
  },
  {
    name:
      "`listEvents()` reads the unconsumed events in delivery order; consumed and refused ones are not there",
    async run(storage) {
      checkEqual(await storage.listEvents("r1"), [], "listEvents() of an unknown run");
      const held = await createAndClaim(storage, "r1");
      checkEqual(await storage.listEvents("r1"), [], "listEvents() before any event");
      check(await storage.deliverEvent("r1", event("ship", '{"to":"Zürich 🚚"}', T0 + 50)), "deliver ship");
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 20)), "deliver approve");
      check(!(await storage.deliverEvent("r1", event("ship", '"second"', T0 + 60))), "a second ship");
      // Delivery order, not createdAt order: the clock of a sender is not the store's.
      checkEqual(
        await storage.listEvents("r1"),
        [
          { name: "ship", payload: '{"to":"Zürich 🚚"}', createdAt: T0 + 50 },
          { name: "approve", payload: '"yes"', createdAt: T0 + 20 },
        ],
        "listEvents() after two deliveries",
      );
      checkEqual(
        (await storage.awaitEvent("r1", held.leaseId, wait("ship", T0 + 100, null))).outcome,
        "received",
        "awaitEvent(ship)",
      );
      checkEqual(
        await storage.listEvents("r1"),
        [{ name: "approve", payload: '"yes"', createdAt: T0 + 20 }],
        "listEvents() after the wait consumed ship",
      );
      check(await storage.updateRunStatus("r1", "cancelled"), "cancel");
      checkEqual(await storage.listEvents("r1"), [], "listEvents() of a finished run");
    },
  },
  {
    name: "`deliverEvent()` returns false, storing nothing, once the wait of that name is over",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 1)), "deliverEvent()");
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("approve", T0 + 2, null)),
        { outcome: "received", payload: '"yes"' },
        "awaitEvent()",
      );
      const steps = await storage.getStepResults("r1");
      const run = await getRun(storage, "r1");
      check(
        !(await storage.deliverEvent("r1", event("approve", '"again"', T0 + 3))),
        "deliverEvent() after the wait received its event should return false",
      );
      await checkUnchanged(storage, run, "run after the refused event");
      checkEqual(await storage.getStepResults("r1"), steps, "steps after the refused event");
      // Any step result of the name but a waiting one ends the wait: a reclaimed run finds none.
      const failed = step("r1", "later", { status: "failed", output: null, error: timeoutError("later") });
      check(await storage.saveStepResult(failed, held.leaseId), "saveStepResult(failed)");
      check(
        !(await storage.deliverEvent("r1", event("later", '"x"', T0 + 4))),
        "deliverEvent() to a failed wait",
      );
      const reclaimed = await claimOnly(storage, T0 + LEASE + 1, "r1");
      checkEqual(
        await storage.awaitEvent("r1", reclaimed.leaseId, wait("approve", T0 + LEASE + 2, null)),
        { outcome: "parked" },
        "awaitEvent() of the reclaimed run finds no refused event",
      );
    },
  },
  {
    name: "`awaitEvent()` with no event parks the run as waiting, without a lease, due at timeoutAt",
    async run(storage) {
      const timeoutAt = T0 + 60_000;
      const held = await parkedInWait(storage, "r1", wait("approve", T0 + 10, timeoutAt));
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.leaseId, run.dueAt, run.updatedAt, run.claimCount],
        ["waiting", null, timeoutAt, T0 + 10, 1],
        "parked run: status, leaseId, dueAt, updatedAt, claimCount",
      );
      const waiting: StepResult = {
        runId: "r1",
        stepName: "approve",
        status: "waiting",
        output: null,
        error: null,
        attempts: 1,
        dueAt: timeoutAt,
        updatedAt: T0 + 10,
      };
      checkEqual(await storage.getStepResults("r1"), [waiting], "steps of the parked run");
      check(!(await storage.heartbeatRun("r1", held.leaseId, T0 + 99_000)), "the released lease should fail");
      checkEqual(await claim(storage, timeoutAt - 1, 10), [], "claim 1 ms before the timeout");
      const again = await claimOnly(storage, timeoutAt, "r1");
      checkEqual(
        [again.claimCount, again.steps],
        [2, [waiting]],
        "reclaim at the timeout: claimCount, steps",
      );
      checkEqual(
        await storage.awaitEvent("r1", again.leaseId, wait("approve", timeoutAt, timeoutAt)),
        { outcome: "timedOut" },
        "awaitEvent() at the timeout",
      );
    },
  },
  {
    name: "`awaitEvent()` with a null timeout parks a run that no claim takes until its event arrives",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, null));
      const run = await getRun(storage, "r1");
      checkEqual([run.status, run.leaseId, run.dueAt], ["waiting", null, null], "parked run");
      checkEqual(
        (await storage.getStepResults("r1")).map((s) => [s.stepName, s.status, s.dueAt]),
        [["approve", "waiting", null]],
        "steps of the parked run: name, status, dueAt",
      );
      checkEqual(await claim(storage, T0 + 100 * 365 * 86_400_000, 10), [], "claim a century later");
      checkEqual(await storage.claimNextRun([WF]), null, "claimNextRun() now");
      const sentAt = T0 + 5_000;
      check(await storage.deliverEvent("r1", event("approve", '{"ok":true}', sentAt)), "deliverEvent()");
      checkEqual((await getRun(storage, "r1")).dueAt, sentAt, "dueAt of the woken run");
      checkEqual(await claim(storage, sentAt - 1), [], "claim before the event was sent");
      const woken = await claimOnly(storage, sentAt, "r1");
      checkEqual(
        await storage.awaitEvent("r1", woken.leaseId, wait("approve", sentAt + 1, null)),
        { outcome: "received", payload: '{"ok":true}' },
        "awaitEvent() after the wake",
      );
      checkEqual(
        await storage.getStepResults("r1"),
        [step("r1", "approve", { output: '{"ok":true}', updatedAt: sentAt + 1 })],
        "steps after receiving",
      );
      checkEqual((await getRun(storage, "r1")).status, "running", "status after receiving");
    },
  },
  {
    name: "`deliverEvent()` wakes a waiting run only for the name it waits for",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, null));
      const parked = await getRun(storage, "r1");
      check(await storage.deliverEvent("r1", event("reject", '"no"', T0 + 20)), "deliverEvent(reject)");
      await checkUnchanged(storage, parked, "run after an event of another name");
      checkEqual(await claim(storage, T0 + 100 * 365 * 86_400_000, 10), [], "claim after the other event");
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 30)), "deliverEvent(approve)");
      const run = await getRun(storage, "r1");
      checkEqual([run.status, run.leaseId, run.dueAt], ["waiting", null, T0 + 30], "run after its event");
      const woken = await claimOnly(storage, T0 + 30, "r1");
      checkEqual(
        await storage.awaitEvent("r1", woken.leaseId, wait("approve", T0 + 40, null)),
        { outcome: "received", payload: '"yes"' },
        "awaitEvent(approve) after the wake",
      );
      checkEqual(
        await storage.awaitEvent("r1", woken.leaseId, wait("reject", T0 + 50, null)),
        { outcome: "received", payload: '"no"' },
        "awaitEvent(reject): the other event was kept",
      );
    },
  },
  {
    name: "`deliverEvent()` makes a waiting run with a timeout due at the event's createdAt",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, T0 + NOT_DUE));
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 20)), "deliverEvent()");
      checkEqual((await getRun(storage, "r1")).dueAt, T0 + 20, "dueAt after the event");
      const woken = await claimOnly(storage, T0 + 20, "r1");
      checkEqual(
        await storage.awaitEvent("r1", woken.leaseId, wait("approve", T0 + 21, T0 + NOT_DUE)),
        { outcome: "received", payload: '"yes"' },
        "awaitEvent() after the wake",
      );
    },
  },
  {
    name: "`deliverEvent()` to a run that is not waiting stores the event and leaves the run as it is",
    async run(storage) {
      await create(storage, "pending", { createdAt: T0 + NOT_DUE });
      const held = await createAndClaim(storage, "running");
      const sleeper = await createAndClaim(storage, "sleeping");
      const nap = step("sleeping", "nap", {
        status: "sleeping",
        output: null,
        attempts: 0,
        dueAt: T0 + 2 * NOT_DUE,
      });
      check(
        await storage.advanceRun("sleeping", sleeper.leaseId, {
          now: T0 + 1,
          step: nap,
          status: "sleeping",
          dueAt: T0 + 2 * NOT_DUE,
        }),
        "advanceRun(sleeping)",
      );
      for (const id of ["pending", "running", "sleeping"]) {
        const before = await getRun(storage, id);
        check(await storage.deliverEvent(id, event("approve", `"${id}"`, T0 + 5)), `deliverEvent() to ${id}`);
        await checkUnchanged(storage, before, `${id} run after the delivery`);
      }
      checkEqual(
        await storage.awaitEvent("running", held.leaseId, wait("approve", T0 + 6, null)),
        { outcome: "received", payload: '"running"' },
        "awaitEvent() of the running run",
      );
      check(
        await storage.advanceRun("running", held.leaseId, { now: T0 + 7, status: "completed", output: "1" }),
        "complete the running run",
      );
      const pending = await claimOnly(storage, T0 + NOT_DUE, "pending");
      checkEqual(
        await storage.awaitEvent("pending", pending.leaseId, wait("approve", T0 + NOT_DUE, null)),
        { outcome: "received", payload: '"pending"' },
        "awaitEvent() of the run that was pending",
      );
    },
  },
  {
    name: "`awaitEvent()` past timeoutAt with no event fails the wait and the run with timeoutError",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      check(await storage.deliverEvent("r1", event("other", '"x"', T0 + 1)), "deliverEvent(other)");
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("approve", T0 + 101, T0 + 100)),
        { outcome: "timedOut" },
        "awaitEvent() 1 ms after the timeout",
      );
      const run = await getRun(storage, "r1");
      checkEqual(
        [run.status, run.error, run.leaseId, run.dueAt, run.updatedAt],
        ["failed", timeoutError("approve"), null, null, T0 + 101],
        "timed-out run: status, error, leaseId, dueAt, updatedAt",
      );
      const failed = step("r1", "approve", {
        status: "failed",
        output: null,
        error: timeoutError("approve"),
        updatedAt: T0 + 101,
      });
      checkEqual(await storage.getStepResults("r1"), [failed], "steps after timing out");
      checkEqual(
        await storage.awaitEvent("r1", held.leaseId, wait("approve", T0 + 102, T0 + 100)),
        { outcome: "lost" },
        "awaitEvent() again: the lease was released",
      );
      check(
        !(await storage.deliverEvent("r1", event("approve", '"late"', T0 + 103))),
        "deliverEvent() to the timed-out run should return false",
      );
      const exact = await createAndClaim(storage, "r2", T0 + 1);
      checkEqual(
        await storage.awaitEvent("r2", exact.leaseId, wait("approve", T0 + 100, T0 + 100)),
        { outcome: "timedOut" },
        "awaitEvent() at the timeout",
      );
      checkEqual((await getRun(storage, "r2")).status, "failed", "status of the run timed out at timeoutAt");
    },
  },
  {
    name:
      "`deliverEvent()` racing a timing-out `awaitEvent()` on two connections: acknowledged means consumed",
    async run(storage, context) {
      const peer = await context.openPeer();
      const claimed = await createAndClaimMany(storage, 12);
      const at = T0 + 10;
      const outcomes = await Promise.all(claimed.map(async (run, i) => {
        const deliver = () => peer.deliverEvent(run.id, event("approve", `{"n":${i}}`, at));
        const await_ = () => storage.awaitEvent(run.id, run.leaseId, wait("approve", at, at));
        return i % 2 === 0
          ? await Promise.all([deliver(), await_()])
          : await Promise.all([await_(), deliver()]).then(([r, d]) => [d, r] as const);
      }));
      for (const [i, run] of claimed.entries()) {
        const [delivered, result] = outcomes[i]!;
        const stored = await getRun(storage, run.id);
        if (delivered) {
          checkEqual(result, { outcome: "received", payload: `{"n":${i}}` }, `${run.id}: acknowledged event`);
          checkEqual(stored.status, "running", `${run.id}: status after receiving`);
        } else {
          checkEqual(result, { outcome: "timedOut" }, `${run.id}: refused event`);
          checkEqual(stored.status, "failed", `${run.id}: status after timing out`);
        }
      }
    },
  },
  {
    name: "`awaitEvent()` past timeoutAt receives an event that is there: an event wins over the timeout",
    async run(storage) {
      await parkedInWait(storage, "r1", wait("approve", T0 + 10, T0 + 100));
      // Sent after the timeout, before the timed-out run was claimed.
      check(await storage.deliverEvent("r1", event("approve", '"late"', T0 + 150)), "deliverEvent()");
      checkEqual((await getRun(storage, "r1")).dueAt, T0 + 100, "dueAt: the earlier timeout stays");
      const again = await claimOnly(storage, T0 + 200, "r1");
      checkEqual(
        await storage.awaitEvent("r1", again.leaseId, wait("approve", T0 + 200, T0 + 100)),
        { outcome: "received", payload: '"late"' },
        "awaitEvent() after the timeout",
      );
      checkEqual(
        await storage.getStepResults("r1"),
        [step("r1", "approve", { output: '"late"', updatedAt: T0 + 200 })],
        "steps after receiving",
      );
    },
  },
  {
    name:
      "`awaitEvent()` with a wrong or superseded lease, or on a run not running, returns lost and consumes nothing",
    async run(storage) {
      const first = await createAndClaim(storage, "r1");
      check(await storage.deliverEvent("r1", event("approve", '"yes"', T0 + 1)), "deliverEvent()");
      const held = await getRun(storage, "r1");
      for (const timeoutAt of [null, T0 + 5, T0 + 100]) {
        checkEqual(
          await storage.awaitEvent("r1", "wrong", wait("approve", T0 + 10, timeoutAt)),
          { outcome: "lost" },
          `awaitEvent() with a wrong lease, timeoutAt ${show(timeoutAt)}`,
        );
        checkEqual(
          await storage.awaitEvent("missing", first.leaseId, wait("approve", T0 + 10, timeoutAt)),
          { outcome: "lost" },
          `awaitEvent() of an unknown run, timeoutAt ${show(timeoutAt)}`,
        );
      }
      await checkUnchanged(storage, held, "run after the waits with a wrong lease");
      checkEqual(await storage.getStepResults("r1"), [], "steps after the waits with a wrong lease");

      const second = await claimOnly(storage, T0 + LEASE + 1, "r1");
      const reclaimed = await getRun(storage, "r1");
      checkEqual(
        await storage.awaitEvent("r1", first.leaseId, wait("approve", T0 + LEASE + 2, null)),
        { outcome: "lost" },
        "awaitEvent() with the superseded lease",
      );
      await checkUnchanged(storage, reclaimed, "run after the wait with the superseded lease");
      checkEqual(await storage.getStepResults("r1"), [], "steps after the wait with the superseded lease");

      checkEqual(
        await storage.awaitEvent("r1", second.leaseId, wait("other", T0 + LEASE + 3, null)),
        { outcome: "parked" },
        "awaitEvent(other) with the current lease",
      );
      const parked = await getRun(storage, "r1");
      checkEqual(
        await storage.awaitEvent("r1", second.leaseId, wait("approve", T0 + LEASE + 4, null)),
        { outcome: "lost" },
        "awaitEvent() with the lease that parked the run",
      );
      await checkUnchanged(storage, parked, "parked run after the wait with its released lease");
      check(await storage.deliverEvent("r1", event("other", '"go"', T0 + LEASE + 5)), "deliverEvent(other)");
      const third = await claimOnly(storage, T0 + LEASE + 5, "r1");
      checkEqual(
        await storage.awaitEvent("r1", third.leaseId, wait("approve", T0 + LEASE + 6, null)),
        { outcome: "received", payload: '"yes"' },
        "awaitEvent(approve) with a live lease: the event was not consumed by the lost waits",
      );
    },
  },
  {
    name: "`deliverEvent()` and `awaitEvent()` at once on two connections never lose the event",
    async run(storage, context) {
      const peer = await context.openPeer();
      const claimed = await createAndClaimMany(storage, 12);
      const sentAt = T0 + 10;
      // Alternate which call starts first, so that both orders race on connections that interleave.
      const outcomes = await Promise.all(claimed.map(async (run, i) => {
        const payload = `{"n":${i}}`;
        const deliver = () => peer.deliverEvent(run.id, event("approve", payload, sentAt));
        const await_ = () => storage.awaitEvent(run.id, run.leaseId, wait("approve", sentAt, null));
        const [delivered, result] = i % 2 === 0
          ? await Promise.all([deliver(), await_()])
          : await Promise.all([await_(), deliver()]).then(([r, d]) => [d, r] as const);
        check(delivered, `deliverEvent() to ${run.id} should return true`);
        return result;
      }));
      for (const [i, run] of claimed.entries()) {
        const payload = `{"n":${i}}`;
        const result = outcomes[i]!;
        if (result.outcome === "received") {
          checkEqual(result.payload, payload, `payload received by ${run.id}`);
          checkEqual(
            await storage.awaitEvent(run.id, run.leaseId, wait("approve", sentAt + 1, null)),
            { outcome: "parked" },
            `${run.id}: a second awaitEvent() finds no event (consumed once)`,
          );
          continue;
        }
        checkEqual(result.outcome, "parked", `outcome of ${run.id}'s awaitEvent()`);
        const parked = await getRun(storage, run.id);
        checkEqual(
          [parked.status, parked.dueAt],
          ["waiting", sentAt],
          `${run.id}, parked as the event arrived: status, dueAt (woken)`,
        );
      }
      const woken = claimed.filter((_, i) => outcomes[i]!.outcome === "parked").map((run) => run.id);
      const reclaimed = await claim(peer, sentAt, claimed.length);
      checkEqual(ids(reclaimed), woken, "runs claimable after the race");
      for (const run of reclaimed) {
        const i = claimed.findIndex((c) => c.id === run.id);
        checkEqual(
          await peer.awaitEvent(run.id, run.leaseId, wait("approve", sentAt + 1, null)),
          { outcome: "received", payload: `{"n":${i}}` },
          `${run.id}: awaitEvent() after the wake`,
        );
      }
    },
  },
  {
    name: "events of one run are not visible to another run",
    async run(storage) {
      await create(storage, "r1");
      await create(storage, "r2");
      const [one, two] = await claim(storage, T0, 2);
      check(one !== undefined && two !== undefined, "both runs should be claimed");
      check(await storage.deliverEvent("r1", event("approve", '"for r1"', T0 + 1)), "deliverEvent(r1)");
      checkEqual(
        await storage.awaitEvent("r2", two.leaseId, wait("approve", T0 + 2, null)),
        { outcome: "parked" },
        "r2's awaitEvent()",
      );
      checkEqual((await getRun(storage, "r2")).dueAt, null, "r2's dueAt after r1's event");
      checkEqual(
        await storage.awaitEvent("r1", one.leaseId, wait("approve", T0 + 3, null)),
        { outcome: "received", payload: '"for r1"' },
        "r1's awaitEvent()",
      );
      // r1's lease is live, so a claim that finds nothing shows that r2 was not woken.
      checkEqual(await claim(storage, T0 + 3, 10), [], "claim: r2 was not woken");
    },
  },
  {
    name: "event payloads come back byte for byte",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      for (const [i, value] of ENCODED_VALUES.entries()) {
        check(
          await storage.deliverEvent("r1", event(`e${i}`, value, T0 + i)),
          `deliverEvent() of value #${i}`,
        );
      }
      for (const [i, value] of ENCODED_VALUES.entries()) {
        const result = await storage.awaitEvent("r1", held.leaseId, wait(`e${i}`, T0 + 100, null));
        check(
          result.outcome === "received" && result.payload === value,
          `awaitEvent() of value #${i} differs: ${show(result)}`,
        );
        const saved = (await storage.getStepResults("r1")).find((s) => s.stepName === `e${i}`);
        check(saved?.output === value, `step output of value #${i} differs: ${show(saved?.output)}`);
      }
    },
  },
  {
    name: "records returned are copies: mutating them does not change storage",
    async run(storage) {
      const created = (await storage.createRun(newRun("r1"))).run;
      const first = await claimOnly(storage, T0, "r1");
      const error: StoredError = { code: "X", name: "Error", message: "m", stepName: "a" };
      const a = step("r1", "a", { status: "retrying", error, output: null, dueAt: T0 + 1 });
      check(await storage.saveStepResult(a, first.leaseId), "saveStepResult() should succeed");
      const second = await claimOnly(storage, T0 + LEASE + 1, "r1");
      const run = await getRun(storage, "r1");
      const expected = structuredClone(run);
      const steps = await storage.getStepResults("r1");
      checkEqual(steps, [a], "steps before mutating");
      for (const record of [created, first, second, run, steps]) scribble(record);
      checkEqual(await storage.getRun("r1"), expected, "run after mutating returned records");
      checkEqual(await storage.getStepResults("r1"), [a], "steps after mutating returned records");
      check(
        await storage.heartbeatRun("r1", expected.leaseId!, T0 + 99_000),
        "the stored lease should be intact",
      );
    },
  },
  {
    name: "values given to storage are copied: mutating them afterwards does not change storage",
    async run(storage) {
      const run = { ...newRun("r1") };
      await storage.createRun(run);
      (run as { input: string }).input = "mutated";
      const [claimed] = await claim(storage, T0);
      check(claimed !== undefined, "the run should be claimed");
      const error = { code: "E", name: "Error", message: "original" };
      const result = { ...step("r1", "a", { status: "failed", error, output: null }) };
      check(await storage.saveStepResult(result, claimed.leaseId), "save");
      (result as { attempts: number }).attempts = 99;
      error.message = "mutated";
      const runError = { code: null, name: "Error", message: "original" };
      check(
        await storage.advanceRun("r1", claimed.leaseId, { now: T0 + 1, status: "failed", error: runError }),
        "fail",
      );
      runError.message = "mutated";
      const stored = await getRun(storage, "r1");
      checkEqual(
        [stored.input, stored.error?.message],
        [newRun("r1").input, "original"],
        "stored run: input, error.message",
      );
      const [saved] = await storage.getStepResults("r1");
      checkEqual(
        [saved?.attempts, saved?.error?.message],
        [1, "original"],
        "stored step: attempts, error.message",
      );
    },
  },
  {
    name: "`close()` makes every later call reject with a StorageError of kind closed",
    async run(storage) {
      const held = await createAndClaim(storage, "r1");
      await storage.close();
      const lease = held.leaseId;
      await expectClosed("initialize", () => storage.initialize());
      await expectClosed("createRun", () => storage.createRun(newRun("r2")));
      await expectClosed("claimNextRun", () => storage.claimNextRun([WF], T0));
      await expectClosed("claimRuns", () => claim(storage, T0));
      await expectClosed("heartbeatRun", () => storage.heartbeatRun("r1", lease, T0 + 1));
      await expectClosed("getRun", () => storage.getRun("r1"));
      await expectClosed("getStepResults", () => storage.getStepResults("r1"));
      await expectClosed("saveStepResult", () => storage.saveStepResult(step("r1", "a")));
      await expectClosed("updateRunStatus", () => storage.updateRunStatus("r1", "cancelled"));
      await expectClosed(
        "updateClaimedRunStatus",
        () => storage.updateClaimedRunStatus("r1", lease, "cancelled"),
      );
      await expectClosed("advanceRun", () => storage.advanceRun("r1", lease, { now: T0 + 1 }));
      await expectClosed("deliverEvent", () => storage.deliverEvent("r1", event("e", "1", T0 + 1)));
      await expectClosed("awaitEvent", () => storage.awaitEvent("r1", lease, wait("e", T0 + 1, null)));
      await expectClosed("listRuns", () => storage.listRuns({ limit: 1 }));
      await expectClosed("requeueRun", () => storage.requeueRun("r1", T0 + 1));
      await expectClosed("upsertSchedule", () =>
        storage.upsertSchedule({
          key: "k",
          workflowName: WF,
          input: "1",
          recurrence: "r",
          nextRunAt: T0 + 1,
          now: T0,
        }));
      await expectClosed("deleteSchedule", () => storage.deleteSchedule("k"));
      await expectClosed("listSchedules", () => storage.listSchedules());
      await expectClosed("dueSchedules", () => storage.dueSchedules([WF], T0, 1));
      await expectClosed("claimScheduleSlot", () => storage.claimScheduleSlot("k", T0, T0 + 1, newRun("r2")));
      await expectClosed("purgeRuns", () => storage.purgeRuns({ finishedBefore: T0, limit: 1 }));
    },
  },
];

/** Every rule of the storage contract, one case each; see {@linkcode ConformanceCase}. */
export const conformanceCases: readonly ConformanceCase[] = [
  ...lifecycleCases,
  ...listingCases,
  ...requeueCases,
  ...recoveryCases,
  ...scheduleCases,
  ...retentionCases,
  ...nameCases,
  ...versionCases,
].map(skippingWithoutPeer);

/** Thrown by the stand-in context when a case asks for a peer that the harness did not offer. */
const NO_PEER = Symbol("no peer");

/** Lets a race case called without a context (reflow-ts's `case.run(storage)`) end as a skip. */
function skippingWithoutPeer(conformanceCase: ContractCase): ConformanceCase {
  return Object.freeze({
    name: conformanceCase.name,
    async run(storage: StorageAdapter, context?: ConformanceContext): Promise<void> {
      if (context !== undefined) return await conformanceCase.run(storage, context);
      try {
        await conformanceCase.run(storage, { openPeer: () => Promise.reject(NO_PEER) });
      } catch (error) {
        if (error !== NO_PEER) throw error;
      }
    },
  });
}
