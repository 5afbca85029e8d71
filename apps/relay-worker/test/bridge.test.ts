// The Worker's routes and the bridge link: the key proof in the upgrade request, replays, the clock window,
// replacement, and what strangers get: no slot, no object, no storage.

import { evictDurableObject, listDurableObjectIds, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { BridgeSocket } from "../src/relay";
import {
  b64url,
  bridgeRequest,
  connect,
  connectBridge,
  expectError,
  newBridgeKey,
  newToken,
  openStream,
  Peer,
  proofHeaders,
  relay,
  status,
  stubFor,
} from "./helpers";

/** The ID under which the runtime keeps the object of bridge `id` (its storage file's name). */
const objectIdOf = (id: string) => env.RELAY.idFromName(id).toString();

/** Whether the runtime holds any storage at all for the object of bridge `id`. */
async function hasObject(id: string): Promise<boolean> {
  return (await listDurableObjectIds(env.RELAY)).some((object) => object.toString() === objectIdOf(id));
}

/** What an object has written: its storage entries, its alarm and its own tables. */
function written(id: string) {
  return runInDurableObject(stubFor(id), async (_, ctx) => ({
    entries: [...ctx.storage.kv.list()].length,
    alarm: await ctx.storage.getAlarm(),
    tables: [...ctx.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'")]
      .map((row) => String(row.name))
      .filter((name) => !name.startsWith("_cf_")),
  }));
}

async function expectRefused(response: Response, error: string): Promise<void> {
  expect(response.status).toBe(401);
  expect(response.webSocket).toBeNull();
  expect(((await response.json()) as { error: string }).error).toBe(error);
}

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
      // Refused by the Worker alone: no object exists for the ID.
      expect(await hasObject(id)).toBe(false);
    }
  });

  it("asks for a WebSocket upgrade on the socket routes", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const headers = { Authorization: `Bearer ${token.token}` };
    await expectError(await relay(`/v1/bridges/${key.id}/connect`, { headers }), 426, "websocket_required");
    const { Upgrade: _, ...withoutUpgrade } = await proofHeaders(key);
    await expectError(await bridgeRequest(key.id, withoutUpgrade), 426, "websocket_required");
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
  it("takes a proved bridge at once: the socket is live, with nothing to say first", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const state = await runInDurableObject(stubFor(key.id), (_, ctx) =>
      ctx.getWebSockets("bridge").map((ws) => ws.deserializeAttachment() as BridgeSocket),
    );
    expect(state).toEqual([{ role: "bridge", state: "ready" }]);
    expect(await (await status(key.id, token)).json()).toEqual({ online: true });
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("refuses a missing or malformed proof with 401 bad_proof, before any object is touched", async () => {
    const key = await newBridgeKey();
    const good = await proofHeaders(key);
    const variants: Record<string, string>[] = [{ Upgrade: "websocket" }];
    for (const name of Object.keys(good).filter((name) => name !== "Upgrade")) {
      const { [name]: _, ...without } = good;
      variants.push(without);
      for (const bad of ["", "x", `${good[name]}A`]) variants.push({ ...good, [name]: bad });
    }
    variants.push({ ...good, "Lanyard-Bridge-Time": `0${good["Lanyard-Bridge-Time"]}` });
    variants.push({ ...good, "Lanyard-Bridge-Time": `${good["Lanyard-Bridge-Time"]}.0` });
    for (const headers of variants) await expectRefused(await bridgeRequest(key.id, headers), "bad_proof");
    expect(await hasObject(key.id)).toBe(false);
  });

  it("refuses a wrong signature, a key that is not the ID's, and a proof for another host, path or bridge", async () => {
    const claimed = await newBridgeKey();
    const other = await newBridgeKey();
    const flipped = await proofHeaders(claimed);
    const signature = Uint8Array.from(atob(flipped["Lanyard-Bridge-Signature"]!.replace(/-/g, "+").replace(/_/g, "/")), (c) =>
      c.charCodeAt(0),
    );
    signature[10]! ^= 1;
    flipped["Lanyard-Bridge-Signature"] = b64url(signature);
    const refused = [
      flipped,
      // The other key signs for the claimed ID, and says so: its hash is not the ID.
      await proofHeaders(other, { id: claimed.id }),
      // The other key's own proof, sent on the claimed bridge's route.
      await proofHeaders(other),
      // The claimed key's real key, but a signature by the other key.
      { ...(await proofHeaders(other, { id: claimed.id })), "Lanyard-Bridge-Key": b64url(claimed.raw) },
      await proofHeaders(claimed, { host: "relay.elsewhere.test" }),
      await proofHeaders(claimed, { path: `/v1/bridges/${other.id}/bridge` }),
      await proofHeaders(claimed, { path: "/base/v1/bridges/" + claimed.id + "/bridge" }),
      // Not a point on the curve.
      { ...(await proofHeaders(claimed)), "Lanyard-Bridge-Key": b64url(new Uint8Array(32).fill(0xff)) },
    ];
    for (const headers of refused) await expectRefused(await bridgeRequest(claimed.id, headers), "bad_proof");
    expect(await hasObject(claimed.id)).toBe(false);
  });

  it("takes a proof within 60 s of the relay's clock either way, and refuses one outside it, saying the relay's time", async () => {
    const key = await newBridgeKey();
    for (const offset of [-59_000, 59_000]) {
      const response = await bridgeRequest(key.id, await proofHeaders(key, { time: String(Date.now() + offset) }));
      expect(response.status).toBe(101);
      new Peer(response.webSocket!).ws.close();
    }
    for (const offset of [-61_000, 61_000, -Date.now()]) {
      const before = Date.now();
      const response = await bridgeRequest(key.id, await proofHeaders(key, { time: String(Date.now() + offset) }));
      expect(response.status).toBe(401);
      const body = (await response.json()) as { error: string; relayTimeMs: number };
      expect(body.error).toBe("proof_expired");
      expect(body.relayTimeMs).toBeGreaterThanOrEqual(before);
      expect(body.relayTimeMs).toBeLessThanOrEqual(Date.now());
    }
  });

  it("refuses a replayed proof with 401 proof_replayed, after an eviction too; the live link stays", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const headers = await proofHeaders(key);
    const first = await bridgeRequest(key.id, headers);
    expect(first.status).toBe(101);
    const bridge = new Peer(first.webSocket!);
    bridge.ws.send(JSON.stringify({ type: "tokens", set: [token.hash] }));
    await expect.poll(async () => ((await (await status(key.id, token)).json()) as { online: boolean }).online).toBe(true);

    await expectRefused(await bridgeRequest(key.id, headers), "proof_replayed");
    await evictDurableObject(stubFor(key.id));
    await expectRefused(await bridgeRequest(key.id, headers), "proof_replayed");
    expect(bridge.queued).toBe(0);
    const { node } = await openStream(key.id, token, bridge);
    node.ws.close();
    bridge.ws.close();
  });

  it("gives 50 strangers' sockets no slot: the real bridge's new link is live within 2 s while they knock", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const old = await connectBridge(key, [token]);
    const stranger = await newBridgeKey();
    // Fifty sockets without a valid proof, opened side by side with the bridge's reconnection: none gets in,
    // none is held, and the bridge does not wait behind them.
    const knocks = Array.from({ length: 50 }, async (_, i) => {
      const headers = i % 2 === 0 ? { Upgrade: "websocket" } : await proofHeaders(stranger, { id: key.id });
      return bridgeRequest(key.id, headers);
    });
    const started = Date.now();
    const reconnect = (async () => {
      const bridge = await connectBridge(key);
      bridge.ws.send(JSON.stringify({ type: "tokens", set: [token.hash] }));
      const { node } = await openStream(key.id, token, bridge);
      return { bridge, node, ready: Date.now() - started };
    })();
    const [answers, { bridge, node, ready }] = await Promise.all([Promise.all(knocks), reconnect]);
    expect(ready).toBeLessThan(2000);
    for (const answer of answers) await expectRefused(answer, "bad_proof");
    expect(await old.closed()).toEqual({ code: 4002, reason: "replaced", skipped: 0 });
    const sockets = await runInDurableObject(stubFor(key.id), (_, ctx) => ctx.getWebSockets("bridge").length);
    // The old socket (closed, until the runtime lets it go) and the live one: none of the strangers'.
    expect(sockets).toBeLessThanOrEqual(2);
    node.ws.close();
    bridge.ws.close();
  });

  it("writes nothing for 400 made-up bridge IDs on any route, and makes no object for their bridge route", async () => {
    const token = await newToken();
    const ids: string[] = [];
    for (let i = 0; i < 400; i++) ids.push((await newBridgeKey()).id);
    const auth = { Authorization: `Bearer ${token.token}` };
    for (const [i, id] of ids.entries()) {
      const answers = [await bridgeRequest(id, { Upgrade: "websocket" })];
      // The bridge route only, for half of them: those must have no object at all.
      if (i % 2 === 1) {
        answers.push(await relay(`/v1/bridges/${id}/status`, { headers: auth }));
        answers.push(await connect(id, token));
        const post = { method: "POST", headers: { ...auth, "Lanyard-Bridge": id }, body: "x" };
        answers.push(await relay("/v1/pair/start", post));
        answers.push(await relay("/v1/chat", post));
      }
      for (const answer of answers) await answer.arrayBuffer();
    }
    const objects = new Set((await listDurableObjectIds(env.RELAY)).map((object) => object.toString()));
    for (const [i, id] of ids.entries()) {
      if (i % 2 === 0) expect(objects.has(objectIdOf(id))).toBe(false);
      else expect(await written(id)).toEqual({ entries: 0, alarm: null, tables: [] });
    }
  }, 120_000);
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

  it("leaves the live bridge alone when a newer socket fails its proof", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const live = await connectBridge(key, [token]);
    const intruder = { ...(await proofHeaders(key)), "Lanyard-Bridge-Signature": b64url(new Uint8Array(64)) };
    await expectRefused(await bridgeRequest(key.id, intruder), "bad_proof");
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
