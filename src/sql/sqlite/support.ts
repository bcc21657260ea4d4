/**
 * What the SQLite drivers share: one {@linkcode SqlDriver} over any synchronous SQLite library
 * whose statements have `all(...params)` and `run(...params)` (better-sqlite3, `node:sqlite`,
 * `bun:sqlite`), with a statement cache, row and parameter evening-out, and error-code mapping.
 * A driver file only says how to open a database and prepare a statement.
 *
 * @module
 */

import { ConfigError, StorageError } from "../../errors.ts";
import type {
  SqlConnectionLease,
  SqlDriver,
  SqlErrorKind,
  SqlExecuteResult,
  SqlParameter,
  SqlRow,
  SqlStatement,
  SqlValue,
} from "../driver.ts";
import { FifoMutex } from "../mutex.ts";

/** The slice of a prepared statement of a synchronous SQLite library that the drivers use. */
export interface SqliteStatement {
  /**
   * Runs the statement and returns its rows.
   *
   * @param params The positional parameter values.
   * @returns The rows (any prototype; integers as numbers or bigints).
   */
  all(...params: unknown[]): unknown[];
  /**
   * Runs the statement for its effect.
   *
   * @param params The positional parameter values.
   * @returns The number of changed rows.
   */
  run(...params: unknown[]): { readonly changes: number | bigint };
}

/** The slice of a SQLite library's database handle that the shared driver needs. */
export interface SqliteHandle {
  /** Closes the database. */
  close(): unknown;
}

/** How to use one SQLite library: see {@linkcode createSqliteDriver}. */
export interface SqliteLibrary<Handle extends SqliteHandle> {
  /**
   * Opens a database file (or `":memory:"`) for reading and writing, creating it if missing.
   *
   * @param path The file path.
   * @returns The library's handle.
   */
  open(path: string): Handle;
  /**
   * Prepares a statement so that it reads integers as bigints (the shared driver turns safe
   * ones back into numbers) and so that `all()` works on statements that yield no rows.
   * Called once per SQL text; the result is cached.
   *
   * @param handle The open database.
   * @param sql The statement text.
   * @returns The prepared statement.
   */
  prepare(handle: Handle, sql: string): SqliteStatement;
  /**
   * Whether a database path cannot be written (a read-only mount, a file or directory without
   * write permission). SQLite reports such a disk as an I/O failure (`SQLITE_CANTOPEN` when the
   * WAL files cannot be created); with this the driver reports kind `"readonly"` instead. Only
   * asked after an I/O failure. Leave it out where the file system cannot be inspected.
   *
   * @param path The path given to `open`.
   * @returns True when the path or its directory is read-only.
   */
  readOnly?(path: string): boolean;
}

// Cached statements beyond this are dropped oldest first; the core uses a few dozen texts.
const STATEMENT_CACHE_SIZE = 256;

/*
 * One lock for every SQLite connection of this JavaScript thread. The libraries are synchronous:
 * a statement that waits for a lock sleeps the whole thread in SQLite's busy handler. If two
 * connections of one thread interleaved their transactions across `await`s, one would wait for
 * a lock that only this same, now-sleeping thread can release (a stall until busy_timeout).
 * Taking turns costs nothing, since a synchronous library never runs two statements at once.
 */
const threadLock = new FifoMutex();

/**
 * Builds a {@linkcode SqlDriver} over one connection of a synchronous SQLite library.
 *
 * A path is opened with `library.open` and closed by {@linkcode SqlDriver.close}; a handle is
 * used as given and left open, since its owner may still need it.
 *
 * All such drivers in one JavaScript thread take turns: one statement or transaction at a time,
 * across databases. A synchronous library waiting on a lock sleeps the whole thread, so two
 * connections of one thread interleaving their transactions would stall each other until
 * `busy_timeout`; taking turns costs nothing, as such a library never runs two statements at once.
 *
 * @param pathOrHandle A file path (`":memory:"` for a private in-memory database) or an open handle.
 * @param library How to open a database and prepare a statement with the library.
 * @returns The driver.
 * @throws {StorageError} With `operation` `"open"`, when the database cannot be opened (kind
 *   `"io"` for a missing directory or a file that cannot be created).
 * @throws {ConfigError} When `pathOrHandle` is neither a string nor an object.
 *
 * @example A driver over a stand-in library
 * ```ts
 * // A real driver passes the library's handle and `handle.prepare(sql)` with bigint reads on.
 * const handle = { close(): void {} };
 * const driver = createSqliteDriver(handle, {
 *   open: () => handle,
 *   prepare: () => ({ all: () => [{ one: 1n }], run: () => ({ changes: 0 }) }),
 * });
 * const connection = await driver.acquire();
 * console.log(await connection.query({ sql: "SELECT 1 AS one", params: [] })); // [{ one: 1 }]
 * connection.release();
 * await driver.close();
 * ```
 */
export function createSqliteDriver<Handle extends SqliteHandle>(
  pathOrHandle: string | Handle,
  library: SqliteLibrary<Handle>,
): SqlDriver {
  if (typeof pathOrHandle === "string") {
    let handle: Handle;
    try {
      handle = library.open(pathOrHandle);
    } catch (error) {
      const kind = classifySqliteError(error);
      throw new StorageError(
        "open",
        `cannot open SQLite database ${JSON.stringify(pathOrHandle)}: ${messageOf(error)}`,
        { kind: refineIo(kind === "other" ? "io" : kind, library, pathOrHandle), cause: error },
      );
    }
    return new SqliteDriver(handle, true, library, pathOrHandle);
  }
  if (typeof pathOrHandle !== "object" || pathOrHandle === null) {
    throw new ConfigError(
      `Invalid SQLite database ${String(pathOrHandle)}: expected a file path or an open database handle`,
    );
  }
  return new SqliteDriver(pathOrHandle, false, library);
}

class SqliteDriver<Handle extends SqliteHandle> implements SqlDriver {
  readonly dialect = "sqlite" as const;
  #handle: Handle;
  #owned: boolean;
  #library: SqliteLibrary<Handle>;
  #statements = new Map<string, SqliteStatement>();
  #closed = false;

  #path: string | undefined;

  constructor(handle: Handle, owned: boolean, library: SqliteLibrary<Handle>, path?: string) {
    this.#handle = handle;
    this.#owned = owned;
    this.#library = library;
    this.#path = path;
  }

  async acquire(): Promise<SqlConnectionLease> {
    await threadLock.lock();
    if (this.#closed) {
      threadLock.unlock();
      throw new Error("The SQLite driver is closed");
    }
    let released = false;
    return {
      query: (statement) => settle(() => this.#query(statement)),
      execute: (statement) => settle(() => this.#execute(statement)),
      release: () => {
        if (released) return;
        released = true;
        threadLock.unlock();
      },
    };
  }

  classifyError(error: unknown): SqlErrorKind {
    return refineIo(classifySqliteError(error), this.#library, this.#path);
  }

  async close(): Promise<void> {
    await threadLock.lock();
    try {
      if (this.#closed) return;
      this.#closed = true;
      this.#statements.clear();
      if (this.#owned) this.#handle.close();
    } finally {
      threadLock.unlock();
    }
  }

  #query(statement: SqlStatement): SqlRow[] {
    const rows = this.#prepare(statement.sql).all(...bindable(statement.params));
    const out: SqlRow[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = plainRow(rows[i] as Record<string, unknown>);
    return out;
  }

  #execute(statement: SqlStatement): SqlExecuteResult {
    return { changes: Number(this.#prepare(statement.sql).run(...bindable(statement.params)).changes) };
  }

  #prepare(sql: string): SqliteStatement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#library.prepare(this.#handle, sql);
      if (this.#statements.size >= STATEMENT_CACHE_SIZE) {
        this.#statements.delete(this.#statements.keys().next().value!);
      }
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}

/** An I/O failure on a path the library says is read-only is a read-only disk. */
function refineIo(
  kind: SqlErrorKind,
  library: SqliteLibrary<SqliteHandle>,
  path: string | undefined,
): SqlErrorKind {
  if (kind !== "io" || path === undefined || library.readOnly === undefined) return kind;
  try {
    return library.readOnly(path) ? "readonly" : kind;
  } catch {
    return kind;
  }
}

// The libraries throw synchronously; the interface promises a rejection instead.
function settle<T>(run: () => T): Promise<T> {
  try {
    return Promise.resolve(run());
  } catch (error) {
    return Promise.reject(error);
  }
}

// The libraries disagree on booleans and undefined (bun:sqlite binds them, the others throw).
function bindable(params: readonly SqlParameter[]): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < params.length; i++) {
    const value = params[i];
    if (typeof value === "boolean" || value === undefined) {
      out ??= params.slice();
      out[i] = value === undefined ? null : value ? 1 : 0;
    }
  }
  return out ?? (params as unknown[]);
}

// Copies into a plain object (node:sqlite rows have a null prototype) and turns bigints that fit
// into numbers: integers are read as bigints so that a large one is exact instead of rounded
// (better-sqlite3, bun:sqlite) or an error (node:sqlite).
function plainRow(row: Record<string, unknown>): SqlRow {
  const out: SqlRow = {};
  for (const key in row) {
    const value = row[key];
    out[key] = typeof value === "bigint" && value >= MIN_SAFE && value <= MAX_SAFE
      ? Number(value)
      : value as SqlValue;
  }
  return out;
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Maps a SQLite library's error to a {@linkcode SqlErrorKind}, from the result code each library
 * exposes: `errcode` (`node:sqlite`, extended code), `errno` (`bun:sqlite`, extended code) or a
 * `code` name such as `"SQLITE_CONSTRAINT_UNIQUE"` (better-sqlite3, `bun:sqlite`).
 *
 * @param error What the library threw.
 * @returns The kind; `"other"` for anything without a SQLite result code.
 *
 * @example Classify a better-sqlite3 error
 * ```ts
 * const error = Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
 * console.log(classifySqliteError(error)); // busy
 * ```
 */
export function classifySqliteError(error: unknown): SqlErrorKind {
  if (typeof error !== "object" || error === null) return "other";
  const { errcode, errno, code } = error as { errcode?: unknown; errno?: unknown; code?: unknown };
  const named = typeof code === "string" && code.startsWith("SQLITE_");
  if (typeof errcode === "number") return kindOfResultCode(errcode);
  // Node's system errors also carry `errno` (negative); only trust it next to a SQLite code name.
  if (typeof errno === "number" && named) return kindOfResultCode(errno);
  return named ? kindOfResultName(code) : "other";
}

const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;
const SQLITE_CONSTRAINT_UNIQUE = 2067;

function kindOfResultCode(code: number): SqlErrorKind {
  switch (code & 0xff) {
    case 5: // SQLITE_BUSY
    case 6: // SQLITE_LOCKED
      return "busy";
    case 8: // SQLITE_READONLY
      return "readonly";
    case 11: // SQLITE_CORRUPT
    case 26: // SQLITE_NOTADB
      return "corrupt";
    case 13: // SQLITE_FULL
      return "full";
    case 10: // SQLITE_IOERR
    case 14: // SQLITE_CANTOPEN
      return "io";
    case 19: // SQLITE_CONSTRAINT
      return code === SQLITE_CONSTRAINT_UNIQUE || code === SQLITE_CONSTRAINT_PRIMARYKEY ? "unique" : "other";
    default:
      return "other";
  }
}

function kindOfResultName(name: string): SqlErrorKind {
  if (name.startsWith("SQLITE_BUSY") || name.startsWith("SQLITE_LOCKED")) return "busy";
  if (name === "SQLITE_CONSTRAINT_UNIQUE" || name === "SQLITE_CONSTRAINT_PRIMARYKEY") return "unique";
  if (name.startsWith("SQLITE_READONLY")) return "readonly";
  if (name.startsWith("SQLITE_CORRUPT") || name === "SQLITE_NOTADB") return "corrupt";
  if (name === "SQLITE_FULL") return "full";
  if (name.startsWith("SQLITE_IOERR") || name.startsWith("SQLITE_CANTOPEN")) return "io";
  return "other";
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
