// One runtime's side of scripts/bench.ts: measures one store in this process and prints the result
// as one JSON line on stdout (progress goes to stderr). Started by the orchestrator, one process per
// cell, so that no cell inherits another's heap, JIT state or open files.
//
//   <runtime> scripts/bench_worker.ts --list                    the stores that load here, as JSON
//   <runtime> scripts/bench_worker.ts --store NAME [--quick] [--only throughput,backlog,start,latency,memory]
//
// Any runtime: deno run -A, node (>= 22.18), bun run. Pass --expose-gc (Node) or
// --v8-flags=--expose-gc (Deno) so that memory samples are taken after a full collection.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { createEngine, type Engine, type EngineHooks, type StorageAdapter } from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { runtimeName } from "../tests/support/runtime.ts";
import { quantile, type Spread, spread } from "./bench_figures.ts";
import { schemaUrl } from "./bench_pg_protocol.ts";
import { type fiveSteps, type oneStep, type WorkflowName, workflowOf, workflows } from "./bench_workflows.ts";
// The tests' list of drivers, so that the benchmark covers exactly the cells the suite tests, and
// never imports a driver that cannot load in this runtime.
import { sqliteSubjects } from "../tests/support/sqlite_subjects.ts";

/** The sections a cell can run. */
export type Section = "throughput" | "backlog" | "start" | "latency" | "memory";
export const SECTIONS: readonly Section[] = ["throughput", "backlog", "start", "latency", "memory"];

/** Counts and repetitions; the full protocol must stay comparable with the reference figures. */
export interface Protocol {
  readonly runs: number;
  readonly passes: number;
  readonly warmupRuns: number;
  readonly concurrency: number;
  readonly backlogs: readonly number[];
  readonly startRuns: number;
  readonly latencySamples: number;
  readonly memoryRuns: number;
  readonly memoryBatch: number;
}

export const FULL: Protocol = {
  runs: 2000,
  passes: 3,
  warmupRuns: 500,
  concurrency: 25,
  backlogs: [500, 2000, 8000, 20_000],
  startRuns: 2000,
  latencySamples: 200,
  memoryRuns: 100_000,
  memoryBatch: 10_000,
};

export const QUICK: Protocol = {
  runs: 200,
  passes: 1,
  warmupRuns: 0,
  concurrency: 25,
  backlogs: [200, 400],
  startRuns: 200,
  latencySamples: 20,
  memoryRuns: 2000,
  memoryBatch: 500,
};

export interface ScenarioResult {
  readonly steps: number;
  readonly runs: number;
  /** Runs enqueued per second (sequential `await enqueue()`), over the passes. */
  readonly enqueuePerSec: Spread;
  /** Runs drained per second by the tick loop, over the passes. */
  readonly runsPerSec: Spread;
}

export interface BacklogResult {
  readonly queued: number;
  readonly enqueuePerSec: number;
  readonly runsPerSec: number;
}

export interface StartResult {
  readonly runs: number;
  readonly startRunsPerSec: Spread;
  readonly tickRunsPerSec: Spread;
}

export interface LatencyResult {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface MemorySample {
  readonly runs: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
  /** Heap the engine has reserved; RSS beyond it and `externalMb` is native (SQLite, allocator). */
  readonly heapTotalMb: number;
  readonly externalMb: number;
}

export interface MemoryResult {
  readonly gcBeforeSample: boolean;
  readonly samples: readonly MemorySample[];
}

export interface CellResult {
  readonly runtime: string;
  readonly store: string;
  readonly sqliteVersion: string | null;
  readonly protocol: Protocol;
  readonly throughput?: readonly ScenarioResult[];
  readonly backlog?: readonly BacklogResult[];
  readonly start?: StartResult;
  readonly latency?: LatencyResult;
  readonly memory?: MemoryResult;
  readonly seconds: number;
}

export interface ListResult {
  readonly runtime: string;
  readonly version: string;
  readonly stores: readonly { readonly name: string; readonly skipReason: string | false }[];
}

const g = globalThis as unknown as {
  Deno?: { version: { deno: string; v8: string } };
  Bun?: { version: string; gc(force: boolean): void };
  gc?: () => void;
};

/** "deno", "bun", or "node<major>", matching the orchestrator's runtime ids. */
function runtimeId(): string {
  if (runtimeName !== "node") return runtimeName;
  return `node${process.versions.node.split(".")[0]}`;
}

function runtimeVersion(): string {
  if (g.Deno) return `${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  if (g.Bun) return `${g.Bun.version} (JavaScriptCore)`;
  return `${process.versions.node} (V8 ${process.versions.v8})`;
}

const MEMORY_STORE = "memory";

let tempDir: string | undefined;
let fileCount = 0;
const log = (line: string) => process.stderr.write(`  ${line}\n`);

/** The PostgreSQL store: a fresh schema per pass on REFLOW_POSTGRES_URL's server (bench.ts starts one). */
const POSTGRES_STORE = "postgres";
const postgresSkip: string | false = process.env.REFLOW_POSTGRES_URL
  ? false
  : "REFLOW_POSTGRES_URL is not set";

async function openPostgres(): Promise<{ storage: StorageAdapter; dispose(): Promise<void> }> {
  const url = process.env.REFLOW_POSTGRES_URL!;
  const { default: pg } = await import("pg");
  const { PostgresStorage } = await import("../drivers/postgres.ts");
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  admin.on("error", () => {});
  const schema = `reflow_bench_${process.pid}_${++fileCount}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  const storage = new PostgresStorage(schemaUrl(url, schema));
  await storage.initialize();
  return {
    storage,
    dispose: async () => {
      await storage.close();
      await admin.query(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

/** Opens a storage on a fresh database (a new temp file, or a new MemoryStorage) and initialises it. */
async function openStore(store: string): Promise<{ storage: StorageAdapter; dispose(): Promise<void> }> {
  if (store === MEMORY_STORE) {
    const storage = new MemoryStorage();
    await storage.initialize();
    return { storage, dispose: () => storage.close() };
  }
  if (store === POSTGRES_STORE) return await openPostgres();
  const subject = sqliteSubjects.find((s) => s.name === store);
  if (subject === undefined || !subject.available) throw new Error(`store ${store} does not load here`);
  tempDir ??= mkdtempSync(join(tmpdir(), "reflow-bench-"));
  const path = join(tempDir, `bench-${++fileCount}.db`);
  const storage = (await subject.load()).open(path);
  await storage.initialize();
  return {
    storage,
    dispose: async () => {
      await storage.close();
      for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(path + suffix, { force: true });
    },
  };
}

async function sqliteVersion(store: string): Promise<string | null> {
  if (store === MEMORY_STORE || store === POSTGRES_STORE) return null;
  const subject = sqliteSubjects.find((s) => s.name === store)!;
  tempDir ??= mkdtempSync(join(tmpdir(), "reflow-bench-"));
  const path = join(tempDir, "version.db");
  const handle = await (await subject.load()).openHandle(path);
  try {
    const rows = handle.prepare("SELECT sqlite_version() AS v").all() as { v: string }[];
    return rows[0]?.v ?? null;
  } finally {
    handle.close();
    rmSync(path, { force: true });
  }
}

/** Fails the cell on any run failure or background error, which would make its figures meaningless. */
function failureHooks(): { hooks: EngineHooks; check(): void } {
  const problems: string[] = [];
  return {
    hooks: {
      onRunFailed: (e) => void problems.push(`run ${e.runId} failed: ${e.error.message}`),
      onError: (e) => void problems.push(`engine error: ${e.message}`),
    },
    check() {
      if (problems.length > 0) throw new Error(`${problems.length} problem(s), first: ${problems[0]}`);
    },
  };
}

type BenchEngine = Engine<typeof oneStep | typeof fiveSteps>;

/** Enqueues `count` runs one after another; returns the elapsed ms and a sample of ids to verify. */
async function enqueueMany(
  engine: BenchEngine,
  name: WorkflowName,
  count: number,
  offset = 0,
): Promise<{ ms: number; sample: { runId: string; n: number }[] }> {
  const every = Math.max(1, Math.floor(count / 20));
  const sample: { runId: string; n: number }[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const n = offset + i;
    const { runId } = await engine.enqueue(name, { n });
    if (i % every === 0 || i === count - 1) sample.push({ runId, n });
  }
  return { ms: performance.now() - t0, sample };
}

/** The tick loop: tick() until every queued run has been claimed; each tick settles what it claimed. */
async function drainByTicks(engine: BenchEngine, count: number): Promise<number> {
  let done = 0;
  const t0 = performance.now();
  while (done < count) {
    const claimed = await engine.tick();
    if (claimed === 0) throw new Error(`tick() claimed nothing with ${count - done} runs unfinished`);
    done += claimed;
  }
  return performance.now() - t0;
}

/** Checks that the sampled runs completed with the output their workflow computes. */
async function verify(engine: BenchEngine, sample: { runId: string; n: number }[], steps: number) {
  for (const { runId, n } of sample) {
    const details = await engine.getRunStatus(runId);
    const output = details?.run.output as { n: number } | undefined;
    if (details?.run.status !== "completed" || output?.n !== n + steps) {
      throw new Error(`run ${runId} is ${details?.run.status} with output ${JSON.stringify(output)}`);
    }
  }
}

/** One pass: fresh database, enqueue `count` runs (timed), drain them with the tick loop (timed). */
async function tickPass(store: string, steps: number, count: number, concurrency: number) {
  const { storage, dispose } = await openStore(store);
  try {
    const failures = failureHooks();
    const engine = createEngine({ storage, workflows, concurrency, hooks: failures.hooks });
    const { ms: enqueueMs, sample } = await enqueueMany(engine, workflowOf(steps), count);
    const drainMs = await drainByTicks(engine, count);
    failures.check();
    await verify(engine, sample, steps);
    await engine.stop();
    return { enqueuePerSec: (count / enqueueMs) * 1000, runsPerSec: (count / drainMs) * 1000 };
  } finally {
    await dispose();
  }
}

async function throughput(store: string, p: Protocol): Promise<ScenarioResult[]> {
  if (p.warmupRuns > 0) {
    log(`warm-up: ${p.warmupRuns} runs x 5 steps`);
    await tickPass(store, 5, p.warmupRuns, p.concurrency);
  }
  const scenarios = [1, 5];
  const passes = new Map(scenarios.map((s) => [s, [] as { enqueuePerSec: number; runsPerSec: number }[]]));
  // Passes of both scenarios alternate, so a slow spell of the machine does not land on one scenario.
  for (let pass = 1; pass <= p.passes; pass++) {
    for (const steps of scenarios) {
      const result = await tickPass(store, steps, p.runs, p.concurrency);
      passes.get(steps)!.push(result);
      log(
        `pass ${pass}, ${steps} step(s): enqueue ${result.enqueuePerSec.toFixed(0)}/s, ` +
          `drain ${result.runsPerSec.toFixed(0)} runs/s`,
      );
    }
  }
  return scenarios.map((steps) => ({
    steps,
    runs: p.runs,
    enqueuePerSec: spread(passes.get(steps)!.map((r) => r.enqueuePerSec)),
    runsPerSec: spread(passes.get(steps)!.map((r) => r.runsPerSec)),
  }));
}

async function backlog(store: string, p: Protocol): Promise<BacklogResult[]> {
  // Without a warm-up the smallest backlog, measured first, also pays for compiling the engine's
  // code paths, which makes the ratio of the largest to it look better than it is.
  if (p.warmupRuns > 0) {
    log(`warm-up: ${p.warmupRuns} runs x 1 step`);
    await tickPass(store, 1, p.warmupRuns, p.concurrency);
  }
  const results: BacklogResult[] = [];
  for (const queued of p.backlogs) {
    const r = await tickPass(store, 1, queued, p.concurrency);
    log(`backlog ${queued}: drain ${r.runsPerSec.toFixed(0)} runs/s`);
    results.push({ queued, ...r });
  }
  return results;
}

/**
 * Drains a queued backlog either with `start()` (default poll interval) or with the tick loop.
 * Both count completions through the same hook, so the only difference is the loop that claims.
 */
async function hookedPass(
  store: string,
  mode: "start" | "tick",
  count: number,
  p: Protocol,
): Promise<number> {
  const { storage, dispose } = await openStore(store);
  try {
    const failures = failureHooks();
    let completed = 0;
    let finishedAt = 0;
    let allDone!: () => void;
    const done = new Promise<void>((resolve) => (allDone = resolve));
    const engine = createEngine({
      storage,
      workflows,
      concurrency: p.concurrency,
      hooks: {
        ...failures.hooks,
        onRunComplete: () => {
          if (++completed === count) {
            finishedAt = performance.now();
            allDone();
          }
        },
      },
    });
    const { sample } = await enqueueMany(engine, "one", count);
    const t0 = performance.now();
    if (mode === "start") {
      await engine.start();
      await done;
    } else {
      await drainByTicks(engine, count);
      await done;
    }
    await engine.stop();
    failures.check();
    await verify(engine, sample, 1);
    return (count / (finishedAt - t0)) * 1000;
  } finally {
    await dispose();
  }
}

async function startVsTick(store: string, p: Protocol): Promise<StartResult> {
  const start: number[] = [];
  const tick: number[] = [];
  for (let pass = 1; pass <= p.passes; pass++) {
    start.push(await hookedPass(store, "start", p.startRuns, p));
    tick.push(await hookedPass(store, "tick", p.startRuns, p));
    log(
      `pass ${pass}: start() ${start.at(-1)!.toFixed(0)} runs/s, tick loop ${tick.at(-1)!.toFixed(0)} runs/s`,
    );
  }
  return { runs: p.startRuns, startRunsPerSec: spread(start), tickRunsPerSec: spread(tick) };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Enqueue → first step start on a started, idle engine, one run at a time. */
async function latency(store: string, p: Protocol): Promise<LatencyResult> {
  const { storage, dispose } = await openStore(store);
  try {
    const failures = failureHooks();
    let stepStarted: (() => void) | undefined;
    let runCompleted: (() => void) | undefined;
    let startedAt = 0;
    const engine = createEngine({
      storage,
      workflows,
      concurrency: p.concurrency,
      hooks: {
        ...failures.hooks,
        onStepStart: () => {
          startedAt = performance.now();
          stepStarted?.();
        },
        onRunComplete: () => runCompleted?.(),
      },
    });
    await engine.start();
    const warmup = Math.min(20, p.latencySamples);
    const samples: number[] = [];
    for (let i = 0; i < warmup + p.latencySamples; i++) {
      const started = new Promise<void>((resolve) => (stepStarted = resolve));
      const completed = new Promise<void>((resolve) => (runCompleted = resolve));
      const t0 = performance.now();
      await engine.enqueue("one", { n: i });
      await started;
      if (i >= warmup) samples.push(startedAt - t0);
      await completed;
      // Let the worker loop go back to sleep, so that each enqueue finds the engine idle.
      await sleep(5);
    }
    await engine.stop();
    failures.check();
    samples.sort((a, b) => a - b);
    return {
      samples: samples.length,
      p50Ms: quantile(samples, 0.5),
      p99Ms: quantile(samples, 0.99),
      maxMs: samples.at(-1)!,
    };
  } finally {
    await dispose();
  }
}

function collect(): boolean {
  if (g.Bun) {
    g.Bun.gc(true);
    return true;
  }
  if (typeof g.gc === "function") {
    g.gc();
    return true;
  }
  return false;
}

function memorySample(runs: number): MemorySample {
  collect();
  const { rss, heapUsed, heapTotal, external } = process.memoryUsage();
  const mb = (bytes: number) => bytes / 2 ** 20;
  return {
    runs,
    rssMb: mb(rss),
    heapUsedMb: mb(heapUsed),
    heapTotalMb: mb(heapTotal),
    externalMb: mb(external),
  };
}

/** One engine and one database through `memoryRuns` 1-step runs, enqueued and drained in batches. */
async function memory(store: string, p: Protocol): Promise<MemoryResult> {
  const { storage, dispose } = await openStore(store);
  try {
    const failures = failureHooks();
    const engine = createEngine({ storage, workflows, concurrency: p.concurrency, hooks: failures.hooks });
    const samples = [memorySample(0)];
    for (let done = 0; done < p.memoryRuns; done += p.memoryBatch) {
      const { sample } = await enqueueMany(engine, "one", p.memoryBatch, done);
      await drainByTicks(engine, p.memoryBatch);
      failures.check();
      await verify(engine, sample.slice(-1), 1);
      samples.push(memorySample(done + p.memoryBatch));
      const s = samples.at(-1)!;
      log(
        `memory: ${s.runs} runs, RSS ${s.rssMb.toFixed(1)} MB, heap ${s.heapUsedMb.toFixed(1)} MB ` +
          `(of ${s.heapTotalMb.toFixed(1)}), external ${s.externalMb.toFixed(1)} MB`,
      );
    }
    await engine.stop();
    return { gcBeforeSample: collect(), samples };
  } finally {
    await dispose();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      list: { type: "boolean" },
      store: { type: "string" },
      quick: { type: "boolean" },
      only: { type: "string" },
    },
  });
  if (values.list) {
    const stores = [
      { name: MEMORY_STORE, skipReason: false as const },
      ...sqliteSubjects.map((s) => ({ name: s.name, skipReason: s.skipReason })),
      { name: POSTGRES_STORE, skipReason: postgresSkip },
    ];
    const result: ListResult = { runtime: runtimeId(), version: runtimeVersion(), stores };
    console.log(JSON.stringify(result));
    return;
  }
  const store = values.store;
  if (store === undefined) {
    throw new Error("usage: bench_worker.ts --list | --store NAME [--quick] [--only ...]");
  }
  const only = values.only?.split(",").map((s) => s.trim()).filter(Boolean) ?? [...SECTIONS];
  const unknown = only.filter((s) => !SECTIONS.includes(s as Section));
  if (unknown.length > 0) throw new Error(`unknown section(s): ${unknown.join(", ")}`);
  const wants = (s: Section) => only.includes(s);
  const p = values.quick ? QUICK : FULL;
  const t0 = performance.now();
  try {
    const result: CellResult = {
      runtime: runtimeId(),
      store,
      sqliteVersion: await sqliteVersion(store),
      protocol: p,
      throughput: wants("throughput") ? await throughput(store, p) : undefined,
      backlog: wants("backlog") ? await backlog(store, p) : undefined,
      start: wants("start") ? await startVsTick(store, p) : undefined,
      latency: wants("latency") ? await latency(store, p) : undefined,
      memory: wants("memory") ? await memory(store, p) : undefined,
      seconds: 0,
    };
    console.log(JSON.stringify({ ...result, seconds: (performance.now() - t0) / 1000 }));
  } finally {
    if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true });
  }
}

await main();
