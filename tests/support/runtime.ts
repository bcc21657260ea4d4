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
