// Byte encodings used on the wire (RFC 4648) and for token hashes.

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 encoding of `bytes` in `alphabet` (64 or 32 characters, 6 or 5 bits each), without padding. */
function encodeBits(bytes: Uint8Array, alphabet: string, width: number): string {
  let out = "";
  let acc = 0;
  let bits = 0;
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= width) {
      bits -= width;
      out += alphabet[(acc >> bits) & (alphabet.length - 1)];
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(acc << (width - bits)) & (alphabet.length - 1)];
  return out;
}

/** RFC 4648 §5 base64url, without padding. */
export function toBase64url(bytes: Uint8Array): string {
  return encodeBits(bytes, BASE64URL, 6);
}

/**
 * Decodes unpadded base64url, or null. Non-canonical text (a trailing character whose unused low bits are
 * not zero) is refused, so that each byte string has exactly one accepted spelling.
 */
export function fromBase64url(text: string): Uint8Array | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (const char of text) {
    acc = (acc << 6) | BASE64URL.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
    acc &= (1 << bits) - 1;
  }
  return acc === 0 ? out : null;
}

/** RFC 4648 base32 (upper case), without padding. */
export function toBase32(bytes: Uint8Array): string {
  return encodeBits(bytes, BASE32, 5);
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** `tokenHash` of docs/relay.md: lowercase hex SHA-256 of the token's ASCII text. */
export async function tokenHash(token: string): Promise<string> {
  return toHex(await sha256(new TextEncoder().encode(token)));
}

/** Hex to bytes; the caller has checked that the text is hex of even length. */
export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}
