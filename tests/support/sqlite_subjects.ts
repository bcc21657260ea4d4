// The SQLite storages under test in this runtime: one subject per driver that loads here, each
// opening fresh temp-file databases. Drivers are imported lazily, because importing one that
// cannot load (bun:sqlite outside Bun, better-sqlite3 below Node-API 10) throws or crashes.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import type { SqlDriver } from "../../src/sql/driver.ts";
import type { SqlStorage, SqlStorageOptions } from "../../src/sql/sql_storage.ts";
import type { StorageAdapter } from "../../src/storage/adapter.ts";
import { runtimeName } from "./runtime.ts";

/** What a driver module gives the tests. */
export interface DriverModule {
  /** `new SQLiteStorage(pathOrHandle, options)`. */
  open(pathOrHandle: string | object, options?: SqlStorageOptions): SqlStorage;
  /** The driver alone, for the evening-out checks. */
  driver(pathOrHandle: string | object): SqlDriver;
  /** Opens the library's own handle on a file (for EXPLAIN, read-only and handle-form tests). */
  openHandle(path: string, options?: { readonly?: boolean }): Promise<RawHandle>;
}

/** The part of every library's handle the tests use directly. */
export interface RawHandle {
  prepare(sql: string): { all(...params: unknown[]): unknown[]; run(...params: unknown[]): unknown };
  close(): unknown;
}

/** One driver in this runtime. */
export interface SqliteSubject {
  /** The driver's name, e.g. "better-sqlite3". */
  readonly name: string;
  /** Whether it loads in this runtime. */
  readonly available: boolean;
  /** Why not, when it does not. */
  readonly skipReason: string | false;
  /** Loads the driver module. */
  load(): Promise<DriverModule>;
  /** A fresh temp-file path (in this subject's temp directory), not created yet. */
  tempPath(name?: string): string;
  /** An initialised storage on a fresh temp file. */
  open(): Promise<StorageAdapter>;
  /** A second initialised storage (its own connection) on the file of the last `open()`. */
  openPeer(): Promise<StorageAdapter>;
  /** Closes every storage opened since the last call. */
  closeAll(): Promise<void>;
  /** Closes everything and deletes the temp directory. */
  cleanup(): Promise<void>;
}

type Loader = () => Promise<DriverModule>;

/** The Node-API version this runtime implements (better-sqlite3 13 needs 10). */
export const napi: number = Number(process.versions.napi ?? 0);
/** Whether `node:sqlite` loads here without a flag. */
export const hasNodeSqlite: boolean = process.getBuiltinModule?.("node:sqlite") !== undefined;
const isBun = (globalThis as { Bun?: unknown }).Bun !== undefined;

// deno-lint-ignore no-explicit-any
type AnyCtor = new (...args: any[]) => any;

const loadBetterSqlite3: Loader = async () => {
  const mod = await import("../../drivers/better_sqlite3.ts");
  const Database = (await import("better-sqlite3")).default as unknown as AnyCtor;
  return {
    open: (p, o) => new mod.SQLiteStorage(p as string, o),
    driver: (p) => mod.betterSqlite3Driver(p as string),
    openHandle: (path, o) => Promise.resolve(new Database(path, { readonly: o?.readonly ?? false })),
  };
};

const loadNodeSqlite = (file: "node_sqlite" | "deno_sqlite"): Loader => async () => {
  const mod = file === "node_sqlite"
    ? await import("../../drivers/node_sqlite.ts")
    : await import("../../drivers/deno_sqlite.ts");
  const driver = "nodeSqliteDriver" in mod ? mod.nodeSqliteDriver : mod.denoSqliteDriver;
  const { DatabaseSync } = await import("node:sqlite");
  return {
    open: (p, o) => new mod.SQLiteStorage(p as string, o),
    driver: (p) => driver(p as string),
    openHandle: (path, o) => Promise.resolve(new DatabaseSync(path, { readOnly: o?.readonly ?? false })),
  };
};

const loadBunSqlite: Loader = async () => {
  const mod = await import("../../drivers/bun_sqlite.ts");
  const specifier = "bun:sqlite";
  const { Database } = (await import(specifier)) as { Database: AnyCtor };
  return {
    open: (p, o) => new mod.SQLiteStorage(p as string, o),
    driver: (p) => mod.bunSqliteDriver(p as string),
    openHandle: (path, o) => Promise.resolve(new Database(path, o?.readonly ? { readonly: true } : {})),
  };
};

function subject(name: string, skipReason: string | false, load: Loader): SqliteSubject {
  let dir: string | undefined;
  let count = 0;
  let lastPath: string | undefined;
  let module: Promise<DriverModule> | undefined;
  const opened: StorageAdapter[] = [];
  const tempPath = (file?: string): string => {
    dir ??= mkdtempSync(join(tmpdir(), "reflow-sql-"));
    return join(dir, file ?? `db-${++count}.sqlite`);
  };
  const openAt = async (path: string): Promise<StorageAdapter> => {
    module ??= load();
    const storage = (await module).open(path);
    opened.push(storage);
    await storage.initialize();
    return storage;
  };
  const closeAll = async (): Promise<void> => {
    for (const storage of opened.splice(0)) await storage.close();
  };
  return {
    name,
    available: skipReason === false,
    skipReason,
    load: () => module ??= load(),
    tempPath,
    open: () => openAt(lastPath = tempPath()),
    openPeer: () => {
      if (lastPath === undefined) throw new Error("openPeer() needs an open() first");
      return openAt(lastPath);
    },
    closeAll,
    cleanup: async () => {
      await closeAll();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
      dir = undefined;
    },
  };
}

const napiReason = napi >= 10 ? false : `better-sqlite3 13 needs Node-API >= 10 (this runtime has ${napi})`;

/** The drivers this runtime should load, in a fixed order; the others are listed as skipped. */
export const sqliteSubjects: readonly SqliteSubject[] = runtimeName === "deno"
  ? [
    subject("deno-sqlite", hasNodeSqlite ? false : "node:sqlite is missing", loadNodeSqlite("deno_sqlite")),
    subject("better-sqlite3", napiReason, loadBetterSqlite3),
  ]
  : runtimeName === "bun"
  ? [
    subject("bun:sqlite", isBun ? false : "not Bun", loadBunSqlite),
    subject("better-sqlite3", napiReason, loadBetterSqlite3),
    subject("node:sqlite", hasNodeSqlite ? false : "node:sqlite is missing", loadNodeSqlite("node_sqlite")),
  ]
  : [
    subject("better-sqlite3", napiReason, loadBetterSqlite3),
    subject(
      "node:sqlite",
      hasNodeSqlite ? false : "node:sqlite needs Node >= 22.13",
      loadNodeSqlite("node_sqlite"),
    ),
  ];
