/**
 * A workflow's shape: what a run's stored results depend on (unit kinds, names and order, and the
 * branch names of parallel groups), without handlers, options or schemas. Two definitions with
 * the same shape can continue each other's runs; the fingerprint names a shape in a few characters.
 *
 * @module
 */

import type { WorkflowUnit } from "./workflow.ts";

/** One unit of a shape: its kind and name, and for a parallel group its branch names in order. */
export interface ShapeUnit {
  /** The unit kind. */
  readonly kind: WorkflowUnit["kind"];
  /** The unit's name (a parallel group's is its branch names joined by `+`). */
  readonly name: string;
  /** A parallel group's branch names; empty for every other kind. */
  readonly branches: readonly string[];
}

/**
 * The canonical text of a shape: a JSON array of `[kind, name]` pairs, with the branch names as
 * a third element for parallel groups. Stored with each version, so that any engine can compare a
 * run's definition with its own without the old code.
 *
 * @param units The units in order.
 * @returns The text the fingerprint hashes.
 */
export function shapeText(units: readonly WorkflowUnit[]): string {
  return JSON.stringify(
    units.map((unit) =>
      unit.kind === "parallel"
        ? [unit.kind, unit.name, unit.branches.map((branch) => branch.name)]
        : [unit.kind, unit.name]
    ),
  );
}

/**
 * Parses a stored shape text back into units, or null when it is not one.
 *
 * @param text A value of {@linkcode shapeText}.
 * @returns The units, or null for malformed text.
 */
export function parseShape(text: string): ShapeUnit[] | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(parsed)) return null;
  const units: ShapeUnit[] = [];
  for (const entry of parsed) {
    if (!Array.isArray(entry) || typeof entry[0] !== "string" || typeof entry[1] !== "string") return null;
    const branches = Array.isArray(entry[2]) ? entry[2].map(String) : [];
    units.push({ kind: entry[0] as ShapeUnit["kind"], name: entry[1], branches });
  }
  return units;
}

/** The shape of a definition's units. */
export function shapeOf(units: readonly WorkflowUnit[]): ShapeUnit[] {
  return units.map((unit) => ({
    kind: unit.kind,
    name: unit.name,
    branches: unit.kind === "parallel" ? unit.branches.map((branch) => branch.name) : [],
  }));
}

/** Whether two shape units are the same in kind, name and branches. */
export function sameUnit(a: ShapeUnit, b: ShapeUnit): boolean {
  return a.kind === b.kind && a.name === b.name && a.branches.length === b.branches.length &&
    a.branches.every((branch, index) => branch === b.branches[index]);
}

/**
 * The fingerprint of a shape text: `s` and the 32-bit FNV-1a hash of its UTF-16 code units, as 8
 * hex digits (e.g. `s3f9a0c21`). Synchronous, because the builder is; a collision would need two
 * shapes of one workflow to hash alike, about one chance in four billion per pair.
 *
 * @param text A value of {@linkcode shapeText}.
 * @returns The version a definition without a declared one gets.
 */
export function fingerprint(text: string): string {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index++) {
    hash ^= text.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return `s${(hash >>> 0).toString(16).padStart(8, "0")}`;
}
