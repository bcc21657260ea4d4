// Type tests: `deno check` and `tsc` (npm run check) fail if an expectation here stops holding,
// including an `@ts-expect-error` whose line starts to compile. The runtime assertions make sure
// the code the types describe also behaves that way.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createEngine,
  createWorkflow,
  DuplicateStepError,
  ValidationError,
  type WorkflowEvents,
  type WorkflowInput,
  WorkflowNotFoundError,
  type WorkflowOutput,
  type WorkflowSteps,
} from "../mod.ts";
import { MemoryStorage } from "../testing.ts";
import { schema, thrownBy } from "./support/fixtures.ts";
import { type Equal, expectType, type Same } from "./support/type_assertions.ts";

const order = createWorkflow({
  name: "order",
  input: schema<{ sku: string; quantity: number }>((value) =>
    typeof (value as { sku?: unknown })?.sku === "string" ? undefined : "sku must be a string"
  ),
})
  .step("reserve", ({ input, prev }) => {
    expectType<Equal<typeof prev, undefined>>();
    return { reservation: `${input.sku}x${input.quantity}` };
  })
  .step("charge", {
    retry: { maxAttempts: 3 },
    handler: ({ prev, attempt }) => {
      expectType<Equal<typeof prev, { reservation: string }>>();
      expectType<Equal<typeof attempt, number>>();
      return { charged: prev.reservation.length };
    },
  })
  .step("gift-wrap", {
    when: ({ input }) => input.quantity > 1,
    handler: () => "wrapped" as const,
  })
  .step("ship", ({ prev, steps, complete }) => {
    // After a conditional step, prev is its output or undefined, and its entry in steps is optional.
    expectType<Equal<typeof prev, "wrapped" | undefined>>();
    expectType<Equal<typeof steps.charge, { charged: number }>>();
    expectType<Equal<typeof steps["gift-wrap"], "wrapped" | undefined>>();
    if (steps.charge.charged === 0) return complete({ shipped: false });
    return { shipped: true };
  });

test("the builder's types follow the chain of steps", () => {
  expectType<Equal<WorkflowInput<typeof order>, { sku: string; quantity: number }>>();
  expectType<Same<WorkflowOutput<typeof order>, { shipped: boolean }>>();
  expectType<Equal<keyof WorkflowSteps<typeof order>, "reserve" | "charge" | "gift-wrap" | "ship">>();
  assert.equal(order.name, "order");
});

test("enqueue checks the workflow name and its input at compile time and at run time", async () => {
  const other = createWorkflow({ name: "other", input: schema<{ id: number }>() }).step("a", () => 1);
  await using_(createEngine({ storage: new MemoryStorage(), workflows: [order, other] }), async (engine) => {
    await engine.enqueue("order", { sku: "tea", quantity: 2 });
    await engine.enqueue("other", { id: 1 });
    // @ts-expect-error: no workflow is named "ordr".
    await assert.rejects(engine.enqueue("ordr", { sku: "tea", quantity: 2 }), WorkflowNotFoundError);
    // @ts-expect-error: quantity is missing.
    await assert.rejects(engine.enqueue("order", { sku: 42 }), ValidationError);
    // @ts-expect-error: "other" takes { id }, not the order's input.
    await engine.enqueue("other", { sku: "tea", quantity: 2 });
  });
});

test("a step's handler cannot use a later step's output or a misspelt one", () => {
  const workflow = createWorkflow({ name: "w", input: schema<{ n: number }>() })
    .step("first", ({ input }) => input.n)
    .step("second", ({ steps }) => {
      // @ts-expect-error: "third" does not exist yet.
      void steps.third;
      // @ts-expect-error: steps is read-only.
      steps.first = 2;
      return steps.first + 1;
    });
  thrownBy(() => workflow.step("first", () => 0), DuplicateStepError);
  assert.equal(workflow.name, "w");
});

/** `await using` without the syntax, which Node 22 does not parse. */
async function using_<T extends AsyncDisposable>(resource: T, body: (resource: T) => Promise<void>) {
  try {
    await body(resource);
  } finally {
    await resource[Symbol.asyncDispose]();
  }
}

test("waits, sleeps and parallel groups carry their types to later steps and to sendEvent", () => {
  const approval = schema<{ by: string }>();
  const workflow = createWorkflow({ name: "review", input: schema<{ doc: string }>() })
    .parallel({ words: ({ input }) => input.doc.length, title: () => "Draft" })
    .sleep("pause", "1h")
    .step("summary", ({ prev }) => {
      expectType<Equal<typeof prev, { readonly words: number; readonly title: string }>>();
      return `${prev.title}: ${prev.words}`;
    })
    .waitForEvent("approve", { schema: approval })
    .step("publish", ({ prev, steps }) => {
      expectType<Equal<typeof prev, { by: string }>>();
      expectType<Equal<typeof steps.summary, string>>();
      return prev.by;
    });
  expectType<Equal<WorkflowEvents<typeof workflow>, { readonly approve: { by: string } }>>();
  expectType<
    Equal<keyof WorkflowSteps<typeof workflow>, "words" | "title" | "summary" | "approve" | "publish">
  >();
  const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow] });
  const send = () => {
    void engine.sendEvent("run", "approve", { by: "ada" });
    // @ts-expect-error: the payload must match the wait's schema input.
    void engine.sendEvent("run", "approve", { by: 1 });
    // @ts-expect-error: no wait is named "reject".
    void engine.sendEvent("run", "reject", { by: "ada" });
  };
  assert.equal(typeof send, "function");
});

test("the reflow-ts spellings type-check and unknown option keys do not", () => {
  const approval = schema<{ by: string }>();
  const workflow = createWorkflow({ name: "spellings", input: schema<{ n: number }>() })
    .step("charge", { retry: { maxAttempts: 2, timeoutMs: 5000 }, handler: ({ input }) => input.n })
    .waitForEvent("approve", { schema: approval, timeoutMs: 60_000 })
    .step("done", ({ prev }) => prev.by);
  assert.equal(workflow.units.length, 3);
  assert.equal((workflow.units[0] as { timeoutMs: number | null }).timeoutMs, 5000);
  const typos = () => {
    // @ts-expect-error: waitForEvent takes timeout or timeoutMs, not timeoutMz.
    workflow.waitForEvent("later", { timeoutMz: 5 });
    // @ts-expect-error: no hook is named onRunStartt.
    createEngine({ storage: new MemoryStorage(), workflows: [workflow], hooks: { onRunStartt: () => {} } });
  };
  assert.equal(typeof typos, "function");
});
