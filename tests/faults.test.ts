// Storage faults under a running engine, on every SQL storage of the shared table, through
// tests/support/faulty_driver.ts: busy and I/O errors on a fraction of statements, and a disk that
// turns full or read-only mid-run and is then fixed. Runs must end exactly as they would without
// faults (no run failed or lost, every output right), what reaches onError must be a typed
// StorageError with its kind, and the database must stay intact.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  createEngine,
  createWorkflow,
  type Engine,
  type ReflowError,
  type RunAdvance,
  SqlStorage,
  type StorageAdapter,
  StorageError,
  type StorageErrorKind,
} from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { eventually, gate, schema } from "./support/fixtures.ts";
import { type FaultyDriver, faultyDriver } from "./support/faulty_driver.ts";
import { seededRandom } from "../scripts/chaos_producer.ts";
import { type StorageEntry, storages, type TestDatabase } from "./support/storages.ts";
import { runtimeName } from "./support/runtime.ts";

const input = schema<{ n: number }>();
/** Short leases, so that a run whose commit failed is reclaimed soon after the fault clears. */
const LEASE_MS = 300;

/**
 * Sequential steps, a step that fails once and succeeds on the retry, and a parallel group. Step "a"
 * awaits `inA()` if given, so that a test can hold runs in it.
 */
function mixed(inA?: () => Promise<void>) {
  return createWorkflow({ name: "mixed", input })
    .step("a", async ({ input }) => {
      await inA?.();
      return input.n + 1;
    })
    .step("retried", {
      retry: { maxAttempts: 5, backoff: "linear", initialDelayMs: 5, maxDelayMs: 5 },
      handler: ({ prev, attempt }) => {
        if (attempt === 1) throw new Error("first attempt fails");
        return prev * 2;
      },
    })
    .parallel({ x: ({ prev }) => prev + 1, y: ({ prev }) => prev + 2 })
    .step("sum", ({ prev, input }) => ({ n: input.n, total: prev.x + prev.y }));
}
type Mixed = ReturnType<typeof mixed>;
/** What `mixed` computes for `n`. */
const expected = (n: number) => ({ n, total: (n + 1) * 4 + 3 });

interface Setup {
  readonly faults: FaultyDriver;
  /** The storage over the faulty driver, which the engine runs on. */
  readonly storage: SqlStorage;
  readonly engine: Engine<Mixed>;
  /** A storage on the same database without faults, to read what is really stored. */
  readonly clean: StorageAdapter;
  readonly errors: ReflowError[];
  readonly database: TestDatabase;
}

async function setUp(entry: StorageEntry, seed: number, inA?: () => Promise<void>): Promise<Setup> {
  const database = await entry.database();
  const clean = await database.open();
  const faults = faultyDriver(database.driver!(), {}, seededRandom(seed));
  const storage = new SqlStorage(faults.driver);
  await storage.initialize();
  const errors: ReflowError[] = [];
  const engine = createEngine({
    storage,
    workflows: [mixed(inA)],
    concurrency: 4,
    runLeaseDurationMs: LEASE_MS,
    // A loaded machine may delay a heartbeat past half the short lease: a notice, not a storage fault.
    hooks: { onError: (error) => void (error.code === "EVENT_LOOP_BLOCKED" || errors.push(error)) },
  });
  return { faults, storage, engine, clean, errors, database };
}

async function tearDown(setup: Setup): Promise<void> {
  await setup.engine.stop();
  try {
    await setup.database.checkIntact?.();
  } finally {
    await setup.storage.close();
    await setup.database.close();
  }
}

/** Waits until every run is finished, reading through the fault-free storage. */
async function allFinished(
  clean: StorageAdapter,
  runIds: readonly string[],
  timeoutMs = 20_000,
): Promise<void> {
  await eventually(async () => {
    for (const id of runIds) {
      const run = await clean.getRun(id);
      if (!["completed", "failed", "cancelled"].includes(run!.status)) return undefined;
    }
    return true;
  }, timeoutMs);
}

/** Asserts that each run completed with the output `mixed` computes, every unit with the planned attempts. */
async function assertCompleted(
  engine: Engine,
  runIds: readonly string[],
  inputs: readonly number[],
): Promise<void> {
  for (const [index, runId] of runIds.entries()) {
    const details = await engine.getRunStatus(runId);
    assert.equal(details?.run.status, "completed", JSON.stringify(details?.run));
    assert.deepEqual(details.run.output, expected(inputs[index]!));
    assert.deepEqual(
      // Sorted: parallel branches are written in whichever order they finish.
      details.steps.map((step) => `${step.name} ${step.status} ${step.attempts}`).sort(),
      ["a completed 1", "retried completed 2", "sum completed 1", "x completed 1", "y completed 1"],
    );
  }
}

function assertTyped(errors: readonly ReflowError[], kinds: readonly StorageErrorKind[]): void {
  for (const error of errors) {
    assert.ok(error instanceof StorageError, `not a StorageError: ${error}`);
    assert.equal(error.code, "STORAGE");
    assert.ok(kinds.includes(error.kind), `kind ${error.kind} of ${error.message}`);
    assert.equal(typeof error.operation, "string");
  }
}

async function enqueueAll(engine: Engine<Mixed>, inputs: readonly number[]): Promise<string[]> {
  const ids: string[] = [];
  for (const n of inputs) ids.push((await engine.enqueue("mixed", { n })).runId);
  return ids;
}

const RUNS = Array.from({ length: 24 }, (_, i) => i);

for (const entry of storages.filter((entry) => entry.kind !== "memory")) {
  const cell = `${entry.name} on ${runtimeName}`;
  describe(`storage faults: ${cell}`, { skip: entry.skip }, () => {
    after(() => entry.cleanup());
    test(`${cell}: with 5% of statements busy, storage retries them and every run completes right`, async () => {
      const setup = await setUp(entry, 11);
      try {
        const runIds = await enqueueAll(setup.engine, RUNS);
        setup.faults.set({ busyRate: 0.05 });
        await setup.engine.start(10);
        await allFinished(setup.clean, runIds);
        setup.faults.set({ busyRate: 0 });
        await assertCompleted(setup.engine, runIds, RUNS);
        // PostgreSQL sends a few statements per group of runs, SQLite a few per run: count against them.
        const { busy } = setup.faults.injected;
        assert.ok(
          busy >= 5 && busy >= setup.faults.statements * 0.02,
          `only ${busy} busy failures injected in ${setup.faults.statements} statements`,
        );
        // Busy is retried inside the storage: one reaches the engine only if every retry fails too.
        assertTyped(setup.errors, ["busy"]);
        assert.ok(
          setup.errors.length < setup.faults.injected.busy / 10,
          `${setup.errors.length} busy errors escaped`,
        );
      } finally {
        await tearDown(setup);
      }
    });

    test(
      `${cell}: with 3% of statements failing with I/O errors, each is reported as a StorageError ` +
        'of kind "io", no run fails, and every run completes right once its lease is reclaimed',
      async () => {
        const setup = await setUp(entry, 12);
        try {
          const runIds = await enqueueAll(setup.engine, RUNS);
          setup.faults.set({ ioRate: 0.03 });
          await setup.engine.start(10);
          await allFinished(setup.clean, runIds);
          setup.faults.set({ ioRate: 0 });
          await assertCompleted(setup.engine, runIds, RUNS);
          assert.ok(setup.faults.injected.io > 0);
          assert.ok(setup.errors.length > 0, "no I/O error was reported");
          assertTyped(setup.errors, ["io"]);
        } finally {
          await tearDown(setup);
        }
      },
    );

    for (const disk of ["full", "readonly"] as const) {
      test(
        `${cell}: a disk that turns ${disk} mid-run stops progress with StorageErrors of kind ` +
          `"${disk}" to onError and rejected enqueues; once fixed, every run completes right`,
        async () => {
          // Runs hold in step "a" until the disk has failed, so that their next commits meet the fault.
          let entered = 0;
          const open = gate();
          const setup = await setUp(entry, 13, () => (entered++, open.promise));
          const inputs = RUNS.slice(0, 8);
          try {
            const runIds = await enqueueAll(setup.engine, inputs);
            await setup.engine.start(10);
            await eventually(() => entered >= 4 ? true : undefined);
            setup.faults.set({ disk });
            open.open();

            // Progress stops: every write fails with a typed error, reported, and nothing changes.
            await eventually(() =>
              setup.errors.some((e) => e instanceof StorageError && e.operation === "advanceRun")
                ? true
                : undefined
            );
            const before = await Promise.all(runIds.map((id) => setup.clean.getRun(id)));
            await assert.rejects(
              setup.engine.enqueue("mixed", { n: 99 }),
              (error: unknown) => error instanceof StorageError && error.kind === disk,
            );
            await new Promise((resolve) => setTimeout(resolve, LEASE_MS * 2));
            const during = await Promise.all(runIds.map((id) => setup.clean.getRun(id)));
            assert.deepEqual(
              during.map((r) => [r!.status, r!.updatedAt]),
              before.map((r) => [r!.status, r!.updatedAt]),
            );
            assert.ok(during.every((r) => r!.status !== "completed"));
            assertTyped(setup.errors, [disk]);
            const [reported] = setup.errors as StorageError[];
            assert.match(reported!.message, disk === "readonly" ? /read-?only/i : /full/i);

            // Fixed: the engine carries on by itself; runs whose commits failed are reclaimed.
            setup.faults.set({ disk: "ok" });
            await allFinished(setup.clean, runIds);
            await assertCompleted(setup.engine, runIds, inputs);
          } finally {
            open.open();
            await tearDown(setup);
          }
        },
      );
    }
  });
}

describe("storage faults in a parallel group", () => {
  test("a branch whose commit fails with a StorageError aborts its running siblings' signals", async () => {
    const storage = new MemoryStorage();
    const failing = new Proxy(storage, {
      get(target, property) {
        if (property !== "advanceRun") {
          const value = Reflect.get(target, property);
          return typeof value === "function" ? value.bind(target) : value;
        }
        return (runId: string, leaseId: string, change: RunAdvance) =>
          change.step?.stepName === "fast"
            ? Promise.reject(new StorageError("advanceRun", "disk I/O error", { kind: "io" }))
            : storage.advanceRun(runId, leaseId, change);
      },
    });
    const errors: ReflowError[] = [];
    const slowAborted = gate<unknown>();
    const workflow = createWorkflow({ name: "group", input })
      .parallel({
        fast: () => 1,
        slow: ({ signal }) =>
          new Promise<number>((resolve) => {
            signal.addEventListener("abort", () => slowAborted.open(signal.reason), { once: true });
            // Settles on its own too, so that the test fails rather than hangs without the abort.
            setTimeout(() => resolve(2), 2_000);
          }),
      });
    const engine = createEngine({
      storage: failing,
      workflows: [workflow],
      hooks: { onError: (error) => void errors.push(error) },
    });
    await engine.enqueue("group", { n: 1 });
    await engine.tick();
    const reason = await Promise.race([
      slowAborted.promise,
      new Promise((r) => setTimeout(() => r("not aborted"), 1_000)),
    ]);
    assert.ok(reason instanceof StorageError, `slow's signal: ${String(reason)}`);
    assert.equal(reason.kind, "io");
    assert.deepEqual(errors.map((e) => e.code), ["STORAGE"]);
    await engine.stop();
  });
});
