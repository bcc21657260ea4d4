/**
 * The `reflow` command line, parsed: the command, its arguments and the store to open. Parsing
 * reads nothing and changes nothing, so a usage error is reported before the store is touched.
 *
 * @module
 */

import { ConfigError } from "../errors.ts";

/** Where the CLI's store is. */
export type StoreLocation =
  | { readonly kind: "sqlite"; readonly path: string }
  | { readonly kind: "postgres"; readonly url: string };

/** A parsed command line. */
export type CliCommand =
  | { readonly name: "help"; readonly topic?: string }
  | {
    readonly name: "runs";
    readonly status?: string;
    readonly workflow?: string;
    readonly limit?: string;
    readonly before?: string;
  }
  | { readonly name: "run" | "cancel" | "resume"; readonly runId: string }
  | { readonly name: "purge"; readonly olderThan: string; readonly status?: string }
  | { readonly name: "schedules" }
  | { readonly name: "dashboard"; readonly port?: string; readonly host?: string };

/** A command with the options every command takes. */
export interface CliInvocation {
  /** What to do. */
  readonly command: CliCommand;
  /** The store (absent only for `help`). */
  readonly store?: StoreLocation;
  /** Print JSON instead of tables. */
  readonly json: boolean;
}

// Each command's own options and how many positional arguments it takes.
const COMMANDS: Record<string, { readonly options: readonly string[]; readonly positionals: number }> = {
  runs: { options: ["status", "workflow", "limit", "before"], positionals: 0 },
  run: { options: [], positionals: 1 },
  cancel: { options: [], positionals: 1 },
  resume: { options: [], positionals: 1 },
  purge: { options: ["older-than", "status"], positionals: 0 },
  schedules: { options: [], positionals: 0 },
  dashboard: { options: ["port", "host"], positionals: 0 },
};

/** The command names, in the order the help lists them. */
export const COMMAND_NAMES: readonly string[] = Object.keys(COMMANDS);

/**
 * Parses the arguments after `reflow`.
 *
 * @param argv The arguments, without the runtime and script.
 * @returns What to run.
 * @throws {ConfigError} On a usage error: an unknown command or option, a missing value or argument,
 *   or no store; `field` names the option or argument.
 */
export function parseArgs(argv: readonly string[]): CliInvocation {
  const values = new Map<string, string>();
  const positionals: string[] = [];
  let json = false;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--json") json = true;
    else if (arg === "--help" || arg === "-h") help = true;
    else if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const name = arg.slice(2, eq < 0 ? undefined : eq);
      const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
      if (value === undefined || (eq < 0 && value.startsWith("--"))) {
        usage(`Option --${name} needs a value`, name);
      }
      if (values.has(name)) usage(`Option --${name} is given twice`, name);
      values.set(name, value);
    } else positionals.push(arg);
  }
  const [name, ...rest] = positionals;
  if (help || name === undefined || name === "help") {
    return { command: { name: "help", topic: name === "help" ? rest[0] : name }, json };
  }
  const spec = COMMANDS[name];
  if (spec === undefined) {
    usage(`Unknown command "${name}"; commands: ${COMMAND_NAMES.join(", ")}`, "command");
  }
  for (const option of values.keys()) {
    if (option !== "db" && option !== "postgres" && !spec.options.includes(option)) {
      usage(`Unknown option --${option} for "${name}"`, option);
    }
  }
  if (rest.length !== spec.positionals) {
    usage(
      spec.positionals === 0
        ? `"${name}" takes no argument, got "${rest[0]}"`
        : `"${name}" takes one run id, got ${rest.length === 0 ? "none" : rest.length}`,
      "runId",
    );
  }
  return { command: toCommand(name, rest[0], values), store: storeOf(values), json };
}

function toCommand(name: string, runId: string | undefined, values: Map<string, string>): CliCommand {
  const get = (option: string) => values.get(option);
  switch (name) {
    case "runs":
      return {
        name,
        status: get("status"),
        workflow: get("workflow"),
        limit: get("limit"),
        before: get("before"),
      };
    case "run":
    case "cancel":
    case "resume":
      return { name, runId: runId! };
    case "purge": {
      const olderThan = get("older-than");
      if (olderThan === undefined) usage('"purge" needs --older-than, e.g. --older-than 30d', "older-than");
      return { name, olderThan, status: get("status") };
    }
    case "dashboard":
      return { name, port: get("port"), host: get("host") };
    default:
      return { name: "schedules" };
  }
}

function storeOf(values: Map<string, string>): StoreLocation {
  const path = values.get("db");
  const url = values.get("postgres");
  if (path !== undefined && url !== undefined) usage("Give either --db or --postgres, not both", "db");
  if (url !== undefined) return { kind: "postgres", url };
  if (path === undefined || path === "") usage("Which store? Give --db <file> (a SQLite file)", "db");
  return { kind: "sqlite", path };
}

function usage(message: string, field: string): never {
  throw new ConfigError(message, { field });
}
