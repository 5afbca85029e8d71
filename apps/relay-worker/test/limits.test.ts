// The object's limits (docs/relay.md, "Limits"), each pushed over once.

import { runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { objectFailure } from "../src/index";
import {
  connect,
  connectBridge,
  expectBackOff,
  newBridgeKey,
  newToken,
  openStream,
  type Peer,
  relay,
  stubFor,
  type Token,
  text,
} from "./helpers";

/** Reads the bridge's frames until the CLOSE for `stream`, checking its reason. */
async function expectCloseFrame(bridge: Peer, stream: number, reason: string): Promise<number> {
  let data = 0;
  for (;;) {
    const frame = await bridge.frame();
    if (frame.kind === 3) {
      expect([frame.stream, text(frame.body)]).toEqual([stream, reason]);
      return data;
    }
    expect([frame.kind, frame.stream]).toEqual([2, stream]);
    data++;
  }
}

/** Whole tokens a bucket of `perSecond` can have earned since `started`. */
function earned(perSecond: number, started: number): number {
  return Math.floor(((Date.now() - started) / 1000) * perSecond);
}

describe("limits", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("closes a stream whose node sends more than 65536 bytes at once with 1009", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { node, stream } = await openStream(key.id, token, bridge);
    node.ws.send(new Uint8Array(65537));
    expect(await node.closed()).toEqual({ code: 1009, reason: "message_too_big", skipped: 0 });
    expect(await expectCloseFrame(bridge, stream, "message_too_big")).toBe(0);
    bridge.ws.close();
  });

  it("closes a stream over 400 messages in a burst with 4008", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { node, stream } = await openStream(key.id, token, bridge);
    const started = Date.now();
    for (let i = 0; i < 2000; i++) node.ws.send(new Uint8Array([i & 255]));
    expect(await node.closed()).toEqual({ code: 4008, reason: "rate_limited", skipped: 0 });
    const forwarded = await expectCloseFrame(bridge, stream, "rate_limited");
    // The burst, plus what 200 a second earned while this ran.
    expect(forwarded).toBeGreaterThanOrEqual(400);
    expect(forwarded).toBeLessThanOrEqual(400 + earned(200, started));
    bridge.ws.close();
  });

  it("closes a stream over 16 MiB in a burst with 4008, counting all of the token's streams", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const first = await openStream(key.id, token, bridge);
    const second = await openStream(key.id, token, bridge);
    // Messages of 64 KiB, 16 MiB being 256 of them; fewer than 400 in all, so that only bytes can trip.
    const chunk = new Uint8Array(65536);
    const started = Date.now();
    for (let i = 0; i < 150; i++) first.node.ws.send(chunk);
    for (let i = 0; i < 150; i++) {
      const frame = await bridge.frame();
      expect([frame.kind, frame.stream, frame.body.length]).toEqual([2, first.stream, 65536]);
    }
    for (let i = 0; i < 249; i++) second.node.ws.send(chunk);
    expect(await second.node.closed()).toEqual({ code: 4008, reason: "rate_limited", skipped: 0 });
    const forwarded = 150 + (await expectCloseFrame(bridge, second.stream, "rate_limited"));
    // The burst, plus what 8 MiB (128 messages) a second earned while this ran.
    expect(forwarded).toBeGreaterThanOrEqual(256);
    expect(forwarded).toBeLessThanOrEqual(256 + earned(128, started));
    first.node.ws.close();
    bridge.ws.close();
  });

  it("refuses a ninth open stream of one token with 429 too_many_streams", async () => {
    const key = await newBridgeKey();
    const [busy, other] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [busy, other]);
    const streams: Peer[] = [];
    for (let i = 0; i < 8; i++) streams.push((await openStream(key.id, busy, bridge)).node);
    await expectBackOff(await connect(key.id, busy), 429, "too_many_streams");
    // Another token is not affected, and a closed stream frees its place.
    (await openStream(key.id, other, bridge)).node.ws.close();
    expect((await bridge.frame()).kind).toBe(3);
    streams.pop()!.ws.close();
    expect((await bridge.frame()).kind).toBe(3);
    streams.push((await openStream(key.id, busy, bridge)).node);
    for (const node of streams) node.ws.close();
    bridge.ws.close();
  });

  it("refuses new streams of one token over 20 in a burst with 429 rate_limited", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    // Open and close one stream at a time, so that only the rate can refuse.
    const started = Date.now();
    let opened = 0;
    for (; opened < 200; opened++) {
      const response = await connect(key.id, token);
      if (response.status !== 101) {
        await expectBackOff(response, 429, "rate_limited");
        break;
      }
      expect((await bridge.frame()).kind).toBe(1);
      response.webSocket!.accept();
      response.webSocket!.close();
      expect((await bridge.frame()).kind).toBe(3);
    }
    // The burst, plus what 10 a second earned while this ran.
    expect(opened).toBeGreaterThanOrEqual(20);
    expect(opened).toBeLessThanOrEqual(20 + earned(10, started));
    bridge.ws.close();
  });

  it("names the wait until the next opening: 100 ms after the burst, and lets it in then", async () => {
    let now = Date.now();
    vi.spyOn(Date, "now").mockImplementation(() => now);
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    for (let i = 0; i < 20; i++) {
      const response = await connect(key.id, token);
      expect(response.status).toBe(101);
      response.webSocket!.accept();
      response.webSocket!.close();
      expect((await bridge.frame()).kind).toBe(1);
      expect((await bridge.frame()).kind).toBe(3);
    }
    expect(await expectBackOff(await connect(key.id, token), 429, "rate_limited")).toBe(100);
    now += 60;
    expect(await expectBackOff(await connect(key.id, token), 429, "rate_limited")).toBe(40);
    now += 40;
    const again = await connect(key.id, token);
    expect(again.status).toBe(101);
    again.webSocket!.accept();
    again.webSocket!.close();
    bridge.ws.close();
  });

  it("refuses stream 257 of a bridge with 503 relay_busy", async () => {
    const key = await newBridgeKey();
    const tokens: Token[] = [];
    for (let i = 0; i < 33; i++) tokens.push(await newToken());
    const bridge = await connectBridge(key, tokens);
    const nodes: Peer[] = [];
    for (let i = 0; i < 256; i++) nodes.push((await openStream(key.id, tokens[i % 32]!, bridge)).node);
    await expectBackOff(await connect(key.id, tokens[32]!), 503, "relay_busy");
    nodes.pop()!.ws.close();
    expect((await bridge.frame()).kind).toBe(3);
    nodes.push((await openStream(key.id, tokens[32]!, bridge)).node);
    bridge.ws.close();
    for (const node of nodes) expect((await node.closed()).code).toBe(1012);
  });

  it("takes a set of 4096 token hashes, and drops a bridge that sends 4097 with 1008", async () => {
    const key = await newBridgeKey();
    const last = await newToken();
    const set = Array.from({ length: 4095 }, (_, i) => i.toString(16).padStart(64, "0"));
    const bridge = await connectBridge(key);
    bridge.ws.send(JSON.stringify({ type: "tokens", set: [...set, last.hash] }));
    await expect.poll(async () => (await connect(key.id, last)).status).toBe(101);
    bridge.ws.send(JSON.stringify({ type: "tokens", set: [...set, last.hash, "f".repeat(64)] }));
    const closed = await bridge.closed();
    expect([closed.code, closed.reason]).toEqual([1008, "too_many_tokens"]);
  });
});

describe("past the object", () => {
  it("answers a request the object fails under with 503 relay_unavailable and Retry-After, never a bare error", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const answer = relay("/v1/chat", {
      method: "POST",
      headers: { "Lanyard-Bridge": key.id, Authorization: `Bearer ${token.token}` },
      body: "hello",
    });
    expect((await bridge.frame()).kind).toBe(1);
    expect((await bridge.frame()).kind).toBe(2);
    // The runtime resets the object with the request in it (as Cloudflare does when it moves or restarts one).
    await runInDurableObject(stubFor(key.id), (_, ctx) => {
      try {
        ctx.abort("reset");
      } catch {
        // abort() throws into the code that calls it, by design.
      }
    }).catch(() => undefined);
    await expectBackOff(await answer, 503, "relay_unavailable");
  });

  it("names an overloaded object's refusal relay_overloaded", async () => {
    const overloaded = Object.assign(new Error("Durable Object is overloaded."), { overloaded: true });
    await expectBackOff(objectFailure(overloaded), 503, "relay_overloaded");
    await expectBackOff(objectFailure(new Error("Network connection lost.")), 503, "relay_unavailable");
  });
});
