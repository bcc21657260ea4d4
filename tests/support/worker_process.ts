// One worker process of tests/support/process_worker.ts, with its output collected, for the tests
// that run several processes on one database (tests/sqlite_processes.test.ts, tests/postgres_processes.test.ts).
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CRASH_POINTS, type LedgerEntry, type WorkerConfig } from "./process_worker.ts";
import { type MatrixRuntime, spawnArgs, spawnArgsFor } from "./runtime.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WORKER = fileURLToPath(new URL("./process_worker.ts", import.meta.url));
/** A hang guard, not a timing assertion: a worker still running after this is killed and the test fails. */
const HANG_GUARD_MS = 60_000;

/** One worker process, with its output collected. */
export class WorkerProcess {
  readonly config: WorkerConfig;
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  /** Settles when the process has exited and its output is read. */
  readonly closed: Promise<{ code: number | null; signal: string | null }>;
  #onOutput = new Set<() => void>();

  /**
   * Starts the worker.
   *
   * @param config What it does.
   * @param runtime The matrix runtime to start it in; default: the one running the tests.
   */
  constructor(config: WorkerConfig, runtime?: MatrixRuntime) {
    this.config = config;
    const { command, args } = runtime === undefined
      ? spawnArgs(WORKER, [JSON.stringify(config)])
      : spawnArgsFor(runtime, ROOT, WORKER, [JSON.stringify(config)]);
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

  /** Waits until a crash-mode worker has reached its workflow's crash point (it then makes no progress). */
  waitForCrashPoint(): Promise<void> {
    const point = CRASH_POINTS[this.config.workflow];
    assert.ok(this.config.crash && point !== undefined, `${this.config.workflow} worker has no crash point`);
    return this.waitForLine(point.marker);
  }

  /** Waits until the worker has exited. */
  exit(): Promise<{ code: number | null; signal: string | null }> {
    return guard(this, this.closed, "exiting");
  }

  /** Ends the worker at once, if it still runs. */
  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }

  /** Kills the worker with SIGKILL and waits until it is gone. */
  async killHard(): Promise<void> {
    this.kill();
    const { signal } = await this.exit();
    assert.equal(signal, "SIGKILL", this.report());
  }

  /** What the worker printed, for failure messages. */
  report(): string {
    const mode = `${this.config.workflow}${this.config.crash ? ", crash" : ""}`;
    return `worker ${this.pid} (${mode})\n--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
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

/**
 * Asserts that the ledger holds each `"<run> <step>"` of `runIds` × `steps` exactly once and nothing
 * else; returns how many lines each process wrote.
 */
export function assertEachStepOnce(
  entries: readonly LedgerEntry[],
  runIds: readonly string[],
  steps: readonly string[],
): Map<number, number> {
  const seen = new Map<string, number>();
  for (const { run, what } of entries) seen.set(`${run} ${what}`, (seen.get(`${run} ${what}`) ?? 0) + 1);
  const twice = [...seen].filter(([, count]) => count > 1);
  assert.deepEqual(twice.slice(0, 10), [], `${twice.length} (run, step) pairs ran more than once`);
  const expected = runIds.flatMap((id) => steps.map((step) => `${id} ${step}`));
  const missing = expected.filter((key) => !seen.has(key));
  assert.deepEqual(missing.slice(0, 10), [], `${missing.length} (run, step) pairs never ran`);
  assert.equal(entries.length, expected.length);
  const byPid = new Map<number, number>();
  for (const { pid } of entries) byPid.set(pid, (byPid.get(pid) ?? 0) + 1);
  return byPid;
}

/** A schedule of the `ticker` workflow as the scheduling tests check it. */
export interface TickerSchedule {
  /** Its key. */
  readonly key: string;
  /** Its first slot. */
  readonly first: number;
  /** The time between slots. */
  readonly every: number;
  /** The longest gap between fired slots that passes; `every` admits none missed. */
  readonly maxGapMs: number;
}

/**
 * Asserts that the runs of `schedule` name distinct slots on its grid, with no gap above its
 * `maxGapMs`, and that the ledger's `tick` side effects ran once each and only for those runs.
 *
 * @returns The slots that fired, in order.
 */
export function assertOneRunPerSlot(
  runs: readonly { readonly id: string; readonly idempotencyKey: string | null }[],
  entries: readonly LedgerEntry[],
  schedule: TickerSchedule,
): number[] {
  const { key, first, every, maxGapMs } = schedule;
  const pattern = new RegExp(`^schedule:${key}:(\\d+)$`);
  const slots = runs.map((run) => Number(pattern.exec(run.idempotencyKey ?? "")?.[1]));
  slots.sort((a, b) => a - b);
  assert.equal(new Set(slots).size, slots.length, `duplicate slots in ${slots.join(", ")}`);
  for (const slot of slots) {
    assert.equal((slot - first) % every, 0, `slot ${slot} is off the grid of ${first}`);
  }
  const gaps = slots.slice(1).map((slot, i) => slot - slots[i]!);
  assert.ok(
    gaps.every((gap) => gap <= maxGapMs),
    `a gap above ${maxGapMs} ms between slots: ${gaps.join(", ")}`,
  );
  // Each scheduled run ran its step once (the last ones may be left unfinished at stop).
  const ticks = entries.filter((entry) => entry.what === "tick").map((entry) => entry.run);
  assert.equal(new Set(ticks).size, ticks.length, "a scheduled run's step ran twice");
  const ids = new Set(runs.map((run) => run.id));
  assert.ok(ticks.every((run) => ids.has(run)), "a step ran for a run that is not a scheduled one");
  return slots;
}
