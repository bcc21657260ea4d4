/**
 * `engine.listRuns()`: filters and a keyset cursor checked up front, and pages (arrays, as
 * reflow-ts returns them) that carry the cursor of the next one.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import { checkName } from "../names.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { RunQuery, RunStatus, StorageAdapter } from "../storage/adapter.ts";
import { isRunStatus, RUN_STATUSES } from "../storage/statuses.ts";
import { type RunInfo, toRunInfo } from "./run_info.ts";

/** The largest page `listRuns` returns; bigger pages hold a read transaction open for long. */
export const MAX_PAGE_SIZE = 1000;
// reflow-ts code relies on 100 when it passes no limit.
const DEFAULT_PAGE_SIZE = 100;

/** Filters and cursor of `engine.listRuns()`. */
export interface ListRunsOptions {
  /** Only runs in this status, or in one of these. Default: any. */
  readonly status?: RunStatus | readonly RunStatus[];
  /** Only runs of this workflow. Default: any. */
  readonly workflow?: string;
  /** Runs per page, 1 to 1000. Default 100. */
  readonly limit?: number;
  /** Cursor: only runs created before this time (ms since the epoch), or at it with an id below `beforeId`. */
  readonly before?: number;
  /** Cursor, with `before`: the id of the last run of the previous page. */
  readonly beforeId?: string;
}

const LIST_RUNS_OPTION_KEYS: OptionKeys<ListRunsOptions> = {
  status: true,
  workflow: true,
  limit: true,
  before: true,
  beforeId: true,
};

/** Where the next page starts: pass it back as `listRuns({ ...filters, ...runs.next })`. */
export interface RunCursor {
  /** The `createdAt` of the last run of the page. */
  readonly before: number;
  /** The id of the last run of the page. */
  readonly beforeId: string;
}

/**
 * One page of `engine.listRuns()`: an array of runs, newest first (ties on `createdAt` by id,
 * descending), that also carries the cursor of the next page as `next` (null when no run is left).
 * `next` is not enumerable, so spreading, `JSON.stringify` and deep equality see a plain array.
 */
export type RunPage = RunInfo[] & { readonly next: RunCursor | null };

/** Checks the options and turns them into a storage query that reads one run more than the page. */
export function toRunQuery(options: ListRunsOptions | undefined): RunQuery {
  const { status, workflow, limit = DEFAULT_PAGE_SIZE, before, beforeId } =
    checkOptionKeys(options, LIST_RUNS_OPTION_KEYS, undefined, "listRuns options") ?? {};
  const statuses = status === undefined ? undefined : typeof status === "string" ? [status] : status;
  if (statuses !== undefined && (!Array.isArray(statuses) || !statuses.every(isRunStatus))) {
    invalid("status", status, `one of ${RUN_STATUSES.join(", ")}, or an array of them`);
  }
  if (workflow !== undefined) checkName(workflow, "workflow", " in listRuns");
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
    invalid("limit", limit, `an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  if (before !== undefined && (typeof before !== "number" || !Number.isFinite(before))) {
    invalid("before", before, "a time in ms since the epoch");
  }
  if (beforeId !== undefined && (typeof beforeId !== "string" || before === undefined)) {
    invalid("beforeId", beforeId, "a run id, together with before");
  }
  return { statuses, workflowName: workflow, limit: limit + 1, before, beforeId };
}

/** Reads one page; the extra run the query asked for only tells whether a next page exists. */
export async function listRunPage(storage: StorageAdapter, query: RunQuery): Promise<RunPage> {
  const rows = await storage.listRuns(query);
  const page = rows.slice(0, query.limit - 1);
  const last = page.at(-1);
  const next = rows.length > page.length && last !== undefined
    ? { before: last.createdAt, beforeId: last.id }
    : null;
  return Object.defineProperty(page.map(toRunInfo), "next", { value: next }) as RunPage;
}

function invalid(field: string, value: unknown, expected: string): never {
  const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  throw new ConfigError(`Invalid listRuns ${field} ${shown}: expected ${expected}`, { field });
}
