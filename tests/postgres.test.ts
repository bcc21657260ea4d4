// What PostgreSQL must do beyond the shared suites, which already run on it through
// tests/support/storages.ts: concurrent migrations exactly once, leases decided on the server's clock
// whatever the workers' clocks say, a lost connection that leaks no client and leaves no transaction
// half-applied, LISTEN/NOTIFY wake-ups of idle workers, and the SQLSTATE classification.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type AddressInfo, createServer } from "node:net";
import pg from "pg";
import { ConfigError, createEngine, createWorkflow, StorageError } from "../mod.ts";
import {
  classifyPostgresError,
  type PgPool,
  type PgPoolClient,
  type PgQueryConfig,
  postgresDriver,
  PostgresStorage,
} from "../drivers/postgres.ts";
import { MIGRATIONS } from "../src/sql/postgres/schema.ts";
import { eventually, gate, schema } from "./support/fixtures.ts";
import { runtimeName } from "./support/runtime.ts";
import { storages, type TestDatabase } from "./support/storages.ts";

const entry = storages.find((candidate) => candidate.kind === "postgres")!;
const cell = `postgres on ${runtimeName}`;
const input = schema<{ n: number }>();
const HOUR_MS = 3_600_000;

/** Runs `body` on a fresh database, closing every storage it opened. */
async function withDatabase(body: (database: TestDatabase, url: string) => Promise<void>): Promise<void> {
  const database = await entry.database();
  try {
    await body(database, database.url!);
  } finally {
    await database.close();
  }
}

/** An admin pool on the database's schema, for locks and inspection. */
function adminPool(url: string): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  pool.on("error", () => {});
  return pool;
}

/** Initialises `storage` and stores run "r1" failed in its step "a"; returns the server's time then. */
async function failedRun(storage: PostgresStorage): Promise<number> {
  await storage.initialize();
  const now = storage.currentTime!();
  await storage.createRun({ id: "r1", workflowName: "wf", input: "1", idempotencyKey: null, createdAt: now });
  const [claimed] = await storage.claimRuns({
    workflowNames: ["wf"],
    limit: 1,
    now,
    leaseDurationMs: 60_000,
  });
  const error = { code: null, name: "Error", message: "no" };
  const step = {
    runId: "r1",
    stepName: "a",
    status: "failed",
    output: null,
    error,
    attempts: 1,
    dueAt: null,
    updatedAt: now,
  } as const;
  assert.equal(
    await storage.advanceRun("r1", claimed!.leaseId, { now, step, status: "failed", error }),
    true,
  );
  return now;
}

describe(`${cell}: beyond the shared suites`, { skip: entry.skip }, () => {
  after(() => entry.cleanup());

  test(`${cell}: six storages initialising one empty schema at once migrate it exactly once`, () =>
    withDatabase(async (_, url) => {
      // A schema of its own, never migrated: the shared table's databases may arrive migrated.
      const admin = adminPool(url);
      const fresh = `reflow_fresh_${process.pid}_${Date.now()}`;
      await admin.query(`CREATE SCHEMA ${fresh}`);
      const freshUrl = new URL(url);
      freshUrl.searchParams.set("options", `-c search_path=${fresh}`);
      const storages = Array.from(
        { length: 6 },
        () => new PostgresStorage(freshUrl.toString(), { poolSize: 1 }),
      );
      try {
        const results = await Promise.allSettled(storages.map((storage) => storage.initialize()));
        assert.deepEqual(
          results.map((result) => result.status === "rejected" ? String(result.reason) : "ok"),
          Array(6).fill("ok"),
        );
        const { rows } = await admin.query(
          `SELECT value FROM ${fresh}.reflow_meta WHERE key = 'schema_version'`,
        );
        assert.deepEqual(rows.map((row) => Number(row.value)), [MIGRATIONS.at(-1)!.version]);
        const run = { id: "r1", workflowName: "wf", input: "1", idempotencyKey: null, createdAt: 1 };
        assert.equal((await storages[5]!.createRun(run)).created, true);
        assert.equal((await storages[0]!.getRun("r1"))?.status, "pending");
      } finally {
        for (const storage of storages) await storage.close();
        await admin.query(`DROP SCHEMA ${fresh} CASCADE`);
        await admin.end();
      }
    }));

  test(
    `${cell}: a worker whose clock is 10 s ahead cannot take a lease another worker holds, and ` +
      "both engines compute times on the server's clock",
    () =>
      withDatabase(async (_, url) => {
        const ahead = new PostgresStorage(url, { now: () => Date.now() + 10_000 });
        const behind = new PostgresStorage(url, { now: () => Date.now() - 10_000 });
        try {
          await ahead.initialize();
          await behind.initialize();
          const skew = Math.abs(ahead.currentTime!() - behind.currentTime!());
          assert.ok(skew < 1_000, `the two storages' server clocks differ by ${skew} ms`);

          const entered = gate();
          const release = gate();
          const ran: string[] = [];
          const slow = createWorkflow({ name: "slow", input })
            .step("work", async () => {
              ran.push("work");
              entered.open();
              await release.promise;
              return 1;
            });
          // The worker behind holds the run with a 3 s lease, renewed every second.
          const holder = createEngine({ storage: behind, workflows: [slow], runLeaseDurationMs: 3_000 });
          const thief = createEngine({ storage: ahead, workflows: [slow], runLeaseDurationMs: 3_000 });
          const { runId } = await thief.enqueue("slow", { n: 1 });
          const created = (await behind.getRun(runId))!.createdAt;
          assert.ok(Math.abs(created - behind.currentTime!()) < 5_000, "enqueued on the server's clock");
          // tick() returns once the runs it claimed are done: this one waits for `release`.
          const holding = holder.tick();
          await entered.promise;
          // On its own clock the lease expired 7 s ago; on the server's it has 3 s left.
          await thief.tick();
          await thief.tick();
          const held = await ahead.getRun(runId);
          assert.equal(held?.claimCount, 1);
          assert.deepEqual(ran, ["work"]);
          release.open();
          await holding;
          assert.equal((await behind.getRun(runId))?.status, "completed");
          await holder.stop();
          await thief.stop();
        } finally {
          await ahead.close();
          await behind.close();
        }
      }),
  );

  test(
    `${cell}: a connection terminated inside a transaction fails the call as "io", rolls the ` +
      "transaction back, and the pool's only client is replaced rather than leaked",
    () =>
      withDatabase(async (_, url) => {
        const victimUrl = new URL(url);
        victimUrl.searchParams.set("application_name", `victim_${process.pid}`);
        const storage = new PostgresStorage(victimUrl.toString(), { poolSize: 1 });
        const admin = adminPool(url);
        const locker = await admin.connect();
        try {
          const now = await failedRun(storage);
          // requeueRun updates the run, then deletes its failed steps: hold a lock on them so that
          // the transaction stops between the two, with the update made.
          await locker.query("BEGIN");
          await locker.query("SELECT 1 FROM reflow_steps WHERE run_id = 'r1' FOR UPDATE");
          // Settled into a value at once, so that its rejection is handled before it is asserted on.
          const requeue = storage.requeueRun("r1", now).then(() => undefined, (error: unknown) => error);
          await eventually(async () => {
            const { rows } = await admin.query(
              "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
              [`victim_${process.pid}`],
            );
            return rows[0]?.pid as number | undefined;
          }).then((pid) => admin.query("SELECT pg_terminate_backend($1)", [pid]));
          const error = await requeue;
          assert.ok(error instanceof StorageError, String(error));
          assert.equal(error.kind, "io");
          await locker.query("ROLLBACK");
          // Rolled back: still failed. And answered at all: the one pooled client was not leaked.
          assert.equal((await storage.getRun("r1"))?.status, "failed");
          assert.equal(await storage.requeueRun("r1", now), true);
          assert.equal((await storage.getRun("r1"))?.status, "pending");
        } finally {
          locker.release();
          await admin.end();
          await storage.close();
        }
      }),
  );

  test(
    `${cell}: a transaction whose client goes silent (a host cut off) is ended by the server after ` +
      'busyTimeoutMs, freeing its row locks for other hosts, and its late statement fails as "io"',
    () =>
      withDatabase(async (_, url) => {
        const BUSY_TIMEOUT_MS = 1_000;
        // The storage's pool, whose clients hold back requeueRun's second statement until released:
        // its transaction then sits idle on the server with the run's row locked, as when the host
        // running it is cut off from the network.
        const silence = gate();
        const real = adminPool(url);
        const pool: PgPool = {
          connect: async () => {
            const client = await real.connect();
            const query = client.query.bind(client) as PgPoolClient["query"];
            return Object.assign(client, {
              query: async (config: PgQueryConfig) => {
                if (config.text.startsWith("DELETE FROM reflow_steps")) await silence.promise;
                return query(config);
              },
            }) as unknown as PgPoolClient;
          },
          end: () => real.end(),
        };
        const storage = new PostgresStorage(pool, { busyTimeoutMs: BUSY_TIMEOUT_MS });
        const admin = adminPool(url);
        try {
          const now = await failedRun(storage);
          // Settled into a value at once, so that its rejection is handled before it is asserted on.
          const requeue = storage.requeueRun("r1", now).then(() => undefined, (error: unknown) => error);
          // Another host's write to the same row waits for the silent transaction's lock; it gets the
          // row once the server has ended that session (within its own lock_timeout, or it fails).
          await eventually(async () => {
            const { rows } = await admin.query(
              "SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE 'UPDATE reflow_runs%'",
            );
            return rows.length > 0 || undefined;
          });
          const other = await admin.connect();
          try {
            await other.query(`SET lock_timeout = ${20 * BUSY_TIMEOUT_MS}`);
            const { rowCount } = await other.query(
              "UPDATE reflow_runs SET updated_at = updated_at WHERE id = 'r1'",
            );
            assert.equal(rowCount, 1);
          } finally {
            other.release();
          }
          silence.open();
          const failure = await requeue;
          assert.ok(failure instanceof StorageError, String(failure));
          assert.equal(failure.kind, "io");
          // Rolled back: still failed, and the pool still answers.
          assert.equal((await storage.getRun("r1"))?.status, "failed");
        } finally {
          silence.open();
          await storage.close();
          await real.end();
          await admin.end();
        }
      }),
  );

  test(
    `${cell}: a session terminated in the same packet as its ready message fails the first query ` +
      'as "io" rather than crashing the process (no "error" listener yet)',
    async () => {
      // Just enough of a server: it accepts any startup, says ready and is shut down in one write.
      const message = (type: string, body: Uint8Array) => {
        const head = new Uint8Array(5);
        head[0] = type.charCodeAt(0);
        new DataView(head.buffer).setInt32(1, body.length + 4);
        return Buffer.concat([head, body]);
      };
      const text = (s: string) => new TextEncoder().encode(`${s}\0`);
      const terminated = Buffer.concat([
        message("R", new Uint8Array(4)), // AuthenticationOk
        message("Z", new TextEncoder().encode("I")), // ReadyForQuery
        message(
          "E",
          Buffer.concat([
            text("SFATAL"),
            text("C57P01"),
            text("Mterminating connection due to administrator command"),
            new Uint8Array(1),
          ]),
        ),
      ]);
      const server = createServer((socket) => socket.once("data", () => socket.end(terminated)));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { port } = server.address() as AddressInfo;
      const driver = postgresDriver(`postgres://u:p@127.0.0.1:${port}/db`, { poolSize: 1 });
      try {
        const failure = await driver.acquire().then(async (lease) => {
          try {
            await lease.query({ sql: "SELECT 1", params: [] });
          } finally {
            lease.release();
          }
        }).then(() => undefined, (error: unknown) => error);
        assert.ok(failure instanceof Error, String(failure));
        assert.equal(driver.classifyError(failure), "io");
      } finally {
        await driver.close();
        await new Promise((resolve) => server.close(resolve));
      }
    },
  );

  test(
    `${cell}: an idle worker polling once an hour is woken by another process's enqueue and event`,
    () =>
      withDatabase(async (database) => {
        const waits = createWorkflow({ name: "waits", input })
          .step("a", ({ input }) => input.n)
          .waitForEvent("go", { schema: schema<{ by: string }>() })
          .step("b", ({ prev }) => prev.by);
        const worker = createEngine({ storage: await database.open(), workflows: [waits] });
        const client = createEngine({ storage: await database.open(), workflows: [waits] });
        await worker.start(HOUR_MS);
        try {
          // The worker's first claim found nothing; from now on only a notification brings it back.
          const { runId } = await client.enqueue("waits", { n: 1 });
          await eventually(async () =>
            (await client.getRunStatus(runId))?.run.status === "waiting" || undefined
          );
          await client.sendEvent(runId, "go", { by: "elsewhere" });
          const done = await eventually(async () => {
            const details = await client.getRunStatus(runId);
            return details?.run.status === "completed" ? details : undefined;
          }, 20_000);
          assert.equal(done.run.output, "elsewhere");
        } finally {
          await worker.stop();
        }
      }),
  );

  test(
    `${cell}: advances that release runs due now send one NOTIFY per group; finishing or sleeping sends none`,
    () =>
      withDatabase(async (database, url) => {
        const storage = await database.open();
        const listener = new pg.Client({ connectionString: url });
        listener.on("error", () => {});
        await listener.connect();
        const heard: string[] = [];
        listener.on("notification", (message) => heard.push(message.payload ?? ""));
        await listener.query("LISTEN reflow_wake");
        let marks = 0;
        // Notifications arrive in commit order, so a mark sent after a write has committed follows the
        // write's own: what came before the mark is what the writes since the last mark sent.
        const sentSinceLastMark = async (): Promise<string[]> => {
          const mark = `mark ${++marks}`;
          await listener.query("SELECT pg_notify('reflow_wake', $1)", [mark]);
          await eventually(() => heard.includes(mark) || undefined);
          return heard.splice(0).slice(0, -1);
        };
        try {
          const now = Date.now();
          for (const id of ["a", "b", "c"]) {
            await storage.createRun({
              id,
              workflowName: "wf",
              input: "1",
              idempotencyKey: null,
              createdAt: now,
            });
          }
          assert.deepEqual(await sentSinceLastMark(), ["", "", ""], "one NOTIFY per enqueue");
          const claim = (at: number) =>
            storage.claimRuns({ workflowNames: ["wf"], limit: 3, now: at, leaseDurationMs: 60_000 });
          const [a, b, c] = await claim(now);
          assert.deepEqual(await sentSinceLastMark(), [], "a claim notifies no one");
          const applied = await Promise.all([
            storage.advanceRun(a!.id, a!.leaseId, { now: now + 1, status: "completed", output: "1" }),
            storage.advanceRun(b!.id, b!.leaseId, { now: now + 1, status: "pending" }),
            storage.advanceRun(c!.id, c!.leaseId, { now: now + 1, status: "sleeping", dueAt: now }),
          ]);
          assert.deepEqual(applied, [true, true, true]);
          assert.deepEqual(
            await sentSinceLastMark(),
            [""],
            "one NOTIFY for the group that released two runs",
          );
          const again = await claim(now + 2);
          assert.deepEqual(again.map((run) => run.id).sort(), ["b", "c"]);
          const [first, second] = again;
          await storage.advanceRun(first!.id, first!.leaseId, {
            now: now + 3,
            status: "completed",
            output: "1",
          });
          await storage.advanceRun(second!.id, second!.leaseId, {
            now: now + 3,
            status: "sleeping",
            dueAt: now + HOUR_MS,
          });
          await storage.advanceRun(second!.id, second!.leaseId, { now: now + 3 });
          assert.deepEqual(
            await sentSinceLastMark(),
            [],
            "finishing, sleeping and a lost lease notify no one",
          );
        } finally {
          await listener.end();
        }
      }),
  );

  test(`${cell}: statements are prepared unless preparedStatements is false; a non-boolean is refused`, () =>
    withDatabase(async (_, url) => {
      assert.throws(
        () => new PostgresStorage(url, { preparedStatements: "no" as unknown as boolean }),
        (error: unknown) => error instanceof ConfigError && error.field === "preparedStatements",
      );
      for (const preparedStatements of [true, false]) {
        // One connection, so that pg_prepared_statements (per session) is the storage's session's.
        const pool = new pg.Pool({ connectionString: url, max: 1 });
        pool.on("error", () => {});
        try {
          const storage = new PostgresStorage(pool, { preparedStatements });
          await storage.initialize();
          const run = {
            id: "r1",
            workflowName: "wf",
            input: "1",
            idempotencyKey: null,
            createdAt: Date.now(),
          };
          await storage.createRun(run);
          assert.equal((await storage.getRun("r1"))?.input, "1");
          await storage.close();
          const { rows } = await pool.query("SELECT count(*)::int AS n FROM pg_prepared_statements");
          assert.equal(rows[0].n > 0, preparedStatements, `prepared statements with ${preparedStatements}`);
          await pool.query("DELETE FROM reflow_runs");
        } finally {
          await pool.end();
        }
      }
    }));

  test(`${cell}: SQLSTATEs map to storage error kinds, and only contention is retried as busy`, () => {
    const kinds = Object.fromEntries(
      ["40001", "40P01", "55P03", "53300", "23505", "25006", "53100", "08006", "57P01", "22021", "42P01"].map(
        (code) => [code, classifyPostgresError(Object.assign(new Error(code), { code }))],
      ),
    );
    assert.deepEqual(kinds, {
      "40001": "busy",
      "40P01": "busy",
      "55P03": "busy",
      "53300": "busy",
      "23505": "unique",
      "25006": "readonly",
      "53100": "full",
      "08006": "io",
      "57P01": "io",
      "22021": "other",
      "42P01": "other",
    });
    assert.equal(classifyPostgresError(Object.assign(new Error("refused"), { code: "ECONNREFUSED" })), "io");
    assert.equal(classifyPostgresError("not an error"), "other");
    return Promise.resolve();
  });
});
