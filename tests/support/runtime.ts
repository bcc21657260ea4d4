// Lets tests that spawn subprocesses start "the same runtime" on a TS file.
import process from "node:process";

/** The JavaScript runtime executing the tests. */
export type RuntimeName = "deno" | "node" | "bun";

// Feature checks on globalThis, so this file type-checks under both deno check and tsc.
const g = globalThis as unknown as { Deno?: { execPath(): string }; Bun?: unknown };

/** The runtime running this code. */
export const runtimeName: RuntimeName = g.Deno ? "deno" : g.Bun ? "bun" : "node";

/**
 * The command line that runs `scriptPath` (a TS or JS file) with `args` in the current runtime;
 * `denoFlags` go to `deno run` (e.g. how to resolve npm packages) and are ignored elsewhere.
 */
export function spawnArgs(
  scriptPath: string,
  args: string[],
  denoFlags: string[] = [],
): { command: string; args: string[] } {
  if (g.Deno) return { command: g.Deno.execPath(), args: ["run", "-A", ...denoFlags, scriptPath, ...args] };
  if (g.Bun) return { command: process.execPath, args: ["run", scriptPath, ...args] };
  // Node >= 22.18 strips types by default; the flag silences node:sqlite's warning in children.
  return {
    command: process.execPath,
    args: ["--disable-warning=ExperimentalWarning", scriptPath, ...args],
  };
}

/** A runtime of the test matrix (scripts/test_matrix.ts), by its id. */
export type MatrixRuntime = "node22" | "node24" | "bun" | "deno";

/** The matrix runtimes, in the order the test matrix runs them. */
export const MATRIX_RUNTIMES: readonly MatrixRuntime[] = ["deno", "node22", "node24", "bun"];

/**
 * The command line that runs `scriptPath` with `args` in a matrix runtime, with the pinned binaries
 * under `root`/node_modules (or those on `PATH` when REFLOW_USE_PATH_RUNTIMES=1, as in the matrix).
 */
export function spawnArgsFor(
  runtime: MatrixRuntime,
  root: string,
  scriptPath: string,
  args: string[],
): { command: string; args: string[] } {
  const usePath = process.env.REFLOW_USE_PATH_RUNTIMES === "1";
  const bin = (local: string, name: string) => (usePath ? name : `${root}/${local}`);
  switch (runtime) {
    case "deno":
      return { command: bin("node_modules/.bin/deno", "deno"), args: ["run", "-A", scriptPath, ...args] };
    case "bun":
      return { command: bin("node_modules/.bin/bun", "bun"), args: ["run", scriptPath, ...args] };
    default:
      return {
        command: bin(`node_modules/${runtime}/bin/node`, "node"),
        args: ["--disable-warning=ExperimentalWarning", scriptPath, ...args],
      };
  }
}
