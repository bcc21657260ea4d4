// Workflow versions: what a run stores, several versions side by side, safe continuation across a
// changed definition, parking with VersionMismatchError, and checkRuns(), on every storage.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import {
  type AnyWorkflow,
  ConfigError,
  createEngine,
  createWorkflow,
  DuplicateWorkflowError,
  ReflowError,
  type StorageAdapter,
  VersionMismatchError,
  type VersionMismatchReason,
} from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { step } from "../src/storage/conformance_support.ts";
import { describeEachStorage } from "./support/storages.ts";
import { schema } from "./support/fixtures.ts";
import { runtimeName } from "./support/runtime.ts";
import { type SqliteSubject, sqliteSubjects } from "./support/sqlite_subjects.ts";

const input = schema<null>();

/** What every handler saw, to check that `prev` and `steps` agree with the stored results. */
type Seen = { step: string; prev: unknown; steps: Record<string, unknown> }[];

/** The original definition: `a, b, wait go, c`; c's output is computed from every earlier result. */
function original(seen: Seen, version?: string) {
  return createWorkflow({ name: "flow", input, ...(version === undefined ? {} : { version }) })
    .step("a", (ctx) => record(seen, "a", ctx, 1))
    .step("b", (ctx) => record(seen, "b", ctx, (ctx.prev as number) + 10))
    .waitForEvent("go")
    .step("c", (ctx) => {
      const steps = ctx.steps as Record<string, number>;
      return record(seen, "c", ctx, steps.a! + steps.b! + steps.go!);
    });
}

function record<T>(seen: Seen, step: string, ctx: { prev: unknown; steps: unknown }, value: T): T {
  seen.push({ step, prev: ctx.prev, steps: { ...(ctx.steps as Record<string, unknown>) } });
  return value;
}

type Handler = (ctx: { prev: unknown; steps: unknown }) => unknown;
const stepOf = (seen: Seen, name: string, value: (ctx: { prev: unknown; steps: unknown }) => unknown) =>
  ((ctx: { prev: unknown; steps: unknown }) => record(seen, name, ctx, value(ctx))) as Handler;

/** The c of the original, for definitions that keep it. */
const cOf = (seen: Seen) =>
  stepOf(seen, "c", (ctx) => {
    const steps = ctx.steps as Record<string, number>;
    return steps.a! + steps.b! + steps.go!;
  });

interface Change {
  readonly name: string;
  readonly build: (seen: Seen) => AnyWorkflow;
  /** The reason and unit of the park, or the output of a correct continuation (event go = 100). */
  readonly expect: { readonly park: VersionMismatchReason; readonly unit: string } | {
    readonly output: unknown;
  };
}

const base = () => createWorkflow({ name: "flow", input });

const changes: readonly Change[] = [
  {
    name: "steps reordered (b, a, wait, c)",
    build: (seen) =>
      base().step("b", stepOf(seen, "b", () => 10)).step("a", stepOf(seen, "a", () => 1)).waitForEvent("go")
        .step("c", cOf(seen)),
    expect: { park: "reordered", unit: "a" },
  },
  {
    name: "steps reordered (c, b, wait, a)",
    build: (seen) =>
      base().step("c", stepOf(seen, "c", () => 0)).step("b", stepOf(seen, "b", () => 10)).waitForEvent("go")
        .step("a", stepOf(seen, "a", () => 1)),
    expect: { park: "reordered", unit: "a" },
  },
  {
    name: "a step inserted before the run's position",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 1)).step("x", stepOf(seen, "x", () => 5))
        .step("b", stepOf(seen, "b", () => 10)).waitForEvent("go").step("c", cOf(seen)),
    expect: { park: "inserted", unit: "x" },
  },
  {
    name: "a step inserted after the run's position",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 1)).step("b", stepOf(seen, "b", () => 10)).waitForEvent("go")
        .step("x", stepOf(seen, "x", (ctx) => (ctx.prev as number) * 2)).step("c", cOf(seen)),
    expect: { output: 112 },
  },
  {
    name: "a passed step removed",
    build: (seen) => base().step("b", stepOf(seen, "b", () => 10)).waitForEvent("go").step("c", cOf(seen)),
    expect: { park: "removed", unit: "a" },
  },
  {
    name: "a step after the run's position removed",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 1)).step("b", stepOf(seen, "b", () => 10)).waitForEvent("go"),
    expect: { output: 100 },
  },
  {
    name: "a passed step renamed",
    build: (seen) =>
      base().step("a2", stepOf(seen, "a2", () => 1)).step("b", stepOf(seen, "b", () => 10)).waitForEvent("go")
        .step("c", cOf(seen)),
    expect: { park: "removed", unit: "a" },
  },
  {
    name: "a passed step turned into a parallel group",
    build: (seen) =>
      base().parallel({ a: stepOf(seen, "a", () => 1), x: stepOf(seen, "x", () => 5) })
        .step("b", stepOf(seen, "b", () => 10)).waitForEvent("go").step("c", cOf(seen)),
    expect: { park: "kindChanged", unit: "a" },
  },
  {
    name: "the wait removed",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 1)).step("b", stepOf(seen, "b", () => 10)).step(
        "c",
        cOf(seen),
      ),
    expect: { park: "removed", unit: "go" },
  },
  {
    name: "the wait turned into a sleep",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 1)).step("b", stepOf(seen, "b", () => 10)).sleep("go", 1)
        .step("c", cOf(seen)),
    expect: { park: "kindChanged", unit: "go" },
  },
  {
    name: "only handler code changed (the same shape)",
    build: (seen) =>
      base().step("a", stepOf(seen, "a", () => 2)).step("b", stepOf(seen, "b", () => 20)).waitForEvent("go")
        .step("c", cOf(seen)),
    expect: { output: 112 },
  },
];

describe("workflow versions (builder)", () => {
  test("a definition's version is the declared one, or a fingerprint of its shape only", () => {
    const seen: Seen = [];
    const one = original(seen);
    const same = base().step("a", () => 9).step("b", () => 9).waitForEvent("go").step("c", () => 9);
    assert.match(one.version, /^s[0-9a-f]{8}$/);
    assert.equal(same.version, one.version, "handlers are not part of the shape");
    assert.notEqual(
      base().step("b", () => 1).step("a", () => 1).version,
      base().step("a", () => 1).step("b", () => 1).version,
    );
    assert.notEqual(base().step("a", () => 1).version, base().parallel({ a: () => 1 }).version);
    assert.notEqual(base().waitForEvent("a").version, base().sleep("a", 1).version);
    assert.equal(original(seen, "7").version, "7");
    assert.equal(
      original(seen, "7").onFailure(() => {}).version,
      "7",
      "the declared version survives the builder",
    );
    assert.throws(() => createWorkflow({ name: "flow", version: "", input }), ConfigError);
  });

  test("one name and version registered twice is a DuplicateWorkflowError; two versions are not", () => {
    const seen: Seen = [];
    const storage = new MemoryStorage();
    assert.throws(
      () => createEngine({ storage, workflows: [original(seen, "1"), original(seen, "1")] }),
      DuplicateWorkflowError,
    );
    createEngine({ storage, workflows: [original(seen, "1"), original(seen, "2")] });
  });

  test("VersionMismatchError has a stable code, its fields and toJSON()", () => {
    const error = new VersionMismatchError("r1", "flow", "1", "a", "reordered");
    assert.ok(error instanceof ReflowError);
    assert.equal(error.code, "VERSION_MISMATCH");
    assert.deepEqual(
      { runId: error.runId, version: error.version, unit: error.unit, reason: error.reason },
      { runId: "r1", version: "1", unit: "a", reason: "reordered" },
    );
    assert.equal(error.toJSON().reason, "reordered");
  });
});

describeEachStorage((cell) => {
  /** Starts a run of the original definition and takes it to its wait; returns its id. */
  async function runToWait(storage: StorageAdapter, seen: Seen): Promise<string> {
    const engine = createEngine({ storage, workflows: [original(seen)] });
    const { runId } = await engine.enqueue("flow", null);
    await engine.tick();
    assert.equal((await engine.getRunStatus(runId))?.run.status, "waiting");
    await engine.stop();
    return runId;
  }

  function engineWith<const W extends AnyWorkflow>(
    storage: StorageAdapter,
    workflows: W[],
    errors: unknown[],
  ) {
    const onError = (error: unknown) => {
      errors.push(error);
    };
    return cell.stopAfter(createEngine({ storage, workflows, hooks: { onError } }));
  }

  for (const change of changes) {
    cell.it(
      `${change.name}: ${"park" in change.expect ? "parks the run" : "continues correctly"}`,
      async () => {
        const storage = await cell.open();
        const seen: Seen = [];
        const runId = await runToWait(storage, seen);
        const errors: unknown[] = [];
        const engine = engineWith(storage, [change.build(seen)], errors);
        await engine.sendEvent(runId, "go" as never, 100 as never);
        await engine.tick();
        await engine.tick();
        const details = (await engine.getRunStatus(runId))!;
        if ("output" in change.expect) {
          assert.equal(details.run.status, "completed", JSON.stringify(details.run.error));
          assert.equal(details.run.output, change.expect.output);
          assert.equal(details.run.version, change.build([]).version, "the decision to continue is stored");
        } else {
          assert.equal(details.run.status, "parked");
          assert.equal(details.run.error?.code, "VERSION_MISMATCH");
          const reported = errors.filter((error) => error instanceof VersionMismatchError);
          assert.equal(reported.length, 1, "reported once");
          const error = reported[0] as VersionMismatchError;
          assert.deepEqual(
            { runId: error.runId, version: error.version, unit: error.unit, reason: error.reason },
            { runId, version: original([]).version, unit: change.expect.unit, reason: change.expect.park },
          );
          const parked = await engine.listRuns({ status: "parked" });
          assert.deepEqual(parked.map((run) => run.id), [runId]);
          // Registering the run's own version again lets it continue, and the event sent meanwhile is kept.
          await engine.stop();
          const fixed = engineWith(storage, [change.build(seen), original(seen)], errors);
          await fixed.tick();
          await fixed.tick();
          const after = (await fixed.getRunStatus(runId))!;
          assert.equal(after.run.status, "completed", JSON.stringify(after.run.error));
          assert.equal(after.run.output, 112);
          assert.equal(errors.filter((error) => error instanceof VersionMismatchError).length, 1);
        }
        const final = (await createEngine({ storage, workflows: [] }).getRunStatus(runId))!;
        checkSeen(seen, final.steps.map((step) => [step.name, step.output]));
      },
    );
  }

  /** Every handler saw `prev` and `steps` as the stored results of the units before it. */
  function checkSeen(seen: Seen, stored: [string, unknown][]): void {
    const results = new Map(stored);
    for (const { step, steps } of seen) {
      for (const [name, value] of Object.entries(steps)) {
        if (results.has(name)) assert.deepEqual(value, results.get(name), `${step} saw steps.${name}`);
      }
    }
  }

  cell.it("a parked run stays parked and is reported once per engine start", async () => {
    const storage = await cell.open();
    const seen: Seen = [];
    const runId = await runToWait(storage, seen);
    const errors: unknown[] = [];
    const reordered = changes[0]!.build(seen);
    const engine = engineWith(storage, [reordered], errors);
    await engine.sendEvent(runId, "go" as never, 100 as never);
    await engine.tick();
    await engine.tick();
    assert.equal(errors.length, 1);
    await engine.stop();
    await engine.tick();
    assert.equal(errors.length, 2, "reported again after a restart");
    assert.equal(await engine.resume(runId), true, "resume re-queues a parked run");
    await engine.tick();
    assert.equal((await engine.getRunStatus(runId))?.run.status, "parked", "and the claim checks it again");
    assert.equal(errors.length, 2);
  });

  cell.it(
    "a waiting run whose wait is gone is parked when an engine starts, with no event sent",
    async () => {
      const storage = await cell.open();
      const seen: Seen = [];
      const runId = await runToWait(storage, seen);
      const errors: unknown[] = [];
      const engine = engineWith(
        storage,
        [changes.find((c) => c.name === "the wait removed")!.build(seen)],
        errors,
      );
      await engine.tick();
      await engine.tick();
      assert.equal((await engine.getRunStatus(runId))?.run.status, "parked");
      assert.equal(errors.length, 1);
    },
  );

  cell.it("a run not started yet moves to the new definition whatever changed", async () => {
    const storage = await cell.open();
    const seen: Seen = [];
    const old = createEngine({ storage, workflows: [original(seen)] });
    const { runId } = await old.enqueue("flow", null);
    const reordered = changes[0]!.build(seen);
    const engine = engineWith(storage, [reordered], []);
    await engine.tick();
    const details = (await engine.getRunStatus(runId))!;
    assert.equal(details.run.status, "waiting");
    assert.equal(details.run.version, reordered.version);
    assert.deepEqual(seen.map((s) => s.step), ["b", "a"]);
  });

  cell.it("a run stored without a version runs under the newest definition, as it stands", async () => {
    const storage = await cell.open();
    await storage.createRun({
      id: "old",
      workflowName: "flow",
      input: "null",
      idempotencyKey: null,
      createdAt: 0,
    });
    const seen: Seen = [];
    const engine = engineWith(storage, [original(seen, "1"), original(seen, "2")], []);
    await engine.tick();
    const run = (await engine.getRunStatus("old"))!.run;
    assert.deepEqual([run.status, run.version], ["waiting", null]);
  });

  cell.it("a declared version reused for another shape is reported to onError as a ConfigError", async () => {
    const storage = await cell.open();
    await createEngine({ storage, workflows: [original([], "1")] }).checkRuns();
    const errors: unknown[] = [];
    const reused = createWorkflow({ name: "flow", version: "1", input }).step("a", () => 1);
    await engineWith(storage, [reused], errors).tick();
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof ConfigError && errors[0].field === "version");
  });

  cell.it("two versions registered side by side each finish their own runs", async () => {
    const storage = await cell.open();
    const v1 = createWorkflow({ name: "flow", version: "1", input }).step("a", () => "one");
    const v2 = createWorkflow({ name: "flow", version: "2", input }).step("b", () => 1).step(
      "a",
      () => "two",
    );
    const old = createEngine({ storage, workflows: [v1] });
    const { runId: first } = await old.enqueue("flow", null);
    const engine = engineWith(storage, [v1, v2], []);
    const { runId: newest } = await engine.enqueue("flow", null);
    const { runId: named, version } = await engine.enqueue("flow", null, { version: "1" });
    assert.equal(version, "1", "the handle names the version");
    await assert.rejects(engine.enqueue("flow", null, { version: "3" }), ConfigError);
    await engine.tick();
    const outcome = async (id: string) => {
      const run = (await engine.getRunStatus(id))!.run;
      return [run.version, run.output];
    };
    assert.deepEqual(await outcome(first), ["1", "one"]);
    assert.deepEqual(await outcome(newest), ["2", "two"]);
    assert.deepEqual(await outcome(named), ["1", "one"]);
  });

  cell.it("runs of a workflow no definition has are reported by checkRuns(), not claimed", async () => {
    const storage = await cell.open();
    const seen: Seen = [];
    const runId = await runToWait(storage, seen);
    const renamed = createWorkflow({ name: "flow2", input }).step("a", () => 1);
    const engine = engineWith(storage, [renamed], []);
    assert.equal(await engine.sendEvent(runId, "go" as never, 100 as never), true, "the event is kept");
    await engine.tick();
    assert.equal((await engine.getRunStatus(runId))?.run.status, "waiting");
    const report = await engine.checkRuns();
    assert.equal(report.blocked, 1);
    assert.equal(report.versions[0]!.blockedRuns[0]!.reason, "workflowNotRegistered");
    // The old definition, registered again, consumes the event that was kept.
    const back = engineWith(storage, [original(seen)], []);
    await back.tick();
    assert.equal((await back.getRunStatus(runId))?.run.output, 112);
  });

  cell.it("checkRuns() counts, per workflow and version, the runs continued and blocked", async () => {
    const storage = await cell.open();
    const seen: Seen = [];
    const waitingRun = await runToWait(storage, seen);
    const old = createEngine({ storage, workflows: [original(seen)] });
    const { runId: pending } = await old.enqueue("flow", null);
    const appended = changes.find((c) => c.name === "a step inserted after the run's position")!.build(seen);
    const reordered = changes[0]!.build(seen);
    const compatible = await engineWith(storage, [appended], []).checkRuns();
    assert.deepEqual(
      compatible.versions.map((
        v,
      ) => [v.workflow, v.version, v.registered, v.inFlight, v.continuing, v.blocked]),
      [["flow", original([]).version, false, 2, 2, 0]],
    );
    const report = await engineWith(storage, [reordered], []).checkRuns({ pageSize: 1 });
    assert.equal(report.inFlight, 2);
    assert.equal(report.continuing, 1, `the run not started yet (${pending}) continues`);
    assert.deepEqual(report.versions[0]!.blockedRuns.map((e) => [e.runId, e.reason]), [[
      waitingRun,
      "reordered",
    ]]);
    assert.equal((await storage.getRun(waitingRun))?.status, "waiting", "checkRuns() changes nothing");
  });
});

/** The runs of the 100,000-run check: 10 % of a workflow that is gone, the rest half version 1, half 2. */
const TOTAL = 100_000;
const kindOf = (i: number) => i % 10 === 9 ? ["gone", "1"] : i % 2 === 0 ? ["flow", "1"] : ["flow", "2"];

/** Inserts the runs one `createRun()` at a time (MemoryStorage is fast enough). */
async function createRunsOneByOne(storage: StorageAdapter): Promise<void> {
  for (let i = 0; i < TOTAL; i++) {
    const [workflowName, workflowVersion] = kindOf(i);
    await storage.createRun({
      id: `r${String(i).padStart(6, "0")}`,
      workflowName: workflowName!,
      workflowVersion,
      input: "null",
      idempotencyKey: null,
      createdAt: i,
    });
  }
}

/** Inserts the same runs in one SQL statement, through the driver's own handle. */
async function createRunsInBulk(subject: SqliteSubject, path: string): Promise<void> {
  const handle = await (await subject.load()).openHandle(path);
  try {
    handle.prepare(
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) " +
        "INSERT INTO reflow_runs (id, workflow_name, workflow_version, status, input, created_at, " +
        "updated_at, due_at, claim_count) SELECT printf('r%06d', i), " +
        "CASE WHEN i % 10 = 9 THEN 'gone' ELSE 'flow' END, " +
        "CASE WHEN i % 10 = 9 OR i % 2 = 0 THEN '1' ELSE '2' END, 'pending', 'null', i, i, i, 0 FROM n",
    ).run(TOTAL);
  } finally {
    handle.close();
  }
}

const firstSqlite = sqliteSubjects.find((subject) => subject.available);
const bulkSubjects: { name: string; skip: string | false; open(): Promise<StorageAdapter> }[] = [
  {
    name: "MemoryStorage",
    skip: false,
    open: async () => {
      const storage = new MemoryStorage();
      await createRunsOneByOne(storage);
      return storage;
    },
  },
  {
    name: firstSqlite?.name ?? "SQLite",
    skip: firstSqlite === undefined ? "no SQLite driver loads here" : false,
    open: async () => {
      const subject = firstSqlite!;
      const path = subject.tempPath();
      const storage = (await subject.load()).open(path);
      await storage.initialize();
      await createRunsInBulk(subject, path);
      return storage;
    },
  },
];

describe("checkRuns() on 100,000 runs", () => {
  after(() => firstSqlite?.cleanup());
  for (const bulk of bulkSubjects) {
    test(
      `${bulk.name} on ${runtimeName}: reports every run in flight, by version`,
      { skip: bulk.skip },
      async () => {
        const storage = await bulk.open();
        try {
          await checkHundredThousand(storage);
        } finally {
          await storage.close();
        }
      },
    );
  }
});

async function checkHundredThousand(storage: StorageAdapter): Promise<void> {
  const seen: Seen = [];
  const v1 = original(seen, "1");
  const v2 = createWorkflow({ name: "flow", version: "2", input }).step("b", () => 1).step("a", () => 1);
  await storage.saveWorkflowVersions(
    [v1, v2].map((w) => ({ workflowName: w.name, version: w.version, shape: w.shape, createdAt: 0 })),
  );
  const total = TOTAL;
  // The first 100 runs have reached step a: version 2 (b, a) cannot continue those of version 1.
  const claimed = await storage.claimRuns({
    workflowNames: ["flow"],
    limit: 100,
    now: total,
    leaseDurationMs: 60_000,
  });
  for (const run of claimed) {
    await storage.advanceRun(run.id, run.leaseId, {
      now: total,
      step: step(run.id, "a", { updatedAt: total }),
      leaseExpiresAt: total + 60_000,
    });
  }
  const started = claimed.filter((run) => run.workflowVersion === "1").length;
  assert.ok(started > 0);
  const engine = createEngine({ storage, workflows: [v2] });
  const report = await engine.checkRuns({ pageSize: 10_000, maxListed: 5 });
  const rows = report.versions.map((
    v,
  ) => [v.workflow, v.version, v.inFlight, v.continuing, v.blocked, v.blockedRuns.length]);
  assert.deepEqual(rows, [
    ["flow", "1", 50_000, 50_000 - started, started, 5],
    ["flow", "2", 40_000, 40_000, 0, 0],
    ["gone", "1", 10_000, 0, 10_000, 5],
  ]);
  assert.equal(report.inFlight, total);
}
