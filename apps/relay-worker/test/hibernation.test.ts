// State across eviction, and what the object keeps of the bytes it carries (nothing).
//
// What is proven here: `evictDurableObject` (default `webSockets: "hibernate"`) tears down the object's
// instance and keeps its WebSockets open, as the runtime does when it hibernates an idle object. The tests
// check that a new instance answers afterwards (the old one is gone with every field), and that the bridge's
// proof, each stream's id and token, the token set and the next stream id all survive, by using them. What
// is not proven: the billing side of hibernation (that Cloudflare stops charging duration), which no local
// runtime can show.

import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { BridgeSocket, NodeSocket, RelayObject } from "../src/relay";
import {
  captureLogs,
  connect,
  connectBridge,
  expectError,
  expectKeepsNone,
  frame,
  holds,
  holdsText,
  keptBy,
  newBridgeKey,
  newToken,
  openStream,
  stubFor,
} from "./helpers";

type Attachments = (BridgeSocket | NodeSocket)[];

async function inspect(id: string): Promise<{ instance: RelayObject; attachments: Attachments }> {
  return runInDurableObject(stubFor(id), (instance: RelayObject, ctx) => ({
    instance,
    attachments: ctx
      .getWebSockets()
      .map((ws) => ws.deserializeAttachment() as BridgeSocket | NodeSocket)
      .sort((x, y) => (x.role === "bridge" ? -1 : y.role === "bridge" ? 1 : 0)),
  }));
}

describe("hibernation", () => {
  it("keeps the proved bridge, the streams, the token set and the stream ids across eviction", async () => {
    const key = await newBridgeKey();
    const [alice, bob, stranger] = [await newToken(), await newToken(), await newToken()];
    const bridge = await connectBridge(key, [alice, bob]);
    const a = await openStream(key.id, alice, bridge);

    const before = await inspect(key.id);
    expect(before.attachments).toEqual([
      { role: "bridge", state: "ready" },
      { role: "node", stream: a.stream, tokenHash: alice.hash, ended: false },
    ]);

    // Without an eviction the same instance answers every time; after one, another.
    expect((await inspect(key.id)).instance).toBe(before.instance);
    await evictDurableObject(stubFor(key.id));
    const after = await inspect(key.id);
    expect(after.instance).not.toBe(before.instance);
    expect(after.attachments).toEqual(before.attachments);

    // The stream carries bytes both ways on the same stream id.
    a.node.ws.send(new Uint8Array([1, 2, 3]));
    expect(await bridge.frame()).toEqual({ kind: 2, stream: a.stream, body: new Uint8Array([1, 2, 3]) });
    bridge.ws.send(frame(2, a.stream, new Uint8Array([4, 5])));
    expect(await a.node.binary()).toEqual(new Uint8Array([4, 5]));

    // The token set came back from storage, and the stream ids go on after the block of 64 that a's came
    // from (the rest of it is skipped, never reused).
    await evictDurableObject(stubFor(key.id));
    await expectError(await connect(key.id, stranger), 401, "unknown_token");
    const b = await openStream(key.id, bob, bridge);
    expect([a.stream, b.stream]).toEqual([1, 65]);

    // The bridge is still proved (a token set is taken, with no new proof), and revocation finds alice's
    // stream by the token hash in its attachment.
    await evictDurableObject(stubFor(key.id));
    bridge.ws.send(JSON.stringify({ type: "tokens", set: [bob.hash] }));
    expect(await a.node.closed()).toEqual({ code: 4003, reason: "revoked", skipped: 0 });
    expect((await bridge.frame()).stream).toBe(a.stream);

    // And the bridge leaving after an eviction still ends the streams that began before it.
    await evictDurableObject(stubFor(key.id));
    bridge.ws.close();
    expect(await b.node.closed()).toEqual({ code: 1012, reason: "bridge_offline", skipped: 0 });
  });
});

describe("blindness", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("keeps no payload byte in storage, attachments, fields or logs", async () => {
    const logged = captureLogs();
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { node, stream } = await openStream(key.id, token, bridge);
    const up = new TextEncoder().encode("UPSTREAM-SECRET-a8f3e1");
    const down = new TextEncoder().encode("DOWNSTREAM-SECRET-77c2b9");
    node.ws.send(up);
    expect((await bridge.frame()).body).toEqual(up);
    bridge.ws.send(frame(2, stream, down));
    expect(await node.binary()).toEqual(down);

    expectKeepsNone(await keptBy(key.id), [up, down]);
    for (const marker of [up, down]) expect(logged.some((line) => holdsText(line, marker))).toBe(false);
    // The search itself can find what it looks for.
    expect(holds({ deep: [new Map([["k", up.slice().buffer]])] }, up)).toBe(true);
    expect(logged.length).toBeGreaterThan(0);
    node.ws.close();
    bridge.ws.close();
  });
});
