// Many hosts on one PostgreSQL database, as far as one machine can play them: worker processes of
// every matrix runtime (Deno, Node 22, Node 24, Bun) drain 2,000 runs of a 3-step workflow from one
// schema, with each step's side effect exactly once, and a schedule polled by all of them fires once
// per slot. The workers are tests/support/process_worker.ts; each handler appends one JSON line to a
// ledger file, which is what the assertions read.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEngine } from "../mod.ts";
import { type LedgerEntry, processWorkflows, type WorkerConfig } from "./support/process_worker.ts";
import { MATRIX_RUNTIMES, runtimeName } from "./support/runtime.ts";
import { storages, type TestDatabase } from "./support/storages.ts";
import { assertEachStepOnce, assertOneRunPerSlot, WorkerProcess } from "./support/worker_process.ts";

const entry = storages.find((candidate) => candidate.kind === "postgres")!;
const cell = `postgres on ${runtimeName}`;
const RUNS = 2_000;
const STEPS = ["a", "b", "c"] as const;
const WORKFLOWS = Object.values(processWorkflows());
const STORAGE_TROUBLE = /StorageError|background error/i;
/** The interval and duration of the scheduling test: a handful of slots for every worker to race. */
const SCHEDULE_EVERY_MS = 400;
const SCHEDULE_FOR_MS = 4_000;

/** What a test does with one worker of every matrix runtime, started at once on a fresh database. */
type Body = (scene: {
  database: TestDatabase;
  workers: readonly WorkerProcess[];
  /** The ledger's lines so far. */
  entries(): LedgerEntry[];
}) => Promise<void>;

/**
 * Runs `body` on a fresh database after `before` (which may enqueue), with one worker of each matrix
 * runtime started on `config` once all of them are connected and migrated, so they compete from the
 * start; `body` sees them running. Cleans up whatever happened.
 */
async function withWorkers(
  config: Omit<WorkerConfig, "driver" | "db" | "ledger" | "barrier">,
  before: (database: TestDatabase) => Promise<void>,
  body: Body,
): Promise<void> {
  const database = await entry.database();
  const dir = mkdtempSync(join(tmpdir(), "reflow-pg-procs-"));
  const ledger = join(dir, "ledger.jsonl");
  writeFileSync(ledger, "");
  const workers: WorkerProcess[] = [];
  try {
    await before(database);
    const full: WorkerConfig = { ...config, driver: "postgres", db: database.url!, ledger, barrier: true };
    for (const runtime of MATRIX_RUNTIMES) workers.push(new WorkerProcess(full, runtime));
    await Promise.all(workers.map((worker) => worker.waitForLine("ready")));
    for (const worker of workers) worker.child.stdin!.end("go\n");
    const entries = () =>
      readFileSync(ledger, "utf8").split("\n").filter((line) => line !== "")
        .map((line) => JSON.parse(line) as LedgerEntry);
    await body({ database, workers, entries });
  } finally {
    for (const worker of workers) worker.kill();
    await Promise.allSettled(workers.map((worker) => worker.closed));
    await database.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Asserts that a worker exited 0 and printed no storage trouble. */
async function assertCleanExit(worker: WorkerProcess): Promise<void> {
  const { code } = await worker.exit();
  assert.equal(code, 0, worker.report());
  assert.doesNotMatch(worker.stderr, STORAGE_TROUBLE, worker.report());
}

describe(`${cell}: worker processes of every runtime on one database`, { skip: entry.skip }, () => {
  after(() => entry.cleanup());

  test(
    `${cell}: ${MATRIX_RUNTIMES.join(", ")} workers drain ${RUNS.toLocaleString("en")} runs, ` +
      "each step's side effect exactly once, every worker taking a share",
    async () => {
      const ids: string[] = [];
      let parent: ReturnType<typeof createEngine<(typeof WORKFLOWS)[number]>> | undefined;
      await withWorkers(
        { workflow: "drain", crash: false, concurrency: 8, pollMs: 100 },
        async (database) => {
          parent = createEngine({ storage: await database.open(), workflows: WORKFLOWS });
          for (let n = 0; n < RUNS; n++) ids.push((await parent.enqueue("drain", { n })).runId);
        },
        async ({ workers, entries }) => {
          for (const worker of workers) await assertCleanExit(worker);
          const byPid = assertEachStepOnce(entries(), ids, STEPS);
          for (const worker of workers) {
            assert.ok(
              (byPid.get(worker.pid) ?? 0) > 0,
              `worker of ${worker.pid} did no work: ${worker.report()}`,
            );
          }
          for (const id of ids.slice(0, 20)) {
            assert.equal((await parent!.getRunStatus(id))?.run.status, "completed");
          }
        },
      );
    },
  );

  test(
    `${cell}: an every-${SCHEDULE_EVERY_MS}-ms schedule polled by ${MATRIX_RUNTIMES.join(", ")} workers ` +
      "(and a poll of an hour) fires each slot exactly once, none missed, slots won by several workers",
    () =>
      withWorkers(
        {
          workflow: "ticker",
          crash: false,
          concurrency: 4,
          pollMs: 3_600_000,
          schedule: { key: "tick", every: SCHEDULE_EVERY_MS, forMs: SCHEDULE_FOR_MS },
        },
        () => Promise.resolve(),
        async ({ database, workers, entries }) => {
          for (const worker of workers) await assertCleanExit(worker);
          const storage = await database.open();
          const runs = await storage.listRuns({ workflowName: "ticker", limit: 10_000 });
          const [stored] = await storage.listSchedules();
          assert.ok(stored !== undefined && stored.lastRunAt !== null, "the schedule fired");
          // Four live engines poll it: a slot is missed only if every one of them is late by a whole
          // interval, so none may be.
          const slots = assertOneRunPerSlot(runs, entries(), {
            key: "tick",
            first: stored.createdAt + SCHEDULE_EVERY_MS,
            every: SCHEDULE_EVERY_MS,
            maxGapMs: SCHEDULE_EVERY_MS,
          });
          assert.ok(slots.length >= 3, `only ${slots.length} slots fired in ${SCHEDULE_FOR_MS} ms`);
          // Every run was created by exactly one worker's slot claim, and the slots were shared out.
          const winners = new Map<string, number[]>();
          for (const { run, what, pid } of entries()) {
            if (what === "slot") winners.set(run, [...(winners.get(run) ?? []), pid]);
          }
          for (const run of runs) {
            assert.equal(winners.get(run.id)?.length, 1, `creators of run ${run.id}: ${winners.get(run.id)}`);
          }
          const pids = new Set([...winners.values()].flat());
          assert.ok(pids.size >= 2, `every slot was won by one worker of ${workers.length}`);
        },
      ),
  );
});
