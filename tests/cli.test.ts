// The `reflow` CLI as users run it: cli.ts started as a child process by the runtime running the
// tests (Deno, Node or Bun), on a SQLite file seeded with runs of every kind, checking each
// command's output, --json, exit statuses, and that bad input changes nothing.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import process from "node:process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { StorageAdapter } from "../mod.ts";
import { runCli } from "../src/cli/main.ts";
import { MemoryStorage } from "../src/storage/memory.ts";
import { runtimeName, spawnArgs } from "./support/runtime.ts";
import { storages } from "./support/storages.ts";
import { MISMATCH, SEEDED, seedParkedRun, seedStore, T0, XSS } from "./support/operate_fixture.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const cliPath = join(root, "cli.ts");
const dir = mkdtempSync(join(tmpdir(), "reflow-cli-"));
const seeded = join(dir, "seeded.db");

// The SQLite driver cli.ts picks on this runtime.
const { SQLiteStorage } = runtimeName === "bun"
  ? await import("../drivers/bun_sqlite.ts")
  : await import("../drivers/node_sqlite.ts");
const openSqliteSync = (path: string): StorageAdapter & { close(): Promise<void> } => new SQLiteStorage(path);
const openSqlite = (path: string) => Promise.resolve(openSqliteSync(path));

type Result = { code: number | null; stdout: string; stderr: string };

/** Runs `reflow <args>` as a child process of this runtime, as a user does. */
function spawned(...args: string[]): Result {
  const { command, args: argv } = spawnArgs(cliPath, args);
  const result = spawnSync(command, argv, { cwd: dir, encoding: "utf8", timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs `reflow <args>` in this process, with the host cli.ts gives it (a process each time would
 * make this file slow; the spawned test below checks that cli.ts wires the same host).
 */
async function reflow(...args: string[]): Promise<Result> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(args, {
    stdout: (text) => void (stdout += text),
    stderr: (text) => void (stderr += text),
    isTerminal: false,
    openSqlite: (path) => existsSync(path) ? openSqliteSync(path) : null,
    openPostgres: async (url) =>
      new (await import("../drivers/postgres.ts")).PostgresStorage(url, { poolSize: 2 }),
    serve: () => Promise.reject(new Error("not served in-process")),
    now: Date.now,
  });
  return { code, stdout, stderr };
}

/** Another seeded database (with `run-parked` too when asked), for a command that changes it. */
let copies = 0;
async function freshCopy(options: { readonly parked?: boolean } = {}): Promise<string> {
  const path = join(dir, `copy${++copies}.db`);
  const storage = await openSqlite(path);
  await seedStore(storage);
  if (options.parked) await seedParkedRun(storage);
  await storage.close();
  return path;
}

async function statusOf(db: string, runId: string): Promise<string | undefined> {
  const storage = await openSqlite(db);
  try {
    return (await storage.getRun(runId))?.status;
  } finally {
    await storage.close();
  }
}

/** A usage error: exit 2, nothing on stdout, one line on stderr matching `message`. */
function assertUsageError(result: Result, message: RegExp): void {
  assert.equal(result.code, 2, result.stderr);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trimEnd().split("\n").length, 1, "one line");
}

describe(`reflow CLI on ${runtimeName}`, () => {
  before(async () => {
    const storage = await openSqlite(seeded);
    await seedStore(storage);
    await storage.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("--help (or no command) prints the usage, including what resume and events mean without the code", async () => {
    for (const args of [["--help"], [], ["help"]]) {
      const { code, stdout } = await reflow(...args);
      assert.equal(code, 0);
      assert.match(stdout, /^Usage: reflow <command>/m);
      for (
        const command of ["runs", "run <id>", "cancel <id>", "resume <id>", "purge", "schedules", "dashboard"]
      ) {
        assert.ok(stdout.includes(`  ${command}`), command);
      }
      assert.match(stdout, /runs when an engine that has its workflow picks it up/);
      assert.match(stdout, /Events cannot be sent/);
    }
  });

  test("runs prints a table newest first; --json prints the runs and the next cursor", async () => {
    const table = await reflow("runs", "--db", seeded);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^ID +WORKFLOW +STATUS +VERSION +CREATED +UPDATED +ERROR$/);
    assert.deepEqual(lines.slice(1).map((line) => line.split(/\s+/)[0]), SEEDED.map((run) => run.id));
    assert.match(
      table.stdout,
      /run-failed +orders +failed +- +.* ago +.* ago +DECLINED Error: card declined \(step charge\)/,
    );

    const json = await reflow("runs", "--db", seeded, "--json");
    assert.equal(json.code, 0);
    const page = JSON.parse(json.stdout);
    assert.deepEqual(page.runs.map((run: { id: string }) => run.id), SEEDED.map((run) => run.id));
    assert.deepEqual(page.runs.at(-1), {
      id: "run-done",
      workflow: "orders",
      version: null,
      status: "completed",
      input: { orderId: 1 },
      output: { total: 42 },
      error: null,
      idempotencyKey: null,
      createdAt: T0,
      updatedAt: T0 + 1250,
      dueAt: null,
      claimCount: 1,
    });
    assert.equal(page.next, null);
  });

  test("runs pages with --limit and --before, and filters by --status and --workflow", async () => {
    const first = await reflow("runs", "--db", seeded, "--limit", "2");
    assert.equal(first.code, 0);
    const cursor = /^Next page: --before (\S+)$/m.exec(first.stdout)?.[1];
    assert.equal(cursor, `${T0 + 180_000}:run-pending`);
    const pages = [JSON.parse((await reflow("runs", "--db", seeded, "--limit", "2", "--json")).stdout)];
    while (pages.at(-1).next !== null) {
      pages.push(
        JSON.parse(
          (await reflow("runs", "--db", seeded, "--limit=2", "--before", pages.at(-1).next, "--json")).stdout,
        ),
      );
    }
    assert.deepEqual(
      pages.flatMap((p) => p.runs.map((run: { id: string }) => run.id)),
      SEEDED.map((run) => run.id),
    );

    const ids = async (...args: string[]) => {
      const { runs } = JSON.parse((await reflow("runs", "--db", seeded, "--json", ...args)).stdout);
      return runs.map((run: { id: string }) => run.id);
    };
    assert.deepEqual(await ids("--status", "failed"), ["run-failed"]);
    assert.deepEqual(await ids("--status", "failed,waiting"), ["run-waiting", "run-failed"]);
    assert.deepEqual(await ids("--workflow", "orders"), ["run-pending", "run-failed", "run-done"]);
    assert.deepEqual(await ids("--workflow", "orders", "--status", "completed"), ["run-done"]);
    assert.match((await reflow("runs", "--db", seeded, "--workflow", "none")).stdout, /^No runs\.$/m);
  });

  test("run shows the run, its timeline and pending events; --json prints { run, steps, pendingEvents }; an unknown id exits 1", async () => {
    const shown = await reflow("run", "run-failed", "--db", seeded);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^status +failed$/m);
    assert.match(shown.stdout, /^error +DECLINED Error: card declined \(step charge\)$/m);
    assert.match(shown.stdout, /^input +\{"orderId":2\}$/m);
    assert.match(shown.stdout, /^UNIT +STATUS +ATTEMPTS +AT +TOOK +ERROR \/ OUTPUT$/m);
    assert.match(shown.stdout, /^charge +failed +3 +\+3\.0s +3\.0s +DECLINED Error: card declined/m);
    const done = await reflow("run", "run-done", "--db", seeded);
    assert.match(done.stdout, /^output +\{"total":42\}$/m);
    assert.match(done.stdout, /^charge +completed +1 +\+1\.3s +1\.3s +\{"charged":42\}$/m);

    const json = JSON.parse((await reflow("run", "run-done", "--db", seeded, "--json")).stdout);
    assert.equal(json.run.id, "run-done");
    assert.deepEqual(json.steps, [{
      id: "run-done/charge",
      runId: "run-done",
      name: "charge",
      status: "completed",
      output: { charged: 42 },
      error: null,
      attempts: 1,
      dueAt: null,
      updatedAt: T0 + 1250,
    }]);

    assert.deepEqual(json.pendingEvents, [], "a finished run has no pending events");
    assert.ok(!done.stdout.includes("Pending events"), "no section without events");

    // An event sent for a later wait: listed after the timeline, its payload on one line.
    const waiting = await reflow("run", "run-waiting", "--db", seeded);
    assert.match(
      waiting.stdout,
      /\nPending events \(sent, not yet received by a wait\):\nEVENT +SENT +PAYLOAD\n/,
    );
    assert.match(waiting.stdout, /^escalate +2026-01-01T00:02:01\.000Z \(.* ago\) +\{"note":"<script>/m);
    const waitingJson = JSON.parse((await reflow("run", "run-waiting", "--db", seeded, "--json")).stdout);
    assert.deepEqual(waitingJson.pendingEvents, [{
      name: "escalate",
      payload: { note: XSS },
      createdAt: T0 + 121_000,
    }]);

    const missing = await reflow("run", "nope", "--db", seeded);
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "");
    assert.equal(missing.stderr, 'reflow: Run "nope" not found\n');
  });

  test("cancel cancels an unfinished run and refuses a finished or unknown one", async () => {
    const db = await freshCopy();
    const cancelled = await reflow("cancel", "run-waiting", "--db", db);
    assert.equal(cancelled.code, 0, cancelled.stderr);
    assert.equal(cancelled.stdout, "Cancelled run run-waiting.\n");
    assert.equal(await statusOf(db, "run-waiting"), "cancelled");
    assert.deepEqual(JSON.parse((await reflow("cancel", "run-pending", "--db", db, "--json")).stdout), {
      id: "run-pending",
      cancelled: true,
    });
    const again = await reflow("cancel", "run-done", "--db", db);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^reflow: Cannot cancel run "run-done": it is completed/);
    assert.equal((await reflow("cancel", "nope", "--db", db)).code, 1);
    assert.equal(await statusOf(db, "run-done"), "completed");
  });

  test("resume re-queues a failed run and refuses one that is not failed, cancelled or parked", async () => {
    const db = await freshCopy();
    const resumed = await reflow("resume", "run-failed", "--db", db);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(
      resumed.stdout,
      /^Re-queued run run-failed: it runs when an engine with its workflow picks it up\.$/m,
    );
    assert.equal(await statusOf(db, "run-failed"), "pending");
    const refused = await reflow("resume", "run-done", "--db", db, "--json");
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /Cannot resume run "run-done": it is completed \(only a failed, cancelled or parked run/,
    );
    assert.equal(await statusOf(db, "run-done"), "completed");
  });

  test("a parked run is listed with its version, shows its VERSION_MISMATCH, and resume re-queues it", async () => {
    const db = await freshCopy({ parked: true });
    const table = await reflow("runs", "--status", "parked", "--db", db);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^run-parked +shipping +parked +2 +.* ago +.* ago +VERSION_MISMATCH /m);
    const listed = JSON.parse((await reflow("runs", "--status", "parked", "--db", db, "--json")).stdout);
    assert.deepEqual(listed.runs.map((run: { version: string }) => run.version), ["2"]);

    const shown = await reflow("run", "run-parked", "--db", db);
    assert.match(shown.stdout, /^status +parked$/m);
    assert.match(shown.stdout, /^version +2$/m);
    assert.ok(shown.stdout.includes(`error    VERSION_MISMATCH VersionMismatchError: ${MISMATCH.message}\n`));
    const json = JSON.parse((await reflow("run", "run-parked", "--db", db, "--json")).stdout);
    assert.deepEqual([json.run.version, json.run.error], ["2", MISMATCH]);

    const resumed = await reflow("resume", "run-parked", "--db", db, "--json");
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(JSON.parse(resumed.stdout), { id: "run-parked", resumed: true });
    assert.equal(await statusOf(db, "run-parked"), "pending");
  });

  test("purge deletes finished runs past the age, by status, and keeps the others", async () => {
    const db = await freshCopy();
    assert.deepEqual(
      JSON.parse(
        (await reflow("purge", "--older-than", "30d", "--status", "completed", "--db", db, "--json")).stdout,
      ),
      {
        purged: 2,
      },
    );
    assert.equal(await statusOf(db, "run-done"), undefined);
    assert.equal(await statusOf(db, "run-failed"), "failed");
    const rest = await reflow("purge", "--older-than", "1d", "--db", db);
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(rest.stdout, "Purged 1 finished run.\n");
    assert.equal(await statusOf(db, "run-waiting"), "waiting", "unfinished runs stay");
  });

  test("purge shows its progress per batch on a terminal, on stderr", async () => {
    const storage = new MemoryStorage();
    for (let i = 0; i < 1200; i++) {
      await storage.createRun({
        id: `r${i}`,
        workflowName: "w",
        input: "{}",
        idempotencyKey: null,
        createdAt: T0,
      });
    }
    for (
      const run of await storage.claimRuns({
        workflowNames: ["w"],
        limit: 1200,
        now: T0,
        leaseDurationMs: 1000,
      })
    ) {
      await storage.advanceRun(run.id, run.leaseId, { now: T0, status: "completed", output: "null" });
    }
    let stdout = "";
    let stderr = "";
    const code = await runCli(["purge", "--older-than", "7d", "--db", "memory"], {
      stdout: (text) => void (stdout += text),
      stderr: (text) => void (stderr += text),
      isTerminal: true,
      openSqlite: () => storage,
      openPostgres: () => Promise.reject(new Error("not used")),
      serve: () => Promise.reject(new Error("not served")),
      now: Date.now,
    });
    assert.equal(code, 0);
    assert.equal(stdout, "Purged 1,200 finished runs.\n");
    assert.equal(
      stderr,
      "\rPurging… 500 runs deleted\rPurging… 1,000 runs deleted\rPurging… 1,200 runs deleted\n",
    );
  });

  test("schedules lists the schedules; --json prints them decoded", async () => {
    const table = await reflow("schedules", "--db", seeded);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^KEY +WORKFLOW +EVERY +NEXT +LAST RUN$/m);
    assert.match(
      table.stdout,
      /^nightly-report +orders +cron 0 3 \* \* \* +2026-01-02T00:00:00\.000Z \(.* ago\) +-$/m,
    );
    assert.deepEqual(JSON.parse((await reflow("schedules", "--db", seeded, "--json")).stdout), [{
      key: "nightly-report",
      workflow: "orders",
      input: { report: true },
      recurrence: { cron: "0 3 * * *" },
      intervalMs: null,
      cron: "0 3 * * *",
      nextRunAt: T0 + 86_400_000,
      lastRunAt: null,
      lastRunId: null,
      createdAt: T0,
      updatedAt: T0,
    }]);
  });

  test("bad input is a usage error (exit 2, one line) and changes nothing", async () => {
    const db = await freshCopy();
    const cases: [string[], RegExp][] = [
      [["frobnicate", "--db", db], /Unknown command "frobnicate"/],
      [["runs"], /Give --db <file>/],
      [["runs", "--db"], /Option --db needs a value/],
      [["runs", "--db", db, "--frob", "1"], /Unknown option --frob for "runs"/],
      [["runs", "--db", db, "--status", "bogus"], /Invalid listRuns status/],
      [["runs", "--db", db, "--limit", "0"], /Invalid --limit "0"/],
      [["runs", "--db", db, "--limit", "5000"], /Invalid listRuns limit 5000/],
      [["runs", "--db", db, "--before", "yesterday"], /Invalid cursor "yesterday"/],
      [["run", "--db", db], /"run" takes one run id, got none/],
      [["cancel", "a", "b", "--db", db], /"cancel" takes one run id, got 2/],
      [["purge", "--db", db], /"purge" needs --older-than/],
      [["purge", "--older-than", "soon", "--db", db], /Invalid olderThan "soon"/],
      [["purge", "--older-than", "1d", "--status", "pending", "--db", db], /Invalid status/],
      [["dashboard", "--port", "70000", "--db", db], /Invalid --port "70000"/],
      [["runs", "--db", join(dir, "missing.db")], /No database at/],
      [["runs", "--db", db, "--postgres", "postgres://x"], /either --db or --postgres/],
    ];
    for (const [args, message] of cases) assertUsageError(await reflow(...args), message);
    assert.equal(existsSync(join(dir, "missing.db")), false, "no database file was created");
    assert.deepEqual(
      JSON.parse((await reflow("runs", "--db", db, "--json")).stdout).runs.map((run: { status: string }) =>
        run.status
      ),
      SEEDED.map((run) => run.status),
      "every run as seeded",
    );
  });

  test("cli.ts run by the runtime prints every command as runCli does, and exits 0, 1 and 2", async () => {
    const help = spawned("--help");
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: reflow <command>/m);
    const shown = spawned("run", "run-failed", "--db", seeded, "--json");
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(JSON.parse(shown.stdout).run.error.message, "card declined");
    const db = await freshCopy();
    const cancelled = spawned("cancel", "run-waiting", "--db", db);
    assert.deepEqual([cancelled.code, cancelled.stdout], [0, "Cancelled run run-waiting.\n"]);
    assert.equal(await statusOf(db, "run-waiting"), "cancelled");
    const missing = spawned("resume", "nope", "--db", db);
    assert.deepEqual([missing.code, missing.stderr], [1, 'reflow: Run "nope" not found\n']);
    assertUsageError(spawned("runs", "--db", join(dir, "absent.db")), /No database at/);
    assert.equal(existsSync(join(dir, "absent.db")), false, "no database file was created");

    // Every other command prints from the child what the in-process runs above print.
    const reads = [["runs", "--status", "failed,waiting"], ["run", "run-done"], ["schedules"]];
    for (const args of reads) {
      const child = spawned(...args, "--db", seeded, "--json");
      assert.deepEqual(child, await reflow(...args, "--db", seeded, "--json"), args.join(" "));
    }
    for (const args of [["resume", "run-failed"], ["purge", "--older-than", "30d"]]) {
      const child = spawned(...args, "--db", await freshCopy(), "--json");
      assert.deepEqual(child, await reflow(...args, "--db", await freshCopy(), "--json"), args.join(" "));
    }
  });

  test("dashboard serves on loopback and refuses every request without the printed token", async () => {
    const { command, args } = spawnArgs(cliPath, ["dashboard", "--db", seeded, "--port", "0"]);
    const child = spawn(command, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    try {
      let out = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (chunk) => {
          out += chunk;
          const match = /Reflow dashboard: (http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{32})/.exec(out);
          if (match) resolve(match[1]!);
        });
        child.once("exit", (code) => reject(new Error(`dashboard exited with ${code}: ${out}`)));
      });
      const plain = url.replace(/\?token=.*/, "");
      assert.equal((await fetch(plain)).status, 401);
      assert.equal((await fetch(`${plain}runs/run-done`)).status, 401);
      assert.equal((await fetch(`${plain}?token=wrong`)).status, 401);
      const admitted = await fetch(url, { redirect: "manual" });
      assert.equal(admitted.status, 303);
      const cookie = admitted.headers.get("set-cookie")?.split(";")[0] ?? "";
      assert.match(cookie, /^reflow_token=[0-9a-f]{32}$/);
      const page = await fetch(plain, { headers: { cookie } });
      assert.equal(page.status, 200);
      assert.match(await page.text(), /run-failed/);
    } finally {
      child.kill();
    }
  });

  // The same commands on PostgreSQL: the fixture seeded into a schema of the test server prints
  // what it prints from the SQLite file, and cli.ts opens it from a connection string.
  const postgres = storages.find((entry) => entry.kind === "postgres")!;
  describe(`reflow CLI --postgres on ${runtimeName}`, { skip: postgres.skip }, () => {
    after(() => postgres.cleanup());

    test("every read prints from PostgreSQL what it prints from SQLite; cancel and resume change it", async () => {
      const database = await postgres.database();
      try {
        await seedStore(await database.open());
        const url = database.url!;
        const reads = [
          ["runs"],
          ["runs", "--status", "failed,waiting", "--limit", "1"],
          ["run", "run-done"],
          [
            "run",
            "run-waiting",
          ],
          ["schedules"],
        ];
        for (const args of reads) {
          const fromPostgres = await reflow(...args, "--postgres", url, "--json");
          assert.equal(fromPostgres.code, 0, fromPostgres.stderr);
          assert.deepEqual(fromPostgres, await reflow(...args, "--db", seeded, "--json"), args.join(" "));
        }
        const table = await reflow("runs", "--postgres", url);
        assert.match(table.stdout, /run-failed +orders +failed/);

        assert.deepEqual(
          [await reflow("cancel", "run-waiting", "--postgres", url)].map((r) => [r.code, r.stdout]),
          [[0, "Cancelled run run-waiting.\n"]],
        );
        assert.equal((await reflow("resume", "run-failed", "--postgres", url)).code, 0);
        const rows = await database.read!(
          "SELECT id, status FROM reflow_runs WHERE id IN ('run-waiting', 'run-failed') ORDER BY id",
        );
        assert.deepEqual(rows, [{ id: "run-failed", status: "pending" }, {
          id: "run-waiting",
          status: "cancelled",
        }]);

        // cli.ts, run by the runtime, opens the same store from the connection string.
        const child = spawned("run", "run-done", "--postgres", url, "--json");
        assert.deepEqual(child, await reflow("run", "run-done", "--postgres", url, "--json"));
      } finally {
        await database.close();
      }
    });

    test("a schema Reflow never initialised fails with exit 1, and nothing is created", async () => {
      const database = await postgres.database();
      try {
        const absent = `reflow_cli_absent_${process.pid}`;
        const url = new URL(database.url!);
        url.searchParams.set("options", `-c search_path=${absent}`);
        const result = await reflow("runs", "--postgres", url.toString());
        assert.equal(result.code, 1);
        assert.equal(result.stdout, "");
        assert.match(result.stderr, /^reflow: .*reflow_runs.*\n$/);
        assert.deepEqual(
          await database.read!(`SELECT count(*)::int AS found FROM pg_namespace WHERE nspname = '${absent}'`),
          [{ found: 0 }],
        );
      } finally {
        await database.close();
      }
    });
  });
});
