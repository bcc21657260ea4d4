/**
 * `createDashboard()`: the web dashboard as a Web-standard request handler that the app mounts
 * under a path of its own server, behind its own access control.
 *
 * @module
 */

import { ConfigError, ReflowError } from "../errors.ts";
import { checkOptionKeys, type OptionKeys } from "../option_keys.ts";
import type { RunStatus, StorageAdapter } from "../storage/adapter.ts";
import {
  cancelStoredRun,
  parseCursor,
  readRun,
  readRunCounts,
  readRunPage,
  readSchedules,
  resumeStoredRun,
} from "../operate/store_actions.ts";
import { escapeHtml, type Html } from "./html.ts";
import { randomHex, sameText } from "./secret.ts";
import { layout, messagePage, type PageContext, runPage, runsPage, schedulesPage } from "./pages.ts";

/** Options of {@linkcode createDashboard}. */
export interface DashboardOptions {
  /** The store the engines use. The dashboard reads it, and writes only for cancel and resume. */
  readonly storage: StorageAdapter;
  /** Where the handler is mounted, e.g. `"/reflow"`. Default `""` (the root). */
  readonly basePath?: string;
  /** Hide the cancel and resume buttons and refuse their requests (403). Default false. */
  readonly readOnly?: boolean;
  /**
   * The secret that forms carry against cross-site request forgery. Default: random per handler,
   * so give the same one to every instance when several app processes serve the dashboard behind one
   * load balancer.
   */
  readonly csrfSecret?: string;
  /** The clock, for tests. Default `Date.now`. */
  readonly now?: () => number;
}

const DASHBOARD_OPTION_KEYS: OptionKeys<DashboardOptions> = {
  storage: true,
  basePath: true,
  readOnly: true,
  csrfSecret: true,
  now: true,
};

/** A Web-standard request handler. */
export type DashboardHandler = (request: Request) => Promise<Response>;

const PAGE_SIZE = 50;

/**
 * Creates the dashboard: pages for runs (filters by status and workflow, counts per status, paging,
 * live refresh), a run (its units' timeline, error, version, input, output and the events sent to
 * it that no wait has received yet) and schedules, and the cancel and resume actions as POSTs guarded against cross-site requests (a per-handler token in
 * each form, and the `Origin` must be the request's own host). Responses carry a strict
 * Content-Security-Policy; every value from a run is escaped. The handler answers 404 for paths
 * outside `basePath`, so it can sit behind other routes.
 *
 * @param options The store, mount path and whether actions are allowed.
 * @returns The handler.
 * @throws {ConfigError} If `storage` is missing, `basePath` does not start with `/`, or an option is unknown.
 *
 * @example Mount under /reflow with Deno.serve
 * ```ts ignore
 * import { createDashboard } from "@reflow/core/dashboard";
 * import { SQLiteStorage } from "@reflow/core/sqlite-deno";
 *
 * const dashboard = createDashboard({ storage: new SQLiteStorage("app.db"), basePath: "/reflow" });
 * Deno.serve((request) =>
 *   new URL(request.url).pathname.startsWith("/reflow") ? dashboard(request) : new Response("app")
 * );
 * ```
 */
export function createDashboard(options: DashboardOptions): DashboardHandler {
  checkOptionKeys(options, DASHBOARD_OPTION_KEYS, undefined, "dashboard options");
  if (typeof options?.storage?.listRuns !== "function") {
    throw new ConfigError("createDashboard needs { storage }: the StorageAdapter your engines use", {
      field: "storage",
    });
  }
  const base = (options.basePath ?? "").replace(/\/+$/, "");
  if (base !== "" && !base.startsWith("/")) {
    throw new ConfigError(
      `Invalid basePath ${JSON.stringify(options.basePath)}: expected a path like "/reflow"`,
      {
        field: "basePath",
      },
    );
  }
  const { storage, readOnly = false, now = Date.now } = options;
  const csrf = readOnly ? null : options.csrfSecret ?? randomHex();

  return async (request) => {
    const url = new URL(request.url);
    if (url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return text(404, "Not found");
    const path = url.pathname.slice(base.length) || "/";
    const live = request.headers.get("x-reflow-live") === "1";
    const c: PageContext = { base, now: now(), nonce: randomHex(), csrf, live };
    try {
      const runMatch = /^\/runs\/([^/]+)(?:\/(cancel|resume))?$/.exec(path);
      if (request.method === "POST") {
        if (runMatch?.[2] === undefined) return text(404, "Not found");
        return await act(request, url, c, decodeURIComponent(runMatch[1]!), runMatch[2]);
      }
      if (request.method !== "GET" && request.method !== "HEAD") return text(405, "Method not allowed");
      if (path === "/") return page(c, "Runs", "runs", await runs(url, c));
      if (path === "/schedules") return page(c, "Schedules", "schedules", await schedules(c));
      if (runMatch !== null && runMatch[2] === undefined) {
        const runId = decodeURIComponent(runMatch[1]!);
        const details = await readRun(storage, runId);
        if (details === null) {
          return page(c, "Not found", "runs", messagePage("Not found", `No run "${runId}".`), 404);
        }
        return page(c, `Run ${runId}`, "runs", runPage(c, details, url.searchParams.get("notice")));
      }
      return page(c, "Not found", "runs", messagePage("Not found", `Nothing at ${path}.`), 404);
    } catch (error) {
      const bad = error instanceof ConfigError || error instanceof URIError;
      const message = error instanceof ReflowError || error instanceof Error ? error.message : String(error);
      const title = bad ? "Bad request" : "The store failed";
      return page(c, title, "runs", messagePage(title, message), bad ? 400 : 500);
    }
  };

  async function runs(url: URL, c: PageContext): Promise<Html> {
    const param = (name: string) => url.searchParams.get(name) || undefined;
    const filters = { status: param("status"), workflow: param("workflow"), before: param("before") };
    const [counts, list] = await Promise.all([
      readRunCounts(storage),
      readRunPage(storage, {
        status: filters.status as RunStatus | undefined,
        workflow: filters.workflow,
        limit: PAGE_SIZE,
        ...(filters.before === undefined ? {} : parseCursor(filters.before)),
      }),
    ]);
    return runsPage(c, filters, counts, list);
  }

  async function schedules(c: PageContext): Promise<Html> {
    return schedulesPage(c, await readSchedules(storage));
  }

  async function act(
    request: Request,
    url: URL,
    c: PageContext,
    runId: string,
    name: string,
  ): Promise<Response> {
    if (csrf === null) return text(403, "This dashboard is read-only");
    const origin = request.headers.get("origin");
    const site = request.headers.get("sec-fetch-site");
    const form = await request.formData().catch(() => null);
    const token = form?.get("csrf");
    if (
      (origin !== null && origin !== "null" && new URL(origin).host !== url.host) ||
      site === "cross-site" || origin === "null" || typeof token !== "string" || !sameText(token, csrf)
    ) {
      return text(403, "Refused: the request did not come from this dashboard's own page (CSRF check)");
    }
    const result = name === "cancel"
      ? await cancelStoredRun(storage, runId)
      : await resumeStoredRun(storage, runId, now());
    if (result.outcome === "notFound") {
      return page(c, "Not found", "runs", messagePage("Not found", `No run "${runId}".`), 404);
    }
    if (result.outcome === "refused") {
      const message = `Cannot ${name} run "${runId}": it is ${result.status}.`;
      return page(c, "Refused", "runs", messagePage("Refused", message), 409);
    }
    const notice = name === "cancel" ? "Cancelled." : "Re-queued: an engine with this workflow will run it.";
    const location = `${c.base}/runs/${encodeURIComponent(runId)}?notice=${encodeURIComponent(notice)}`;
    return new Response(null, { status: 303, headers: { location, ...SECURITY_HEADERS } });
  }
}

const SECURITY_HEADERS: Record<string, string> = {
  "x-content-type-options": "nosniff",
  // Not no-referrer: under it Chromium sends `Origin: null` with the forms' POSTs, which the CSRF check refuses.
  "referrer-policy": "same-origin",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

function page(c: PageContext, title: string, tab: "runs" | "schedules", body: Html, status = 200): Response {
  const csp = `default-src 'none'; script-src 'nonce-${c.nonce}'; style-src 'nonce-${c.nonce}'; ` +
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
  return new Response(layout(c, title, tab, body).text, {
    status,
    headers: {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": csp,
      ...SECURITY_HEADERS,
    },
  });
}

function text(status: number, message: string): Response {
  return new Response(`${escapeHtml(message)}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS },
  });
}
