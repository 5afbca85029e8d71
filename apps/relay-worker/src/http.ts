// What the Worker and the object share: JSON answers and the headers of the Worker's request to the object.

export function json(status: number, body: object, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function error(status: number, code: string): Response {
  return json(status, { error: code });
}

/**
 * A refusal for a limit (429, 503) that a client can back off from: `Retry-After` in whole seconds (at
 * least 1), and the same wait to the millisecond in the body's `retryAfterMs`.
 */
export function backOff(status: number, code: string, retryAfterMs: number): Response {
  const wait = Math.max(1, Math.ceil(retryAfterMs));
  return json(status, { error: code, retryAfterMs: wait }, { "retry-after": String(Math.ceil(wait / 1000)) });
}

/**
 * The Worker checks the route, the token's form and the bridge's proof, then asks the object with these
 * headers. The object is reachable only through the Worker, so it can trust them; it never sees the token
 * itself, only its hash.
 */
export const TOKEN_HASH_HEADER = "x-lanyard-token-hash";
/** On an HTTP stream: the Worker found the body over the limit, and hands over none of it. */
export const BODY_TOO_LARGE_HEADER = "x-lanyard-body-too-large";
/** On the bridge's socket: the nonce and time of the proof the Worker has checked, for the object's replay check. */
export const PROOF_NONCE_HEADER = "x-lanyard-proof-nonce";
export const PROOF_TIME_HEADER = "x-lanyard-proof-time";
