// Static checks and the doc examples, stopping at the first failure. The entry points are read from
// deno.json "exports", so a new subpath is checked and doc-linted without touching this file. Ends by building the npm
// package into dist/npm and linting it as published (publint, arethetypeswrong).
// REFLOW_USE_PATH_RUNTIMES=1 uses deno/tsc from PATH instead of node_modules (as in test_matrix.ts).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);
// "node" is the Node running this script, so the build needs no node on PATH.
const bin = (name: string) =>
  name === "node"
    ? process.execPath
    : process.env.REFLOW_USE_PATH_RUNTIMES === "1"
    ? name
    : join(root, "node_modules/.bin", name);

const exports: string | Record<string, string> = JSON.parse(readFileSync("deno.json", "utf8")).exports ?? {};
const entries = typeof exports === "string" ? [exports] : Object.values(exports);
const dirs = ["tests/", "scripts/", "examples/"].filter((d) => existsSync(d));

// Doc examples import the package by name ("@reflow/core"), which deno.json's name and exports
// resolve to this checkout, so the shipped examples are the ones checked. The driver entry points'
// examples are type-checked only: running them needs their own runtime (bun:sqlite, ...).
const docFiles = [...entries.filter((entry) => !entry.startsWith("./drivers/")), "src/"];
const docPermissions = ["--allow-env", "--allow-read", "--allow-write", "--allow-ffi", "--allow-sys"];

const steps: string[][] = [
  ["deno", "check", ...entries, ...dirs],
  ["deno", "check", "--doc", ...entries, "src/"],
  ["deno", "test", "--doc", "-q", ...docPermissions, ...docFiles],
  ["deno", "lint"],
  ["deno", "fmt", "--check"],
  // Together in one call: linted alone, an entry point fails with private-type-ref to shared types.
  ["deno", "doc", "-q", "--lint", ...entries],
  ["tsc", "-p", "tsconfig.json"],
  ["deno", "publish", "--dry-run", "--allow-dirty"],
  ["node", "scripts/build_npm.ts", "--out", "dist/npm"],
  ["publint", "--strict", "dist/npm"],
  // ESM only: CommonJS callers use import(), or require() on Node >= 22.12 (the smoke test does).
  ["attw", "--pack", "dist/npm", "--ignore-rules", "cjs-resolves-to-esm"],
];

for (const [cmd, ...args] of steps) {
  const line = [cmd, ...args].join(" ");
  console.log(`--- ${line}`);
  const { status, error } = spawnSync(bin(cmd), args, { stdio: "inherit" });
  if (status !== 0) {
    console.error(`\ncheck failed at: ${line} (${error?.message ?? `exit code ${status ?? "signal"}`})`);
    process.exit(status || 1);
  }
}
console.log("all checks passed");
