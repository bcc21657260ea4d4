// The schema libraries users bring, through Standard Schema v1 and nothing else: zod, valibot and
// arktype each define a workflow's input and an event's payload, with a transform in both. The types
// are checked by `deno check` and `tsc` (npm run check); at run time bad values must be rejected with
// a ValidationError naming the path, and good ones must reach the steps transformed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { type } from "arktype";
import * as v from "valibot";
import { z } from "zod";
import {
  type AnyWorkflow,
  createWorkflow,
  type InferSchemaInput,
  type InferSchemaOutput,
  type StandardSchemaV1,
  ValidationError,
  type WorkflowEvents,
  type WorkflowInput,
  type WorkflowOutput,
} from "../mod.ts";
import { testEngine, type TestRunResult } from "../testing.ts";
import { expectType, type Same } from "./support/type_assertions.ts";

/** What a user passes to enqueue: count arrives as text (a form field, a query string). */
type SignupIn = { email: string; count: string };
/** What the steps see: the email lower-cased, the count parsed. */
type SignupOut = { email: string; count: number };
/** What sendEvent takes, and what the wait yields. */
type ConfirmedIn = { at: string };
type ConfirmedOut = { at: Date };

const libraries = {
  zod: {
    input: z.object({
      email: z.email().transform((s) => s.toLowerCase()),
      count: z.string().regex(/^\d+$/).transform(Number),
    }),
    confirmed: z.object({ at: z.iso.datetime().transform((s) => new Date(s)) }),
  },
  valibot: {
    input: v.object({
      email: v.pipe(v.string(), v.email(), v.toLowerCase()),
      count: v.pipe(v.string(), v.digits(), v.transform(Number)),
    }),
    confirmed: v.object({ at: v.pipe(v.string(), v.isoTimestamp(), v.transform((s) => new Date(s))) }),
  },
  arktype: {
    input: type({ email: type("string.email").pipe((s) => s.toLowerCase()), count: "string.integer.parse" }),
    confirmed: type({ at: "string.date.iso.parse" }),
  },
};

// Each library's own inference, as Reflow reads it from the `~standard` types.
expectType<Same<InferSchemaInput<typeof libraries.zod.input>, SignupIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.zod.input>, SignupOut>>();
expectType<Same<InferSchemaInput<typeof libraries.zod.confirmed>, ConfirmedIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.zod.confirmed>, ConfirmedOut>>();
expectType<Same<InferSchemaInput<typeof libraries.valibot.input>, SignupIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.valibot.input>, SignupOut>>();
expectType<Same<InferSchemaInput<typeof libraries.valibot.confirmed>, ConfirmedIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.valibot.confirmed>, ConfirmedOut>>();
expectType<Same<InferSchemaInput<typeof libraries.arktype.input>, SignupIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.arktype.input>, SignupOut>>();
expectType<Same<InferSchemaInput<typeof libraries.arktype.confirmed>, ConfirmedIn>>();
expectType<Same<InferSchemaOutput<typeof libraries.arktype.confirmed>, ConfirmedOut>>();

/** One workflow shape for every library; its types come from the schemas passed in. */
function signup<
  const N extends string,
  I extends StandardSchemaV1<SignupIn, SignupOut>,
  E extends StandardSchemaV1<ConfirmedIn, ConfirmedOut>,
>(name: N, input: I, confirmed: E) {
  return createWorkflow({ name, input })
    .step("greet", ({ input }) => ({ to: input.email, seats: input.count * 2 }))
    .waitForEvent("confirmed", { schema: confirmed })
    .step("activate", ({ prev, steps }) => ({ ...steps.greet, year: prev.at.getUTCFullYear() }));
}

const flows = {
  zod: signup("signup-zod", libraries.zod.input, libraries.zod.confirmed),
  valibot: signup("signup-valibot", libraries.valibot.input, libraries.valibot.confirmed),
  arktype: signup("signup-arktype", libraries.arktype.input, libraries.arktype.confirmed),
};

type Flow = (typeof flows)[keyof typeof flows];
expectType<Same<WorkflowInput<Flow>, SignupIn>>();
expectType<Same<WorkflowEvents<Flow>, { readonly confirmed: ConfirmedIn }>>();
expectType<Same<WorkflowOutput<Flow>, { to: string; seats: number; year: number }>>();

// enqueue and sendEvent take the schemas' input types, whichever library wrote them.
async function compileOnly(te: ReturnType<typeof testEngine<Flow>>): Promise<void> {
  const { runId } = await te.run("signup-zod", { email: "a@b.example", count: "2" });
  await te.run("signup-valibot", { email: "a@b.example", count: "2" });
  await te.run("signup-arktype", { email: "a@b.example", count: "2" });
  // @ts-expect-error: count is text before the transform, not a number.
  await te.run("signup-zod", { email: "a@b.example", count: 2 });
  // @ts-expect-error: valibot's input needs the email.
  await te.run("signup-valibot", { count: "2" });
  // @ts-expect-error: arktype's input needs the count.
  await te.run("signup-arktype", { email: "a@b.example" });
  await te.sendEvent(runId, "confirmed", { at: "2026-01-02T03:04:05Z" });
  // @ts-expect-error: the payload is the schema's input (an ISO string), not its output (a Date).
  await te.sendEvent(runId, "confirmed", { at: new Date() });
}
void compileOnly;

/** The issue paths of a ValidationError, as dotted strings. */
function paths(error: unknown): string[] {
  assert.ok(error instanceof ValidationError, `expected a ValidationError, got ${String(error)}`);
  assert.equal(error.code, "VALIDATION");
  return error.issues.map((issue) => (issue.path ?? []).map(String).join("."));
}

for (const [library, flow] of Object.entries(flows) as [string, AnyWorkflow][]) {
  describe(`${library} schemas`, () => {
    test(`${library}: bad input is a ValidationError naming each bad field, and nothing is stored`, async () => {
      await using_(testEngine({ workflows: [flow] }), async (te) => {
        const error = await te.run(flow.name, { email: "not an email", count: "x" }).catch((e) => e);
        assert.deepEqual(paths(error).sort(), ["count", "email"]);
        assert.equal(await te.storage.claimNextRun([flow.name], te.now() + 3_600_000), null, "no run stored");
        assert.deepEqual(paths(await te.run(flow.name, { email: "a@b.example" }).catch((e) => e)), ["count"]);
      });
    });

    test(`${library}: good input and payload reach the steps transformed`, async () => {
      await using_(testEngine({ workflows: [flow] }), async (te) => {
        const parked: TestRunResult<AnyWorkflow> = await te.run(flow.name, {
          email: "Ada@Example.COM",
          count: "21",
        });
        assert.equal(parked.status, "waiting");
        assert.deepEqual(parked.steps.greet?.output, { to: "ada@example.com", seats: 42 });

        const bad = await te.sendEvent(parked.runId, "confirmed", { at: "yesterday" }).catch((e) => e);
        assert.deepEqual(paths(bad), ["at"]);

        const done = await te.sendEvent(parked.runId, "confirmed", { at: "2026-01-02T03:04:05Z" });
        assert.equal(done.status, "completed");
        assert.deepEqual(done.steps.confirmed?.output, { at: new Date("2026-01-02T03:04:05Z") });
        assert.deepEqual(done.output, { to: "ada@example.com", seats: 42, year: 2026 });
      });
    });
  });
}

/** `await using` without the syntax, which Node 22 does not parse. */
async function using_<T extends AsyncDisposable>(resource: T, body: (resource: T) => Promise<void>) {
  try {
    await body(resource);
  } finally {
    await resource[Symbol.asyncDispose]();
  }
}
