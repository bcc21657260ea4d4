// The PostgreSQL scale-out section of scripts/bench.ts: for one runtime, worker PROCESSES of that
// runtime (scripts/bench_pg_worker.ts) drain runs queued on one server, with the engine and with the
// raw claim loop (scripts/bench_pg_raw.ts) the engine should beat; then enqueue → first step latency
// from a producer process to a consumer process. Runs in the orchestrator, which only coordinates:
// it creates and drops the schemas, starts and stops the workers, and reads their clocks.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import process from "node:process";
import pg from "pg";
import { int, ms, quantile, rangeText, type Spread, spread, table } from "./bench_figures.ts";
import { type Command, CONCURRENCY, PASS_KINDS, type PassKind, type Reply } from "./bench_pg_protocol.ts";

/** Counts and repetitions of the section. */
export interface PgProtocol {
  /** Runs (or jobs) queued per pass, by steps per run: about the same number of step commits. */
  readonly runs: { readonly 1: number; readonly 5: number };
  readonly passes: number;
  /** 1-step runs of one untimed pass per kind, in the same processes, before the timed ones. */
  readonly warmupRuns: number;
  readonly processCounts: readonly number[];
  readonly latencySamples: number;
  readonly latencyWarmup: number;
  /** The pause after a latency sample's run completed, drawn evenly from this range (ms). */
  readonly latencyGapMs: readonly [number, number];
  /** A pass (or latency sample) not done after this fails the section: a hang guard. */
  readonly timeoutMs: number;
}

/** The protocol of `npm run bench`. */
export const PG_FULL: PgProtocol = {
  runs: { 1: 2000, 5: 1000 },
  passes: 3,
  warmupRuns: 500,
  processCounts: [1, 2, 4],
  latencySamples: 200,
  latencyWarmup: 20,
  latencyGapMs: [20, 60],
  timeoutMs: 300_000,
};

/** `--quick`: a smoke test of every kind and of two processes, no 4-process rows; not figures. */
export const PG_QUICK: PgProtocol = {
  runs: { 1: 200, 5: 100 },
  passes: 1,
  warmupRuns: 0,
  processCounts: [1, 2],
  latencySamples: 10,
  latencyWarmup: 3,
  latencyGapMs: [20, 40],
  timeoutMs: 60_000,
};

/** How to start the runtime measured, without the script. */
export interface PgRuntime {
  readonly id: string;
  readonly command: string;
  readonly flags: readonly string[];
}

/** Runs (or raw jobs) per second of one kind, step count and process count, over the passes. */
export interface PgRow {
  readonly kind: PassKind;
  readonly steps: number;
  readonly processes: number;
  readonly runsPerSec: Spread;
}

/** Enqueue → first step latency across processes, in ms over the samples. */
export interface PgLatency {
  readonly samples: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly maxMs: number;
}

/** The section's figures for one runtime. */
export interface PgResult {
  readonly runtime: string;
  readonly rows: readonly PgRow[];
  readonly latency: PgLatency;
  readonly seconds: number;
  /** The machine's 1-minute load average before and after, a hint of how busy it was meanwhile. */
  readonly load: readonly [number, number];
}

const WORKER_SCRIPT = "scripts/bench_pg_worker.ts";
const STEPS = [1, 5] as const;
/** Below this, a latency p50 meets the target of issue 16. */
export const LATENCY_TARGET_MS = 20;

const live = new Set<PgWorker>();
const liveSchemas = new Set<string>();
let schemaCount = 0;

/** One worker process and its messages. */
class PgWorker {
  readonly #child: ChildProcess;
  readonly #label: string;
  readonly #queued = new Map<Reply["type"], Reply[]>();
  readonly #waiting = new Map<Reply["type"], ((reply: Reply) => void)[]>();
  /** Rejects when the worker reports an error or exits unasked; every wait races it. */
  readonly failed: Promise<never>;
  onProgress: (completed: number) => void = () => {};
  #exiting = false;

  constructor(rt: PgRuntime, index: number) {
    this.#label = `${rt.id} worker ${index}`;
    this.#child = spawn(rt.command, [...rt.flags, WORKER_SCRIPT], { stdio: ["pipe", "pipe", "pipe"] });
    live.add(this);
    let fail!: (error: Error) => void;
    this.failed = new Promise<never>((_, reject) => (fail = reject));
    this.failed.catch(() => {}); // observed through the waits
    let buffered = "";
    this.#child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      buffered += text;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        const reply = JSON.parse(line) as Reply;
        if (reply.type === "error") fail(new Error(`${this.#label}: ${reply.message}`));
        else if (reply.type === "progress") this.onProgress(reply.completed);
        else this.#deliver(reply);
      }
    });
    this.#child.stderr!.setEncoding("utf8").on("data", (text: string) => process.stderr.write(text));
    this.#child.on("error", (error) => fail(error));
    this.#child.on("close", (code, signal) => {
      live.delete(this);
      if (!this.#exiting) fail(new Error(`${this.#label} exited (${signal ?? `code ${code}`})`));
    });
  }

  #deliver(reply: Reply): void {
    const waiter = this.#waiting.get(reply.type)?.shift();
    if (waiter !== undefined) return waiter(reply);
    this.#queued.set(reply.type, [...(this.#queued.get(reply.type) ?? []), reply]);
  }

  send(command: Command): void {
    this.#child.stdin!.write(`${JSON.stringify(command)}\n`);
  }

  /** The next message of `type` (one that came already, or the next to come). */
  next<T extends Reply["type"]>(type: T): Promise<Extract<Reply, { type: T }>> {
    const queued = this.#queued.get(type)?.shift();
    if (queued !== undefined) return Promise.resolve(queued as Extract<Reply, { type: T }>);
    const reply = new Promise<Reply>((resolve) => {
      this.#waiting.set(type, [...(this.#waiting.get(type) ?? []), resolve]);
    });
    return Promise.race([reply, this.failed]) as Promise<Extract<Reply, { type: T }>>;
  }

  request<T extends Reply["type"]>(command: Command, type: T): Promise<Extract<Reply, { type: T }>> {
    const reply = this.next(type);
    this.send(command);
    return reply;
  }

  /** Asks the worker to exit; kills it if it has not within a few seconds. */
  async exit(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#exiting = true;
    const closed = new Promise<void>((resolve) => this.#child.once("close", () => resolve()));
    this.send({ cmd: "exit" });
    const timer = setTimeout(() => this.kill(), 5000);
    await closed;
    clearTimeout(timer);
  }

  kill(): void {
    this.#exiting = true;
    this.#child.kill("SIGKILL");
  }
}

/**
 * Ends the section at once (Ctrl-C, a failure elsewhere): kills its worker processes and drops the
 * schemas it still has on the server.
 */
export async function abortPostgresSection(url: string | undefined): Promise<void> {
  for (const worker of live) worker.kill();
  if (url === undefined || liveSchemas.size === 0) return;
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  client.on("error", () => {});
  try {
    await client.connect();
    for (const schema of liveSchemas) await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } catch {
    // Best effort: the server may be gone already.
  } finally {
    await client.end().catch(() => {});
  }
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`hang guard: ${what} not done after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function withSchema<T>(admin: pg.Pool, body: (schema: string) => Promise<T>): Promise<T> {
  const schema = `reflow_pgbench_${process.pid}_${++schemaCount}`;
  await admin.query(`CREATE SCHEMA ${schema}`);
  liveSchemas.add(schema);
  try {
    return await body(schema);
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    liveSchemas.delete(schema);
  }
}

/**
 * One timed pass: `runs` runs (or jobs) of `steps` steps queued in a fresh schema, then every worker
 * drains it at once; runs/s over the span from the earliest first claim to the latest completion.
 */
function timedPass(
  admin: pg.Pool,
  workers: readonly PgWorker[],
  kind: PassKind,
  steps: 1 | 5,
  p: PgProtocol,
  runs = p.runs[steps],
): Promise<number> {
  return withSchema(admin, async (schema) => {
    await workers[0]!.request({ cmd: "fill", kind, schema, runs, steps }, "done");
    await Promise.all(workers.map((w) => w.request({ cmd: "open", kind, schema }, "done")));
    const counts = workers.map(() => 0);
    const allDone = new Promise<void>((resolve) => {
      workers.forEach((w, i) => {
        w.onProgress = (completed) => {
          counts[i] = completed;
          if (counts.reduce((a, b) => a + b, 0) >= runs) resolve();
        };
      });
    });
    for (const w of workers) w.send({ cmd: "go" });
    const what = `${kind} pass of ${runs} × ${steps} step(s) on ${workers.length} process(es)`;
    await withTimeout(Promise.race([allDone, ...workers.map((w) => w.failed)]), p.timeoutMs, what);
    const drained = await Promise.all(workers.map((w) => w.request({ cmd: "stop" }, "drained")));
    const completed = drained.reduce((sum, d) => sum + d.completed, 0);
    if (completed !== runs) throw new Error(`${what}: ${completed} completions counted, expected ${runs}`);
    const lax = drained.find((d) => d.synchronousCommit !== "on");
    if (lax) {
      throw new Error(`${what}: synchronous_commit is ${lax.synchronousCommit}, not on as for every kind`);
    }
    const { problems } = await workers[0]!.request({ cmd: "check" }, "checked");
    if (problems.length > 0) throw new Error(`${what}: ${problems.join("; ")}`);
    const first = Math.min(...drained.map((d) => d.firstClaimAt));
    const last = Math.max(...drained.map((d) => d.lastCompletionAt));
    return (runs / (last - first)) * 1000;
  });
}

async function withWorkers<T>(rt: PgRuntime, count: number, body: (workers: PgWorker[]) => Promise<T>) {
  const workers = Array.from({ length: count }, (_, i) => new PgWorker(rt, i + 1));
  try {
    return await body(workers);
  } finally {
    await Promise.all(workers.map((w) => w.exit()));
  }
}

async function throughputRows(admin: pg.Pool, rt: PgRuntime, p: PgProtocol, log: (s: string) => void) {
  const rows: PgRow[] = [];
  for (const processes of p.processCounts) {
    await withWorkers(rt, processes, async (workers) => {
      if (p.warmupRuns > 0) {
        log(`${processes} process(es): warm-up, ${p.warmupRuns} 1-step runs per kind`);
        for (const kind of PASS_KINDS) await timedPass(admin, workers, kind, 1, p, p.warmupRuns);
      }
      const figures = new Map<string, number[]>();
      // Kinds and step counts alternate within each pass, so a slow spell of the shared machine
      // does not land on one of them alone.
      for (let pass = 1; pass <= p.passes; pass++) {
        for (const steps of STEPS) {
          const line: string[] = [];
          for (const kind of PASS_KINDS) {
            const runsPerSec = await timedPass(admin, workers, kind, steps, p);
            figures.set(`${kind}|${steps}`, [...(figures.get(`${kind}|${steps}`) ?? []), runsPerSec]);
            line.push(`${kind} ${runsPerSec.toFixed(0)}/s`);
          }
          log(`${processes} process(es), pass ${pass}, ${steps} step(s): ${line.join(", ")}`);
        }
      }
      for (const steps of STEPS) {
        for (const kind of PASS_KINDS) {
          rows.push({ kind, steps, processes, runsPerSec: spread(figures.get(`${kind}|${steps}`)!) });
        }
      }
    });
  }
  return rows;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Enqueue in a producer process → the first step's handler starting in a consumer process. */
function latency(admin: pg.Pool, rt: PgRuntime, p: PgProtocol): Promise<PgLatency> {
  return withWorkers(rt, 2, ([consumer, producer]) =>
    withSchema(admin, async (schema) => {
      // The producer migrates first: two processes migrating at once would only wait on each other.
      await producer!.request({ cmd: "produce", schema }, "done");
      await consumer!.request({ cmd: "consume", schema }, "done");
      const samples: number[] = [];
      for (let n = 0; n < p.latencyWarmup + p.latencySamples; n++) {
        const started = consumer!.next("started");
        const completed = consumer!.next("completed");
        const sample = (async () => {
          const enqueued = await producer!.request({ cmd: "enqueue", n }, "enqueued");
          const start = await started;
          if (start.n !== n || (await completed).n !== n) {
            throw new Error(`latency: run ${start.n} ran for ${n}`);
          }
          return start.at - enqueued.at;
        })();
        const latencyMs = await withTimeout(sample, p.timeoutMs, `latency sample ${n}`);
        if (n >= p.latencyWarmup) samples.push(latencyMs);
        const [low, high] = p.latencyGapMs;
        await sleep(low + Math.random() * (high - low));
      }
      samples.sort((a, b) => a - b);
      return {
        samples: samples.length,
        p50Ms: quantile(samples, 0.5),
        p90Ms: quantile(samples, 0.9),
        maxMs: samples.at(-1)!,
      };
    }));
}

/** Measures the section for one runtime on the server at `url`. */
export async function measurePostgresProcesses(
  url: string,
  rt: PgRuntime,
  p: PgProtocol,
  log: (line: string) => void,
): Promise<PgResult> {
  const t0 = performance.now();
  const loadBefore = os.loadavg()[0]!;
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  admin.on("error", () => {});
  try {
    const rows = await throughputRows(admin, rt, p, log);
    log("latency: enqueue in one process → first step in another");
    const lat = await latency(admin, rt, p);
    log(
      `latency: p50 ${lat.p50Ms.toFixed(2)} ms, p90 ${lat.p90Ms.toFixed(2)} ms, max ${
        lat.maxMs.toFixed(2)
      } ms`,
    );
    const seconds = (performance.now() - t0) / 1000;
    return { runtime: rt.id, rows, latency: lat, seconds, load: [loadBefore, os.loadavg()[0]!] };
  } finally {
    await admin.end();
  }
}

/** The server's version and the settings that decide what a commit costs. */
export async function describePostgres(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  client.on("error", () => {});
  await client.connect();
  try {
    const { rows } = await client.query<Record<string, string>>(
      `SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS synchronous_commit,
        current_setting('fsync') AS fsync, current_setting('wal_sync_method') AS wal_sync_method,
        current_setting('full_page_writes') AS full_page_writes, current_setting('shared_buffers') AS shared_buffers,
        current_setting('data_directory') AS data_directory`,
    );
    const s = rows[0]!;
    const pgVersion =
      (JSON.parse(readFileSync("node_modules/pg/package.json", "utf8")) as { version: string }).version;
    return `PostgreSQL ${s.version} on the same machine (TCP on 127.0.0.1), synchronous_commit=${s.synchronous_commit}, ` +
      `fsync=${s.fsync}, wal_sync_method=${s.wal_sync_method}, full_page_writes=${s.full_page_writes}, ` +
      `shared_buffers=${s.shared_buffers}, data directory on ${filesystemOf(s.data_directory!)}; ` +
      `client pg (node-postgres) ${pgVersion}`;
  } finally {
    await client.end();
  }
}

function filesystemOf(path: string): string {
  try {
    const [fstype, source] = execFileSync("findmnt", ["-n", "-o", "FSTYPE,SOURCE", "--target", path], {
      encoding: "utf8",
    }).trim().split(/\s+/);
    return `${fstype} (${source})`;
  } catch {
    return "an unknown filesystem";
  }
}

const KIND_HEAD: Record<PassKind, string> = {
  "engine": "engine runs/s",
  "raw-per-job": "raw (a) jobs/s",
  "raw-per-batch": "raw (b) jobs/s",
};

/** The section's markdown: the protocol, a table per runtime, and the latency table. */
export function postgresReport(results: readonly PgResult[], server: string, p: PgProtocol): string[] {
  if (results.length === 0) return [];
  const out = [
    "",
    "### PostgreSQL: worker processes on one server (engine vs raw claim loop)",
    "",
    `${server}. Driver: PostgresStorage on a pg.Pool of 10 (connected before the pass) for the engine, one ` +
    "pg.Client per process for the raw loop.",
    "",
    `Protocol: ${int(p.runs[1])} runs (or jobs) of 1 trivial step, or ${
      int(p.runs[5])
    } of 5, queued before ` +
    `each pass in a fresh schema (dropped after), then drained by N worker processes of the runtime at once ` +
    `(one set of processes per N, for all its passes); ` +
    `runs/s over the span from the earliest first claim to the latest completion (one wall clock, ` +
    `performance.timeOrigin + now(), for all processes). Engine: start() at the default poll interval, ` +
    `concurrency ${CONCURRENCY} per process. Raw: FOR UPDATE SKIP LOCKED claims of ${CONCURRENCY} due jobs in one ` +
    `statement, then the jobs' steps one after another on one connection, each step's result written with ` +
    `(a) one commit per job and step, (b) one commit per step for the whole batch. ` +
    (p.warmupRuns > 0
      ? `One untimed warm-up pass of ${int(p.warmupRuns)} 1-step runs per kind in the same processes; `
      : "") +
    `synchronous_commit is checked to be on in the sessions of every kind after each pass. ` +
    `${p.passes} pass(es) per cell, kinds and step counts alternating; median, spread worst–best. ` +
    `The ratios divide medians. The server, the workers and the coordinator share this machine's ` +
    `${
      os.availableParallelism?.() ?? os.cpus().length
    } cores, so more processes also means more contention ` +
    `for them, and anything else running meanwhile shows in the spread (see the load averages).`,
  ];
  for (const r of results) {
    const find = (kind: PassKind, steps: number, processes: number) =>
      r.rows.find((x) => x.kind === kind && x.steps === steps && x.processes === processes)!.runsPerSec;
    const rows: (string | number)[][] = [];
    for (const steps of STEPS) {
      for (const processes of p.processCounts) {
        const [engine, perJob, perBatch] = PASS_KINDS.map((kind) => find(kind, steps, processes));
        rows.push([
          steps,
          processes,
          ...[engine!, perJob!, perBatch!].flatMap((s) => [int(s.median), rangeText(s)]),
          `${(engine!.median / perJob!.median).toFixed(2)}×`,
          `${(engine!.median / perBatch!.median).toFixed(2)}×`,
        ]);
      }
    }
    const [before, after] = r.load.map((l) => l.toFixed(1));
    out.push(
      "",
      `#### ${r.runtime} (${r.seconds.toFixed(0)} s; load average ${before} before, ${after} after)`,
      "",
    );
    out.push(table(
      [
        "steps",
        "processes",
        ...PASS_KINDS.flatMap((kind) => [KIND_HEAD[kind], "spread"]),
        "engine / raw (a)",
        "engine / raw (b)",
      ],
      rows,
    ));
  }
  const n = results[0]!.latency.samples;
  out.push(
    "",
    `#### Latency: enqueue() in one process → first step's handler in another (engine started, default poll ` +
      `interval), ${n} runs one at a time with pauses`,
    "",
  );
  out.push(table(
    ["runtime", "p50 ms", "p90 ms", "max ms", `target p50 ≤ ${LATENCY_TARGET_MS} ms`],
    results.map((r) => [
      r.runtime,
      ms(r.latency.p50Ms),
      ms(r.latency.p90Ms),
      ms(r.latency.maxMs),
      r.latency.p50Ms <= LATENCY_TARGET_MS ? "met" : "NOT met",
    ]),
  ));
  return out;
}
