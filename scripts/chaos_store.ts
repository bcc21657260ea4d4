// The shared database of scripts/chaos.ts as its controller sees it: a SQLite file, or a schema on a
// PostgreSQL server that this process starts (or REFLOW_POSTGRES_URL's), with the faults that only
// a server can suffer: its sessions terminated, itself restarted.
import { join } from "node:path";
import process from "node:process";
import type { StorageAdapter } from "../mod.ts";
import { type PostgresServer, startPostgres } from "../tests/support/postgres_server.ts";
import { sqliteSubjects } from "../tests/support/sqlite_subjects.ts";

/** The database the chaos runs on. */
export interface ChaosStore {
  /** What workers and producers open: a file, or a connection string. */
  readonly db: string;
  /** The controller's own storage on it, initialised (it reads runs with it). */
  readonly storage: StorageAdapter;
  /** The rows of a query, on a connection of the controller's. */
  rows(sql: string): Promise<Record<string, unknown>[]>;
  /** "ok", "unchecked" (the server offers no check to this user), or what the check found wrong. */
  integrity(): Promise<string>;
  /** Closes the controller's connections and removes what the store created (server, schema). */
  close(): Promise<void>;
}

/** A PostgreSQL store, with its faults. */
export interface PostgresChaosStore extends ChaosStore {
  /** The server, when this process started it (only then can it restart it). */
  readonly server: PostgresServer;
  /** `db` as a worker inside the network namespace reaches it (through `address`). */
  dbVia(address: string): string;
  /**
   * Terminates one random server session of the processes whose `application_name` starts with
   * `prefix` (pg_terminate_backend, from the controller's own session).
   *
   * @returns The OS pid the session's application name ends with, or undefined when none was found
   *   or the server could not be reached.
   */
  terminateOne(prefix: string, random: () => number): Promise<number | undefined>;
}

/** Opens the chaos database in `dir` with the first SQLite driver that loads in this runtime. */
export async function openSqliteStore(dir: string): Promise<ChaosStore> {
  const own = sqliteSubjects.find((s) => s.available);
  if (own === undefined) throw new Error("no SQLite driver loads in the controller's runtime");
  const module = await own.load();
  const db = join(dir, "chaos.db");
  const storage = module.open(db);
  await storage.initialize();
  const reader = await module.openHandle(db);
  reader.prepare("PRAGMA busy_timeout = 5000").all();
  const rows = (sql: string) =>
    Promise.resolve((reader.prepare(sql).all() as Record<string, unknown>[]).map((row) => ({ ...row })));
  return {
    db,
    storage,
    rows,
    integrity: async () => {
      const result = await rows("PRAGMA integrity_check");
      return result.length === 1 && result[0]!.integrity_check === "ok" ? "ok" : JSON.stringify(result);
    },
    close: async () => {
      await storage.close();
      reader.close();
    },
  };
}

interface Pool {
  query(sql: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}

/**
 * Starts a PostgreSQL server (or takes REFLOW_POSTGRES_URL's) and opens a fresh schema on it for
 * the chaos run, the server also listening on `listen` when given.
 *
 * @param applicationName The controller's sessions' `application_name`: terminateOne() spares them.
 */
export async function openPostgresStore(
  applicationName: string,
  listen: { address: string; clients: string } | undefined,
): Promise<PostgresChaosStore> {
  const server = await startPostgres({ listen: listen === undefined ? [] : [listen] });
  const { default: pg } = await import("pg");
  const { PostgresStorage } = await import("../drivers/postgres.ts");
  const schema = `reflow_chaos_${process.pid}`;
  const connect = (url: string) => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    // A terminated or restarted session is reported here; the pool replaces it by itself.
    pool.on("error", () => {});
    return pool as unknown as Pool;
  };
  const own = new URL(server.url);
  own.searchParams.set("application_name", applicationName);
  const admin = connect(own.toString());
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(`CREATE SCHEMA ${schema}`);
  const schemaUrl = new URL(server.url);
  schemaUrl.searchParams.set("options", `-c search_path=${schema}`);
  const db = schemaUrl.toString();
  const storage = new PostgresStorage(db, { poolSize: 2 });
  await storage.initialize();
  const mine = new URL(db);
  mine.searchParams.set("application_name", applicationName);
  const reader = connect(mine.toString());
  return {
    db,
    storage,
    server,
    rows: async (sql) => (await reader.query(sql)).rows,
    dbVia: (address) => {
      const url = new URL(db);
      url.hostname = address;
      return url.toString();
    },
    async terminateOne(prefix, random) {
      try {
        const { rows } = await admin.query(
          "SELECT pid, application_name AS name FROM pg_stat_activity WHERE starts_with(application_name, $1)",
          [prefix],
        );
        if (rows.length === 0) return undefined;
        const { pid, name } = rows[Math.floor(random() * rows.length)]!;
        const { rows: [done] } = await admin.query("SELECT pg_terminate_backend($1) AS done", [pid]);
        return done?.done === true ? Number(/(\d+)$/.exec(String(name))?.[1]) : undefined;
      } catch {
        return undefined; // the server restarts, or the session ended meanwhile
      }
    },
    // amcheck: every B-tree index of the schema is well-formed and holds every row of its table.
    async integrity() {
      try {
        await admin.query("CREATE EXTENSION IF NOT EXISTS amcheck");
      } catch {
        return "unchecked";
      }
      try {
        await admin.query(
          "SELECT bt_index_check(c.oid, true) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid " +
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam " +
            "WHERE n.nspname = $1 AND a.amname = 'btree'",
          [schema],
        );
        return "ok";
      } catch (error) {
        return `amcheck: ${(error as Error).message}`;
      }
    },
    async close() {
      await storage.close();
      await reader.end();
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
      await admin.end();
      await server.stop();
    },
  };
}
