// The messages between the PostgreSQL benchmark's coordinator (bench_pg.ts, in the orchestrator)
// and its worker processes (bench_pg_worker.ts, in the runtime measured): one JSON object per line,
// commands on the worker's stdin, replies and reports on its stdout.

/** What a timed pass drains: the engine, or the raw claim loop in one of its two commit modes. */
export type PassKind = "engine" | "raw-per-job" | "raw-per-batch";
export const PASS_KINDS: readonly PassKind[] = ["engine", "raw-per-job", "raw-per-batch"];

/** The engine's concurrency in every worker process, and the raw loop's claim batch. */
export const CONCURRENCY = 25;

/** A coordinator's command. */
export type Command =
  /** Creates the tables in `schema` and queues `runs` runs (or raw jobs) of `steps` steps. */
  | {
    readonly cmd: "fill";
    readonly kind: PassKind;
    readonly schema: string;
    readonly runs: number;
    readonly steps: number;
  }
  /** Connects to `schema` and gets ready to drain it, without claiming yet. */
  | { readonly cmd: "open"; readonly kind: PassKind; readonly schema: string }
  /** Starts draining; progress is reported until `stop`. */
  | { readonly cmd: "go" }
  /** Stops draining (every run is done), reports the drain's times and disconnects. */
  | { readonly cmd: "stop" }
  /** Checks that every run of the last fill finished with the right output. */
  | { readonly cmd: "check" }
  /** Latency consumer: a started engine on `schema` at the default poll interval. */
  | { readonly cmd: "consume"; readonly schema: string }
  /** Latency producer: an engine on `schema` that only enqueues. */
  | { readonly cmd: "produce"; readonly schema: string }
  /** Latency producer: enqueue run `n` now. */
  | { readonly cmd: "enqueue"; readonly n: number }
  /** Closes everything and exits. */
  | { readonly cmd: "exit" };

/** A worker's message. Times are `performance.timeOrigin + performance.now()`, one clock for all processes. */
export type Reply =
  | { readonly type: "done" }
  | { readonly type: "progress"; readonly completed: number }
  | {
    readonly type: "drained";
    readonly firstClaimAt: number;
    readonly lastCompletionAt: number;
    readonly completed: number;
    /** The drain's sessions' setting, checked to be "on" for every kind. */
    readonly synchronousCommit: string;
  }
  | { readonly type: "checked"; readonly problems: readonly string[] }
  | { readonly type: "enqueued"; readonly n: number; readonly at: number }
  | { readonly type: "started"; readonly n: number; readonly at: number }
  | { readonly type: "completed"; readonly n: number }
  | { readonly type: "error"; readonly message: string };

/** The wall clock every benchmark process reads, comparable between processes on one machine. */
export const wallClock = (): number => performance.timeOrigin + performance.now();

/** `url` with `schema` as the search path of every connection made with it. */
export function schemaUrl(url: string, schema: string): string {
  const withSchema = new URL(url);
  withSchema.searchParams.set("options", `-c search_path=${schema}`);
  return withSchema.toString();
}
