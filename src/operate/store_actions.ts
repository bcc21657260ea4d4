/**
 * What an operator does to runs, straight on a {@linkcode StorageAdapter}, without the workflows'
 * code: the CLI and the dashboard share these, so both list, show, cancel and resume alike.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { RunCounts, StorageAdapter } from "../storage/adapter.ts";
import { decodeRecurrence } from "../schedule/recurrence.ts";
import { type ScheduleInfo, toScheduleInfo } from "../engine/scheduler.ts";
import { listRunPage, type ListRunsOptions, type RunCursor, toRunQuery } from "../engine/run_listing.ts";
import { type RunDetails, type RunInfo, toRunInfo, toStepInfo } from "../engine/run_info.ts";
import { decodeValue } from "../storage/codec.ts";
import { isFinishedStatus } from "../storage/statuses.ts";

/** Counts per status stop here, so that a million runs cost what ten thousand do. */
export const COUNT_CAP = 10_000;

/** What an action did: done, no such run, or refused because of the run's status. */
export type ActionOutcome =
  | { readonly outcome: "done" }
  | { readonly outcome: "notFound" }
  | { readonly outcome: "refused"; readonly status: string };

/** One page of runs and the cursor of the next (null on the last page). */
export interface RunListing {
  /** The runs, newest first. */
  readonly runs: readonly RunInfo[];
  /** Where the next page starts. */
  readonly next: RunCursor | null;
}

/** Reads one page of runs, newest first; throws {@linkcode ConfigError} on a bad filter or cursor. */
export async function readRunPage(storage: StorageAdapter, options: ListRunsOptions): Promise<RunListing> {
  const page = await listRunPage(storage, toRunQuery(options));
  return { runs: [...page], next: page.next };
}

/** Reads the capped counts per status. */
export function readRunCounts(storage: StorageAdapter): Promise<RunCounts> {
  return storage.countRuns(COUNT_CAP);
}

/** An event stored for a run that no wait has received yet, decoded. */
export interface PendingEvent {
  /** The event's name: the wait unit that will receive it. */
  readonly name: string;
  /** Its payload. */
  readonly payload: unknown;
  /** When it was sent, ms since the epoch. */
  readonly createdAt: number;
}

/** A run as an operator sees it: its units' results and the events waiting for a wait. */
export interface OperatedRun extends RunDetails {
  /** Events sent but not yet received, in delivery order (a received one is its wait unit's output). */
  readonly pendingEvents: readonly PendingEvent[];
}

/** Reads a run with its units' results and pending events, decoded; null when there is no such run. */
export async function readRun(storage: StorageAdapter, runId: string): Promise<OperatedRun | null> {
  const run = await storage.getRun(runId);
  if (run === null) return null;
  const steps = run.claimCount === 0 ? [] : await storage.getStepResults(runId);
  // A finished run's events are never received, and the contract reports none.
  const events = isFinishedStatus(run.status) ? [] : await storage.listEvents(runId);
  return {
    run: toRunInfo(run),
    steps: steps.map(toStepInfo),
    pendingEvents: events.map((event) => ({ ...event, payload: decodeValue(event.payload) })),
  };
}

/**
 * Cancels an unfinished run. The engine holding it notices at its next heartbeat (its writes are
 * fenced by the lease), so the step in flight may still finish, but its result is not committed.
 */
export async function cancelStoredRun(storage: StorageAdapter, runId: string): Promise<ActionOutcome> {
  if (await storage.updateRunStatus(runId, "cancelled")) return { outcome: "done" };
  return await refusal(storage, runId);
}

/** Re-queues a failed, cancelled or parked run; an engine that has its workflow runs it. */
export async function resumeStoredRun(
  storage: StorageAdapter,
  runId: string,
  now: number,
): Promise<ActionOutcome> {
  if (await storage.requeueRun(runId, now)) return { outcome: "done" };
  return await refusal(storage, runId);
}

async function refusal(storage: StorageAdapter, runId: string): Promise<ActionOutcome> {
  const run = await storage.getRun(runId);
  return run === null ? { outcome: "notFound" } : { outcome: "refused", status: run.status };
}

/** Reads every schedule, decoded as `engine.listSchedules()` reports them. */
export async function readSchedules(storage: StorageAdapter): Promise<ScheduleInfo[]> {
  const records = await storage.listSchedules();
  return records.map((record) => toScheduleInfo(record, decodeRecurrence(record.recurrence)));
}

/** A cursor as one word, `<createdAt>:<id>`, for a command line or a URL. */
export function formatCursor(cursor: RunCursor): string {
  return `${cursor.before}:${cursor.beforeId}`;
}

/**
 * Reads a cursor written by {@linkcode formatCursor}.
 *
 * @throws {ConfigError} With field `before` when it is not one.
 */
export function parseCursor(text: string): RunCursor {
  const colon = text.indexOf(":");
  const before = Number(text.slice(0, colon));
  if (colon < 1 || !Number.isSafeInteger(before) || colon === text.length - 1) {
    throw new ConfigError(
      `Invalid cursor ${JSON.stringify(text)}: expected <createdAt>:<id>, as the last page printed`,
      { field: "before" },
    );
  }
  return { before, beforeId: text.slice(colon + 1) };
}
