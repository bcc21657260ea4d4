/**
 * Conformance cases of `listRuns()` and `countRuns()`: page order, keyset cursors across `createdAt`
 * ties, filters, capped counts, and input checks.
 *
 * @module
 */

import type { RunQuery, RunStatus, StorageAdapter, WorkflowRun } from "./adapter.ts";
import type { ContractCase } from "./conformance_types.ts";
import {
  check,
  checkEqual,
  claim,
  create,
  expectInvalid,
  finishRuns,
  getRun,
  ids,
  scribble,
  show,
  T0,
} from "./conformance_support.ts";

/**
 * Reads every page of `query` with pages of `pageSize`, each continuing from the last run of the
 * page before, and checks that no page is longer than asked.
 */
async function readAllPages(
  storage: StorageAdapter,
  query: Omit<RunQuery, "limit">,
  pageSize: number,
): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: Pick<RunQuery, "before" | "beforeId"> = {};
  for (;;) {
    const page = await storage.listRuns({ ...query, ...cursor, limit: pageSize });
    check(page.length <= pageSize, `a page of ${pageSize} returned ${page.length} runs`);
    if (page.length === 0) return pages;
    pages.push(ids(page));
    const last: WorkflowRun = page[page.length - 1]!;
    cursor = { before: last.createdAt, beforeId: last.id };
    check(pages.length <= 100, `paging ${show(query)} does not end`);
  }
}

/** Creates runs "a0".."a6" at T0 + 10 and runs before and after them, in a shuffled order. */
async function createTiedRuns(storage: StorageAdapter): Promise<void> {
  const order = ["a3", "late", "a0", "a6", "early", "a1", "a5", "a2", "a4"];
  for (const id of order) {
    const createdAt = id === "late" ? T0 + 20 : id === "early" ? T0 : T0 + 10;
    await create(storage, id, { createdAt });
  }
}

const TIED_ORDER = ["late", "a6", "a5", "a4", "a3", "a2", "a1", "a0", "early"];

/** The conformance cases of `listRuns()`. */
export const listingCases: readonly ContractCase[] = [
  {
    name: "`listRuns()` returns runs newest first by createdAt, ties by id descending, at most limit",
    async run(storage) {
      checkEqual(await storage.listRuns({ limit: 10 }), [], "listRuns() on an empty storage");
      await createTiedRuns(storage);
      checkEqual(ids(await storage.listRuns({ limit: 100 })), TIED_ORDER, "one page of every run");
      checkEqual(ids(await storage.listRuns({ limit: 4 })), TIED_ORDER.slice(0, 4), "a page of 4");
      checkEqual(
        await storage.listRuns({ limit: 1 }),
        [await getRun(storage, "late")],
        "the records returned",
      );
    },
  },
  {
    name: "`listRuns()` pages of 3 over 7 runs sharing one createdAt return every run once, in order",
    async run(storage) {
      await createTiedRuns(storage);
      const pages = await readAllPages(storage, {}, 3);
      checkEqual(pages, [["late", "a6", "a5"], ["a4", "a3", "a2"], ["a1", "a0", "early"]], "pages");
      for (const size of [1, 2, 4, 5, 7, 8]) {
        checkEqual((await readAllPages(storage, {}, size)).flat(), TIED_ORDER, `pages of ${size}`);
      }
    },
  },
  {
    name: "`listRuns()` with before and no beforeId returns only runs created strictly before it",
    async run(storage) {
      await createTiedRuns(storage);
      checkEqual(ids(await storage.listRuns({ limit: 10, before: T0 + 10 })), ["early"], "before T0 + 10");
      checkEqual(
        ids(await storage.listRuns({ limit: 3, before: T0 + 11 })),
        ["a6", "a5", "a4"],
        "before T0 + 11",
      );
      checkEqual(await storage.listRuns({ limit: 10, before: T0 }), [], "before the oldest run");
      checkEqual(
        ids(await storage.listRuns({ limit: 10, before: T0 + 10, beforeId: "a2" })),
        ["a1", "a0", "early"],
        "before (T0 + 10, a2)",
      );
      checkEqual(
        ids(await storage.listRuns({ limit: 10, before: T0 + 10, beforeId: "zzz" })),
        TIED_ORDER.slice(1),
        "before (T0 + 10, an id after every tied id)",
      );
    },
  },
  {
    name:
      "`listRuns()` filters by status (one, several, or none when empty) and by workflow, also when paging",
    async run(storage) {
      await finishRuns(storage, [
        ["done1", "completed", T0 + 1],
        ["fail1", "failed", T0 + 1],
        ["stop1", "cancelled", T0 + 1],
      ]);
      const statuses: Record<string, RunStatus> = { done1: "completed", fail1: "failed", stop1: "cancelled" };
      // Runs sharing createdAt T0 + 5 across statuses and workflows, so that pages cut through ties.
      for (let i = 0; i < 6; i++) {
        const id = `p${i}`;
        await create(storage, id, { createdAt: T0 + 5, workflowName: i % 2 === 0 ? "wf" : "other" });
        statuses[id] = "pending";
      }
      const claimed = await claim(storage, T0 + 5, 2, ["wf"]);
      for (const run of claimed) statuses[run.id] = "running";
      const all = ids(await storage.listRuns({ limit: 100 }));
      checkEqual(all.length, 9, "number of runs");
      const workflowOf = async (id: string) => (await getRun(storage, id)).workflowName;
      const queries: { query: Omit<RunQuery, "limit">; keep: (id: string) => Promise<boolean> }[] = [
        { query: { statuses: [] }, keep: () => Promise.resolve(true) },
        { query: { statuses: ["pending"] }, keep: (id) => Promise.resolve(statuses[id] === "pending") },
        {
          query: { statuses: ["failed", "pending", "running", "failed"] },
          keep: (id) => Promise.resolve(["failed", "pending", "running"].includes(statuses[id]!)),
        },
        { query: { workflowName: "other" }, keep: async (id) => (await workflowOf(id)) === "other" },
        { query: { workflowName: "none" }, keep: () => Promise.resolve(false) },
        {
          query: { workflowName: "wf", statuses: ["running", "completed"] },
          keep: async (id) =>
            (await workflowOf(id)) === "wf" && ["running", "completed"].includes(statuses[id]!),
        },
      ];
      for (const { query, keep } of queries) {
        const expected: string[] = [];
        for (const id of all) if (await keep(id)) expected.push(id);
        checkEqual(
          ids(await storage.listRuns({ ...query, limit: 100 })),
          expected,
          `listRuns(${show(query)})`,
        );
        for (const size of [1, 2, 3]) {
          checkEqual(
            (await readAllPages(storage, query, size)).flat(),
            expected,
            `pages of ${size} of ${show(query)}`,
          );
        }
      }
    },
  },
  {
    name: "`listRuns()` orders ids by code point, as SQLite's binary collation orders their UTF-8 bytes",
    async run(storage) {
      // UTF-16 code units would put the emoji (a surrogate pair) before U+FF61.
      const order = ["\u{1F600}", "\u{FF61}", "\u00e9", "b", "a", "B", "A"];
      for (const id of [...order].reverse()) await create(storage, id);
      checkEqual(ids(await storage.listRuns({ limit: 10 })), order, "ids of one page");
      checkEqual((await readAllPages(storage, {}, 2)).flat(), order, "ids of pages of 2");
    },
  },
  {
    name: "`listRuns()` returns copies: mutating them does not change storage",
    async run(storage) {
      await create(storage, "r1");
      const before = await getRun(storage, "r1");
      scribble(await storage.listRuns({ limit: 10 }));
      checkEqual(await storage.listRuns({ limit: 10 }), [before], "runs after mutating a page");
    },
  },
  {
    name: "`listRuns()` rejects a malformed query with a StorageError",
    async run(storage) {
      await create(storage, "r1");
      const bad: [string, unknown][] = [
        ["no query", undefined],
        ["limit 0", { limit: 0 }],
        ["limit -1", { limit: -1 }],
        ["limit 1.5", { limit: 1.5 }],
        ["limit NaN", { limit: Number.NaN }],
        ["no limit", {}],
        ["an unknown status", { limit: 1, statuses: ["bogus"] }],
        ["statuses not an array", { limit: 1, statuses: "pending" }],
        ["a workflowName that is not a string", { limit: 1, workflowName: 1 }],
        ["a non-finite before", { limit: 1, before: Number.POSITIVE_INFINITY }],
        ["a beforeId that is not a string", { limit: 1, before: T0, beforeId: 7 }],
        ["a beforeId without before", { limit: 1, beforeId: "r1" }],
      ];
      for (const [what, query] of bad) {
        await expectInvalid("listRuns", what, () => storage.listRuns(query as RunQuery));
      }
      checkEqual(ids(await storage.listRuns({ limit: 1 })), ["r1"], "runs after the rejected queries");
    },
  },
  {
    name: "`countRuns()` counts runs per status, every status present, each capped at the cap",
    async run(storage) {
      const none = {
        pending: 0,
        running: 0,
        sleeping: 0,
        waiting: 0,
        parked: 0,
        completed: 0,
        failed: 0,
        cancelled: 0,
      };
      checkEqual(await storage.countRuns(10), none, "counts of an empty storage");
      await finishRuns(storage, [
        ["done1", "completed", T0 + 1],
        ["done2", "completed", T0 + 1],
        ["done3", "completed", T0 + 1],
        ["fail1", "failed", T0 + 1],
      ]);
      for (let i = 0; i < 4; i++) await create(storage, `p${i}`, { createdAt: T0 + 5 });
      await claim(storage, T0 + 5, 1);
      checkEqual(
        await storage.countRuns(100),
        { ...none, pending: 3, running: 1, completed: 3, failed: 1 },
        "counts",
      );
      checkEqual(
        await storage.countRuns(2),
        { ...none, pending: 2, running: 1, completed: 2, failed: 1 },
        "counts capped at 2",
      );
    },
  },
  {
    name: "`countRuns()` rejects a cap that is not a positive integer with a StorageError",
    async run(storage) {
      for (const cap of [0, -1, 1.5, Number.NaN, "5", undefined]) {
        await expectInvalid("countRuns", `cap ${show(cap)}`, () => storage.countRuns(cap as number));
      }
    },
  },
];
