// A producer process of scripts/chaos.ts: enqueues the plan's runs on the shared database (a SQLite
// file or PostgreSQL) at a steady pace, each under its idempotency key (every producer enqueues every key, so each key is
// enqueued concurrently by several processes), and, for the runs it owns, sends their event or
// cancels them. It writes what it saw (run ids, created flags, cancel results) to a JSON file. A call
// that fails transiently (a lost connection, a restarting server) is retried, as a client would.
//
//   chaos_producer.ts '<json ProducerConfig>'
//
// The plan lives here so that the controller computes the same expectations from a run's index.
import { writeFileSync } from "node:fs";
import process from "node:process";
import { createEngine } from "../mod.ts";
import {
  CRASHLOOP_ATTEMPTS,
  FLAKY_DOOMED,
  openStorage,
  type ProcessWorkflowName,
  processWorkflows,
  retried,
} from "../tests/support/process_worker.ts";

/** What the controller tells a producer. */
export interface ProducerConfig {
  /** This producer's index, from 0; it owns the runs whose index modulo `producers` equals it. */
  readonly index: number;
  /** How many producers there are. */
  readonly producers: number;
  /** The runs of the plan, indexes 0 to runs - 1. */
  readonly runs: number;
  /** Over how long to spread the enqueues, in ms. */
  readonly durationMs: number;
  /** The database file, or (PostgreSQL) a connection string. */
  readonly db: string;
  /** A subject name of tests/support/sqlite_subjects.ts, or "postgres". */
  readonly driver: string;
  /** Where to write the {@linkcode ProducerReport}. */
  readonly out: string;
  /** Seeds the delays of this producer's cancellations. */
  readonly seed: number;
}

/** What a producer saw. */
export interface ProducerReport {
  /** The run id each enqueue returned, by plan index. */
  readonly runIds: string[];
  /**
   * Whether each enqueue created the run; null when it was retried after a failure whose commit may
   * have gone through (it then found the run it had created itself).
   */
  readonly created: (boolean | null)[];
  /** For the runs this producer cancelled: what `cancel()` returned, by plan index. */
  readonly cancelled: Record<number, boolean>;
}

/**
 * How one planned run should end:
 * - `completed` with `output`;
 * - `failed` with an error of `message` (or, given, of `code`) in step `stepName`;
 * - `cancelled`, for a run cancelled while it waits for an event that never comes;
 * - `raced`, for a run cancelled within a few ms of its enqueue: cancelled if `cancel()` returned true,
 *   otherwise completed with `output`.
 */
export type Outcome =
  | { readonly kind: "completed" | "raced"; readonly output: unknown }
  | { readonly kind: "failed"; readonly message?: string; readonly code?: string; readonly stepName: string }
  | { readonly kind: "cancelled" };

/** One run of the plan. */
export interface PlannedRun {
  readonly workflow: ProcessWorkflowName;
  readonly input: { readonly n: number };
  /** The `approve` event the owning producer sends right after the enqueue, if any. */
  readonly event?: { readonly by: string };
  /**
   * Whether the owner cancels the run within a few ms of its enqueue (`"soon"`: before, during or
   * after its execution) or a little later (`"later"`, once it waits).
   */
  readonly cancel?: "soon" | "later";
  readonly outcome: Outcome;
  /**
   * The side effects (ledger `what`s) of a run that ends as planned, each expected once; a
   * cancelled run records a subset of them.
   */
  readonly sideEffects: readonly string[];
  /** The units of a completed run with their attempts, in order. */
  readonly units: readonly (readonly [name: string, attempts: number])[];
}

/** The plan index modulo 100 of crash-looping runs. */
const CRASHLOOP_EVERY = 11;

/** Whether plan index `i` is a crash-looping run. */
export const isCrashLoop = (i: number): boolean => i % 100 === CRASHLOOP_EVERY;

/** The idempotency key of plan index `i`. */
export const keyOf = (i: number): string => `chaos-${i}`;

/**
 * The mixed workload, deterministic in the index: sequential steps, a retried step, a run that
 * fails for good, a parallel group, a sleep, an event wait, two kinds of cancellation, and (one
 * run in a hundred) a crash loop: a step that kills its worker at every attempt.
 */
export function planRun(i: number): PlannedRun {
  const n = i;
  if (isCrashLoop(i)) {
    const attempts = Array.from({ length: CRASHLOOP_ATTEMPTS }, (_, k) => `doomed#${k + 1}`);
    return {
      workflow: "crashloop",
      input: { n },
      outcome: { kind: "failed", code: "WORKER_LOST", stepName: "doomed" },
      sideEffects: [...attempts, "compensated"],
      units: [["doomed", CRASHLOOP_ATTEMPTS]],
    };
  }
  const drain = {
    workflow: "drain",
    input: { n },
    outcome: { kind: "completed", output: { n, result: (n + 1) * 2 } },
    sideEffects: ["a", "b", "c"],
    units: [["a", 1], ["b", 1], ["c", 1]],
  } as const;
  switch (i % 10) {
    case 3:
      return {
        workflow: "flaky",
        input: { n },
        outcome: { kind: "completed", output: { result: (n + 1) * 3 } },
        sideEffects: ["step1", "charge#1", "charge#2", "step3"],
        units: [["step1", 1], ["charge", 2], ["step3", 1]],
      };
    case 4:
      return {
        workflow: "flaky",
        input: { n: -n },
        outcome: { kind: "failed", message: FLAKY_DOOMED, stepName: "charge" },
        sideEffects: ["step1", "charge#1", "charge#2", "charge#3"],
        units: [["step1", 1], ["charge", 3]],
      };
    case 5:
      return {
        workflow: "fanout",
        input: { n },
        outcome: { kind: "completed", output: [n + 2, n + 3, n + 4] },
        sideEffects: [
          "step1",
          "fast",
          "slow started",
          "slow completed",
          "slower started",
          "slower completed",
          "join",
        ],
        units: [["step1", 1], ["fast", 1], ["slow", 1], ["slower", 1], ["join", 1]],
      };
    case 6:
      return {
        workflow: "sleeper",
        input: { n },
        outcome: { kind: "completed", output: { result: (n + 1) * 10 } },
        sideEffects: ["step1", "step2"],
        units: [["step1", 1], ["nap", 1], ["step2", 1]],
      };
    case 7:
      return {
        workflow: "approval",
        input: { n },
        event: { by: `p${n}` },
        outcome: { kind: "completed", output: { by: `p${n}`, result: (n + 1) * 10 } },
        sideEffects: ["step1", "step2"],
        units: [["step1", 1], ["approve", 1], ["step2", 1]],
      };
    case 8:
      // Its event is never sent, so only the cancellation ends it.
      return {
        workflow: "approval",
        input: { n },
        cancel: "later",
        outcome: { kind: "cancelled" },
        sideEffects: ["step1"],
        units: [],
      };
    case 9:
      return { ...drain, cancel: "soon", outcome: { ...drain.outcome, kind: "raced" } };
    default:
      return drain;
  }
}

/** A small seeded generator (mulberry32), so a chaos run's choices can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(config: ProducerConfig): Promise<void> {
  const storage = await openStorage(config.driver, config.db);
  const engine = createEngine({ storage, workflows: Object.values(processWorkflows()) });
  const random = seededRandom(config.seed);
  const report: ProducerReport = { runIds: [], created: [], cancelled: {} };
  const later: Promise<void>[] = [];
  const start = Date.now();
  try {
    for (let i = 0; i < config.runs; i++) {
      const lag = start + (i * config.durationMs) / config.runs - Date.now();
      if (lag > 0) await sleep(lag);
      const plan = planRun(i);
      const enqueued = await retried(() =>
        engine.enqueue(plan.workflow, plan.input, { idempotencyKey: keyOf(i) })
      );
      const { runId, created } = enqueued.value;
      report.runIds[i] = runId;
      report.created[i] = enqueued.retried && !created ? null : created;
      if (i % config.producers !== config.index) continue;
      // A retried event may be delivered twice; the run consumes one, with the same payload.
      const event = plan.event;
      if (event !== undefined) await retried(() => engine.sendEvent(runId, "approve", event));
      if (plan.cancel !== undefined) {
        const delayMs = plan.cancel === "soon" ? random() * 40 : 50 + random() * 450;
        later.push(
          sleep(delayMs).then(async () => {
            const cancel = await retried(() => engine.cancel(runId));
            // A retry finds the run cancelled already if the failed try committed.
            report.cancelled[i] = cancel.value ||
              (cancel.retried &&
                (await retried(() => engine.getRunStatus(runId))).value?.run.status === "cancelled");
          }),
        );
      }
    }
    await Promise.all(later);
  } finally {
    await engine.stop();
    await storage.close();
  }
  writeFileSync(config.out, JSON.stringify(report));
  process.stdout.write("done\n");
}

if (import.meta.main) await main(JSON.parse(process.argv[2] ?? "") as ProducerConfig);
