// The app's reading of invites, of refusals, and of how large a sealed body gets.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CallError, classify, resendAfter, sealedFrames } from "../src/client.js";
import { readInvite } from "../src/pairing.js";
import { keyIdText, utf8 } from "../src/crypto/bytes.js";
import { seal, sealedBodyLength } from "../src/crypto/seal.js";

const id = keyIdText(Uint8Array.from({ length: 32 }, (_, i) => 255 - i));

test("an invite is read from the fragment, its ID written the one way", () => {
  const route = "abc_DEF-1".padEnd(43, "x");
  assert.deepEqual(readInvite(`#id=${id}&route=${route}&name=Ada%27s%20Mac`), { bridgeId: id, route, name: "Ada's Mac" });
  assert.deepEqual(readInvite(`#id=${id.toLowerCase().replace(/-/g, "")}&route=${route}`), { bridgeId: id, route, name: "" });
  assert.equal(readInvite(`#id=${id}`), null, "no route");
  assert.equal(readInvite(`#id=${id}&route=${route.slice(1)}`), null, "a route is 43 characters");
  assert.equal(readInvite(`#id=${id}&route=${route.slice(1)}+`), null, "of base64url");
  assert.equal(readInvite(`#id=${id.slice(0, -2)}&route=${route}`), null, "not 32 bytes");
  assert.equal(readInvite(`#open=${id}:req`), null, "not an invite");
  assert.equal(readInvite(`#id=${id}&route=${route}&name=${"x".repeat(100)}`)!.name.length, 64, "the name is cut to 64");
});

test("refusals map to what the app shows", () => {
  const failure = (status: number, error: string) => classify(status, { error }).failure;
  assert.equal(failure(503, "bridge_offline"), "offline");
  assert.equal(failure(401, "unknown_token"), "unpaired");
  assert.equal(failure(403, "not_paired"), "unpaired");
  assert.equal(failure(401, "unauthorized"), "unpaired");
  assert.equal(failure(429, "rate_limited"), "busy");
  assert.equal(failure(502, "bridge_closed"), "busy");
  assert.equal(failure(503, "gateway_unavailable"), "refused");
  const wrong = classify(403, { error: "pairing_pin_wrong", message: "m", details: { triesLeft: 3 } });
  assert.deepEqual([wrong.failure, wrong.code, wrong.details.triesLeft], ["refused", "pairing_pin_wrong", 3]);
  assert.equal(classify(404, { error: "NOT_FOUND" }).code, "not_found", "codes compare in lower case");
});

test("a refusal for a limit is resent no sooner than the wait it names, backing off; others are not", () => {
  const limit = (error: string, ms?: number) => (ms === undefined ? { error } : { error, retryAfterMs: ms });
  // The relay's own: the body's milliseconds first, then the header's seconds; never under the backoff.
  assert.equal(resendAfter(429, "1", limit("rate_limited", 100), 0), 500);
  assert.equal(resendAfter(429, "3", limit("rate_limited", 2600), 0), 2600);
  assert.equal(resendAfter(429, "2", limit("too_many_streams"), 0), 2000);
  assert.equal(resendAfter(503, "1", limit("relay_busy", 1000), 2), 2000);
  assert.equal(resendAfter(503, "1", limit("bridge_busy", 1000), 0), 1000);
  assert.equal(resendAfter(503, "1", limit("relay_overloaded", 1000), 1), 1000);
  // No wait named, one too long, the computer away, or a sealed refusal (the command ran): not resent.
  assert.equal(resendAfter(429, null, limit("rate_limited"), 0), null);
  assert.equal(resendAfter(429, "soon", limit("rate_limited"), 0), null);
  assert.equal(resendAfter(429, "3600", limit("rate_limited"), 0), null);
  assert.equal(resendAfter(503, "1", limit("bridge_offline"), 0), null);
  assert.equal(resendAfter(503, null, limit("gateway_unavailable"), 0), null);
  assert.equal(resendAfter(429, "1", { sealed: "…" } as never, 0), null);
  // As before: a replayed counter at once, bridge_closed after 0.5, 1, 2, 4 s.
  assert.equal(resendAfter(409, null, limit("replayed"), 3), 0);
  assert.deepEqual([0, 1, 2, 3].map((attempt) => resendAfter(502, null, limit("bridge_closed"), attempt)), [500, 1000, 2000, 4000]);
});

test("a sealed body's length is known before sealing", () => {
  const key = new Uint8Array(32);
  for (const [length, counter] of [[0, 1n], [1, 9n], [2, 10n], [3, 12345n], [49000, 4294967296n]] as const) {
    const body = JSON.stringify({ counter: Number(counter), sealed: seal(key, 0, counter, 0n, new Uint8Array(length)) });
    assert.equal(sealedBodyLength(length, counter), body.length, `${length} bytes under counter ${counter}`);
  }
});

test("a sealed SSE answer is read frame by frame, whatever its chunks, and a frame that does not open stops it", async () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const frames = [{ type: "accepted", run_id: "r1" }, { type: "agent", event: { runId: "r1", seq: 1, kind: "text_delta", text: "hé" } }, { type: "done", outcome: { status: "ok" } }];
  const text = frames.map((f, i) => `data: ${seal(key, 1, 7n, BigInt(i), utf8(JSON.stringify(f)))}\n\n`).join("");
  const bytes = utf8(`: comment\n\n${text}`);
  const chunked = (size: number) =>
    new ReadableStream<Uint8Array<ArrayBuffer>>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size));
        controller.close();
      },
    });
  for (const size of [1, 3, 64, bytes.length]) {
    const read = [];
    for await (const frame of sealedFrames(chunked(size), key, 7n)) read.push(frame);
    assert.deepEqual(read, frames, `chunks of ${size}`);
  }
  // Under another counter (a replayed answer) the first frame does not open.
  const replayed = sealedFrames(chunked(64), key, 8n);
  await assert.rejects(replayed.next(), (e: unknown) => e instanceof CallError && e.failure === "tampered");
});
