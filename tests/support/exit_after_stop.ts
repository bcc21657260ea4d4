// Child process of engine.test.ts: runs one step with a long stop grace period, stops, and must then
// exit on its own (nothing left on the event loop).
import { createEngine, createWorkflow } from "../../mod.ts";
import { MemoryStorage } from "../../testing.ts";
import { schema } from "./fixtures.ts";

const workflow = createWorkflow({ name: "w", input: schema<null>() }).step("slow", async () => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  return 1;
});
const engine = createEngine({ storage: new MemoryStorage(), workflows: [workflow], stopTimeoutMs: 600_000 });
engine.stream({ bufferSize: 10 });
await engine.enqueue("w", null);
await engine.start(600_000);
await new Promise((resolve) => setTimeout(resolve, 5));
await engine.stop();
console.log("stopped");
