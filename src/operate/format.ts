/**
 * How runs read to a person, the same in the terminal and in the dashboard: times relative to now,
 * durations, stored values as compact JSON, errors on one line.
 *
 * @module
 */

import type { StoredError } from "../storage/adapter.ts";

const UNITS: readonly [string, number][] = [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]];

/** A duration in ms, short: `850ms`, `12s`, `4m 10s`, `3h 5m`, `2d 1h`. */
export function formatDuration(ms: number): string {
  const abs = Math.abs(ms);
  if (abs < 1000) return `${Math.round(abs)}ms`;
  if (abs < 60_000) return `${(abs / 1000).toFixed(abs < 10_000 ? 1 : 0)}s`;
  const parts: string[] = [];
  let rest = abs;
  for (const [unit, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0 || parts.length > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
    if (parts.length === 2) break;
  }
  return parts.filter((part) => !part.startsWith("0")).join(" ");
}

/** A time relative to `now`: `12s ago`, `in 5m`, `just now`. */
export function formatRelative(at: number, now: number): string {
  const delta = at - now;
  if (Math.abs(delta) < 1000) return "just now";
  return delta < 0 ? `${formatDuration(delta)} ago` : `in ${formatDuration(delta)}`;
}

/** A time as ISO 8601 in UTC, or `-` for none. */
export function formatTime(at: number | null): string {
  return at === null ? "-" : new Date(at).toISOString();
}

/**
 * A decoded stored value as JSON (`Date` as its ISO text, `undefined` as `-`), indented when
 * `indent` is given, and cut to `max` characters with `…` when given.
 */
export function formatValue(
  value: unknown,
  options: { readonly indent?: number; readonly max?: number } = {},
): string {
  const text = value === undefined ? "-" : JSON.stringify(value, null, options.indent) ?? String(value);
  return options.max === undefined ? text : truncate(text, options.max);
}

/** `text` cut to `max` characters, ending in `…` when it was cut. */
export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** An error on one line: `CODE Name: message (step x)`. */
export function formatError(error: StoredError | null): string {
  if (error === null) return "-";
  const code = error.code === null ? "" : `${error.code} `;
  const step = error.stepName === undefined ? "" : ` (step ${error.stepName})`;
  return `${code}${error.name}: ${error.message}${step}`.replace(/\s+/g, " ");
}

/** A capped count: `10,000+` when it reached the cap. */
export function formatCount(count: number, cap: number): string {
  return `${count.toLocaleString("en-US")}${count >= cap ? "+" : ""}`;
}
