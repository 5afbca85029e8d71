// The relay Worker: checks routes, bridge IDs and token forms, and hands each bridge's traffic to its own
// Durable Object. Contract: docs/relay.md.

import { tokenHash } from "./encoding";
import { BRIDGE_ID_HEADER, TOKEN_HASH_HEADER, error, json } from "./http";
import { isBridgeId } from "./proof";

export { RelayObject } from "./relay";

const BRIDGE_ROUTE = /^\/v1\/bridges\/([^/]+)\/(status|connect|bridge)$/;
/** A routing token is 32 random bytes in unpadded base64url: 43 characters. */
const BEARER = /^Bearer ([A-Za-z0-9_-]{43})$/i;

export default {
  async fetch(request, env): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (pathname === "/v1/health") {
      return request.method === "GET" ? json(200, { ok: true }) : error(405, "method_not_allowed");
    }
    const route = BRIDGE_ROUTE.exec(pathname);
    if (!route) return error(404, "not_found");
    const [, bridgeId = "", action = ""] = route;
    if (!isBridgeId(bridgeId)) return error(400, "bad_bridge_id");
    if (request.method !== "GET") return error(405, "method_not_allowed");

    const headers = new Headers({ [BRIDGE_ID_HEADER]: bridgeId });
    if (action !== "status") {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return error(426, "websocket_required");
      headers.set("upgrade", "websocket");
    }
    if (action !== "bridge") {
      const token = BEARER.exec(request.headers.get("authorization") ?? "")?.[1];
      if (token === undefined) return error(401, "missing_token");
      headers.set(TOKEN_HASH_HEADER, await tokenHash(token));
    }
    // A fresh request: nothing of the caller's (its token above all) reaches the object but these headers.
    const relay = env.RELAY.get(env.RELAY.idFromName(bridgeId));
    return relay.fetch(`https://relay/${action}`, { headers });
  },
} satisfies ExportedHandler<Env>;
