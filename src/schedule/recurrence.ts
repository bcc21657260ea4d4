/**
 * Recurrences of schedules: how the engine reads them from callers, stores them as canonical text,
 * and computes their slots.
 *
 * @module
 */

import { ConfigError, InternalError } from "../errors.ts";
import { type Duration, durationMs } from "../workflow/duration.ts";
import { parseCron } from "./cron.ts";

/**
 * How often a schedule fires: every so many milliseconds (a number), every {@linkcode Duration}
 * (`{ every: "5m" }`), or at the times of a cron expression, in UTC (`{ cron: "0 9 * * 1-5" }`).
 *
 * @example Three ways to say when
 * ```ts
 * import type { Recurrence } from "@reflow/core";
 *
 * const everyMinute: Recurrence = 60_000;
 * const everyFiveMinutes: Recurrence = { every: "5m" };
 * const weekdayMornings: Recurrence = { cron: "0 9 * * 1-5" };
 * ```
 */
export type Recurrence =
  | number
  | { readonly every: Duration; readonly cron?: undefined }
  | { readonly cron: string; readonly every?: undefined };

/**
 * A schedule's recurrence as `engine.listSchedules()` reports it: the interval in ms, or the cron
 * expression with its whitespace normalised.
 */
export type ScheduleRecurrence = { readonly every: number } | { readonly cron: string };

/** A checked recurrence: its canonical text and how to step through its slots. */
export interface ResolvedRecurrence {
  /** What `listSchedules()` shows. */
  readonly info: ScheduleRecurrence;
  /**
   * The stored form. Canonical, because storage keeps a schedule's cadence only while this text
   * is byte for byte the same.
   */
  readonly text: string;
  /** The first slot of a schedule registered at `now`: strictly after it. */
  first(now: number): number;
  /**
   * The slot after the due `slot` has fired at `now`: the first one strictly after `now`, so that
   * slots missed while no engine ran are skipped rather than fired in a burst.
   */
  following(slot: number, now: number): number;
}

/** The latest time a `Date` can hold; an interval that would step past it is refused. */
const MAX_TIME = 8.64e15;

/**
 * Checks a recurrence given to `engine.schedule()`.
 *
 * @param recurrence What the caller passed.
 * @returns The resolved recurrence.
 * @throws {ConfigError} With field `recurrence` for a bad interval or shape, or the `cron.*` field
 *   of a malformed cron expression.
 */
export function resolveRecurrence(recurrence: unknown): ResolvedRecurrence {
  if (typeof recurrence === "number") return everyMs(recurrence, recurrence);
  if (typeof recurrence !== "object" || recurrence === null || Array.isArray(recurrence)) {
    throw bad(recurrence, "expected ms, { every } or { cron }");
  }
  const keys = Object.keys(recurrence).filter((key) =>
    (recurrence as Record<string, unknown>)[key] !== undefined
  );
  const { every, cron } = recurrence as { every?: unknown; cron?: unknown };
  // Unknown keys are refused so that a typo such as { evry: 5 } is not silently something else.
  if (keys.length !== 1 || (every === undefined && cron === undefined)) {
    throw bad(recurrence, "expected exactly one of every or cron");
  }
  if (every !== undefined) return everyMs(every, recurrence);
  if (typeof cron !== "string") throw bad(recurrence, "cron must be a string");
  return cronRecurrence(cron);
}

/**
 * Reads a recurrence back from its stored text.
 *
 * @param text The stored text.
 * @returns The resolved recurrence.
 * @throws {InternalError} When the text is not one this engine writes (e.g. from a newer version).
 */
export function decodeRecurrence(text: string): ResolvedRecurrence {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
    const resolved = resolveRecurrence(parsed);
    if (resolved.text === text) return resolved;
  } catch (error) {
    throw new InternalError(`Cannot read the stored recurrence ${text}`, { cause: error });
  }
  throw new InternalError(`Cannot read the stored recurrence ${text}: it is not in canonical form`);
}

function everyMs(value: unknown, recurrence: unknown): ResolvedRecurrence {
  if (typeof value !== "number" && typeof value !== "string") {
    throw bad(recurrence, "every must be a Duration");
  }
  const every = durationMs(value as Duration, "recurrence", "a schedule");
  // 0 would fire in a loop; anything past MAX_TIME could never be reached.
  if (every < 1 || every > MAX_TIME) throw bad(recurrence, "the interval must be at least 1 ms");
  return {
    info: { every },
    text: JSON.stringify({ every }),
    first: (now) => now + every,
    // The phase of the first slot is kept: slots stay at nextRunAt + k * every.
    following: (slot, now) => slot + (Math.floor(Math.max(0, now - slot) / every) + 1) * every,
  };
}

function cronRecurrence(expression: string): ResolvedRecurrence {
  const schedule = parseCron(expression);
  // Spacing is not meaning: "*/5  * * * *" and "*/5 * * * *" are one cadence.
  const cron = schedule.expression.split(/\s+/).join(" ");
  return {
    info: { cron },
    text: JSON.stringify({ cron }),
    first: (now) => schedule.next(now),
    following: (_slot, now) => schedule.next(now),
  };
}

function bad(recurrence: unknown, why: string): ConfigError {
  let shown: string;
  try {
    shown = JSON.stringify(recurrence) ?? String(recurrence);
  } catch {
    shown = String(recurrence);
  }
  if (typeof recurrence === "number") shown = String(recurrence);
  return new ConfigError(`Invalid recurrence ${shown}: ${why}`, { field: "recurrence" });
}
