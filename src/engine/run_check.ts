/**
 * `engine.checkRuns()`: before a deploy, which runs in flight the registered definitions will
 * continue and which they will park, read from storage in pages.
 *
 * @module
 */

import { ConfigError, type VersionMismatchError } from "../errors.ts";
import type { RunStatus, StorageAdapter, WorkflowRun } from "../storage/adapter.ts";
import { isFinishedStatus, RUN_STATUSES } from "../storage/statuses.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { VersionRegistry } from "./versions.ts";

/** Options of `engine.checkRuns()`. */
export interface CheckRunsOptions {
  /** Runs read per storage call: an integer from 1 to 10,000. Default 1000. */
  readonly pageSize?: number;
  /** At most this many blocked runs listed per workflow and version (all are counted). Default 100. */
  readonly maxListed?: number;
}

const CHECK_RUNS_OPTION_KEYS: OptionKeys<CheckRunsOptions> = { pageSize: true, maxListed: true };

/** The runs in flight of one workflow version, as `engine.checkRuns()` reports them. */
export interface VersionCheck {
  /** The workflow's name. */
  readonly workflow: string;
  /** The version the runs stored (null: none recorded, treated as the newest registered one). */
  readonly version: string | null;
  /** Whether this engine registers that very version. */
  readonly registered: boolean;
  /** Unfinished runs (pending, running, sleeping, waiting, parked). */
  readonly inFlight: number;
  /** How many of them the registered definitions continue (under their own version or a compatible one). */
  readonly continuing: number;
  /** How many they cannot continue: these are (or will be) parked. */
  readonly blocked: number;
  /** The blocked runs, each with the reason, up to `maxListed`. */
  readonly blockedRuns: readonly VersionMismatchError[];
}

/** What `engine.checkRuns()` returns. */
export interface RunCheckReport {
  /** One entry per workflow and version with runs in flight, by workflow name, then version. */
  readonly versions: readonly VersionCheck[];
  /** Unfinished runs in all. */
  readonly inFlight: number;
  /** How many of them the registered definitions continue. */
  readonly continuing: number;
  /** How many they cannot. */
  readonly blocked: number;
}

const UNFINISHED: readonly RunStatus[] = RUN_STATUSES.filter((status) => !isFinishedStatus(status));

interface Tally {
  readonly workflow: string;
  readonly version: string | null;
  readonly registered: boolean;
  /** Whether every run continues wherever it is, so its steps need not be read. */
  readonly anywhere: boolean;
  inFlight: number;
  continuing: number;
  blocked: number;
  readonly blockedRuns: VersionMismatchError[];
}

/**
 * Checks every unfinished run against the registered definitions. Reads the unfinished runs in
 * pages off the status index (`listRuns`), and the step results only of started runs of
 * versions whose compatibility depends on where the run is.
 *
 * @param storage The engine's storage.
 * @param versions The engine's registered versions (shapes already read from storage).
 * @param options Page size and how many blocked runs to list.
 * @returns The report.
 * @throws {ConfigError} On an invalid option.
 */
export async function checkRuns(
  storage: StorageAdapter,
  versions: VersionRegistry,
  options?: CheckRunsOptions,
): Promise<RunCheckReport> {
  const checked = checkOptionKeys(options, CHECK_RUNS_OPTION_KEYS, undefined, "checkRuns options") ?? {};
  const pageSize = integerOption(checked.pageSize ?? 1000, "pageSize", 1, 10_000);
  const maxListed = integerOption(checked.maxListed ?? 100, "maxListed", 0, Number.MAX_SAFE_INTEGER);
  await versions.refresh();
  const tallies = new Map<string, Tally>();
  let cursor: { before: number; beforeId: string } | undefined;
  for (;;) {
    const page = await storage.listRuns({ statuses: UNFINISHED, limit: pageSize, ...cursor });
    for (const run of page) await tallyRun(storage, versions, tallies, run, maxListed);
    if (page.length < pageSize) break;
    const last = page[page.length - 1]!;
    cursor = { before: last.createdAt, beforeId: last.id };
  }
  const list = [...tallies.values()].sort((a, b) =>
    compare(a.workflow, b.workflow) || compare(a.version ?? "", b.version ?? "")
  );
  const sum = (field: "inFlight" | "continuing" | "blocked") =>
    list.reduce((total, tally) => total + tally[field], 0);
  return {
    versions: list.map(({ anywhere: _, ...tally }) => tally),
    inFlight: sum("inFlight"),
    continuing: sum("continuing"),
    blocked: sum("blocked"),
  };
}

async function tallyRun(
  storage: StorageAdapter,
  versions: VersionRegistry,
  tallies: Map<string, Tally>,
  run: WorkflowRun,
  maxListed: number,
): Promise<void> {
  const key = JSON.stringify([run.workflowName, run.workflowVersion]);
  let tally = tallies.get(key);
  if (tally === undefined) {
    const registered = run.workflowVersion !== null && versions.exact(run) !== undefined;
    tally = {
      workflow: run.workflowName,
      version: run.workflowVersion,
      registered,
      anywhere: versions.continuesAnywhere(run.workflowName, run.workflowVersion),
      inFlight: 0,
      continuing: 0,
      blocked: 0,
      blockedRuns: [],
    };
    tallies.set(key, tally);
  }
  tally.inFlight++;
  const stepNames = tally.anywhere || run.claimCount === 0
    ? []
    : (await storage.getStepResults(run.id)).map((step) => step.stepName);
  const decision = tally.anywhere ? undefined : versions.decide(run, stepNames);
  if (decision === undefined || decision.kind === "run") {
    tally.continuing++;
    return;
  }
  tally.blocked++;
  if (tally.blockedRuns.length < maxListed) tally.blockedRuns.push(decision.error);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function integerOption(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `Invalid ${field} ${String(value)}: expected an integer from ${min} to ${max}`,
      { field },
    );
  }
  return value;
}
