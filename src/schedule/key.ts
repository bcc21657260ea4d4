/**
 * The default key of a schedule registered without one.
 *
 * @module
 */

import type { EncodedValue } from "../storage/adapter.ts";

/**
 * Derives a key from what the schedule does, so that registering the same workflow, input and
 * recurrence again (say, at every process start) updates one schedule instead of adding another.
 * The input's object keys are sorted first: `{ a, b }` and `{ b, a }` are the same schedule.
 *
 * @param workflowName The workflow.
 * @param recurrenceText The recurrence's canonical text.
 * @param input The encoded input.
 * @returns `"<workflow>:<first 16 hex digits of a SHA-256>"`.
 */
export async function defaultScheduleKey(
  workflowName: string,
  recurrenceText: string,
  input: EncodedValue,
): Promise<string> {
  const canonical = JSON.stringify([workflowName, recurrenceText, sortKeys(JSON.parse(input))]);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonical));
  const hex = Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${workflowName}:${hex.slice(0, 16)}`;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== "object" || value === null) return value;
  // fromEntries defines properties, so a "__proto__" key stays a key rather than a prototype.
  return Object.fromEntries(
    Object.keys(value).sort().map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
  );
}
