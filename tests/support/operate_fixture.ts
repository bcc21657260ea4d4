// A store with runs of every kind an operator meets, written straight through the storage contract
// at fixed times, so that the CLI's and the dashboard's output can be compared exactly.
import type { StorageAdapter } from "../../mod.ts";
import { encodeValue } from "../../mod.ts";
import { wait } from "../../src/storage/conformance_support.ts";

/** When the fixture's first run was created (2026-01-01T00:00:00Z). */
export const T0: number = Date.UTC(2026, 0, 1);

/** A script tag an attacker would store in a run to reach the dashboard's users. */
export const XSS =
  `<script>globalThis.__reflowXss = 1</script><img src=x onerror="globalThis.__reflowXss = 2">`;

/** The runs seeded, newest first, with their statuses. */
export const SEEDED: readonly { readonly id: string; readonly workflow: string; readonly status: string }[] =
  [
    { id: "run-xss", workflow: `evil${XSS}`, status: "completed" },
    { id: "run-pending", workflow: "orders", status: "pending" },
    { id: "run-waiting", workflow: "approval", status: "waiting" },
    { id: "run-failed", workflow: "orders", status: "failed" },
    { id: "run-done", workflow: "orders", status: "completed" },
  ];

/**
 * Seeds `storage` (initialised here): a completed and a failed `orders` run (its `charge` step
 * failed after 3 attempts), an `approval` run waiting for an event, a pending run, a completed run
 * whose workflow name and output hold {@linkcode XSS}, and one schedule. The waiting run holds an
 * event for a later wait (`escalate`, its payload holding {@linkcode XSS}), not yet received.
 */
export async function seedStore(storage: StorageAdapter): Promise<void> {
  await storage.initialize();
  const create = (id: string, workflowName: string, at: number, input: unknown) =>
    storage.createRun({ id, workflowName, input: encodeValue(input), idempotencyKey: null, createdAt: at });
  const lease = (id: string, workflowName: string, at: number) => claimOne(storage, id, workflowName, at);
  const step = (runId: string, stepName: string, at: number, fields: Record<string, unknown>) => ({
    runId,
    stepName,
    status: "completed" as const,
    output: null,
    error: null,
    attempts: 1,
    dueAt: null,
    updatedAt: at,
    ...fields,
  });

  await create("run-done", "orders", T0, { orderId: 1 });
  let leaseId = await lease("run-done", "orders", T0 + 10);
  await storage.advanceRun("run-done", leaseId, {
    now: T0 + 1250,
    step: step("run-done", "charge", T0 + 1250, { output: encodeValue({ charged: 42 }) }),
    status: "completed",
    output: encodeValue({ total: 42 }),
  });

  await create("run-failed", "orders", T0 + 60_000, { orderId: 2 });
  leaseId = await lease("run-failed", "orders", T0 + 60_010);
  const declined = { code: "DECLINED", name: "Error", message: "card declined", stepName: "charge" };
  await storage.advanceRun("run-failed", leaseId, {
    now: T0 + 63_000,
    step: step("run-failed", "charge", T0 + 63_000, { status: "failed", attempts: 3, error: declined }),
    status: "failed",
    error: declined,
  });

  await create("run-waiting", "approval", T0 + 120_000, { request: "refund" });
  leaseId = await lease("run-waiting", "approval", T0 + 120_010);
  await storage.awaitEvent("run-waiting", leaseId, wait("approved", T0 + 120_020, null));
  // Sent for a later wait: stored, not received, and it does not wake the run.
  await storage.deliverEvent("run-waiting", {
    name: "escalate",
    payload: encodeValue({ note: XSS }),
    createdAt: T0 + 121_000,
  });

  await create("run-pending", "orders", T0 + 180_000, { orderId: 3 });

  await create("run-xss", `evil${XSS}`, T0 + 240_000, XSS);
  leaseId = await lease("run-xss", `evil${XSS}`, T0 + 240_010);
  await storage.advanceRun("run-xss", leaseId, {
    now: T0 + 240_500,
    step: step("run-xss", `echo${XSS}`, T0 + 240_500, { output: encodeValue(XSS) }),
    status: "completed",
    output: encodeValue(XSS),
  });

  await storage.upsertSchedule({
    key: "nightly-report",
    workflowName: "orders",
    input: encodeValue({ report: true }),
    recurrence: JSON.stringify({ cron: "0 3 * * *" }),
    nextRunAt: T0 + 86_400_000,
    now: T0,
  });
}

/** Claims run `id`, which must be the first due run of `workflowName` at `at`; returns its lease. */
async function claimOne(
  storage: StorageAdapter,
  id: string,
  workflowName: string,
  at: number,
): Promise<string> {
  const [run] = await storage.claimRuns({
    workflowNames: [workflowName],
    limit: 1,
    now: at,
    leaseDurationMs: 30_000,
  });
  if (run?.id !== id) throw new Error(`fixture: expected to claim ${id}, got ${run?.id}`);
  return run.leaseId;
}

/** The error a run parks with when its definition changed incompatibly (as the engine stores it). */
export const MISMATCH = {
  code: "VERSION_MISMATCH",
  name: "VersionMismatchError",
  message:
    'Run "run-parked" of workflow "shipping" cannot continue under version "2": unit "ship" was removed',
};

/** Adds `run-parked` (newest), a `shipping` run of version `2` parked with {@linkcode MISMATCH}. */
export async function seedParkedRun(storage: StorageAdapter): Promise<void> {
  await storage.createRun({
    id: "run-parked",
    workflowName: "shipping",
    workflowVersion: "2",
    input: encodeValue({ orderId: 4 }),
    idempotencyKey: null,
    createdAt: T0 + 300_000,
  });
  const leaseId = await claimOne(storage, "run-parked", "shipping", T0 + 300_010);
  await storage.advanceRun("run-parked", leaseId, { now: T0 + 300_020, status: "parked", error: MISMATCH });
}
