/**
 * Which registered definition a run executes under. A run keeps the definition it started with
 * while that version is registered; otherwise it may move to another registered version only if
 * every unit it has reached (passed, or is in) is the same in kind, name and order there, and
 * that decision is stored. Anything else parks it with a {@linkcode VersionMismatchError}.
 *
 * @module
 */

import { VersionMismatchError, type VersionMismatchReason } from "../errors.ts";
import type { StorageAdapter, WorkflowRun } from "../storage/adapter.ts";
import { parseShape, sameUnit, shapeOf, type ShapeUnit } from "../workflow/shape.ts";
import type { AnyWorkflow } from "../workflow/workflow.ts";

/**
 * Where a run goes: `run` under `workflow` (with `switched` when that is not the run's stored
 * version, so the decision must be stored first), or `park` with the error saying why.
 */
export type VersionDecision =
  | { readonly kind: "run"; readonly workflow: AnyWorkflow; readonly switched: boolean }
  | { readonly kind: "park"; readonly error: VersionMismatchError };

/** The part of a run a decision reads. */
export type VersionedRun = Pick<WorkflowRun, "id" | "workflowName" | "workflowVersion" | "claimCount">;

/** The registered definitions of one workflow name, newest first. */
type Candidates = readonly AnyWorkflow[];

/**
 * The registered versions of every workflow name, and the shapes of every version ever
 * registered on the storage (read from it, refreshed when a run names a version not seen yet).
 */
export class VersionRegistry {
  readonly #byName: ReadonlyMap<string, ReadonlyMap<string, AnyWorkflow>>;
  readonly #candidates = new Map<string, Candidates>();
  readonly #candidateShapes = new Map<AnyWorkflow, readonly ShapeUnit[]>();
  readonly #storage: StorageAdapter;
  /** Stored shapes by workflow name, then version; null for a malformed stored shape. */
  #stored = new Map<string, Map<string, readonly ShapeUnit[] | null>>();

  /**
   * @param byName The registered definitions by name, then version, in registration order.
   * @param storage Where the shapes of versions are stored.
   */
  constructor(byName: ReadonlyMap<string, ReadonlyMap<string, AnyWorkflow>>, storage: StorageAdapter) {
    this.#byName = byName;
    this.#storage = storage;
    for (const [name, versions] of byName) {
      const newestFirst = [...versions.values()].reverse();
      this.#candidates.set(name, newestFirst);
      for (const workflow of newestFirst) this.#candidateShapes.set(workflow, shapeOf(workflow.units));
    }
  }

  /**
   * Stores the shapes of the registered versions (keeping any stored first), then reads them all
   * back.
   *
   * @returns The registered definitions whose declared version was stored with another shape: a
   *   version reused for a changed definition, which the engine cannot tell apart from the old one.
   */
  async register(now: number): Promise<AnyWorkflow[]> {
    const registered = [...this.#candidateShapes.keys()];
    const records = registered.map((workflow) => ({
      workflowName: workflow.name,
      version: workflow.version,
      shape: workflow.shape,
      createdAt: now,
    }));
    await this.#storage.saveWorkflowVersions(records);
    const texts = await this.refresh();
    return registered.filter((workflow) =>
      texts.get(workflow.name)?.get(workflow.version) !== workflow.shape
    );
  }

  /** Reads every stored shape again; returns their texts by workflow name, then version. */
  async refresh(): Promise<Map<string, Map<string, string>>> {
    const stored = new Map<string, Map<string, readonly ShapeUnit[] | null>>();
    const texts = new Map<string, Map<string, string>>();
    for (const record of await this.#storage.listWorkflowVersions()) {
      let versions = stored.get(record.workflowName);
      if (versions === undefined) stored.set(record.workflowName, versions = new Map());
      versions.set(record.version, parseShape(record.shape));
      let ofName = texts.get(record.workflowName);
      if (ofName === undefined) texts.set(record.workflowName, ofName = new Map());
      ofName.set(record.version, record.shape);
    }
    this.#stored = stored;
    return texts;
  }

  /**
   * The definition a run executes under when no check is needed: its own version's, or the newest
   * for a run stored before versions were recorded. Undefined: {@linkcode decide} must look.
   */
  exact(run: VersionedRun): AnyWorkflow | undefined {
    const versions = this.#byName.get(run.workflowName);
    if (versions === undefined) return undefined;
    if (run.workflowVersion === null) return this.#candidates.get(run.workflowName)![0];
    return versions.get(run.workflowVersion);
  }

  /** Whether the stored shape of a run's version is known (refresh if not, before deciding). */
  knowsShape(run: VersionedRun): boolean {
    return run.workflowVersion === null ||
      this.#stored.get(run.workflowName)?.has(run.workflowVersion) === true;
  }

  /**
   * Decides where a run goes, given the names of its stored step results in first-written order.
   *
   * @param run The run.
   * @param stepNames Its step results' names (none for a run never claimed).
   * @returns The definition to run it under, or why it parks.
   */
  decide(run: VersionedRun, stepNames: readonly string[]): VersionDecision {
    const exact = this.exact(run);
    if (exact !== undefined) return { kind: "run", workflow: exact, switched: false };
    const candidates = this.#candidates.get(run.workflowName);
    const park = (unit: string | null, reason: VersionMismatchReason): VersionDecision => ({
      kind: "park",
      error: new VersionMismatchError(run.id, run.workflowName, run.workflowVersion, unit, reason),
    });
    if (candidates === undefined) return park(null, "workflowNotRegistered");
    // A run that has reached no unit cannot disagree with any definition.
    if (stepNames.length === 0) return { kind: "run", workflow: candidates[0]!, switched: true };
    const old = this.#stored.get(run.workflowName)?.get(run.workflowVersion as string);
    if (old == null) return park(null, "unknownVersion");
    let first: { readonly unit: string | null; readonly reason: VersionMismatchReason } | undefined;
    for (const candidate of candidates) {
      const mismatch = firstMismatch(old, this.#candidateShapes.get(candidate)!, stepNames);
      if (mismatch === null) return { kind: "run", workflow: candidate, switched: true };
      first ??= mismatch;
    }
    return park(first!.unit, first!.reason);
  }

  /**
   * Whether some version stored for a registered name may have runs no registered definition
   * continues (it is not registered, and not every position in it is compatible).
   */
  mayBlock(): boolean {
    for (const [name, versions] of this.#stored) {
      if (!this.#byName.has(name)) continue;
      for (const version of versions.keys()) if (!this.continuesAnywhere(name, version)) return true;
    }
    return false;
  }

  /**
   * Whether every run of this version, wherever it is, continues under a registered definition,
   * so that a check need not read its steps.
   */
  continuesAnywhere(workflowName: string, version: string | null): boolean {
    const candidates = this.#candidates.get(workflowName);
    if (candidates === undefined) return false;
    if (version === null || this.#byName.get(workflowName)!.has(version)) return true;
    const old = this.#stored.get(workflowName)?.get(version);
    if (old == null) return false;
    const everyName = old.flatMap(memberNames);
    return candidates.some((candidate) =>
      firstMismatch(old, this.#candidateShapes.get(candidate)!, everyName) === null
    );
  }
}

/** The names a unit's step results carry: a group's branch names, or the unit's own. */
function memberNames(unit: ShapeUnit): readonly string[] {
  return unit.kind === "parallel" ? unit.branches : [unit.name];
}

/**
 * The first unit the run has reached that `candidate` does not have in the same place, kind and
 * branches, or null when the candidate agrees with everything the run has done.
 */
function firstMismatch(
  old: readonly ShapeUnit[],
  candidate: readonly ShapeUnit[],
  stepNames: readonly string[],
): { readonly unit: string | null; readonly reason: VersionMismatchReason } | null {
  const unitOf = new Map<string, number>();
  old.forEach((unit, index) => {
    for (const name of memberNames(unit)) unitOf.set(name, index);
  });
  // The run has reached every unit up to the last one it has a result for.
  let reached = 0;
  for (const name of stepNames) {
    const index = unitOf.get(name);
    if (index === undefined) return { unit: name, reason: "removed" };
    reached = Math.max(reached, index + 1);
  }
  const oldNames = new Set(old.flatMap(memberNames));
  const candidateNames = new Set(candidate.flatMap(memberNames));
  for (let index = 0; index < reached; index++) {
    const was = old[index]!;
    const now = candidate[index];
    if (now !== undefined && sameUnit(was, now)) continue;
    if (now === undefined) return { unit: was.name, reason: "removed" };
    if (memberNames(now).some((name) => memberNames(was).includes(name))) {
      return { unit: was.name, reason: "kindChanged" };
    }
    if (!memberNames(was).every((name) => candidateNames.has(name))) {
      return { unit: was.name, reason: "removed" };
    }
    if (!memberNames(now).some((name) => oldNames.has(name))) return { unit: now.name, reason: "inserted" };
    return { unit: was.name, reason: "reordered" };
  }
  return null;
}
