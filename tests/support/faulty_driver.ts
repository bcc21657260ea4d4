// A SqlDriver wrapper that injects SQLite failures in front of a real driver: a fraction of
// statements fail as busy (SQLITE_BUSY) or with an I/O error (SQLITE_IOERR), and the database can
// be switched to "disk full" (SQLITE_FULL) or "read-only" (SQLITE_READONLY) for writes, and back.
//
// A failure is injected before the statement reaches the real connection, so the statement has no
// effect, which is what SQLite guarantees for these errors. The injected errors carry the result-code
// names the real libraries use, so the real driver's classifyError sees them as it would the real
// ones; the wrapper classifies them itself, so that they mean the same in front of any dialect's driver. ROLLBACK is never failed: SQLite only fails it when no transaction is open (it rolled back
// by itself), so failing it here would invent a state SQLite never produces (a connection stuck in a
// transaction).
import type {
  SqlConnection,
  SqlConnectionLease,
  SqlDriver,
  SqlErrorKind,
  SqlStatement,
} from "../../src/sql/driver.ts";
import { gate } from "./fixtures.ts";

/** What the wrapper does to statements; change it at any time with {@linkcode FaultyDriver.set}. */
export interface Faults {
  /** The fraction (0..1) of statements that fail as busy. */
  readonly busyRate: number;
  /** The fraction (0..1) of statements that fail with an I/O error. */
  readonly ioRate: number;
  /** `"full"` or `"readonly"`: every write (and COMMIT) fails so; `"ok"`: none does. */
  readonly disk: "ok" | "full" | "readonly";
}

/** A statement held back by {@linkcode FaultyDriver.hold}: it reaches SQLite once released. */
export interface HeldStatement {
  /** Resolves with the statement when it arrives (and is held). */
  readonly reached: Promise<SqlStatement>;
  /** Lets it through. */
  release(): void;
}

/** A driver with injected faults, and the switches and counters of the injection. */
export interface FaultyDriver {
  /** The driver to give `new SqlStorage(...)`. */
  readonly driver: SqlDriver;
  /** Changes the faults from the next statement on. */
  set(faults: Partial<Faults>): void;
  /**
   * Holds the next statement that `matches` before it reaches SQLite (a slow commit, as a busy
   * disk makes one), with the connection and any open transaction kept, until released.
   */
  hold(matches: (statement: SqlStatement) => boolean): HeldStatement;
  /** How many failures of each kind were injected so far. */
  readonly injected: Readonly<Record<"busy" | "io" | "full" | "readonly", number>>;
  /** How many statements were sent so far (failed or not, ROLLBACK included). */
  readonly statements: number;
}

// A statement that begins with WITH writes when its CTEs do (PostgreSQL's one-statement claims,
// enqueues and groups of advances).
const WRITE = /^\s*(INSERT|UPDATE|DELETE|REPLACE|COMMIT|END)\b|^\s*WITH\b[\s\S]*\b(INSERT|UPDATE|DELETE)\b/i;
const ROLLBACK = /^\s*ROLLBACK\b/i;

const injectedKinds = new WeakMap<Error, SqlErrorKind>();

/** A SQLite-shaped error: `code` is the result-code name better-sqlite3 and bun:sqlite expose. */
function sqliteError(code: string, message: string, kind: SqlErrorKind): Error {
  const error = Object.assign(new Error(`${message} (injected)`), { code });
  injectedKinds.set(error, kind);
  return error;
}

/**
 * Wraps `real` so that statements fail as `faults` says.
 *
 * @param real The driver that runs the statements that do not fail.
 * @param faults The initial faults (default none).
 * @param random The source of the failure draws, [0, 1); seed it for a reproducible run.
 */
export function faultyDriver(
  real: SqlDriver,
  faults: Partial<Faults> = {},
  random: () => number = Math.random,
): FaultyDriver {
  let current: Faults = { busyRate: 0, ioRate: 0, disk: "ok", ...faults };
  const injected = { busy: 0, io: 0, full: 0, readonly: 0 };

  let statements = 0;
  const fault = (statement: SqlStatement): Error | undefined => {
    statements++;
    if (ROLLBACK.test(statement.sql)) return undefined;
    if (current.disk !== "ok" && WRITE.test(statement.sql)) {
      injected[current.disk]++;
      return current.disk === "full"
        ? sqliteError("SQLITE_FULL", "database or disk is full", "full")
        : sqliteError("SQLITE_READONLY", "attempt to write a readonly database", "readonly");
    }
    const draw = random();
    if (draw < current.busyRate) {
      injected.busy++;
      return sqliteError("SQLITE_BUSY", "database is locked", "busy");
    }
    if (draw < current.busyRate + current.ioRate) {
      injected.io++;
      return sqliteError("SQLITE_IOERR_WRITE", "disk I/O error", "io");
    }
    return undefined;
  };
  const holds: {
    matches: (s: SqlStatement) => boolean;
    reached: (s: SqlStatement) => void;
    released: Promise<void>;
  }[] = [];
  const guarded = async <T>(statement: SqlStatement, run: (s: SqlStatement) => Promise<T>): Promise<T> => {
    const held = holds.findIndex((h) => h.matches(statement));
    if (held >= 0) {
      const [{ reached, released }] = holds.splice(held, 1);
      reached(statement);
      await released;
    }
    const error = fault(statement);
    return error === undefined ? await run(statement) : await Promise.reject(error);
  };

  const driver: SqlDriver = {
    dialect: real.dialect,
    async acquire(): Promise<SqlConnectionLease> {
      const lease = await real.acquire();
      const connection: SqlConnection = lease;
      return {
        ...(lease.session === undefined ? {} : { session: lease.session }),
        query: (statement) => guarded(statement, (s) => connection.query(s)),
        execute: (statement) => guarded(statement, (s) => connection.execute(s)),
        release: () => lease.release(),
      };
    },
    classifyError: (error: unknown): SqlErrorKind =>
      (error instanceof Error ? injectedKinds.get(error) : undefined) ?? real.classifyError(error),
    close: () => real.close(),
  };
  return {
    driver,
    set(faults) {
      current = { ...current, ...faults };
    },
    hold(matches) {
      const reached = gate<SqlStatement>();
      const released = gate();
      holds.push({ matches, reached: (s) => reached.open(s), released: released.promise });
      return { reached: reached.promise, release: () => released.open() };
    },
    injected,
    get statements() {
      return statements;
    },
  };
}
