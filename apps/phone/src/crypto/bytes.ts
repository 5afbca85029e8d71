// Byte encodings the contract uses: base64url without padding (padded text is refused, as the computer
// refuses it), lowercase hex, UTF-8, and key IDs (base32 of 32 bytes in groups of 4).

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
export const fromUtf8 = (bytes: Uint8Array): string => new TextDecoder("utf-8", { fatal: true }).decode(bytes);

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Reads `bits`-wide symbols of `alphabet` into bytes; null when a symbol is foreign or bits are left over. */
function decodeBits(text: string, alphabet: string, bits: number): Uint8Array | null {
  const out: number[] = [];
  let buffer = 0;
  let held = 0;
  for (const ch of text) {
    const value = alphabet.indexOf(ch);
    if (value < 0) return null;
    buffer = (buffer << bits) | value;
    held += bits;
    if (held >= 8) {
      held -= 8;
      out.push((buffer >> held) & 0xff);
    }
    buffer &= (1 << held) - 1;
  }
  // Canonical text only: the unused low bits of the last symbol are zero, and no whole symbol is spare.
  if (held >= bits || buffer !== 0) return null;
  return Uint8Array.from(out);
}

function encodeBits(bytes: Uint8Array, alphabet: string, bits: number): string {
  let out = "";
  let buffer = 0;
  let held = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    held += 8;
    while (held >= bits) {
      held -= bits;
      out += alphabet[(buffer >> held) & ((1 << bits) - 1)];
    }
    buffer &= (1 << held) - 1;
  }
  if (held > 0) out += alphabet[(buffer << (bits - held)) & ((1 << bits) - 1)];
  return out;
}

export const b64url = (bytes: Uint8Array): string => encodeBits(bytes, B64URL, 6);
export const fromB64url = (text: string): Uint8Array | null => decodeBits(text, B64URL, 6);

/** Standard base64 with padding (the `agent` attachments' `data`). */
export function b64std(bytes: Uint8Array): string {
  const text = encodeBits(bytes, B64URL, 6).replace(/-/g, "+").replace(/_/g, "/");
  return text + "=".repeat((4 - (text.length % 4)) % 4);
}

export const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function fromHex(text: string): Uint8Array {
  if (!/^([0-9a-f]{2})*$/.test(text)) throw new Error("not lowercase hex");
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** A key ID as Lanyard writes it: base32 (upper case, no padding) in groups of 4 joined by `-`. */
export const keyIdText = (digest: Uint8Array): string => encodeBits(digest, B32, 5).match(/.{1,4}/g)!.join("-");

/** A key ID's 32 bytes; any case, dashes and whitespace ignored. */
export function keyIdBytes(text: string): Uint8Array | null {
  const bytes = decodeBits(text.replace(/[-\s]/g, "").toUpperCase(), B32, 5);
  return bytes && bytes.length === 32 ? bytes : null;
}

/** Constant-time comparison of two byte strings (confirmations). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
