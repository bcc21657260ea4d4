/**
 * Whether a SQLite database path is on a read-only disk, for the drivers' `readOnly` hook: SQLite
 * reports a read-only mount as an I/O failure (it cannot create the WAL files), which the drivers
 * then report as kind `"readonly"`. Not a public entry point.
 *
 * @module
 */

import { accessSync, closeSync, constants, openSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * Whether the database file (when it exists) or its directory cannot be written: SQLite needs
 * both in WAL mode, for the `-wal` and `-shm` files beside the database.
 *
 * @param path The path the database was opened with.
 * @returns True on a read-only mount or without write permission; false otherwise, and for
 *   in-memory and temporary databases.
 */
export function isReadOnlyPath(path: string): boolean {
  if (path === "" || path === ":memory:" || path.startsWith("file:")) return false;
  const file = resolve(path);
  try {
    // Opening for writing (without truncating) is the check every runtime answers truthfully:
    // Deno's access() reads mode bits only, and misses a read-only mount.
    closeSync(openSync(file, "r+"));
  } catch (error) {
    const code = codeOf(error);
    if (code !== "ENOENT" && code !== "EISDIR") return READ_ONLY.has(code);
  }
  try {
    accessSync(dirname(file), constants.W_OK);
    return false;
  } catch (error) {
    return READ_ONLY.has(codeOf(error));
  }
}

const READ_ONLY: ReadonlySet<unknown> = new Set(["EROFS", "EACCES", "EPERM"]);

function codeOf(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}
