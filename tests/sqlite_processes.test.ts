// Several OS processes on one SQLite file, for every SQLite driver that loads in this runtime:
// workers in separate processes drain 1,200 runs with each step's side effect happening exactly
// once, and a run whose worker is killed with SIGKILL in the middle of a step is taken over by
// another process once its lease expires.
//
// The workers are tests/support/process_worker.ts, started in this same runtime. Each step appends
// one line to a ledger file (O_APPEND, one short write per line), which is what the side-effect
// assertions read.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createEngine, createWorkflow } from "../mod.ts";
import { schema } from "./support/fixtures.ts";
import type { WorkerConfig } from "./support/process_worker.ts";
import { runtimeName, spawnArgs } from "./support/runtime.ts";
import { type DriverModule, type RawHandle, sqliteSubjects } from "./support/sqlite_subjects.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = fileURLToPath(new URL("./support/process_worker.ts", import.meta.url));

const RUNS = 1_200;
const PROCESSES = 4;
const DRAIN_STEPS = ["a", "b", "c"] as const;
/** A hang guard, not a timing assertion: a worker still running after this is killed and the test fails. */
const HANG_GUARD_MS = 60_000;

// The workers' workflows, with the same names and steps; the parent only enqueues, so the handlers
// here never run.
const drainWorkflow = createWorkflow({ name: "drain", input: schema<{ n: number }>() })
  .step("a", ({ input }) => input.n + 1)
  .step("b", ({ prev }) => prev * 2)
  .step("c", ({ input, prev }) => ({ n: input.n, result: prev }));
const crashyWorkflow = createWorkflow({ name: "crashy", input: schema<{ n: number }>() })
  .step("step1", ({ input }) => input.n + 1)
  .step("step2", ({ prev }) => prev * 10)
  .step("step3", ({ prev }) => ({ result: prev + 1 }));

/** Errors a worker must never print: storage failures and lock contention that reached the engine. */
const STORAGE_TROUBLE = /StorageError|busy|locked|\[reflow\]|background error/i;

/** One worker process, with its output collected. */
class WorkerProcess {
  readonly config: WorkerConfig;
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  /** Settles when the process has exited and its output is read. */
  readonly closed: Promise<{ code: number | null; signal: string | null }>;
  #onOutput = new Set<() => void>();

  constructor(config: WorkerConfig) {
    this.config = config;
    const { command, args } = spawnArgs(WORKER, [JSON.stringify(config)]);
    // Only a worker waiting at the start barrier reads stdin.
    const stdin = config.barrier ? "pipe" : "ignore";
    this.child = spawn(command, args, { cwd: ROOT, stdio: [stdin, "pipe", "pipe"] });
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      this.stdout += text;
      for (const listener of this.#onOutput) listener();
    });
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => (this.stderr += text));
    this.closed = new Promise((resolve, reject) => {
      this.child.on("error", reject);
      this.child.on("close", (code, signal) => resolve({ code, signal }));
    });
    this.closed.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits until the worker has printed `line` on stdout; fails if it exits first. */
  waitForLine(line: string): Promise<void> {
    const seen = () => this.stdout.split("\n").includes(line);
    if (seen()) return Promise.resolve();
    let listener!: () => void;
    const printed = new Promise<void>((resolve) => {
      listener = () => {
        if (seen()) resolve();
      };
      this.#onOutput.add(listener);
    });
    const exited = this.closed.then((status) => {
      if (seen()) return;
      throw new Error(`worker ${this.pid} exited (${JSON.stringify(status)}) before printing "${line}"`);
    });
    return guard(this, Promise.race([printed, exited]), `printing "${line}"`).finally(() =>
      this.#onOutput.delete(listener)
    );
  }

  /** Waits until the worker has exited. */
  exit(): Promise<{ code: number | null; signal: string | null }> {
    return guard(this, this.closed, "exiting");
  }

  /** Ends the worker at once, if it still runs. */
  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }

  /** What the worker printed, for failure messages. */
  report(): string {
    return `worker ${this.pid} (${this.config.mode})\n--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
  }
}

/** Races `promise` against the hang guard; past it the worker is killed and the test fails. */
async function guard<T>(worker: WorkerProcess, promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      worker.kill();
      reject(
        new Error(
          `hang guard: worker ${worker.pid} was not done ${what} after ${HANG_GUARD_MS} ms\n${worker.report()}`,
        ),
      );
    }, HANG_GUARD_MS);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts that a worker exited 0 and printed no storage trouble. */
async function assertCleanExit(worker: WorkerProcess): Promise<void> {
  const { code, signal } = await worker.exit();
  assert.equal(code, 0, `exit code (signal ${signal}) of ${worker.report()}`);
  assert.doesNotMatch(worker.stderr, STORAGE_TROUBLE, `stderr of ${worker.report()}`);
  assert.match(worker.stdout, /^done \{.*"errors":0\}$/m, worker.report());
}

/** The ledger's lines, each split into words. */
function ledgerLines(path: string): string[][] {
  return readFileSync(path, "utf8").split("\n").filter((line) => line !== "").map((line) => line.split(" "));
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

for (const subject of sqliteSubjects) {
  const cell = `${subject.name} on ${runtimeName}`;
  describe(`${cell}: several processes`, { skip: subject.skipReason }, () => {
    test(
      `${cell}: ${PROCESSES} processes drain ${RUNS.toLocaleString("en")} runs of a 3-step workflow ` +
        "from one SQLite file, each step's side effect exactly once",
      async () => {
        const dir = mkdtempSync(join(tmpdir(), "reflow-procs-"));
        const db = join(dir, "runs.sqlite");
        const ledger = join(dir, "ledger.txt");
        writeFileSync(ledger, "");
        const workers: WorkerProcess[] = [];
        try {
          const driver = await subject.load();
          const ids: string[] = [];
          const storage = driver.open(db);
          try {
            const engine = createEngine({ storage, workflows: [drainWorkflow] });
            for (let n = 0; n < RUNS; n++) ids.push((await engine.enqueue("drain", { n })).runId);
          } finally {
            await storage.close();
          }

          for (let i = 0; i < PROCESSES; i++) {
            workers.push(
              new WorkerProcess({
                mode: "drain",
                driver: subject.name,
                db,
                ledger,
                concurrency: 8,
                pollMs: 100,
                barrier: true,
              }),
            );
          }
          // Every worker has opened the file before any starts claiming, so they compete from the start.
          await Promise.all(workers.map((worker) => worker.waitForLine("ready")));
          for (const worker of workers) worker.child.stdin!.end("go\n");
          for (const worker of workers) await assertCleanExit(worker);

          // Exactly one ledger line per (run, step), and nothing else.
          const lines = ledgerLines(ledger);
          const seen = new Map<string, number>();
          for (const [runId, stepName] of lines) {
            const key = `${runId} ${stepName}`;
            seen.set(key, (seen.get(key) ?? 0) + 1);
          }
          const duplicates = [...seen].filter(([, count]) => count > 1);
          assert.deepEqual(
            duplicates.slice(0, 10),
            [],
            `${duplicates.length} (run, step) pairs ran more than once`,
          );
          const expected = ids.flatMap((id) => DRAIN_STEPS.map((step) => `${id} ${step}`));
          const missing = expected.filter((key) => !seen.has(key));
          assert.deepEqual(missing.slice(0, 10), [], `${missing.length} (run, step) pairs never ran`);
          assert.equal(lines.length, expected.length);

          // The work was shared: more than one process ran steps, and only the workers did.
          const byPid = new Map<string, number>();
          for (const [, , pid] of lines) byPid.set(pid!, (byPid.get(pid!) ?? 0) + 1);
          const workerPids = new Set(workers.map((worker) => String(worker.pid)));
          for (const pid of byPid.keys()) {
            assert.ok(workerPids.has(pid), `ledger line from unknown pid ${pid}`);
          }
          assert.ok(
            byPid.size > 1,
            `only one process did work: ${JSON.stringify(Object.fromEntries(byPid))}`,
          );

          // Every run completed once, with the output its steps computed.
          const reader = driver.open(db);
          try {
            const engine = createEngine({ storage: reader, workflows: [drainWorkflow] });
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
          } finally {
            await reader.close();
          }
          await assertIntact(driver, db);
        } finally {
          for (const worker of workers) worker.kill();
          await Promise.allSettled(workers.map((worker) => worker.closed));
          rmSync(dir, { recursive: true, force: true });
        }
      },
    );

    test(`${cell}: a worker killed with SIGKILL in the middle of step 2 is taken over by another process`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "reflow-kill-"));
      const db = join(dir, "runs.sqlite");
      const ledger = join(dir, "ledger.txt");
      writeFileSync(ledger, "");
      const workers: WorkerProcess[] = [];
      // A short lease (renewed every ~83 ms) so that the killed worker's claim expires soon.
      const base = {
        driver: subject.name,
        db,
        ledger,
        concurrency: 4,
        leaseMs: 500,
        pollMs: 50,
        barrier: false,
      };
      try {
        const driver = await subject.load();
        let runId: string;
        const storage = driver.open(db);
        try {
          runId =
            (await createEngine({ storage, workflows: [crashyWorkflow] }).enqueue("crashy", { n: 5 })).runId;
        } finally {
          await storage.close();
        }

        const first = new WorkerProcess({ ...base, mode: "crash" });
        workers.push(first);
        await first.waitForLine("in-step2");
        first.kill();
        const killed = await first.exit();
        assert.equal(killed.signal, "SIGKILL", first.report());
        assert.deepEqual(ledgerLines(ledger), [["step1", String(first.pid)], [
          "step2",
          "started",
          String(first.pid),
        ]]);

        // What the killed worker left: step 1 committed, the run still claimed by the dead process.
        const peek = driver.open(db);
        try {
          const details = await createEngine({ storage: peek, workflows: [crashyWorkflow] }).getRunStatus(
            runId,
          );
          assert.equal(details?.run.status, "running");
          assert.equal(details?.run.claimCount, 1);
          assert.deepEqual(details?.steps.map((step) => [step.name, step.status, step.output]), [
            ["step1", "completed", 6],
          ]);
        } finally {
          await peek.close();
        }

        const second = new WorkerProcess({ ...base, mode: "resume" });
        workers.push(second);
        await assertCleanExit(second);

        const [a, b] = [String(first.pid), String(second.pid)];
        assert.deepEqual(ledgerLines(ledger), [
          ["step1", a],
          ["step2", "started", a],
          ["step2", "started", b],
          ["step2", "completed", b],
          ["step3", b],
        ]);

        const reader = driver.open(db);
        try {
          const details = await createEngine({ storage: reader, workflows: [crashyWorkflow] }).getRunStatus(
            runId,
          );
          assert.ok(details !== null);
          assert.equal(details.run.status, "completed");
          assert.deepEqual(details.run.output, { result: 61 });
          assert.equal(details.run.claimCount, 2);
          assert.deepEqual(
            details.steps.map((step) => [step.name, step.status, step.output, step.attempts]),
            [
              ["step1", "completed", 6, 1],
              ["step2", "completed", 60, 1],
              ["step3", "completed", { result: 61 }, 1],
            ],
          );
        } finally {
          await reader.close();
        }
        await assertIntact(driver, db);
      } finally {
        for (const worker of workers) worker.kill();
        await Promise.allSettled(workers.map((worker) => worker.closed));
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}
