// A user's program, run by tests/npm_package.test.ts inside a fresh project that installed the reflow-ts
// tarball: plain JavaScript importing the package by name, so only the package's exports map, its
// emitted .js and the runtime's own resolution are exercised (no source, no TS stripping).
//
//   <runtime> npm_consumer.mjs <subpath to load>... -- <subpath that must fail to load>...
//
// Imports every subpath it is told loads here, runs a two-step workflow on each SQLite driver among
// them (a file in the current directory), and prints a JSON report as its last line.
import { createRequire } from "node:module";
import process from "node:process";

const argv = process.argv.slice(2);
const split = argv.indexOf("--");
const loadable = split < 0 ? argv : argv.slice(0, split);
const unloadable = split < 0 ? [] : argv.slice(split + 1);
const specifier = (subpath) => subpath === "." ? "reflow-ts" : `reflow-ts/${subpath.slice(2)}`;

const modules = {};
for (const subpath of loadable) modules[subpath] = await import(specifier(subpath));

// The others must fail, and only because of their own runtime module: "." loading above already
// shows that no driver is pulled in by the core.
const rejected = {};
for (const subpath of unloadable) {
  rejected[subpath] = await import(specifier(subpath)).then(
    () => "loaded",
    (error) => String(error?.message ?? error).split("\n")[0],
  );
}

const { createEngine, createWorkflow, ValidationError } = modules["."];
/** A hand-written Standard Schema: the consumer has no schema library installed. */
const numberInput = {
  "~standard": {
    version: 1,
    vendor: "smoke",
    validate: (value) =>
      typeof value?.n === "number" ? { value } : { issues: [{ message: "n must be a number", path: ["n"] }] },
  },
};
const smoke = createWorkflow({ name: "smoke", input: numberInput })
  .step("double", ({ input }) => input.n * 2)
  .step("describe", ({ prev, steps }) => ({ doubled: prev, again: steps.double }));

// A tiny workflow on every SQLite storage this runtime loaded, each in its own file.
const runs = {};
for (const [subpath, mod] of Object.entries(modules)) {
  if (!subpath.startsWith("./sqlite-")) continue;
  const storage = new mod.SQLiteStorage(`${subpath.slice(2)}.db`);
  const engine = createEngine({ storage, workflows: [smoke] });
  try {
    const invalid = await engine.enqueue("smoke", { n: "x" }).catch((e) => e);
    const { runId } = await engine.enqueue("smoke", { n: 21 });
    while (await engine.tick() > 0);
    const details = await engine.getRunStatus(runId);
    runs[subpath] = {
      status: details?.run.status,
      output: details?.run.output,
      rejectsBadInput: invalid instanceof ValidationError && invalid.issues[0]?.path?.[0] === "n",
    };
  } finally {
    await engine.stop();
    await storage.close();
  }
}

let testEngineOutput;
if (modules["./test"]) {
  const te = modules["./test"].testEngine({ workflows: [smoke] });
  try {
    testEngineOutput = (await te.run("smoke", { n: 2 })).output;
  } finally {
    await te[Symbol.asyncDispose]();
  }
}

// Node >= 22.12 can require() an ES module graph without top-level await: CommonJS users get the package too.
const required = process.versions.bun || process.versions.deno
  ? undefined
  : typeof createRequire(import.meta.url)("reflow-ts").createEngine === "function";

console.log(JSON.stringify({
  imported: Object.keys(modules),
  rejected,
  runs,
  testEngineOutput,
  conformanceCases: modules["./conformance"]?.conformanceCases.length,
  required,
}));
