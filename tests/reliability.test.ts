// Every run ends: lost attempts count, crash loops are bounded, user code that throws anywhere
// fails an attempt or is reported with its own class, and hooks cannot reach run state.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ConditionError,
  createEngine,
  createWorkflow,
  type Engine,
  type EngineHooks,
  EventLoopBlockedError,
  HookError,
  LeasesHeldError,
  RecoveryLimitError,
  type ReflowError,
  type StandardSchemaV1,
  type StorageAdapter,
  ValidationError,
  WorkerLostError,
} from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { describeEachStorage } from "./support/storages.ts";
import { crashable, eventually, gate, schema } from "./support/fixtures.ts";

const input = schema<{ n: number }>();
const LEASE_MS = 1_000;
const ZERO_DELAY = { initialDelayMs: 0 } as const;

/** A clock the test moves by hand, so that a lease expires without waiting for it. */
function handClock() {
  let time = Date.UTC(2026, 0, 1);
  return {
    now: () => time,
    pastLease() {
      time += LEASE_MS + 1;
    },
  };
}

/** Background errors an engine reported, by class name. */
function errorLog() {
  const errors: ReflowError[] = [];
  return {
    errors,
    hooks: { onError: (error: ReflowError) => void errors.push(error) } satisfies EngineHooks,
  };
}

/** Any workflow an engine accepts. */
type AnyFlow = Parameters<typeof createEngine>[0]["workflows"][number];

/** The `onFailure` calls of a workflow. */
type Failures = { error: Error; stepName: string | undefined }[];

describeEachStorage((cell) => {
  /**
   * An engine on `storage` whose process can be "killed": `crash()` freezes its storage (as a
   * killed process's would stop writing), and its lease then expires for the next engine.
   */
  function engineOn<W extends AnyFlow>(
    storage: StorageAdapter,
    workflow: W,
    clock: ReturnType<typeof handClock>,
    hooks: EngineHooks = {},
  ): { engine: Engine<W>; crash(): void } {
    const doomed = crashable(storage);
    const engine = createEngine({
      storage: doomed.storage,
      workflows: [workflow],
      runLeaseDurationMs: LEASE_MS,
      now: clock.now,
      hooks,
    });
    return { engine, crash: () => doomed.crash() };
  }

  cell.it(
    "a step whose worker dies at every attempt fails after exactly maxAttempts attempts with WorkerLostError; onFailure runs once",
    async () => {
      const storage = await cell.open();
      const clock = handClock();
      const attempts: number[] = [];
      let entered = gate();
      const failures: Failures = [];
      const workflow = createWorkflow({ name: "w", input })
        .step("crashy", {
          retry: { maxAttempts: 3, ...ZERO_DELAY },
          handler: ({ attempt }) => {
            attempts.push(attempt);
            entered.open();
            return new Promise(() => {}); // the worker dies during every attempt
          },
        })
        .onFailure(({ error, stepName }) => void failures.push({ error, stepName }));
      const first = engineOn(storage, workflow, clock);
      const { runId } = await first.engine.enqueue("w", { n: 1 });
      let current = first;
      for (let engines = 0; engines < 3; engines++) {
        void current.engine.tick();
        await entered.promise;
        entered = gate();
        current.crash();
        clock.pastLease();
        current = engineOn(storage, workflow, clock);
      }
      assert.equal(await current.engine.tick(), 1);
      const details = await current.engine.getRunStatus(runId);
      assert.equal(details?.run.status, "failed");
      assert.equal(details?.run.error?.code, "WORKER_LOST");
      assert.deepEqual(details?.steps.map((s) => [s.name, s.status, s.attempts]), [["crashy", "failed", 3]]);
      assert.deepEqual(attempts, [1, 2, 3]);
      assert.equal(failures.length, 1);
      assert.ok(failures[0]!.error instanceof WorkerLostError);
      assert.equal((failures[0]!.error as WorkerLostError).stepName, "crashy");
      assert.equal((failures[0]!.error as WorkerLostError).runId, runId);
      assert.equal(failures[0]!.stepName, "crashy");
    },
  );

  cell.it("a lost attempt is retried as the next attempt and the run completes", async () => {
    const storage = await cell.open();
    const clock = handClock();
    const attempts: number[] = [];
    const entered = gate();
    const workflow = createWorkflow({ name: "w", input })
      .step("once", ({ input }) => input.n)
      .step("crashy", {
        retry: { maxAttempts: 2, ...ZERO_DELAY },
        handler: ({ attempt, prev }) => {
          attempts.push(attempt);
          if (attempt === 1) {
            entered.open();
            return new Promise<number>(() => {});
          }
          return prev + 1;
        },
      });
    const first = engineOn(storage, workflow, clock);
    const { runId } = await first.engine.enqueue("w", { n: 41 });
    void first.engine.tick();
    await entered.promise;
    first.crash();
    clock.pastLease();
    const second = engineOn(storage, workflow, clock);
    assert.equal(await second.engine.tick(), 1);
    const details = await second.engine.getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.equal(details?.run.output, 42);
    assert.deepEqual(details?.steps.map((s) => [s.name, s.attempts]), [["once", 1], ["crashy", 2]]);
    assert.deepEqual(attempts, [1, 2]);
  });

  cell.it("every unfinished branch of a parallel group is charged the lost attempt", async () => {
    const storage = await cell.open();
    const clock = handClock();
    const calls: string[] = [];
    const entered = gate();
    const hang = () => new Promise<never>(() => {});
    const workflow = createWorkflow({ name: "w", input })
      .parallel({
        done: ({ input }) => (calls.push("done"), input.n),
        flaky: {
          retry: { maxAttempts: 2, ...ZERO_DELAY },
          handler: ({ attempt }) => {
            calls.push(`flaky ${attempt}`);
            if (attempt === 1) {
              entered.open();
              return hang();
            }
            return "ok";
          },
        },
        fragile: ({ attempt }) => (calls.push(`fragile ${attempt}`), attempt === 1 ? hang() : "never"),
      });
    const first = engineOn(storage, workflow, clock);
    const { runId } = await first.engine.enqueue("w", { n: 1 });
    void first.engine.tick();
    await entered.promise;
    await eventually(() => calls.includes("done") && calls.includes("fragile 1") || undefined);
    // Let the finished branch commit before the worker dies.
    await eventually(async () =>
      (await storage.getStepResults(runId)).some((s) => s.stepName === "done") || undefined
    );
    first.crash();
    clock.pastLease();
    const second = engineOn(storage, workflow, clock);
    await second.engine.tick();
    const details = await second.engine.getRunStatus(runId);
    assert.equal(details?.run.status, "failed");
    assert.equal(details?.run.error?.code, "WORKER_LOST");
    assert.equal(details?.run.error?.stepName, "fragile");
    const byName = new Map(details?.steps.map((s) => [s.name, s]));
    assert.equal(byName.get("done")?.status, "completed");
    assert.deepEqual([byName.get("fragile")?.status, byName.get("fragile")?.attempts], ["failed", 1]);
    assert.equal(calls.filter((c) => c === "done").length, 1, "a finished branch is not run again");
    assert.ok(!calls.includes("fragile 2"), "a branch without attempts left is not run again");
  });

  cell.it(
    "a run reclaimed more than maxRecoveries times in a row without progress fails with RecoveryLimitError",
    async () => {
      const storage = await cell.open();
      const clock = handClock();
      const failures: Failures = [];
      let handlerCalls = 0;
      const workflow = createWorkflow({ name: "w", input })
        .step("s", () => ++handlerCalls)
        .onFailure(({ error, stepName }) => void failures.push({ error, stepName }));
      const engine = cell.stopAfter(
        createEngine({
          storage,
          workflows: [workflow],
          runLeaseDurationMs: LEASE_MS,
          now: clock.now,
          maxRecoveries: 2,
        }),
      );
      const { runId } = await engine.enqueue("w", { n: 1 });
      // Three workers claim the run and die before they commit anything.
      for (let i = 0; i < 3; i++) {
        const claimed = await storage.claimRuns({
          workflowNames: ["w"],
          limit: 1,
          now: clock.now(),
          leaseDurationMs: LEASE_MS,
        });
        assert.equal(claimed.length, 1);
        clock.pastLease();
      }
      assert.equal(await engine.tick(), 1);
      const details = await engine.getRunStatus(runId);
      assert.equal(details?.run.status, "failed");
      assert.equal(details?.run.error?.code, "RECOVERY_LIMIT");
      assert.equal(handlerCalls, 0);
      assert.equal(failures.length, 1);
      assert.ok(failures[0]!.error instanceof RecoveryLimitError);
      assert.equal((failures[0]!.error as RecoveryLimitError).recoveries, 3);
    },
  );

  cell.it(
    "a restarted engine with the same instanceId takes back its runs at once; without one, start() reports them",
    async () => {
      const storage = await cell.open();
      const entered = gate();
      const workflow = createWorkflow({ name: "w", input }).step("s", {
        retry: { maxAttempts: 2, ...ZERO_DELAY },
        handler: ({ attempt }) => {
          if (attempt === 1) {
            entered.open();
            return new Promise<string>(() => {});
          }
          return "resumed";
        },
      });
      const doomed = crashable(storage);
      const before = createEngine({ storage: doomed.storage, workflows: [workflow], instanceId: "slot-1" });
      const { runId } = await before.enqueue("w", { n: 1 });
      void before.tick();
      await entered.promise;
      doomed.crash();
      const heldUntil = (await storage.getRun(runId))?.dueAt;

      // A live peer holds a run too, and renews its lease (every 25 ms) while the stranger looks twice.
      const peerEntered = gate();
      const peerWorkflow = createWorkflow({ name: "peer", input }).step("s", () => {
        peerEntered.open();
        return new Promise<string>(() => {});
      });
      const peer = cell.stopAfter(
        createEngine({ storage, workflows: [peerWorkflow], heartbeatIntervalMs: 25, stopTimeoutMs: 10 }),
      );
      await peer.enqueue("peer", { n: 2 });
      void peer.tick();
      await peerEntered.promise;

      const log = errorLog();
      const stranger = cell.stopAfter(
        createEngine({
          storage,
          workflows: [workflow, peerWorkflow],
          hooks: log.hooks,
          heartbeatIntervalMs: 100,
        }),
      );
      await stranger.start(60_000);
      const leasesHeld = () => log.errors.filter((e) => e instanceof LeasesHeldError) as LeasesHeldError[];
      await eventually(() => leasesHeld().length > 0 || undefined);
      await stranger.stop();
      const reported = leasesHeld();
      assert.equal(reported.length, 1);
      assert.deepEqual(reported[0]!.runs, [{ runId, until: heldUntil }]);
      assert.equal(
        (await storage.getRun(runId))?.status,
        "running",
        "without instanceId the lease is waited for",
      );

      const after = cell.stopAfter(createEngine({ storage, workflows: [workflow], instanceId: "slot-1" }));
      assert.equal(await after.tick(), 1, "the default 30 s lease is not waited for");
      const details = await after.getRunStatus(runId);
      assert.equal(details?.run.status, "completed");
      assert.equal(details?.run.output, "resumed");
      assert.deepEqual(details?.steps.map((s) => s.attempts), [2]);
    },
  );

  /** Runs a one-run workflow to its end on a fresh engine; returns its details, onFailure calls and reported errors. */
  async function runToEnd(workflow: AnyFlow, hooks: EngineHooks = {}) {
    const storage = await cell.open();
    const log = errorLog();
    const failures: Failures = [];
    const withFailure = workflow.onFailure(({ error, stepName }) => void failures.push({ error, stepName }));
    const engine = cell.stopAfter(
      createEngine({ storage, workflows: [withFailure], hooks: { ...log.hooks, ...hooks } }),
    );
    const { runId } = await engine.enqueue(workflow.name, { n: 1 });
    while (await engine.tick() > 0);
    const details = await engine.getRunStatus(runId);
    return { details, failures, errors: log.errors, engine, runId };
  }

  const revoked = () => {
    const { proxy, revoke } = Proxy.revocable({}, {});
    revoke();
    return proxy;
  };
  const throwSites: readonly {
    readonly name: string;
    readonly workflow: () => AnyFlow;
    readonly code: string;
  }[] = [
    {
      name: "a when() that throws",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", {
          when: () => {
            throw new Error("flag lookup failed");
          },
          handler: () => 1,
        }),
      code: "CONDITION_FAILED",
    },
    {
      name: "a when() that rejects",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", {
          when: () => Promise.reject("no flag service"),
          handler: () => 1,
        }),
      code: "CONDITION_FAILED",
    },
    {
      name: "an output with a throwing getter",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", () => ({
          get amount(): number {
            throw new Error("getter exploded");
          },
        })),
      code: "SERIALIZATION",
    },
    {
      name: "an output with a throwing toJSON getter",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", () =>
          Object.defineProperty({}, "toJSON", {
            enumerable: true,
            get() {
              throw new Error("toJSON exploded");
            },
          })),
      code: "SERIALIZATION",
    },
    {
      name: "a revoked Proxy as output",
      workflow: () => createWorkflow({ name: "w", input }).step("s", () => revoked()),
      code: "SERIALIZATION",
    },
    {
      name: "a parallel branch returning a revoked Proxy",
      workflow: () => createWorkflow({ name: "w", input }).parallel({ b: () => revoked() }),
      code: "SERIALIZATION",
    },
    {
      name: "a handler throwing a revoked Proxy",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", () => {
          throw revoked();
        }),
      code: "STEP_FAILED",
    },
    {
      name: "a handler throwing an error whose message getter throws",
      workflow: () =>
        createWorkflow({ name: "w", input }).step("s", () => {
          const error = new Error("x");
          Object.defineProperty(error, "message", {
            get() {
              throw new Error("no message for you");
            },
          });
          throw error;
        }),
      code: "",
    },
  ];
  for (const site of throwSites) {
    cell.it(
      `${site.name} fails the run once with its typed error; onFailure runs once; nothing internal is reported`,
      async () => {
        const { details, failures, errors } = await runToEnd(site.workflow());
        assert.equal(details?.run.status, "failed");
        assert.equal(details?.run.error?.code ?? "", site.code);
        assert.equal(failures.length, 1);
        assert.deepEqual(errors.map((e) => e.code), []);
      },
    );
  }

  cell.it(
    "a when() that throws once is asked again on the retry, and evaluated once per attempt",
    async () => {
      let asked = 0;
      const workflow = createWorkflow({ name: "w", input }).step("s", {
        retry: { maxAttempts: 2, ...ZERO_DELAY },
        when: () => {
          asked++;
          if (asked === 1) throw new Error("flaky flag");
          return true;
        },
        handler: () => "ran",
      });
      const { details } = await runToEnd(workflow);
      assert.equal(details?.run.status, "completed");
      assert.equal(details?.run.output, "ran");
      assert.equal(asked, 2);
      assert.deepEqual(details?.steps.map((s) => s.attempts), [2]);
    },
  );

  cell.it(
    "a throwing onFailure and throwing hooks are reported as HookErrors; the run still ends",
    async () => {
      const workflow = createWorkflow({ name: "w", input })
        .step("s", () => {
          throw new Error("boom");
        })
        .onFailure(() => {
          throw new Error("compensation failed");
        });
      const storage = await cell.open();
      const log = errorLog();
      const engine = cell.stopAfter(createEngine({
        storage,
        workflows: [workflow],
        hooks: {
          ...log.hooks,
          onStepStart: () => {
            throw new Error("hook failed");
          },
          onRunFailed: () => Promise.reject(new Error("async hook failed")),
        },
      }));
      const { runId } = await engine.enqueue("w", { n: 1 });
      await engine.tick();
      assert.equal((await engine.getRunStatus(runId))?.run.status, "failed");
      await eventually(() => log.errors.length === 3 || undefined);
      assert.ok(log.errors.every((e) => e instanceof HookError));
      assert.deepEqual(log.errors.map((e) => (e as HookError).source).sort(), [
        "onFailure",
        "onRunFailed",
        "onStepStart",
      ]);
    },
  );

  cell.it(
    "a schema whose validate() throws or rejects makes enqueue and sendEvent reject with a ValidationError",
    async () => {
      const throwing: StandardSchemaV1<{ n: number }> = {
        "~standard": {
          version: 1,
          vendor: "tests",
          validate() {
            throw new Error("schema bug");
          },
        },
      };
      const rejecting: StandardSchemaV1<string> = {
        "~standard": {
          version: 1,
          vendor: "tests",
          validate: () => Promise.reject(new Error("async schema bug")),
        },
      };
      const storage = await cell.open();
      const bad = createWorkflow({ name: "bad", input: throwing }).step("s", () => 1);
      const waits = createWorkflow({ name: "waits", input }).waitForEvent("go", { schema: rejecting });
      const engine = cell.stopAfter(createEngine({ storage, workflows: [bad, waits] }));
      await assert.rejects(engine.enqueue("bad", { n: 1 }), (error: unknown) => {
        assert.ok(error instanceof ValidationError);
        assert.match(error.message, /schema bug/);
        return true;
      });
      const { runId } = await engine.enqueue("waits", { n: 1 });
      await assert.rejects(engine.sendEvent(runId, "go", "payload"), ValidationError);
      assert.equal((await engine.listRuns()).length, 1, "nothing was stored for the rejected enqueue");
    },
  );

  cell.it("hooks and streams that mutate what they receive change nothing stored or passed on", async () => {
    const seenPrev: unknown[] = [];
    const workflow = createWorkflow({ name: "w", input })
      .step("first", () => ({ amount: 1, items: [1] }))
      .step("second", ({ prev }) => {
        seenPrev.push(structuredClone(prev));
        return prev;
      })
      .onFailure(() => {});
    const storage = await cell.open();
    const mutationErrors: unknown[] = [];
    const mutate = (value: unknown) => {
      try {
        const object = value as { amount: number; items: number[] };
        object.amount = 999;
        object.items.push(999);
      } catch (error) {
        mutationErrors.push(error);
      }
    };
    const engine = cell.stopAfter(createEngine({
      storage,
      workflows: [workflow],
      hooks: {
        onStepComplete: (event) => mutate(event.output),
        onRunComplete: (event) => mutate(event.output),
        onRunStart: (event) => mutate(event.input),
      },
    }));
    const stream = engine.stream();
    const consumed = (async () => {
      for await (const event of stream) {
        if (event.type === "stepComplete") mutate(event.output);
        if (event.type === "runComplete") {
          mutate(event.output);
          return;
        }
      }
    })();
    const { runId } = await engine.enqueue("w", { n: 1 });
    await engine.tick();
    await consumed;
    const details = await engine.getRunStatus(runId);
    assert.deepEqual(seenPrev, [{ amount: 1, items: [1] }]);
    assert.deepEqual(details?.run.output, { amount: 1, items: [1] });
    assert.deepEqual(details?.run.input, { n: 1 });
    assert.deepEqual(details?.steps.map((s) => s.output), [{ amount: 1, items: [1] }, {
      amount: 1,
      items: [1],
    }]);
    assert.ok(
      mutationErrors.length > 0 && mutationErrors.every((e) => e instanceof TypeError),
      "values are frozen",
    );
  });

  cell.it("onFailure gets a frozen copy of the input", async () => {
    let frozen = false;
    const workflow = createWorkflow({ name: "w", input })
      .step("s", () => {
        throw new Error("boom");
      })
      .onFailure(({ input }) => {
        frozen = Object.isFrozen(input);
      });
    const storage = await cell.open();
    const engine = cell.stopAfter(createEngine({ storage, workflows: [workflow] }));
    await engine.enqueue("w", { n: 1 });
    await engine.tick();
    assert.equal(frozen, true);
  });
});

test("a heartbeat delayed by a blocked event loop reports an EventLoopBlockedError", async () => {
  const log = errorLog();
  const workflow = createWorkflow({ name: "w", input }).step("busy", () => {
    const until = performance.now() + 400;
    while (performance.now() < until) {
      // synchronous CPU work that blocks the event loop past a third of the lease
    }
    return new Promise((resolve) => setTimeout(resolve, 50));
  });
  const engine = createEngine({
    storage: new MemoryStorage(),
    workflows: [workflow],
    runLeaseDurationMs: 300,
    heartbeatIntervalMs: 60,
    hooks: log.hooks,
  });
  await engine.enqueue("w", { n: 1 });
  await engine.tick();
  const blocked = log.errors.find((e) => e instanceof EventLoopBlockedError) as
    | EventLoopBlockedError
    | undefined;
  assert.ok(blocked, `expected an EventLoopBlockedError, got ${log.errors.map((e) => e.code)}`);
  assert.ok(blocked.blockedMs > 150);
  assert.equal(blocked.leaseDurationMs, 300);
  await engine.stop();
});

test("a clock reading NaN is a ConfigError, reported by the worker loop instead of a spin", async () => {
  const log = errorLog();
  let claims = 0;
  const storage = new MemoryStorage();
  const counting = new Proxy(storage, {
    get(target, property, receiver) {
      if (property === "claimRuns") claims++;
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const workflow = createWorkflow({ name: "w", input }).step("s", () => 1);
  let broken = true;
  const now = () => broken ? NaN : Date.now();
  const engine = createEngine({ storage: counting, workflows: [workflow], now, hooks: log.hooks });
  const isConfigError = (error: unknown) => (error as ReflowError).code === "CONFIG";
  await assert.rejects(engine.tick(), isConfigError);
  // start() reads the clock too (to register the workflows' versions), and fails the same way.
  await assert.rejects(engine.start(20), isConfigError);
  // A clock that breaks once the loop runs is reported by the loop, which keeps polling, not spinning.
  broken = false;
  await engine.start(20);
  broken = true;
  await eventually(() => log.errors.length >= 2 || undefined);
  await engine.stop();
  assert.ok(log.errors.every((e) => e.code === "CONFIG"));
  assert.ok(claims < 50, `the loop spun: ${claims} claims`);
});

test("instanceId must be a slot name that cannot be confused in a lease id", () => {
  for (const instanceId of ["", "a:b", "x".repeat(129), 7]) {
    assert.throws(
      () => createEngine({ storage: new MemoryStorage(), workflows: [], instanceId: instanceId as string }),
      (error: unknown) =>
        (error as ReflowError).code === "CONFIG" && (error as { field?: string }).field === "instanceId",
    );
  }
});

test("ConditionError keeps what when() threw on its cause", () => {
  const thrown = new Error("x");
  const error = new ConditionError("s", thrown);
  assert.equal(error.cause, thrown);
  assert.equal(error.toJSON().stepName, "s");
});
