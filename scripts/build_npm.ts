// Builds the npm package "reflow-ts" from the same sources as the JSR package: ESM .js and .d.ts
// emitted by tsc, with one `exports` entry per deno.json export, so the two can never drift.
//
//   node scripts/build_npm.ts [--out dist/npm]        (npm run build:npm)
//
// Runs on Node >= 22.18 (type stripping), Deno (`deno run -A`) and Bun, so a test can build with the
// runtime it runs on. tsc is the native TypeScript 7 binary, started directly rather than through
// node_modules/.bin (a shell script on Unix, a .cmd on Windows, neither of which every runtime can spawn).
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values } = parseArgs({ options: { out: { type: "string", default: "dist/npm" } } });
const out = resolve(root, values.out ?? "dist/npm");

type DenoJson = {
  version: string;
  license: string;
  exports: string | Record<string, string>;
  imports?: Record<string, string>;
};
const deno: DenoJson = JSON.parse(readFileSync(join(root, "deno.json"), "utf8"));
const exports = typeof deno.exports === "string" ? { ".": deno.exports } : deno.exports;

// The optional peers are the npm: imports of deno.json (only better-sqlite3 today), with their ranges.
const peers = Object.fromEntries(
  Object.values(deno.imports ?? {}).flatMap((spec) => {
    const m = /^npm:((?:@[^/]+\/)?[^@/]+)@([^/]+)$/.exec(spec);
    return m ? [[m[1], m[2]]] : [];
  }),
);

/** "./drivers/x.ts" -> "./drivers/x.js" (or ".d.ts"), the names tsc gives its output. */
const emitted = (source: string, ext: ".js" | ".d.ts") => source.replace(/\.ts$/, ext);

function tscBinary(): string {
  // TypeScript 7 ships its compiler as a per-platform package next to "typescript"; this is where
  // typescript/lib/getExePath.js looks as well.
  const require = createRequire(join(root, "package.json"));
  const pkg = `@typescript/typescript-${process.platform}-${process.arch}/package.json`;
  const exe = process.platform === "win32" ? "tsc.exe" : "tsc";
  return join(dirname(require.resolve(pkg)), "lib", exe);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// Options given on the command line so the checking tsconfig.json (noEmit, tests, scripts) stays as it
// is; the entry points pull in everything under src/ they import, and nothing else.
const tscArgs = [
  "--ignoreConfig",
  ...["--outDir", out, "--rootDir", root],
  ...["--target", "ES2022", "--lib", "ES2023,DOM", "--module", "NodeNext", "--moduleResolution", "NodeNext"],
  // The sources import "./x.ts" (as Deno needs); the emitted .js and .d.ts must say "./x.js".
  "--rewriteRelativeImportExtensions",
  ...["--erasableSyntaxOnly", "--verbatimModuleSyntax", "--strict", "--skipLibCheck"],
  ...["--types", "node,bun", "--declaration", "--newLine", "lf", "--noEmitOnError"],
  ...Object.values(exports).map((source) => join(root, source)),
];
const tsc = spawnSync(tscBinary(), tscArgs, { stdio: "inherit" });
if (tsc.status !== 0) {
  console.error(`build_npm: tsc failed (${tsc.error?.message ?? `exit code ${tsc.status}`})`);
  process.exit(1);
}

const packageJson = {
  name: "reflow-ts",
  version: deno.version,
  description:
    "Durable workflows for TypeScript that run inside your own process, on Node.js, Bun and Deno, with an embedded SQLite store",
  keywords: ["workflow", "durable", "durable-execution", "sqlite", "queue", "jobs", "typescript"],
  license: deno.license,
  type: "module",
  // Each subpath resolves to its own file, so a driver's runtime module (bun:sqlite, node:sqlite,
  // better-sqlite3) is loaded only by an import of that driver's subpath.
  exports: Object.fromEntries(
    Object.entries(exports).map(([subpath, source]) => [
      subpath,
      { types: emitted(source, ".d.ts"), default: emitted(source, ".js") },
    ]),
  ),
  // `npx reflow …` / `bunx reflow …`: the ./cli entry (its #! line runs it with node).
  bin: { reflow: emitted(exports["./cli"] ?? "./cli.ts", ".js") },
  // For TypeScript's legacy `moduleResolution: "node"` (node10), which ignores `exports`: the root
  // through main/types, the subpaths through typesVersions (arethetypeswrong found them unresolvable).
  main: emitted(exports["."], ".js"),
  types: emitted(exports["."], ".d.ts"),
  typesVersions: {
    "*": Object.fromEntries(
      Object.entries(exports).filter(([subpath]) => subpath !== ".").map((
        [subpath, source],
      ) => [subpath.slice(2), [emitted(source, ".d.ts")]]),
    ),
  },
  // Modules only declare things at the top level (checked: constants, no global patching).
  sideEffects: false,
  // node:sqlite works without a flag from Node 22.13. better-sqlite3 13 needs 22.14 (Node-API 10), but
  // it is an optional peer that states its own needs, so it does not raise the floor for everyone.
  engines: { node: ">=22.13.0" },
  peerDependencies: peers,
  peerDependenciesMeta: Object.fromEntries(Object.keys(peers).map((name) => [name, { optional: true }])),
};
writeFileSync(join(out, "package.json"), JSON.stringify(packageJson, null, 2) + "\n");
for (const file of ["README.md", "LICENSE"]) copyFileSync(join(root, file), join(out, file));

console.log(`built ${packageJson.name}@${packageJson.version} in ${out}`);
