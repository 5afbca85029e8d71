// HTTP streams (docs/relay.md, "HTTP streams"): a simple client's POST carried to the bridge as one stream,
// the bridge's head and streamed body carried back.

import { afterEach, describe, expect, it, vi } from "vitest";
import {
  captureLogs,
  connect,
  connectBridge,
  expectBackOff,
  expectError,
  expectKeepsNone,
  frame,
  holds,
  holdsText,
  keptBy,
  newBridgeKey,
  newToken,
  openStream,
  type Peer,
  relay,
  setTokens,
  status,
  text,
  type Token,
} from "./helpers";

const ROUTES = ["pair/start", "pair/confirm", "chat"] as const;
type Route = (typeof ROUTES)[number];

const utf8 = (value: string) => new TextEncoder().encode(value);
const head = (status: number, contentType: string) => utf8(JSON.stringify({ status, contentType }));

/** A simple client's POST; `bridgeId` and `token` go in their headers when given. */
function post(
  route: string,
  bridgeId: string | undefined,
  token: Token | undefined,
  body?: BodyInit,
  init: RequestInit = {},
): Promise<Response> {
  const headers: Record<string, string> = {};
  if (bridgeId !== undefined) headers["Lanyard-Bridge"] = bridgeId;
  if (token !== undefined) headers.Authorization = `Bearer ${token.token}`;
  return relay(`/v1/${route}`, { method: "POST", headers, body, ...init });
}

/**
 * An HTTP stream the relay opened: the bridge's OPEN and the one DATA with the body are checked. The answer
 * is still pending (it waits for the bridge's head).
 */
async function openHttp(
  id: string,
  token: Token,
  bridge: Peer,
  route: Route = "chat",
  body: Uint8Array = utf8("hello"),
  init: RequestInit = {},
): Promise<{ answer: Promise<Response>; stream: number }> {
  const answer = post(route, id, token, body, init);
  const open = await bridge.frame();
  expect(open.kind).toBe(1);
  expect(JSON.parse(text(open.body))).toEqual({ tokenHash: token.hash, http: route });
  expect(await bridge.frame()).toEqual({ kind: 2, stream: open.stream, body });
  return { answer, stream: open.stream };
}

/** Reads exactly `length` more bytes of a body; fails if it ends before. */
async function readBytes(reader: ReadableStreamDefaultReader<Uint8Array>, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`the body ended after ${at} of ${length} bytes`);
    expect(at + value.length).toBeLessThanOrEqual(length);
    out.set(value, at);
    at += value.length;
  }
  return out;
}

/** A body that arrives in pieces, with no Content-Length (chunked). */
function chunked(...pieces: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(piece);
      controller.close();
    },
  });
}

/** The object's live map of open HTTP streams (a private field). */
function httpStreamsOf(kept: Awaited<ReturnType<typeof keptBy>>): Map<number, unknown> {
  const https = (kept.fields as Record<string, unknown>).httpStreams;
  expect(https).toBeInstanceOf(Map);
  return https as Map<number, unknown>;
}

async function expectCloseFrame(bridge: Peer, stream: number, reason: string): Promise<void> {
  const close = await bridge.frame();
  expect([close.kind, close.stream, text(close.body)]).toEqual([3, stream, reason]);
}

describe("an HTTP stream", () => {
  it("carries the request body and the answer exactly, on each route", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const every = Uint8Array.from({ length: 256 }, (_, i) => i);
    const largest = crypto.getRandomValues(new Uint8Array(65536));
    let last = 0;
    for (const route of ROUTES) {
      for (const body of [every, largest]) {
        const { answer, stream } = await openHttp(key.id, token, bridge, route, body);
        expect(stream).toBeGreaterThan(last);
        last = stream;
        const pieces = [every.slice().reverse(), largest, new Uint8Array([0])];
        bridge.ws.send(frame(2, stream, head(201, "application/octet-stream")));
        for (const piece of pieces) bridge.ws.send(frame(2, stream, piece));
        bridge.ws.send(frame(3, stream));
        const response = await answer;
        expect(response.status).toBe(201);
        expect(response.headers.get("content-type")).toBe("application/octet-stream");
        expect(response.headers.get("cache-control")).toBe("no-store");
        expect(new Uint8Array(await response.arrayBuffer())).toEqual(new Uint8Array(pieces.flatMap((p) => [...p])));
      }
    }
    // The bridge's error answers pass as they are; the stream's end frees its place.
    const { answer, stream } = await openHttp(key.id, token, bridge);
    bridge.ws.send(frame(2, stream, head(403, "application/json")));
    bridge.ws.send(frame(2, stream, '{"error":"nope"}'));
    bridge.ws.send(frame(3, stream));
    const response = await answer;
    expect([response.status, await response.text()]).toEqual([403, '{"error":"nope"}']);
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("streams the answer: the client reads each piece before the bridge sends the next", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { answer, stream } = await openHttp(key.id, token, bridge, "chat", utf8('{"sealed":"…"}'));
    bridge.ws.send(frame(2, stream, head(200, "text/event-stream")));
    bridge.ws.send(frame(2, stream, "data: one\n\n"));
    const response = await answer;
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const reader = response.body!.getReader();
    expect(text(await readBytes(reader, 11))).toBe("data: one\n\n");
    bridge.ws.send(frame(2, stream, "data: two\n\n"));
    expect(text(await readBytes(reader, 11))).toBe("data: two\n\n");
    bridge.ws.send(frame(3, stream));
    expect((await reader.read()).done).toBe(true);
    bridge.ws.close();
  });

  it("is a stream of the bridge socket: ids go on from the node streams' counter", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const node = await openStream(key.id, token, bridge);
    const http = await openHttp(key.id, token, bridge);
    const next = await openStream(key.id, token, bridge);
    expect([node.stream, http.stream, next.stream]).toEqual([1, 2, 3]);
    // Frames for the node streams still reach the node streams.
    bridge.ws.send(frame(2, next.stream, "for the node"));
    expect(text(await next.node.binary())).toBe("for the node");
    bridge.ws.send(frame(3, http.stream, "gone"));
    await expectError(await http.answer, 502, "bridge_closed");
    bridge.ws.close();
  });
});

describe("HTTP stream admission, in order", () => {
  it("answers another method with 405, before anything else", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    for (const route of ROUTES) {
      await expectError(await relay(`/v1/${route}`), 405, "method_not_allowed");
      for (const method of ["GET", "PUT", "DELETE"]) {
        const init = { method, headers: { "Lanyard-Bridge": key.id, Authorization: `Bearer ${token.token}` } };
        await expectError(await relay(`/v1/${route}`, init), 405, "method_not_allowed");
      }
    }
  });

  it("wants a well-formed bridge ID in Lanyard-Bridge: 400 bad_bridge_id", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    for (const route of ROUTES) {
      await expectError(await post(route, undefined, token, "x"), 400, "bad_bridge_id");
      await expectError(await post(route, undefined, undefined), 400, "bad_bridge_id");
      for (const id of ["", key.id.toLowerCase(), key.id.replace(/-/g, ""), key.id.slice(0, -1) + "B", "x"]) {
        await expectError(await post(route, id, token, "x"), 400, "bad_bridge_id");
      }
    }
  });

  it("wants a well-formed bearer token: 401 missing_token, never echoing it", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    for (const authorization of ["", `Basic ${token.token}`, `Bearer ${token.token}x`, "Bearer short"]) {
      const init = { method: "POST", headers: { "Lanyard-Bridge": key.id, Authorization: authorization }, body: "x" };
      const response = await relay("/v1/chat", init);
      expect(await response.clone().text()).not.toContain(token.token);
      await expectError(response, 401, "missing_token");
    }
    await expectError(await post("chat", key.id, undefined, "x"), 401, "missing_token");
  });

  it("refuses an unknown token with 401, and the bridge hears nothing of it", async () => {
    const key = await newBridgeKey();
    const [known, stranger] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [known]);
    for (const route of ROUTES) {
      await expectError(await post(route, key.id, stranger, "hello"), 401, "unknown_token");
      // Even with a body too large, or none: the token comes first.
      await expectError(await post(route, key.id, stranger, new Uint8Array(70_000)), 401, "unknown_token");
      await expectError(await post(route, key.id, stranger), 401, "unknown_token");
    }
    expect(bridge.queued).toBe(0);
    // No stream id was spent for the stranger.
    const { answer, stream } = await openHttp(key.id, known, bridge);
    expect(stream).toBe(1);
    bridge.ws.send(frame(3, stream));
    await expectError(await answer, 502, "bridge_closed");
    bridge.ws.close();
  });

  it("answers 503 bridge_offline with no bridge, and before the bridge's first token set", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    await expectError(await post("pair/start", key.id, token, "hello"), 503, "bridge_offline");
    const bridge = await connectBridge(key);
    // Never 401 before a token set: the client must not take itself for revoked.
    await expectError(await post("pair/start", key.id, token, "hello"), 503, "bridge_offline");
    await expectError(await post("chat", key.id, token, new Uint8Array(70_000)), 503, "bridge_offline");
    expect(bridge.queued).toBe(0);
    await setTokens(bridge, key.id, [token]);
    bridge.ws.close();
    await expect.poll(async () => (await (await status(key.id, token)).json()) as unknown).toEqual({ online: false });
    await expectError(await post("chat", key.id, token, "hello"), 503, "bridge_offline");
  });

  it("refuses a body over 65536 bytes with 413, by its Content-Length or as it comes", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    await expectError(await post("chat", key.id, token, new Uint8Array(65537)), 413, "body_too_large");
    await expectError(await post("chat", key.id, token, new Uint8Array(1 << 20)), 413, "body_too_large");
    // A Content-Length over the limit is refused before a byte is read: this body would never end.
    const endless = new FixedLengthStream(1 << 20);
    void endless.writable.getWriter().write(new Uint8Array(1024));
    await expectError(await post("chat", key.id, token, endless.readable), 413, "body_too_large");
    const piece = new Uint8Array(16384);
    const over = chunked(piece, piece, piece, piece, new Uint8Array(1));
    await expectError(await post("chat", key.id, token, over), 413, "body_too_large");
    expect(bridge.queued).toBe(0);
    // 65536 bytes in pieces, without a Content-Length, are taken, and reach the bridge as one DATA.
    const whole = crypto.getRandomValues(new Uint8Array(65536));
    const answer = post("chat", key.id, token, chunked(...[0, 1, 2, 3].map((i) => whole.slice(i * 16384, (i + 1) * 16384))));
    const open = await bridge.frame();
    expect(open.kind).toBe(1);
    expect(await bridge.frame()).toEqual({ kind: 2, stream: open.stream, body: whole });
    bridge.ws.send(frame(3, open.stream));
    await expectError(await answer, 502, "bridge_closed");
    bridge.ws.close();
  });

  it("refuses an empty body with 400 empty_body", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    for (const route of ROUTES) {
      await expectError(await post(route, key.id, token), 400, "empty_body");
      await expectError(await post(route, key.id, token, new Uint8Array()), 400, "empty_body");
      await expectError(await post(route, key.id, token, chunked()), 400, "empty_body");
    }
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });
});

describe("HTTP stream limits", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("counts HTTP streams with node streams: 8 per token, then 429 too_many_streams", async () => {
    const key = await newBridgeKey();
    const [busy, other] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [busy, other]);
    const nodes: Peer[] = [];
    const https: { answer: Promise<Response>; stream: number }[] = [];
    for (let i = 0; i < 4; i++) {
      nodes.push((await openStream(key.id, busy, bridge)).node);
      https.push(await openHttp(key.id, busy, bridge));
    }
    await expectBackOff(await post("chat", key.id, busy, "hello"), 429, "too_many_streams");
    await expectBackOff(await connect(key.id, busy), 429, "too_many_streams");
    expect(bridge.queued).toBe(0);
    // Another token is not affected, and an HTTP stream that ends frees its place, for either kind.
    const elsewhere = await openHttp(key.id, other, bridge);
    bridge.ws.send(frame(3, elsewhere.stream));
    await expectError(await elsewhere.answer, 502, "bridge_closed");
    const first = https.shift()!;
    bridge.ws.send(frame(2, first.stream, head(200, "text/plain")));
    bridge.ws.send(frame(3, first.stream));
    expect(await (await first.answer).text()).toBe("");
    nodes.push((await openStream(key.id, busy, bridge)).node);
    await expectBackOff(await post("chat", key.id, busy, "hello"), 429, "too_many_streams");
    bridge.ws.close();
    for (const node of nodes) expect((await node.closed()).code).toBe(1012);
    for (const { answer } of https) await expectError(await answer, 503, "bridge_offline");
  });

  it("counts HTTP streams with node streams: 256 per bridge, then 503 relay_busy", async () => {
    const key = await newBridgeKey();
    const tokens: Token[] = [];
    for (let i = 0; i < 33; i++) tokens.push(await newToken());
    const bridge = await connectBridge(key, tokens);
    const https: { answer: Promise<Response>; stream: number }[] = [];
    // 32 tokens of 8 streams each, the last one of each an HTTP stream.
    for (let i = 0; i < 256; i++) {
      const token = tokens[i % 32]!;
      if (i < 224) await openStream(key.id, token, bridge);
      else https.push(await openHttp(key.id, token, bridge));
    }
    await expectBackOff(await post("chat", key.id, tokens[32]!, "hello"), 503, "relay_busy");
    await expectBackOff(await connect(key.id, tokens[32]!), 503, "relay_busy");
    const first = https.shift()!;
    bridge.ws.send(frame(3, first.stream));
    await expectError(await first.answer, 502, "bridge_closed");
    https.push(await openHttp(key.id, tokens[32]!, bridge));
    bridge.ws.close();
    for (const { answer } of https) await expectError(await answer, 503, "bridge_offline");
  });

  it("counts a sealed call as a message, not an opening: a busy app's calls pass after the openings run out", async () => {
    // The clock stands still, so that the buckets earn nothing back while this runs.
    vi.spyOn(Date, "now").mockReturnValue(Date.now());
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    // 20 openings in a burst (node streams, then pairing steps), then none is left for either kind.
    for (let i = 0; i < 10; i++) {
      (await openStream(key.id, token, bridge)).node.ws.close();
      expect((await bridge.frame()).kind).toBe(3);
    }
    for (let i = 0; i < 10; i++) {
      const { answer, stream } = await openHttp(key.id, token, bridge, i % 2 === 0 ? "pair/start" : "pair/confirm");
      bridge.ws.send(frame(3, stream));
      await expectError(await answer, 502, "bridge_closed");
    }
    expect(await expectBackOff(await connect(key.id, token), 429, "rate_limited")).toBe(100);
    expect(await expectBackOff(await post("pair/start", key.id, token, "hi"), 429, "rate_limited")).toBe(100);
    // Sealed calls still pass: 100 of them, well past the openings' burst.
    for (let i = 0; i < 100; i++) {
      const { answer, stream } = await openHttp(key.id, token, bridge, "chat");
      bridge.ws.send(frame(2, stream, head(200, "application/json")));
      bridge.ws.send(frame(3, stream));
      expect((await answer).status).toBe(200);
    }
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("counts each body as one message, and its length as bytes, of the token's rates", async () => {
    // The clock stands still, so that the buckets earn nothing back while this runs.
    vi.spyOn(Date, "now").mockReturnValue(Date.now());
    const key = await newBridgeKey();
    const [chatty, heavy] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [chatty, heavy]);

    // 399 messages from a node stream, then a body: the 400th message of the burst. Then none is left.
    const a = await openStream(key.id, chatty, bridge);
    for (let i = 0; i < 399; i++) a.node.ws.send(new Uint8Array([1]));
    for (let i = 0; i < 399; i++) expect((await bridge.frame()).stream).toBe(a.stream);
    const last = await openHttp(key.id, chatty, bridge);
    bridge.ws.send(frame(3, last.stream));
    await expectError(await last.answer, 502, "bridge_closed");
    await expectBackOff(await post("chat", key.id, chatty, "hello"), 429, "rate_limited");
    a.node.ws.send(new Uint8Array([1]));
    expect(await a.node.closed()).toEqual({ code: 4008, reason: "rate_limited", skipped: 0 });
    await expectCloseFrame(bridge, a.stream, "rate_limited");

    // 16 MiB less 5 bytes from a node stream, then a body of 5 bytes: the burst exactly. Then none is left.
    const b = await openStream(key.id, heavy, bridge);
    const chunk = new Uint8Array(65536);
    for (let i = 0; i < 255; i++) b.node.ws.send(chunk);
    b.node.ws.send(new Uint8Array(65531));
    for (let i = 0; i < 256; i++) expect((await bridge.frame()).stream).toBe(b.stream);
    const exact = await openHttp(key.id, heavy, bridge, "chat", utf8("hello"));
    bridge.ws.send(frame(3, exact.stream));
    await expectError(await exact.answer, 502, "bridge_closed");
    await expectBackOff(await post("chat", key.id, heavy, "x"), 429, "rate_limited");
    expect(bridge.queued).toBe(0);
    b.node.ws.close();
    bridge.ws.close();
  });
});

describe("the bridge's answer", () => {
  it("CLOSE before the head: 502 bridge_closed, with or without a reason", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    for (const reason of ["", "busy"]) {
      const { answer, stream } = await openHttp(key.id, token, bridge);
      bridge.ws.send(frame(3, stream, reason));
      await expectError(await answer, 502, "bridge_closed");
    }
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("CLOSE before the head for the bridge's own limits: a refusal to back off from", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const limits = [
      ["rate-limited", 429, "rate_limited"],
      ["too-many-exchanges", 503, "bridge_busy"],
    ] as const;
    for (const [reason, status, error] of limits) {
      const { answer, stream } = await openHttp(key.id, token, bridge);
      bridge.ws.send(frame(3, stream, reason));
      await expectBackOff(await answer, status, error);
    }
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("CLOSE with a reason after the head cuts the body", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { answer, stream } = await openHttp(key.id, token, bridge);
    bridge.ws.send(frame(2, stream, head(200, "text/event-stream")));
    bridge.ws.send(frame(2, stream, "data: partial"));
    const reader = (await answer).body!.getReader();
    expect(text(await readBytes(reader, 13))).toBe("data: partial");
    bridge.ws.send(frame(3, stream, "agent crashed"));
    await expect(reader.read()).rejects.toThrow();
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("a first DATA that is not a head: 502 bad_gateway, CLOSE bad_head, and the bridge socket stays", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const bad = [
      utf8("not json"),
      utf8("[200]"),
      utf8("null"),
      new Uint8Array([0xff, 0xfe]),
      utf8(JSON.stringify({ contentType: "text/plain" })),
      utf8(JSON.stringify({ status: "200", contentType: "text/plain" })),
      head(199, "text/plain"),
      head(600, "text/plain"),
      head(200.5, "text/plain"),
      head(204, "text/plain"), // a status whose response cannot have a body
      utf8(JSON.stringify({ status: 200 })),
      head(200, ""),
      head(200, "x".repeat(101)),
      head(200, "text/plain\r\nset-cookie: a=b"),
      head(200, " text/plain"),
      head(200, "text/plain; charset=ü"),
    ];
    for (const first of bad) {
      const { answer, stream } = await openHttp(key.id, token, bridge);
      bridge.ws.send(frame(2, stream, first));
      await expectError(await answer, 502, "bad_gateway");
      await expectCloseFrame(bridge, stream, "bad_head");
      // Later frames for it are ignored.
      bridge.ws.send(frame(2, stream, head(200, "text/plain")));
      bridge.ws.send(frame(3, stream));
    }
    expect(await (await status(key.id, token)).json()).toEqual({ online: true });
    // The edges of what a head may be.
    for (const [code, type] of [
      [200, "x"],
      [599, "x".repeat(100)],
    ] as const) {
      const { answer, stream } = await openHttp(key.id, token, bridge);
      bridge.ws.send(frame(2, stream, utf8(JSON.stringify({ status: code, contentType: type, extra: 1 }))));
      bridge.ws.send(frame(3, stream));
      const response = await answer;
      expect([response.status, response.headers.get("content-type")]).toEqual([code, type]);
      expect((await response.arrayBuffer()).byteLength).toBe(0);
    }
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });
});

describe("an HTTP stream's end", () => {
  it("the bridge socket going: 503 bridge_offline before the head, a cut body after", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const waiting = await openHttp(key.id, token, bridge);
    const streaming = await openHttp(key.id, token, bridge);
    bridge.ws.send(frame(2, streaming.stream, head(200, "text/event-stream")));
    bridge.ws.send(frame(2, streaming.stream, "data: one\n\n"));
    const reader = (await streaming.answer).body!.getReader();
    expect(text(await readBytes(reader, 11))).toBe("data: one\n\n");
    bridge.ws.close(1001, "going away");
    await expectError(await waiting.answer, 503, "bridge_offline");
    await expect(reader.read()).rejects.toThrow();
  });

  it("a newer bridge socket replacing the live one ends its HTTP streams", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const old = await connectBridge(key, [token]);
    const waiting = await openHttp(key.id, token, old);
    const streaming = await openHttp(key.id, token, old);
    old.ws.send(frame(2, streaming.stream, head(200, "text/plain")));
    const reader = (await streaming.answer).body!.getReader();
    const newer = await connectBridge(key, [token]);
    expect((await old.closed()).code).toBe(4002);
    await expectError(await waiting.answer, 503, "bridge_offline");
    await expect(reader.read()).rejects.toThrow();
    // The newer socket hears nothing of the old streams, and the next stream is new.
    const next = await openHttp(key.id, token, newer);
    expect(next.stream).toBe(streaming.stream + 1);
    newer.ws.send(frame(3, next.stream));
    await expectError(await next.answer, 502, "bridge_closed");
    newer.ws.close();
  });

  it("the client cancelling the body: the bridge hears an empty CLOSE", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const { answer, stream } = await openHttp(key.id, token, bridge);
    bridge.ws.send(frame(2, stream, head(200, "text/event-stream")));
    bridge.ws.send(frame(2, stream, "data: one\n\n"));
    const reader = (await answer).body!.getReader();
    expect(text(await readBytes(reader, 11))).toBe("data: one\n\n");
    await reader.cancel();
    await expectCloseFrame(bridge, stream, "");
    // What the bridge sends for it after that is ignored, and the link stays.
    bridge.ws.send(frame(2, stream, "data: two\n\n"));
    bridge.ws.send(frame(3, stream));
    expect(await (await status(key.id, token)).json()).toEqual({ online: true });

    // A client that goes away once the bridge has ended the stream, its body not all read yet (1 MiB: more
    // than the pipes hold), is no news to the bridge.
    const late = await openHttp(key.id, token, bridge);
    bridge.ws.send(frame(2, late.stream, head(200, "application/octet-stream")));
    for (let i = 0; i < 16; i++) bridge.ws.send(frame(2, late.stream, new Uint8Array(65536)));
    bridge.ws.send(frame(3, late.stream));
    const lateReader = (await late.answer).body!.getReader();
    expect((await lateReader.read()).done).toBe(false);
    await expect.poll(async () => httpStreamsOf(await keptBy(key.id)).size).toBe(0);
    await lateReader.cancel();
    const next = await openHttp(key.id, token, bridge);
    expect(next.stream).toBe(late.stream + 1);
    bridge.ws.send(frame(3, next.stream));
    await expectError(await next.answer, 502, "bridge_closed");
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });

  it("the client aborting its request before the head: the bridge hears an empty CLOSE", async () => {
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const abort = new AbortController();
    const { answer, stream } = await openHttp(key.id, token, bridge, "chat", utf8("hello"), { signal: abort.signal });
    abort.abort();
    await expect(answer).rejects.toThrow();
    await expectCloseFrame(bridge, stream, "");
    bridge.ws.close();
  });

  it("revocation: 401 revoked before the head, a cut body after, and CLOSE revoked to the bridge", async () => {
    const key = await newBridgeKey();
    const [kept, revoked] = [await newToken(), await newToken()];
    const bridge = await connectBridge(key, [kept, revoked]);
    const waiting = await openHttp(key.id, revoked, bridge);
    const streaming = await openHttp(key.id, revoked, bridge);
    const untouched = await openHttp(key.id, kept, bridge);
    bridge.ws.send(frame(2, streaming.stream, head(200, "text/plain")));
    const reader = (await streaming.answer).body!.getReader();

    bridge.ws.send(JSON.stringify({ type: "tokens", set: [kept.hash] }));
    await expectError(await waiting.answer, 401, "revoked");
    await expect(reader.read()).rejects.toThrow();
    const closes = [await bridge.frame(), await bridge.frame()];
    expect(closes.map((c) => [c.kind, c.stream, text(c.body)])).toEqual([
      [3, waiting.stream, "revoked"],
      [3, streaming.stream, "revoked"],
    ]);
    await expectError(await post("chat", key.id, revoked, "hello"), 401, "unknown_token");

    // The other token's stream is untouched.
    bridge.ws.send(frame(2, untouched.stream, head(200, "text/plain")));
    bridge.ws.send(frame(2, untouched.stream, "still here"));
    bridge.ws.send(frame(3, untouched.stream));
    expect(await (await untouched.answer).text()).toBe("still here");
    expect(bridge.queued).toBe(0);
    bridge.ws.close();
  });
});

describe("HTTP stream blindness", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("keeps no request or response body byte in storage, attachments, fields or logs", async () => {
    const logged = captureLogs();
    const key = await newBridgeKey();
    const token = await newToken();
    const bridge = await connectBridge(key, [token]);
    const up = utf8("REQUEST-BODY-SECRET-5d01c4");
    const down = utf8("RESPONSE-BODY-SECRET-e93a72");
    const { answer, stream } = await openHttp(key.id, token, bridge, "chat", up);
    bridge.ws.send(frame(2, stream, head(200, "text/event-stream")));
    bridge.ws.send(frame(2, stream, down));
    const reader = (await answer).body!.getReader();
    expect(await readBytes(reader, down.length)).toEqual(down);

    // Looked at mid-stream, with the stream in the object's fields, and again once it is over.
    const during = await keptBy(key.id);
    // The search does reach into the open HTTP stream (the map is live: search it now): its token hash is there.
    const https = httpStreamsOf(during);
    expect(https.size).toBe(1);
    expect(holds(https, utf8(token.hash))).toBe(true);
    expectKeepsNone(during, [up, down]);
    bridge.ws.send(frame(3, stream));
    expect((await reader.read()).done).toBe(true);
    expectKeepsNone(await keptBy(key.id), [up, down]);
    for (const marker of [up, down]) expect(logged.some((line) => holdsText(line, marker))).toBe(false);
    expect(logged.some((line) => line.includes("http_stream_open"))).toBe(true);
    bridge.ws.close();
  });
});
