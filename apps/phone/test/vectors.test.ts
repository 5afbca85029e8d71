// The app's crypto against the vectors the Rust code made (node-kit/tests/vectors/rust.json), and the
// reverse: vectors made here by the app's code, which node-kit/tests/web_vectors.rs checks with the Rust code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ed25519 } from "@noble/curves/ed25519.js";
import { b64url, fromB64url, fromHex, fromUtf8, hex, keyIdBytes, keyIdText, utf8 } from "../src/crypto/bytes.js";
import { passwordScalar, scalarFromRandom, startA } from "../src/crypto/spake2.js";
import { SEALED_CLIENT_IDENTITY, bridgeIdOf, pinKeys } from "../src/crypto/pin.js";
import { open, seal } from "../src/crypto/seal.js";

const vectorsDir = join(import.meta.dirname, "../../../node-kit/tests/vectors");
const rust = JSON.parse(readFileSync(join(vectorsDir, "rust.json"), "utf8"));
const N = ed25519.Point.fromHex("f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3");

interface Spake2Vector {
  pin: string;
  bridgePublicKey: string;
  bridgeId: string;
  xRandom: string;
  yRandom: string;
  messageA: string;
  messageB: string;
  key: string;
  bridgeConfirmation: string;
  nodeConfirmation: string;
  sealKey: string;
  clientId: string;
}

/** Everything side A makes of a vector's inputs and side B's message, with the app's code. */
function sideA(pin: string, bridgeId: string, xRandom: string, messageB: Uint8Array) {
  const side = startA(pin, SEALED_CLIENT_IDENTITY, keyIdBytes(bridgeId)!, fromHex(xRandom));
  const k = side.finish(messageB);
  assert.ok(k, "side B's message is a point");
  const keys = pinKeys(k);
  return {
    messageA: b64url(side.message),
    key: hex(k),
    bridgeConfirmation: b64url(keys.bridgeConfirmation),
    nodeConfirmation: b64url(keys.nodeConfirmation),
    sealKey: b64url(keys.sealKey),
    clientId: keys.clientId,
  };
}

test("the identity is the Rust side's", () => {
  assert.equal(fromUtf8(SEALED_CLIENT_IDENTITY), rust.sealedClientIdentity);
});

test("SPAKE2 side A and every derivation match the Rust vectors", () => {
  assert.ok(rust.spake2.length >= 3);
  for (const v of rust.spake2 as Spake2Vector[]) {
    assert.equal(bridgeIdOf(fromB64url(v.bridgePublicKey)!), v.bridgeId);
    const mine = sideA(v.pin, v.bridgeId, v.xRandom, fromB64url(v.messageB)!);
    for (const [field, value] of Object.entries(mine)) assert.equal(value, v[field as keyof Spake2Vector], `${field} for PIN ${v.pin}`);
  }
});

test("a malformed side-B message is refused", () => {
  const v = rust.spake2[0] as Spake2Vector;
  const side = startA(v.pin, SEALED_CLIENT_IDENTITY, keyIdBytes(v.bridgeId)!, fromHex(v.xRandom));
  const good = fromB64url(v.messageB)!;
  assert.equal(side.finish(good.subarray(0, 32)), null, "short");
  assert.equal(side.finish(Uint8Array.of(0x41, ...good.subarray(1))), null, "side A's letter");
  const notPoint = good.slice();
  notPoint.fill(0xff, 1);
  assert.equal(side.finish(notPoint), null, "not a point");
});

test("seals match the Rust vectors both ways, and open only with their own nonce", () => {
  for (const v of rust.seal) {
    const key = fromB64url(v.key)!;
    const [counter, frame] = [BigInt(v.counter), BigInt(v.frame)];
    assert.equal(seal(key, v.direction, counter, frame, utf8(v.plaintext)), v.sealed);
    assert.equal(fromUtf8(open(key, v.direction, counter, frame, v.sealed)!), v.plaintext);
    assert.equal(open(key, 1 - v.direction, counter, frame, v.sealed), null, "other direction");
    assert.equal(open(key, v.direction, counter + 1n, frame, v.sealed), null, "other counter");
    assert.equal(open(key, v.direction, counter, frame + 1n, v.sealed), null, "other frame");
    assert.equal(open(key, v.direction, counter, frame, v.sealed + "="), null, "padded text");
  }
});

test("key IDs and base64url are canonical", () => {
  const digest = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
  const text = keyIdText(digest);
  assert.match(text, /^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
  assert.deepEqual(keyIdBytes(text.toLowerCase()), digest);
  assert.equal(keyIdBytes(text.slice(0, -1)), null);
  assert.equal(fromB64url("AB"), null, "bits left over");
  assert.deepEqual(fromB64url("AA"), Uint8Array.of(0));
});

/** 64 bytes that look random and are the same every run. */
const fixed = (seed: number) => Uint8Array.from({ length: 64 }, (_, i) => ((i * 197 + seed * 61) ^ seed) & 0xff);

test("writes the app's own vectors for the Rust side to check", () => {
  const spake2 = ["314159", "000001", "999998"].map((pin, i) => {
    const publicKey = fixed(i + 20).subarray(0, 32);
    const bridgeId = bridgeIdOf(publicKey);
    const [xRandom, yRandom] = [hex(fixed(i + 1)), hex(fixed(i + 40))];
    // Side B's message, written from the formulas: y·G + w·N.
    const Y = ed25519.Point.BASE.multiply(scalarFromRandom(fromHex(yRandom))).add(N.multiply(passwordScalar(pin)));
    const messageB = Uint8Array.of(0x42, ...Y.toBytes());
    return { pin, bridgePublicKey: b64url(publicKey), bridgeId, xRandom, yRandom, messageB: b64url(messageB), ...sideA(pin, bridgeId, xRandom, messageB) };
  });
  const key = fixed(70).subarray(0, 32);
  const seals = [
    [1, 0n, 0n, '{"token":"from the web"}'],
    [0, 1n, 0n, '{"command":"agent","version":1,"payload":{"prompt":"héllo ✓"}}'],
    [1, 7n, 3n, ""],
    [0, (1n << 62n) + 9n, 0n, "x".repeat(300)],
  ] as const;
  const seal_ = seals.map(([direction, counter, frame, plaintext]) => ({
    key: b64url(key),
    direction,
    counter: String(counter),
    frame: String(frame),
    plaintext,
    sealed: seal(key, direction, counter, frame, utf8(plaintext)),
  }));
  const about = "Made by apps/phone/test/vectors.test.ts with the app's code; checked by node-kit/tests/web_vectors.rs.";
  writeFileSync(join(vectorsDir, "from-web.json"), JSON.stringify({ about, spake2, seal: seal_ }, null, 2) + "\n");
});
