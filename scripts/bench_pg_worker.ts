// One worker process of the PostgreSQL benchmark (scripts/bench_pg.ts starts several per runtime on
// one server): it drains a pre-filled schema with the engine or with the raw claim loop when told,
// or plays one side of the latency measurement. Commands come as JSON lines on stdin, replies go as
// JSON lines to stdout (bench_pg_protocol.ts); the server is REFLOW_POSTGRES_URL.
//
//   <runtime> scripts/bench_pg_worker.ts          (deno run -A, node >= 22.18, bun run)
//
// The process exits when its stdin closes, so a coordinator that dies leaves no worker behind.
import process from "node:process";
import { createInterface } from "node:readline";
import pg from "pg";
import { PostgresStorage } from "../drivers/postgres.ts";
import { createEngine, createWorkflow, type Engine, type EngineHooks } from "../mod.ts";
import { schema as inputSchema } from "../tests/support/fixtures.ts";
import { checkRawQueue, drainRawQueue, fillRawQueue, type RawMode } from "./bench_pg_raw.ts";
import {
  type Command,
  CONCURRENCY,
  type PassKind,
  type Reply,
  schemaUrl,
  wallClock,
} from "./bench_pg_protocol.ts";
import { workflowOf, workflows } from "./bench_workflows.ts";

const url = process.env.REFLOW_POSTGRES_URL;
if (!url) throw new Error("bench_pg_worker.ts: REFLOW_POSTGRES_URL is not set");

const send = (reply: Reply) => void process.stdout.write(`${JSON.stringify(reply)}\n`);

/** How often a draining worker reports its count; the coordinator stops everyone at the total. */
const PROGRESS_MS = 20;

/** A drain in progress: what `stop` ends and reports. */
interface Drain {
  readonly firstClaimAt: number;
  /** Ends the drain; resolves with its last completion time and count. */
  finish(): Promise<{ lastCompletionAt: number; completed: number }>;
}

/** A drain that is set up but not started: `go` starts it. */
interface Prepared {
  start(onCompleted: (completed: number) => void): Promise<Drain>;
  /** The drain's sessions' `synchronous_commit`, which must be the same for the engine and the raw loop. */
  synchronousCommit(): Promise<string>;
  close(): Promise<void>;
}

async function synchronousCommit(client: pg.Client | pg.PoolClient): Promise<string> {
  const { rows } = await client.query<{ synchronous_commit: string }>("SHOW synchronous_commit");
  return rows[0]!.synchronous_commit;
}

let lastFill: { kind: PassKind; schema: string; runs: number; steps: number; sample: Sample[] } | undefined;
let prepared: Prepared | undefined;
let drain: Drain | undefined;
let progressTimer: ReturnType<typeof setInterval> | undefined;
/** What `exit` (or a closed stdin) must close. */
const openResources = new Set<() => Promise<void>>();

interface Sample {
  readonly runId: string;
  readonly n: number;
}

function rawMode(kind: PassKind): RawMode {
  return kind === "raw-per-job" ? "per-job" : "per-batch";
}

async function rawClient(schema: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: schemaUrl(url!, schema) });
  // A lost connection fails the pending query; the listener keeps it from crashing the process first.
  client.on("error", () => {});
  await client.connect();
  return client;
}

async function openStorage(schema: string): Promise<PostgresStorage> {
  const storage = new PostgresStorage(schemaUrl(url!, schema));
  await storage.initialize();
  return storage;
}

/** Reports `error` and ends the process: a failed run or background error makes the figures meaningless. */
function fail(error: unknown): never {
  send({ type: "error", message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
}

const failFast: EngineHooks = {
  onRunFailed: (e) => fail(`run ${e.runId} failed: ${e.error.message}`),
  onError: (e) => fail(`engine error: ${e.message}`),
};

async function fill(kind: PassKind, schema: string, runs: number, steps: number): Promise<Sample[]> {
  if (kind !== "engine") {
    const client = await rawClient(schema);
    try {
      await fillRawQueue(client, runs, steps);
    } finally {
      await client.end();
    }
    return [];
  }
  const storage = await openStorage(schema);
  try {
    const engine = createEngine({ storage, workflows });
    const name = workflowOf(steps);
    const every = Math.max(1, Math.floor(runs / 20));
    const sample: Sample[] = [];
    // Untimed; enqueued CONCURRENCY at a time only to keep the preparation short.
    for (let from = 0; from < runs; from += CONCURRENCY) {
      const ns = Array.from({ length: Math.min(CONCURRENCY, runs - from) }, (_, i) => from + i);
      const ids = await Promise.all(ns.map((n) => engine.enqueue(name, { n })));
      ns.forEach((n, i) => {
        if (n % every === 0 || n === runs - 1) sample.push({ runId: ids[i]!.runId, n });
      });
    }
    return sample;
  } finally {
    await storage.close();
  }
}

/** The engine's pool size, as PostgresStorage's default. */
const POOL_SIZE = 10;

/**
 * A storage on a pool whose connections are all open already, so that a timed drain does not pay
 * for connecting, as the raw loop's connection is open before its drain too.
 */
async function openWarmStorage(
  schema: string,
): Promise<{ storage: PostgresStorage; pool: pg.Pool; close(): Promise<void> }> {
  const pool = new pg.Pool({ connectionString: schemaUrl(url!, schema), max: POOL_SIZE, keepAlive: true });
  pool.on("error", () => {});
  const clients = await Promise.all(Array.from({ length: POOL_SIZE }, () => pool.connect()));
  for (const client of clients) client.release();
  const storage = new PostgresStorage(pool);
  await storage.initialize();
  return {
    storage,
    pool,
    close: async () => {
      await storage.close();
      await pool.end();
    },
  };
}

async function prepareEngine(schema: string): Promise<Prepared> {
  const { storage, pool, close } = await openWarmStorage(schema);
  let completed = 0;
  let lastCompletionAt = 0;
  let report: (completed: number) => void = () => {};
  const engine = createEngine({
    storage,
    workflows,
    concurrency: CONCURRENCY,
    hooks: {
      ...failFast,
      onRunComplete: () => {
        lastCompletionAt = wallClock();
        report(++completed);
      },
    },
  });
  return {
    async start(onCompleted) {
      report = onCompleted;
      const firstClaimAt = wallClock();
      // The production path: the worker loop at the default poll interval.
      await engine.start();
      return {
        firstClaimAt,
        async finish() {
          await engine.stop();
          return { lastCompletionAt: completed === 0 ? firstClaimAt : lastCompletionAt, completed };
        },
      };
    },
    async synchronousCommit() {
      // A connection the storage has set up and used, as every connection of the pool is by now.
      const client = await pool.connect();
      try {
        return await synchronousCommit(client);
      } finally {
        client.release();
      }
    },
    async close() {
      await engine.stop();
      await close();
    },
  };
}

async function prepareRaw(kind: PassKind, schema: string): Promise<Prepared> {
  const client = await rawClient(schema);
  return {
    start(onCompleted) {
      const firstClaimAt = wallClock();
      const drained = drainRawQueue(client, rawMode(kind), wallClock, onCompleted);
      // Fails at once: the coordinator would otherwise wait for the count until its timeout.
      drained.catch(fail);
      return Promise.resolve({
        firstClaimAt,
        finish: async () => await drained,
      });
    },
    synchronousCommit: () => synchronousCommit(client),
    close: () => client.end(),
  };
}

async function check(): Promise<string[]> {
  if (lastFill === undefined) return ["check before any fill"];
  const { kind, schema, runs, steps, sample } = lastFill;
  const client = await rawClient(schema);
  try {
    if (kind !== "engine") return await checkRawQueue(client, runs, steps);
    const problems: string[] = [];
    const { rows } = await client.query<{ completed: string; total: string }>(
      "SELECT count(*) FILTER (WHERE status = 'completed') AS completed, count(*) AS total FROM reflow_runs",
    );
    if (Number(rows[0]!.completed) !== runs || Number(rows[0]!.total) !== runs) {
      problems.push(`engine: ${rows[0]!.completed} of ${rows[0]!.total} runs completed, expected ${runs}`);
    }
    const storage = await openStorage(schema);
    try {
      const engine = createEngine({ storage, workflows });
      for (const { runId, n } of sample) {
        const details = await engine.getRunStatus(runId);
        const output = details?.run.output as { n: number } | undefined;
        if (details?.run.status !== "completed" || output?.n !== n + steps) {
          problems.push(`run ${runId} is ${details?.run.status} with output ${JSON.stringify(output)}`);
        }
      }
    } finally {
      await storage.close();
    }
    return problems;
  } finally {
    await client.end();
  }
}

/** The latency workflow: its one step reports when its handler starts, on the shared clock. */
const latencyWorkflow = createWorkflow({ name: "latency", input: inputSchema<{ n: number }>() })
  .step("s1", ({ input }) => {
    send({ type: "started", n: input.n, at: wallClock() });
    return { n: input.n };
  });

let producer: Engine<typeof latencyWorkflow> | undefined;

async function latencyEngine(schema: string, role: "consume" | "produce") {
  const storage = await openStorage(schema);
  const engine = createEngine({
    storage,
    workflows: [latencyWorkflow],
    concurrency: CONCURRENCY,
    hooks: {
      ...failFast,
      onRunComplete: (e) => send({ type: "completed", n: (e.output as { n: number }).n }),
    },
  });
  openResources.add(async () => {
    await engine.stop();
    await storage.close();
  });
  if (role === "consume") await engine.start();
  return engine;
}

async function handle(command: Command): Promise<void> {
  switch (command.cmd) {
    case "fill": {
      const sample = await fill(command.kind, command.schema, command.runs, command.steps);
      lastFill = { ...command, sample };
      return send({ type: "done" });
    }
    case "open":
      prepared = command.kind === "engine"
        ? await prepareEngine(command.schema)
        : await prepareRaw(command.kind, command.schema);
      return send({ type: "done" });
    case "go": {
      if (prepared === undefined) throw new Error("go before open");
      let completed = 0;
      let reported = 0;
      drain = await prepared.start((count) => (completed = count));
      progressTimer = setInterval(() => {
        if (completed === reported) return;
        reported = completed;
        send({ type: "progress", completed });
      }, PROGRESS_MS);
      return;
    }
    case "stop": {
      if (drain === undefined || prepared === undefined) throw new Error("stop before go");
      const { lastCompletionAt, completed } = await drain.finish();
      clearInterval(progressTimer);
      const durability = await prepared.synchronousCommit();
      await prepared.close();
      send({
        type: "drained",
        firstClaimAt: drain.firstClaimAt,
        lastCompletionAt,
        completed,
        synchronousCommit: durability,
      });
      drain = undefined;
      prepared = undefined;
      return;
    }
    case "check":
      return send({ type: "checked", problems: await check() });
    case "consume":
      await latencyEngine(command.schema, "consume");
      return send({ type: "done" });
    case "produce":
      producer = await latencyEngine(command.schema, "produce");
      return send({ type: "done" });
    case "enqueue": {
      if (producer === undefined) throw new Error("enqueue before produce");
      const at = wallClock();
      await producer.enqueue("latency", { n: command.n });
      return send({ type: "enqueued", n: command.n, at });
    }
    case "exit":
      await closeAll();
      process.exit(0);
  }
}

async function closeAll(): Promise<void> {
  clearInterval(progressTimer);
  if (drain !== undefined) await drain.finish().catch(() => {});
  await prepared?.close().catch(() => {});
  for (const close of openResources) await close();
  openResources.clear();
}

// Commands run one after another; the first failure is reported and ends the process.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  if (line.trim() === "") return;
  queue = queue.then(() => handle(JSON.parse(line) as Command)).catch(fail);
});
// The coordinator is gone (or closed our stdin): nothing would ever stop this process.
lines.on("close", () => process.exit(1));
