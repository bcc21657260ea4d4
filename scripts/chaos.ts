// Chaos test: worker processes (tests/support/process_worker.ts, engines with start()) share one
// SQLite file and run a mixed workload that producer processes (scripts/chaos_producer.ts) enqueue
// with idempotency keys, send events to and cancel; meanwhile this controller SIGKILLs random
// workers at random moments and restarts them. At the end it waits for every run to finish and
// checks: no run lost or stuck, every outcome and output as the plan computes it, every step's
// result committed once and its side effect recorded, duplicate side effects only from killed
// processes (the at-least-once window between a side effect and its commit), and
// `PRAGMA integrity_check`. A run whose attempt a kill cut short shows it as one more attempt of
// that unit (lost attempts count); their total is bounded by what the kills had in flight. One run
// in a hundred is a crash loop (its step kills its own worker at every attempt, and the controller
// restarts it): it must end `failed` with WORKER_LOST after exactly its attempts. Halfway through
// the kills it deploys: every worker is restarted with changed definitions (a step appended to
// `drain`, compatible; a step inserted first in `approval`, incompatible with approval runs that
// have started), and each run must then have completed correctly under either definition, or (an
// approval run started before the deploy) be parked with VERSION_MISMATCH. Prints one summary
// line; exits 1 on any violation.
//
//   node scripts/chaos.ts [--short] [--runtime node22|node24|bun|deno] [--driver better-sqlite3]
//                         [--workers 4] [--runs 5000] [--kills 220] [--seed 1] [--lease-ms 3000] [--keep]
//
// The controller itself runs on Node; --runtime picks what the workers and producers run on
// (default: this Node), --driver their SQLite driver (a subject of tests/support/sqlite_subjects.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual, parseArgs } from "node:util";
import { createEngine, type RunDetails } from "../mod.ts";
import { type LedgerEntry, processWorkflows, type WorkerConfig } from "../tests/support/process_worker.ts";
import { MATRIX_RUNTIMES, type MatrixRuntime, spawnArgs, spawnArgsFor } from "../tests/support/runtime.ts";
import { type RawHandle, sqliteSubjects } from "../tests/support/sqlite_subjects.ts";
import {
  isCrashLoop,
  keyOf,
  planRun,
  type ProducerConfig,
  type ProducerReport,
  seededRandom,
} from "./chaos_producer.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = fileURLToPath(new URL("../tests/support/process_worker.ts", import.meta.url));
const PRODUCER = fileURLToPath(new URL("./chaos_producer.ts", import.meta.url));
const PRODUCERS = 2;
/** Runs in flight per worker; with a parallel group of 3 branches, a kill can cut at most this × 3 steps. */
const WORKER_CONCURRENCY = 4;
const MAX_BRANCHES = 3;

const USAGE = "usage: chaos.ts [--short] [--runtime node22|node24|bun|deno] [--driver NAME] [--workers N] " +
  "[--runs N] [--kills N] [--seed N] [--lease-ms MS] [--keep]";

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
const short = opts.short;
const workers = count("workers", short ? 3 : 4);
const runs = count("runs", short ? 300 : 5000);
const kills = count("kills", short ? 10 : 220, 0);
const seed = count("seed", Date.now() % 100_000, 0);
const driver = opts.driver ??
  (runtime === "deno" ? "deno-sqlite" : runtime === "bun" ? "bun:sqlite" : "better-sqlite3");
// A worker lives a few hundred ms between kills; the lease bounds how long a killed worker's runs wait.
const killEveryMs: [number, number] = short ? [100, 300] : [100, 400];
const leaseMs = count("lease-ms", 3000);
const random = seededRandom(seed);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const dir = mkdtempSync(join(tmpdir(), "reflow-chaos-"));
const db = join(dir, "chaos.db");
const ledger = join(dir, "ledger.jsonl");
const commandFor = (script: string, args: string[]) =>
  runtime === undefined ? spawnArgs(script, args) : spawnArgsFor(runtime, ROOT, script, args);

/** A child process with its output kept, for reports. */
class Child {
  readonly process: ChildProcess;
  output = "";
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** When the process was seen to exit. */
  exitedAt: number | undefined;

  constructor(script: string, config: unknown, stdin: "pipe" | "ignore") {
    const { command, args } = commandFor(script, [JSON.stringify(config)]);
    this.process = spawn(command, args, { cwd: ROOT, stdio: [stdin, "pipe", "pipe"] });
    this.process.stdout!.setEncoding("utf8").on("data", (s: string) => (this.output += s));
    this.process.stderr!.setEncoding("utf8").on("data", (s: string) => (this.output += s));
    this.exited = new Promise((resolve) =>
      this.process.on("close", (code, signal) => {
        this.exitedAt = Date.now();
        resolve({ code, signal });
      })
    );
  }

  get started(): boolean {
    return this.output.includes("started\n") && this.exitedAt === undefined;
  }
}

let workerConfig: WorkerConfig = {
  workflow: "drain",
  crash: false,
  driver,
  db,
  ledger,
  concurrency: WORKER_CONCURRENCY,
  leaseMs,
  pollMs: 100,
  barrier: false,
  until: "stdin-end",
};
const spawnWorker = () => new Child(WORKER, workerConfig, "pipe");

async function main(): Promise<number> {
  const began = performance.now();
  // The controller reads the file with the first driver that loads in this Node.
  const own = sqliteSubjects.find((s) => s.available);
  if (own === undefined) throw new Error("no SQLite driver loads in the controller's runtime");
  const module = await own.load();
  const storage = module.open(db);
  await storage.initialize();
  const reader = await module.openHandle(db);
  reader.prepare("PRAGMA busy_timeout = 5000").all();

  const pool = Array.from({ length: workers }, spawnWorker);
  /** When each killed worker was killed, by pid. */
  const killedAt = new Map<number, number>();
  const meanKillMs = (killEveryMs[0] + killEveryMs[1]) / 2;
  // Enqueues are spread over most of the killing, so kills strike runs at every stage.
  const durationMs = Math.round(kills * meanKillMs * 0.8);
  const producers = Array.from({ length: PRODUCERS }, (_, index) => {
    const config: ProducerConfig = {
      index,
      producers: PRODUCERS,
      runs,
      durationMs,
      db,
      driver,
      out: join(dir, `producer-${index}.json`),
      seed: seed + index + 1,
    };
    return { config, child: new Child(PRODUCER, config, "ignore") };
  });

  const problems: string[] = [];
  let killCount = 0;
  /** Kills a worker and starts a new one in its slot (with the current definitions). */
  const replace = async (slot: number) => {
    const child = pool[slot]!;
    killedAt.set(child.process.pid!, Date.now());
    child.process.kill("SIGKILL");
    await child.exited;
    pool[slot] = spawnWorker();
  };
  let selfKills = 0;
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
      killedAt.set(child.process.pid!, child.exitedAt);
      selfKills++;
      pool[slot] = spawnWorker();
    }
    return true;
  };
  while (killCount < kills) {
    if (killCount === Math.floor(kills / 2) && workerConfig.deployed !== true) {
      // The deploy: a rolling restart, one worker at a time, onto the changed definitions.
      workerConfig = { ...workerConfig, deployed: true };
      for (let slot = 0; slot < pool.length; slot++) {
        await replace(slot);
        await sleep(killEveryMs[0]);
      }
    }
    await sleep(killEveryMs[0] + random() * (killEveryMs[1] - killEveryMs[0]));
    if (!replaceDead()) break;
    // Only a worker whose engine runs: killing one still starting up would test little.
    const live = pool.map((child, slot) => ({ child, slot })).filter(({ child }) => child.started);
    if (live.length === 0) continue;
    const { slot } = live[Math.floor(random() * live.length)]!;
    await replace(slot);
    killCount++;
  }

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
  const unfinished = reader.prepare(
    "SELECT count(*) AS n FROM reflow_runs WHERE status NOT IN ('completed', 'failed', 'cancelled', 'parked')",
  );
  while (Date.now() < deadline && Number((unfinished.all()[0] as { n: number }).n) > 0) {
    if (!replaceDead()) break;
    await sleep(100);
  }

  for (const child of pool) child.process.stdin!.end();
  for (const child of pool) {
    const { code } = await child.exited;
    if (code !== 0) problems.push(`a surviving worker exited with ${code}:\n${child.output}`);
  }

  const engine = createEngine({ storage, workflows: Object.values(processWorkflows()) });
  const verdict = await verify(engine.getRunStatus.bind(engine), reports, killedAt, reader);
  // Each kill (by the controller or by a crash loop) cuts at most the attempts its worker had in flight.
  const lostBound = (killCount + selfKills) * WORKER_CONCURRENCY * MAX_BRANCHES;
  if (verdict.lostAttempts > lostBound) {
    problems.push(`${verdict.lostAttempts} lost attempts, more than the kills had in flight (${lostBound})`);
  }
  await storage.close();
  reader.close();
  problems.push(...verdict.problems);

  const seconds = ((performance.now() - began) / 1000).toFixed(0);
  const dupBound = verdict.duplicates <= killCount
    ? "≤ kills"
    : `> kills, ≤ ${MAX_BRANCHES * WORKER_CONCURRENCY} per kill`;
  console.log(
    `chaos: runs ${runs}, kills ${killCount}, lost ${verdict.lost}, stuck ${verdict.stuck}, ` +
      `deployed ${verdict.deployed}, parked ${verdict.parked} (VERSION_MISMATCH), ` +
      `wrong outputs ${verdict.wrong}, duplicate side effects ${verdict.duplicates} (${dupBound}), ` +
      `integrity ${verdict.integrity}, crash loops failed ${verdict.crashLoopsFailed}/${verdict.crashLoops} ` +
      `(${selfKills} self-kills), lost attempts ${verdict.lostAttempts}` +
      ` [${
        runtime ?? `node ${process.versions.node}`
      }, ${driver}, ${workers} workers, seed ${seed}, ${seconds} s]`,
  );
  for (const problem of problems.slice(0, 20)) console.error(`violation: ${problem}`);
  if (problems.length > 20) console.error(`... and ${problems.length - 20} more`);
  if (opts.keep || problems.length > 0) console.error(`files kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
  return problems.length === 0 ? 0 : 1;
}

interface Verdict {
  lost: number;
  stuck: number;
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
  killedAt: ReadonlyMap<number, number>,
  reader: RawHandle,
): Promise<Verdict> {
  const v: Verdict = {
    lost: 0,
    stuck: 0,
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
  const lines = existsSync(ledger) ? readFileSync(ledger, "utf8").split("\n").filter(Boolean) : [];
  for (const line of lines) {
    let entry: LedgerEntry;
    try {
      entry = JSON.parse(line) as LedgerEntry;
    } catch {
      v.problems.push(`torn ledger line ${JSON.stringify(line)}`);
      continue;
    }
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
  // A repeated side effect is legitimate only when the process that did it first was killed before
  // committing, and another process repeated it after the kill; anything else would mean a lost
  // commit or a stolen lease.
  const duplicatesByPid = new Map<number, number>();
  for (const [key, list] of effects) {
    for (let i = 0; i + 1 < list.length; i++) {
      const [early, next] = [list[i]!, list[i + 1]!];
      v.duplicates++;
      const killed = killedAt.get(early.pid);
      if (killed === undefined || next.pid === early.pid || next.at < killed) {
        v.problems.push(
          `side effect "${key}" of process ${early.pid} repeated by ${next.pid} without a kill between`,
        );
      }
      duplicatesByPid.set(early.pid, (duplicatesByPid.get(early.pid) ?? 0) + 1);
    }
  }
  for (const [pid, count] of duplicatesByPid) {
    if (count > WORKER_CONCURRENCY * MAX_BRANCHES) {
      v.problems.push(
        `killed process ${pid} left ${count} duplicate side effects, more than it had in flight`,
      );
    }
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
    if (all.some((r) => r.runIds[i] !== runId) || all.filter((r) => r.created[i]).length !== 1) {
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
    const units = steps.map((s) => [s.name, s.attempts] as const);
    // Attempts beyond the plan's, under the definition the run finished with (before or after the
    // deploy); undefined when the units differ otherwise.
    const extras = deployedUnits(plan).map((expected) => lostAttempts(units, expected));
    const match = extras.findIndex((count) => count !== undefined);
    const extra = match === -1 ? undefined : extras[match];
    // Every unit but a crash loop's absorbs a few lost attempts; a kill that cut the last one
    // ends its run failed with WORKER_LOST, which the bound on lost attempts keeps rare. That last
    // one may also be an attempt the plan has (a step meant to fail at its last attempt, killed in it).
    const lostOut = extra !== undefined && run.status === "failed" && run.error?.code === "WORKER_LOST";
    if (lostOut) {
      v.lostAttempts += extra;
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
  const [{ n: total }] = reader.prepare("SELECT count(*) AS n FROM reflow_runs").all() as [{ n: number }];
  if (Number(total) !== runs) v.problems.push(`${total} runs stored, ${runs} planned`);
  const twice = reader.prepare(
    "SELECT run_id, step_name, count(*) AS n FROM reflow_steps GROUP BY run_id, step_name HAVING n > 1",
  ).all();
  if (twice.length > 0) v.problems.push(`step results stored twice: ${JSON.stringify(twice.slice(0, 5))}`);
  const integrity = reader.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
  v.integrity = integrity.length === 1 && integrity[0]!.integrity_check === "ok" ? "ok" : "FAILED";
  if (v.integrity !== "ok") v.problems.push(`integrity_check: ${JSON.stringify(integrity)}`);
  return v;
}

process.exitCode = await main();

/**
 * How many attempts `units` made beyond `plannedUnits` (lost attempts: a kill cut them short), or
 * undefined when they differ in anything else (names, order, fewer attempts).
 */
function lostAttempts(
  units: readonly (readonly [string, number])[],
  plannedUnits: readonly (readonly [string, number])[],
): number | undefined {
  if (units.length !== plannedUnits.length) return undefined;
  let extra = 0;
  for (const [index, [name, attempts]] of units.entries()) {
    const [plannedName, plannedAttempts] = plannedUnits[index]!;
    if (name !== plannedName || attempts < plannedAttempts) return undefined;
    extra += attempts - plannedAttempts;
  }
  return extra;
}

/** A side effect's name without its attempt number (`charge#2` → `charge`). */
function withoutAttempt(what: string): string {
  return what.replace(/#\d+$/, "");
}
