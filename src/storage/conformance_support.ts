/**
 * Helpers shared by the storage conformance cases (`conformance*.ts`): fixed times, run and step
 * builders, claims, and checks that throw an `Error` naming what differed.
 *
 * @module
 */

import { StorageError } from "../errors.ts";
import type {
  ClaimedRun,
  EventWait,
  EventWaitResult,
  NewEvent,
  NewRun,
  StepResult,
  StorageAdapter,
  StoredError,
  WorkflowRun,
} from "./adapter.ts";

/** The fixed "now" most cases run at: 2023-11-14T22:13:20Z. */
export const T0 = 1_700_000_000_000;
/** The lease duration the helpers claim with. */
export const LEASE = 30_000;
/** The workflow name of the helpers' runs. */
export const WF = "wf";
/** Far enough after T0 that no case claims at that time. */
export const NOT_DUE = 1_000_000_000;

/** Throws an `Error` with `message` unless `condition` holds. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** Structural equality; undefined-valued keys count as absent and prototypes are ignored. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => deepEqual(item, b[i]));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
  for (const key of keys) if (!deepEqual(x[key], y[key])) return false;
  return true;
}

/** A short JSON rendering of a value, for messages. */
export function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 300 ? `${text.slice(0, 300)}… (${text.length} chars)` : text;
}

/** Throws unless `actual` deep-equals `expected`, naming `what` and both values. */
export function checkEqual(actual: unknown, expected: unknown, what: string): void {
  check(deepEqual(actual, expected), `${what}: expected ${show(expected)}, got ${show(actual)}`);
}

/** A new run of {@linkcode WF} created at {@linkcode T0}, with overrides. */
export function newRun(id: string, overrides: Partial<NewRun> = {}): NewRun {
  return {
    id,
    workflowName: WF,
    input: `{"id":${JSON.stringify(id)}}`,
    idempotencyKey: null,
    createdAt: T0,
    ...overrides,
  };
}

/** Creates run `id` and checks that it was created. */
export async function create(
  storage: StorageAdapter,
  id: string,
  overrides: Partial<NewRun> = {},
): Promise<WorkflowRun> {
  const result = await storage.createRun(newRun(id, overrides));
  check(result.created, `createRun(${show(id)}) should create a run`);
  return result.run;
}

/** `claimRuns()` with the helpers' defaults. */
export function claim(
  storage: StorageAdapter,
  now: number,
  limit = 1,
  workflowNames: readonly string[] = [WF],
  leaseDurationMs = LEASE,
): Promise<ClaimedRun[]> {
  return storage.claimRuns({ workflowNames, limit, now, leaseDurationMs });
}

/** Creates `count` runs `r00`, `r01`, … due at T0 and claims them all, in that order (for race cases). */
export async function createAndClaimMany(storage: StorageAdapter, count: number): Promise<ClaimedRun[]> {
  const runIds = Array.from({ length: count }, (_, i) => `r${String(i).padStart(2, "0")}`);
  for (const id of runIds) await create(storage, id);
  const claimed = await claim(storage, T0, count);
  checkEqual(ids(claimed), runIds, "claimed runs");
  return claimed;
}

/** Claims at `now` and checks that exactly run `id` was claimed. */
export async function claimOnly(storage: StorageAdapter, now: number, id: string): Promise<ClaimedRun> {
  const claimed = await claim(storage, now);
  checkEqual(claimed.map((run) => run.id), [id], `claimRuns at ${now - T0} ms`);
  return claimed[0]!;
}

/** Creates run `id` at `now` and claims it. */
export async function createAndClaim(storage: StorageAdapter, id: string, now = T0): Promise<ClaimedRun> {
  await create(storage, id, { createdAt: now });
  return claimOnly(storage, now, id);
}

/**
 * Creates runs "completed", "failed" and "cancelled" and finishes each that way; the cancel goes
 * through the lease (`fenced`) or around it (`unfenced`, as `engine.cancel()` does).
 */
export async function finishOneRunEachWay(
  storage: StorageAdapter,
  cancel: "fenced" | "unfenced",
): Promise<void> {
  for (const id of ["completed", "failed", "cancelled"]) await create(storage, id);
  const claimed = await claim(storage, T0, 3);
  const leaseOf = (id: string): string => claimed.find((run) => run.id === id)!.leaseId;
  const error = { code: null, name: "Error", message: "x" };
  check(
    await storage.advanceRun("completed", leaseOf("completed"), {
      now: T0,
      status: "completed",
      output: "1",
    }),
    "complete",
  );
  check(await storage.advanceRun("failed", leaseOf("failed"), { now: T0, status: "failed", error }), "fail");
  const cancelled = cancel === "fenced"
    ? await storage.updateClaimedRunStatus("cancelled", leaseOf("cancelled"), "cancelled")
    : await storage.updateRunStatus("cancelled", "cancelled");
  check(cancelled, "cancel");
}

/** Creates and claims run `id`, then parks it in `wait` (checking that it parks). */
export async function parkedInWait(
  storage: StorageAdapter,
  id: string,
  wait: EventWait,
): Promise<ClaimedRun> {
  const held = await createAndClaim(storage, id);
  const { outcome } = await storage.awaitEvent(id, held.leaseId, wait);
  checkEqual(outcome, "parked", "awaitEvent() with no event");
  return held;
}

/** Reads run `id`, which must exist. */
export async function getRun(storage: StorageAdapter, id: string): Promise<WorkflowRun> {
  const run = await storage.getRun(id);
  check(run !== null, `getRun(${show(id)}) should find the run`);
  return run;
}

/** The ids of some runs, in order. */
export function ids(runs: readonly { readonly id: string }[]): string[] {
  return runs.map((run) => run.id);
}

/** A completed step result of run `runId`, with overrides. */
export function step(runId: string, stepName: string, overrides: Partial<StepResult> = {}): StepResult {
  return {
    runId,
    stepName,
    status: "completed",
    output: `{"step":${JSON.stringify(stepName)}}`,
    error: null,
    attempts: 1,
    dueAt: null,
    updatedAt: T0 + 1,
    ...overrides,
  };
}

/** A new event. */
export function event(name: string, payload: string, createdAt: number): NewEvent {
  return { name, payload, createdAt };
}

/** The error a wait named `stepName` fails its run with when it times out, in {@linkcode wait}. */
export function timeoutError(stepName: string): StoredError {
  return { code: "WAIT_TIMEOUT", name: "WaitTimeoutError", message: `"${stepName}" timed out`, stepName };
}

/** An event wait, failing with {@linkcode timeoutError} when it times out. */
export function wait(stepName: string, now: number, timeoutAt: number | null): EventWait {
  return { now, stepName, timeoutAt, timeoutError: timeoutError(stepName) };
}

/** Strips what a claim adds to a run, to compare it with `getRun()`. */
export function asRun(run: ClaimedRun): WorkflowRun {
  const { steps: _steps, recoveries: _recoveries, ...rest } = run;
  return rest;
}

/** Checks that a run still reads as `before`. */
export async function checkUnchanged(
  storage: StorageAdapter,
  before: WorkflowRun,
  what: string,
): Promise<void> {
  checkEqual(await storage.getRun(before.id), before, what);
}

/** Checks that `value` is within `low..high`. */
export function between(value: number | null, low: number, high: number, what: string): void {
  check(value !== null && value >= low && value <= high, `${what}: expected ${low}..${high}, got ${value}`);
}

/** Encoded values that must round-trip byte for byte. */
export const ENCODED_VALUES: readonly string[] = [
  "",
  '{"$date":"2024-01-01T00:00:00.000Z","x":{"$undefined":1}}',
  '"héllo wörld — 日本語 🎉 \u{1F600}"',
  `{"q":"\\"double\\" 'single' \`back\` \\\\ slash"}`,
  "nul\u0000in the middle\u0000",
  "line\nbreaks\r\nand\ttabs",
  "  padded  ",
  "123",
  "-0",
  "1e3",
  "null",
  "x".repeat(100_000) + "é",
];

/** Overwrites every leaf of a value and appends to every array, ignoring frozen objects. */
export function scribble(value: object): void {
  for (const key of Object.keys(value)) {
    const inner: unknown = Reflect.get(value, key);
    if (typeof inner === "object" && inner !== null) scribble(inner);
    else Reflect.set(value, key, "scribbled");
  }
  if (Array.isArray(value) && !Object.isFrozen(value)) value.push("scribbled");
}

/** What `call` rejected with, or undefined if it resolved. */
async function rejection(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Checks that `call` rejects with a StorageError of kind `"closed"` for operation `name`. */
export async function expectClosed(name: string, call: () => unknown): Promise<void> {
  const failure = await rejection(call);
  check(failure !== undefined, `${name}() after close() should reject`);
  check(
    failure instanceof StorageError,
    `${name}() after close() should reject with a StorageError, got ${show(String(failure))}`,
  );
  checkEqual(failure.operation, name, `${name}() after close(): StorageError.operation`);
  checkEqual(failure.kind, "closed", `${name}() after close(): StorageError.kind`);
}

/** How {@linkcode finishRuns} finishes one run: its id, its finished status and when it finishes. */
export type Finish = readonly [id: string, status: "completed" | "failed" | "cancelled", at: number];

/**
 * Creates runs at {@linkcode T0}, claims them all, and finishes each as told (through
 * `advanceRun()`, so that `updatedAt` is the given time). Call it before any other run is due.
 */
export async function finishRuns(storage: StorageAdapter, finishes: readonly Finish[]): Promise<void> {
  for (const [id] of finishes) await create(storage, id);
  const claimed = await claim(storage, T0, finishes.length);
  checkEqual(ids(claimed).sort(), finishes.map(([id]) => id).sort(), "runs claimed to be finished");
  for (const [id, status, at] of finishes) {
    const leaseId = claimed.find((run) => run.id === id)!.leaseId;
    const change = status === "completed"
      ? { now: at, status, output: `"${id}"` }
      : status === "failed"
      ? { now: at, status, error: { code: null, name: "Error", message: id } }
      : { now: at, status };
    check(await storage.advanceRun(id, leaseId, change), `advanceRun(${show(id)}) to ${status}`);
  }
}

/**
 * Checks that `call` rejects with a StorageError of kind `"other"` for operation `name` (a
 * malformed argument).
 */
export async function expectInvalid(name: string, what: string, call: () => unknown): Promise<void> {
  const failure = await rejection(call);
  check(
    failure instanceof StorageError,
    `${name}() with ${what} should reject with a StorageError, got ${show(String(failure))}`,
  );
  checkEqual([failure.operation, failure.kind], [name, "other"], `${name}() with ${what}: operation, kind`);
}

/**
 * Claims run `id` at `at` (it must be the only run due), then checks what its wait for `name`
 * without a timeout answers at `at + 1`.
 */
export async function claimAndAwait(
  storage: StorageAdapter,
  id: string,
  at: number,
  name: string,
  expected: EventWaitResult,
  what: string,
): Promise<void> {
  const held = await claimOnly(storage, at, id);
  checkEqual(await storage.awaitEvent(id, held.leaseId, wait(name, at + 1, null)), expected, what);
}
