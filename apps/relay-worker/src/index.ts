// The relay Worker: serves the phone app, checks routes, bridge IDs and token forms, and hands each bridge's
// traffic to its own Durable Object. Contract: docs/relay.md.

import { appAnswer } from "./app";
import { tokenHash } from "./encoding";
import {
  BODY_TOO_LARGE_HEADER,
  PROOF_NONCE_HEADER,
  PROOF_TIME_HEADER,
  TOKEN_HASH_HEADER,
  backOff,
  error,
  json,
} from "./http";
import { readBody } from "./http-streams";
import { CAP_RETRY_MS, MAX_HTTP_BODY } from "./limits";
import { checkProof, isBridgeId } from "./proof";

export { RelayObject } from "./relay";

const BRIDGE_ROUTE = /^\/v1\/bridges\/([^/]+)\/(status|connect|bridge)$/;
/** The routes of simple clients: each POST is one HTTP stream to the bridge named by `Lanyard-Bridge`. */
const HTTP_ROUTES = new Set(["/v1/pair/start", "/v1/pair/confirm", "/v1/chat"]);
/** A routing token is 32 random bytes in unpadded base64url: 43 characters. */
const BEARER = /^Bearer ([A-Za-z0-9_-]{43})$/i;

export default {
  async fetch(request, env): Promise<Response> {
    const { host, pathname } = new URL(request.url);
    if (pathname === "/v1/health") {
      return request.method === "GET" ? json(200, { ok: true }) : error(405, "method_not_allowed");
    }
    if (HTTP_ROUTES.has(pathname)) return httpStream(request, env, pathname.slice("/v1/".length));
    const route = BRIDGE_ROUTE.exec(pathname);
    if (!route) return appAnswer(request, pathname) ?? error(404, "not_found");
    const [, bridgeId = "", action = ""] = route;
    if (!isBridgeId(bridgeId)) return error(400, "bad_bridge_id");
    if (request.method !== "GET") return error(405, "method_not_allowed");

    const headers = new Headers();
    if (action !== "status") {
      if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") return error(426, "websocket_required");
      headers.set("upgrade", "websocket");
    }
    if (action === "bridge") {
      // The bridge proves its key before any object is asked: without a proof, nothing per bridge is spent.
      const now = Date.now();
      const proof = await checkProof(request.headers, host, pathname, bridgeId, now);
      if ("refused" in proof) {
        return proof.refused === "proof_expired"
          ? json(401, { error: "proof_expired", relayTimeMs: now })
          : error(401, "bad_proof");
      }
      headers.set(PROOF_NONCE_HEADER, proof.nonce);
      headers.set(PROOF_TIME_HEADER, String(proof.time));
    } else {
      const token = bearerToken(request);
      if (token === undefined) return error(401, "missing_token");
      headers.set(TOKEN_HASH_HEADER, await tokenHash(token));
    }
    // A fresh request: nothing of the caller's (its token above all) reaches the object but these headers.
    return askRelay(env, bridgeId, `https://relay/${action}`, { headers });
  },
} satisfies ExportedHandler<Env>;

/**
 * `POST /v1/pair/start`, `/v1/pair/confirm` and `/v1/chat`. The Worker checks what it can alone (method,
 * bridge ID, token form); the object checks the rest in the contract's order, the body's size last. It
 * does so with nothing awaited between its checks and the stream's opening, so that no other request slips
 * in between: the Worker therefore reads the body first, with its bound, and hands it over whole, or marks
 * it too large and hands over none of it.
 */
async function httpStream(request: Request, env: Env, route: string): Promise<Response> {
  if (request.method !== "POST") return error(405, "method_not_allowed");
  const bridgeId = request.headers.get("lanyard-bridge") ?? "";
  if (!isBridgeId(bridgeId)) return error(400, "bad_bridge_id");
  const token = bearerToken(request);
  if (token === undefined) return error(401, "missing_token");
  const body = await readBody(request, MAX_HTTP_BODY);
  const headers = new Headers({ [TOKEN_HASH_HEADER]: await tokenHash(token) });
  if (body === null) headers.set(BODY_TOO_LARGE_HEADER, "1");
  return askRelay(env, bridgeId, `https://relay/http/${route}`, { method: "POST", headers, body });
}

function bearerToken(request: Request): string | undefined {
  return BEARER.exec(request.headers.get("authorization") ?? "")?.[1];
}

/**
 * Asks the bridge's object. When the runtime cannot (Cloudflare's documented Durable Object errors: its
 * queue of requests is full, `overloaded`, or it was reset or is being moved), the client gets a refusal to
 * back off from, never a bare 500 or a dropped connection.
 */
async function askRelay(env: Env, bridgeId: string, url: string, init: RequestInit): Promise<Response> {
  try {
    return await env.RELAY.get(env.RELAY.idFromName(bridgeId)).fetch(url, init);
  } catch (thrown) {
    return objectFailure(thrown);
  }
}

/** The answer to an error the runtime threw for the object. */
export function objectFailure(thrown: unknown): Response {
  const overloaded = typeof thrown === "object" && thrown !== null && (thrown as { overloaded?: unknown }).overloaded === true;
  console.log(JSON.stringify({ event: "object_error", overloaded }));
  return backOff(503, overloaded ? "relay_overloaded" : "relay_unavailable", CAP_RETRY_MS);
}
