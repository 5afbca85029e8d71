// Door 3's SPAKE2, side A, exactly as the Rust `spake2` 0.4 crate runs it on edwards25519
// (docs/protocol.md §19, "Door 3's SPAKE2, byte by byte").
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { concat, utf8 } from "./bytes.js";

const Point = ed25519.Point;
type Point = InstanceType<typeof Point>;
const ORDER = Point.CURVE().n;
const M = Point.fromHex("15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312");
const N = Point.fromHex("f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3");
const SIDE_A = 0x41;
const SIDE_B = 0x42;

function bigEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

/** The PIN as a scalar: HKDF-SHA256 (salt empty, info `SPAKE2 pw`, 48 bytes), big-endian, mod ℓ. */
export function passwordScalar(pin: string): bigint {
  return bigEndian(hkdf(sha256, utf8(pin), new Uint8Array(0), utf8("SPAKE2 pw"), 48)) % ORDER;
}

/** A scalar from 64 random bytes read little-endian mod ℓ, as curve25519-dalek's `Scalar::random`. */
export function scalarFromRandom(random: Uint8Array): bigint {
  if (random.length !== 64) throw new Error("64 random bytes make a scalar");
  return bigEndian(random.slice().reverse()) % ORDER;
}

/** The other side's 33-byte message as a point; null when it is not one (wrong length, letter or point). */
function peerPoint(message: Uint8Array, letter: number): Point | null {
  if (message.length !== 33 || message[0] !== letter) return null;
  try {
    return Point.fromBytes(message.subarray(1));
  } catch {
    return null;
  }
}

export interface SideA {
  /** The 33 bytes to send: `A` ‖ encode(x·G + w·M). */
  message: Uint8Array;
  /** K from side B's message; null when that message is malformed. */
  finish(messageB: Uint8Array): Uint8Array | null;
}

/** Starts side A with identities `idA`, `idB` and 64 random bytes for its scalar. */
export function startA(pin: string, idA: Uint8Array, idB: Uint8Array, random: Uint8Array): SideA {
  const w = passwordScalar(pin);
  const x = scalarFromRandom(random);
  const X = Point.BASE.multiply(x).add(M.multiply(w)).toBytes();
  return {
    message: concat(Uint8Array.of(SIDE_A), X),
    finish(messageB) {
      const Y = peerPoint(messageB, SIDE_B);
      if (!Y) return null;
      const Z = Y.subtract(N.multiply(w)).multiply(x).toBytes();
      return sha256(concat(sha256(utf8(pin)), sha256(idA), sha256(idB), X, Y.toBytes(), Z));
    },
  };
}
