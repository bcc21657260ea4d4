/**
 * What an engine does with parked runs when it starts: re-queues those its registered definitions
 * can now continue, and reports the others. It also parks (through a claim) waiting runs that no
 * event or timeout would wake for it, so that a removed wait does not strand them.
 *
 * @module
 */

import type { VersionMismatchError } from "../errors.ts";
import type { RunStatus, StorageAdapter, WorkflowRun } from "../storage/adapter.ts";
import type { VersionDecision, VersionRegistry } from "./versions.ts";

/** What the sweep needs from its engine. */
export interface SweepHost {
  readonly storage: StorageAdapter;
  readonly versions: VersionRegistry;
  /** The names of the registered workflows. */
  readonly names: ReadonlyMap<string, unknown>;
  readonly now: () => number;
  /** Reports a run that stays parked (the engine reports each once per start). */
  readonly report: (error: VersionMismatchError) => void;
  /** Wakes the worker loop: a run became due. */
  readonly notify: () => void;
}

/** Runs read per page; parked runs are few, read off the status index. */
const SWEEP_PAGE = 500;

/**
 * Looks at the parked runs of the registered workflows, and, when a stored version may be
 * incompatible, at their waiting runs of versions not registered.
 *
 * @param host The engine's storage, versions and callbacks.
 * @returns When every page was looked at.
 */
export async function sweepParked(host: SweepHost): Promise<void> {
  const { storage, now, report, notify } = host;
  await eachDecision(host, "parked", async (run, decision) => {
    if (decision.kind === "park") report(decision.error);
    else if (await storage.requeueRun(run.id, now())) notify();
  });
  if (!host.versions.mayBlock()) return;
  // Made due, the claim parks it with the typed error (the claim holds the lease the park needs).
  await eachDecision(host, "waiting", async (run, decision) => {
    if (decision.kind === "park" && await storage.updateRunStatus(run.id, "pending")) notify();
  });
}

/** Decides every run in `status` of a registered workflow whose version needs a decision. */
async function eachDecision(
  host: SweepHost,
  status: RunStatus,
  act: (run: WorkflowRun, decision: VersionDecision) => Promise<void>,
): Promise<void> {
  const { storage, versions, names } = host;
  let cursor: { before: number; beforeId: string } | undefined;
  for (;;) {
    const page = await storage.listRuns({ statuses: [status], limit: SWEEP_PAGE, ...cursor });
    for (const run of page) {
      if (!names.has(run.workflowName)) continue;
      if (status !== "parked" && versions.exact(run) !== undefined) continue;
      const steps = await storage.getStepResults(run.id);
      await act(run, versions.decide(run, steps.map((step) => step.stepName)));
    }
    if (page.length < SWEEP_PAGE) return;
    const last = page[page.length - 1]!;
    cursor = { before: last.createdAt, beforeId: last.id };
  }
}
