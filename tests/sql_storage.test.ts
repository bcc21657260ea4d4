// The SQL storage beyond the conformance cases: query plans, migrations, failure kinds, busy
// retries, statement budgets, and each driver's evening-out of its library.
import { after, afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError, StorageError, type StorageErrorKind } from "../src/errors.ts";
import type { SqlConnection, SqlConnectionLease, SqlDriver, SqlStatement } from "../src/sql/driver.ts";
import { GroupCommit } from "../src/sql/group_commit.ts";
import { FifoMutex } from "../src/sql/mutex.ts";
import { SqlStorage } from "../src/sql/sql_storage.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../src/sql/sqlite/schema.ts";
import * as SQL from "../src/sql/sqlite/statements.ts";
import { classifySqliteError, createSqliteDriver } from "../src/sql/sqlite/support.ts";
import type { NewRun, StepResult } from "../src/storage/adapter.ts";
import { wait as eventWait } from "../src/storage/conformance_support.ts";
import { eventually } from "./support/fixtures.ts";
import { faultyDriver } from "./support/faulty_driver.ts";
import { runtimeName, spawnArgs } from "./support/runtime.ts";
import { type DriverModule, type RawHandle, sqliteSubjects } from "./support/sqlite_subjects.ts";

const T0 = 1_700_000_000_000;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SLOT_WORKER = fileURLToPath(new URL("./support/slot_worker.ts", import.meta.url));

/** Whether this process may mount a tmpfs and remount it read-only (root on Linux), probed once. */
const readOnlyMounts: boolean = (() => {
  if (process.platform !== "linux") return false;
  const dir = mkdtempSync(join(tmpdir(), "reflow-mount-probe-"));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir], { stdio: "ignore" });
    execFileSync("umount", [dir], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

function newRun(id: string, overrides: Partial<NewRun> = {}): NewRun {
  return { id, workflowName: "wf", input: "{}", idempotencyKey: null, createdAt: T0, ...overrides };
}

function step(runId: string, stepName: string): StepResult {
  return {
    runId,
    stepName,
    status: "completed",
    output: '"ok"',
    error: null,
    attempts: 1,
    dueAt: null,
    updatedAt: T0,
  };
}

function isStorageError(kind: StorageErrorKind, operation?: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof StorageError, `expected a StorageError, got ${String(error)}`);
    assert.equal(error.kind, kind, `kind of: ${error.message}`);
    if (operation !== undefined) assert.equal(error.operation, operation);
    return true;
  };
}

/** Wraps a driver to record the SQL text of every statement sent. */
function recording(driver: SqlDriver, log: string[]): SqlDriver {
  return {
    dialect: driver.dialect,
    classifyError: (error) => driver.classifyError(error),
    close: () => driver.close(),
    acquire: async (): Promise<SqlConnectionLease> => {
      const connection = await driver.acquire();
      return {
        query: (statement: SqlStatement) => (log.push(statement.sql), connection.query(statement)),
        execute: (statement: SqlStatement) => (log.push(statement.sql), connection.execute(statement)),
        release: () => connection.release(),
      };
    },
  };
}

/**
 * Wraps a driver so that the statement with text `sql` that has `nth` (from 0) of its text before it
 * throws `error` instead of reaching the database.
 */
function failing(driver: SqlDriver, sql: string, nth: number, error: unknown): SqlDriver {
  let seen = 0;
  const maybeFail = (statement: SqlStatement): void => {
    if (statement.sql === sql && seen++ === nth) throw error;
  };
  return {
    dialect: driver.dialect,
    classifyError: (e) => driver.classifyError(e),
    close: () => driver.close(),
    acquire: async (): Promise<SqlConnectionLease> => {
      const connection = await driver.acquire();
      return {
        query: async (statement: SqlStatement) => (maybeFail(statement), await connection.query(statement)),
        execute: async (
          statement: SqlStatement,
        ) => (maybeFail(statement), await connection.execute(statement)),
        release: () => connection.release(),
      };
    },
  };
}

function rows(handle: RawHandle, sql: string, ...params: unknown[]): Record<string, unknown>[] {
  return (handle.prepare(sql).all(...params) as Record<string, unknown>[]).map((row) => ({ ...row }));
}

describe("FifoMutex", () => {
  test("hands the lock over in call order", async () => {
    const mutex = new FifoMutex();
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        await mutex.lock();
        order.push(i);
        if (i % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
        mutex.unlock();
      }),
    );
    assert.deepEqual(order, Array.from({ length: 200 }, (_, i) => i));
  });
});

describe("GroupCommit", () => {
  /** A transaction runner that logs each group's writes and, with `ms`, takes that long as a network database would. */
  const runner = (groups: string[][], ms = 0, fail?: (group: number) => boolean) => {
    return async (body: (connection: SqlConnection) => Promise<void>): Promise<void> => {
      const group: string[] = [];
      const connection: SqlConnection = {
        query: () => Promise.resolve([]),
        execute: async (statement) => {
          if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
          group.push(statement.sql);
          return { changes: 1 };
        },
      };
      await body(connection);
      if (fail?.(groups.length)) {
        groups.push([]);
        throw new Error(`group ${groups.length - 1} failed`);
      }
      groups.push(group);
    };
  };
  const write = (sql: string) => async (connection: SqlConnection) => {
    await connection.execute({ sql, params: [] });
    return sql;
  };
  type Write = ReturnType<typeof write>;
  /** A group writer that runs each write's statements, in order, in one transaction of `transaction`'s. */
  const inTransaction = (transaction: ReturnType<typeof runner>) => async (group: readonly Write[]) => {
    const results: string[] = [];
    await transaction(async (connection) => {
      for (const each of group) results.push(await each(connection));
    });
    return results;
  };

  test("writes submitted in one turn share one transaction and each gets its own result", async () => {
    const groups: string[][] = [];
    const commit = new GroupCommit(inTransaction(runner(groups)));
    const names = Array.from({ length: 10 }, (_, i) => `w${i}`);
    assert.deepEqual(await Promise.all(names.map((name) => commit.submit(write(name)))), names);
    assert.deepEqual(groups, [names]);
  });

  test("with a slow (async) database, writes submitted during a transaction form the next group, in order", async () => {
    const groups: string[][] = [];
    const commit = new GroupCommit(inTransaction(runner(groups, 2)));
    const first = commit.submit(write("a"));
    await new Promise((resolve) => setTimeout(resolve, 1));
    const later = ["b", "c", "d"].map((name) => commit.submit(write(name)));
    assert.deepEqual(await Promise.all([first, ...later]), ["a", "b", "c", "d"]);
    assert.deepEqual(groups, [["a"], ["b", "c", "d"]]);
  });

  test("after a failure it is told to, each write of the group is tried alone, in order", async () => {
    const groups: string[][] = [];
    const busy = new Error("busy");
    // Any group of more than one write fails, as random statement failures make a large group likely to.
    const transaction = runner(groups);
    const commit = new GroupCommit(
      inTransaction(async (body) => {
        let writes = 0;
        await transaction(async (connection) => {
          await body({ ...connection, execute: (statement) => (writes++, connection.execute(statement)) });
          if (writes > 1) throw busy;
        });
      }),
      (error) => error === busy,
    );
    const names = ["a", "b", "c"];
    assert.deepEqual(await Promise.all(names.map((name) => commit.submit(write(name)))), names);
    assert.deepEqual(groups, [["a"], ["b"], ["c"]]);
    // Another failure is not retried: every write of the group gets it.
    const other = new GroupCommit<Write, string>(
      () => Promise.reject(new Error("full")),
      (error) => error === busy,
    );
    const outcomes = await Promise.allSettled(names.map((name) => other.submit(write(name))));
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected", "rejected"]);
  });

  test("a failed transaction rejects every write in it, and the next group still commits", async () => {
    const groups: string[][] = [];
    const commit = new GroupCommit(inTransaction(runner(groups, 2, (group) => group === 0)));
    const failed = ["a", "b"].map((name) => commit.submit(write(name)));
    await new Promise((resolve) => setTimeout(resolve, 1));
    const next = commit.submit(write("c"));
    const outcomes = await Promise.allSettled([...failed, next]);
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected", "fulfilled"]);
    for (const outcome of outcomes.slice(0, 2)) {
      assert.equal(((outcome as PromiseRejectedResult).reason as Error).message, "group 0 failed");
    }
    assert.deepEqual(groups, [[], ["c"]]);
  });
});

describe("createSqliteDriver", () => {
  test("prepares each SQL text once and evens out parameters and rows", async () => {
    const prepared: string[] = [];
    const bound: unknown[][] = [];
    const handle = { close: (): void => {} };
    const driver = createSqliteDriver(handle, {
      open: () => handle,
      prepare: (_, sql) => {
        prepared.push(sql);
        return {
          all: (...params: unknown[]) => {
            bound.push(params);
            return [Object.assign(Object.create(null), { small: 7n, big: 2n ** 60n, text: "t" })];
          },
          run: () => ({ changes: 2n }),
        };
      },
    });
    const connection = await driver.acquire();
    try {
      for (let i = 0; i < 3; i++) {
        const [row] = await connection.query({ sql: "SELECT ?", params: [true, false, 1n, "x"] });
        assert.equal(Object.getPrototypeOf(row), Object.prototype);
        assert.deepEqual(row, { small: 7, big: 2n ** 60n, text: "t" });
      }
      assert.deepEqual(await connection.execute({ sql: "UPDATE", params: [] }), { changes: 2 });
      const sloppy = [undefined] as unknown as SqlStatement["params"];
      await connection.query({ sql: "SELECT ?", params: sloppy });
    } finally {
      connection.release();
    }
    assert.deepEqual(prepared, ["SELECT ?", "UPDATE"]);
    assert.deepEqual(bound[0], [1, 0, 1n, "x"]);
    assert.deepEqual(bound[3], [null]);
    await driver.close();
    await assert.rejects(driver.acquire());
  });

  test("reports an I/O failure on a path its library calls read-only as kind readonly", async () => {
    const cantOpen = Object.assign(new Error("unable to open database file"), { code: "SQLITE_CANTOPEN" });
    const library = (readOnly: boolean) => ({
      open: () => ({ close() {} }),
      prepare: () => ({
        all: () => {
          throw cantOpen;
        },
        run: () => ({ changes: 0 }),
      }),
      readOnly: () => readOnly,
    });
    for (const readOnly of [true, false]) {
      const storage = new SqlStorage(createSqliteDriver("app.db", library(readOnly)));
      await assert.rejects(storage.getRun("r1"), isStorageError(readOnly ? "readonly" : "io", "getRun"));
      await storage.close();
    }
    const unopenable = {
      ...library(true),
      open: (): never => {
        throw cantOpen;
      },
    };
    assert.throws(() => createSqliteDriver("app.db", unopenable), isStorageError("readonly", "open"));
  });

  test("classifies SQLite result codes from each library's error shape", () => {
    const cases: [object, StorageErrorKind][] = [
      [{ code: "ERR_SQLITE_ERROR", errcode: 5 }, "busy"],
      [{ code: "ERR_SQLITE_ERROR", errcode: 517 }, "busy"], // SQLITE_BUSY_SNAPSHOT
      [{ code: "ERR_SQLITE_ERROR", errcode: 2067 }, "unique"],
      [{ code: "ERR_SQLITE_ERROR", errcode: 1555 }, "unique"],
      [{ code: "ERR_SQLITE_ERROR", errcode: 787 }, "other"], // SQLITE_CONSTRAINT_FOREIGNKEY
      [{ code: "SQLITE_LOCKED", errno: 6 }, "busy"],
      [{ code: "SQLITE_READONLY", errno: 8 }, "readonly"],
      [{ code: "SQLITE_NOTADB", errno: 26 }, "corrupt"],
      [{ code: "SQLITE_CORRUPT" }, "corrupt"],
      [{ code: "SQLITE_FULL" }, "full"],
      [{ code: "SQLITE_IOERR_WRITE" }, "io"],
      [{ code: "SQLITE_CANTOPEN" }, "io"],
      [{ code: "SQLITE_CONSTRAINT_UNIQUE" }, "unique"],
      [{ code: "SQLITE_CONSTRAINT_NOTNULL" }, "other"],
      [{ code: "ENOENT", errno: -2 }, "other"],
      [new TypeError("x"), "other"],
    ];
    for (const [error, kind] of cases) assert.equal(classifySqliteError(error), kind, JSON.stringify(error));
    assert.equal(classifySqliteError("busy"), "other");
    assert.equal(classifySqliteError(null), "other");
  });
});

describe("SqlStorage options", () => {
  const driver: SqlDriver = {
    dialect: "sqlite",
    acquire: () => Promise.reject(new Error("unused")),
    classifyError: () => "other",
    close: () => Promise.resolve(),
  };
  test("rejects invalid options and dialects with a ConfigError", () => {
    const bad: unknown[] = [
      { synchronous: "OFF" },
      { busyTimeoutMs: -1 },
      { busyTimeoutMs: 1.5 },
      { busyTimeoutMs: Infinity },
      { now: 5 },
      { newId: "x" },
      { busyTimeout: 10 },
      "FULL",
      { walAutocheckpointPages: -1 },
      { walAutocheckpointPages: "1000" },
      { walSizeLimitBytes: 1.5 },
      { walSizeLimitBytes: Number.NaN },
      { idleCheckpointMs: -5 },
      { idleCheckpointMs: Infinity },
      null,
    ];
    for (const options of bad) {
      assert.throws(() => new SqlStorage(driver, options as never), ConfigError, JSON.stringify(options));
    }
    assert.throws(() => new SqlStorage({ ...driver, dialect: "mysql" as never }), ConfigError);
    assert.throws(() => new SqlStorage(null as never), ConfigError);
  });
});

for (const subject of sqliteSubjects) {
  const label = `${subject.name} on ${runtimeName}`;
  describe(label, { skip: subject.skipReason }, () => {
    let mod: DriverModule;
    const handles: RawHandle[] = [];
    const storages: SqlStorage[] = [];
    const load = async (): Promise<DriverModule> => mod ??= await subject.load();
    const open = async (path: string, options?: Parameters<DriverModule["open"]>[1]): Promise<SqlStorage> => {
      const storage = (await load()).open(path, options);
      storages.push(storage);
      return storage;
    };
    const raw = async (path: string, readonly = false): Promise<RawHandle> => {
      const handle = await (await load()).openHandle(path, { readonly });
      handles.push(handle);
      return handle;
    };
    /**
     * A closed database file at an older schema version, made by that version's migrations, with
     * runs r1 (input `{"v":N}`, key "key") and r2, a step of r1, and (from version 2) an event for r1.
     */
    const legacyDatabase = async (version: number): Promise<string> => {
      const path = subject.tempPath();
      const handle = await raw(path);
      for (const migration of MIGRATIONS.filter((migration) => migration.version <= version)) {
        for (const sql of migration.statements) handle.prepare(sql).run();
      }
      handle.prepare(SQL.UPSERT_SCHEMA_VERSION).run(version);
      // The columns every version has: runs stored before version 4 have no workflow version.
      const insertRun = handle.prepare(
        "INSERT INTO reflow_runs (id, workflow_name, status, input, idempotency_key, created_at, " +
          "updated_at, due_at, claim_count) VALUES (?, ?, 'pending', ?, ?, ?, ?, ?, 0)",
      );
      insertRun.run("r1", "wf", `{"v":${version}}`, "key", T0, T0, T0);
      insertRun.run("r2", "wf", "{}", null, T0 + 1, T0 + 1, T0 + 1);
      const { runId, stepName, status, output, attempts, dueAt, updatedAt } = step("r1", "a");
      handle.prepare(SQL.UPSERT_STEP).run(
        ...[runId, stepName, status, output, null, null, null, null, attempts, dueAt, updatedAt],
      );
      if (version >= 2) {
        handle.prepare(SQL.INSERT_EVENT).run("r1", "e", '"p"', T0, "r1", "r1", "e", "r1", "e");
      }
      handles.splice(handles.indexOf(handle), 1);
      handle.close();
      return path;
    };
    afterEach(async () => {
      for (const storage of storages.splice(0)) await storage.close();
      for (const handle of handles.splice(0)) handle.close();
    });
    after(() => subject.cleanup());

    test(`${label}: the claim query walks the claim index, with no temp b-tree, even after ANALYZE`, async () => {
      const path = subject.tempPath();
      const storage = await open(path);
      await storage.initialize();
      for (let i = 0; i < 300; i++) {
        await storage.createRun(
          newRun(`later-${i}`, { createdAt: T0 + 1e9 + i, workflowName: i % 2 ? "a" : "b" }),
        );
      }
      for (let i = 0; i < 100; i++) await storage.createRun(newRun(`due-${i}`, { createdAt: T0 + i }));
      for (
        const run of await storage.claimRuns({
          workflowNames: ["wf"],
          limit: 90,
          now: T0 + 100,
          leaseDurationMs: 1,
        })
      ) {
        await storage.advanceRun(run.id, run.leaseId, { now: T0 + 100, status: "completed", output: "1" });
      }
      const handle = await raw(path);
      const plan = (): string[] =>
        rows(handle, `EXPLAIN QUERY PLAN ${SQL.SELECT_CLAIMABLE}`, T0, `["wf"]`, 25).map((row) =>
          String(row.detail)
        );
      for (const details of [plan(), (handle.prepare("ANALYZE").run(), plan())]) {
        const text = details.join("\n");
        assert.match(text, /SEARCH reflow_runs USING INDEX reflow_runs_claim \(due_at<\?\)/, text);
        assert.doesNotMatch(text, /TEMP B-TREE/, text);
      }
    });

    test(`${label}: initialize() switches a file to WAL and records the schema version`, async () => {
      const path = subject.tempPath();
      await (await open(path)).initialize();
      const handle = await raw(path);
      assert.deepEqual(rows(handle, "PRAGMA journal_mode"), [{ journal_mode: "wal" }]);
      assert.deepEqual(rows(handle, "SELECT key, value FROM reflow_meta"), [
        { key: "schema_version", value: SCHEMA_VERSION },
      ]);
    });

    test(`${label}: two storages initialising one new file at once migrate it exactly once`, async () => {
      const path = subject.tempPath();
      const logs: string[][] = [[], [], []];
      const [a, b, c] = await Promise.all(logs.map(async (log) => {
        await load();
        const storage = new SqlStorage(recording(mod.driver(path), log));
        storages.push(storage);
        return storage;
      }));
      await Promise.all([a!.initialize(), b!.initialize(), c!.initialize()]);
      await a!.initialize();
      const creates = logs.flat().filter((sql) => sql.startsWith("CREATE TABLE reflow_runs"));
      assert.equal(creates.length, 1, "CREATE TABLE reflow_runs statements sent");
      assert.ok(logs.every((log) => log.includes("BEGIN IMMEDIATE")), "each took the write lock to check");
      await a!.createRun(newRun("r1"));
      assert.equal((await c!.getRun("r1"))?.status, "pending");
      const handle = await raw(path);
      assert.deepEqual(rows(handle, "SELECT value FROM reflow_meta"), [{ value: SCHEMA_VERSION }]);
    });

    /** Files initialize() must refuse, each made by `prepare` on the library's own handle (journal mode delete). */
    const refusedFiles: readonly { name: string; kind: StorageErrorKind; message: RegExp; sql: string[] }[] =
      [
        {
          name: "a database from a newer Reflow",
          kind: "schema",
          message: new RegExp(`version ${SCHEMA_VERSION + 1}\\b`),
          sql: [
            "CREATE TABLE reflow_meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)",
            `INSERT INTO reflow_meta (key, value) VALUES ('schema_version', ${SCHEMA_VERSION + 1})`,
          ],
        },
        {
          name: "another program's reflow_runs table, without reflow_meta",
          kind: "schema",
          message: /reflow_runs with no schema version/,
          sql: [
            "CREATE TABLE reflow_runs (id INTEGER PRIMARY KEY, note TEXT)",
            "INSERT INTO reflow_runs VALUES (1, 'mine')",
          ],
        },
        {
          name: "a reflow_meta with a non-numeric version",
          kind: "schema",
          message: /holds no valid version \("abc"\)/,
          sql: [
            "CREATE TABLE reflow_meta (key TEXT, value)",
            "INSERT INTO reflow_meta VALUES ('schema_version', 'abc')",
          ],
        },
        {
          name: "a reflow_meta without a version",
          kind: "schema",
          message: /holds no valid version \(null\)/,
          sql: ["CREATE TABLE reflow_meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)"],
        },
        {
          name: "a version-1 database with a reflow_events table that version 1 does not have",
          kind: "schema",
          message: /reflow_events with schema version 1/,
          sql: [
            ...MIGRATIONS[0]!.statements,
            "INSERT INTO reflow_meta (key, value) VALUES ('schema_version', 1)",
            "CREATE TABLE reflow_events (id INTEGER PRIMARY KEY)",
          ],
        },
      ];
    for (const refused of refusedFiles) {
      test(`${label}: ${refused.name} is refused with kind "${refused.kind}" and left byte for byte`, async () => {
        const path = subject.tempPath();
        const handle = await raw(path);
        for (const sql of refused.sql) handle.prepare(sql).run();
        assert.deepEqual(rows(handle, "PRAGMA journal_mode"), [{ journal_mode: "delete" }]);
        handles.splice(handles.indexOf(handle), 1);
        handle.close();
        const before = readFileSync(path);
        const storage = await open(path);
        for (let call = 0; call < 2; call++) {
          await assert.rejects(storage.initialize(), (error) => {
            isStorageError(refused.kind, "initialize")(error);
            assert.match((error as Error).message, refused.message);
            assert.match((error as Error).message, /nothing was changed/);
            return true;
          });
        }
        await storage.close();
        assert.ok(readFileSync(path).equals(before), "the file's bytes changed");
        assert.ok(!existsSync(`${path}-wal`), "a WAL file was left behind");
        const after = await raw(path);
        assert.deepEqual(rows(after, "PRAGMA journal_mode"), [{ journal_mode: "delete" }]);
      });
    }

    test(`${label}: a version-1 database migrates to the current version and keeps its runs and steps`, async () => {
      const path = await legacyDatabase(1);

      const storage = await open(path);
      await storage.initialize();
      const migrated = await raw(path);
      assert.deepEqual(rows(migrated, "SELECT value FROM reflow_meta"), [{ value: SCHEMA_VERSION }]);
      assert.deepEqual(
        rows(migrated, "SELECT name FROM sqlite_master WHERE tbl_name = 'reflow_events' ORDER BY name"),
        [{ name: "reflow_events" }, { name: "reflow_events_wait" }],
      );
      assert.deepEqual(await storage.getRun("r1"), {
        id: "r1",
        workflowName: "wf",
        workflowVersion: null,
        status: "pending",
        input: '{"v":1}',
        output: null,
        error: null,
        idempotencyKey: "key",
        createdAt: T0,
        updatedAt: T0,
        dueAt: T0,
        leaseId: null,
        claimCount: 0,
      });
      assert.deepEqual(await storage.getStepResults("r1"), [step("r1", "a")]);
      assert.equal((await storage.createRun(newRun("r3", { idempotencyKey: "key" }))).run.id, "r1");
      const claimed = await storage.claimRuns({
        workflowNames: ["wf"],
        limit: 5,
        now: T0 + 1,
        leaseDurationMs: 1_000,
      });
      assert.deepEqual(claimed.map((run) => run.id), ["r1", "r2"]);
      assert.equal(await storage.deliverEvent("r1", { name: "e", payload: '"p"', createdAt: T0 + 2 }), true);
      assert.deepEqual(
        await storage.awaitEvent("r1", claimed[0]!.leaseId, eventWait("e", T0 + 3, null)),
        { outcome: "received", payload: '"p"' },
      );
    });

    test(`${label}: listing, counting, purge and due-schedule queries walk their indexes, with no temp b-tree, even after ANALYZE`, async () => {
      const path = subject.tempPath();
      const storage = await open(path);
      await storage.initialize();
      for (let i = 0; i < 300; i++) {
        await storage.createRun(newRun(`r${i}`, { createdAt: T0 + (i >> 2), workflowName: `wf${i % 3}` }));
        await storage.upsertSchedule({
          key: `k${i}`,
          workflowName: `wf${i % 3}`,
          input: "{}",
          recurrence: "r",
          nextRunAt: T0 + i,
          now: T0,
        });
      }
      const claimed = await storage.claimRuns({
        workflowNames: ["wf0", "wf1", "wf2"],
        limit: 200,
        now: T0 + 100,
        leaseDurationMs: 1_000,
      });
      for (const [i, run] of claimed.entries()) {
        if (i % 2 === 0) {
          await storage.advanceRun(run.id, run.leaseId, {
            now: T0 + 200 + i,
            status: "completed",
            output: "1",
          });
        }
      }
      const handle = await raw(path);
      // Each query with its parameters, and the index its plan must name.
      const queries: [string, unknown[], RegExp][] = [
        [SQL.selectRunsPage(0, false, "none"), [25], /SCAN reflow_runs USING INDEX reflow_runs_created\b/],
        [
          SQL.selectRunsPage(0, false, "beforeId"),
          [T0 + 50, "r9", 25],
          /SEARCH reflow_runs USING INDEX reflow_runs_created \(\(created_at,id\)<\(\?,\?\)\)/,
        ],
        [
          SQL.selectRunsPage(0, false, "before"),
          [T0 + 50, 25],
          /USING INDEX reflow_runs_created \(created_at<\?\)/,
        ],
        [
          SQL.selectRunsPage(1, false, "beforeId"),
          ["completed", T0 + 50, "r9", 25],
          /USING INDEX reflow_runs_status_created \(status=\? AND \(created_at,id\)<\(\?,\?\)\)/,
        ],
        [
          SQL.selectRunsPage(3, false, "none"),
          ["completed", "pending", "running", 25],
          /MERGE \(UNION ALL\)[^]*USING INDEX reflow_runs_status_created \(status=\?\)/,
        ],
        [
          SQL.selectRunsPage(0, true, "beforeId"),
          ["wf1", T0 + 50, "r9", 25],
          /USING INDEX reflow_runs_workflow_created \(workflow_name=\? AND \(created_at,id\)<\(\?,\?\)\)/,
        ],
        [
          SQL.selectRunsPage(2, true, "before"),
          ["completed", "wf1", T0 + 50, "pending", "wf1", T0 + 50, 25],
          /MERGE \(UNION ALL\)/,
        ],
        [
          SQL.selectPurgeable(2),
          ["completed", T0 + 1_000, T0 + 1_000, "failed", T0 + 1_000, T0 + 1_000, 25],
          /SEARCH reflow_runs USING INDEX reflow_runs_status_created \(status=\? AND created_at<\?\)/,
        ],
        [
          SQL.countRunsByStatus(2),
          ["completed", "completed", 10_000, "failed", "failed", 10_000],
          /SEARCH reflow_runs USING COVERING INDEX reflow_runs_status_created \(status=\?\)/,
        ],
        [
          SQL.SELECT_DUE_SCHEDULES,
          [T0 + 100, '["wf1"]', 25],
          /SEARCH reflow_schedules USING INDEX reflow_schedules_due \(next_run_at<\?\)/,
        ],
      ];
      const plan = (sql: string, params: unknown[]): string =>
        rows(handle, `EXPLAIN QUERY PLAN ${sql}`, ...params).map((row) => String(row.detail)).join("\n");
      for (const analyzed of [false, true]) {
        if (analyzed) handle.prepare("ANALYZE").run();
        for (const [sql, params, expected] of queries) {
          const text = plan(sql, params);
          assert.match(text, expected, `${sql}\n${text}`);
          assert.doesNotMatch(
            text,
            /TEMP B-TREE|SCAN reflow_runs$|SCAN reflow_schedules$/m,
            `${sql}\n${text}`,
          );
        }
      }
      // The statements the plans were read for answer as the storage's own calls do.
      const page = await storage.listRuns({ limit: 25, statuses: ["completed", "pending", "running"] });
      assert.equal(page.length, 25);
    });

    test(`${label}: a version-2 database migrates to the current version and keeps its runs, steps and events`, async () => {
      const path = await legacyDatabase(2);

      const storage = await open(path);
      await storage.initialize();
      const migrated = await raw(path);
      assert.deepEqual(rows(migrated, "SELECT value FROM reflow_meta"), [{ value: SCHEMA_VERSION }]);
      assert.deepEqual(rows(migrated, "SELECT DISTINCT recoveries FROM reflow_runs"), [{ recoveries: 0 }]);
      assert.deepEqual(
        rows(
          migrated,
          "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('reflow_runs_created', " +
            "'reflow_runs_status_created', 'reflow_runs_workflow_created', " +
            "'reflow_schedules_due') ORDER BY name",
        ),
        [
          { name: "reflow_runs_created" },
          { name: "reflow_runs_status_created" },
          { name: "reflow_runs_workflow_created" },
          { name: "reflow_schedules_due" },
        ],
      );
      assert.deepEqual((await storage.listRuns({ limit: 10 })).map((run) => run.id), ["r2", "r1"]);
      assert.deepEqual((await storage.listRuns({ limit: 1, before: T0 + 1 }))[0]?.input, '{"v":2}');
      assert.deepEqual(await storage.getStepResults("r1"), [step("r1", "a")]);
      assert.equal((await storage.createRun(newRun("r3", { idempotencyKey: "key" }))).run.id, "r1");
      const [held] = await storage.claimRuns({
        workflowNames: ["wf"],
        limit: 1,
        now: T0,
        leaseDurationMs: 1_000,
      });
      assert.equal(held?.id, "r1");
      assert.deepEqual(
        await storage.awaitEvent("r1", held.leaseId, eventWait("e", T0 + 1, null)),
        { outcome: "received", payload: '"p"' },
      );
      const { created } = await storage.upsertSchedule({
        key: "k",
        workflowName: "wf",
        input: "{}",
        recurrence: "r",
        nextRunAt: T0,
        now: T0,
      });
      assert.equal(created, true);
      assert.deepEqual((await storage.dueSchedules(["wf"], T0, 5)).map((schedule) => schedule.key), ["k"]);
    });

    test(`${label}: a version-3 database migrates to version 4: its runs have no version, new ones do`, async () => {
      const path = await legacyDatabase(3);
      const storage = await open(path);
      await storage.initialize();
      const migrated = await raw(path);
      assert.deepEqual(rows(migrated, "SELECT value FROM reflow_meta"), [{ value: SCHEMA_VERSION }]);
      assert.equal((await storage.getRun("r1"))?.workflowVersion, null);
      await storage.createRun(newRun("r3", { workflowVersion: "v2" }));
      assert.equal((await storage.getRun("r3"))?.workflowVersion, "v2");
      await storage.saveWorkflowVersions([{ workflowName: "wf", version: "v2", shape: "[]", createdAt: T0 }]);
      assert.deepEqual((await storage.listWorkflowVersions()).map((record) => record.version), ["v2"]);
    });

    test(`${label}: processes racing claimScheduleSlot() for the same slots create exactly one run per slot`, async () => {
      const path = subject.tempPath();
      const storage = await open(path);
      await storage.initialize();
      const keys = ["k0", "k1", "k2", "k3"];
      const config = { driver: subject.name, db: path, keys, slots: 100, first: T0, every: 60_000 };
      for (const key of keys) {
        await storage.upsertSchedule({
          key,
          workflowName: "wf",
          input: "{}",
          recurrence: "r",
          nextRunAt: T0,
          now: T0,
        });
      }
      const workers = ["a", "b", "c"].map((tag, offset) => {
        const { command, args } = spawnArgs(SLOT_WORKER, [JSON.stringify({ ...config, tag, offset })]);
        const child = spawn(command, args, { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
        let stdout = "";
        let stderr = "";
        child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
        child.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
        const exited = new Promise<number | null>((resolve, reject) => {
          child.on("error", reject);
          child.on("close", resolve);
        });
        const ready = new Promise<void>((resolve, reject) => {
          child.stdout.on("data", () => stdout.includes("ready\n") && resolve());
          exited.then(() =>
            reject(new Error(`worker ${tag} exited before it was ready:\n${stdout}\n${stderr}`))
          );
        });
        return { child, exited, ready, output: () => ({ stdout, stderr }) };
      });
      const guard = setTimeout(() => workers.forEach((worker) => worker.child.kill("SIGKILL")), 60_000);
      try {
        await Promise.all(workers.map((worker) => worker.ready));
        for (const worker of workers) worker.child.stdin.end("go\n");
        const won: string[] = [];
        for (const worker of workers) {
          const code = await worker.exited;
          const { stdout, stderr } = worker.output();
          assert.equal(code, 0, `a worker failed:\n${stdout}\n${stderr}`);
          won.push(...JSON.parse(/^done (.*)$/m.exec(stdout)![1]!) as string[]);
        }
        const slots = keys.flatMap((key) => Array.from({ length: config.slots }, (_, n) => `${key}@${n}`));
        assert.deepEqual(won.sort(), slots.sort(), "slots won, over every worker");
        const runs = await storage.listRuns({ limit: 1_000 });
        assert.deepEqual(runs.map((run) => run.id.split("/")[0]).sort(), slots.sort(), "one run per slot");
        for (const schedule of await storage.listSchedules()) {
          const last = T0 + (config.slots - 1) * config.every;
          assert.deepEqual(
            [schedule.nextRunAt, schedule.lastRunAt],
            [last + config.every, last],
            schedule.key,
          );
        }
      } finally {
        clearTimeout(guard);
        for (const worker of workers) worker.child.kill("SIGKILL");
      }
    });

    test(`${label}: events and waits survive closing and reopening the database`, async () => {
      const path = subject.tempPath();
      const first = await open(path);
      await first.initialize();
      await first.createRun(newRun("held"));
      await first.createRun(newRun("parked"));
      const [held, parked] = await first.claimRuns({
        workflowNames: ["wf"],
        limit: 2,
        now: T0,
        leaseDurationMs: 60_000,
      });
      assert.ok(held && parked);
      for (const [name, payload] of [["e", '"one"'], ["f", '"two"']]) {
        assert.equal(
          await first.deliverEvent("held", { name: name!, payload: payload!, createdAt: T0 + 1 }),
          true,
        );
      }
      assert.deepEqual(
        await first.awaitEvent("parked", parked.leaseId, eventWait("e", T0 + 2, null)),
        { outcome: "parked" },
      );
      await first.close();

      const second = await open(path);
      await second.initialize();
      assert.deepEqual(
        await second.awaitEvent("held", held.leaseId, eventWait("e", T0 + 3, null)),
        { outcome: "received", payload: '"one"' },
      );
      const waiting = await second.getRun("parked");
      assert.deepEqual([waiting?.status, waiting?.dueAt, waiting?.leaseId], ["waiting", null, null]);
      await second.close();

      const third = await open(path);
      await third.initialize();
      assert.deepEqual(
        await third.awaitEvent("held", held.leaseId, eventWait("f", T0 + 4, null)),
        { outcome: "received", payload: '"two"' },
      );
      assert.equal(
        await third.deliverEvent("parked", { name: "e", payload: '"go"', createdAt: T0 + 5 }),
        true,
      );
      const [woken] = await third.claimRuns({
        workflowNames: ["wf"],
        limit: 5,
        now: T0 + 5,
        leaseDurationMs: 1,
      });
      assert.equal(woken?.id, "parked");
      assert.deepEqual(
        await third.awaitEvent("parked", woken.leaseId, eventWait("e", T0 + 6, null)),
        { outcome: "received", payload: '"go"' },
      );
      const handle = await raw(path);
      assert.deepEqual(
        rows(handle, "SELECT count(*) AS n FROM reflow_events"),
        [{ n: 0 }],
        "consumed rows deleted",
      );
    });

    test(`${label}: a wait finds its event through the index`, async () => {
      const path = subject.tempPath();
      await (await open(path)).initialize();
      const handle = await raw(path);
      const plan = rows(handle, `EXPLAIN QUERY PLAN ${SQL.SELECT_WAIT}`, "e", "r1", "lease")
        .map((row) => String(row.detail)).join("\n");
      assert.match(
        plan,
        /SEARCH reflow_events USING COVERING INDEX reflow_events_wait \(run_id=\? AND name=\?\)/,
        plan,
      );
      assert.doesNotMatch(plan, /SCAN|TEMP B-TREE/, plan);
    });

    test(`${label}: the WAL settings are sent once per connection, before any check of the file`, async () => {
      const log: string[] = [];
      await load();
      const driver = recording(mod.driver(subject.tempPath()), log);
      const storage = new SqlStorage(driver, { walAutocheckpointPages: 64, walSizeLimitBytes: 65_536 });
      storages.push(storage);
      await storage.initialize();
      assert.deepEqual(log.slice(0, 4), [
        "PRAGMA busy_timeout = 5000",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA wal_autocheckpoint = 64",
        "PRAGMA journal_size_limit = 65536",
      ]);
      log.length = 0;
      await storage.createRun(newRun("r1"));
      assert.ok(!log.some((sql) => sql.startsWith("PRAGMA")), "a write sends no pragma and no checkpoint");
    });

    test(`${label}: after idleCheckpointMs without a write, the WAL is checkpointed and truncated`, async () => {
      const path = subject.tempPath();
      const storage = await open(path, { idleCheckpointMs: 10 });
      await storage.initialize();
      for (let i = 0; i < 20; i++) await storage.createRun(newRun(`r${i}`));
      await eventually(() => statSync(`${path}-wal`).size === 0 ? true : undefined);
      assert.equal((await storage.getRun("r19"))?.status, "pending");
      const handle = await raw(path);
      assert.deepEqual(rows(handle, "SELECT count(*) AS n FROM reflow_runs"), [{ n: 20 }]);
    });

    test(`${label}: checkpoint() returns false, changing nothing, while another connection reads`, async () => {
      const path = subject.tempPath();
      const storage = await open(path, { idleCheckpointMs: null });
      await storage.initialize();
      await storage.createRun(newRun("r1"));
      const reader = await raw(path);
      reader.prepare("BEGIN").run();
      rows(reader, "SELECT count(*) AS n FROM reflow_runs");
      await storage.createRun(newRun("r2"));
      assert.equal(await storage.checkpoint(), false);
      reader.prepare("COMMIT").run();
      assert.equal(await storage.checkpoint(), true);
      assert.equal(statSync(`${path}-wal`).size, 0);
    });

    test(`${label}: a write that fails because the disk is full is followed by a truncating checkpoint`, async () => {
      const log: string[] = [];
      await load();
      const faults = faultyDriver(mod.driver(subject.tempPath()));
      const storage = new SqlStorage(recording(faults.driver, log), { idleCheckpointMs: null });
      storages.push(storage);
      await storage.initialize();
      faults.set({ disk: "full" });
      log.length = 0;
      await assert.rejects(storage.createRun(newRun("r1")), isStorageError("full", "createRun"));
      assert.ok(log.includes(SQL.CHECKPOINT_TRUNCATE), log.join("; "));
      faults.set({ disk: "ok" });
      assert.equal((await storage.createRun(newRun("r1"))).created, true);
    });

    test(`${label}: a file that is not a database is refused with kind "corrupt"`, async () => {
      const path = subject.tempPath();
      writeFileSync(path, "This is a text file, not a SQLite database. ".repeat(100));
      const before = readFileSync(path);
      const storage = await open(path);
      await assert.rejects(storage.initialize(), isStorageError("corrupt", "initialize"));
      await storage.close();
      assert.ok(readFileSync(path).equals(before), "the file's bytes changed");
      assert.ok(!existsSync(`${path}-wal`), "a WAL file was left behind");
    });

    test(`${label}: a path in a missing directory is refused with kind "io" at construction`, async () => {
      await load();
      assert.throws(
        () => mod.open(join(subject.tempPath("missing-dir"), "x.db")),
        isStorageError("io", "open"),
      );
    });

    test(`${label}: a read-only database rejects writes with kind "readonly"`, async () => {
      const path = subject.tempPath();
      const writer = await open(path);
      await writer.initialize();
      await writer.createRun(newRun("r1"));
      await writer.close();
      // chmod does not stop root, so the handle is opened read-only instead.
      const readonly = (await load()).open(await raw(path, true));
      storages.push(readonly);
      await readonly.initialize();
      assert.equal((await readonly.getRun("r1"))?.status, "pending");
      await assert.rejects(readonly.createRun(newRun("r2")), isStorageError("readonly", "createRun"));
    });

    test(
      `${label}: a database on a read-only mount is refused with kind "readonly", not "io"`,
      { skip: readOnlyMounts ? false : "needs a tmpfs mount (root)" },
      async () => {
        const dir = subject.tempPath("ro-mount");
        mkdirSync(dir);
        execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]);
        try {
          // Written elsewhere and copied in: bun:sqlite releases a closed file only once its
          // statements are collected, and a mount with an open file cannot turn read-only.
          const written = subject.tempPath();
          const writer = await open(written);
          await writer.initialize();
          await writer.createRun(newRun("r1"));
          await writer.close();
          const path = join(dir, "app.db");
          copyFileSync(written, path);
          const bytes = readFileSync(path);
          execFileSync("mount", ["-o", "remount,ro", dir]);
          const reader = await open(path);
          // SQLite cannot create the WAL files, and says SQLITE_CANTOPEN: the disk, not the file, is at fault.
          await assert.rejects(reader.initialize(), isStorageError("readonly", "initialize"));
          await reader.close();
          assert.ok(readFileSync(path).equals(bytes), "the file changed");
        } finally {
          // Lazily: some libraries release the file only when their handle is collected.
          execFileSync("umount", ["-l", dir]);
        }
      },
    );

    test(`${label}: a storage on a handle leaves the handle open when it closes`, async () => {
      const path = subject.tempPath();
      const handle = await raw(path);
      const storage = (await load()).open(handle);
      await storage.initialize();
      await storage.createRun(newRun("r1"));
      await storage.close();
      assert.deepEqual(rows(handle, "SELECT id FROM reflow_runs"), [{ id: "r1" }]);
      await assert.rejects(storage.getRun("r1"), isStorageError("closed", "getRun"));
    });

    test(`${label}: ":memory:" works and the storage is AsyncDisposable`, async () => {
      await load();
      const storage = mod.open(":memory:");
      await storage.initialize();
      await storage.createRun(newRun("r1"));
      assert.equal((await storage.getRun("r1"))?.id, "r1");
      // `await using` calls this; Node 22 cannot parse that syntax yet, so the tests call it directly.
      await storage[Symbol.asyncDispose]();
      await assert.rejects(storage.getRun("r1"), isStorageError("closed", "getRun"));
      await storage.close();
    });

    test(`${label}: a lock held past busyTimeoutMs fails with kind "busy" after bounded retries`, async () => {
      const path = subject.tempPath();
      const storage = await open(path, { busyTimeoutMs: 0 });
      await storage.initialize();
      const holder = await raw(path);
      holder.prepare("BEGIN IMMEDIATE").run();
      const started = Date.now();
      await assert.rejects(storage.createRun(newRun("r1")), isStorageError("busy", "createRun"));
      assert.ok(Date.now() - started < 5_000, "the retries should be bounded");
      holder.prepare("COMMIT").run();
      assert.equal((await storage.createRun(newRun("r1"))).created, true);
    });

    test(`${label}: a busy write is retried and succeeds once the lock is released`, async () => {
      const path = subject.tempPath();
      const storage = await open(path, { busyTimeoutMs: 50 });
      await storage.initialize();
      const holder = await raw(path);
      holder.prepare("BEGIN IMMEDIATE").run();
      // The first attempt blocks this thread in SQLite's busy handler; the release runs during the backoff.
      setTimeout(() => holder.prepare("COMMIT").run(), 5);
      const run = await storage.claimRuns({ workflowNames: ["wf"], limit: 1, now: T0, leaseDurationMs: 1 });
      assert.deepEqual(run, []);
      assert.equal((await storage.createRun(newRun("r1"))).created, true);
    });

    test(`${label}: each operation sends its budget of statements with constant SQL texts`, async () => {
      const log: string[] = [];
      await load();
      const storage = new SqlStorage(recording(mod.driver(subject.tempPath()), log), { synchronous: "FULL" });
      storages.push(storage);
      await storage.initialize();
      assert.deepEqual(log.slice(0, 2), ["PRAGMA busy_timeout = 5000", "PRAGMA synchronous = FULL"]);
      assert.ok(log.includes("PRAGMA journal_mode = WAL"));
      const sent = async (action: () => Promise<unknown>): Promise<string[]> => {
        log.length = 0;
        await action();
        return [...log];
      };
      const texts = new Set<string>();
      for (let i = 0; i < 3; i++) {
        const created = await sent(() => storage.createRun(newRun(`r${i}`, { createdAt: T0 + i })));
        assert.deepEqual(created, [SQL.INSERT_RUN], "createRun");
        let leaseId = "";
        const claim = await sent(async () => {
          const [run] = await storage.claimRuns({
            workflowNames: ["wf"],
            limit: 5,
            now: T0 + 10,
            leaseDurationMs: 1,
          });
          leaseId = run!.leaseId;
        });
        assert.deepEqual(
          claim,
          [SQL.BEGIN, SQL.SELECT_CLAIMABLE, SQL.CLAIM_RUN, SQL.COMMIT],
          "claimRuns of a new run",
        );
        const advance = await sent(() =>
          storage.advanceRun(`r${i}`, leaseId, {
            now: T0 + 10,
            step: step(`r${i}`, "a"),
            leaseExpiresAt: T0 + 11,
          })
        );
        assert.deepEqual(advance, [SQL.BEGIN, SQL.RENEW_RUN, SQL.UPSERT_STEP, SQL.COMMIT], "advanceRun");
        const reclaim = await sent(() =>
          storage.claimRuns({ workflowNames: ["wf"], limit: 5, now: T0 + 20, leaseDurationMs: 1 })
        );
        assert.deepEqual(
          reclaim,
          [SQL.BEGIN, SQL.SELECT_CLAIMABLE, SQL.CLAIM_RUN, SQL.SELECT_STEPS_OF_RUNS, SQL.COMMIT],
          "claimRuns of a run with steps",
        );
        const finish = await sent(async () => {
          const run = await storage.getRun(`r${i}`);
          await storage.advanceRun(`r${i}`, run!.leaseId!, {
            now: T0 + 20,
            status: "completed",
            output: "1",
          });
        });
        assert.deepEqual(
          finish,
          [SQL.SELECT_RUN, SQL.BEGIN, SQL.PARK_RUN, SQL.COMMIT],
          "getRun + advanceRun without a step",
        );
        const before = texts.size;
        for (const sql of [...created, ...claim, ...advance, ...reclaim, ...finish]) texts.add(sql);
        if (i > 0) assert.equal(texts.size, before, "no new SQL text after the first round");
      }
    });

    /** `count` runs r0… claimed with a 1 ms lease at T0; every third advance of `advances` is fenced out. */
    const claimedRuns = async (storage: SqlStorage, count: number) => {
      for (let i = 0; i < count; i++) await storage.createRun(newRun(`r${i}`, { createdAt: T0 + i }));
      const claimed = await storage.claimRuns({
        workflowNames: ["wf"],
        limit: count,
        now: T0 + count,
        leaseDurationMs: 1,
      });
      assert.equal(claimed.length, count);
      return claimed;
    };
    const advances = (storage: SqlStorage, claimed: readonly { id: string; leaseId: string }[]) =>
      claimed.map((run, i) =>
        storage.advanceRun(run.id, i % 3 === 2 ? "stale" : run.leaseId, {
          now: T0 + 100,
          step: step(run.id, "a"),
          ...(i % 3 === 0 ? { leaseExpiresAt: T0 + 200 } : { status: "completed", output: "1" }),
        })
      );

    test(`${label}: concurrent advances share one transaction, each with its own fence and answer`, async () => {
      const log: string[] = [];
      await load();
      const path = subject.tempPath();
      const storage = new SqlStorage(recording(mod.driver(path), log));
      storages.push(storage);
      await storage.initialize();
      const claimed = await claimedRuns(storage, 30);
      log.length = 0;
      const answers = await Promise.all(advances(storage, claimed));
      assert.deepEqual(answers, claimed.map((_, i) => i % 3 !== 2));
      assert.equal(
        log.filter((sql) => sql === SQL.BEGIN).length,
        1,
        "BEGINs for 30 advances submitted at once",
      );
      assert.equal(log.filter((sql) => sql === SQL.UPSERT_STEP).length, 20, "steps written");
      const handle = await raw(path);
      const stored = rows(handle, "SELECT id, status FROM reflow_runs ORDER BY seq");
      assert.deepEqual(
        stored,
        claimed.map((run, i) => ({ id: run.id, status: i % 3 === 1 ? "completed" : "running" })),
      );
      const steps = rows(handle, "SELECT run_id FROM reflow_steps ORDER BY seq").map((row) => row.run_id);
      assert.deepEqual(steps, claimed.filter((_, i) => i % 3 !== 2).map((run) => run.id));
    });

    for (
      const [where, sql, nth] of [["at COMMIT", SQL.COMMIT, 2], ["mid-group", SQL.UPSERT_STEP, 7]] as const
    ) {
      test(`${label}: a group transaction failing ${where} rejects every advance in it and writes none`, async () => {
        await load();
        const path = subject.tempPath();
        const ioError = Object.assign(new Error("disk I/O error"), {
          code: "SQLITE_IOERR",
          errcode: 10,
          errno: 10,
        });
        // COMMITs 0 and 1 are the migration's and the claim's; the group's is the third.
        const storage = new SqlStorage(failing(mod.driver(path), sql, nth, ioError));
        storages.push(storage);
        await storage.initialize();
        const claimed = await claimedRuns(storage, 12);
        const before = await Promise.all(claimed.map((run) => storage.getRun(run.id)));
        const outcomes = await Promise.allSettled(advances(storage, claimed));
        for (const outcome of outcomes) {
          assert.equal(outcome.status, "rejected");
          isStorageError("io", "advanceRun")((outcome as PromiseRejectedResult).reason);
        }
        assert.deepEqual(
          await Promise.all(claimed.map((run) => storage.getRun(run.id))),
          before,
          "runs unchanged",
        );
        const handle = await raw(path);
        assert.deepEqual(
          rows(handle, "SELECT count(*) AS n FROM reflow_steps"),
          [{ n: 0 }],
          "no step written",
        );
        // Nothing was left open: the same advances go through now.
        assert.deepEqual(await Promise.all(advances(storage, claimed)), claimed.map((_, i) => i % 3 !== 2));
        assert.deepEqual(rows(handle, "SELECT count(*) AS n FROM reflow_steps"), [{ n: 8 }]);
      });
    }

    test(`${label}: a group that finds the database locked is retried as a whole`, async () => {
      const path = subject.tempPath();
      const storage = await open(path, { busyTimeoutMs: 20 });
      await storage.initialize();
      const claimed = await claimedRuns(storage, 9);
      const holder = await raw(path);
      holder.prepare("BEGIN IMMEDIATE").run();
      setTimeout(() => holder.prepare("COMMIT").run(), 5);
      assert.deepEqual(await Promise.all(advances(storage, claimed)), claimed.map((_, i) => i % 3 !== 2));
      assert.deepEqual(rows(holder, "SELECT count(*) AS n FROM reflow_steps"), [{ n: 6 }]);
    });

    test(`${label}: deliverEvent() and awaitEvent() send their budget of statements`, async () => {
      const log: string[] = [];
      await load();
      const storage = new SqlStorage(recording(mod.driver(subject.tempPath()), log));
      storages.push(storage);
      await storage.initialize();
      await storage.createRun(newRun("r1"));
      const [run] = await storage.claimRuns({
        workflowNames: ["wf"],
        limit: 1,
        now: T0,
        leaseDurationMs: 1_000,
      });
      assert.ok(run);
      const sent = async (action: () => Promise<unknown>): Promise<string[]> => {
        log.length = 0;
        await action();
        return [...log];
      };
      const wait = (now: number, timeoutAt: number | null) => eventWait("e", now, timeoutAt);
      const deliver = () => storage.deliverEvent("r1", { name: "e", payload: "1", createdAt: T0 + 1 });
      assert.deepEqual(await sent(deliver), [SQL.BEGIN, SQL.INSERT_EVENT, SQL.WAKE_RUN, SQL.COMMIT]);
      assert.deepEqual(
        await sent(() => storage.deliverEvent("missing", { name: "e", payload: "1", createdAt: T0 })),
        [SQL.BEGIN, SQL.INSERT_EVENT, SQL.COMMIT],
      );
      assert.deepEqual(
        await sent(() => storage.awaitEvent("r1", run.leaseId, wait(T0 + 2, null))),
        [SQL.BEGIN, SQL.SELECT_WAIT, SQL.DELETE_EVENT, SQL.UPSERT_STEP, SQL.COMMIT],
        "received",
      );
      assert.deepEqual(
        await sent(() => storage.awaitEvent("r1", "wrong", wait(T0 + 3, null))),
        [SQL.BEGIN, SQL.SELECT_WAIT, SQL.COMMIT],
        "lost",
      );
      assert.deepEqual(
        await sent(() => storage.awaitEvent("r1", run.leaseId, wait(T0 + 3, T0 + 4))),
        [SQL.BEGIN, SQL.SELECT_WAIT, SQL.PARK_RUN, SQL.UPSERT_STEP, SQL.COMMIT],
        "parked",
      );
      const [again] = await storage.claimRuns({
        workflowNames: ["wf"],
        limit: 1,
        now: T0 + 4,
        leaseDurationMs: 1,
      });
      assert.ok(again);
      assert.deepEqual(
        await sent(() => storage.awaitEvent("r1", again.leaseId, wait(T0 + 4, T0 + 4))),
        [SQL.BEGIN, SQL.SELECT_WAIT, SQL.PARK_RUN, SQL.UPSERT_STEP, SQL.COMMIT],
        "timedOut: the failure is committed with the decision",
      );
    });

    test(`${label}: a claim with a limit over 500 claims each due run once, in order`, async () => {
      const storage = await open(subject.tempPath());
      await storage.initialize();
      for (let i = 0; i < 1_200; i++) {
        await storage.createRun(newRun(`r${String(i).padStart(4, "0")}`, { createdAt: T0 + (i % 600) }));
      }
      // A zero-length lease leaves each claimed run due again at once: it must still be claimed once.
      const claim = (limit: number) =>
        storage.claimRuns({ workflowNames: ["wf"], limit, now: T0 + 600, leaseDurationMs: 0 });
      const claimed = await claim(1_100);
      assert.equal(claimed.length, 1_100);
      assert.equal(new Set(claimed.map((run) => run.leaseId)).size, 1_100);
      const expected = Array.from({ length: 1_200 }, (_, i) => i)
        .sort((x, y) => (x % 600) - (y % 600) || x - y);
      assert.deepEqual(claimed.map((run) => Number(run.id.slice(1))), expected.slice(0, 1_100));
      assert.ok(claimed.every((run) => run.dueAt === T0 + 600 && run.claimCount === 1));
      const rest = await claim(5_000);
      assert.deepEqual(rest.slice(0, 100).map((run) => Number(run.id.slice(1))), expected.slice(1_100));
      assert.equal(rest.length, 1_200, "the rest, then the zero-length leases that expired at once");
    });

    test(`${label}: createRun() with a held key returns the holder even when the id is taken too`, async () => {
      const storage = await open(subject.tempPath());
      await storage.initialize();
      await storage.createRun(newRun("r1", { idempotencyKey: "k" }));
      const again = await storage.createRun(newRun("r1", { idempotencyKey: "k", input: '"other"' }));
      assert.deepEqual([again.created, again.run.input], [false, "{}"]);
      await assert.rejects(storage.createRun(newRun("r1")), isStorageError("unique", "createRun"));
    });

    test(`${label}: the driver evens out its library`, async () => {
      await load();
      const driver = mod.driver(":memory:");
      const connection = await driver.acquire();
      try {
        const q = (sql: string, ...params: unknown[]) =>
          connection.query({ sql, params: params as SqlStatement["params"] });
        const x = (sql: string, ...params: unknown[]) =>
          connection.execute({ sql, params: params as SqlStatement["params"] });
        await x("CREATE TABLE t (id INTEGER PRIMARY KEY, v, u TEXT UNIQUE)");
        assert.deepEqual(await q("SELECT * FROM t WHERE id = ?", 1), [], "no row");
        assert.deepEqual(await q("CREATE TABLE t2 (a)"), [], "query() of a statement without rows");
        assert.deepEqual(await x("INSERT INTO t (v) VALUES (?), (?), (?)", true, false, undefined), {
          changes: 3,
        });
        assert.deepEqual(
          await q("SELECT v FROM t ORDER BY id"),
          [{ v: 1 }, { v: 0 }, { v: null }],
          "booleans, undefined",
        );
        const [row] = await q(
          "SELECT ? AS big, ? AS small, ? AS float, ? AS blob",
          2n ** 60n,
          42n,
          1.5,
          new Uint8Array([1, 2]),
        );
        assert.equal(Object.getPrototypeOf(row), Object.prototype, "plain prototype");
        assert.equal(row!.big, 2n ** 60n, "an unsafe integer is an exact bigint");
        assert.equal(row!.small, 42, "a safe integer is a number");
        assert.equal(row!.float, 1.5);
        assert.deepEqual([...(row!.blob as Uint8Array)], [1, 2]);
        assert.deepEqual(await x("UPDATE t SET v = v + 1"), { changes: 3 });
        assert.equal(typeof (await x("SELECT 1")).changes, "number", "execute() of a statement with rows");
        await x("INSERT INTO t (u) VALUES ('k')");
        const unique = await x("INSERT INTO t (u) VALUES ('k')").catch((error) => error);
        assert.equal(driver.classifyError(unique), "unique");
        const syntax = await q("SELEC").catch((error) => error);
        assert.equal(driver.classifyError(syntax), "other");
      } finally {
        connection.release();
        await driver.close();
      }
    });

    test(`${label}: the driver reports a locked database as busy`, async () => {
      await load();
      const path = subject.tempPath();
      const holder = await raw(path);
      holder.prepare("CREATE TABLE t (a)").run();
      holder.prepare("BEGIN IMMEDIATE").run();
      const driver = mod.driver(path);
      const connection = await driver.acquire();
      try {
        await connection.query({ sql: "PRAGMA busy_timeout = 0", params: [] });
        const error = await connection.execute({ sql: "BEGIN IMMEDIATE", params: [] }).catch((e) => e);
        assert.equal(driver.classifyError(error), "busy");
      } finally {
        connection.release();
        await driver.close();
        holder.prepare("ROLLBACK").run();
      }
    });
  });
}
