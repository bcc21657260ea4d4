// An order workflow on an embedded SQLite file, to see durability at work: a step, two branches in
// parallel, a durable sleep and a last step.
//
//   npm run example                  (Node 22+; or: deno run -A examples/order.ts, bun examples/order.ts)
//
// Every step takes two or three seconds. Press Ctrl-C while it runs, then run it again: the finished
// steps are not repeated, and the run continues at the step that was interrupted. Kill it hard
// (`kill -9`) instead, and the next start waits until the dead process's lease (5 s here) lapses.
// `--reset` deletes the database and starts a fresh order.
import { rmSync } from "node:fs";
import process from "node:process";
import { createEngine, createWorkflow, type StandardSchemaV1 } from "../mod.ts";
import { SQLiteStorage } from "../drivers/better_sqlite3.ts";

const databasePath = "reflow-example.db";

interface OrderInput {
  readonly orderId: string;
  readonly sku: string;
  readonly quantity: number;
}

// Any Standard Schema works here (zod, valibot, arktype...); this one is written out by hand so
// the example needs no dependency.
const orderInput: StandardSchemaV1<OrderInput> = {
  "~standard": {
    version: 1,
    vendor: "example",
    validate(value) {
      const { orderId, sku, quantity } = (value ?? {}) as Partial<OrderInput>;
      if (typeof orderId !== "string" || typeof sku !== "string") {
        return { issues: [{ message: "orderId and sku must be strings" }] };
      }
      if (!Number.isInteger(quantity) || quantity! < 1) {
        return { issues: [{ message: "quantity must be a positive integer", path: ["quantity"] }] };
      }
      return { value: { orderId, sku, quantity: quantity! } };
    },
  },
};

/** Stands in for a call to another service; honours the step's abort signal. */
function work(signal: AbortSignal, ms = 2000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => (clearTimeout(timer), reject(signal.reason)), { once: true });
  });
}

const placeOrder = createWorkflow({ name: "place-order", input: orderInput })
  .step("reserve-stock", async ({ input, signal }) => {
    await work(signal);
    return { reservationId: `res-${input.orderId}`, units: input.quantity };
  })
  // Both branches run at once; each is committed as soon as it finishes.
  .parallel({
    "charge-card": {
      retry: { maxAttempts: 3, backoff: "exponential", initialDelayMs: 500 },
      handler: async ({ input, prev, signal }) => {
        await work(signal);
        return { paymentId: `pay-${input.orderId}`, amountCents: prev.units * 1250 };
      },
    },
    "pack-parcel": async ({ prev, signal }) => {
      await work(signal, 3000);
      return { parcel: `parcel-${prev.reservationId}` };
    },
  })
  // A durable sleep: the wake time is stored, so an interrupted run still wakes on time.
  .sleep("cooling-off", "3s")
  .step("send-confirmation", async ({ input, prev, steps, signal }) => {
    await work(signal);
    return {
      orderId: input.orderId,
      reservation: steps["reserve-stock"].reservationId,
      charged: prev["charge-card"].amountCents,
      parcel: prev["pack-parcel"].parcel,
    };
  });

if (process.argv.includes("--reset")) {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(databasePath + suffix, { force: true });
}

// The engine uses the storage but does not own it: close it yourself when done.
const storage = new SQLiteStorage(databasePath);
const engine = createEngine({
  storage,
  workflows: [placeOrder],
  runLeaseDurationMs: 5000,
  hooks: {
    onStepStart: ({ stepName, attempt }) => console.log(`  ${stepName}: running (attempt ${attempt})`),
    onStepComplete: ({ stepName }) => console.log(`  ${stepName}: committed`),
  },
});

// The idempotency key makes this the same order on every start: the first start creates the run,
// later ones find it and let the engine continue it.
const { runId, created } = await engine.enqueue(
  "place-order",
  { orderId: "1001", sku: "TEA-42", quantity: 3 },
  { idempotencyKey: "order-1001" },
);
const before = await engine.getRunStatus(runId);
console.log(`${created ? "Created" : "Found"} run ${runId} (${before?.run.status}) in ${databasePath}`);
for (const step of before?.steps ?? []) {
  if (step.status === "completed") console.log(`  ${step.name}: already committed, will not run again`);
  if (step.status === "sleeping") {
    console.log(`  ${step.name}: sleeping until ${new Date(step.dueAt!).toISOString()}`);
  }
}

// The first Ctrl-C stops gracefully: the step in flight may finish (up to the engine's
// stopTimeoutMs) and its lease is handed back, so the next start continues at once. A second
// Ctrl-C exits at once, like a crash: the step in flight runs again once its lease lapses.
process.on("SIGINT", () => {
  if (stopping) process.exit(130);
  stopping = true;
  console.log("\nStopping after the step in flight (Ctrl-C again to quit at once)...");
  void engine.stop().then(() => storage.close()).then(() => {
    console.log("Stopped. Run the example again to resume.");
    process.exit(130);
  });
});
let stopping = false;

await engine.start();
let details = await engine.getRunStatus(runId);
while (details && !["completed", "failed", "cancelled"].includes(details.run.status)) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  details = await engine.getRunStatus(runId);
}
await engine.stop();
await storage.close();
console.log(`Run ${details?.run.status}:`, details?.run.output ?? details?.run.error);
console.log("Run again to see it found and left alone, or pass --reset for a new database.");
