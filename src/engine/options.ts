import { ConfigError, DuplicateWorkflowError } from "../errors.ts";
import type { StorageAdapter } from "../storage/adapter.ts";
import { INSTANCE_ID } from "../storage/checks.ts";
import type { AnyWorkflow } from "../workflow/workflow.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import { type EngineHooks, HOOK_KEYS } from "./events.ts";
import { resolveRetention, type RetentionOptions, type RetentionPlan } from "./retention.ts";

/** Options of `createEngine`. */
export interface EngineOptions<W extends AnyWorkflow = AnyWorkflow> {
  /** Where runs are stored: `SQLiteStorage` from a driver subpath, or `MemoryStorage`. */
  readonly storage: StorageAdapter;
  /**
   * The workflows this engine can enqueue and run. Several versions of one name may be listed
   * (each name and version once): the last one listed is the newest, which `enqueue` and
   * schedules start unless told otherwise.
   */
  readonly workflows: readonly W[];
  /** Runs in flight at once. Default 10. */
  readonly concurrency?: number;
  /** How long a claim lasts without a heartbeat before any engine may reclaim the run, in ms. Default 30,000. */
  readonly runLeaseDurationMs?: number;
  /** How often leases of runs in flight are renewed, in ms; below the lease duration. Default a third of it. */
  readonly heartbeatIntervalMs?: number;
  /** How long `stop()` lets in-flight steps finish before it aborts them, in ms. Default 10,000. */
  readonly stopTimeoutMs?: number;
  /**
   * How many times in a row a run may be reclaimed from a lost worker (its lease expired) with
   * nothing committed in between before it fails with a `RecoveryLimitError`. Lost attempts of
   * steps count against their own retry policy first. Default 10.
   */
  readonly maxRecoveries?: number;
  /**
   * This engine's deployment slot, e.g. `"web-1"` or a pod name of a StatefulSet: the same after
   * a restart, and never used by two live processes at once (1 to 128 letters, digits, `.`, `_`
   * or `-`). A restarted engine with the same id takes back at start the runs its previous
   * incarnation held, without waiting for their leases. Default: none (such runs wait for their
   * leases to expire, and `start()` reports them once to `onError`).
   */
  readonly instanceId?: string;
  /** Callbacks on run events and background errors. */
  readonly hooks?: EngineHooks;
  /**
   * The clock, in ms since the epoch. Injectable for tests. Default: the storage's `currentTime()`
   * where it has one (a database shared by several hosts: the server's clock), else `Date.now`.
   */
  readonly now?: () => number;
  /** A uniform random source in [0, 1) for retry jitter. Default `Math.random`. */
  readonly random?: () => number;
  /**
   * Purge finished runs (with their steps and events) older than `olderThan` while started, e.g.
   * `{ olderThan: "30d" }`. Default: keep every run.
   */
  readonly retention?: RetentionOptions;
}

/** The keys of {@linkcode EngineOptions}; every other key is refused. */
const ENGINE_OPTION_KEYS: OptionKeys<EngineOptions> = {
  storage: true,
  workflows: true,
  concurrency: true,
  runLeaseDurationMs: true,
  heartbeatIntervalMs: true,
  stopTimeoutMs: true,
  maxRecoveries: true,
  instanceId: true,
  hooks: true,
  now: true,
  random: true,
  retention: true,
};

/** Engine options with defaults applied and every value checked. */
export interface ResolvedEngineOptions {
  readonly storage: StorageAdapter;
  /** The newest registered definition of each name. */
  readonly workflows: ReadonlyMap<string, AnyWorkflow>;
  /** Every registered definition by name, then version, in registration order. */
  readonly versions: ReadonlyMap<string, ReadonlyMap<string, AnyWorkflow>>;
  readonly workflowNames: readonly string[];
  readonly concurrency: number;
  readonly leaseDurationMs: number;
  readonly heartbeatIntervalMs: number;
  readonly stopTimeoutMs: number;
  readonly maxRecoveries: number;
  readonly instanceId: string | undefined;
  readonly hooks: EngineHooks;
  readonly now: () => number;
  readonly random: () => number;
  readonly retention: RetentionPlan | undefined;
}

/** Checks every engine option, so a typo fails at construction rather than in production traffic. */
export function resolveEngineOptions(options: EngineOptions): ResolvedEngineOptions {
  if (options === undefined) {
    throw new ConfigError("Invalid engine options: expected an object with storage and workflows", {
      field: "options",
    });
  }
  checkOptionKeys(options, ENGINE_OPTION_KEYS, undefined, "engine options");
  const { storage } = options;
  for (const method of ["initialize", "createRun", "claimRuns", "advanceRun", "getRun"] as const) {
    if (typeof storage?.[method] !== "function") {
      throw new ConfigError(`Invalid storage: expected a StorageAdapter with a ${method}() method`, {
        field: "storage",
      });
    }
  }
  if (!Array.isArray(options.workflows)) {
    throw new ConfigError("Invalid workflows: expected an array of workflows", { field: "workflows" });
  }
  const workflows = new Map<string, AnyWorkflow>();
  const versions = new Map<string, Map<string, AnyWorkflow>>();
  for (const workflow of options.workflows) {
    if (
      typeof workflow?.name !== "string" || typeof workflow.version !== "string" ||
      !Array.isArray(workflow.units)
    ) {
      throw new ConfigError("Invalid workflows: every entry must be made by createWorkflow()", {
        field: "workflows",
      });
    }
    let ofName = versions.get(workflow.name);
    if (ofName === undefined) versions.set(workflow.name, ofName = new Map());
    if (ofName.has(workflow.version)) throw new DuplicateWorkflowError(workflow.name, workflow.version);
    ofName.set(workflow.version, workflow);
    workflows.set(workflow.name, workflow);
  }
  const concurrency = positiveInteger(options.concurrency ?? 10, "concurrency");
  const leaseDurationMs = positiveInteger(options.runLeaseDurationMs ?? 30_000, "runLeaseDurationMs");
  const heartbeatIntervalMs = positiveInteger(
    options.heartbeatIntervalMs ?? Math.max(1, Math.floor(leaseDurationMs / 3)),
    "heartbeatIntervalMs",
  );
  if (heartbeatIntervalMs >= leaseDurationMs) {
    throw new ConfigError(
      `Invalid heartbeatIntervalMs ${heartbeatIntervalMs}: it must be below runLeaseDurationMs ${leaseDurationMs}, ` +
        "or leases expire between heartbeats",
      { field: "heartbeatIntervalMs" },
    );
  }
  const stopTimeoutMs = nonNegativeInteger(options.stopTimeoutMs ?? 10_000, "stopTimeoutMs");
  const hooks = checkOptionKeys(options.hooks, HOOK_KEYS, "hooks", "hooks") ?? {};
  for (const [name, hook] of Object.entries(hooks)) {
    if (typeof hook !== "function") {
      throw new ConfigError(`Invalid hook ${name}: expected a function`, { field: `hooks.${name}` });
    }
  }
  return {
    storage,
    workflows,
    versions,
    workflowNames: [...workflows.keys()],
    concurrency,
    leaseDurationMs,
    heartbeatIntervalMs,
    stopTimeoutMs,
    maxRecoveries: nonNegativeInteger(options.maxRecoveries ?? 10, "maxRecoveries"),
    instanceId: instanceIdOption(options.instanceId),
    hooks,
    now: checkedClock(functionOption(options.now, storageClock(storage) ?? Date.now, "now")),
    random: functionOption(options.random, Math.random, "random"),
    retention: resolveRetention(options.retention),
  };
}

/** The clock of a storage shared by several hosts (the database server's), where it has one. */
function storageClock(storage: StorageAdapter): (() => number) | undefined {
  return typeof storage.currentTime === "function" ? () => storage.currentTime!() : undefined;
}

function positiveInteger(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError(`Invalid ${field} ${String(value)}: expected a positive integer`, { field });
  }
  return value;
}

function nonNegativeInteger(value: unknown, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ConfigError(`Invalid ${field} ${String(value)}: expected an integer of 0 or more`, { field });
  }
  return value;
}

function instanceIdOption(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !INSTANCE_ID.test(value)) {
    throw new ConfigError(
      `Invalid instanceId ${
        JSON.stringify(value) ?? String(value)
      }: expected 1 to 128 letters, digits, ".", "_" or "-"`,
      { field: "instanceId" },
    );
  }
  return value;
}

/** The clock, failing with a ConfigError on a reading that is not a finite number (which would make every wait 0 or forever). */
function checkedClock(clock: () => number): () => number {
  return () => {
    const time = clock();
    if (typeof time !== "number" || !Number.isFinite(time)) {
      throw new ConfigError(`Invalid now() reading ${String(time)}: expected a finite number of ms`, {
        field: "now",
      });
    }
    return time;
  };
}

function functionOption<F>(value: F | undefined, fallback: F, field: string): F {
  if (value === undefined) return fallback;
  if (typeof value !== "function") {
    throw new ConfigError(`Invalid ${field}: expected a function`, { field });
  }
  return value;
}
