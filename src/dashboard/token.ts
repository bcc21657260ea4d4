/**
 * The standalone dashboard's guard: every request must carry the token `reflow dashboard` printed,
 * in the URL once (it is then kept in a cookie and removed from the address bar), in the cookie,
 * or as `Authorization: Bearer <token>`.
 *
 * @module
 */

import type { DashboardHandler } from "./dashboard.ts";
import { sameText } from "./secret.ts";

const COOKIE = "reflow_token";

/**
 * Wraps a handler so that it answers 401 to any request without `token`.
 *
 * @param handler The dashboard.
 * @param token The secret to require.
 * @returns The guarded handler.
 *
 * @example Guard a dashboard served on its own
 * ```ts ignore
 * const handler = requireToken(createDashboard({ storage }), crypto.randomUUID());
 * ```
 */
export function requireToken(handler: DashboardHandler, token: string): DashboardHandler {
  return async (request) => {
    const url = new URL(request.url);
    const given = url.searchParams.get("token");
    if (given !== null && sameText(given, token)) {
      url.searchParams.delete("token");
      return new Response(null, {
        status: 303,
        headers: {
          location: `${url.pathname}${url.search}`,
          "set-cookie": `${COOKIE}=${token}; Path=/; HttpOnly; SameSite=Strict`,
          "referrer-policy": "no-referrer",
        },
      });
    }
    const cookie = (request.headers.get("cookie") ?? "").split(/;\s*/).find((c) =>
      c.startsWith(`${COOKIE}=`)
    );
    const bearer = request.headers.get("authorization");
    const presented = cookie?.slice(COOKIE.length + 1) ?? bearer?.replace(/^Bearer /, "") ?? "";
    if (sameText(presented, token)) return await handler(request);
    return new Response("Unauthorized: open the URL with the token that `reflow dashboard` printed\n", {
      status: 401,
      headers: { "content-type": "text/plain; charset=utf-8" },
    });
  };
}
