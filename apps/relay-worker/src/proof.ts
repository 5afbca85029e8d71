// The bridge's key proof: its ID is the hash of its key, and it signs a timestamped, single-use proof for
// this relay's host and path with it, carried in the headers of its upgrade request.

import { fromBase64url, sha256, toBase32 } from "./encoding";

/** DER SubjectPublicKeyInfo header of an Ed25519 key; the 32 key bytes follow it. */
const ED25519_SPKI_PREFIX = new Uint8Array([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

/**
 * 13 groups of four base32 characters. 256 bits fill 51 characters and one more bit, so the last character
 * carries that bit and four zero bits: it can only be A or Q. Anything else is no SHA-256 and is refused.
 */
const BRIDGE_ID = /^(?:[A-Z2-7]{4}-){12}[A-Z2-7]{3}[AQ]$/;

/** How far a proof's time may be from the relay's clock, either way; a nonce is remembered as long. */
export const PROOF_WINDOW_MS = 60_000;

/** The proof's headers (docs/relay.md, "The bridge link"). */
export const PROOF_HEADERS = {
  key: "lanyard-bridge-key",
  time: "lanyard-bridge-time",
  nonce: "lanyard-bridge-nonce",
  signature: "lanyard-bridge-signature",
} as const;

/** 32 random bytes in unpadded base64url. */
const NONCE = /^[A-Za-z0-9_-]{43}$/;
/** Milliseconds since the Unix epoch: decimal digits, no sign, no leading zero. */
const TIME = /^(?:0|[1-9][0-9]{0,15})$/;

export function isBridgeId(text: string): boolean {
  return BRIDGE_ID.test(text);
}

/** The key ID of a raw 32-byte Ed25519 public key, in the grouped text form. */
export async function bridgeIdOfKey(key: Uint8Array): Promise<string> {
  const spki = new Uint8Array(ED25519_SPKI_PREFIX.length + key.length);
  spki.set(ED25519_SPKI_PREFIX);
  spki.set(key, ED25519_SPKI_PREFIX.length);
  return toBase32(await sha256(spki)).match(/.{1,4}/g)!.join("-");
}

/** The bytes the bridge signs: the domain, then the host, path, ID, time and nonce exactly as sent. */
export function proofMessage(host: string, path: string, bridgeId: string, time: string, nonce: string): Uint8Array {
  return new TextEncoder().encode(`lanyard-relay-bridge-v2\n${host}\n${path}\n${bridgeId}\n${time}\n${nonce}`);
}

/** A checked proof: the nonce and time the object must still see used only once. */
export interface Proof {
  nonce: string;
  time: number;
}

export type ProofCheck = Proof | { refused: "bad_proof" } | { refused: "proof_expired" };

/**
 * Checks the proof in `headers` for the bridge `bridgeId` reached at `host` and `path`, cheapest checks
 * first: the headers' form, the time against `now`, the key's hash against the ID, then the signature.
 */
export async function checkProof(
  headers: Headers,
  host: string,
  path: string,
  bridgeId: string,
  now: number,
): Promise<ProofCheck> {
  const bad = { refused: "bad_proof" } as const;
  const time = headers.get(PROOF_HEADERS.time) ?? "";
  const nonce = headers.get(PROOF_HEADERS.nonce) ?? "";
  const key = fromBase64url(headers.get(PROOF_HEADERS.key) ?? "");
  const signature = fromBase64url(headers.get(PROOF_HEADERS.signature) ?? "");
  if (!TIME.test(time) || !NONCE.test(nonce) || key?.length !== 32 || signature?.length !== 64) return bad;
  if (Math.abs(Number(time) - now) > PROOF_WINDOW_MS) return { refused: "proof_expired" };
  if ((await bridgeIdOfKey(key)) !== bridgeId) return bad;
  const message = proofMessage(host, path, bridgeId, time, nonce);
  try {
    const publicKey = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature, message))) return bad;
  } catch {
    // 32 bytes that are not a point on the curve.
    return bad;
  }
  return { nonce, time: Number(time) };
}
