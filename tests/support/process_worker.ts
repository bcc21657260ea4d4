// A child process for tests/sqlite_processes.test.ts: runs one engine on a shared SQLite file until
// no run in it is unfinished, recording every step's side effect as one line in a ledger file.
//
//   process_worker.ts '<json WorkerConfig>'
//
// Protocol on stdout (one line each): "ready" once storage is initialised (the worker then waits for
// a line on stdin before it starts claiming, so that every worker starts at once), "in-step2" when
// a `crash`-mode worker is inside step 2 (it then hangs there until it is killed), and finally
// "done <json>" before it exits 0. Background errors reported by the engine go to stderr and make
// the exit code 1.
import { appendFileSync } from "node:fs";
import process from "node:process";
import { createEngine, createWorkflow, type ReflowError } from "../../mod.ts";
import { schema } from "./fixtures.ts";
import { sqliteSubjects } from "./sqlite_subjects.ts";

/** What the parent tells a worker. */
export interface WorkerConfig {
  /** `drain`: run the 3-step `drain` workflow; `crash`/`resume`: the `crashy` workflow. */
  readonly mode: "drain" | "crash" | "resume";
  /** A subject name of tests/support/sqlite_subjects.ts, e.g. "better-sqlite3". */
  readonly driver: string;
  /** The database file. */
  readonly db: string;
  /** The ledger file: one line per step execution. */
  readonly ledger: string;
  /** Engine concurrency. */
  readonly concurrency: number;
  /** Engine `runLeaseDurationMs`, if not the default. */
  readonly leaseMs?: number;
  /** The engine's poll interval, `start(pollMs)`. */
  readonly pollMs: number;
  /** Whether to print "ready" and wait for a line on stdin before starting the engine. */
  readonly barrier: boolean;
}

/** The workflow the drain test enqueues 1,000+ runs of. Its output is `{ n, result: (n + 1) * 2 }`. */
function drainWorkflow(ledger: string) {
  const record = (runId: string, stepName: string) =>
    appendFileSync(ledger, `${runId} ${stepName} ${process.pid}\n`);
  return createWorkflow({ name: "drain", input: schema<{ n: number }>() })
    .step("a", ({ runId, stepName, input }) => {
      record(runId, stepName);
      return input.n + 1;
    })
    .step("b", ({ runId, stepName, prev }) => {
      record(runId, stepName);
      return prev * 2;
    })
    .step("c", ({ runId, stepName, input, prev }) => {
      record(runId, stepName);
      return { n: input.n, result: prev };
    });
}

/**
 * The workflow of the SIGKILL test. In `crash` mode step 2 announces itself and never returns; in
 * `resume` mode it completes. Output for input `{ n }`: `{ result: (n + 1) * 10 + 1 }`.
 */
function crashyWorkflow(ledger: string, mode: "crash" | "resume") {
  const record = (line: string) => appendFileSync(ledger, `${line} ${process.pid}\n`);
  return createWorkflow({ name: "crashy", input: schema<{ n: number }>() })
    .step("step1", ({ input }) => {
      record("step1");
      return input.n + 1;
    })
    .step("step2", async ({ prev }) => {
      record("step2 started");
      if (mode === "crash") {
        process.stdout.write("in-step2\n");
        // Hangs until the parent kills this process; the timer keeps the process alive meanwhile.
        await new Promise((resolve) => setTimeout(resolve, 600_000));
      }
      record("step2 completed");
      return prev * 10;
    })
    .step("step3", ({ prev }) => {
      record("step3");
      return { result: prev + 1 };
    });
}

/** Counts unfinished runs (table and statuses of src/sql/sqlite_schema.ts). */
const UNFINISHED_SQL =
  "SELECT count(*) AS n FROM reflow_runs WHERE status NOT IN ('completed', 'failed', 'cancelled')";

function readLine(): Promise<void> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (chunk: string) => {
      text += chunk;
      if (text.includes("\n")) finish();
    };
    const finish = () => {
      process.stdin.off("data", onData);
      process.stdin.off("end", finish);
      process.stdin.pause();
      resolve();
    };
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", onData);
    process.stdin.on("end", finish);
  });
}

async function main(config: WorkerConfig): Promise<void> {
  const subject = sqliteSubjects.find((s) => s.name === config.driver);
  if (subject === undefined || !subject.available) {
    throw new Error(
      `driver ${config.driver} is not available here: ${subject?.skipReason ?? "unknown name"}`,
    );
  }
  const driver = await subject.load();
  const storage = driver.open(config.db);
  // A second connection of the library itself, only to read whether any run is unfinished.
  const reader = await driver.openHandle(config.db);
  const errors: ReflowError[] = [];
  const workflow = config.mode === "drain"
    ? drainWorkflow(config.ledger)
    : crashyWorkflow(config.ledger, config.mode);
  const engine = createEngine({
    storage,
    workflows: [workflow],
    concurrency: config.concurrency,
    ...(config.leaseMs === undefined ? {} : { runLeaseDurationMs: config.leaseMs }),
    hooks: {
      onError: (error) => {
        errors.push(error);
        console.error(`[worker ${process.pid}] background error:`, error);
      },
    },
  });
  try {
    await storage.initialize();
    reader.prepare("PRAGMA busy_timeout = 5000").all();
    const unfinished = reader.prepare(UNFINISHED_SQL);
    if (config.barrier) {
      process.stdout.write("ready\n");
      await readLine();
    }
    await engine.start(config.pollMs);
    // Done when no run is left unfinished by anyone (not when this engine finds nothing to claim:
    // another process may still hold runs it could lose). Polling here is only how we notice.
    for (;;) {
      const [row] = unfinished.all() as { n: number | bigint }[];
      if (Number(row!.n) === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await engine.stop();
    await storage.close();
    reader.close();
  }
  process.stdout.write(`done ${JSON.stringify({ pid: process.pid, errors: errors.length })}\n`);
  if (errors.length > 0) process.exitCode = 1;
}

await main(JSON.parse(process.argv[2] ?? "") as WorkerConfig);
