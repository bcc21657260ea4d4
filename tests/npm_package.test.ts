// The npm package as a user gets it, on the runtime running this test (so the matrix covers Deno,
// Node 22, Node 24 and Bun, and a CI leg covers the runtime it set up): scripts/build_npm.ts builds
// it, `npm pack` packs it, `npm install <tarball>` puts it into an empty project, and
// support/npm_consumer.mjs imports it there by name and runs a workflow on each SQLite driver.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtimeName, spawnArgs } from "./support/runtime.ts";
import { hasNodeSqlite, napi } from "./support/sqlite_subjects.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const denoExports: Record<string, string> = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")).exports;
const subpaths = Object.keys(denoExports);

// Which subpath loads on this runtime, from what its runtime module needs (the README's driver table).
// A new subpath must be added here, so that where it loads is decided rather than assumed.
const loadsHere: Record<string, boolean> = {
  ".": true,
  "./test": true,
  "./conformance": true,
  // better-sqlite3 13 is a Node-API 10 addon: Node >= 22.14, Bun, and Deno through npm.
  "./sqlite-node": napi >= 10,
  // node:sqlite: Node >= 22.13 without a flag, Bun, and Deno (whose SQLite it is).
  "./sqlite-node-builtin": hasNodeSqlite,
  "./sqlite-deno": hasNodeSqlite,
  // bun:sqlite exists only in Bun; elsewhere importing the subpath must fail, and only it.
  "./sqlite-bun": runtimeName === "bun",
  "./dashboard": true,
  // node:http, which Deno and Bun provide too.
  "./dashboard/node": true,
  // An executable: importing it runs the command line, so it is run as the package's bin instead.
  "./cli": true,
  // pg is plain JavaScript over node:net: every runtime.
  "./postgres": true,
};
const imported = (subpath: string) => subpath !== "./cli";
const loadable = subpaths.filter((s) => loadsHere[s] && imported(s));
const unloadable = subpaths.filter((s) => loadsHere[s] === false);

const work = mkdtempSync(join(tmpdir(), "reflow-npm-"));
const packageDir = join(work, "package");
const appDir = join(work, "app");
const timeout = 120_000;

// npm is a .cmd on Windows, which only a shell starts.
const npm = (args: string[], cwd: string): string =>
  execFileSync("npm", args, { cwd, encoding: "utf8", timeout, shell: process.platform === "win32" });

// Built once per file with the runtime under test: the build script must work wherever a user's CI runs it.
let built: Record<string, unknown> | undefined;
function build(): Record<string, unknown> {
  if (built) return built;
  const { command, args } = spawnArgs(join(root, "scripts/build_npm.ts"), ["--out", packageDir]);
  execFileSync(command, args, { cwd: root, stdio: ["ignore", "pipe", "inherit"], timeout });
  return built = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
}

describe(`npm package reflow-ts on ${runtimeName}`, () => {
  after(() => rmSync(work, { recursive: true, force: true }));

  test("package.json exports the subpaths of deno.json, each with types and default", () => {
    const pkg = build();
    const exports = pkg.exports as Record<string, { types: string; default: string }>;
    assert.deepEqual(Object.keys(exports).sort(), [...subpaths].sort());
    for (const [subpath, source] of Object.entries(denoExports)) {
      assert.deepEqual(exports[subpath], {
        types: source.replace(/\.ts$/, ".d.ts"),
        default: source.replace(/\.ts$/, ".js"),
      });
    }
    const deno = JSON.parse(readFileSync(join(root, "deno.json"), "utf8"));
    assert.equal(pkg.version, deno.version);
    assert.deepEqual(pkg.peerDependenciesMeta, {
      "better-sqlite3": { optional: true },
      pg: { optional: true },
    });
    assert.deepEqual(pkg.bin, { reflow: "./cli.js" });
    assert.deepEqual(Object.keys(loadsHere).sort(), [...subpaths].sort(), "every subpath is in loadsHere");
  });

  test(
    `the packed tarball installs into an empty project and loads ${loadable.join(" ")} (not ${
      unloadable.join(" ") || "-"
    })`,
    () => {
      build();
      const [packed] = JSON.parse(npm(["pack", "--json", "--pack-destination", work], packageDir)) as {
        filename: string;
        files: { path: string }[];
      }[];
      const files = packed.files.map((f) => f.path);
      for (const file of ["package.json", "README.md", "LICENSE", "mod.js", "mod.d.ts"]) {
        assert.ok(files.includes(file), `${file} is in the tarball`);
      }
      assert.deepEqual(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts")), [], "no TS sources");

      mkdirSync(appDir);
      writeFileSync(
        join(appDir, "package.json"),
        JSON.stringify({ name: "app", private: true, type: "module" }),
      );
      // The tarball has no dependencies, so this needs no network.
      npm(["install", "--no-audit", "--no-fund", "--prefer-offline", join(work, packed.filename)], appDir);
      // better-sqlite3 and pg are optional peers, so npm leaves them out; link the repository's copy rather than
      // download (and on some platforms build) it again. A junction needs no privileges on Windows.
      for (const peer of ["better-sqlite3", "pg"]) {
        symlinkSync(join(root, "node_modules", peer), join(appDir, "node_modules", peer), "junction");
      }
      copyFileSync(join(root, "tests/support/npm_consumer.mjs"), join(appDir, "consumer.mjs"));

      // Deno resolves "reflow-ts" from the project's node_modules, as a Deno user with package.json would.
      const { command, args } = spawnArgs("consumer.mjs", [...loadable, "--", ...unloadable], [
        "--node-modules-dir=manual",
      ]);
      const out = execFileSync(command, args, { cwd: appDir, encoding: "utf8", timeout });
      const report = JSON.parse(out.trim().split("\n").at(-1) ?? "");

      assert.deepEqual(report.imported, loadable);
      for (const subpath of unloadable) assert.notEqual(report.rejected[subpath], "loaded", subpath);
      // On Node and Deno the bun: scheme itself is what fails, not something the subpath shares.
      if (unloadable.includes("./sqlite-bun")) assert.match(report.rejected["./sqlite-bun"], /\bbun\b/);
      const storages = loadable.filter((s) => s.startsWith("./sqlite-"));
      assert.ok(storages.length > 0, "at least one SQLite driver loads here");
      for (const subpath of storages) {
        assert.deepEqual(report.runs[subpath], {
          status: "completed",
          output: { doubled: 42, again: 42 },
          rejectsBadInput: true,
        }, subpath);
      }
      assert.deepEqual(report.testEngineOutput, { doubled: 4, again: 4 });
      assert.ok(report.conformanceCases > 0);
      if (runtimeName === "node") assert.equal(report.required, true, "require(esm) of reflow-ts");

      // The bin, on the database the consumer left behind (npm links it as node_modules/.bin/reflow).
      assert.ok(existsSync(join(appDir, "node_modules/.bin/reflow")), "npm linked the reflow bin");
      const cli = (...args: string[]) => {
        const run = spawnArgs(join(appDir, "node_modules/reflow-ts/cli.js"), args);
        return execFileSync(run.command, run.args, { cwd: appDir, encoding: "utf8", timeout });
      };
      assert.match(cli("--help"), /^Usage: reflow <command>/m);
      const listed = JSON.parse(cli("runs", "--db", "sqlite-node-builtin.db", "--json"));
      assert.deepEqual(
        listed.runs.map((run: { workflow: string; status: string }) => [run.workflow, run.status]),
        [
          ["smoke", "completed"],
        ],
      );
    },
  );
});
