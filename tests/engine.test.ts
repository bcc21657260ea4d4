import { describe, test } from "node:test";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import {
  ConfigError,
  createEngine,
  createWorkflow,
  DuplicateStepError,
  DuplicateWorkflowError,
  type EngineEvent,
  HookError,
  IdempotencyConflictError,
  type ReflowError,
  type RetryPolicy,
  RunCancelledError,
  StepTimeoutError,
  ValidationError,
} from "../mod.ts";
import { MemoryStorage, testEngine } from "../testing.ts";
import { newRunId } from "../src/engine/run_id.ts";
import { crashable, eventually, gate, schema, thrownBy } from "./support/fixtures.ts";
import { spawnArgs } from "./support/runtime.ts";

const numberInput = schema<{ n: number }>((value) =>
  typeof (value as { n?: unknown })?.n === "number" ? undefined : "Expected { n: number }"
);

describe("workflow builder", () => {
  test("each builder call returns a new workflow and leaves the old one unchanged", () => {
    const base = createWorkflow({ name: "w", input: numberInput });
    const one = base.step("a", () => 1);
    const two = one.step("b", () => 2);
    assert.equal(base.units.length, 0);
    assert.equal(one.units.length, 1);
    assert.deepEqual(two.units.map((unit) => unit.name), ["a", "b"]);
    assert.ok(Object.isFrozen(two.units));
  });

  test("a duplicate step name is a DuplicateStepError naming workflow and step", () => {
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("a", () => 1);
    const error = thrownBy(() => workflow.step("a", () => 2), DuplicateStepError);
    assert.equal(error.workflowName, "w");
    assert.equal(error.stepName, "a");
    assert.equal(error.code, "DUPLICATE_STEP");
  });

  for (
    const [label, retry, field] of [
      ["zero maxAttempts", { maxAttempts: 0 }, "retry.maxAttempts"],
      ["fractional maxAttempts", { maxAttempts: 1.5 }, "retry.maxAttempts"],
      ["unknown backoff", { backoff: "cubic" }, "retry.backoff"],
      ["negative initialDelayMs", { initialDelayMs: -1 }, "retry.initialDelayMs"],
      ["NaN initialDelayMs", { initialDelayMs: Number.NaN }, "retry.initialDelayMs"],
      ["maxDelayMs below initialDelayMs", { initialDelayMs: 100, maxDelayMs: 10 }, "retry.maxDelayMs"],
      ["jitter above 1", { jitter: 2 }, "retry.jitter"],
    ] as const
  ) {
    test(`a retry policy with ${label} is a ConfigError on field ${field}`, () => {
      const workflow = createWorkflow({ name: "w", input: numberInput });
      const error = thrownBy(
        () => workflow.step("a", { handler: () => 1, retry: retry as RetryPolicy }),
        ConfigError,
      );
      assert.equal(error.field, field);
    });
  }

  test("invalid timeouts, handlers, names and schemas are ConfigErrors", () => {
    const workflow = createWorkflow({ name: "w", input: numberInput });
    assert.throws(() => workflow.step("a", { handler: () => 1, timeoutMs: 0 }), ConfigError);
    assert.throws(() => workflow.step("a", { handler: () => 1, timeoutMs: Infinity }), ConfigError);
    // deno-lint-ignore no-explicit-any
    assert.throws(() => workflow.step("a", {} as any), ConfigError);
    assert.throws(() => workflow.step("", () => 1), ConfigError);
    // deno-lint-ignore no-explicit-any
    assert.throws(() => createWorkflow({ name: "", input: numberInput as any }), ConfigError);
    // deno-lint-ignore no-explicit-any
    assert.throws(() => createWorkflow({ name: "x", input: {} as any }), ConfigError);
  });
});

describe("engine options", () => {
  test("invalid options are ConfigErrors naming the field", () => {
    const storage = new MemoryStorage();
    const cases: [Record<string, unknown>, string][] = [
      [{ concurrency: 0 }, "concurrency"],
      [{ concurrency: 2.5 }, "concurrency"],
      [{ runLeaseDurationMs: -5 }, "runLeaseDurationMs"],
      [{ runLeaseDurationMs: 100, heartbeatIntervalMs: 100 }, "heartbeatIntervalMs"],
      [{ stopTimeoutMs: Number.NaN }, "stopTimeoutMs"],
      [{ hooks: { onRunStart: "nope" } }, "hooks.onRunStart"],
    ];
    for (const [extra, field] of cases) {
      const error = thrownBy(() => createEngine({ storage, workflows: [], ...extra }), ConfigError);
      assert.equal(error.field, field, JSON.stringify(extra));
    }
    // deno-lint-ignore no-explicit-any
    assert.throws(() => createEngine({ storage: {} as any, workflows: [] }), ConfigError);
  });

  test("two workflows with one name are a DuplicateWorkflowError", () => {
    const a = createWorkflow({ name: "same", input: numberInput });
    assert.throws(
      () => createEngine({ storage: new MemoryStorage(), workflows: [a, a] }),
      DuplicateWorkflowError,
    );
  });
});

describe("running workflows", () => {
  test("steps run in order with typed prev and steps, and the last output is the run's output", async () => {
    const workflow = createWorkflow({ name: "order", input: numberInput })
      .step("double", ({ input }) => input.n * 2)
      .step("describe", ({ prev, steps }) => ({ doubled: prev, again: steps.double, at: new Date(0) }));
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("order", { n: 21 });
    assert.equal(result.status, "completed");
    assert.deepEqual(result.output, { doubled: 42, again: 42, at: new Date(0) });
    assert.deepEqual(result.steps.double, { status: "completed", output: 42, error: null });
  });

  test("the steps snapshot is deep-frozen", async () => {
    let frozen = false;
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("a", () => ({ list: [1] }))
      .step("b", ({ steps }) => {
        frozen = Object.isFrozen(steps) && Object.isFrozen(steps.a) && Object.isFrozen(steps.a.list);
      });
    const te = testEngine({ workflows: [workflow] });
    await te.run("w", { n: 1 });
    assert.ok(frozen);
  });

  test("complete() ends the run early with its value, and later steps never run", async () => {
    let laterRan = false;
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("check", ({ input, complete }) => input.n < 0 ? complete({ rejected: true }) : input.n)
      .step("later", () => {
        laterRan = true;
        return "done";
      });
    const te = testEngine({ workflows: [workflow] });
    const early = await te.run("w", { n: -1 });
    assert.equal(early.status, "completed");
    assert.deepEqual(early.output, { rejected: true });
    assert.equal(laterRan, false);
    const normal = await te.run("w", { n: 1 });
    assert.equal(normal.output, "done");
  });

  test("a workflow without steps completes with undefined", async () => {
    const te = testEngine({ workflows: [createWorkflow({ name: "empty", input: numberInput })] });
    const result = await te.run("empty", { n: 1 });
    assert.equal(result.status, "completed");
    assert.equal(result.output, undefined);
  });

  test("a skipped step is stored, its output is undefined, and `when` is not evaluated again", async () => {
    let whenCalls = 0;
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("maybe", {
        when: ({ input }) => {
          whenCalls++;
          return input.n > 10;
        },
        handler: () => "ran",
      })
      .step("after", ({ prev }) => ({ prev: prev ?? null }));
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.deepEqual(result.output, { prev: null });
    assert.equal(result.details.steps[0].status, "skipped");
    assert.equal(whenCalls, 1);
  });

  test("an async schema's transformed output is what handlers receive", async () => {
    const trimmed: import("../mod.ts").StandardSchemaV1<string, string> = {
      "~standard": {
        version: 1,
        vendor: "t",
        validate: async (value) => {
          await Promise.resolve();
          return typeof value === "string"
            ? { value: value.trim() }
            : { issues: [{ message: "Expected text" }] };
        },
      },
    };
    const workflow = createWorkflow({ name: "trim", input: trimmed }).step(
      "echo",
      ({ input }) => `[${input}]`,
    );
    const te = testEngine({ workflows: [workflow] });
    assert.equal((await te.run("trim", "  hi  ")).output, "[hi]");
    await assert.rejects(te.engine.enqueue("trim", 5 as unknown as string), ValidationError);
  });

  test("a non-serialisable output fails the run with SERIALIZATION and the path, without retries", async () => {
    let attempts = 0;
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("bad", {
      retry: { maxAttempts: 5, initialDelayMs: 0 },
      handler: () => {
        attempts++;
        return { total: Number.NaN };
      },
    });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "SERIALIZATION");
    assert.match(result.error?.message ?? "", /\$\.total/);
    assert.equal(result.error?.stepName, "bad");
    assert.equal(attempts, 1);
  });

  test("a failed run stores the error's code, name and message, and onFailure runs once", async () => {
    const compensations: unknown[] = [];
    class PaymentError extends Error {
      code = "CARD_DECLINED";
      override name = "PaymentError";
    }
    const workflow = createWorkflow({ name: "pay", input: numberInput })
      .step("charge", () => {
        throw new PaymentError("Card declined");
      })
      .onFailure(({ error, stepName, input }) => {
        compensations.push({ message: error.message, stepName, input });
      });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("pay", { n: 7 });
    assert.equal(result.status, "failed");
    assert.deepEqual(result.error, {
      code: "CARD_DECLINED",
      name: "PaymentError",
      message: "Card declined",
      stepName: "charge",
    });
    assert.deepEqual(compensations, [{ message: "Card declined", stepName: "charge", input: { n: 7 } }]);
  });

  test("a thrown non-Error value fails the run with STEP_FAILED", async () => {
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("a", () => {
      throw "plain string";
    });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.error?.code, "STEP_FAILED");
    assert.match(result.error?.message ?? "", /plain string/);
  });
});

describe("run ids", () => {
  test("are version 7 UUIDs carrying their creation time, so later ids sort after earlier ones", async () => {
    const engine = createEngine({
      storage: new MemoryStorage(),
      workflows: [createWorkflow({ name: "w", input: numberInput })],
    });
    const before = Date.now();
    const first = (await engine.enqueue("w", { n: 1 })).runId;
    await new Promise((resolve) => setTimeout(resolve, 2));
    const second = (await engine.enqueue("w", { n: 2 })).runId;
    const after = Date.now();
    const shape = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const id of [first, second]) {
      assert.match(id, shape);
      const ms = parseInt(id.replaceAll("-", "").slice(0, 12), 16);
      assert.ok(ms >= before && ms <= after, `time of ${id}: ${ms} not in ${before}..${after}`);
    }
    assert.ok(first < second, `${first} should sort before ${second}`);
    const ids = new Set(Array.from({ length: 2000 }, () => newRunId()));
    assert.equal(ids.size, 2000);
  });
});

describe("retries", () => {
  test("attempts count up in the context and succeed within maxAttempts", async () => {
    const seen: number[] = [];
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("flaky", {
      retry: { maxAttempts: 3, backoff: "linear", initialDelayMs: 1000 },
      handler: ({ attempt }) => {
        seen.push(attempt);
        if (attempt < 3) throw new Error(`attempt ${attempt} failed`);
        return "ok";
      },
    });
    const te = testEngine({ workflows: [workflow], startTime: 0 });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.output, "ok");
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal(result.details.steps[0].attempts, 3);
    assert.equal(te.now(), 3000, "linear backoff: 1000 then 2000 ms on the virtual clock");
  });

  test("exhausted retries fail the run with the last error", async () => {
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("always", {
      retry: { maxAttempts: 2, initialDelayMs: 10 },
      handler: ({ attempt }) => {
        throw new Error(`boom ${attempt}`);
      },
    });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.message, "boom 2");
    assert.equal(result.details.steps[0].attempts, 2);
  });

  test("a crash between attempts keeps the attempt count and the delay", async () => {
    let clock = 1_000_000;
    const storage = new MemoryStorage({ now: () => clock });
    const seen: number[] = [];
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("flaky", {
      retry: { maxAttempts: 5, backoff: "exponential", initialDelayMs: 5000 },
      handler: ({ attempt }) => {
        seen.push(attempt);
        if (attempt < 3) throw new Error("not yet");
        return attempt;
      },
    });
    const first = createEngine({ storage, workflows: [workflow], now: () => clock });
    const { runId } = await first.enqueue("w", { n: 1 });
    assert.equal(await first.tick(), 1);
    const parked = await first.getRunStatus(runId);
    assert.equal(parked?.run.status, "pending");
    assert.equal(parked?.run.dueAt, clock + 5000);
    assert.equal("leaseId" in (parked?.run ?? {}), false, "RunInfo does not expose the lease");
    assert.equal(parked?.steps[0].status, "retrying");
    assert.equal(parked?.steps[0].attempts, 1);
    // "Crash": a new engine on the same storage. Not due yet, so nothing is claimed.
    const second = createEngine({ storage, workflows: [workflow], now: () => clock });
    clock += 4999;
    assert.equal(await second.tick(), 0);
    clock += 1;
    assert.equal(await second.tick(), 1);
    assert.deepEqual(seen, [1, 2]);
    clock += 10_000;
    await second.tick();
    assert.deepEqual(seen, [1, 2, 3]);
    assert.equal((await second.getRunStatus(runId))?.run.output, 3);
  });

  test("a step timeout aborts the signal with StepTimeoutError and counts as a failed attempt", async () => {
    let abortReason: unknown;
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("slow", {
      timeoutMs: 20,
      retry: { maxAttempts: 2, initialDelayMs: 0 },
      handler: ({ signal, attempt }) =>
        attempt === 1
          ? new Promise((_, reject) => {
            signal.addEventListener("abort", () => {
              abortReason = signal.reason;
              reject(signal.reason);
            });
          })
          : "second time lucky",
    });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.ok(abortReason instanceof StepTimeoutError);
    assert.equal(abortReason.timeoutMs, 20);
    assert.equal(result.output, "second time lucky");
  });

  test("a handler that ignores its signal still cannot outlive its timeout", async () => {
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("stuck", {
      timeoutMs: 20,
      handler: () => new Promise(() => {}),
    });
    const te = testEngine({ workflows: [workflow] });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.status, "failed");
    assert.equal(result.error?.code, "STEP_TIMEOUT");
  });
});

describe("idempotency", () => {
  test("the same key and input return the existing run; a different input is a conflict", async () => {
    const workflow = createWorkflow({ name: "w", input: schema<Record<string, number>>() }).step(
      "a",
      () => 1,
    );
    const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow] });
    const first = await engine.enqueue("w", { a: 1, b: 2 }, { idempotencyKey: "k" });
    const again = await engine.enqueue("w", { b: 2, a: 1 }, { idempotencyKey: "k" });
    assert.deepEqual([again.runId, again.id, again.created], [first.runId, first.runId, false]);
    const error = await engine.enqueue("w", { a: 9 }, { idempotencyKey: "k" }).catch((e) => e);
    assert.ok(error instanceof IdempotencyConflictError);
    assert.equal(error.idempotencyKey, "k");
    assert.equal(error.workflowName, "w");
    assert.deepEqual((await engine.getRunStatus(first.runId))?.run.input, { a: 1, b: 2 });
    await assert.rejects(engine.enqueue("w", { a: 1 }, { idempotencyKey: "" }), ConfigError);
  });
});

describe("leases and crashes", () => {
  test("a run abandoned mid-step by a crashed engine is reclaimed after its lease, without re-running finished steps", async () => {
    const storage = new MemoryStorage();
    const calls = { first: 0, second: 0 };
    const reachedSecond = gate();
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("first", () => ++calls.first)
      .step("second", {
        retry: { maxAttempts: 2, initialDelayMs: 0 },
        handler: () => {
          calls.second++;
          if (calls.second === 1) {
            reachedSecond.open();
            return new Promise(() => {}); // the process dies here
          }
          return "finished";
        },
      });
    const doomed = crashable(storage);
    const a = createEngine({
      storage: doomed.storage,
      workflows: [workflow],
      runLeaseDurationMs: 60,
      heartbeatIntervalMs: 20,
    });
    const { runId } = await a.enqueue("w", { n: 1 });
    void a.tick();
    await reachedSecond.promise;
    doomed.crash();
    const b = createEngine({
      storage,
      workflows: [workflow],
      runLeaseDurationMs: 60,
      heartbeatIntervalMs: 20,
    });
    assert.equal(await b.tick(), 0, "the lease is still live");
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.equal(await b.tick(), 1);
    const details = await b.getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.equal(details?.run.output, "finished");
    assert.equal(details?.run.claimCount, 2);
    assert.deepEqual(calls, { first: 1, second: 2 });
  });

  test("a stale worker whose lease was taken cannot write", async () => {
    const storage = new MemoryStorage();
    const staleMayFinish = gate();
    let calls = 0;
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("only", {
      retry: { maxAttempts: 2, initialDelayMs: 0 },
      handler: async () => {
        calls++;
        if (calls === 1) {
          await staleMayFinish.promise;
          return "stale";
        }
        return "fresh";
      },
    });
    const partitioned = crashable(storage);
    const a = createEngine({
      storage: partitioned.storage,
      workflows: [workflow],
      runLeaseDurationMs: 40,
      heartbeatIntervalMs: 10,
    });
    const { runId } = await a.enqueue("w", { n: 1 });
    partitioned.crash(["heartbeatRun"]); // A keeps running, but its heartbeats no longer land
    const staleTick = a.tick();
    await eventually(() => (calls === 1 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 60));
    const b = createEngine({ storage, workflows: [workflow] });
    assert.equal(await b.tick(), 1);
    staleMayFinish.open();
    await staleTick;
    const details = await b.getRunStatus(runId);
    assert.equal(details?.run.output, "fresh");
    assert.equal(details?.steps[0].output, "fresh");
  });

  test("heartbeats keep a long step's lease alive", async () => {
    const storage = new MemoryStorage();
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("long", async () => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      return "done";
    });
    const a = createEngine({
      storage,
      workflows: [workflow],
      runLeaseDurationMs: 50,
      heartbeatIntervalMs: 15,
    });
    const b = createEngine({
      storage,
      workflows: [workflow],
      runLeaseDurationMs: 50,
      heartbeatIntervalMs: 15,
    });
    const { runId } = await a.enqueue("w", { n: 1 });
    const running = a.tick();
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      assert.equal(await b.tick(), 0, "the lease is renewed, so B must not reclaim it");
    }
    await running;
    assert.equal((await a.getRunStatus(runId))?.run.claimCount, 1);
  });
});

describe("cancel, start and stop", () => {
  test("cancel aborts an in-flight step's signal with RunCancelledError and nothing it returns is stored", async () => {
    const started = gate();
    let reason: unknown;
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("wait", ({ signal }) =>
        new Promise((resolve) => {
          started.open();
          signal.addEventListener("abort", () => {
            reason = signal.reason;
            resolve("too late");
          });
        }))
      .step("never", () => "never");
    const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow] });
    const { runId } = await engine.enqueue("w", { n: 1 });
    const ticking = engine.tick();
    await started.promise;
    assert.equal(await engine.cancel(runId), true);
    await ticking;
    assert.ok(reason instanceof RunCancelledError);
    const details = await engine.getRunStatus(runId);
    assert.equal(details?.run.status, "cancelled");
    assert.deepEqual(details?.steps, []);
    assert.equal(await engine.cancel(runId), false, "already finished");
    assert.equal(await engine.cancel("unknown"), false);
  });

  test("start() runs enqueued work at once, without waiting for the poll interval", async () => {
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("a", ({ input }) => input.n + 1);
    const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow], concurrency: 4 });
    await engine.start(60_000);
    try {
      const ids = await Promise.all(Array.from({ length: 50 }, (_, n) => engine.enqueue("w", { n })));
      const outputs = await eventually(async () => {
        const all = await Promise.all(ids.map(({ runId }) => engine.getRunStatus(runId)));
        return all.every((details) => details?.run.status === "completed")
          ? all.map((details) => details?.run.output)
          : undefined;
      }, 3000);
      assert.deepEqual(outputs, Array.from({ length: 50 }, (_, n) => n + 1));
    } finally {
      await engine.stop();
    }
  });

  test("an enqueue that lands while the loop is claiming still wakes it", async () => {
    const memory = new MemoryStorage();
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("a", ({ input }) => input.n);
    const box: { engine?: ReturnType<typeof createEngine<typeof workflow>> } = {};
    let late: Promise<{ runId: string }> | undefined;
    // The first claim finds nothing; an enqueue commits after its read but before the loop sleeps.
    const storage = new Proxy(memory, {
      get(target, property) {
        const value = Reflect.get(target, property, target);
        if (property !== "claimRuns") return typeof value === "function" ? value.bind(target) : value;
        return async (...args: Parameters<MemoryStorage["claimRuns"]>) => {
          const claimed = await target.claimRuns(...args);
          if (late === undefined) {
            late = box.engine!.enqueue("w", { n: 7 });
            await late;
          }
          return claimed;
        };
      },
    });
    const engine = box.engine = createEngine({ storage, workflows: [workflow] });
    await engine.start(3_600_000);
    try {
      await eventually(() => late);
      const { runId } = await late!;
      await eventually(async () =>
        (await engine!.getRunStatus(runId))?.run.status === "completed" || undefined
      );
    } finally {
      await engine.stop();
    }
  });

  test("after stop() nothing is left on the event loop: the process exits without waiting out stopTimeoutMs", () => {
    const script = fileURLToPath(new URL("./support/exit_after_stop.ts", import.meta.url));
    const { command, args } = spawnArgs(script, []);
    // A generous bound that only a leaked 10-minute grace timer would exceed.
    const out = execFileSync(command, args, { encoding: "utf8", timeout: 60_000 });
    assert.match(out, /stopped/);
  });

  test("stop() hands held runs back so another engine continues at once", async () => {
    const storage = new MemoryStorage();
    const inSecond = gate();
    let secondCalls = 0;
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("first", () => "one")
      .step("second", ({ signal }) => {
        secondCalls++;
        if (secondCalls > 1) return "two";
        inSecond.open();
        return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      });
    const a = createEngine({ storage, workflows: [workflow], stopTimeoutMs: 20, runLeaseDurationMs: 60_000 });
    const { runId } = await a.enqueue("w", { n: 1 });
    await a.start();
    await inSecond.promise;
    await a.stop();
    const released = await storage.getRun(runId);
    assert.equal(released?.status, "pending");
    assert.equal(released?.leaseId, null);
    const b = createEngine({ storage, workflows: [workflow] });
    assert.equal(await b.tick(), 1);
    const details = await b.getRunStatus(runId);
    assert.equal(details?.run.output, "two");
    assert.deepEqual(details?.steps.map((step) => step.name), ["first", "second"]);
  });

  test("an invalid poll interval is a ConfigError", async () => {
    const engine = createEngine({ storage: new MemoryStorage(), workflows: [] });
    await assert.rejects(engine.start(0), ConfigError);
    await assert.rejects(engine.start(Number.NaN), ConfigError);
  });
});

describe("hooks", () => {
  test("hooks see the run's events in order", async () => {
    const seen: string[] = [];
    const record = (event: EngineEvent) => {
      seen.push(`${event.type}${"stepName" in event ? `:${event.stepName}` : ""}`);
    };
    const workflow = createWorkflow({ name: "w", input: numberInput })
      .step("a", () => 1)
      .step("b", { when: () => false, handler: () => 2 })
      .step("c", {
        retry: { maxAttempts: 2, initialDelayMs: 0 },
        handler: ({ attempt }) => {
          if (attempt === 1) throw new Error("once");
          return 3;
        },
      });
    const te = testEngine({
      workflows: [workflow],
      hooks: {
        onRunStart: record,
        onStepStart: record,
        onStepSkipped: record,
        onStepComplete: record,
        onStepRetry: record,
        onRunComplete: record,
        onRunFailed: record,
      },
    });
    await te.run("w", { n: 1 });
    assert.deepEqual(seen, [
      "runStart",
      "stepStart:a",
      "stepComplete:a",
      "stepSkipped:b",
      "stepStart:c",
      "stepRetry:c",
      "stepStart:c",
      "stepComplete:c",
      "runComplete",
    ]);
  });

  test("a throwing or rejecting hook never changes the outcome and reaches onError as HookError", async () => {
    const errors: ReflowError[] = [];
    const workflow = createWorkflow({ name: "w", input: numberInput }).step("a", () => "ok");
    const te = testEngine({
      workflows: [workflow],
      hooks: {
        onStepComplete: () => {
          throw new Error("sync hook failure");
        },
        onRunComplete: () => Promise.reject(new Error("async hook failure")),
        onError: (error) => {
          errors.push(error);
        },
      },
    });
    const result = await te.run("w", { n: 1 });
    assert.equal(result.output, "ok");
    await eventually(() => (errors.length === 2 ? true : undefined));
    assert.ok(errors.every((error) => error instanceof HookError));
    assert.deepEqual(errors.map((error) => (error as HookError).source).sort(), [
      "onRunComplete",
      "onStepComplete",
    ]);
  });
});

describe("errors", () => {
  test("toJSON carries code, fields and the cause chain", () => {
    const error = new HookError("onRunStart", new Error("outer", { cause: new Error("inner") }));
    const json = error.toJSON();
    assert.equal(json.code, "HOOK");
    assert.equal(json.source, "onRunStart");
    assert.deepEqual(json.cause, {
      name: "Error",
      message: "outer",
      cause: { name: "Error", message: "inner" },
    });
    assert.equal(JSON.parse(JSON.stringify(error)).code, "HOOK");
  });
});
