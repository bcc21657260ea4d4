// The chaos script (scripts/chaos.ts) in short mode: 3 worker processes, 300 runs of the mixed workload,
// 10 SIGKILLs with restarts; it must report nothing lost, stuck, committed twice or wrong, an intact
// store, and its 3 crash-looping runs failed. Once on one SQLite file, once on a PostgreSQL server of
// its own (so that it can restart it and, as root, cut a worker off in a network namespace; ~25 s).
// It takes most of two cores, so it runs on one cell of the matrix only (Node 22); `npm run chaos --
// --runtime …` covers the other runtimes and drivers at full size.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { postgresSkipReason } from "./support/postgres_server.ts";
import { runtimeName } from "./support/runtime.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHAOS = fileURLToPath(new URL("../scripts/chaos.ts", import.meta.url));
const skip = runtimeName === "node" && process.versions.node.startsWith("22.")
  ? false
  : "runs on Node 22 only, to keep the matrix short";

/** Runs `chaos.ts --short --seed 7 <args>`; resolves with its exit code and output. */
async function chaos(args: string[], env: Record<string, string | undefined>, timeoutMs: number) {
  const child = spawn(
    process.execPath,
    ["--disable-warning=ExperimentalWarning", CHAOS, "--short", "--seed", "7", ...args],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (output += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (output += s));
  // SIGTERM first: the script then removes its server, namespace and files.
  const timers = [
    setTimeout(() => child.kill("SIGTERM"), timeoutMs),
    setTimeout(() => child.kill("SIGKILL"), timeoutMs + 15_000),
  ];
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  for (const timer of timers) clearTimeout(timer);
  return { code, output };
}

const CLEAN = "lost 0, stuck 0, double commits 0, deployed [1-9]\\d*, parked \\d+ \\(VERSION_MISMATCH\\), " +
  "wrong outputs 0, duplicate side effects \\d+ \\(.*\\), integrity ok, crash loops failed 3\\/3 ";

test(
  "chaos --short: workers killed at random lose, repeat or corrupt nothing beyond the at-least-once window",
  { skip },
  async () => {
    const { code, output } = await chaos([], process.env, 60_000);
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`^chaos: runs 300, kills 10, ${CLEAN}`, "m"));
  },
);

test(
  "chaos --short --store postgres: kills, terminated sessions, a server restart and a cut-off host lose nothing",
  { skip: skip || postgresSkipReason() },
  async () => {
    // Without the matrix's shared server, so that the script starts (and may restart) its own.
    const { REFLOW_POSTGRES_URL: _, ...env } = process.env;
    const { code, output } = await chaos(["--store", "postgres"], env, 240_000);
    assert.equal(code, 0, output);
    assert.match(
      output,
      new RegExp(`^chaos: runs 300, kills 10, terminations \\d+, restarts 1, .*${CLEAN}`, "m"),
    );
  },
);
