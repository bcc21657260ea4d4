/**
 * The `reflow` command line over a {@linkcode StorageAdapter}, runtime-free: the runtime's entry
 * (`cli.ts`) gives it the arguments, a way to open the store and to serve HTTP, and exits with
 * the status it returns.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";
import type { RunStatus, StorageAdapter } from "../storage/adapter.ts";
import { type CliCommand, parseArgs, type StoreLocation } from "./args.ts";
import { HELP } from "./help.ts";
import {
  type ActionOutcome,
  cancelStoredRun,
  formatCursor,
  parseCursor,
  readRun,
  readRunPage,
  readSchedules,
  resumeStoredRun,
} from "../operate/store_actions.ts";
import {
  formatDuration,
  formatError,
  formatRelative,
  formatTime,
  formatValue,
  truncate,
} from "../operate/format.ts";
import { formatTable, printable } from "./table.ts";
import { purgeFinishedRuns, resolvePurge } from "../engine/retention.ts";
import type { Duration } from "../workflow/duration.ts";
import type { FinishedRunStatus } from "../storage/adapter.ts";
import { createDashboard } from "../dashboard/dashboard.ts";
import { requireToken } from "../dashboard/token.ts";
import { randomHex } from "../dashboard/secret.ts";

/** A request handler, as `Deno.serve`, `Bun.serve` and the `node:http` adapter take it. */
export type FetchHandler = (request: Request) => Promise<Response>;

/** What the CLI needs from the runtime it runs on. */
export interface CliHost {
  /** Writes to standard output. */
  stdout(text: string): void;
  /** Writes to standard error. */
  stderr(text: string): void;
  /** Whether standard error is a terminal (progress is shown only there). */
  readonly isTerminal: boolean;
  /** Opens the SQLite store at `path`, or returns null when there is no such file. */
  openSqlite(path: string): StorageAdapter | null;
  /**
   * Opens the PostgreSQL store at `url` (its schema is the URL's `search_path`), without
   * migrating anything: a command on a database that Reflow never initialised fails (exit 1).
   */
  openPostgres(url: string): Promise<StorageAdapter>;
  /** Serves `handler` until the process ends; resolves with the URL once listening. */
  serve(
    handler: FetchHandler,
    options: { readonly hostname: string; readonly port: number },
  ): Promise<string>;
  /** The current time. */
  now(): number;
}

/** What a command ended with. */
type Exit = 0 | 1 | 2;

/**
 * Runs one `reflow` command line.
 *
 * @param argv The arguments after `reflow`.
 * @param host The runtime.
 * @returns The exit status: 0 done, 1 not found, refused or failed, 2 usage error. `dashboard`
 *   resolves once it serves, and its server keeps the process alive (its store stays open).
 */
export async function runCli(argv: readonly string[], host: CliHost): Promise<Exit> {
  let storage: StorageAdapter | undefined;
  try {
    const { command, store, json } = parseArgs(argv);
    if (command.name === "help" || store === undefined) {
      host.stdout(HELP);
      return 0;
    }
    storage = await openStore(store, host);
    const context: Context = { storage, host, json };
    const exit = await COMMANDS[command.name](command as never, context);
    if (command.name === "dashboard" && exit === 0) storage = undefined; // it keeps serving
    return exit;
  } catch (error) {
    const usage = error instanceof ConfigError;
    const message = error instanceof Error ? error.message : String(error);
    host.stderr(`reflow: ${message.split("\n")[0]}${usage ? " (reflow --help for usage)" : ""}\n`);
    return usage ? 2 : 1;
  } finally {
    await storage?.close();
  }
}

interface Context {
  readonly storage: StorageAdapter;
  readonly host: CliHost;
  readonly json: boolean;
}

type Handlers = {
  [N in CliCommand["name"]]: (command: Extract<CliCommand, { name: N }>, c: Context) => Promise<Exit>;
};

const COMMANDS: Handlers = {
  help: () => Promise.resolve(0),
  async runs(command, { storage, host, json }) {
    const { runs, next } = await readRunPage(storage, {
      status: list(command.status) as RunStatus[] | undefined,
      workflow: command.workflow,
      limit: command.limit === undefined ? undefined : integer(command.limit, "limit"),
      ...(command.before === undefined ? {} : parseCursor(command.before)),
    });
    const cursor = next === null ? null : formatCursor(next);
    if (json) return print(host, { runs, next: cursor });
    const now = host.now();
    host.stdout(formatTable(
      ["ID", "WORKFLOW", "STATUS", "VERSION", "CREATED", "UPDATED", "ERROR"],
      runs.map((run) => [
        run.id,
        run.workflow,
        run.status,
        truncate(run.version ?? "-", 12),
        formatRelative(run.createdAt, now),
        formatRelative(run.updatedAt, now),
        run.error === null ? "" : truncate(formatError(run.error), 60),
      ]),
    ));
    host.stdout(runs.length === 0 ? "No runs.\n" : cursor === null ? "" : `Next page: --before ${cursor}\n`);
    return 0;
  },
  async run({ runId }, { storage, host, json }) {
    const details = await readRun(storage, runId);
    if (details === null) return notFound(host, runId);
    if (json) return print(host, details);
    const { run, steps, pendingEvents } = details;
    const now = host.now();
    const when = (at: number) => `${formatTime(at)} (${formatRelative(at, now)})`;
    const fields: [string, string][] = [
      ["run", run.id],
      ["workflow", run.workflow],
      ["status", run.status],
      ...(run.version === null ? [] : [["version", run.version] as [string, string]]),
      ["created", when(run.createdAt)],
      ["updated", when(run.updatedAt)],
      ...(run.dueAt === null ? [] : [["due", when(run.dueAt)] as [string, string]]),
      ["claims", String(run.claimCount)],
      ...(run.idempotencyKey === null ? [] : [["key", run.idempotencyKey] as [string, string]]),
      ...(run.error === null ? [] : [["error", formatError(run.error)] as [string, string]]),
      ["input", formatValue(run.input, { max: 200 })],
      ...(run.status === "completed"
        ? [["output", formatValue(run.output, { max: 200 })] as [string, string]]
        : []),
    ];
    host.stdout(fields.map(([k, v]) => `${k.padEnd(9)}${printable(v)}\n`).join(""));
    host.stdout("\n");
    let previous = run.createdAt;
    host.stdout(formatTable(
      ["UNIT", "STATUS", "ATTEMPTS", "AT", "TOOK", "ERROR / OUTPUT"],
      steps.map((step) => {
        const took = formatDuration(Math.max(0, step.updatedAt - previous));
        previous = Math.max(previous, step.updatedAt);
        return [
          step.name,
          step.status,
          String(step.attempts),
          `+${formatDuration(step.updatedAt - run.createdAt)}`,
          took,
          step.error !== null ? truncate(formatError(step.error), 80) : formatValue(step.output, { max: 60 }),
        ];
      }),
    ));
    if (steps.length === 0) host.stdout("No unit has run yet.\n");
    if (pendingEvents.length > 0) {
      host.stdout("\nPending events (sent, not yet received by a wait):\n");
      host.stdout(formatTable(
        ["EVENT", "SENT", "PAYLOAD"],
        pendingEvents.map((
          event,
        ) => [event.name, when(event.createdAt), formatValue(event.payload, { max: 80 })]),
      ));
    }
    return 0;
  },
  async cancel({ runId }, { storage, host, json }) {
    return acted(
      host,
      json,
      runId,
      "cancel",
      await cancelStoredRun(storage, runId),
      `Cancelled run ${runId}.`,
    );
  },
  async resume({ runId }, { storage, host, json }) {
    const outcome = await resumeStoredRun(storage, runId, host.now());
    const done = `Re-queued run ${runId}: it runs when an engine with its workflow picks it up.`;
    return acted(host, json, runId, "resume", outcome, done);
  },
  async purge(command, { storage, host, json }) {
    const plan = resolvePurge({
      olderThan: command.olderThan as Duration,
      status: list(command.status) as FinishedRunStatus[] | undefined,
    });
    const progress = host.isTerminal && !json;
    const purged = await purgeFinishedRuns(storage, plan, host.now(), undefined, (total) => {
      if (progress) host.stderr(`\rPurging… ${total.toLocaleString("en-US")} runs deleted`);
    });
    if (progress) host.stderr("\n");
    if (json) return print(host, { purged });
    host.stdout(`Purged ${purged.toLocaleString("en-US")} finished run${purged === 1 ? "" : "s"}.\n`);
    return 0;
  },
  async schedules(_command, { storage, host, json }) {
    const schedules = await readSchedules(storage);
    if (json) return print(host, schedules);
    const now = host.now();
    host.stdout(formatTable(
      ["KEY", "WORKFLOW", "EVERY", "NEXT", "LAST RUN"],
      schedules.map((s) => [
        s.key,
        s.workflow,
        "cron" in s.recurrence ? `cron ${s.recurrence.cron}` : formatDuration(s.recurrence.every),
        `${formatTime(s.nextRunAt)} (${formatRelative(s.nextRunAt, now)})`,
        s.lastRunId ?? "-",
      ]),
    ));
    if (schedules.length === 0) host.stdout("No schedules.\n");
    return 0;
  },
  async dashboard(command, { storage, host, json }) {
    const port = command.port === undefined ? 8787 : integer(command.port, "port", 0, 65_535);
    const hostname = command.host ?? "127.0.0.1";
    const token = randomHex();
    const handler = requireToken(createDashboard({ storage }), token);
    const url = await host.serve(handler, { hostname, port });
    const open = `${url}?token=${token}`;
    if (json) return print(host, { url: open, token });
    host.stdout(`Reflow dashboard: ${open}\n(the token is required for every request; Ctrl-C stops)\n`);
    if (!LOOPBACK.has(hostname)) {
      host.stderr(
        `reflow: warning: ${hostname} is not loopback; anyone who reaches it with the token can cancel runs\n`,
      );
    }
    return 0;
  },
};

const LOOPBACK: ReadonlySet<string> = new Set(["127.0.0.1", "::1", "localhost"]);

async function openStore(store: StoreLocation, host: CliHost): Promise<StorageAdapter> {
  if (store.kind === "postgres") return await host.openPostgres(store.url);
  const storage = host.openSqlite(store.path);
  if (storage === null) {
    throw new ConfigError(`No database at "${store.path}": give the SQLite file your engines use`, {
      field: "db",
    });
  }
  return storage;
}

function acted(
  host: CliHost,
  json: boolean,
  runId: string,
  action: string,
  result: ActionOutcome,
  done: string,
): Exit {
  if (result.outcome === "notFound") return notFound(host, runId);
  if (result.outcome === "refused") {
    const why = action === "resume"
      ? "only a failed, cancelled or parked run can be resumed"
      : "it has finished";
    host.stderr(`reflow: Cannot ${action} run "${runId}": it is ${result.status} (${why})\n`);
    return 1;
  }
  if (json) return print(host, { id: runId, [action === "cancel" ? "cancelled" : "resumed"]: true });
  host.stdout(`${done}\n`);
  return 0;
}

function notFound(host: CliHost, runId: string): Exit {
  host.stderr(`reflow: Run "${runId}" not found\n`);
  return 1;
}

function print(host: CliHost, value: unknown): Exit {
  host.stdout(`${JSON.stringify(value, null, 2)}\n`);
  return 0;
}

/** A comma list of an option, e.g. `--status failed,cancelled`. */
function list(text: string | undefined): string[] | undefined {
  return text?.split(",").map((item) => item.trim());
}

function integer(text: string, field: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw new ConfigError(`Invalid --${field} "${text}": expected an integer from ${min} to ${max}`, {
      field,
    });
  }
  return n;
}
