// Pairing against a computer's side written from docs/protocol.md §19–20 (side B), over a fake fetch: the
// app pairs with the right computer and refuses an answer that is not the invite's computer's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { CallError } from "../src/client.js";
import { b64url, concat, fromB64url, sameBytes, utf8 } from "../src/crypto/bytes.js";
import { SEALED_CLIENT_IDENTITY, bridgeIdOf, pinKeys } from "../src/crypto/pin.js";
import { open, seal } from "../src/crypto/seal.js";
import { passwordScalar, scalarFromRandom } from "../src/crypto/spake2.js";
import { pair, readInvite } from "../src/pairing.js";

const P = ed25519.Point;
const M = P.fromHex("15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312");
const N = P.fromHex("f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3");
const SPKI = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
(globalThis as { location?: unknown }).location = { origin: "https://relay.example" };

interface Computer {
  pin: string;
  publicKey: Uint8Array;
  /** Changes the pairing answer before it is sealed (an impostor's). */
  paired?: (answer: Record<string, unknown>) => void;
  /** The confirmations the computer was sent. */
  confirmations: Uint8Array[];
  triesLeft: number;
}

/** The computer's side of `/v1/pair/start` and `/v1/pair/confirm`, from the doc's formulas. */
function fakeRelay(computer: Computer) {
  const idB = sha256(concat(SPKI, computer.publicKey));
  let keys: ReturnType<typeof pinKeys> | null = null;
  globalThis.fetch = (async (url: string, init: RequestInit) => {
    const body = JSON.parse(String(init.body));
    const reply = (status: number, value: unknown) => new Response(JSON.stringify(value), { status });
    if (url === "/v1/pair/start") {
      computer.triesLeft--;
      const w = passwordScalar(computer.pin);
      const y = scalarFromRandom(crypto.getRandomValues(new Uint8Array(64)));
      const X = P.fromBytes(fromB64url(body.message)!.subarray(1));
      const Y = P.BASE.multiply(y).add(N.multiply(w));
      const Z = X.subtract(M.multiply(w)).multiply(y);
      keys = pinKeys(sha256(concat(sha256(utf8(computer.pin)), sha256(SEALED_CLIENT_IDENTITY), sha256(idB), X.toBytes(), Y.toBytes(), Z.toBytes())));
      return reply(200, { message: b64url(Uint8Array.of(0x42, ...Y.toBytes())), confirmation: b64url(keys.bridgeConfirmation) });
    }
    const confirmation = fromB64url(body.confirmation)!;
    computer.confirmations.push(confirmation);
    if (!keys || !sameBytes(confirmation, keys.nodeConfirmation)) {
      return reply(403, { error: "pairing_pin_wrong", message: "wrong", details: { triesLeft: computer.triesLeft } });
    }
    const answer: Record<string, unknown> = { token: "token-1", node_id: keys.clientId, bridge_public_key: b64url(computer.publicKey), relay_url: null, scopes: ["chat"], computer_name: "Ada's Mac" };
    computer.paired?.(answer);
    return reply(200, { sealed: seal(keys.sealKey, 1, 0n, 0n, utf8(JSON.stringify(answer))) });
  }) as typeof fetch;
}

function setUp(change: Partial<Computer> = {}) {
  const computer: Computer = { pin: "482913", publicKey: crypto.getRandomValues(new Uint8Array(32)), confirmations: [], triesLeft: 5, ...change };
  fakeRelay(computer);
  const invite = readInvite(`#id=${bridgeIdOf(computer.publicKey)}&route=${"r".repeat(43)}&name=Mac`)!;
  return { computer, invite };
}

const refusal = async (promise: Promise<unknown>) => {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof CallError, `refused with a CallError, not ${String(error)}`);
  return error;
};

test("pairs with the invite's computer and keeps what the exchange gave", async () => {
  const { invite } = setUp();
  const paired = await pair(invite, "482913", { name: "phone" });
  assert.equal(paired.bridgeId, invite.bridgeId);
  assert.equal(paired.name, "Ada's Mac");
  assert.equal(paired.token, "token-1");
  assert.match(paired.nodeId, /^([A-Z2-7]{4}-){12}[A-Z2-7]{4}$/);
  assert.equal(fromB64url(paired.sealKey)!.length, 32);
  const sealed = seal(fromB64url(paired.sealKey)!, 0, 1n, 0n, utf8("{}"));
  assert.ok(open(fromB64url(paired.sealKey)!, 0, 1n, 0n, sealed));
});

test("a wrong PIN says how many tries are left and gives the computer nothing of this side's key", async () => {
  const { computer, invite } = setUp();
  const error = await refusal(pair(invite, "482914", { name: "phone" }));
  assert.equal(error.code, "pairing_pin_wrong");
  assert.equal(error.details.triesLeft, 4);
  assert.equal(computer.confirmations.length, 1);
  const first = computer.confirmations[0]!;
  await refusal(pair(invite, "482914", { name: "phone" }));
  assert.notDeepEqual(computer.confirmations[1], first, "random each time, not derived from the wrong key");
});

test("an answer naming another bridge key is refused", async () => {
  const { invite } = setUp({ paired: (answer) => (answer.bridge_public_key = b64url(new Uint8Array(32).fill(7))) });
  assert.equal((await refusal(pair(invite, "482913", { name: "phone" }))).failure, "tampered");
});

test("an answer naming another client ID is refused", async () => {
  const { invite } = setUp({ paired: (answer) => (answer.node_id = "AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA") });
  assert.equal((await refusal(pair(invite, "482913", { name: "phone" }))).failure, "tampered");
});

test("a pairing answer not sealed under the PIN's key is refused", async () => {
  const { invite } = setUp();
  const real = globalThis.fetch;
  globalThis.fetch = (async (url: string, init: RequestInit) => {
    const response = await real(url, init);
    if (url !== "/v1/pair/confirm" || response.status !== 200) return response;
    const { sealed } = (await response.json()) as { sealed: string };
    const bytes = fromB64url(sealed)!;
    bytes[0]! ^= 1;
    return new Response(JSON.stringify({ sealed: b64url(bytes) }));
  }) as typeof fetch;
  assert.equal((await refusal(pair(invite, "482913", { name: "phone" }))).failure, "tampered");
});

test("refusals in clear keep their code: an expired invite, an offline computer", async () => {
  const { invite } = setUp();
  for (const [status, error, failure] of [[410, "pairing_code_invalid", "refused"], [401, "unknown_token", "unpaired"], [503, "bridge_offline", "offline"]] as const) {
    globalThis.fetch = (async () => new Response(JSON.stringify({ error, message: "m" }), { status })) as typeof fetch;
    const refused = await refusal(pair(invite, "482913", { name: "phone" }));
    assert.deepEqual([refused.code, refused.failure], [error, failure]);
  }
});
