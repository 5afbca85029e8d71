// The small pure parts: encodings, the bridge ID, the frame codec and the token bucket.

import { describe, expect, it } from "vitest";
import { fromBase64url, toBase64url } from "../src/encoding";
import { CLOSE, DATA, decodeBridgeFrame, encodeFrame } from "../src/frames";
import { TokenBucket, TokenRates } from "../src/limits";
import { bridgeIdOfKey, isBridgeId } from "../src/proof";
import { b64url, frame, independentBridgeId, newBridgeKey } from "./helpers";

// Computed outside this code base, with Python:
//   sha256(bytes.fromhex("302a300506032b6570032100") + key) -> base64.b32encode -> strip "=" -> groups of 4
const ZERO_KEY_ID = "OIVL-2EXJ-TJJW-P43V-V24W-OKUO-A5YS-4A6C-VXIW-7KGW-SFGR-Z6RO-7YGA";
const COUNTING_KEY_ID = "SQEE-K6XP-2BY4-5QJH-YH4Y-KOMT-BBQ2-2G5J-JSKA-3OLV-ZFZM-BH6G-RNUA"; // key bytes 0, 1, …, 31

describe("bridge ID", () => {
  it("matches known answers computed elsewhere", async () => {
    expect(await bridgeIdOfKey(new Uint8Array(32))).toBe(ZERO_KEY_ID);
    expect(await bridgeIdOfKey(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(COUNTING_KEY_ID);
    expect(await independentBridgeId(new Uint8Array(32))).toBe(ZERO_KEY_ID);
  });

  it("agrees with the independent test implementation on fresh keys", async () => {
    for (let i = 0; i < 8; i++) {
      const key = await newBridgeKey();
      expect(await bridgeIdOfKey(key.raw)).toBe(key.id);
      expect(isBridgeId(key.id)).toBe(true);
    }
  });

  it("is well formed only as 13 upper-case groups whose last character could end a SHA-256", () => {
    expect(isBridgeId(ZERO_KEY_ID)).toBe(true);
    expect(isBridgeId(ZERO_KEY_ID.toLowerCase())).toBe(false);
    expect(isBridgeId(ZERO_KEY_ID.replace(/-/g, ""))).toBe(false);
    expect(isBridgeId(ZERO_KEY_ID.slice(0, -1) + "B")).toBe(false); // trailing bits not zero
    expect(isBridgeId(ZERO_KEY_ID.slice(0, -1) + "Q")).toBe(true);
    expect(isBridgeId(ZERO_KEY_ID + "-AAAA")).toBe(false);
    expect(isBridgeId(ZERO_KEY_ID.replace("O", "0"))).toBe(false); // 0 is not base32
  });
});

describe("base64url", () => {
  it("round-trips every length and matches btoa's alphabet", () => {
    for (let length = 0; length < 70; length++) {
      const bytes = crypto.getRandomValues(new Uint8Array(length));
      const encoded = toBase64url(bytes);
      expect(encoded).toBe(b64url(bytes));
      expect(fromBase64url(encoded)).toEqual(bytes);
    }
  });

  it("refuses padding, foreign characters, impossible lengths and non-canonical trailing bits", () => {
    expect(fromBase64url("AAA=")).toBeNull();
    expect(fromBase64url("AA+A")).toBeNull();
    expect(fromBase64url("AAAAA")).toBeNull();
    expect(fromBase64url("AB")).toBeNull(); // 'B' leaves a 1 in the unused low bits
    expect(fromBase64url("AQ")).toEqual(new Uint8Array([1]));
  });
});

describe("frames", () => {
  it("encodes the header big-endian and decodes DATA and CLOSE from the bridge", () => {
    const body = new Uint8Array([0, 255, 7]);
    const encoded = encodeFrame(DATA, 0x01020304, body);
    expect([...encoded]).toEqual([2, 1, 2, 3, 4, 0, 255, 7]);
    expect(encoded).toEqual(frame(2, 0x01020304, body));

    const data = decodeBridgeFrame(frame(2, 0xfffffffe, body).buffer);
    expect(data).toEqual({ kind: DATA, stream: 0xfffffffe, body });
    expect(decodeBridgeFrame(frame(3, 9, "gone").buffer)).toEqual({ kind: CLOSE, stream: 9, reason: "gone" });
    expect(decodeBridgeFrame(frame(3, 9).buffer)).toEqual({ kind: CLOSE, stream: 9, reason: "" });
    expect(decodeBridgeFrame(frame(2, 1, new Uint8Array(65536)).buffer)).not.toBeNull();
    expect(decodeBridgeFrame(frame(3, 1, "é".repeat(61) + "x").buffer)).not.toBeNull(); // 123 bytes
  });

  it("refuses what is malformed", () => {
    expect(decodeBridgeFrame(new Uint8Array([2, 0, 0, 1]).buffer)).toBeNull(); // too short
    expect(decodeBridgeFrame(frame(2, 1).buffer)).toBeNull(); // empty DATA
    expect(decodeBridgeFrame(frame(2, 1, new Uint8Array(65537)).buffer)).toBeNull(); // oversize DATA
    expect(decodeBridgeFrame(frame(1, 1, "{}").buffer)).toBeNull(); // OPEN goes object → bridge only
    expect(decodeBridgeFrame(frame(4, 1, "x").buffer)).toBeNull(); // unknown kind
    expect(decodeBridgeFrame(frame(0, 1, "x").buffer)).toBeNull();
    expect(decodeBridgeFrame(frame(3, 1, "x".repeat(124)).buffer)).toBeNull(); // reason over 123 bytes
    expect(decodeBridgeFrame(frame(3, 1, new Uint8Array([0xc3])).buffer)).toBeNull(); // not UTF-8
  });
});

describe("token bucket", () => {
  it("allows the burst, then the rate", () => {
    const bucket = new TokenBucket(10, 20, 0);
    for (let i = 0; i < 20; i++) expect(bucket.take(1, 0)).toBe(true);
    expect(bucket.take(1, 0)).toBe(false);
    expect(bucket.take(1, 99)).toBe(false); // 0.99 of a token
    expect(bucket.take(1, 100)).toBe(true);
    expect(bucket.take(1, 100)).toBe(false);
    expect(bucket.take(20, 10_000)).toBe(true); // refilled to the burst, not beyond
    expect(bucket.take(1, 10_000)).toBe(false);
  });

  it("has the table's rates per token", () => {
    const MiB = 1024 * 1024;
    const rates = new TokenRates(0);
    expect(rates.messages.take(400, 0)).toBe(true);
    expect(rates.messages.take(1, 0)).toBe(false);
    expect(rates.messages.take(200, 1000)).toBe(true);
    expect(rates.messages.take(1, 1000)).toBe(false);
    expect(rates.bytes.take(16 * MiB, 0)).toBe(true);
    expect(rates.bytes.take(1, 0)).toBe(false);
    expect(rates.bytes.take(8 * MiB, 1000)).toBe(true);
    expect(rates.bytes.take(1, 1000)).toBe(false);
    expect(rates.opens.take(20, 0)).toBe(true);
    expect(rates.opens.take(1, 0)).toBe(false);
    expect(rates.opens.take(10, 1000)).toBe(true);
    expect(rates.opens.take(1, 1000)).toBe(false);
  });
});
