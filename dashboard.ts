/**
 * The web dashboard: {@linkcode createDashboard} returns a Web-standard
 * `(request: Request) => Promise<Response>` handler that shows runs, a run's timeline and
 * schedules, and cancels or resumes runs, reading the same store as the engines. Mount it under
 * a path of your own server, behind your own access control (`Deno.serve`, `Bun.serve`, Hono;
 * `node:http` and Express through `./dashboard/node`).
 *
 * @example Mount it in a Hono app behind your auth middleware
 * ```ts ignore
 * import { Hono } from "hono";
 * import { createDashboard } from "@reflow/core/dashboard";
 *
 * const dashboard = createDashboard({ storage, basePath: "/reflow" });
 * const app = new Hono();
 * app.use("/reflow/*", requireAdmin);
 * app.all("/reflow/*", (c) => dashboard(c.req.raw));
 * ```
 *
 * @module
 */

export { createDashboard } from "./src/dashboard/dashboard.ts";
export type { DashboardHandler, DashboardOptions } from "./src/dashboard/dashboard.ts";
export { requireToken } from "./src/dashboard/token.ts";
