// The Worker's routes and the bridge link: challenge, key proof, timeout, replacement.

import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { BridgeSocket } from "../src/relay";
import {
  b64url,
  connect,
  connectBridge,
  expectError,
  newBridgeKey,
  newToken,
  openBridgeSocket,
  openStream,
  proofText,
  relay,
  sendProof,
  status,
  stubFor,
} from "./helpers";

describe("routes", () => {
  it("answers health", async () => {
    const response = await relay("/v1/health");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it("refuses a malformed bridge ID on every bridge route", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const headers = { Upgrade: "websocket", Authorization: `Bearer ${token.token}` };
    for (const id of [key.id.toLowerCase(), key.id.replace(/-/g, ""), key.id.slice(0, -1) + "B", "x"]) {
      for (const action of ["status", "connect", "bridge"]) {
        await expectError(await relay(`/v1/bridges/${id}/${action}`, { headers }), 400, "bad_bridge_id");
      }
    }
  });

  it("asks for a WebSocket upgrade on the socket routes", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const headers = { Authorization: `Bearer ${token.token}` };
    await expectError(await relay(`/v1/bridges/${key.id}/connect`, { headers }), 426, "websocket_required");
    await expectError(await relay(`/v1/bridges/${key.id}/bridge`), 426, "websocket_required");
  });

  it("wants a well-formed bearer token, and never echoes it", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    for (const authorization of [undefined, "", `Basic ${token.token}`, `Bearer ${token.token}x`, "Bearer short"]) {
      const headers: Record<string, string> = { Upgrade: "websocket" };
      if (authorization !== undefined) headers.Authorization = authorization;
      await expectError(await relay(`/v1/bridges/${key.id}/connect`, { headers }), 401, "missing_token");
      await expectError(await relay(`/v1/bridges/${key.id}/status`, { headers }), 401, "missing_token");
    }
    const bridge = await connectBridge(key, [token]);
    const stranger = await newToken();
    const refused = await status(key.id, stranger);
    expect(await refused.text()).not.toContain(stranger.token);
    bridge.ws.close();
  });

  it("answers unknown paths and methods in JSON", async () => {
    const key = await newBridgeKey();
    await expectError(await relay("/v1/nothing"), 404, "not_found");
    await expectError(await relay(`/v1/bridges/${key.id}/other`), 404, "not_found");
    await expectError(await relay("/v1/health", { method: "POST" }), 405, "method_not_allowed");
  });
});

describe("bridge key proof", () => {
  it("makes a proved socket ready", async () => {
    const key = await newBridgeKey();
    const { peer, nonce } = await openBridgeSocket(key.id);
    await sendProof(peer, key, nonce);
    expect(await peer.json()).toEqual({ type: "ready" });
    const state = await runInDurableObject(stubFor(key.id), (_, ctx) =>
      ctx.getWebSockets("bridge").map((ws) => ws.deserializeAttachment() as BridgeSocket),
    );
    expect(state).toEqual([expect.objectContaining({ bridgeId: key.id, nonce, state: "ready" })]);
    peer.ws.close();
  });

  it("holds at most 4 sockets that owe their proof; a proved one makes room", async () => {
    const key = await newBridgeKey();
    const opened = [];
    for (let i = 0; i < 4; i++) opened.push(await openBridgeSocket(key.id));
    const refused = await relay(`/v1/bridges/${key.id}/bridge`, { headers: { Upgrade: "websocket" } });
    await expectError(refused, 429, "too_many_unproved");
    await sendProof(opened[0]!.peer, key, opened[0]!.nonce);
    expect(await opened[0]!.peer.json()).toEqual({ type: "ready" });
    const fifth = await openBridgeSocket(key.id);
    for (const { peer } of [...opened, fifth]) peer.ws.close();
  });

  it("sends a fresh nonce on every socket", async () => {
    const key = await newBridgeKey();
    const first = await openBridgeSocket(key.id);
    const second = await openBridgeSocket(key.id);
    expect(first.nonce).not.toBe(second.nonce);
    first.peer.ws.close();
    second.peer.ws.close();
  });

  it("refuses a wrong signature with 4001", async () => {
    const key = await newBridgeKey();
    const { peer, nonce } = await openBridgeSocket(key.id);
    const signature = await key.sign(proofText(key.id, nonce));
    signature[10]! ^= 1;
    peer.ws.send(JSON.stringify({ type: "proof", key: b64url(key.raw), signature: b64url(signature) }));
    expect(await peer.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
  });

  it("refuses a key that does not hash to the ID, even with a good signature by that key", async () => {
    const claimed = await newBridgeKey();
    const other = await newBridgeKey();
    const { peer, nonce } = await openBridgeSocket(claimed.id);
    const signature = await other.sign(proofText(claimed.id, nonce));
    peer.ws.send(JSON.stringify({ type: "proof", key: b64url(other.raw), signature: b64url(signature) }));
    expect(await peer.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
  });

  it("refuses a proof of another socket's nonce (a replay)", async () => {
    const key = await newBridgeKey();
    const first = await openBridgeSocket(key.id);
    const second = await openBridgeSocket(key.id);
    await sendProof(second.peer, key, first.nonce);
    expect(await second.peer.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
    // The first socket is untouched and can still prove itself once.
    await sendProof(first.peer, key, first.nonce);
    expect(await first.peer.json()).toEqual({ type: "ready" });
    // Its nonce is answered now: the same proof again is a replay.
    await sendProof(first.peer, key, first.nonce);
    expect(await first.peer.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
  });

  it("refuses anything but a proof as the first message", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const firsts: (string | Uint8Array)[] = [
      JSON.stringify({ type: "tokens", set: [token.hash] }),
      "not json",
      JSON.stringify({ type: "proof", key: b64url(key.raw) }),
      new Uint8Array([2, 0, 0, 0, 1, 42]),
    ];
    for (const first of firsts) {
      const { peer } = await openBridgeSocket(key.id);
      peer.ws.send(first);
      expect(await peer.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
    }
    expect(await (await status(key.id, token)).json()).toEqual({ online: false });
  });

  it("closes a socket that has not proved itself within 10 s with 4001 timeout (by the object's alarm)", async () => {
    const key = await newBridgeKey();
    const stub = stubFor(key.id);
    const { peer } = await openBridgeSocket(key.id);
    const alarm = await runInDurableObject(stub, (_, ctx) => ctx.storage.getAlarm());
    expect(alarm).toEqual(expect.any(Number));
    // Not yet due: the alarm keeps the socket and sets itself again.
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(peer.queued).toBe(0);
    // Ten seconds pass, as far as the socket's attachment can tell.
    await runInDurableObject(stub, (_, ctx) => {
      for (const ws of ctx.getWebSockets("bridge")) {
        const socket = ws.deserializeAttachment() as BridgeSocket;
        ws.serializeAttachment({ ...socket, openedAt: socket.openedAt - 10_000 });
      }
    });
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await peer.closed()).toEqual({ code: 4001, reason: "timeout", skipped: 0 });
  });

  it("refuses a proof that arrives after 10 s with 4001 timeout", async () => {
    const key = await newBridgeKey();
    const { peer, nonce } = await openBridgeSocket(key.id);
    await runInDurableObject(stubFor(key.id), (_, ctx) => {
      const [ws] = ctx.getWebSockets("bridge");
      const socket = ws!.deserializeAttachment() as BridgeSocket;
      ws!.serializeAttachment({ ...socket, openedAt: socket.openedAt - 10_001 });
    });
    await sendProof(peer, key, nonce);
    expect(await peer.closed()).toEqual({ code: 4001, reason: "timeout", skipped: 0 });
  });

  it("takes a token set sent right behind the proof, without waiting for ready", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const { peer, nonce } = await openBridgeSocket(key.id);
    await sendProof(peer, key, nonce);
    peer.ws.send(JSON.stringify({ type: "tokens", set: [token.hash] }));
    expect(await peer.json()).toEqual({ type: "ready" });
    const { node, stream } = await openStream(key.id, token, peer);
    expect(stream).toBe(1);
    node.ws.close();
    peer.ws.close();
  });
});

describe("bridge replacement", () => {
  it("closes the older socket with 4002 and its streams with 1012; the newer one carries on", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const old = await connectBridge(key, [token]);
    const { node } = await openStream(key.id, token, old);

    const newer = await connectBridge(key, [token]);
    expect(await old.closed()).toEqual({ code: 4002, reason: "replaced", skipped: 0 });
    expect(await node.closed()).toEqual({ code: 1012, reason: "bridge_offline", skipped: 0 });

    const again = await openStream(key.id, token, newer);
    expect(again.stream).toBe(2); // ids are never reused, across bridge sockets too
    again.node.ws.send(new Uint8Array([1, 2, 3]));
    const data = await newer.frame();
    expect(data).toEqual({ kind: 2, stream: 2, body: new Uint8Array([1, 2, 3]) });
    expect(old.queued).toBe(0);
    again.node.ws.close();
    newer.ws.close();
  });

  it("leaves the live bridge alone while a newer socket has not proved itself, or fails to", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const live = await connectBridge(key, [token]);
    const { peer: intruder } = await openBridgeSocket(key.id);
    intruder.ws.send(JSON.stringify({ type: "proof", key: b64url(key.raw), signature: b64url(new Uint8Array(64)) }));
    expect(await intruder.closed()).toEqual({ code: 4001, reason: "bad_proof", skipped: 0 });
    expect(await (await status(key.id, token)).json()).toEqual({ online: true });
    const { node } = await openStream(key.id, token, live);
    node.ws.close();
    live.ws.close();
  });

  it("refuses node streams with 503 bridge_offline once the bridge has gone", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    bridge.ws.close(1000, "bye");
    for (let i = 0; i < 100; i++) {
      const answer = (await (await status(key.id, token)).json()) as { online: boolean };
      if (!answer.online) break;
    }
    await expectError(await connect(key.id, token), 503, "bridge_offline");
  });
});
