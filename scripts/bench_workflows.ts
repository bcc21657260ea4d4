// The workflows every benchmark process runs, defined once so that the single-process cells
// (bench_worker.ts) and the PostgreSQL worker processes (bench_pg_worker.ts) measure the same work.
import { createWorkflow } from "../mod.ts";
import { schema } from "../tests/support/fixtures.ts";

// Each step returns a small value derived from the previous one, so outputs are encoded and stored
// as they would be in real use, but the handlers themselves cost nothing measurable.
export const oneStep = createWorkflow({ name: "one", input: schema<{ n: number }>() })
  .step("s1", ({ input }) => ({ n: input.n + 1 }));
export const fiveSteps = createWorkflow({ name: "five", input: schema<{ n: number }>() })
  .step("s1", ({ input }) => ({ n: input.n + 1 }))
  .step("s2", ({ prev }) => ({ n: prev.n + 1 }))
  .step("s3", ({ prev }) => ({ n: prev.n + 1 }))
  .step("s4", ({ prev }) => ({ n: prev.n + 1 }))
  .step("s5", ({ prev }) => ({ n: prev.n + 1 }));
export const workflows = [oneStep, fiveSteps];

/** The name of the benchmark workflow with `steps` steps (1 or 5). */
export type WorkflowName = "one" | "five";
export const workflowOf = (steps: number): WorkflowName => (steps === 1 ? "one" : "five");
