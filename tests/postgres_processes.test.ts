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
import { storages } from "./support/storages.ts";
import { assertEachStepOnce, WorkerProcess } from "./support/worker_process.ts";

const entry = storages.find((candidate) => candidate.kind === "postgres")!;
const cell = `postgres on ${runtimeName}`;
const RUNS = 2_000;
const STEPS = ["a", "b", "c"] as const;
const WORKFLOWS = Object.values(processWorkflows());
const STORAGE_TROUBLE = /StorageError|background error/i;

describe(`${cell}: worker processes of every runtime on one database`, { skip: entry.skip }, () => {
  after(() => entry.cleanup());

  test(
    `${cell}: ${MATRIX_RUNTIMES.join(", ")} workers drain ${RUNS.toLocaleString("en")} runs, ` +
      "each step's side effect exactly once, every worker taking a share",
    async () => {
      const database = await entry.database();
      const dir = mkdtempSync(join(tmpdir(), "reflow-pg-procs-"));
      const ledger = join(dir, "ledger.jsonl");
      writeFileSync(ledger, "");
      const workers: WorkerProcess[] = [];
      try {
        const parent = createEngine({ storage: await database.open(), workflows: WORKFLOWS });
        const ids: string[] = [];
        for (let n = 0; n < RUNS; n++) ids.push((await parent.enqueue("drain", { n })).runId);
        const config: WorkerConfig = {
          workflow: "drain",
          crash: false,
          driver: "postgres",
          db: database.url!,
          ledger,
          concurrency: 8,
          pollMs: 100,
          barrier: true,
        };
        for (const runtime of MATRIX_RUNTIMES) workers.push(new WorkerProcess(config, runtime));
        // Every worker is connected and migrated before any claims, so they compete from the start.
        await Promise.all(workers.map((worker) => worker.waitForLine("ready")));
        for (const worker of workers) worker.child.stdin!.end("go\n");
        for (const worker of workers) {
          const { code } = await worker.exit();
          assert.equal(code, 0, worker.report());
          assert.doesNotMatch(worker.stderr, STORAGE_TROUBLE, worker.report());
        }

        const entries = readFileSync(ledger, "utf8").split("\n").filter((line) => line !== "")
          .map((line) => JSON.parse(line) as LedgerEntry);
        const byPid = assertEachStepOnce(entries, ids, STEPS);
        for (const worker of workers) {
          assert.ok(
            (byPid.get(worker.pid) ?? 0) > 0,
            `worker of ${worker.pid} did no work: ${worker.report()}`,
          );
        }
        for (const id of ids.slice(0, 20)) {
          assert.equal((await parent.getRunStatus(id))?.run.status, "completed");
        }
      } finally {
        for (const worker of workers) worker.kill();
        await Promise.allSettled(workers.map((worker) => worker.closed));
        await database.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
