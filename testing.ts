/**
 * Test helpers: {@linkcode testEngine}, an engine on a virtual clock that drives runs to completion
 * without real waiting, and {@linkcode MemoryStorage}, an in-memory storage for tests and
 * ephemeral work.
 *
 * @example
 * ```ts
 * import { createWorkflow, type StandardSchemaV1 } from "@reflow/core";
 * import { testEngine } from "@reflow/core/test";
 *
 * const any: StandardSchemaV1<string> = {
 *   "~standard": { version: 1, vendor: "example", validate: (value) => ({ value: String(value) }) },
 * };
 * const greet = createWorkflow({ name: "greet", input: any }).step("hello", ({ input }) => `hello ${input}`);
 *
 * await using te = testEngine({ workflows: [greet] });
 * console.log((await te.run("greet", "ada")).output); // hello ada
 * ```
 *
 * @module
 */

export { testEngine } from "./src/testing/test_engine.ts";
export type {
  TestEngine,
  TestEngineOptions,
  TestRunResult,
  TestStepResult,
  TestStepResults,
} from "./src/testing/test_engine.ts";
export { MemoryStorage } from "./src/storage/memory.ts";
export type { MemoryStorageOptions } from "./src/storage/memory.ts";
