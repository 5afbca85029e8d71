// Node streams through the object: admission, OPEN/DATA/CLOSE both ways, revocation, status.

import { describe, expect, it } from "vitest";
import {
  connect,
  connectBridge,
  expectError,
  frame,
  newBridgeKey,
  newToken,
  openStream,
  setTokens,
  status,
  text,
} from "./helpers";

describe("admission", () => {
  it("answers 503 bridge_offline at once when no bridge has ever connected", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    await expectError(await connect(key.id, token), 503, "bridge_offline");
    expect(await (await status(key.id, token)).json()).toEqual({ online: false });
  });

  it("answers 503 bridge_offline to a proved bridge that has not sent its token set yet", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key);
    await expectError(await connect(key.id, token), 503, "bridge_offline");
    expect(await (await status(key.id, token)).json()).toEqual({ online: false });
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("takes an empty token set as a set: every token is unknown", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, []);
    bridge.ws.send(JSON.stringify({ type: "tokens", set: [] }));
    await expect.poll(async () => (await status(key.id, token)).status).toBe(401);
    await expectError(await connect(key.id, token), 401, "unknown_token");
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("refuses an unknown token with 401, and the bridge hears nothing of it", async () => {
    const key = await newBridgeKey();
    const known = await newToken();
    const stranger = await newToken();
    const bridge = await connectBridge(key, [known]);
    await expectError(await connect(key.id, stranger), 401, "unknown_token");
    await expectError(await status(key.id, stranger), 401, "unknown_token");
    // The next thing the bridge hears is the known token's stream, and it is stream 1: no OPEN was sent
    // and no stream id spent for the stranger.
    const { node, stream } = await openStream(key.id, known, bridge);
    expect(stream).toBe(1);
    node.ws.close();
    bridge.ws.close();
  });

  it("keeps refusing unknown tokens while the bridge is away, from the stored set", async () => {
    const key = await newBridgeKey();
    const known = await newToken();
    const stranger = await newToken();
    const bridge = await connectBridge(key, [known]);
    bridge.ws.close();
    await expect.poll(async () => (await (await status(key.id, known)).json()) as unknown).toEqual({ online: false });
    await expectError(await connect(key.id, stranger), 401, "unknown_token");
    await expectError(await connect(key.id, known), 503, "bridge_offline");
  });
});

describe("a node stream", () => {
  it("carries bytes exactly, both ways, and closes both ways", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    expect(await (await status(key.id, token)).json()).toEqual({ online: true });

    const { node, stream } = await openStream(key.id, token, bridge);
    const every = Uint8Array.from({ length: 256 }, (_, i) => i);
    const largest = crypto.getRandomValues(new Uint8Array(65536));
    for (const bytes of [every, new Uint8Array([0]), largest]) {
      node.ws.send(bytes);
      expect(await bridge.frame()).toEqual({ kind: 2, stream, body: bytes });
    }
    for (const bytes of [largest, every.slice().reverse(), new Uint8Array([255])]) {
      bridge.ws.send(frame(2, stream, bytes));
      expect(await node.binary()).toEqual(bytes);
    }

    // The node closes: the bridge hears CLOSE with an empty reason.
    node.ws.close(1000, "done");
    expect(await bridge.frame()).toEqual({ kind: 3, stream, body: new Uint8Array() });

    // The bridge closes another stream with a reason: the node hears 4004 and that reason.
    const second = await openStream(key.id, token, bridge);
    expect(second.stream).toBe(stream + 1);
    bridge.ws.send(frame(3, second.stream, "session over"));
    expect(await second.node.closed()).toEqual({ code: 4004, reason: "session over", skipped: 0 });

    // Without a reason: a normal close.
    const third = await openStream(key.id, token, bridge);
    bridge.ws.send(frame(3, third.stream));
    expect(await third.node.closed()).toEqual({ code: 1000, reason: "", skipped: 0 });

    // Frames for the ended streams, or for streams that never were, are ignored; the link stays up.
    bridge.ws.send(frame(2, stream, "late"));
    bridge.ws.send(frame(3, second.stream, "again"));
    bridge.ws.send(frame(2, 999_999, "nobody"));
    const fourth = await openStream(key.id, token, bridge);
    fourth.node.ws.send(new Uint8Array([7]));
    expect(await bridge.frame()).toEqual({ kind: 2, stream: fourth.stream, body: new Uint8Array([7]) });
    fourth.node.ws.close();
    bridge.ws.close();
  });

  it("answers a node's close with its code at once, and a bridge's", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    for (const code of [1000, 1001, 4321]) {
      const { node, stream } = await openStream(key.id, token, bridge);
      node.ws.close(code, "bye");
      expect(await node.closed(1000)).toEqual({ code, reason: "", skipped: 0 });
      expect(await bridge.frame()).toEqual({ kind: 3, stream, body: new Uint8Array() });
    }
    bridge.ws.close(1001, "going away");
    expect(await bridge.closed(1000)).toEqual({ code: 1001, reason: "", skipped: 0 });
  });

  it("keeps streams apart", async () => {
    const key = await newBridgeKey();
    const [alice, bob] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [alice, bob]);
    const a = await openStream(key.id, alice, bridge);
    const b = await openStream(key.id, bob, bridge);
    bridge.ws.send(frame(2, b.stream, "for bob"));
    bridge.ws.send(frame(2, a.stream, "for alice"));
    expect(text(await b.node.binary())).toBe("for bob");
    expect(text(await a.node.binary())).toBe("for alice");
    b.node.ws.send(new TextEncoder().encode("from bob"));
    expect(await bridge.frame()).toEqual({ kind: 2, stream: b.stream, body: new TextEncoder().encode("from bob") });
    a.node.ws.close();
    b.node.ws.close();
    bridge.ws.close();
  });

  it("closes a node that sends text with 1003, and tells the bridge", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { node, stream } = await openStream(key.id, token, bridge);
    node.ws.send("hello");
    expect(await node.closed()).toEqual({ code: 1003, reason: "text_message", skipped: 0 });
    const close = await bridge.frame();
    expect([close.kind, close.stream, text(close.body)]).toEqual([3, stream, "text_message"]);
    bridge.ws.close();
  });

  it("closes every stream with 1012 when the bridge socket goes", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const first = await openStream(key.id, token, bridge);
    const second = await openStream(key.id, token, bridge);
    bridge.ws.close(1001, "going away");
    expect(await first.node.closed()).toEqual({ code: 1012, reason: "bridge_offline", skipped: 0 });
    expect(await second.node.closed()).toEqual({ code: 1012, reason: "bridge_offline", skipped: 0 });
  });

  it("drops a bridge that sends a malformed frame with 1008, and its streams with 1012", async () => {
    for (const bad of [new Uint8Array([2, 0, 0]), frame(2, 1), frame(1, 1, "{}"), frame(9, 1, "x")]) {
      const key = await newBridgeKey();
      const token = await newToken();
      const bridge = await connectBridge(key, [token]);
      const { node } = await openStream(key.id, token, bridge);
      bridge.ws.send(bad);
      expect(await bridge.closed()).toEqual({ code: 1008, reason: "bad_frame", skipped: 0 });
      expect(await node.closed()).toEqual({ code: 1012, reason: "bridge_offline", skipped: 0 });
    }
  });

  it("drops a bridge that sends a text message other than a token set with 1008", async () => {
    for (const bad of ["{}", "[]", "nonsense", JSON.stringify({ type: "tokens", set: ["ABC"] })]) {
      const key = await newBridgeKey();
      const bridge = await connectBridge(key, []);
      bridge.ws.send(bad);
      expect(await bridge.closed()).toEqual({ code: 1008, reason: "bad_message", skipped: 0 });
    }
  });
});

describe("revocation", () => {
  it("closes a revoked token's streams with 4003 at once, tells the bridge, and refuses it after", async () => {
    const key = await newBridgeKey();
    const [kept, revoked] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [kept, revoked]);
    const keptStream = await openStream(key.id, kept, bridge);
    const gone = await openStream(key.id, revoked, bridge);

    bridge.ws.send(JSON.stringify({ type: "tokens", set: [kept.hash] }));
    expect(await gone.node.closed()).toEqual({ code: 4003, reason: "revoked", skipped: 0 });
    const close = await bridge.frame();
    expect([close.kind, close.stream, text(close.body)]).toEqual([3, gone.stream, "revoked"]);
    await expectError(await connect(key.id, revoked), 401, "unknown_token");
    await expectError(await status(key.id, revoked), 401, "unknown_token");

    // The other token's stream is untouched.
    keptStream.node.ws.send(new Uint8Array([1]));
    expect(await bridge.frame()).toEqual({ kind: 2, stream: keptStream.stream, body: new Uint8Array([1]) });
    keptStream.node.ws.close();
    bridge.ws.close();
  });

  it("lets a token back in when a later set holds it again", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    await setTokens(bridge, key.id, [], [token]);
    await expectError(await connect(key.id, token), 401, "unknown_token");
    await setTokens(bridge, key.id, [token]);
    const { node } = await openStream(key.id, token, bridge);
    node.ws.close();
    bridge.ws.close();
  });
});
