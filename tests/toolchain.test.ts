// Smoke test of the test toolchain itself: runtime detection and spawning a TS child.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { runtimeName, spawnArgs } from "./support/runtime.ts";

// Detected differently from runtime.ts (process.versions, not globalThis), so the check is not circular.
const detect = (v: Record<string, string | undefined>) => v.deno ? "deno" : v.bun ? "bun" : "node";

test(`runtimeName is ${runtimeName} and matches process.versions`, () => {
  assert.equal(runtimeName, detect(process.versions));
});

test("spawnArgs runs a TS script in the same runtime and forwards args", () => {
  const dir = mkdtempSync(join(tmpdir(), "reflow-toolchain-"));
  try {
    const script = join(dir, "child.ts");
    // Type annotations prove the child strips/compiles TS; the child reports its own runtime.
    writeFileSync(
      script,
      [
        `import process from "node:process";`,
        `const v: Record<string, string | undefined> = process.versions;`,
        `const runtime: string = v.deno ? "deno" : v.bun ? "bun" : "node";`,
        `console.log(JSON.stringify({ runtime, answer: 6 * 7, args: process.argv.slice(2) }));`,
      ].join("\n"),
    );
    const { command, args } = spawnArgs(script, ["a b", "--flag"]);
    const out = execFileSync(command, args, { encoding: "utf8", timeout: 30_000 });
    assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1) ?? ""), {
      runtime: runtimeName,
      answer: 42,
      args: ["a b", "--flag"],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
