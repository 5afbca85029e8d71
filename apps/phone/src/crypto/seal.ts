// The seal of the sealed contract (docs/protocol.md §20): XChaCha20-Poly1305, associated data
// `lanyard-seal-v1`, nonce [direction][counter u64 BE][frame u64 BE][7 zero bytes], base64url text.
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { b64url, fromB64url, utf8 } from "./bytes.js";

const AAD = utf8("lanyard-seal-v1");
export const TO_BRIDGE = 0;
export const TO_CLIENT = 1;

function nonce(direction: number, counter: bigint, frame: bigint): Uint8Array {
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  bytes[0] = direction;
  view.setBigUint64(1, counter);
  view.setBigUint64(9, frame);
  return bytes;
}

export function seal(key: Uint8Array, direction: number, counter: bigint, frame: bigint, plaintext: Uint8Array): string {
  return b64url(xchacha20poly1305(key, nonce(direction, counter, frame), AAD).encrypt(plaintext));
}

/** The plaintext, or null when the text does not open under this key, direction, counter and frame. */
export function open(key: Uint8Array, direction: number, counter: bigint, frame: bigint, sealed: string): Uint8Array | null {
  const bytes = fromB64url(sealed);
  if (!bytes) return null;
  try {
    return xchacha20poly1305(key, nonce(direction, counter, frame), AAD).decrypt(bytes);
  } catch {
    return null;
  }
}

/** How long the body `{"counter":N,"sealed":"…"}` of a plaintext this long is. */
export const sealedBodyLength = (plaintextLength: number, counter: bigint): number =>
  `{"counter":${counter},"sealed":""}`.length + Math.ceil(((plaintextLength + 16) * 4) / 3);
