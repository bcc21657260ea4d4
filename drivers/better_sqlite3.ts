/**
 * {@linkcode SQLiteStorage} on [better-sqlite3](https://github.com/WiseLibs/better-sqlite3) 13
 * (Node.js >= 22.14; also loads on Bun, and on Deno with `--allow-ffi --allow-sys`).
 *
 * @example An engine on a SQLite file (npm: `reflow-ts/sqlite-node`, with `better-sqlite3` installed)
 * ```ts ignore
 * import { createEngine } from "@reflow/core";
 * import { SQLiteStorage } from "@reflow/core/sqlite-node";
 *
 * const storage = new SQLiteStorage("app.db");
 * const engine = createEngine({ storage, workflows: [] });
 * await engine.start();
 * ```
 *
 * @module
 */

import Database from "better-sqlite3";
import type { SqlDriver } from "../src/sql/driver.ts";
import { isReadOnlyPath } from "./read_only.ts";
import { checkSqlStorageOptions, SqlStorage, type SqlStorageOptions } from "../src/sql/sql_storage.ts";
import { createSqliteDriver, type SqliteStatement } from "../src/sql/sqlite/support.ts";

/** The slice of a better-sqlite3 `Database` this driver uses. */
export interface BetterSqlite3Database {
  /** Prepares the statement `sql`. */
  prepare(sql: string): BetterSqlite3Statement;
  /** Closes the database. */
  close(): unknown;
}

/** The slice of a better-sqlite3 `Statement` this driver uses. */
export interface BetterSqlite3Statement extends SqliteStatement {
  /** Whether the statement returns rows; `all()` throws on one that does not. */
  readonly reader: boolean;
  /** Reads integers as bigints, exactly (instead of rounding them beyond 2^53). */
  safeIntegers(on?: boolean): unknown;
}

/**
 * Opens a better-sqlite3 database as a {@linkcode SqlDriver}, for a custom {@linkcode SqlStorage}.
 *
 * @param pathOrHandle A file path (`":memory:"` for an in-memory database), or an open
 *   `Database`, which is used as given and left open on close.
 * @returns The driver.
 * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
 *
 * @example Wrap the driver in a storage of your own
 * ```ts
 * import { SqlStorage } from "@reflow/core";
 * import { betterSqlite3Driver } from "@reflow/core/sqlite-node";
 *
 * await using storage = new SqlStorage(betterSqlite3Driver(":memory:"), { busyTimeoutMs: 10_000 });
 * await storage.initialize();
 * ```
 */
export function betterSqlite3Driver(pathOrHandle: string | BetterSqlite3Database): SqlDriver {
  return createSqliteDriver<BetterSqlite3Database>(pathOrHandle, {
    open: (path) => new Database(path),
    readOnly: isReadOnlyPath,
    prepare: (handle, sql) => {
      const statement = handle.prepare(sql);
      if (!statement.reader) {
        return {
          all: (...params) => (statement.run(...params), []),
          run: (...p) => statement.run(...p),
        };
      }
      statement.safeIntegers(true);
      return statement;
    },
  });
}

/**
 * Reflow's storage in a SQLite file, through better-sqlite3: WAL, `BEGIN IMMEDIATE` write
 * transactions, busy retries and versioned migrations (see {@linkcode SqlStorage}).
 *
 * @example Open, initialise and close
 * ```ts
 * import { SQLiteStorage } from "@reflow/core/sqlite-node";
 *
 * await using storage = new SQLiteStorage(":memory:", { synchronous: "FULL" });
 * await storage.initialize();
 * console.log(await storage.getRun("missing")); // null
 * ```
 */
export class SQLiteStorage extends SqlStorage {
  /**
   * Opens the database. Nothing else happens until the first call (usually `initialize()`).
   *
   * @param pathOrHandle A file path (`":memory:"` for an in-memory database), or an open
   *   better-sqlite3 `Database`, which is used as given and left open on close.
   * @param options Durability, lock waiting, clock and lease ids; see {@linkcode SqlStorageOptions}.
   * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
   * @throws {ConfigError} If an option is invalid.
   */
  constructor(pathOrHandle: string | BetterSqlite3Database, options?: SqlStorageOptions) {
    // Checked before the file is opened, so that a bad option opens (or creates) nothing.
    checkSqlStorageOptions(options);
    super(betterSqlite3Driver(pathOrHandle), options);
  }
}
