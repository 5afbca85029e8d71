// What the Worker and the object share: JSON answers and the headers of the Worker's request to the object.

export function json(status: number, body: object): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

export function error(status: number, code: string): Response {
  return json(status, { error: code });
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
