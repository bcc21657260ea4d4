// Several OS processes on one SQLite file, for every SQLite driver that loads in this runtime:
// workers in separate processes drain 1,200 runs with each step's side effect happening exactly
// once; a run whose worker is killed with SIGKILL in the middle of a step is taken over by another
// process once its lease expires; and a worker killed at each durable primitive (parked in a sleep,
// parked in a wait, mid-way through a parallel group) leaves a run that another process finishes
// without re-running anything that had finished.
//
// The workers are tests/support/process_worker.ts, started in this same runtime; the workflows come
// from there too. Each handler appends one JSON line to a ledger file (O_APPEND, one short write per
// line), which is what the side-effect assertions read.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEngine, type RunDetails, ValidationError } from "../mod.ts";
import {
  CRASHLOOP_ATTEMPTS,
  HOG_ATTEMPTS,
  HOG_LEASE_MS,
  type LedgerEntry,
  NAP_MS,
  type ProcessWorkflowName,
  processWorkflows,
  type WorkerConfig,
} from "./support/process_worker.ts";
import { runtimeName } from "./support/runtime.ts";
import { assertEachStepOnce, assertOneRunPerSlot, WorkerProcess } from "./support/worker_process.ts";
import {
  type DriverModule,
  type RawHandle,
  type SqliteSubject,
  sqliteSubjects,
} from "./support/sqlite_subjects.ts";

const RUNS = 1_200;
const PROCESSES = 4;
const DRAIN_STEPS = ["a", "b", "c"] as const;
/** Processes, interval, duration and longest tolerated gap of the scheduling test. */
const SCHEDULE_PROCESSES = 3;
const SCHEDULE_EVERY_MS = 100;
const SCHEDULE_FOR_MS = 3_000;
const SCHEDULE_MAX_GAP_MS = 10 * SCHEDULE_EVERY_MS;

/** The workers' workflows, registered in the parent's engines to enqueue, send events and read runs. */
const WORKFLOWS = Object.values(processWorkflows());

/** Errors a worker must never print: storage failures and lock contention that reached the engine. */
const STORAGE_TROUBLE = /StorageError|busy|locked|\[reflow\]|background error/i;

/** Asserts that a worker exited 0 and printed no storage trouble. */
async function assertCleanExit(worker: WorkerProcess): Promise<void> {
  const { code, signal } = await worker.exit();
  assert.equal(code, 0, `exit code (signal ${signal}) of ${worker.report()}`);
  assert.doesNotMatch(worker.stderr, STORAGE_TROUBLE, `stderr of ${worker.report()}`);
  assert.match(worker.stdout, /^done \{.*"errors":0\}$/m, worker.report());
}

function rows(handle: RawHandle, sql: string): Record<string, unknown>[] {
  return (handle.prepare(sql).all() as Record<string, unknown>[]).map((row) => ({ ...row }));
}

/** Asserts that SQLite finds the file intact. */
async function assertIntact(driver: DriverModule, db: string): Promise<void> {
  const handle = await driver.openHandle(db);
  try {
    assert.deepEqual(rows(handle, "PRAGMA integrity_check"), [{ integrity_check: "ok" }]);
  } finally {
    handle.close();
  }
}

/** An engine of the parent on a connection of its own: never started, it only enqueues, sends and reads. */
type ParentEngine = ReturnType<typeof createEngine<(typeof WORKFLOWS)[number]>>;

/** One test's database file and ledger, and the workers started on them. */
interface Scene {
  readonly driver: DriverModule;
  readonly db: string;
  /**
   * Starts a worker on this file and ledger, by default with a short lease (500 ms, renewed every
   * ~83 ms) so that a killed worker's claim expires soon. It is killed when the scene ends.
   */
  spawn(config: Pick<WorkerConfig, "workflow" | "crash"> & Partial<WorkerConfig>): WorkerProcess;
  /** Runs `fn` with a parent engine on a new connection, closed afterwards. */
  withEngine<T>(fn: (engine: ParentEngine) => Promise<T>): Promise<T>;
  /** Enqueues a run from the parent. */
  enqueue(workflow: ProcessWorkflowName, input: { n: number }): Promise<string>;
  /** A run and its units' results, read from the parent. */
  details(runId: string): Promise<RunDetails>;
  /** The ledger's entries, in order; only those of `runId` if given. */
  entries(runId?: string): LedgerEntry[];
  /** The ledger's entries as `"<what> <worker>"`, each pid replaced by its worker's name in `workers`. */
  sideEffects(workers: Record<string, WorkerProcess>, runId?: string): string[];
}

/**
 * Runs `body` on a fresh database file and ledger; then kills the workers still running, checks the
 * file's integrity (if `body` succeeded) and deletes everything.
 */
async function inScene(subject: SqliteSubject, body: (scene: Scene) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "reflow-procs-"));
  const db = join(dir, "runs.sqlite");
  const ledger = join(dir, "ledger.jsonl");
  writeFileSync(ledger, "");
  const workers: WorkerProcess[] = [];
  try {
    const driver = await subject.load();
    const withEngine = async <T>(fn: (engine: ParentEngine) => Promise<T>): Promise<T> => {
      const storage = driver.open(db);
      try {
        return await fn(createEngine({ storage, workflows: WORKFLOWS }));
      } finally {
        await storage.close();
      }
    };
    const entries = (runId?: string): LedgerEntry[] =>
      readFileSync(ledger, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as LedgerEntry)
        .filter((entry) => runId === undefined || entry.run === runId);
    await body({
      driver,
      db,
      spawn: (config) => {
        const worker = new WorkerProcess({
          driver: subject.name,
          db,
          ledger,
          concurrency: 4,
          leaseMs: 500,
          pollMs: 50,
          barrier: false,
          ...config,
        });
        workers.push(worker);
        return worker;
      },
      withEngine,
      enqueue: (workflow, input) =>
        withEngine(async (engine) => (await engine.enqueue(workflow, input)).runId),
      details: (runId) =>
        withEngine(async (engine) => {
          const details = await engine.getRunStatus(runId);
          assert.ok(details !== null, `run ${runId} is missing`);
          return details;
        }),
      entries,
      sideEffects: (workers, runId) => {
        const names = new Map(Object.entries(workers).map(([name, worker]) => [worker.pid, name]));
        return entries(runId).map((entry) => `${entry.what} ${names.get(entry.pid) ?? `pid ${entry.pid}`}`);
      },
    });
    await assertIntact(driver, db);
  } finally {
    for (const worker of workers) worker.kill();
    await Promise.allSettled(workers.map((worker) => worker.closed));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A run's units by name, as `[status, output, attempts]`: order-free, for concurrent branches. */
function unitsOf(details: RunDetails): Record<string, [string, unknown, number]> {
  return Object.fromEntries(
    details.steps.map((step) => [step.name, [step.status, step.output, step.attempts]]),
  );
}

/** The stored result of one unit. */
function unit(details: RunDetails, name: string): RunDetails["steps"][number] {
  const found = details.steps.find((step) => step.name === name);
  assert.ok(found !== undefined, `no result for ${name}: ${JSON.stringify(details.steps)}`);
  return found;
}

for (const subject of sqliteSubjects) {
  const cell = `${subject.name} on ${runtimeName}`;
  describe(`${cell}: several processes`, { skip: subject.skipReason }, () => {
    test(
      `${cell}: ${PROCESSES} processes drain ${RUNS.toLocaleString("en")} runs of a 3-step workflow ` +
        "from one SQLite file, each step's side effect exactly once",
      () =>
        inScene(subject, async (scene) => {
          const ids = await scene.withEngine(async (engine) => {
            const ids: string[] = [];
            for (let n = 0; n < RUNS; n++) ids.push((await engine.enqueue("drain", { n })).runId);
            return ids;
          });

          const workers: WorkerProcess[] = [];
          for (let i = 0; i < PROCESSES; i++) {
            workers.push(scene.spawn({
              workflow: "drain",
              crash: false,
              concurrency: 8,
              leaseMs: undefined,
              pollMs: 100,
              barrier: true,
            }));
          }
          // Every worker has opened the file before any starts claiming, so they compete from the start.
          await Promise.all(workers.map((worker) => worker.waitForLine("ready")));
          for (const worker of workers) worker.child.stdin!.end("go\n");
          for (const worker of workers) await assertCleanExit(worker);

          // Exactly one ledger line per (run, step), and nothing else.
          const byPid = assertEachStepOnce(scene.entries(), ids, DRAIN_STEPS);

          // The work was shared: more than one process ran steps, and only the workers did.
          const workerPids = new Set(workers.map((worker) => worker.pid));
          for (const pid of byPid.keys()) {
            assert.ok(workerPids.has(pid), `ledger line from unknown pid ${pid}`);
          }
          assert.ok(
            byPid.size > 1,
            `only one process did work: ${JSON.stringify(Object.fromEntries(byPid))}`,
          );

          // Every run completed once, with the output its steps computed.
          await scene.withEngine(async (engine) => {
            for (const [n, id] of ids.entries()) {
              const details = await engine.getRunStatus(id);
              assert.ok(details !== null, `run ${id} is missing`);
              assert.equal(details.run.status, "completed", `status of run ${id}`);
              assert.deepEqual(details.run.output, { n, result: (n + 1) * 2 }, `output of run ${id}`);
              assert.equal(details.run.claimCount, 1, `claimCount of run ${id}`);
              assert.deepEqual(
                details.steps.map((step) => [step.name, step.status, step.attempts]),
                DRAIN_STEPS.map((step) => [step, "completed", 1]),
                `steps of run ${id}`,
              );
            }
          });
        }),
    );

    test(
      `${cell}: ${SCHEDULE_PROCESSES} processes started on one file with an every-${SCHEDULE_EVERY_MS}-ms ` +
        "schedule (and a poll of an hour) create one run per slot, on the schedule's grid, without gaps",
      () =>
        inScene(subject, async (scene) => {
          const schedule = { key: "tick", every: SCHEDULE_EVERY_MS, forMs: SCHEDULE_FOR_MS };
          const workers: WorkerProcess[] = [];
          for (let i = 0; i < SCHEDULE_PROCESSES; i++) {
            workers.push(
              scene.spawn({ workflow: "ticker", crash: false, pollMs: 3_600_000, barrier: true, schedule }),
            );
          }
          await Promise.all(workers.map((worker) => worker.waitForLine("ready")));
          for (const worker of workers) worker.child.stdin!.end("go\n");
          for (const worker of workers) await assertCleanExit(worker);

          const storage = scene.driver.open(scene.db);
          let runs: { idempotencyKey: string | null; id: string }[];
          let first: number;
          try {
            runs = await storage.listRuns({ workflowName: "ticker", limit: 10_000 });
            const [stored] = await storage.listSchedules();
            assert.ok(stored !== undefined && stored.lastRunAt !== null, "the schedule fired");
            first = stored.createdAt + SCHEDULE_EVERY_MS;
          } finally {
            await storage.close();
          }
          // Missed slots are skipped by design; with three live engines none should be, but a loaded
          // machine can stall them all for a moment, so only a long gap fails.
          const slots = assertOneRunPerSlot(runs, scene.entries(), {
            key: "tick",
            first,
            every: SCHEDULE_EVERY_MS,
            maxGapMs: SCHEDULE_MAX_GAP_MS,
          });
          assert.ok(
            slots.length >= SCHEDULE_FOR_MS / SCHEDULE_EVERY_MS / 3,
            `only ${slots.length} slots fired in ${SCHEDULE_FOR_MS} ms`,
          );
        }),
    );

    test(`${cell}: a worker killed with SIGKILL in the middle of step 2 is taken over by another process`, () =>
      inScene(subject, async (scene) => {
        const runId = await scene.enqueue("crashy", { n: 5 });
        const a = scene.spawn({ workflow: "crashy", crash: true });
        await a.waitForCrashPoint();
        await a.killHard();
        assert.deepEqual(scene.sideEffects({ A: a }), ["step1 A", "step2 started A"]);

        // What the killed worker left: step 1 committed, the run still claimed by the dead process.
        const killed = await scene.details(runId);
        assert.equal(killed.run.status, "running");
        assert.equal(killed.run.claimCount, 1);
        assert.deepEqual(unitsOf(killed), { step1: ["completed", 6, 1] });

        const b = scene.spawn({ workflow: "crashy", crash: false });
        await assertCleanExit(b);
        assert.deepEqual(scene.sideEffects({ A: a, B: b }), [
          "step1 A",
          "step2 started A",
          "step2 started B",
          "step2 completed B",
          "step3 B",
        ]);

        const done = await scene.details(runId);
        assert.equal(done.run.status, "completed");
        assert.deepEqual(done.run.output, { result: 61 });
        assert.equal(done.run.claimCount, 2);
        assert.deepEqual(
          done.steps.map((step) => [step.name, step.status, step.output, step.attempts]),
          [
            ["step1", "completed", 6, 1],
            // A's attempt was lost with its process, and counts.
            ["step2", "completed", 60, 2],
            ["step3", "completed", { result: 61 }, 1],
          ],
        );
      }));

    test(
      `${cell}: a process killed while parked in a sleep leaves the wake time as it was; another ` +
        "process runs step 2 once, not before it, and does not re-run step 1",
      () =>
        inScene(subject, async (scene) => {
          const runId = await scene.enqueue("sleeper", { n: 5 });
          const a = scene.spawn({ workflow: "sleeper", crash: true });
          await a.waitForCrashPoint();

          // The wake time is fixed in the run and in the sleep's result, a whole nap after step 1 ran.
          const parked = await scene.details(runId);
          assert.equal(parked.run.status, "sleeping");
          assert.deepEqual(unitsOf(parked), { step1: ["completed", 6, 1], nap: ["sleeping", undefined, 1] });
          const wakeAt = parked.run.dueAt;
          assert.ok(wakeAt !== null);
          assert.equal(unit(parked, "nap").dueAt, wakeAt);
          const [step1] = scene.entries(runId);
          assert.ok(
            wakeAt >= step1!.at + NAP_MS,
            `wake time ${wakeAt} is less than ${NAP_MS} ms after step 1 (${step1!.at})`,
          );

          // The kill changes nothing in the file: the run holds no lease to expire.
          await a.killHard();
          const killed = await scene.details(runId);
          assert.deepEqual(
            [killed.run.status, killed.run.dueAt, unit(killed, "nap").dueAt, killed.run.claimCount],
            ["sleeping", wakeAt, wakeAt, 1],
          );

          const b = scene.spawn({ workflow: "sleeper", crash: false });
          await assertCleanExit(b);
          assert.deepEqual(scene.sideEffects({ A: a, B: b }), ["step1 A", "step2 B"]);
          const step2 = scene.entries(runId).find((entry) => entry.what === "step2")!;
          assert.ok(step2.at >= wakeAt, `step 2 ran at ${step2.at}, before the wake time ${wakeAt}`);

          const done = await scene.details(runId);
          assert.equal(done.run.status, "completed");
          assert.deepEqual(done.run.output, { result: 60 });
          assert.equal(done.run.claimCount, 2);
          assert.deepEqual(unitsOf(done), {
            step1: ["completed", 6, 1],
            nap: ["completed", undefined, 1],
            step2: ["completed", { result: 60 }, 1],
          });
        }),
    );

    test(
      `${cell}: a process killed while parked in a wait leaves a run that another process finishes ` +
        "with the event sent meanwhile, as it does a run whose event came before it started",
      () =>
        inScene(subject, async (scene) => {
          const parkedId = await scene.enqueue("approval", { n: 5 });
          const a = scene.spawn({ workflow: "approval", crash: true });
          await a.waitForCrashPoint();
          await a.killHard();

          const parked = await scene.details(parkedId);
          assert.deepEqual(
            [parked.run.status, parked.run.dueAt, parked.run.claimCount],
            ["waiting", null, 1],
            "waiting without a timeout, and without a lease",
          );
          assert.deepEqual(unitsOf(parked), {
            step1: ["completed", 6, 1],
            approve: ["waiting", undefined, 1],
          });

          // With no process running: a bad payload is refused, a good one stored, and a second run
          // gets its event before any process has even started it.
          const earlyId = await scene.withEngine(async (engine) => {
            // @ts-expect-error: the payload does not match the wait's schema.
            await assert.rejects(engine.sendEvent(parkedId, "approve", { by: 7 }), ValidationError);
            assert.equal(await engine.sendEvent(parkedId, "approve", { by: "ada" }), true);
            const { runId } = await engine.enqueue("approval", { n: 7 });
            assert.equal(await engine.sendEvent(runId, "approve", { by: "grace" }), true);
            return runId;
          });

          const b = scene.spawn({ workflow: "approval", crash: false });
          await assertCleanExit(b);
          assert.deepEqual(scene.sideEffects({ A: a, B: b }, parkedId), ["step1 A", "step2 B"]);
          assert.deepEqual(scene.sideEffects({ A: a, B: b }, earlyId), ["step1 B", "step2 B"]);

          const done = await scene.details(parkedId);
          assert.equal(done.run.status, "completed");
          assert.deepEqual(done.run.output, { by: "ada", result: 60 });
          assert.equal(done.run.claimCount, 2);
          assert.deepEqual(unitsOf(done), {
            step1: ["completed", 6, 1],
            approve: ["completed", { by: "ada" }, 1],
            step2: ["completed", { by: "ada", result: 60 }, 1],
          });
          const early = await scene.details(earlyId);
          assert.equal(early.run.status, "completed");
          assert.deepEqual(early.run.output, { by: "grace", result: 80 });
          assert.equal(early.run.claimCount, 1);
        }),
    );

    test(
      `${cell}: a process killed mid-way through a parallel group leaves the finished branch committed; ` +
        "another process re-runs only the unfinished branches once the lease expires",
      () =>
        inScene(subject, async (scene) => {
          const runId = await scene.enqueue("fanout", { n: 5 });
          const a = scene.spawn({ workflow: "fanout", crash: true });
          await a.waitForCrashPoint();
          await a.killHard();
          const beforeKill = ["step1 A", "fast A", "slow started A", "slower started A"];
          assert.deepEqual(scene.sideEffects({ A: a }).sort(), beforeKill.sort());

          // What the killed worker left: step 1 and `fast` committed, the run claimed by the dead process.
          const killed = await scene.details(runId);
          assert.equal(killed.run.status, "running");
          assert.equal(killed.run.claimCount, 1);
          assert.deepEqual(unitsOf(killed), { step1: ["completed", 6, 1], fast: ["completed", 7, 1] });

          const b = scene.spawn({ workflow: "fanout", crash: false });
          await assertCleanExit(b);
          const sideEffects = scene.sideEffects({ A: a, B: b });
          assert.deepEqual(
            [...sideEffects].sort(),
            [
              ...beforeKill,
              "slow started B",
              "slow completed B",
              "slower started B",
              "slower completed B",
              "join B",
            ].sort(),
          );
          assert.equal(sideEffects.at(-1), "join B");

          const done = await scene.details(runId);
          assert.equal(done.run.status, "completed");
          assert.deepEqual(done.run.output, [7, 8, 9]);
          assert.equal(done.run.claimCount, 2);
          assert.deepEqual(unitsOf(done), {
            step1: ["completed", 6, 1],
            fast: ["completed", 7, 1],
            // The attempts A's process lost count.
            slow: ["completed", 8, 2],
            slower: ["completed", 9, 2],
            join: ["completed", [7, 8, 9], 1],
          });
        }),
    );

    test(
      `${cell}: a step that kills its worker at every attempt fails the run with WORKER_LOST after exactly ` +
        `its ${CRASHLOOP_ATTEMPTS} attempts, and onFailure runs once`,
      () =>
        inScene(subject, async (scene) => {
          const runId = await scene.enqueue("crashloop", { n: 1 });
          const signals: (string | null)[] = [];
          // One worker at a time: each one's attempt kills it, and the next takes the run once its lease expires.
          for (let i = 0; i <= CRASHLOOP_ATTEMPTS; i++) {
            const worker = scene.spawn({ workflow: "crashloop", crash: false, leaseMs: 200, pollMs: 20 });
            const { signal } = await worker.exit();
            signals.push(signal);
            if (signal === null) {
              await assertCleanExit(worker);
              break;
            }
          }
          assert.deepEqual(signals, [...Array(CRASHLOOP_ATTEMPTS).fill("SIGKILL"), null]);
          const failed = await scene.details(runId);
          assert.equal(failed.run.status, "failed");
          assert.equal(failed.run.error?.code, "WORKER_LOST");
          assert.equal(failed.run.error?.stepName, "doomed");
          assert.deepEqual(unitsOf(failed), { doomed: ["failed", undefined, CRASHLOOP_ATTEMPTS] });
          assert.deepEqual(
            scene.entries(runId).map((entry) => entry.what),
            [...Array.from({ length: CRASHLOOP_ATTEMPTS }, (_, i) => `doomed#${i + 1}`), "compensated"],
          );
        }),
    );

    test(
      `${cell}: two processes whose step blocks the event loop longer than the lease end the run ` +
        `within its ${HOG_ATTEMPTS} attempts`,
      () =>
        inScene(subject, async (scene) => {
          const runId = await scene.enqueue("hog", { n: 3 });
          const config = { workflow: "hog", crash: false, leaseMs: HOG_LEASE_MS, pollMs: 20 } as const;
          const workers = [scene.spawn(config), scene.spawn(config)];
          for (const worker of workers) await assertCleanExit(worker);
          const ended = await scene.details(runId);
          assert.ok(
            ended.run.status === "completed" || ended.run.error?.code === "WORKER_LOST",
            JSON.stringify(ended.run),
          );
          const attempts = scene.entries(runId).map((entry) => entry.what);
          assert.ok(attempts.length <= HOG_ATTEMPTS, `the step ran ${attempts.length} times: ${attempts}`);
          assert.ok(unit(ended, "crunch").attempts <= HOG_ATTEMPTS);
        }),
    );

    test(`${cell}: a process restarted with the same instanceId resumes its killed run without waiting for the default lease`, () =>
      inScene(subject, async (scene) => {
        const runId = await scene.enqueue("crashy", { n: 5 });
        const slot = { workflow: "crashy", leaseMs: undefined, instanceId: "slot-1" } as const;
        const a = scene.spawn({ ...slot, crash: true });
        await a.waitForCrashPoint();
        await a.killHard();
        const killed = await scene.details(runId);
        assert.equal(killed.run.status, "running");
        const leaseExpiry = killed.run.dueAt!;

        const b = scene.spawn({ ...slot, crash: false });
        await assertCleanExit(b);
        const resumed = scene.entries(runId).find((entry) =>
          entry.what === "step2 started" && entry.pid === b.pid
        );
        assert.ok(
          resumed !== undefined && resumed.at < leaseExpiry,
          "B ran step 2 before A's lease would have expired",
        );
        const done = await scene.details(runId);
        assert.equal(done.run.status, "completed");
        assert.equal(unit(done, "step2").attempts, 2);
      }));
  });
}
