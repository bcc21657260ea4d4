/**
 * The dashboard (or any Web-standard handler) on `node:http`: {@linkcode toNodeListener} turns a
 * `(request: Request) => Promise<Response>` into a `node:http` request listener, for Node's own
 * server and for Express, whose apps take the same listener.
 *
 * @example Mount the dashboard under /reflow in an Express app (npm: `reflow-ts/dashboard/node`)
 * ```ts ignore
 * import express from "express";
 * import { createDashboard } from "reflow-ts/dashboard";
 * import { toNodeListener } from "reflow-ts/dashboard/node";
 *
 * const app = express();
 * app.use("/reflow", requireAdmin, toNodeListener(createDashboard({ storage, basePath: "/reflow" })));
 * ```
 *
 * @module
 */

import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import { Readable } from "node:stream";

/** A Web-standard request handler. */
export type FetchHandler = (request: Request) => Promise<Response>;

/**
 * Adapts a Web-standard handler to `node:http`. The request URL is rebuilt from the `Host` header
 * and the original URL (`originalUrl` under Express, so a mounted handler sees its full path).
 *
 * @param handler The handler, e.g. from `createDashboard()`.
 * @returns A listener for `http.createServer()` or `app.use()`.
 *
 * @example Serve the dashboard with node:http
 * ```ts ignore
 * import { createServer } from "node:http";
 * createServer(toNodeListener(createDashboard({ storage }))).listen(8787, "127.0.0.1");
 * ```
 */
export function toNodeListener(handler: FetchHandler): RequestListener {
  return (req, res) => {
    handle(handler, req, res).catch((error) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end(`Internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    });
  };
}

async function handle(handler: FetchHandler, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const url = new URL(path, `http://${req.headers.host ?? "localhost"}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(", ") : value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? (Readable.toWeb(req) as unknown as ReadableStream<Uint8Array>) : undefined,
    ...(hasBody ? { duplex: "half" } : {}),
  } as RequestInit);
  const response = await handler(request);
  const outgoing: Record<string, string | string[]> = Object.fromEntries(response.headers);
  // Several cookies stay several headers (iterating Headers would keep only the last one here).
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) outgoing["set-cookie"] = cookies;
  res.writeHead(response.status, outgoing);
  res.end(req.method === "HEAD" ? undefined : new Uint8Array(await response.arrayBuffer()));
}

/**
 * Serves a handler on `node:http` until the process ends (or the returned server is closed).
 *
 * @param handler The handler.
 * @param options Where to listen; port 0 picks a free one.
 * @returns The URL it listens on and a function that stops it.
 *
 * @example Serve on a free port
 * ```ts ignore
 * const { url, close } = await serveNode(createDashboard({ storage }), { hostname: "127.0.0.1", port: 0 });
 * ```
 */
export function serveNode(
  handler: FetchHandler,
  options: { readonly hostname: string; readonly port: number },
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer(toNodeListener(handler));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : options.port;
      resolve({
        url: `http://${hostForUrl(options.hostname)}:${port}/`,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

/** A host name as it goes into a URL (IPv6 in brackets). */
export function hostForUrl(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}
