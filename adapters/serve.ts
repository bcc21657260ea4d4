// Serving a Web-standard handler with the runtime's own server: Deno.serve on Deno, Bun.serve on
// Bun, node:http on Node. Used by the `reflow dashboard` command and the browser tests.
import { type FetchHandler, hostForUrl, serveNode } from "./node_http.ts";

/** A running server. */
export interface Served {
  /** Its URL, ending in "/". */
  readonly url: string;
  /** Stops it. */
  close(): Promise<void>;
}

/** The slices of `Deno.serve` and `Bun.serve` used here (neither type exists under the other's checker). */
const g = globalThis as unknown as {
  Deno?: {
    serve(
      options: { hostname: string; port: number; onListen?: (addr: { port: number }) => void },
      handler: FetchHandler,
    ): { addr: { port: number }; shutdown(): Promise<void> };
  };
  Bun?: {
    serve(options: { hostname: string; port: number; fetch: FetchHandler }): {
      port: number;
      stop(force?: boolean): Promise<void> | void;
    };
  };
};

/** Which server {@linkcode serve} uses on this runtime. */
export const serverName: string = g.Deno ? "Deno.serve" : g.Bun ? "Bun.serve" : "node:http";

/**
 * Serves `handler` at `hostname:port` (port 0: any free port) with the runtime's own server.
 *
 * @returns Once listening, its URL and how to stop it.
 */
export async function serve(
  handler: FetchHandler,
  options: { readonly hostname: string; readonly port: number },
): Promise<Served> {
  const { hostname, port } = options;
  const url = (p: number) => `http://${hostForUrl(hostname)}:${p}/`;
  if (g.Deno) {
    const server = g.Deno.serve({ hostname, port, onListen: () => {} }, handler);
    return { url: url(server.addr.port), close: () => server.shutdown() };
  }
  if (g.Bun) {
    const server = g.Bun.serve({ hostname, port, fetch: handler });
    return { url: url(server.port), close: async () => await server.stop(true) };
  }
  return await serveNode(handler, options);
}
