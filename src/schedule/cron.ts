/**
 * Cron expressions: the classic five-field syntax, parsed once and evaluated in UTC.
 *
 * @module
 */

import { ConfigError, InternalError } from "../errors.ts";

/**
 * A parsed cron expression. Made by {@linkcode parseCron}; immutable.
 *
 * @example Every weekday at 22:00 UTC
 * ```ts
 * import { parseCron } from "@reflow/core";
 *
 * const schedule = parseCron("0 22 * * MON-FRI");
 * const friday = Date.parse("2025-01-03T22:00:00Z");
 * console.log(schedule.expression); // 0 22 * * MON-FRI
 * console.log(new Date(schedule.next(friday)).toISOString()); // 2025-01-06T22:00:00.000Z (Monday)
 * ```
 */
export interface CronSchedule {
  /** The expression as given to {@linkcode parseCron}, trimmed. */
  readonly expression: string;
  /**
   * The first occurrence strictly after `after`, in UTC. Occurrences fall on whole minutes, so the
   * result's seconds and milliseconds are always 0; a start exactly on an occurrence returns the next one.
   *
   * @example Successive occurrences
   * ```ts
   * import { parseCron } from "@reflow/core";
   *
   * const leapDay = parseCron("0 12 29 2 *");
   * const first = leapDay.next(Date.parse("2025-01-01T00:00:00Z")); // 2028-02-29T12:00Z
   * const second = leapDay.next(first); // 2032-02-29T12:00Z
   * console.log(new Date(second).toISOString());
   * ```
   *
   * @param after A time in ms since the epoch (any finite value a `Date` can hold; fractions allowed).
   * @returns The occurrence, in ms since the epoch.
   * @throws {ConfigError} With `field` `"after"` when `after` is not a finite number within the `Date`
   *   range, or when the next occurrence lies beyond the end of that range (year 275760).
   */
  next(after: number): number;
}

type FieldName = "minute" | "hour" | "dayOfMonth" | "month" | "dayOfWeek";

interface FieldSpec {
  readonly name: FieldName;
  /** How messages name the field. */
  readonly label: string;
  readonly min: number;
  /** The highest value accepted (7 for day-of-week, where 7 is Sunday). */
  readonly max: number;
  /** Where `*` and `a/n` stop (6 for day-of-week, so Sunday is not counted twice). */
  readonly openMax: number;
  /** Three-letter names; the name at index i stands for the value `min + i`. */
  readonly names?: readonly string[];
  readonly nameHint: string;
}

const MINUTE: FieldSpec = { name: "minute", label: "minute", min: 0, max: 59, openMax: 59, nameHint: "" };
const HOUR: FieldSpec = { name: "hour", label: "hour", min: 0, max: 23, openMax: 23, nameHint: "" };
const DAY_OF_MONTH: FieldSpec = {
  name: "dayOfMonth",
  label: "day-of-month",
  min: 1,
  max: 31,
  openMax: 31,
  nameHint: "",
};
const MONTH: FieldSpec = {
  name: "month",
  label: "month",
  min: 1,
  max: 12,
  openMax: 12,
  names: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
  nameHint: " or JAN-DEC",
};
const DAY_OF_WEEK: FieldSpec = {
  name: "dayOfWeek",
  label: "day-of-week",
  min: 0,
  max: 7,
  openMax: 6,
  names: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
  nameHint: " or SUN-SAT",
};
const FIELDS = [MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK] as const;

const MACROS: Readonly<Record<string, string>> = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};

/** The longest each month can be (February in a leap year), indexed by month 1-12. */
const MAX_DAYS = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const MINUTE_MS = 60_000;
/** The largest time value a `Date` can hold (±100,000,000 days around the epoch). */
const MAX_TIME = 8.64e15;
/** The year of {@link MAX_TIME}; the search never goes past it. */
const MAX_YEAR = 275_760;
/**
 * How far `next()` searches before declaring a bug. The Gregorian calendar repeats exactly every 400 years
 * (146,097 days, a whole number of weeks), so an expression that fires at all fires in every 400-year window.
 * The check in `parseCron` guarantees it fires at all; the real gaps are far shorter (8 years for
 * `0 0 29 2 *` across 2100, at most 40 for a leap day that must also fall on one weekday).
 */
const SEARCH_YEARS = 400;

/** Which values of one field match, and whether the field's text begins with `*`. */
interface ParsedField {
  readonly allowed: readonly boolean[];
  readonly star: boolean;
}

/**
 * Parses a cron expression: five fields `minute hour day-of-month month day-of-week`, evaluated in UTC.
 *
 * Each field is a comma-separated list of items; an item is `*`, a value `a`, a range `a-b`, or one of
 * those followed by a step `/n`: every `n`th value of the whole field, of the range, or (after a single
 * value `a`) from `a` through the field's maximum.
 * Ranges are 0-59 (minute), 0-23 (hour), 1-31 (day-of-month), 1-12 or `JAN`-`DEC` (month), and 0-7 or
 * `SUN`-`SAT` (day-of-week, where both 0 and 7 are Sunday; `SUN` at the end of a range means 7, so
 * `SAT-SUN` is the weekend). Names are case-insensitive. A step may not be 0 nor larger than the field's
 * span (60, 24, 31, 12 and 7); a range may not be reversed. The macros `@yearly` (or `@annually`),
 * `@monthly`, `@weekly`, `@daily` (or `@midnight`) and `@hourly` stand for `0 0 1 1 *`, `0 0 1 * *`,
 * `0 0 * * 0`, `0 0 * * *` and `0 * * * *`.
 *
 * Day-of-month and day-of-week combine as in Vixie cron: a field counts as "star" when its text begins
 * with `*` (so `*` does, and so does `*` with a step; `1-31` does not). When neither field is star, a
 * day matches when EITHER field matches (`0 0 1,15 * 3` fires on the 1st, the 15th and every Wednesday).
 * When at least one is star, a day must match BOTH, so a plain `*` leaves the other field alone in
 * charge, while a day-of-week of `*` with step 5 (Sunday and Friday) next to a day-of-month of `13`
 * fires only on a 13th that is a Sunday or a Friday.
 *
 * @example Parse once, then ask for occurrences
 * ```ts
 * import { parseCron } from "@reflow/core";
 *
 * const quarterHour = parseCron("0,15,30,45 9-17 * * mon-fri");
 * const at = quarterHour.next(Date.parse("2025-01-03T17:50:00Z")); // Friday, after the last slot
 * console.log(new Date(at).toISOString()); // 2025-01-06T09:00:00.000Z
 * ```
 *
 * @example Invalid expressions name the field at fault
 * ```ts
 * import { ConfigError, parseCron } from "@reflow/core";
 *
 * try {
 *   parseCron("0 0 30 2 *");
 * } catch (error) {
 *   if (error instanceof ConfigError) console.log(error.field); // cron.dayOfMonth (February has no 30th)
 * }
 * ```
 *
 * @param expression Five whitespace-separated fields, or one macro such as `@daily`.
 * @returns The parsed schedule.
 * @throws {ConfigError} When the expression is malformed, with `field` naming the field at fault
 *   (`"cron.minute"`, `"cron.hour"`, `"cron.dayOfMonth"`, `"cron.month"`, `"cron.dayOfWeek"`), or `"cron"`
 *   for a wrong number of fields or an unknown macro. Also when the expression can never fire, such as
 *   `0 0 30 2 *` (field `"cron.dayOfMonth"`).
 */
export function parseCron(expression: string): CronSchedule {
  if (typeof expression !== "string") {
    throw new ConfigError(`Invalid cron expression ${String(expression)}: expected a string`, {
      field: "cron",
    });
  }
  const trimmed = expression.trim();
  const quoted = JSON.stringify(trimmed);
  let texts = trimmed === "" ? [] : trimmed.split(/\s+/);
  if (texts.length === 1 && texts[0].startsWith("@")) {
    const macro = MACROS[texts[0].toLowerCase()];
    if (macro === undefined) {
      throw new ConfigError(
        `Invalid cron expression ${quoted}: unknown macro ${JSON.stringify(texts[0])} ` +
          `(expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)`,
        { field: "cron" },
      );
    }
    texts = macro.split(" ");
  }
  if (texts.length !== 5) {
    throw new ConfigError(
      `Invalid cron expression ${quoted}: expected 5 fields (minute hour day-of-month month day-of-week) ` +
        `or a macro such as @daily, got ${texts.length} field${texts.length === 1 ? "" : "s"}`,
      { field: "cron" },
    );
  }
  const [minute, hour, dayOfMonth, month, dayOfWeek] = FIELDS.map((spec, i) =>
    parseField(texts[i], spec, quoted)
  );
  const either = !dayOfMonth.star && !dayOfWeek.star;
  if (!either && !canFire(dayOfMonth, month)) {
    throw new ConfigError(
      `Invalid cron expression ${quoted}: it can never fire, because no day in day-of-month ` +
        `${JSON.stringify(texts[2])} exists in month ${JSON.stringify(texts[3])}`,
      { field: "cron.dayOfMonth" },
    );
  }
  const nextMinute = successors(minute.allowed);
  const nextHour = successors(hour.allowed);
  const dayMatches = (day: number, weekday: number): boolean =>
    either
      ? dayOfMonth.allowed[day] || dayOfWeek.allowed[weekday]
      : dayOfMonth.allowed[day] && dayOfWeek.allowed[weekday];

  function next(after: number): number {
    if (typeof after !== "number" || !Number.isFinite(after) || Math.abs(after) > MAX_TIME) {
      throw new ConfigError(
        `Invalid time ${String(after)} for cron expression ${quoted}: expected a finite number of ` +
          `ms since the epoch, within ±${MAX_TIME}`,
        { field: "after" },
      );
    }
    const start = new Date(Math.floor(after / MINUTE_MS) * MINUTE_MS + MINUTE_MS);
    if (Number.isNaN(start.getTime())) throw beyondRange(after);
    // Lower bounds for each unit; reset to the unit's minimum as soon as a larger unit moves on.
    let monthFrom = start.getUTCMonth() + 1;
    let dayFrom = start.getUTCDate();
    let hourFrom = start.getUTCHours();
    let minuteFrom = start.getUTCMinutes();
    const firstYear = start.getUTCFullYear();
    for (let y = firstYear; y <= firstYear + SEARCH_YEARS; y++, monthFrom = 1) {
      if (y > MAX_YEAR) throw beyondRange(after);
      for (let m = monthFrom; m <= 12; m++, dayFrom = 1, hourFrom = 0, minuteFrom = 0) {
        if (!month.allowed[m]) continue;
        const length = daysInMonth(y, m);
        const firstWeekday = new Date(utcTime(y, m, 1, 0, 0)).getUTCDay();
        for (let d = dayFrom; d <= length; d++, hourFrom = 0, minuteFrom = 0) {
          if (!dayMatches(d, (firstWeekday + d - 1) % 7)) continue;
          for (let h = nextHour[hourFrom]; h !== -1; h = nextHour[h + 1]) {
            // The start's minute bounds only the start's own hour.
            const min = nextMinute[h === hourFrom ? minuteFrom : 0];
            if (min === -1) continue;
            const time = utcTime(y, m, d, h, min);
            if (!(time <= MAX_TIME)) throw beyondRange(after);
            return time;
          }
        }
      }
    }
    throw new InternalError(
      `No occurrence of cron expression ${quoted} within ${SEARCH_YEARS} years after ` +
        `${new Date(after).toISOString()}, although it passed the parse-time check`,
    );
  }

  function beyondRange(after: number): ConfigError {
    return new ConfigError(
      `Cannot compute the next occurrence of cron expression ${quoted} after ${String(after)}: ` +
        `it lies beyond the largest time a Date can hold (year ${MAX_YEAR})`,
      { field: "after" },
    );
  }

  return Object.freeze({ expression: trimmed, next });
}

/** Parses one field into the set of values it allows (day-of-week 7 folded into 0). */
function parseField(text: string, spec: FieldSpec, quoted: string): ParsedField {
  const allowed: boolean[] = new Array(spec.max + 1).fill(false);
  for (const item of text.split(",")) {
    const { from, to, step } = parseItem(item, text, spec, quoted);
    for (let value = from; value <= to; value += step) allowed[value] = true;
  }
  if (spec === DAY_OF_WEEK && allowed[7]) {
    allowed[0] = true;
    allowed[7] = false;
  }
  return { allowed, star: text.startsWith("*") };
}

function parseItem(
  item: string,
  field: string,
  spec: FieldSpec,
  quoted: string,
): { from: number; to: number; step: number } {
  const fail = (what: string): never => {
    throw new ConfigError(`Invalid cron expression ${quoted}: ${spec.label} ${what}`, {
      field: `cron.${spec.name}`,
    });
  };
  if (item === "") fail(`field ${JSON.stringify(field)} has an empty list item`);
  const parts = item.split("/");
  if (parts.length > 2) fail(`item ${JSON.stringify(item)} has more than one "/"`);
  const [range, stepText] = parts;
  let step = 1;
  if (stepText !== undefined) {
    if (!/^\d+$/.test(stepText)) fail(`step ${JSON.stringify(stepText)} is not a positive integer`);
    step = Number(stepText);
    const span = spec.openMax - spec.min + 1;
    if (step === 0) fail(`step 0 in ${JSON.stringify(item)} is invalid: a step must be at least 1`);
    if (step > span) {
      fail(`step ${step} in ${JSON.stringify(item)} is larger than the field's span of ${span} values`);
    }
  }
  if (range === "*") return { from: spec.min, to: spec.openMax, step };
  const bounds = range.split("-");
  if (bounds.length > 2) fail(`item ${JSON.stringify(item)} is not a value, a range a-b or *`);
  const value = (text: string, rangeEnd: boolean): number => {
    if (text === "") fail(`item ${JSON.stringify(item)} is missing a value`);
    if (/^\d+$/.test(text)) {
      const number = Number(text);
      if (number < spec.min || number > spec.max) {
        fail(`value ${number} is out of range ${spec.min}-${spec.max}${spec.nameHint}`);
      }
      return number;
    }
    const index = spec.names?.indexOf(text.toUpperCase()) ?? -1;
    if (index === -1) {
      fail(
        spec.names === undefined
          ? `value ${JSON.stringify(text)} is not a number in ${spec.min}-${spec.max}`
          : `value ${JSON.stringify(text)} is not a number in ${spec.min}-${spec.max} ` +
            `nor a three-letter name (${spec.names[0]}-${spec.names[spec.names.length - 1]})`,
      );
    }
    const number = spec.min + index;
    // SUN ends a range as 7, so SAT-SUN and MON-SUN mean what they say.
    return rangeEnd && spec === DAY_OF_WEEK && number === 0 ? 7 : number;
  };
  if (bounds.length === 1) {
    const from = value(range, false);
    // `a/n` runs from a to the field's maximum; `7/n` (Sunday) is just Sunday.
    return stepText === undefined
      ? { from, to: from, step }
      : { from, to: Math.max(from, spec.openMax), step };
  }
  const from = value(bounds[0], false);
  const to = value(bounds[1], true);
  if (from > to) fail(`range ${JSON.stringify(range)} is reversed: ${from} is after ${to}`);
  return { from, to, step };
}

/** Whether some allowed day exists in some allowed month (February counted as 29 days). */
function canFire(dayOfMonth: ParsedField, month: ParsedField): boolean {
  for (let m = 1; m <= 12; m++) {
    if (!month.allowed[m]) continue;
    for (let d = 1; d <= MAX_DAYS[m]; d++) if (dayOfMonth.allowed[d]) return true;
  }
  return false;
}

/** For each value v, the smallest allowed value ≥ v, or -1; one extra slot past the end holds -1. */
function successors(allowed: readonly boolean[]): Int8Array {
  const table = new Int8Array(allowed.length + 1).fill(-1);
  for (let value = allowed.length - 1; value >= 0; value--) {
    table[value] = allowed[value] ? value : table[value + 1];
  }
  return table;
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return MAX_DAYS[month];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return leap ? 29 : 28;
}

/** Like `Date.UTC`, without its mapping of years 0-99 to 1900-1999. */
function utcTime(year: number, month: number, day: number, hour: number, minute: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, 0, 0);
  return date.getTime();
}

/**
 * The first occurrence of a cron expression strictly after `after`, in UTC: the one-call form
 * reflow-ts offers beside {@linkcode parseCron}.
 *
 * @example The next weekday morning
 * ```ts
 * import { nextCronOccurrence } from "@reflow/core";
 *
 * const next = nextCronOccurrence("0 9 * * 1-5", new Date("2025-01-03T10:00:00Z"));
 * console.log(next.toISOString()); // 2025-01-06T09:00:00.000Z
 * ```
 *
 * @param expression Five whitespace-separated fields, or one macro such as `@daily`.
 * @param after A `Date`, or a time in ms since the epoch.
 * @returns The occurrence, as a `Date`.
 * @throws {ConfigError} When the expression is malformed (as {@linkcode parseCron}) or `after` is not
 *   a valid time (field `"after"`).
 */
export function nextCronOccurrence(expression: string, after: Date | number): Date {
  return new Date(parseCron(expression).next(after instanceof Date ? after.getTime() : after));
}
