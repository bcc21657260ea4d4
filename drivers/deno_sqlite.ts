/**
 * {@linkcode SQLiteStorage} on Deno's built-in SQLite. Deno provides it as `node:sqlite`, so
 * this is the `node:sqlite` driver under the name Deno users look for.
 *
 * @example Open, initialise and close
 * ```ts
 * import { SQLiteStorage } from "@reflow/core/sqlite-deno";
 *
 * await using storage = new SQLiteStorage(":memory:");
 * await storage.initialize();
 * ```
 *
 * @module
 */

export {
  type NodeSqliteDatabase as DenoSqliteDatabase,
  nodeSqliteDriver as denoSqliteDriver,
  type NodeSqliteStatement as DenoSqliteStatement,
  SQLiteStorage,
} from "./node_sqlite.ts";
