// A child process for tests/sqlite_processes.test.ts and tests/postgres_processes.test.ts: runs one
// engine on a shared database (a SQLite file, or a PostgreSQL schema) until
// no run in it is unfinished, recording every step's side effect as one line in a ledger file. The
// parent imports the workflows from here too (to enqueue runs and send events; their handlers never
// run there), and starts this file as a script.
//
//   process_worker.ts '<json WorkerConfig>'
//
// Protocol on stdout (one line each): "ready" once storage is initialised (with `barrier`, the worker
// then waits for a line on stdin before it starts claiming, so that every worker starts at once); in
// `crash` mode, the marker of the workflow's crash point once it is reached (see `CRASH_POINTS`),
// after which the worker makes no more progress until it is killed; with `until: "stdin-end"`,
// "started" once its engine runs (it then works until its stdin closes); and finally "done <json>"
// before it exits 0. Background errors reported by the engine go to stderr and make the exit code 1.
import { appendFileSync } from "node:fs";
import process from "node:process";
import {
  createEngine,
  createWorkflow,
  type EngineHooks,
  type ReflowError,
  type RunAdvance,
  type StorageAdapter,
  StorageError,
} from "../../mod.ts";
import { crashable, schema } from "./fixtures.ts";
import { sqliteSubjects } from "./sqlite_subjects.ts";

/** What the parent tells a worker. */
export interface WorkerConfig {
  /** The workflow whose runs it works on (every workflow is registered; this one sets the crash point). */
  readonly workflow: ProcessWorkflowName;
  /**
   * Whether to stop at the workflow's crash point, announce it with its marker, and make no more
   * progress until killed; otherwise every run is taken to its end.
   */
  readonly crash: boolean;
  /** A subject name of tests/support/sqlite_subjects.ts, e.g. "better-sqlite3", or "postgres". */
  readonly driver: string;
  /** The database file, or (PostgreSQL) a connection string. */
  readonly db: string;
  /** The ledger file: one line per side effect. */
  readonly ledger: string;
  /** Engine concurrency. */
  readonly concurrency: number;
  /** Engine `runLeaseDurationMs`, if not the default. */
  readonly leaseMs?: number;
  /** Engine `instanceId`, if any. */
  readonly instanceId?: string;
  /** The engine's poll interval, `start(pollMs)`. */
  readonly pollMs: number;
  /** Whether to wait for a line on stdin after "ready" before starting the engine. */
  readonly barrier: boolean;
  /**
   * When the worker stops: `"drained"` (default) once no run in the file is unfinished;
   * `"stdin-end"` once its stdin is closed, for a parent that keeps enqueuing (scripts/chaos.ts).
   */
  readonly until?: "drained" | "stdin-end";
  /**
   * Registers this schedule of the `ticker` workflow once started (every worker the same, so it is
   * one schedule) and runs for `forMs`, instead of running until no run is unfinished. Each slot the
   * worker wins is recorded in the ledger as `what` "slot" of the run it created.
   */
  readonly schedule?: { readonly key: string; readonly every: number; readonly forMs: number };
  /**
   * PostgreSQL: the connections' `application_name`, to which the worker appends `-<its pid>`, so that
   * a controller can find its server sessions (and terminate them).
   */
  readonly applicationName?: string;
  /**
   * The worker runs under injected faults (sessions terminated, the server restarted, the host cut off
   * from it): storage errors of kind `"io"` and `"busy"` are counted in its "done" line instead of
   * failing it, and each lease-fenced write the storage refuses prints `refused <operation> <run id>`.
   */
  readonly faults?: boolean;
  /**
   * With `faults`: holds each step commit (`advanceRun`, `saveStepResult`) back this long before it
   * is sent, as a host whose steps take that long, so that it holds its runs outside any transaction.
   */
  readonly commitDelayMs?: number;
  /**
   * Registers the deployed definitions (see {@linkcode buildWorkflows}): `drain` with a step
   * appended (compatible) and `approval` with a step inserted first (incompatible with runs that
   * have started). Runs it cannot continue are parked, not reported as errors.
   */
  readonly deployed?: boolean;
}

/** One side effect of a handler, as one JSON line of the ledger file. */
export interface LedgerEntry {
  /** The run. */
  readonly run: string;
  /** What happened, e.g. "step1" or "step2 started". */
  readonly what: string;
  /** The process it happened in. */
  readonly pid: number;
  /** When, in ms since the epoch (`Date.now()` in the handler). */
  readonly at: number;
}

/** The duration of the sleep of the `sleeper` workflow, in ms. */
export const NAP_MS = 1_500;

/**
 * Attempts lost to killed workers that the workflows' steps absorb: each may be cut short this
 * many times (a lost attempt counts as a failed one) and still complete.
 */
export const LOST_ATTEMPTS_ABSORBED = 4;
/** The retry policy of steps that never fail by themselves: lost attempts are retried at once. */
const SURVIVES_KILLS = { maxAttempts: 1 + LOST_ATTEMPTS_ABSORBED, initialDelayMs: 0 } as const;

/** Attempts of the `crashloop` workflow's step, each of which kills its worker. */
export const CRASHLOOP_ATTEMPTS = 3;
/** How long the `hog` workflow's step blocks its event loop, and the lease its workers use. */
export const HOG_CPU_MS = 1_000;
/** The lease of the `hog` workers: well below the step's CPU time. */
export const HOG_LEASE_MS = 300;
/** Attempts of the `hog` workflow's step. */
export const HOG_ATTEMPTS = 2;

/** Attempts of the `flaky` workflow's `charge` step. */
export const FLAKY_ATTEMPTS = 3;
/** The error message of a `flaky` run whose `charge` step never succeeds (a negative `n`). */
export const FLAKY_DOOMED = "charge declined for good";

/** The payload of the `approve` event of the `approval` workflow. */
const approvalPayload = schema<{ by: string }>((value) =>
  typeof (value as { by?: unknown })?.by === "string" ? undefined : "by must be a string"
);

/** Where the handlers write, and what a crash-mode worker does at its crash point. */
interface HandlerContext {
  /** Appends a ledger line. */
  record(runId: string, what: string): void;
  /** Whether handlers stop at the crash point. */
  readonly crash: boolean;
  /** Notes a fact of the crash point; the marker is printed once all of them are noted. */
  reached(fact: string): void;
  /** Kills this worker's own process with SIGKILL. */
  die(): never;
}

/** Never settles in practice; its timer keeps the process alive until the parent kills it. */
function hang(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 600_000));
}

/**
 * The workflows the processes run. Outputs for input `{ n }`:
 *
 * - `drain`: `{ n, result: (n + 1) * 2 }` (steps a, b, c, each recorded once);
 * - `crashy`: `{ result: (n + 1) * 10 + 1 }`; in crash mode step 2 hangs;
 * - `sleeper`: `{ result: (n + 1) * 10 }`, step 2 after a sleep of `NAP_MS`;
 * - `approval`: `{ by, result: (n + 1) * 10 }`, step 2 after the `approve` event `{ by }`;
 * - `fanout`: `[n + 2, n + 3, n + 4]`, from branches `fast`, `slow`, `slower` after step 1; in crash
 *   mode `slow` and `slower` hang;
 * - `flaky`: `{ result: (n + 1) * 3 }`; step `charge` (recorded as `charge#<attempt>`) fails its first
 *   attempt and succeeds on the retry, or, for a negative `n`, fails all `FLAKY_ATTEMPTS` attempts and
 *   so the run, with the message `FLAKY_DOOMED`;
 * - `ticker`: `n` (step `tick`), the workflow of scheduled runs;
 * - `crashloop`: never ends well: step `doomed` (recorded as `doomed#<attempt>`) kills its own
 *   worker with SIGKILL at each of its `CRASHLOOP_ATTEMPTS` attempts, so the run fails with
 *   `WORKER_LOST`, and `onFailure` records `compensated`;
 * - `hog`: `n`; step `crunch` (recorded as `crunch#<attempt>`) blocks the event loop for
 *   `HOG_CPU_MS`, longer than its workers' lease.
 *
 * Steps that never fail by themselves retry lost attempts at once (`SURVIVES_KILLS`).
 *
 * Deployed (the second half of a chaos run), `drain` ends with a step `d` that passes `prev` on,
 * and `approval` starts with a step `step0`; neither records a side effect, and outputs stay the same.
 */
function buildWorkflows(cx: HandlerContext, deployed = false) {
  const input = schema<{ n: number }>();
  /** The first step of most workflows: `n + 1`. */
  const step1 = {
    retry: SURVIVES_KILLS,
    handler: ({ runId, input }: { runId: string; input: { n: number } }) => {
      cx.record(runId, "step1");
      return input.n + 1;
    },
  };
  const drainBefore = createWorkflow({ name: "drain", input })
    .step("a", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, stepName, input }) => {
        cx.record(runId, stepName);
        return input.n + 1;
      },
    })
    .step("b", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, stepName, prev }) => {
        cx.record(runId, stepName);
        return prev * 2;
      },
    })
    .step("c", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, stepName, input, prev }) => {
        cx.record(runId, stepName);
        return { n: input.n, result: prev };
      },
    });
  // The deployed definitions keep the original types: no caller reads the units they add.
  const drain = deployed
    ? drainBefore.step("d", {
      retry: SURVIVES_KILLS,
      handler: ({ prev }) => prev,
    }) as unknown as typeof drainBefore
    : drainBefore;
  const approvalStart = createWorkflow({ name: "approval", input });
  const crashy = createWorkflow({ name: "crashy", input })
    .step("step1", step1)
    .step("step2", {
      retry: SURVIVES_KILLS,
      handler: async ({ runId, prev }) => {
        cx.record(runId, "step2 started");
        if (cx.crash) {
          cx.reached("step2 started");
          await hang();
        }
        cx.record(runId, "step2 completed");
        return prev * 10;
      },
    })
    .step("step3", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, prev }) => {
        cx.record(runId, "step3");
        return { result: prev + 1 };
      },
    });
  const sleeper = createWorkflow({ name: "sleeper", input })
    .step("step1", step1)
    .sleep("nap", NAP_MS)
    .step("step2", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, prev }) => {
        cx.record(runId, "step2");
        return { result: prev * 10 };
      },
    });
  const approval = (deployed
    ? approvalStart.step("step0", {
      retry: SURVIVES_KILLS,
      handler: ({ input }) => input.n,
    }) as unknown as typeof approvalStart
    : approvalStart)
    .step("step1", step1)
    .waitForEvent("approve", { schema: approvalPayload })
    .step("step2", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, prev, steps }) => {
        cx.record(runId, "step2");
        return { by: prev.by, result: steps.step1 * 10 };
      },
    });
  /** A branch that, in crash mode, announces that it started and hangs. */
  const hanging = (name: string, add: number) => async ({ runId, prev }: { runId: string; prev: number }) => {
    cx.record(runId, `${name} started`);
    if (cx.crash) {
      cx.reached(`${name} started`);
      await hang();
    }
    cx.record(runId, `${name} completed`);
    return prev + add;
  };
  const fanout = createWorkflow({ name: "fanout", input })
    .step("step1", step1)
    .parallel({
      fast: {
        retry: SURVIVES_KILLS,
        handler: ({ runId, prev }) => {
          cx.record(runId, "fast");
          return prev + 1;
        },
      },
      slow: { retry: SURVIVES_KILLS, handler: hanging("slow", 2) },
      slower: { retry: SURVIVES_KILLS, handler: hanging("slower", 3) },
    })
    .step("join", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, prev }) => {
        cx.record(runId, "join");
        return [prev.fast, prev.slow, prev.slower];
      },
    });
  const flaky = createWorkflow({ name: "flaky", input })
    .step("step1", step1)
    .step("charge", {
      // A short fixed delay parks the run as pending between attempts, as a real retry does.
      retry: { maxAttempts: FLAKY_ATTEMPTS, backoff: "linear", initialDelayMs: 20, maxDelayMs: 20 },
      handler: ({ runId, stepName, attempt, input, prev }) => {
        cx.record(runId, `${stepName}#${attempt}`);
        if (input.n < 0) throw new Error(FLAKY_DOOMED);
        if (attempt === 1) throw new Error("charge failed, try again");
        return prev * 3;
      },
    })
    .step("step3", {
      retry: SURVIVES_KILLS,
      handler: ({ runId, prev }) => {
        cx.record(runId, "step3");
        return { result: prev };
      },
    });
  const ticker = createWorkflow({ name: "ticker", input }).step("tick", {
    retry: SURVIVES_KILLS,
    handler: ({ runId, stepName, input }) => {
      cx.record(runId, stepName);
      return input.n;
    },
  });
  const crashloop = createWorkflow({ name: "crashloop", input })
    .step("doomed", {
      retry: { maxAttempts: CRASHLOOP_ATTEMPTS, initialDelayMs: 0 },
      handler: ({ runId, stepName, attempt }) => {
        cx.record(runId, `${stepName}#${attempt}`);
        cx.die();
      },
    })
    .onFailure(({ runId }) => cx.record(runId, "compensated"));
  const hog = createWorkflow({ name: "hog", input })
    .step("crunch", {
      retry: { maxAttempts: HOG_ATTEMPTS, initialDelayMs: 0 },
      handler: ({ runId, stepName, attempt, input }) => {
        cx.record(runId, `${stepName}#${attempt}`);
        const until = performance.now() + HOG_CPU_MS;
        while (performance.now() < until) {
          // CPU-bound work that never yields to the event loop
        }
        return input.n;
      },
    });
  return { drain, crashy, sleeper, approval, fanout, flaky, ticker, crashloop, hog };
}

/** The workflows of the processes, by name. */
export type ProcessWorkflows = ReturnType<typeof buildWorkflows>;
/** A workflow name of {@linkcode ProcessWorkflows}. */
export type ProcessWorkflowName = keyof ProcessWorkflows;

/**
 * The workflows as the parent registers them (to enqueue, send events and read runs): the same
 * names, units and schemas as in the workers; their handlers never run there.
 */
export function processWorkflows(deployed = false): ProcessWorkflows {
  const unused = () => {
    throw new Error("process workflows' handlers run only in worker processes");
  };
  return buildWorkflows({ record: unused, crash: false, reached: unused, die: unused }, deployed);
}

/** Where a crash-mode worker stops: the marker it prints once every fact of it is noted. */
export interface CrashPoint {
  /** The line printed on stdout. */
  readonly marker: string;
  /** Noted by handlers (what they recorded), hooks ("<step> committed") and the storage ("parked"). */
  readonly facts: readonly string[];
}

/** The crash point of each workflow that has one. */
export const CRASH_POINTS: Readonly<Partial<Record<ProcessWorkflowName, CrashPoint>>> = {
  /** Inside step 2, which hangs. */
  crashy: { marker: "in-step2", facts: ["step2 started"] },
  /** The sleep is committed (run `sleeping`); the worker's storage is frozen from then on. */
  sleeper: { marker: "parked", facts: ["parked"] },
  /** The wait is committed (run `waiting`); the worker's storage is frozen from then on. */
  approval: { marker: "parked", facts: ["parked"] },
  /** Branch `fast` is committed, and `slow` and `slower` have started and hang. */
  fanout: { marker: "in-parallel", facts: ["fast committed", "slow started", "slower started"] },
};

/**
 * Wraps a crash-mode worker's storage so that the commit parking a run (in a sleep or a wait) is the
 * last thing the worker does: the call that made it never returns, every later call hangs, and the
 * crash point is noted. Without this the worker would wake the sleep itself if the kill came late.
 */
function freezeOnPark(real: StorageAdapter, reached: (fact: string) => void): StorageAdapter {
  const { storage, crash } = crashable(real);
  const park = (): Promise<never> => {
    crash();
    reached("parked");
    return new Promise(() => {});
  };
  const advanceRun = async (runId: string, leaseId: string, change: RunAdvance) => {
    const committed = await storage.advanceRun(runId, leaseId, change);
    return committed && change.status === "sleeping" ? park() : committed;
  };
  const awaitEvent: StorageAdapter["awaitEvent"] = async (...args) => {
    const result = await storage.awaitEvent(...args);
    return result.outcome === "parked" ? park() : result;
  };
  return new Proxy(storage, {
    get: (target, property, receiver) =>
      property === "advanceRun"
        ? advanceRun
        : property === "awaitEvent"
        ? awaitEvent
        : Reflect.get(target, property, receiver),
  });
}

/**
 * `real` with some methods replaced. The others are bound to `real` itself: a storage's private fields
 * are not reachable through a proxy.
 */
function overriding(real: StorageAdapter, overrides: Partial<StorageAdapter>): StorageAdapter {
  return new Proxy(real, {
    get: (target, property) => {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof StorageAdapter];
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** Records in the ledger every schedule slot this worker's engine won (the run it created, `what` "slot"). */
function recordSlots(real: StorageAdapter, record: (runId: string, what: string) => void): StorageAdapter {
  return overriding(real, {
    claimScheduleSlot: async (...args) => {
      const result = await real.claimScheduleSlot(...args);
      if (result?.created === true) record(result.run.id, "slot");
      return result;
    },
  });
}

/** The lease-fenced writes that report a refusal by returning false. */
const FENCED = [
  "heartbeatRun",
  "saveStepResult",
  "updateClaimedRunStatus",
  "advanceRun",
  "updateRunVersion",
] as const;

/** Prints `refused <operation> <run id>` for each lease-fenced write the storage refuses (the lease was lost). */
function reportRefusals(real: StorageAdapter, commitDelayMs = 0): StorageAdapter {
  const overrides: Record<string, unknown> = {};
  for (const name of FENCED) {
    const method = real[name] as (...args: unknown[]) => Promise<boolean>;
    const delayed = commitDelayMs > 0 && (name === "advanceRun" || name === "saveStepResult");
    overrides[name] = async (...args: unknown[]) => {
      if (delayed) await new Promise((resolve) => setTimeout(resolve, commitDelayMs));
      const done = await method.apply(real, args);
      // saveStepResult without a lease is not fenced.
      if (!done && (name !== "saveStepResult" || args[1] !== undefined)) {
        const runId = name === "saveStepResult" ? (args[0] as { runId: string }).runId : args[0] as string;
        process.stdout.write(`refused ${name} ${runId}\n`);
      }
      return done;
    };
  }
  return overriding(real, overrides as Partial<StorageAdapter>);
}

/** How long {@linkcode retried} keeps trying, in tries 100 ms apart: longer than a server restart. */
const TRIES = 300;

/**
 * Calls `operation` until it does not fail transiently (a `StorageError` of kind `"io"` or `"busy"`:
 * a lost connection, a restarting server), as a client of a database under faults would.
 *
 * @param operation The call.
 * @returns Its result, and whether an earlier try failed (whose effect may have been committed).
 * @throws What `operation` threw, if not transient or still after {@linkcode TRIES} tries.
 */
export async function retried<T>(operation: () => Promise<T>): Promise<{ value: T; retried: boolean }> {
  for (let tries = 1;; tries++) {
    try {
      return { value: await operation(), retried: tries > 1 };
    } catch (error) {
      if (!isTransient(error) || tries >= TRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function isTransient(error: unknown): boolean {
  return error instanceof StorageError && (error.kind === "io" || error.kind === "busy");
}

/** Counts unfinished runs (table and statuses of the schemas in src/sql/). */
const UNFINISHED_SQL =
  "SELECT count(*) AS n FROM reflow_runs WHERE status NOT IN ('completed', 'failed', 'cancelled')";

/** Resolves once a line, or the end of input, arrives on stdin: the start barrier. */
export function readLine(): Promise<void> {
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

/** Settles when stdin ends (the parent closed it, or exited). */
function stdinEnd(): Promise<void> {
  return new Promise((resolve) => {
    process.stdin.on("data", () => {});
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
  });
}

/** The shared database: the worker's storage, and a connection of its own that counts unfinished runs. */
interface SharedDatabase {
  readonly storage: StorageAdapter;
  unfinished(): Promise<number>;
  close(): Promise<void>;
}

/** The module of SQLite driver subject `name` (tests/support/sqlite_subjects.ts); throws if it cannot load here. */
async function sqliteModule(name: string) {
  const subject = sqliteSubjects.find((s) => s.name === name);
  if (subject === undefined || !subject.available) {
    throw new Error(`driver ${name} is not available here: ${subject?.skipReason ?? "unknown name"}`);
  }
  return await subject.load();
}

/**
 * Opens a storage on a shared database: with `driver` "postgres", on the connection string `db`;
 * otherwise with that SQLite driver subject, on the file `db`.
 *
 * @param driver "postgres", or a subject name of tests/support/sqlite_subjects.ts.
 * @param db The connection string or the file.
 * @returns The storage, not yet initialised.
 */
export async function openStorage(driver: string, db: string): Promise<StorageAdapter> {
  if (driver !== "postgres") return (await sqliteModule(driver)).open(db);
  const { PostgresStorage } = await import("../../drivers/postgres.ts");
  return new PostgresStorage(db, { poolSize: 4 });
}

async function openShared(config: WorkerConfig): Promise<SharedDatabase> {
  if (config.driver === "postgres") {
    const { default: pg } = await import("pg");
    const url = new URL(config.db);
    if (config.applicationName !== undefined) {
      url.searchParams.set("application_name", `${config.applicationName}-${process.pid}`);
    }
    const reader = new pg.Pool({ connectionString: url.toString(), max: 1 });
    reader.on("error", () => {});
    return {
      storage: await openStorage("postgres", url.toString()),
      unfinished: async () => Number((await reader.query(UNFINISHED_SQL)).rows[0].n),
      close: () => reader.end(),
    };
  }
  const driver = await sqliteModule(config.driver);
  // A second connection of the library itself, only to read whether any run is unfinished.
  const reader = await driver.openHandle(config.db);
  reader.prepare("PRAGMA busy_timeout = 5000").all();
  // Prepared on first use: the table exists only once the storage has initialised the file.
  let unfinished: ReturnType<typeof reader.prepare> | undefined;
  return {
    storage: driver.open(config.db),
    unfinished: () => {
      unfinished ??= reader.prepare(UNFINISHED_SQL);
      return Promise.resolve(Number((unfinished.all() as { n: number | bigint }[])[0]!.n));
    },
    close: () => Promise.resolve(void reader.close()),
  };
}

async function main(config: WorkerConfig): Promise<void> {
  const shared = await openShared(config);
  const { storage } = shared;
  const errors: ReflowError[] = [];

  const crashPoint = config.crash ? CRASH_POINTS[config.workflow] : undefined;
  if (config.crash && crashPoint === undefined) throw new Error(`${config.workflow} has no crash point`);
  const facts = new Set(crashPoint?.facts);
  const reached = (fact: string) => {
    if (facts.delete(fact) && facts.size === 0) process.stdout.write(`${crashPoint!.marker}\n`);
  };
  const record = (run: string, what: string) => {
    const entry: LedgerEntry = { run, what, pid: process.pid, at: Date.now() };
    appendFileSync(config.ledger, `${JSON.stringify(entry)}\n`);
  };
  const workflows = buildWorkflows({
    record,
    crash: config.crash,
    reached,
    die: () => {
      process.kill(process.pid, "SIGKILL");
      throw new Error("unreachable: the process was killed");
    },
  }, config.deployed);
  let parked = 0;
  /** Storage errors of the injected faults (see `WorkerConfig.faults`). */
  let faults = 0;
  const hooks: EngineHooks = {
    onError: (error) => {
      // Notices, not failures: a loaded machine may delay a heartbeat, and a worker may start
      // while another holds runs.
      if (error.code === "EVENT_LOOP_BLOCKED" || error.code === "LEASES_HELD") return;
      // A run no registered definition can continue is parked, as the deploy expects some to be.
      if (error.code === "VERSION_MISMATCH") {
        parked++;
        return;
      }
      if (config.faults && isTransient(error)) {
        faults++;
        console.error(`[worker ${process.pid}] fault at ${Date.now()}: ${error.message}`);
        return;
      }
      errors.push(error);
      console.error(`[worker ${process.pid}] background error:`, error);
    },
    onStepComplete: (event) => reached(`${event.stepName} committed`),
  };
  const engine = createEngine({
    storage: config.crash
      ? freezeOnPark(storage, reached)
      : config.schedule
      ? recordSlots(storage, record)
      : config.faults
      ? reportRefusals(storage, config.commitDelayMs)
      : storage,
    workflows: Object.values(workflows),
    concurrency: config.concurrency,
    ...(config.leaseMs === undefined ? {} : { runLeaseDurationMs: config.leaseMs }),
    ...(config.instanceId === undefined ? {} : { instanceId: config.instanceId }),
    hooks,
  });
  try {
    // A worker started while the server restarts waits for it (here and in start()), as a deployed
    // worker would.
    await (config.faults ? retried(() => storage.initialize()) : storage.initialize());
    if (config.barrier) {
      process.stdout.write("ready\n");
      await readLine();
    }
    await (config.faults ? retried(() => engine.start(config.pollMs)) : engine.start(config.pollMs));
    if (config.until === "stdin-end") {
      process.stdout.write("started\n");
      await stdinEnd();
    } else if (config.schedule !== undefined) {
      const { key, every, forMs } = config.schedule;
      await engine.schedule("ticker", { n: 1 }, every, { key });
      await new Promise((resolve) => setTimeout(resolve, forMs));
    } else {
      // Done when no run is left unfinished by anyone (not when this engine finds nothing to claim:
      // another process may still hold runs it could lose). Polling here is only how we notice.
      while (await shared.unfinished() > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await engine.stop();
    await storage.close();
    await shared.close();
  }
  process.stdout.write(
    `done ${JSON.stringify({ pid: process.pid, parked, faults, errors: errors.length })}\n`,
  );
  if (errors.length > 0) process.exitCode = 1;
}

if (import.meta.main) await main(JSON.parse(process.argv[2] ?? "") as WorkerConfig);
