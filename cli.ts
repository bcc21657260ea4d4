#!/usr/bin/env node
/**
 * The `reflow` command: see and operate runs straight from the store, without the workflows'
 * code. `npx reflow …` and `bunx reflow …` (npm package `reflow-ts`), or
 * `deno run -A jsr:@reflow/core/cli …`. Run `reflow --help` for the commands.
 *
 * This module is the runtime's side of the CLI (arguments, exit status, output, the SQLite file
 * and the HTTP server); the commands themselves are runtime-free, in `src/cli/`. Importing it
 * runs the command line of the current process.
 *
 * @example List the failed runs of an app's database
 * ```sh
 * npx reflow runs --db app.db --status failed
 * ```
 *
 * @module
 */

import { existsSync } from "node:fs";
import process from "node:process";
import { runCli } from "./src/cli/main.ts";
import { serve } from "./adapters/serve.ts";

// Bun's own SQLite is its fast path; Node and Deno share node:sqlite.
const { SQLiteStorage } = "Bun" in globalThis
  ? await import("./drivers/bun_sqlite.ts")
  : await import("./drivers/node_sqlite.ts");

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  isTerminal: process.stderr.isTTY === true,
  // SQLite would create a missing file; the CLI must not, so a typo changes nothing.
  openSqlite: (path) => existsSync(path) ? new SQLiteStorage(path) : null,
  openPostgres: async (url) => {
    // pg is an optional peer: only --postgres needs it.
    const { PostgresStorage } = await import("./drivers/postgres.ts").catch((error: Error) => {
      throw new Error(`--postgres needs the pg package (npm install pg): ${error.message}`);
    });
    return new PostgresStorage(url, { poolSize: 2 });
  },
  serve: async (handler, options) => (await serve(handler, options)).url,
  now: Date.now,
});
