// The one table of storages every storage-dependent suite iterates: MemoryStorage, then every SQL
// storage that can run here. A new storage is one entry in `storages`; the conformance, engine,
// primitives, schedules, run admin, bad input and fault suites then run on it.
import { after, afterEach, describe, test } from "node:test";
import process from "node:process";
import type { SqlDriver } from "../../src/sql/driver.ts";
import type { SqlStorageOptions } from "../../src/sql/sql_storage.ts";
import type { StorageAdapter } from "../../src/storage/adapter.ts";
import { MemoryStorage } from "../../src/storage/memory.ts";
import { MIGRATIONS } from "../../src/sql/postgres/schema.ts";
import { type PostgresServer, postgresSkipReason, startPostgres } from "./postgres_server.ts";
import { runtimeName } from "./runtime.ts";
import { type SqliteSubject, sqliteSubjects } from "./sqlite_subjects.ts";

/** One fresh, empty database of an entry. */
export interface TestDatabase {
  /**
   * An initialised storage on this database; every call opens another one with its own connection
   * (MemoryStorage: the same instance each time). Closed by {@linkcode TestDatabase.close}.
   */
  open(options?: SqlStorageOptions): Promise<StorageAdapter>;
  /** SQL databases: a new driver on this database, for a suite that wraps it (not closed for it). */
  readonly driver?: () => SqlDriver;
  /** SQL databases: the rows of a query, read on a connection of its own. */
  readonly read?: (sql: string) => Promise<Record<string, unknown>[]>;
  /** SQLite databases: the file's path. */
  readonly path?: string;
  /** PostgreSQL databases: a connection string whose `search_path` is this database's schema. */
  readonly url?: string;
  /** SQL databases: asserts that the database is intact (SQLite's integrity check). */
  readonly checkIntact?: () => Promise<void>;
  /** Closes every storage `open` opened. */
  close(): Promise<void>;
}

/** One storage implementation, as the suites see it. */
export interface StorageEntry {
  /** Shown in test names: `${name} on ${runtime}: ${case}`. */
  readonly name: string;
  /** Which family it belongs to, for the few suites that need one (e.g. SQL files). */
  readonly kind: "memory" | "sqlite" | "postgres";
  /** Why it cannot run in this runtime, or false when it can. */
  readonly skip: string | false;
  /** Creates a fresh, empty database. */
  database(): Promise<TestDatabase>;
  /** Closes every database and removes what the entry created (temp files, schemas). */
  cleanup(): Promise<void>;
}

const memoryEntry: StorageEntry = {
  name: "MemoryStorage",
  kind: "memory",
  skip: false,
  database: () => {
    const storage = new MemoryStorage();
    return Promise.resolve({
      open: async () => {
        await storage.initialize();
        return storage;
      },
      close: () => storage.close(),
    });
  },
  cleanup: () => Promise.resolve(),
};

function sqliteEntry(subject: SqliteSubject): StorageEntry {
  const databases: TestDatabase[] = [];
  return {
    name: subject.name,
    kind: "sqlite",
    skip: subject.skipReason,
    async database() {
      const module = await subject.load();
      const path = subject.tempPath();
      const opened: StorageAdapter[] = [];
      const read = async (sql: string) => {
        const handle = await module.openHandle(path);
        try {
          return (handle.prepare(sql).all() as Record<string, unknown>[]).map((row) => ({ ...row }));
        } finally {
          handle.close();
        }
      };
      const database: TestDatabase = {
        async open(options) {
          const storage = module.open(path, options);
          opened.push(storage);
          await storage.initialize();
          return storage;
        },
        driver: () => module.driver(path),
        path,
        read,
        async checkIntact() {
          const rows = await read("PRAGMA integrity_check");
          if (rows.length !== 1 || rows[0]!.integrity_check !== "ok") {
            throw new Error(`${path} is damaged: ${JSON.stringify(rows)}`);
          }
        },
        async close() {
          for (const storage of opened.splice(0).reverse()) await storage.close();
        },
      };
      databases.push(database);
      return database;
    },
    async cleanup() {
      for (const database of databases.splice(0)) await database.close();
      await subject.cleanup();
    },
  };
}

const SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

/** A pg pool as the tests use it directly. */
interface AdminPool {
  query(sql: string): Promise<{ rows: Record<string, unknown>[] }>;
  end(): Promise<void>;
}

/**
 * PostgreSQL: each database is a schema of its own (named after this process, so that runtimes can
 * share one server at once), reached through `search_path` in the connection string. A closed
 * database's schema is emptied and handed to the next database() (creating and migrating one costs
 * more than the average test), unless its schema version was changed.
 */
function postgresEntry(): StorageEntry {
  let server: Promise<PostgresServer> | undefined;
  let admin: Promise<AdminPool> | undefined;
  let count = 0;
  const databases: TestDatabase[] = [];
  const free: string[] = [];
  const pool = async (url: string): Promise<AdminPool> => {
    const { default: pg } = await import("pg");
    const created = new pg.Pool({ connectionString: url, max: 2 });
    created.on("error", () => {});
    return created as unknown as AdminPool;
  };
  const withSchema = (url: string, schema: string): string => {
    const parsed = new URL(url);
    parsed.searchParams.set("options", `-c search_path=${schema}`);
    return parsed.toString();
  };
  const recycle = async (pool: AdminPool, schema: string): Promise<void> => {
    const { rows } = await pool.query(
      `SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = '${schema}')::int AS tables, ` +
        `(SELECT value FROM ${schema}.reflow_meta WHERE key = 'schema_version')::int AS version`,
    ).catch(() => ({ rows: [] as Record<string, unknown>[] }));
    if (rows[0]?.tables === 5 && rows[0]?.version === SCHEMA_VERSION) {
      await pool.query(
        `TRUNCATE ${["runs", "steps", "events", "schedules"].map((t) => `${schema}.reflow_${t}`)} ` +
          "RESTART IDENTITY",
      );
      free.push(schema);
    } else {
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    }
  };
  return {
    name: "postgres",
    kind: "postgres",
    skip: postgresSkipReason(),
    async database() {
      server ??= startPostgres();
      const { url } = await server;
      admin ??= pool(url);
      let schema = free.pop();
      if (schema === undefined) {
        schema = `reflow_test_${process.pid}_${++count}_${Math.random().toString(36).slice(2, 8)}`;
        await (await admin).query(`CREATE SCHEMA ${schema}`);
      }
      const schemaUrl = withSchema(url, schema);
      const { PostgresStorage, postgresDriver } = await import("../../drivers/postgres.ts");
      const opened: StorageAdapter[] = [];
      let reader: Promise<AdminPool> | undefined;
      const database: TestDatabase = {
        async open(options) {
          const { synchronous: _, ...rest } = options ?? {};
          const storage = new PostgresStorage(schemaUrl, { poolSize: 4, ...rest });
          opened.push(storage);
          await storage.initialize();
          return storage;
        },
        driver: () => postgresDriver(schemaUrl, { poolSize: 4 }),
        url: schemaUrl,
        read: async (sql) => (await (reader ??= pool(schemaUrl))).query(sql).then((result) => result.rows),
        async close() {
          for (const storage of opened.splice(0).reverse()) await storage.close();
          await (await reader)?.end();
          reader = undefined;
          if (databases.includes(database)) {
            databases.splice(databases.indexOf(database), 1);
            await recycle(await admin!, schema);
          }
        },
      };
      databases.push(database);
      return database;
    },
    async cleanup() {
      for (const database of databases.slice().reverse()) await database.close();
      for (const schema of free.splice(0)) await (await admin)?.query(`DROP SCHEMA ${schema} CASCADE`);
      const [adminPool, running] = [admin, server];
      admin = server = undefined;
      await (await adminPool)?.end();
      await (await running)?.stop();
    },
  };
}

/** Every storage, in the order their tests are listed; the ones that cannot run here say why. */
export const storages: readonly StorageEntry[] = [
  memoryEntry,
  ...sqliteSubjects.map(sqliteEntry),
  postgresEntry(),
];

/** One storage cell of {@linkcode describeEachStorage}, as a suite body sees it. */
export interface StorageCell {
  /** `${storage} on ${runtime}`, the prefix of every test name in the cell. */
  readonly name: string;
  /** The entry the cell runs on. */
  readonly entry: StorageEntry;
  /** Declares a test of this cell, skipped where its storage cannot run. */
  it(name: string, body: () => Promise<void>): void;
  /** Opens a storage on a fresh database, closed after the test. */
  open(options?: SqlStorageOptions): Promise<StorageAdapter>;
  /** Opens another storage on the database of the last `open()` (MemoryStorage: the same instance). */
  openPeer(options?: SqlStorageOptions): Promise<StorageAdapter>;
  /** The database of the last `open()`. */
  database(): TestDatabase;
  /** Stops `engine` after the test, before its storages are closed; returns it. */
  stopAfter<E extends { stop(): Promise<void> }>(engine: E): E;
}

/**
 * Declares `body`'s tests once per storage of {@linkcode storages} (or of those `filter` keeps),
 * each in a `describe` of its own whose storages and engines are closed after every test.
 */
export function describeEachStorage(
  body: (cell: StorageCell) => void,
  filter: (entry: StorageEntry) => boolean = () => true,
): void {
  for (const entry of storages.filter(filter)) {
    const name = `${entry.name} on ${runtimeName}`;
    describe(name, () => {
      after(() => entry.cleanup());
      const databases: TestDatabase[] = [];
      const engines: { stop(): Promise<void> }[] = [];
      afterEach(async () => {
        for (const engine of engines.splice(0)) await engine.stop();
        for (const database of databases.splice(0).reverse()) await database.close();
      });
      const last = (): TestDatabase => {
        const database = databases.at(-1);
        if (database === undefined) throw new Error("openPeer() needs an open() first");
        return database;
      };
      body({
        name,
        entry,
        it: (testName, testBody) => test(`${name}: ${testName}`, { skip: entry.skip }, testBody),
        open: async (options) => {
          const database = await entry.database();
          databases.push(database);
          return await database.open(options);
        },
        openPeer: (options) => last().open(options),
        database: last,
        stopAfter: (engine) => {
          engines.push(engine);
          return engine;
        },
      });
    });
  }
}
