import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { parseCron } from "../src/schedule/cron.ts";
import { ConfigError } from "../src/errors.ts";

/** "2025-01-01T00:00" (UTC, seconds and ms optional) to ms since the epoch. */
function at(text: string): number {
  const ms = Date.parse(`${text}Z`);
  assert.ok(Number.isFinite(ms), `bad test time ${text}`);
  return ms;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The first `count` occurrences after `from`, as ISO strings. */
function occurrences(expression: string, from: number, count: number): string[] {
  const schedule = parseCron(expression);
  const result: string[] = [];
  let time = from;
  for (let i = 0; i < count; i++) {
    time = schedule.next(time);
    result.push(iso(time));
  }
  return result;
}

// Every expected time below was worked out by hand from a calendar (2025-01-01 is a Wednesday,
// 2028-02-27 a Sunday, 2100-02-28 a Sunday; 1900 and 2100 are not leap years, 2000 and 2400 are).
// Times are UTC; "next" lists successive occurrences, each computed from the previous one.
const occurrenceTable: ReadonlyArray<{ cron: string; from: string; next: readonly string[] }> = [
  // Macros.
  { cron: "@yearly", from: "2025-03-10T12:00", next: ["2026-01-01T00:00", "2027-01-01T00:00"] },
  { cron: "@annually", from: "2025-12-31T23:59:59.999", next: ["2026-01-01T00:00"] },
  {
    cron: "@monthly",
    from: "2025-01-31T10:00",
    next: ["2025-02-01T00:00", "2025-03-01T00:00", "2025-04-01T00:00"],
  },
  {
    cron: "@weekly",
    from: "2025-01-01T00:00",
    next: ["2025-01-05T00:00", "2025-01-12T00:00", "2025-01-19T00:00"],
  },
  { cron: "@daily", from: "2025-02-28T00:00", next: ["2025-03-01T00:00", "2025-03-02T00:00"] },
  { cron: "@midnight", from: "2024-02-28T23:59", next: ["2024-02-29T00:00", "2024-03-01T00:00"] },
  {
    cron: "@hourly",
    from: "2025-06-30T23:30",
    next: ["2025-07-01T00:00", "2025-07-01T01:00", "2025-07-01T02:00"],
  },
  { cron: "@Daily", from: "2025-01-01T12:00", next: ["2025-01-02T00:00"] },
  // Steps, ranges, lists.
  {
    cron: "*/15 * * * *",
    from: "2025-01-01T00:00",
    next: ["2025-01-01T00:15", "2025-01-01T00:30", "2025-01-01T00:45"],
  },
  { cron: "*/15 * * * *", from: "2025-01-01T23:50:30", next: ["2025-01-02T00:00", "2025-01-02T00:15"] },
  {
    cron: "23 0-20/2 * * *",
    from: "2025-01-01T19:00",
    next: ["2025-01-01T20:23", "2025-01-02T00:23", "2025-01-02T02:23"],
  },
  { cron: "23 0-20/2 * * *", from: "2025-01-01T01:30", next: ["2025-01-01T02:23", "2025-01-01T04:23"] },
  { cron: "0 22 * * *", from: "2025-01-01T10:30", next: ["2025-01-01T22:00", "2025-01-02T22:00"] },
  { cron: "10 */5 * * *", from: "2025-01-01T00:45", next: ["2025-01-01T05:10", "2025-01-01T10:10"] },
  {
    cron: "0,30 * * * *",
    from: "2025-01-01T00:00",
    next: ["2025-01-01T00:30", "2025-01-01T01:00", "2025-01-01T01:30"],
  },
  {
    cron: "0 */6 * * *",
    from: "2025-01-01T05:59:59",
    next: ["2025-01-01T06:00", "2025-01-01T12:00", "2025-01-01T18:00"],
  },
  {
    cron: "5-59/20 * * * *",
    from: "2025-01-01T00:45",
    next: ["2025-01-01T01:05", "2025-01-01T01:25", "2025-01-01T01:45"],
  },
  {
    cron: "1/2 * * * *",
    from: "2025-01-01T00:58",
    next: ["2025-01-01T00:59", "2025-01-01T01:01", "2025-01-01T01:03"],
  },
  {
    cron: "1-3 0 1 1 *",
    from: "2025-01-01T00:02",
    next: ["2025-01-01T00:03", "2026-01-01T00:01", "2026-01-01T00:02"],
  },
  {
    cron: "0 0 1 */3 *",
    from: "2025-02-15T00:00",
    next: ["2025-04-01T00:00", "2025-07-01T00:00", "2025-10-01T00:00"],
  },
  {
    cron: "0 0 1 2/5 *",
    from: "2025-01-01T00:00",
    next: ["2025-02-01T00:00", "2025-07-01T00:00", "2025-12-01T00:00"],
  },
  {
    cron: "*/20 9-17 * * mon-fri",
    from: "2025-01-03T16:50",
    next: ["2025-01-03T17:00", "2025-01-03T17:20", "2025-01-03T17:40"],
  },
  { cron: "*/20 9-17 * * mon-fri", from: "2025-01-03T17:40", next: ["2025-01-06T09:00"] },
  // Weekdays, names, Sunday as 0 or 7.
  {
    cron: "5 4 * * sun",
    from: "2025-01-01T00:00",
    next: ["2025-01-05T04:05", "2025-01-12T04:05", "2025-01-19T04:05"],
  },
  {
    cron: "0 22 * * 1-5",
    from: "2025-01-03T22:00",
    next: ["2025-01-06T22:00", "2025-01-07T22:00", "2025-01-08T22:00"],
  },
  { cron: "0 0 * * 7", from: "2025-01-01T00:00", next: ["2025-01-05T00:00", "2025-01-12T00:00"] },
  { cron: "0 0 * * 0", from: "2025-01-01T00:00", next: ["2025-01-05T00:00", "2025-01-12T00:00"] },
  { cron: "0 0 * * 0", from: "2100-02-27T00:00", next: ["2100-02-28T00:00", "2100-03-07T00:00"] },
  {
    cron: "0 12 * * 1,3,5",
    from: "2025-01-01T12:00",
    next: ["2025-01-03T12:00", "2025-01-06T12:00", "2025-01-08T12:00"],
  },
  {
    cron: "15 10 * * 5/1",
    from: "2025-01-01T00:00",
    next: ["2025-01-03T10:15", "2025-01-04T10:15", "2025-01-10T10:15"],
  },
  {
    cron: "0 0 * * SAT-SUN",
    from: "2025-01-01T00:00",
    next: ["2025-01-04T00:00", "2025-01-05T00:00", "2025-01-11T00:00"],
  },
  {
    cron: "0 0 * * 5-7",
    from: "2025-01-01T00:00",
    next: ["2025-01-03T00:00", "2025-01-04T00:00", "2025-01-05T00:00"],
  },
  {
    cron: "30 2 * * 1-7/2",
    from: "2025-01-01T03:00",
    next: ["2025-01-03T02:30", "2025-01-05T02:30", "2025-01-06T02:30"],
  },
  {
    cron: "0 0 * * sun-sat/3",
    from: "2025-01-01T00:00",
    next: ["2025-01-04T00:00", "2025-01-05T00:00", "2025-01-08T00:00"],
  },
  {
    cron: "0 9 * JAN-MAR MON",
    from: "2025-03-30T00:00",
    next: ["2025-03-31T09:00", "2026-01-05T09:00", "2026-01-12T09:00"],
  },
  {
    cron: "0 0 1 feb,Aug *",
    from: "2025-03-01T00:00",
    next: ["2025-08-01T00:00", "2026-02-01T00:00", "2026-08-01T00:00"],
  },
  { cron: "0 0 1 jan *", from: "2024-06-01T00:00", next: ["2025-01-01T00:00", "2026-01-01T00:00"] },
  // Day-of-month and day-of-week: OR when both are restricted, AND when either begins with "*".
  {
    cron: "0 0 1,15 * 3",
    from: "2025-01-01T00:00",
    next: ["2025-01-08T00:00", "2025-01-15T00:00", "2025-01-22T00:00"],
  },
  {
    cron: "0 0 1,15 * 3",
    from: "2025-01-29T00:00",
    next: ["2025-02-01T00:00", "2025-02-05T00:00", "2025-02-12T00:00"],
  },
  {
    cron: "0 0 13 * 5",
    from: "2025-01-01T00:00",
    next: ["2025-01-03T00:00", "2025-01-10T00:00", "2025-01-13T00:00"],
  },
  {
    cron: "0 0 30 2 1",
    from: "2025-01-01T00:00",
    next: ["2025-02-03T00:00", "2025-02-10T00:00", "2025-02-17T00:00"],
  },
  {
    // Mondays in February only: 2029-02-01 is a Thursday.
    cron: "0 0 29 2 mon",
    from: "2028-02-27T00:00",
    next: ["2028-02-28T00:00", "2028-02-29T00:00", "2029-02-05T00:00"],
  },
  {
    cron: "0 0 13 * */5",
    from: "2025-01-01T00:00",
    next: ["2025-04-13T00:00", "2025-06-13T00:00", "2025-07-13T00:00"],
  },
  {
    cron: "0 0 */10 * 1",
    from: "2025-01-01T00:00",
    next: ["2025-03-31T00:00", "2025-04-21T00:00", "2025-07-21T00:00"],
  },
  // Leap years and month ends.
  {
    cron: "0 12 29 2 *",
    from: "2025-01-01T00:00",
    next: ["2028-02-29T12:00", "2032-02-29T12:00", "2036-02-29T12:00"],
  },
  { cron: "0 12 29 2 *", from: "2096-02-29T12:00", next: ["2104-02-29T12:00", "2108-02-29T12:00"] },
  { cron: "0 12 29 2 *", from: "2396-03-01T00:00", next: ["2400-02-29T12:00", "2404-02-29T12:00"] },
  { cron: "0 0 29 2 *", from: "1896-02-29T00:00", next: ["1904-02-29T00:00"] },
  { cron: "0 0 29 * *", from: "2025-01-29T00:00", next: ["2025-03-29T00:00", "2025-04-29T00:00"] },
  { cron: "0 0 29 * *", from: "2024-01-29T00:00", next: ["2024-02-29T00:00", "2024-03-29T00:00"] },
  {
    cron: "0 0 28-31 2 *",
    from: "2024-01-01T00:00",
    next: ["2024-02-28T00:00", "2024-02-29T00:00", "2025-02-28T00:00"],
  },
  {
    cron: "0 0 31 * *",
    from: "2025-01-31T00:00",
    next: ["2025-03-31T00:00", "2025-05-31T00:00", "2025-07-31T00:00"],
  },
  {
    cron: "0 0 31 * *",
    from: "2025-07-31T00:00",
    next: ["2025-08-31T00:00", "2025-10-31T00:00", "2025-12-31T00:00"],
  },
  { cron: "0 0 30 1,2,3 *", from: "2025-01-30T00:00", next: ["2025-03-30T00:00", "2026-01-30T00:00"] },
  { cron: "59 23 * * *", from: "2025-02-28T23:59", next: ["2025-03-01T23:59"] },
  // Year rollover, seconds and milliseconds, times before 1970 and before year 100.
  { cron: "* * * * *", from: "2025-12-31T23:59", next: ["2026-01-01T00:00", "2026-01-01T00:01"] },
  { cron: "59 23 31 12 *", from: "2025-12-31T23:59", next: ["2026-12-31T23:59"] },
  { cron: "* * * * *", from: "2025-01-01T00:00:00.001", next: ["2025-01-01T00:01"] },
  { cron: "* * * * *", from: "2025-01-01T00:00:59.999", next: ["2025-01-01T00:01", "2025-01-01T00:02"] },
  { cron: "30 * * * *", from: "2025-01-01T10:29:59.999", next: ["2025-01-01T10:30", "2025-01-01T11:30"] },
  { cron: "0 0 1 1 *", from: "1969-12-31T00:00", next: ["1970-01-01T00:00", "1971-01-01T00:00"] },
  { cron: "0 0 1 1 *", from: "0099-06-01T00:00", next: ["0100-01-01T00:00"] },
  { cron: "\t0 0  * *\t*\n", from: "2025-01-01T00:00", next: ["2025-01-02T00:00"] },
];

describe("parseCron(...).next: hand-computed occurrences", () => {
  for (const { cron, from, next } of occurrenceTable) {
    test(`${JSON.stringify(cron)} after ${from}`, () => {
      assert.deepEqual(occurrences(cron, at(from), next.length), next.map((text) => iso(at(text))));
    });
  }

  test("the table holds at least 40 expressions", () => {
    assert.ok(new Set(occurrenceTable.map((row) => row.cron)).size >= 40);
  });
});

describe("parseCron(...).next: properties", () => {
  test("day-of-week 7, 0 and SUN are the same day", () => {
    const from = at("2025-01-01T00:00");
    const sundays = occurrences("0 0 * * 0", from, 30);
    assert.deepEqual(occurrences("0 0 * * 7", from, 30), sundays);
    assert.deepEqual(occurrences("0 0 * * SUN", from, 30), sundays);
  });

  test("a start exactly on an occurrence returns the next one", () => {
    const schedule = parseCron("0 0 1,15 * 3");
    const occurrence = at("2025-01-15T00:00");
    assert.equal(iso(schedule.next(occurrence)), iso(at("2025-01-22T00:00")));
    assert.equal(iso(schedule.next(occurrence - 1)), iso(occurrence));
  });

  test("results are strictly later, on whole minutes", () => {
    const starts = [
      at("2025-01-01T00:00"),
      at("2025-06-15T13:37:42.123"),
      at("1969-07-20T20:17:40"),
      0.5,
      -0.5,
    ];
    for (const cron of ["* * * * *", "*/7 * * * *", "0 0 29 2 *", "@weekly", "17 3 * 1,7 sat"]) {
      const schedule = parseCron(cron);
      for (const start of starts) {
        let time = start;
        for (let i = 0; i < 5; i++) {
          const next = schedule.next(time);
          assert.ok(next > time, `${cron}: ${iso(next)} is not after ${time}`);
          assert.ok(next % 60_000 === 0, `${cron}: ${iso(next)} is not a whole minute`); // -0 before 1970
          time = next;
        }
      }
    }
  });

  test("1,000 successive leap days complete (and the 1,000th from 2000 is 6120-02-29)", () => {
    // 97 leap years per 400 years: 2000-5999 holds 970, 6000-6096 holds 25 more, then 6104 ... 6120.
    const schedule = parseCron("0 0 29 2 *");
    let time = at("1999-12-31T00:00");
    for (let i = 0; i < 1000; i++) {
      time = schedule.next(time);
      assert.match(iso(time), /^\d{4}-02-29T00:00:00\.000Z$/);
    }
    assert.equal(iso(time), "6120-02-29T00:00:00.000Z");
  });

  // Brute force: step minute by minute through a year with a predicate written independently of the
  // parser, and compare every matching minute with the chain of next() calls.
  const predicates: ReadonlyArray<[string, (d: Date) => boolean]> = [
    [
      "23 0-20/2 * * *",
      (d) => d.getUTCMinutes() === 23 && d.getUTCHours() % 2 === 0 && d.getUTCHours() <= 20,
    ],
    [
      "0 0 1,15 * 3",
      (d) => midnight(d) && [1, 15].includes(d.getUTCDate()) || midnight(d) && d.getUTCDay() === 3,
    ],
    ["0 0 13 * */5", (d) => midnight(d) && d.getUTCDate() === 13 && [0, 5].includes(d.getUTCDay())],
    ["0 0 */10 * 1", (d) => midnight(d) && d.getUTCDate() % 10 === 1 && d.getUTCDay() === 1],
    ["*/20 9-17 * * mon-fri", (d) => {
      const hour = d.getUTCHours();
      return d.getUTCMinutes() % 20 === 0 && hour >= 9 && hour <= 17 && d.getUTCDay() >= 1 &&
        d.getUTCDay() <= 5;
    }],
    ["0 0 31 * *", (d) => midnight(d) && d.getUTCDate() === 31],
    [
      "0 0 29 2 mon",
      (d) => midnight(d) && d.getUTCMonth() === 1 && (d.getUTCDate() === 29 || d.getUTCDay() === 1),
    ],
  ];
  for (const [cron, matches] of predicates) {
    test(`${JSON.stringify(cron)} agrees with a minute-by-minute scan of 2024`, () => {
      const from = at("2023-12-31T23:59");
      const to = at("2024-12-31T23:59");
      const expected: string[] = [];
      for (let time = from + 60_000; time <= to; time += 60_000) {
        const date = new Date(time);
        if (matches(date)) expected.push(date.toISOString());
      }
      const actual: string[] = [];
      const schedule = parseCron(cron);
      for (let time = schedule.next(from); time <= to; time = schedule.next(time)) actual.push(iso(time));
      assert.ok(expected.length > 0);
      assert.deepEqual(actual, expected);
      // And from arbitrary starts (every 7 min 13 s), next() is the first expected minute after the start.
      const expectedMs = expected.map(Date.parse);
      let index = 0;
      for (let start = from; start < expectedMs[expectedMs.length - 1]; start += 433_000) {
        while (expectedMs[index] <= start) index++;
        assert.equal(iso(schedule.next(start)), expected[index], `after ${iso(start)}`);
      }
    });
  }
});

function midnight(d: Date): boolean {
  return d.getUTCHours() === 0 && d.getUTCMinutes() === 0;
}

describe("parseCron: the schedule object", () => {
  test("expression is the trimmed input; the schedule is frozen", () => {
    const schedule = parseCron("  0 0 * * *\n");
    assert.equal(schedule.expression, "0 0 * * *");
    assert.ok(Object.isFrozen(schedule));
    assert.equal(parseCron(" @daily ").expression, "@daily");
  });

  test("next rejects times that are not finite numbers within the Date range", () => {
    const schedule = parseCron("* * * * *");
    for (const bad of [NaN, Infinity, -Infinity, 8.64e15 + 1, -8.64e15 - 1, "1" as unknown as number]) {
      assert.throws(() => schedule.next(bad), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.field, "after");
        assert.match(error.message, /"\* \* \* \* \*": expected a finite number/);
        return true;
      });
    }
    // The last minute a Date can hold is still returned.
    assert.equal(schedule.next(8.64e15 - 60_000), 8.64e15);
  });

  test("next reports an occurrence beyond the Date range as a ConfigError", () => {
    assert.throws(() => parseCron("0 0 1 1 *").next(8.64e15), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.field, "after");
      assert.match(error.message, /beyond the largest time a Date can hold/);
      return true;
    });
  });
});

// Malformed and never-firing expressions, with the field at fault and a fragment of the message.
const errorTable: ReadonlyArray<{ cron: string; field: string; message: RegExp }> = [
  { cron: "", field: "cron", message: /expected 5 fields .* got 0 fields/ },
  { cron: "   ", field: "cron", message: /expected 5 fields/ },
  { cron: "* * * *", field: "cron", message: /got 4 fields/ },
  { cron: "* * * * * *", field: "cron", message: /got 6 fields/ },
  { cron: "@daily *", field: "cron", message: /got 2 fields/ },
  { cron: "@reboot", field: "cron", message: /unknown macro "@reboot"/ },
  { cron: "@fortnightly", field: "cron", message: /unknown macro/ },
  { cron: "60 * * * *", field: "cron.minute", message: /minute value 60 is out of range 0-59/ },
  { cron: "* 24 * * *", field: "cron.hour", message: /hour value 24 is out of range 0-23/ },
  { cron: "* * 0 * *", field: "cron.dayOfMonth", message: /day-of-month value 0 is out of range 1-31/ },
  { cron: "* * 32 * *", field: "cron.dayOfMonth", message: /value 32 is out of range/ },
  { cron: "* * * 13 *", field: "cron.month", message: /month value 13 is out of range 1-12 or JAN-DEC/ },
  { cron: "* * * 0 *", field: "cron.month", message: /value 0 is out of range/ },
  { cron: "* * * * 8", field: "cron.dayOfWeek", message: /day-of-week value 8 is out of range 0-7/ },
  { cron: "*/0 * * * *", field: "cron.minute", message: /step 0 .* at least 1/ },
  { cron: "* * * * 1-5/0", field: "cron.dayOfWeek", message: /step 0/ },
  { cron: "*/61 * * * *", field: "cron.minute", message: /step 61 .* larger than/ },
  { cron: "* */25 * * *", field: "cron.hour", message: /step 25 .* larger than/ },
  { cron: "* * * * */8", field: "cron.dayOfWeek", message: /step 8 .* larger than/ },
  { cron: "*/ * * * *", field: "cron.minute", message: /step "" is not a positive integer/ },
  { cron: "*/x * * * *", field: "cron.minute", message: /step "x" is not a positive integer/ },
  { cron: "1/2/3 * * * *", field: "cron.minute", message: /more than one "\/"/ },
  { cron: "5-1 * * * *", field: "cron.minute", message: /range "5-1" is reversed/ },
  { cron: "* * * * FRI-MON", field: "cron.dayOfWeek", message: /range "FRI-MON" is reversed/ },
  { cron: "* * * * 6-0", field: "cron.dayOfWeek", message: /reversed/ },
  { cron: "* * * FOO *", field: "cron.month", message: /value "FOO" is not a number/ },
  { cron: "* * * MON *", field: "cron.month", message: /value "MON"/ },
  { cron: "* * * * MONDAY", field: "cron.dayOfWeek", message: /value "MONDAY"/ },
  { cron: "* * * * JAN", field: "cron.dayOfWeek", message: /value "JAN"/ },
  { cron: "* * JAN * *", field: "cron.dayOfMonth", message: /value "JAN"/ },
  { cron: "a * * * *", field: "cron.minute", message: /value "a"/ },
  { cron: "1.5 * * * *", field: "cron.minute", message: /value "1.5"/ },
  { cron: "1,,2 * * * *", field: "cron.minute", message: /empty list item/ },
  { cron: "1-3, * * * *", field: "cron.minute", message: /empty list item/ },
  { cron: "1- * * * *", field: "cron.minute", message: /"1-" is missing a value/ },
  { cron: "-1 * * * *", field: "cron.minute", message: /"-1" is missing a value/ },
  { cron: "1-2-3 * * * *", field: "cron.minute", message: /"1-2-3" is not a value/ },
  { cron: "* * * * ?", field: "cron.dayOfWeek", message: /value "\?"/ },
  { cron: "* * L * *", field: "cron.dayOfMonth", message: /value "L"/ },
  { cron: "0 0 1W * *", field: "cron.dayOfMonth", message: /value "1W"/ },
  { cron: "0 0 * * 1#2", field: "cron.dayOfWeek", message: /value "1#2"/ },
  { cron: "0 0 30 2 *", field: "cron.dayOfMonth", message: /never fire/ },
  { cron: "0 0 31 4,6,9,11 *", field: "cron.dayOfMonth", message: /never fire/ },
  { cron: "0 0 30,31 feb *", field: "cron.dayOfMonth", message: /never fire/ },
  { cron: "0 0 31 apr-jun/2 *", field: "cron.dayOfMonth", message: /never fire/ },
  { cron: "0 0 31 2 */2", field: "cron.dayOfMonth", message: /never fire/ },
];

describe("parseCron: invalid expressions", () => {
  for (const { cron, field, message } of errorTable) {
    test(`${JSON.stringify(cron)} is rejected (${field})`, () => {
      assert.throws(() => parseCron(cron), (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
        assert.equal(error.code, "CONFIG");
        assert.equal(error.field, field);
        assert.ok(
          error.message.startsWith(`Invalid cron expression ${JSON.stringify(cron.trim())}: `),
          error.message,
        );
        assert.match(error.message, message);
        return true;
      });
    });
  }

  test("a value that is not a string is rejected (cron)", () => {
    assert.throws(() => parseCron(42 as unknown as string), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.field, "cron");
      return true;
    });
  });

  test("expressions that look impossible but can fire are accepted", () => {
    // Day-of-week restricted too: the OR rule makes these fire on Mondays.
    for (
      const cron of ["0 0 30 2 1", "0 0 31 4,6,9,11 mon", "0 0 29 2 *", "0 0 28-31 2 *", "0 0 31 1-12/2 *"]
    ) {
      assert.doesNotThrow(() => parseCron(cron), cron);
    }
  });
});
