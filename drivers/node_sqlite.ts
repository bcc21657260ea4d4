/**
 * {@linkcode SQLiteStorage} on `node:sqlite` (Node.js >= 22.13 without a flag; also Bun and
 * Deno, whose built-in SQLite it is).
 *
 * @example An engine on a SQLite file (npm: `reflow-ts/sqlite-node-builtin`)
 * ```ts ignore
 * import { createEngine } from "@reflow/core";
 * import { SQLiteStorage } from "@reflow/core/sqlite-node-builtin";
 *
 * const storage = new SQLiteStorage("app.db");
 * const engine = createEngine({ storage, workflows: [] });
 * await engine.start();
 * ```
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { SqlDriver } from "../src/sql/driver.ts";
import { isReadOnlyPath } from "./read_only.ts";
import { checkSqlStorageOptions, SqlStorage, type SqlStorageOptions } from "../src/sql/sql_storage.ts";
import { createSqliteDriver, type SqliteStatement } from "../src/sql/sqlite/support.ts";

/** The slice of a `node:sqlite` `DatabaseSync` this driver uses. */
export interface NodeSqliteDatabase {
  /** Prepares the statement `sql`. */
  prepare(sql: string): NodeSqliteStatement;
  /** Closes the database. */
  close(): unknown;
}

/** The slice of a `node:sqlite` `StatementSync` this driver uses. */
export interface NodeSqliteStatement extends SqliteStatement {
  /** Reads integers as bigints, exactly (instead of throwing beyond 2^53). */
  setReadBigInts(enabled: boolean): unknown;
}

/**
 * Opens a `node:sqlite` database as a {@linkcode SqlDriver}, for a custom {@linkcode SqlStorage}.
 *
 * @param pathOrHandle A file path (`":memory:"` for an in-memory database), or an open
 *   `DatabaseSync`, which is used as given and left open on close.
 * @returns The driver.
 * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
 *
 * @example Wrap the driver in a storage of your own
 * ```ts
 * import { SqlStorage } from "@reflow/core";
 * import { nodeSqliteDriver } from "@reflow/core/sqlite-node-builtin";
 *
 * await using storage = new SqlStorage(nodeSqliteDriver(":memory:"), { busyTimeoutMs: 10_000 });
 * await storage.initialize();
 * ```
 */
export function nodeSqliteDriver(pathOrHandle: string | NodeSqliteDatabase): SqlDriver {
  return createSqliteDriver<NodeSqliteDatabase>(pathOrHandle, {
    open: (path) => new DatabaseSync(path, {}),
    readOnly: isReadOnlyPath,
    prepare: (handle, sql) => {
      const statement = handle.prepare(sql);
      statement.setReadBigInts(true);
      return statement;
    },
  });
}

/**
 * Reflow's storage in a SQLite file, through `node:sqlite`: WAL, `BEGIN IMMEDIATE` write
 * transactions, busy retries and versioned migrations (see {@linkcode SqlStorage}).
 *
 * @example Open, initialise and close
 * ```ts
 * import { SQLiteStorage } from "@reflow/core/sqlite-node-builtin";
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
   *   `DatabaseSync`, which is used as given and left open on close.
   * @param options Durability, lock waiting, clock and lease ids; see {@linkcode SqlStorageOptions}.
   * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
   * @throws {ConfigError} If an option is invalid.
   */
  constructor(pathOrHandle: string | NodeSqliteDatabase, options?: SqlStorageOptions) {
    // Checked before the file is opened, so that a bad option opens (or creates) nothing.
    checkSqlStorageOptions(options);
    super(nodeSqliteDriver(pathOrHandle), options);
  }
}
