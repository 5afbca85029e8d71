// The bridge's key proof: its ID is the hash of its key, and it signs the object's fresh nonce with it.

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

/** The bytes the bridge signs: domain, role, the ID and the nonce exactly as they were sent. */
export function proofMessage(bridgeId: string, nonce: string): Uint8Array {
  return new TextEncoder().encode(`lanyard-relay-v1\nbridge\n${bridgeId}\n${nonce}`);
}

/** True when `key` (base64url, 32 bytes) hashes to `bridgeId` and `signature` (base64url, 64 bytes) signs the nonce. */
export async function verifyProof(bridgeId: string, nonce: string, key: string, signature: string): Promise<boolean> {
  const keyBytes = fromBase64url(key);
  const signatureBytes = fromBase64url(signature);
  if (keyBytes?.length !== 32 || signatureBytes?.length !== 64) return false;
  if ((await bridgeIdOfKey(keyBytes)) !== bridgeId) return false;
  try {
    const publicKey = await crypto.subtle.importKey("raw", keyBytes, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signatureBytes, proofMessage(bridgeId, nonce));
  } catch {
    // 32 bytes that are not a point on the curve.
    return false;
  }
}
