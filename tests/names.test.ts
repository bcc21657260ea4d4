// Strange text on every storage: values (inputs, outputs, payloads) hold anything a JS string can,
// lone surrogates and NUL included, and come back exactly; names and keys are well-formed Unicode
// without NUL (astral characters, U+FFFD and the like included), stored exactly and kept apart,
// and a storage refuses a malformed one with a StorageError instead of storing it altered.
import assert from "node:assert/strict";
import { createEngine, createWorkflow, type StorageAdapter, StorageError } from "../mod.ts";
import { describeEachStorage } from "./support/storages.ts";
import { schema } from "./support/fixtures.ts";

const LONE_HIGH = "😀".slice(0, 1);
const LONE_LOW = "😀".slice(1);
/** Every kind of text SQLite or a driver could alter, inside a value: as strings and as keys. */
const ODD_TEXT = [`a${LONE_HIGH}`, `${LONE_LOW}b`, "nul\u0000inside", "\u0000", "\uFFFD", "😀", "\u2028"];
const oddValue = () => ({
  strings: ODD_TEXT,
  keyed: Object.fromEntries(ODD_TEXT.map((text, i) => [text, i])),
  nested: [{ [LONE_HIGH]: LONE_LOW, "\u0000": ["\u0000\u0000"] }],
});

/** Names that are odd but well-formed: stored exactly, and never equal to one another. */
const ODD_NAMES = ["emoji😀", "emoji😎", "replacement\uFFFD", "astral\u{10FFFF}", "sep\u2028", "zwj\u200D"];

const anything = schema<unknown>();
const echo = createWorkflow({ name: "echo😀", input: anything })
  .step("first😀", ({ input }) => input)
  .waitForEvent("go\uFFFD")
  .step("last\u{10FFFF}", ({ prev, steps }) => ({ payload: prev, first: steps["first😀"] }));

/** A run id no other run has, for storage-level calls. */
let ids = 0;
const newRun = (idempotencyKey: string | null) => ({
  id: `names-${++ids}`,
  workflowName: "echo😀",
  input: "{}",
  idempotencyKey,
  createdAt: 1_700_000_000_000,
});

function isInvalid(operation: string, field: string): (error: unknown) => boolean {
  return (error) =>
    error instanceof StorageError && error.kind === "other" && error.operation === operation &&
    error.message.includes(field) && /code unit 0x[0-9A-F]{4} at index \d+/.test(error.message);
}

describeEachStorage(({ it, open, openPeer }) => {
  it("inputs, outputs and event payloads with lone surrogates and NUL round-trip exactly", async () => {
    const storage = await open();
    const engine = createEngine({ storage, workflows: [echo] });
    const { runId } = await engine.enqueue("echo😀", oddValue());
    await engine.tick();
    assert.equal(await engine.sendEvent(runId, "go\uFFFD", oddValue()), true);
    await engine.tick();
    const details = await engine.getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.deepEqual(details.run.input, oddValue());
    assert.deepEqual(details.run.output, { payload: oddValue(), first: oddValue() });
    assert.deepEqual(details.steps.map((step) => step.name), ["first😀", "go\uFFFD", "last\u{10FFFF}"]);
    await engine.stop();
  });

  it("odd but well-formed names and keys are stored exactly and kept apart", async () => {
    const storage = await open();
    const engine = createEngine({ storage, workflows: [echo] });
    const runs = [];
    for (const key of ODD_NAMES) runs.push(await engine.enqueue("echo😀", { key }, { idempotencyKey: key }));
    assert.equal(new Set(runs.map((run) => run.runId)).size, ODD_NAMES.length);
    for (const [i, key] of ODD_NAMES.entries()) {
      const again = await engine.enqueue("echo😀", { key }, { idempotencyKey: key });
      assert.deepEqual([again.runId, again.created], [runs[i]!.runId, false]);
      assert.equal((await engine.getRunStatus(again.runId))?.run.idempotencyKey, key);
    }
    for (const key of ODD_NAMES) await engine.schedule("echo😀", { key }, { every: "365d" }, { key });
    assert.deepEqual((await engine.listSchedules()).map((s) => s.key).sort(), [...ODD_NAMES].sort());
    assert.equal(await engine.unschedule("emoji😀"), true);
    assert.equal(await engine.unschedule("emoji😀"), false);
    assert.equal((await engine.listRuns({ workflow: "echo😀" })).length, ODD_NAMES.length);
    await engine.stop();
  });

  it("a finished step with an astral name is not run again by the next engine", async () => {
    let calls = 0;
    const counted = createWorkflow({ name: "counted😀", input: anything })
      .step("once\u{1F600}", () => ++calls)
      .waitForEvent("go😎")
      .step("after", ({ steps }) => steps["once\u{1F600}"]);
    const first = createEngine({ storage: await open(), workflows: [counted] });
    const { runId } = await first.enqueue("counted😀", {});
    await first.tick();
    await first.stop();
    const second = createEngine({ storage: await openPeer(), workflows: [counted] });
    assert.equal(await second.sendEvent(runId, "go😎", null), true);
    await second.tick();
    const details = await second.getRunStatus(runId);
    assert.equal(details?.run.status, "completed");
    assert.equal(details.run.output, 1);
    assert.equal(calls, 1);
    await second.stop();
  });

  it("a storage refuses malformed names and keys with a StorageError naming the code unit", async () => {
    const storage: StorageAdapter = await open();
    await assert.rejects(
      storage.createRun(newRun(`order:${LONE_HIGH}`)),
      isInvalid("createRun", "idempotencyKey"),
    );
    await assert.rejects(
      storage.createRun({ ...newRun(null), workflowName: "a\u0000b" }),
      isInvalid("createRun", "workflowName"),
    );
    const { run } = await storage.createRun(newRun(null));
    await assert.rejects(
      storage.saveStepResult({
        runId: run.id,
        stepName: `step${LONE_LOW}`,
        status: "completed",
        output: "1",
        error: null,
        attempts: 1,
        dueAt: null,
        updatedAt: 1_700_000_000_000,
      }),
      isInvalid("saveStepResult", "stepName"),
    );
    await assert.rejects(
      storage.deliverEvent(run.id, { name: "go\u0000", payload: "1", createdAt: 1_700_000_000_000 }),
      isInvalid("deliverEvent", "event name"),
    );
    await assert.rejects(
      storage.upsertSchedule({
        key: "nightly\u0000",
        workflowName: "echo😀",
        input: "{}",
        recurrence: '{"every":1000}',
        nextRunAt: 1_700_000_001_000,
        now: 1_700_000_000_000,
      }),
      isInvalid("upsertSchedule", "key"),
    );
    await assert.rejects(storage.deleteSchedule(`k${LONE_HIGH}`), isInvalid("deleteSchedule", "key"));
    await assert.rejects(
      storage.listRuns({ limit: 10, workflowName: `echo${LONE_HIGH}` }),
      isInvalid("listRuns", "workflowName"),
    );
    // Nothing of the refused calls was stored.
    assert.deepEqual((await storage.listRuns({ limit: 10 })).map((r) => r.id), [run.id]);
    assert.deepEqual(await storage.getStepResults(run.id), []);
    assert.deepEqual(await storage.listSchedules(), []);
  });
});
