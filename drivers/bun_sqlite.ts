/**
 * {@linkcode SQLiteStorage} on `bun:sqlite` (Bun only).
 *
 * @example An engine on a SQLite file (npm: `reflow-ts/sqlite-bun`)
 * ```ts ignore
 * import { createEngine } from "@reflow/core";
 * import { SQLiteStorage } from "@reflow/core/sqlite-bun";
 *
 * const storage = new SQLiteStorage("app.db");
 * const engine = createEngine({ storage, workflows: [] });
 * await engine.start();
 * ```
 *
 * @module
 */

import { Database } from "bun:sqlite";
import type { SqlDriver } from "../src/sql/driver.ts";
import { isReadOnlyPath } from "./read_only.ts";
import { checkSqlStorageOptions, SqlStorage, type SqlStorageOptions } from "../src/sql/sql_storage.ts";
import { createSqliteDriver, type SqliteStatement } from "../src/sql/sqlite/support.ts";

/** The slice of a `bun:sqlite` `Database` this driver uses. */
export interface BunSqliteDatabase {
  /** Prepares the statement `sql`. */
  prepare(sql: string): BunSqliteStatement;
  /** Closes the database. */
  close(): unknown;
}

/** The slice of a `bun:sqlite` `Statement` this driver uses. */
export interface BunSqliteStatement extends SqliteStatement {
  /** Reads integers as bigints, exactly (instead of rounding them beyond 2^53). */
  safeIntegers(enabled: boolean): unknown;
}

/**
 * Opens a `bun:sqlite` database as a {@linkcode SqlDriver}, for a custom {@linkcode SqlStorage}.
 *
 * @param pathOrHandle A file path (`":memory:"` for an in-memory database), or an open
 *   `Database`, which is used as given and left open on close.
 * @returns The driver.
 * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
 *
 * @example Wrap the driver in a storage of your own
 * ```ts
 * import { SqlStorage } from "@reflow/core";
 * import { bunSqliteDriver } from "@reflow/core/sqlite-bun";
 *
 * await using storage = new SqlStorage(bunSqliteDriver(":memory:"), { busyTimeoutMs: 10_000 });
 * await storage.initialize();
 * ```
 */
export function bunSqliteDriver(pathOrHandle: string | BunSqliteDatabase): SqlDriver {
  return createSqliteDriver<BunSqliteDatabase>(pathOrHandle, {
    open: (path) => new Database(path),
    readOnly: isReadOnlyPath,
    prepare: (handle, sql) => {
      const statement = handle.prepare(sql);
      statement.safeIntegers(true);
      return statement;
    },
  });
}

/**
 * Reflow's storage in a SQLite file, through `bun:sqlite`: WAL, `BEGIN IMMEDIATE` write
 * transactions, busy retries and versioned migrations (see {@linkcode SqlStorage}).
 *
 * @example Open, initialise and close
 * ```ts
 * import { SQLiteStorage } from "@reflow/core/sqlite-bun";
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
   *   `bun:sqlite` `Database`, which is used as given and left open on close.
   * @param options Durability, lock waiting, clock and lease ids; see {@linkcode SqlStorageOptions}.
   * @throws {StorageError} Kind `"io"` (operation `"open"`) if the file cannot be opened or created.
   * @throws {ConfigError} If an option is invalid.
   */
  constructor(pathOrHandle: string | BunSqliteDatabase, options?: SqlStorageOptions) {
    // Checked before the file is opened, so that a bad option opens (or creates) nothing.
    checkSqlStorageOptions(options);
    super(bunSqliteDriver(pathOrHandle), options);
  }
}
