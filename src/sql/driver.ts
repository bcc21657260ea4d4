/**
 * The minimal interface between Reflow's one SQL storage ({@linkcode SqlStorage}) and a database
 * library. A driver lends a connection, runs already-built statements on it and takes it back;
 * SQL text, placeholders, transactions, pragmas, busy retries and migrations stay in the core, so
 * a driver cannot get them subtly wrong.
 *
 * The shapes are declared here, structurally: the core never imports a library's types.
 *
 * @module
 */

import type { StorageErrorKind } from "../errors.ts";

/** A value a driver returns in a row: SQL NULL, a number (a bigint only beyond 2^53), text or a blob. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/**
 * A value a statement may be given. Booleans are bound as 1 and 0; drivers also bind a stray
 * `undefined` as NULL, so JavaScript callers get one behaviour from every library.
 */
export type SqlParameter = SqlValue | boolean;

/** One result row as a plain object (`Object.prototype`), keyed by column name. */
export type SqlRow = Record<string, SqlValue>;

/** An already-built statement: SQL text with positional placeholders and their values, in order. */
export interface SqlStatement {
  /** The SQL text. The core keeps these texts constant so that a driver's statement cache hits. */
  readonly sql: string;
  /** The values of the placeholders, in order. */
  readonly params: readonly SqlParameter[];
}

/** What {@linkcode SqlConnection.execute} reports. */
export interface SqlExecuteResult {
  /**
   * Rows inserted, updated or deleted by the statement (an upsert's update counts as one).
   * Meaningful for INSERT, UPDATE and DELETE only: SQLite leaves other statements' count as the
   * previous write's.
   */
  readonly changes: number;
}

/**
 * One database connection. A transaction is a `BEGIN … COMMIT` sent by the core through one
 * connection between {@linkcode SqlDriver.acquire} and {@linkcode SqlConnectionLease.release}.
 */
export interface SqlConnection {
  /**
   * Runs a statement and returns its rows.
   *
   * @param statement The statement; any kind (a statement that yields no rows returns `[]`).
   * @returns The rows, as plain objects; `[]` when there is none.
   * @throws The library's error; the core classifies it with {@linkcode SqlDriver.classifyError}.
   */
  query(statement: SqlStatement): Promise<SqlRow[]>;

  /**
   * Runs a statement for its effect.
   *
   * @param statement The statement; any rows it yields are discarded.
   * @returns The number of rows it changed.
   * @throws The library's error; the core classifies it with {@linkcode SqlDriver.classifyError}.
   */
  execute(statement: SqlStatement): Promise<SqlExecuteResult>;
}

/** A connection lent by {@linkcode SqlDriver.acquire}, to be given back exactly once. */
export interface SqlConnectionLease extends SqlConnection {
  /**
   * The underlying connection, the same object each time that connection is lent: the core sends
   * its per-connection settings once per session, so a pool's new connection gets them before
   * its first statement. Omitted by a driver with a single connection (the driver is the session).
   */
  readonly session?: object;
  /** Gives the connection back (to the pool, or to the next waiter of a single connection). */
  release(): void;
}

/** The SQL dialects the core writes. */
export type SqlDialect = "sqlite" | "postgres";

/** A subscription of {@linkcode SqlDriver.listen}. */
export interface SqlSubscription {
  /** Ends the subscription and gives its connection back. */
  close(): Promise<void>;
}

/**
 * The failure kinds a driver reports for its library's errors; the core adds `"schema"` and
 * `"closed"` itself. `"busy"` is the one the core retries.
 */
export type SqlErrorKind = Exclude<StorageErrorKind, "schema" | "closed">;

/**
 * A database library adapted for {@linkcode SqlStorage}.
 *
 * A single-connection driver (SQLite) serialises {@linkcode SqlDriver.acquire} so that one
 * transaction at a time uses its connection; a pooled driver lends one pooled connection per
 * call. Either way the core sends a whole transaction through the connection it was lent.
 *
 * @example A driver over an in-memory table of canned rows
 * ```ts
 * const driver: SqlDriver = {
 *   dialect: "sqlite",
 *   acquire(): Promise<SqlConnectionLease> {
 *     return Promise.resolve({
 *       query: () => Promise.resolve([{ answer: 42 }]),
 *       execute: () => Promise.resolve({ changes: 0 }),
 *       release: () => {},
 *     });
 *   },
 *   classifyError: () => "other",
 *   close: () => Promise.resolve(),
 * };
 * const connection = await driver.acquire();
 * console.log(await connection.query({ sql: "SELECT 42 AS answer", params: [] }));
 * connection.release();
 * ```
 */
export interface SqlDriver {
  /** Which SQL the core must write for this database. */
  readonly dialect: SqlDialect;

  /**
   * Lends a connection for one statement or one transaction.
   *
   * @returns A connection that the caller must release.
   * @throws The library's error when no connection can be had.
   */
  acquire(): Promise<SqlConnectionLease>;

  /**
   * Tells what kind of failure an error thrown by this driver's connections is: `"busy"`
   * (locked; worth retrying), `"unique"` (a uniqueness constraint), `"readonly"`, `"corrupt"`
   * (not a database, or a damaged one), `"full"`, `"io"`, or `"other"`.
   *
   * @param error What a connection method threw.
   * @returns The kind.
   */
  classifyError(error: unknown): SqlErrorKind;

  /**
   * Optional, for databases shared by several hosts: keeps a connection of its own on which
   * `statement` (the core's subscription, such as PostgreSQL's `LISTEN`) has run, and calls
   * `listener` for every notification that arrives on it. After a lost connection the driver
   * reconnects by itself, runs `statement` again and calls `listener` once, since notifications
   * may have been missed meanwhile.
   *
   * @param statement The subscription statement.
   * @param listener Called for each notification.
   * @returns The subscription, once the statement has run.
   * @throws The library's error when no connection can be had.
   */
  listen?(statement: SqlStatement, listener: () => void): Promise<SqlSubscription>;

  /**
   * Waits for the lent connection to come back, then closes the database (unless the caller
   * owns the handle it was given).
   *
   * @returns When closed.
   */
  close(): Promise<void>;
}
