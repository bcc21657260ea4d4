/**
 * {@linkcode PostgresStorage}: Reflow's storage in a PostgreSQL database that worker processes on
 * many hosts share, through [node-postgres](https://node-postgres.com) (`pg` 8; Node.js, Bun and
 * Deno). Claims take due runs with `FOR UPDATE SKIP LOCKED`, schedule slots and event waits are
 * decided under row locks, leases and due times are computed on the database server's clock, and
 * idle workers are woken by `LISTEN/NOTIFY` (see {@linkcode SqlStorage}).
 *
 * @example An engine on PostgreSQL (npm: `reflow-ts/postgres`, with `pg` installed)
 * ```ts ignore
 * import { createEngine } from "@reflow/core";
 * import { PostgresStorage } from "@reflow/core/postgres";
 *
 * const storage = new PostgresStorage("postgres://app@db.internal/app");
 * const engine = createEngine({ storage, workflows: [] });
 * await engine.start();
 * ```
 *
 * @module
 */

import pg from "pg";
import { ConfigError } from "../src/errors.ts";
import type {
  SqlConnectionLease,
  SqlDriver,
  SqlErrorKind,
  SqlParameter,
  SqlRow,
  SqlStatement,
  SqlSubscription,
} from "../src/sql/driver.ts";
import { SqlStorage, type SqlStorageOptions } from "../src/sql/sql_storage.ts";

/** A query as this driver sends it to `pg`. */
export interface PgQueryConfig {
  /** The name the statement is prepared under on the connection, once; omitted: parsed every time. */
  readonly name?: string;
  /** The SQL text, with `$1`-style placeholders. */
  readonly text: string;
  /** The placeholder values. */
  readonly values: unknown[];
  /** Turns the server's text values into JavaScript ones, per type OID. */
  readonly types: { getTypeParser(oid: number, format?: string): (value: string) => unknown };
}

/** What a `pg` query resolves to, as far as this driver reads it. */
export interface PgQueryResult {
  /** The rows, as plain objects keyed by column name. */
  readonly rows: Record<string, unknown>[];
  /** Rows changed (INSERT, UPDATE, DELETE) or returned (SELECT). */
  readonly rowCount: number | null;
}

/** The slice of a `pg` client (`Client` or a pool's client) this driver uses. */
export interface PgClient {
  /** Runs a query. */
  query(config: PgQueryConfig): Promise<PgQueryResult>;
  /** Listens for a lost connection (`"error"`) or a `NOTIFY` (`"notification"`). */
  on(event: "error" | "notification", listener: (value: unknown) => void): unknown;
  /** Stops listening. */
  removeListener(event: "error" | "notification", listener: (value: unknown) => void): unknown;
}

/** The slice of a client checked out of a `pg.Pool` this driver uses. */
export interface PgPoolClient extends PgClient {
  /** Gives the client back; with an error, the pool destroys it instead of lending it again. */
  release(error?: Error | boolean): void;
}

/** The slice of a `pg.Pool` this driver uses. */
export interface PgPool {
  /** Checks a client out. */
  connect(): Promise<PgPoolClient>;
  /** Closes every client. */
  end(): Promise<void>;
}

/** Options of {@linkcode postgresDriver}. */
export interface PostgresDriverOptions {
  /** With a connection string: the pool's size (default 10). One connection is kept for `LISTEN`. */
  readonly poolSize?: number;
  /**
   * Whether each statement is prepared once per connection and then only bound and executed
   * (default true), which spares the server parsing and planning it every time. Turn it off behind
   * a connection pooler that does not keep prepared statements (PgBouncer in transaction mode
   * before 1.21, or without `max_prepared_statements`).
   */
  readonly preparedStatements?: boolean;
}

/** Options of {@linkcode PostgresStorage}. */
export interface PostgresStorageOptions extends
  Omit<
    SqlStorageOptions,
    "synchronous" | "walAutocheckpointPages" | "walSizeLimitBytes" | "idleCheckpointMs"
  >,
  PostgresDriverOptions {}

const INT8 = 20;
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// bigint columns come back as numbers (as bigints beyond 2^53, where a number would round).
const types: PgQueryConfig["types"] = {
  getTypeParser(oid, format) {
    if (oid !== INT8) return pg.types.getTypeParser(oid, format as "text");
    return (value) => {
      const exact = BigInt(value);
      return exact >= MIN_SAFE && exact <= MAX_SAFE ? Number(exact) : exact;
    };
  },
};

/**
 * A {@linkcode SqlDriver} over a `pg.Pool`, for a custom {@linkcode SqlStorage}.
 *
 * A connection string opens a pool of the driver's own, closed by {@linkcode SqlDriver.close}; a
 * pool is used as given and left open, since its owner may still need it (it needs an `"error"`
 * listener of its owner's, as every `pg.Pool` does).
 *
 * @param connection A connection string (`postgres://user:password@host:port/database`), or a pool.
 * @param options The pool's size, with a connection string, and whether statements are prepared.
 * @returns The driver.
 * @throws {ConfigError} When `connection` is neither a string nor a pool, `poolSize` is not a
 *   positive integer, or `preparedStatements` not a boolean.
 *
 * @example Wrap the driver in a storage of your own
 * ```ts ignore
 * import { SqlStorage } from "../src/sql/sql_storage.ts";
 * import { postgresDriver } from "./postgres.ts";
 *
 * await using storage = new SqlStorage(postgresDriver("postgres://localhost/app"), { busyTimeoutMs: 2_000 });
 * await storage.initialize();
 * ```
 */
export function postgresDriver(connection: string | PgPool, options: PostgresDriverOptions = {}): SqlDriver {
  const { poolSize = 10, preparedStatements = true } = options;
  if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
    throw new ConfigError(`Invalid poolSize ${String(poolSize)}: expected a positive integer`, {
      field: "poolSize",
    });
  }
  if (typeof preparedStatements !== "boolean") {
    throw new ConfigError(`Invalid preparedStatements ${String(preparedStatements)}: expected a boolean`, {
      field: "preparedStatements",
    });
  }
  if (typeof connection === "string") {
    // A server that cannot be reached fails a checkout after 10 s instead of hanging it, and TCP
    // keepalives notice a connection whose peer vanished (a host cut off from the network).
    const pool = new pg.Pool({
      connectionString: connection,
      max: poolSize,
      connectionTimeoutMillis: 10_000,
      keepAlive: true,
    });
    // An idle client's lost connection is reported here; the pool drops the client by itself.
    pool.on("error", () => {});
    // A new client has no "error" listener of the pool's or ours between its checkout and our
    // continuation: a termination arriving in the same packet as its ready message would crash the
    // process. Kept on it for good; a checkout still learns of the loss from its first query.
    pool.on("connect", (client) => client.on("error", () => {}));
    return new PostgresDriver(pool as unknown as PgPool, true, preparedStatements);
  }
  if (typeof connection !== "object" || connection === null || typeof connection.connect !== "function") {
    throw new ConfigError(
      `Invalid PostgreSQL connection ${String(connection)}: expected a connection string or a pg.Pool`,
      { field: "connection" },
    );
  }
  return new PostgresDriver(connection, false, preparedStatements);
}

/**
 * Names for prepared statements, one per SQL text: the core keeps its texts constant (a text per
 * statement, per group size for batched advances), so there are a few hundred at most.
 */
const statementNames = new Map<string, string>();

/** The query `pg` is sent for a statement: named (prepared once per connection) when it takes parameters. */
function queryConfig(statement: SqlStatement, prepared: boolean): PgQueryConfig {
  const values = bindable(statement.params);
  // Parameterless statements are transaction control, migrations and setup: nothing to reuse.
  if (!prepared || values.length === 0) return { text: statement.sql, values, types };
  let name = statementNames.get(statement.sql);
  if (name === undefined) {
    name = `reflow_${statementNames.size + 1}`;
    statementNames.set(statement.sql, name);
  }
  return { name, text: statement.sql, values, types };
}

class PostgresDriver implements SqlDriver {
  readonly dialect = "postgres" as const;
  #pool: PgPool;
  #owned: boolean;
  #prepared: boolean;
  #closed = false;

  constructor(pool: PgPool, owned: boolean, prepared: boolean) {
    this.#pool = pool;
    this.#owned = owned;
    this.#prepared = prepared;
  }

  async acquire(): Promise<SqlConnectionLease> {
    if (this.#closed) throw new Error("The PostgreSQL driver is closed");
    const client = await this.#pool.connect();
    // A checked-out client whose connection is lost emits "error": without a listener that would
    // crash the process, and the client must then go back broken so the pool does not lend it again.
    let broken: Error | undefined;
    const onError = (error: unknown) => {
      broken ??= error instanceof Error ? error : new Error(String(error));
    };
    client.on("error", onError);
    let released = false;
    const run = async (statement: SqlStatement): Promise<PgQueryResult> => {
      if (broken !== undefined) throw broken;
      try {
        return await client.query(queryConfig(statement, this.#prepared));
      } catch (error) {
        if (!isServerError(error)) onError(error);
        throw error;
      }
    };
    return {
      session: client,
      query: async (statement) => (await run(statement)).rows as SqlRow[],
      execute: async (statement) => ({ changes: (await run(statement)).rowCount ?? 0 }),
      release: () => {
        if (released) return;
        released = true;
        client.removeListener("error", onError);
        client.release(broken ?? undefined);
      },
    };
  }

  async listen(statement: SqlStatement, listener: () => void): Promise<SqlSubscription> {
    const subscription = new Subscription(this.#pool, statement, listener);
    await subscription.connect();
    return subscription;
  }

  classifyError(error: unknown): SqlErrorKind {
    return classifyPostgresError(error);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#owned) await this.#pool.end();
  }
}

/** One pooled client kept for notifications, replaced after a lost connection. */
class Subscription implements SqlSubscription {
  #pool: PgPool;
  #statement: SqlStatement;
  #listener: () => void;
  #client: PgPoolClient | undefined;
  #closed = false;
  #retryDelayMs = 100;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #onNotification = () => this.#listener();
  #onError = (error: unknown) => this.#lost(error);

  constructor(pool: PgPool, statement: SqlStatement, listener: () => void) {
    this.#pool = pool;
    this.#statement = statement;
    this.#listener = listener;
  }

  async connect(): Promise<void> {
    const client = await this.#pool.connect();
    client.on("error", this.#onError);
    client.on("notification", this.#onNotification);
    try {
      await client.query({ text: this.#statement.sql, values: bindable(this.#statement.params), types });
    } catch (error) {
      this.#drop(client, error);
      throw error;
    }
    if (this.#closed) {
      this.#drop(client, undefined);
      return;
    }
    this.#client = client;
    this.#retryDelayMs = 100;
  }

  close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    // Released broken: a client that ran LISTEN must not serve other queries.
    if (client !== undefined) this.#drop(client, new Error("LISTEN connection closed"));
    return Promise.resolve();
  }

  #lost(error: unknown): void {
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) this.#drop(client, error);
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.connect().then(
        () => this.#listener(), // Notifications may have been missed while disconnected.
        (failure) => this.#lost(failure),
      );
    }, this.#retryDelayMs);
    this.#retryDelayMs = Math.min(this.#retryDelayMs * 2, 5_000);
  }

  #drop(client: PgPoolClient, error: unknown): void {
    client.removeListener("notification", this.#onNotification);
    client.removeListener("error", this.#onError);
    // An "error" after removal would crash the process: keep a listener that ignores it.
    client.on("error", () => {});
    client.release(error instanceof Error ? error : new Error(String(error ?? "released")));
  }
}

// Bytes go as Buffers (pg's binary parameter form); undefined binds as NULL, as on every driver.
function bindable(params: readonly SqlParameter[]): unknown[] {
  return params.map((value) => value === undefined ? null : value);
}

/** Whether an error came from the server (a SQLSTATE), so that the connection itself is fine. */
function isServerError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && !/^(08|57P0)/.test(code);
}

/**
 * Maps a `pg` error to a {@linkcode SqlErrorKind} by its SQLSTATE: serialization failures,
 * deadlocks, lock timeouts and too many connections are `"busy"` (retried); a unique violation is
 * `"unique"`; a read-only transaction `"readonly"`; a full disk `"full"`; a lost or refused
 * connection (class 08, `57P01`–`57P03`, or a socket error) `"io"`.
 *
 * @param error What `pg` threw.
 * @returns The kind; `"other"` for anything else.
 *
 * @example Classify a deadlock
 * ```ts
 * console.log(classifyPostgresError(Object.assign(new Error("deadlock detected"), { code: "40P01" }))); // busy
 * ```
 */
export function classifyPostgresError(error: unknown): SqlErrorKind {
  if (typeof error !== "object" || error === null) return "other";
  const code = (error as { code?: unknown }).code;
  if (typeof code !== "string" || !/^[0-9A-Z]{5}$/.test(code)) {
    // Socket errors (ECONNREFUSED, ECONNRESET) and pg's own "Connection terminated" carry no SQLSTATE.
    return error instanceof Error ? "io" : "other";
  }
  if (code === "40001" || code === "40P01" || code === "55P03" || code === "53300") return "busy";
  if (code === "23505") return "unique";
  if (code === "25006") return "readonly";
  if (code === "53100") return "full";
  if (code.startsWith("08") || /^57P0[1-3]$/.test(code) || code.startsWith("58")) return "io";
  return "other";
}

/**
 * Reflow's storage in PostgreSQL (see the module's documentation and {@linkcode SqlStorage}).
 *
 * @example Open, initialise and close
 * ```ts ignore
 * import { PostgresStorage } from "./postgres.ts";
 *
 * await using storage = new PostgresStorage("postgres://localhost/app", { poolSize: 20 });
 * await storage.initialize(); // migrates under an advisory lock: safe from every host at once
 * ```
 */
export class PostgresStorage extends SqlStorage {
  /**
   * Creates the storage. Nothing is sent to the server until the first call (usually
   * `initialize()`, which applies migrations and measures the server clock's offset).
   *
   * @param connection A connection string, or a `pg.Pool` used as given and left open on close.
   * @param options Pool size, prepared statements, lock waiting (`busyTimeoutMs`, PostgreSQL's
   *   `lock_timeout`), the local clock and the lease ids; see {@linkcode PostgresStorageOptions}.
   * @throws {ConfigError} If an option or the connection is invalid.
   */
  constructor(connection: string | PgPool, options: PostgresStorageOptions = {}) {
    if (typeof options !== "object" || options === null) {
      throw new ConfigError(`Invalid storage options ${String(options)}: expected an object`, {
        field: "options",
      });
    }
    const { poolSize, preparedStatements, ...storageOptions } = options;
    // No idle checkpoints: the server manages its write-ahead log, so there is nothing to time.
    super(postgresDriver(connection, { poolSize, preparedStatements }), {
      idleCheckpointMs: null,
      ...storageOptions,
    });
  }
}
