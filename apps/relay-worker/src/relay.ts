// RelayObject: one Durable Object per bridge, a blind pipe between the bridge's socket and its nodes' streams.
//
// It uses the WebSocket Hibernation API: the runtime may evict the object whenever no event is running and
// keep its sockets open, so nothing that must outlive an event lives in a field. What each socket is (the
// bridge, live or dropped, or a node stream, its stream id and token hash) is in the socket's attachment; the
// token set, the next stream id and the nonces of recent bridge proofs are in storage, and nothing is
// written there before a bridge has proved its key (the Worker checks the proof before the object is asked). Fields hold only a cache of the token
// set, the rate buckets, which may start afresh, and the HTTP streams: those live only as long as their
// request, and an in-flight request keeps the object from being evicted.
//
// The object never logs, stores or inspects stream bytes: DATA bodies and HTTP bodies are copied from one
// side to the other and dropped (the one thing it reads is the head the bridge answers an HTTP stream with).
// Its logs carry events, stream counts and close codes.

import { DurableObject } from "cloudflare:workers";
import { fromHex, toHex } from "./encoding";
import { type BridgeFrame, CLOSE, DATA, OPEN, decodeBridgeFrame, encodeFrame } from "./frames";
import {
  BODY_TOO_LARGE_HEADER,
  PROOF_NONCE_HEADER,
  PROOF_TIME_HEADER,
  TOKEN_HASH_HEADER,
  backOff,
  error,
  json,
} from "./http";
import { HttpStream, bridgeRefusal } from "./http-streams";
import { CAP_RETRY_MS, MAX_NODE_MESSAGE, MAX_STREAMS, MAX_STREAMS_PER_TOKEN, MAX_TOKENS, TokenRates } from "./limits";
import { PROOF_WINDOW_MS } from "./proof";

/** The bridge's socket, proved before it was accepted: `ready` while it is the live bridge, `done` once dropped. */
export interface BridgeSocket {
  role: "bridge";
  state: "ready" | "done";
}

/** One node stream; `ended` once either side has ended it, so that its end is reported only once. */
export interface NodeSocket {
  role: "node";
  stream: number;
  tokenHash: string;
  ended: boolean;
}

type Socket = BridgeSocket | NodeSocket;

const BRIDGE_TAG = "bridge";
const NODE_TAG = "node";
/** The object's path for HTTP streams; the route (`pair/start`, `pair/confirm`, `chat`) follows it. */
const HTTP_PATH = "/http/";
const tokenTag = (hash: string) => `token:${hash}`;
const streamTag = (stream: number) => `stream:${stream}`;

/** Storage keys. The set is kept packed, 32 bytes a hash, so that 4096 hashes fit in one 128 KiB value. */
const TOKENS_KEY = "tokens";
const NEXT_STREAM_KEY = "nextStream";
/** Nonces of the bridge's proofs still inside the proof window, each with its proof's time. */
const PROOF_NONCES_KEY = "proofNonces";

const TOKEN_HASH = /^[0-9a-f]{64}$/;
/** Close codes an endpoint may send (RFC 6455 7.4): not 1004 to 1006, 1015, nor the unassigned ones. */
const SENDABLE_CLOSE = /^(?:100[0-3]|100[7-9]|101[0-4]|[34][0-9]{3})$/;
const MAX_STREAM_ID = 0xffff_ffff;
/**
 * Stream ids are reserved in storage this many at a time, so that opening a stream (every sealed call is one)
 * writes to storage once in 64, not every time; an eviction forgets the rest of a block, which is skipped,
 * never reused (2^32 ids last 67 million evictions that open a stream).
 */
const STREAM_ID_BLOCK = 64;

const utf8 = (text: string) => new TextEncoder().encode(text);

function socketOf<T extends Socket>(ws: WebSocket): T {
  return ws.deserializeAttachment() as T;
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function log(event: string, fields: Record<string, number> = {}): void {
  console.log(JSON.stringify({ event, ...fields }));
}

export class RelayObject extends DurableObject<Env> {
  /**
   * Rates per token hash, in memory only: they start full again whenever the runtime evicts the object (as
   * it may once the object hibernates), so across an eviction a token may burst more than the table says.
   */
  private readonly rates = new Map<string, TokenRates>();
  /** Cache of the stored token set: `null` while the bridge has never sent one, `undefined` before reading. */
  private tokens: Set<string> | null | undefined;
  /** The open HTTP streams by stream id. */
  private readonly httpStreams = new Map<number, HttpStream>();
  /** The stream ids reserved in storage and not yet taken: `next` up to, not including, `end`. */
  private streamIds = { next: 0, end: 0 };

  override async fetch(request: Request): Promise<Response> {
    const tokenHash = request.headers.get(TOKEN_HASH_HEADER) ?? "";
    const { pathname } = new URL(request.url);
    if (pathname.startsWith(HTTP_PATH)) return this.openHttpStream(request, tokenHash, pathname.slice(HTTP_PATH.length));
    switch (pathname) {
      case "/bridge":
        return this.acceptBridge(
          request.headers.get(PROOF_NONCE_HEADER) ?? "",
          Number(request.headers.get(PROOF_TIME_HEADER)),
        );
      case "/connect":
        return this.connectNode(tokenHash);
      case "/status":
        return this.status(tokenHash);
    }
    return error(404, "not_found");
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const socket = socketOf(ws);
    if (socket.role === "node") return this.fromNode(ws, socket, message);
    if (socket.state === "ready") return this.fromBridge(ws, socket, message);
    // "done": the object has closed it and takes nothing more from it.
  }

  override async webSocketClose(ws: WebSocket, code: number): Promise<void> {
    this.gone(ws, code);
    // Answer the peer's close with its own code. Unanswered, a close that came through a proxy (as under
    // `wrangler dev`) waits out the peer's close timeout and ends as 1006.
    ws.close(SENDABLE_CLOSE.test(String(code)) ? code : 1000);
  }

  override async webSocketError(ws: WebSocket): Promise<void> {
    this.gone(ws, 1006);
  }

  /**
   * The bridge's socket, its proof already checked by the Worker: refused if the proof's nonce was used
   * before (a replay), else accepted as the live bridge, replacing an older one. Nothing awaited, so that
   * no other request comes between the nonce's check and its record.
   */
  private acceptBridge(nonce: string, time: number): Response {
    const now = Date.now();
    const recent: Record<string, number> = {};
    for (const [used, at] of Object.entries(this.ctx.storage.kv.get<Record<string, number>>(PROOF_NONCES_KEY) ?? {})) {
      // A proof older than the window is refused for its time, so its nonce need not be kept.
      if (at >= now - PROOF_WINDOW_MS) recent[used] = at;
    }
    if (nonce in recent) return error(401, "proof_replayed");
    recent[nonce] = time;
    this.ctx.storage.kv.put(PROOF_NONCES_KEY, recent);

    for (const other of this.ctx.getWebSockets(BRIDGE_TAG)) {
      const older = socketOf<BridgeSocket>(other);
      if (older.state === "ready") this.dropBridge(other, older, 4002, "replaced");
    }
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [BRIDGE_TAG]);
    server.serializeAttachment({ role: "bridge", state: "ready" } satisfies BridgeSocket);
    log("bridge_ready");
    return new Response(null, { status: 101, webSocket: client });
  }

  private fromBridge(ws: WebSocket, bridge: BridgeSocket, message: string | ArrayBuffer): void {
    if (typeof message === "string") return this.control(ws, bridge, message);
    const frame = decodeBridgeFrame(message);
    if (frame === null) return this.dropBridge(ws, bridge, 1008, "bad_frame");
    const http = this.httpStreams.get(frame.stream);
    if (http !== undefined) return this.toHttpClient(ws, frame, http);
    const target = this.ctx.getWebSockets(streamTag(frame.stream))[0];
    if (target === undefined) return; // unknown stream: ignored
    const node = socketOf<NodeSocket>(target);
    if (node.ended) return;
    if (frame.kind === DATA) target.send(frame.body);
    else this.endStream(target, node, frame.reason === "" ? 1000 : 4004, frame.reason, false);
  }

  /** A text message from the proved bridge: a `tokens` set is all it may send. */
  private control(ws: WebSocket, bridge: BridgeSocket, text: string): void {
    const message = parseObject(text);
    const set = message?.type === "tokens" ? message.set : undefined;
    if (!Array.isArray(set) || !set.every((hash) => typeof hash === "string" && TOKEN_HASH.test(hash))) {
      return this.dropBridge(ws, bridge, 1008, "bad_message");
    }
    if (set.length > MAX_TOKENS) return this.dropBridge(ws, bridge, 1008, "too_many_tokens");

    const tokens = new Set<string>(set);
    const packed = new Uint8Array(tokens.size * 32);
    [...tokens].forEach((hash, i) => packed.set(fromHex(hash), i * 32));
    this.ctx.storage.kv.put(TOKENS_KEY, packed);
    this.tokens = tokens;

    for (const hash of this.rates.keys()) if (!tokens.has(hash)) this.rates.delete(hash);
    let revoked = 0;
    for (const nodeWs of this.ctx.getWebSockets(NODE_TAG)) {
      const node = socketOf<NodeSocket>(nodeWs);
      if (node.ended || tokens.has(node.tokenHash)) continue;
      this.endStream(nodeWs, node, 4003, "revoked", true);
      revoked++;
    }
    for (const [stream, http] of this.httpStreams) {
      if (tokens.has(http.tokenHash)) continue;
      this.endHttpStream(stream, http, 401, "revoked", true);
      revoked++;
    }
    log("tokens", { tokens: tokens.size, revoked });
  }

  private connectNode(tokenHash: string): Response {
    const bridge = this.admit(tokenHash, true);
    if (bridge instanceof Response) return bridge;
    const stream = this.takeStreamId();
    if (stream === undefined) return error(503, "relay_busy");

    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server, [NODE_TAG, tokenTag(tokenHash), streamTag(stream)]);
    server.serializeAttachment({ role: "node", stream, tokenHash, ended: false } satisfies NodeSocket);
    bridge.send(encodeFrame(OPEN, stream, utf8(JSON.stringify({ tokenHash }))));
    log("stream_open", { streams: this.openStreams() });
    return new Response(null, { status: 101, webSocket: client });
  }

  /**
   * An HTTP stream: admitted as a node stream is, then its body is checked, counted in the token's rates
   * and sent to the bridge as one DATA behind the OPEN. The answer waits for the bridge's head.
   */
  private async openHttpStream(request: Request, tokenHash: string, route: string): Promise<Response> {
    // The Worker has read the body with its bound: it is at most MAX_HTTP_BODY bytes, or none when too large.
    const body = request.headers.has(BODY_TOO_LARGE_HEADER) ? null : new Uint8Array(await request.arrayBuffer());
    // A sealed call on a paired route is a message, not an opening (see TokenRates).
    const bridge = this.admit(tokenHash, route !== "chat");
    if (bridge instanceof Response) return bridge;
    if (body === null) return error(413, "body_too_large");
    if (body.length === 0) return error(400, "empty_body");
    const now = Date.now();
    const wait = this.ratesOf(tokenHash, now).message(body.length, now);
    if (wait > 0) return backOff(429, "rate_limited", wait);
    const stream = this.takeStreamId();
    if (stream === undefined) return error(503, "relay_busy");

    const http = new HttpStream(tokenHash);
    this.httpStreams.set(stream, http);
    // The request's signal aborts when the client goes away, before the head or while reading the body
    // (wrangler.jsonc turns it on: `enable_request_signal`).
    request.signal.addEventListener("abort", () => this.httpClientGone(stream));
    bridge.send(encodeFrame(OPEN, stream, utf8(JSON.stringify({ tokenHash, http: route }))));
    bridge.send(encodeFrame(DATA, stream, body));
    log("http_stream_open", { streams: this.openStreams() });
    return http.response;
  }

  /**
   * The checks before any new stream, in the order of docs/relay.md: the live bridge's socket when the
   * stream may open, or the refusal. An `opening` (a node stream, a pairing step) counts in the token's
   * rate of openings.
   */
  private admit(tokenHash: string, opening: boolean): WebSocket | Response {
    const tokens = this.tokenSet();
    if (tokens !== null && !tokens.has(tokenHash)) return error(401, "unknown_token");
    const bridge = this.liveBridge();
    // Before its bridge's first token set the object cannot tell a good token from a revoked one, and
    // refusing them all would tell every node it was revoked: so it says that the bridge is not there.
    if (bridge === undefined || tokens === null) return error(503, "bridge_offline");
    if (this.openStreams() >= MAX_STREAMS) return backOff(503, "relay_busy", CAP_RETRY_MS);
    if (this.openStreams(tokenHash) >= MAX_STREAMS_PER_TOKEN) return backOff(429, "too_many_streams", CAP_RETRY_MS);
    if (opening) {
      const now = Date.now();
      const opens = this.ratesOf(tokenHash, now).opens;
      if (!opens.take(1, now)) return backOff(429, "rate_limited", opens.waitMs(1, now));
    }
    return bridge;
  }

  /** A new stream id, or undefined when none is left. */
  private takeStreamId(): number | undefined {
    if (this.streamIds.next === this.streamIds.end) {
      // Storage holds the first id not reserved yet.
      const next = this.ctx.storage.kv.get<number>(NEXT_STREAM_KEY) ?? 1;
      // Ids are never reused, so after 2^32 - 1 streams this object has none left (at ten streams a second,
      // thirteen years on).
      if (next > MAX_STREAM_ID) return undefined;
      const end = Math.min(next + STREAM_ID_BLOCK, MAX_STREAM_ID + 1);
      this.ctx.storage.kv.put(NEXT_STREAM_KEY, end);
      this.streamIds = { next, end };
    }
    return this.streamIds.next++;
  }

  private status(tokenHash: string): Response {
    const tokens = this.tokenSet();
    if (tokens !== null && !tokens.has(tokenHash)) return error(401, "unknown_token");
    return json(200, { online: tokens !== null && this.liveBridge() !== undefined });
  }

  private fromNode(ws: WebSocket, node: NodeSocket, message: string | ArrayBuffer): void {
    if (node.ended) return;
    if (typeof message === "string") return this.endStream(ws, node, 1003, "text_message", true);
    const size = message.byteLength;
    if (size > MAX_NODE_MESSAGE) return this.endStream(ws, node, 1009, "message_too_big", true);
    const now = Date.now();
    if (this.ratesOf(node.tokenHash, now).message(size, now) > 0) {
      return this.endStream(ws, node, 4008, "rate_limited", true);
    }
    // An empty message carries no bytes of the stream, and DATA may not be empty.
    if (size > 0) this.liveBridge()?.send(encodeFrame(DATA, node.stream, new Uint8Array(message)));
  }

  /** The peer closed the socket, or it broke. */
  private gone(ws: WebSocket, code: number): void {
    const socket = socketOf(ws);
    if (socket.role === "node") {
      if (socket.ended) return;
      ws.serializeAttachment({ ...socket, ended: true } satisfies NodeSocket);
      this.liveBridge()?.send(encodeFrame(CLOSE, socket.stream, new Uint8Array()));
      log("stream_closed", { code, streams: this.openStreams() });
    } else if (socket.state !== "done") {
      ws.serializeAttachment({ ...socket, state: "done" } satisfies BridgeSocket);
      if (socket.state === "ready") this.endAllStreams();
      log("bridge_closed", { code });
    }
  }

  /** Closes a bridge socket from the object's side; when it was the live one, its streams go with it. */
  private dropBridge(ws: WebSocket, bridge: BridgeSocket, code: number, reason: string): void {
    ws.serializeAttachment({ ...bridge, state: "done" } satisfies BridgeSocket);
    ws.close(code, reason);
    if (bridge.state === "ready") this.endAllStreams();
    log("bridge_dropped", { code });
  }

  private endAllStreams(): void {
    for (const ws of this.ctx.getWebSockets(NODE_TAG)) {
      const node = socketOf<NodeSocket>(ws);
      if (!node.ended) this.endStream(ws, node, 1012, "bridge_offline", false);
    }
    for (const [stream, http] of this.httpStreams) this.endHttpStream(stream, http, 503, "bridge_offline", false);
  }

  /** Ends a node stream from the object's side: the node hears `code`, the bridge (if told) a CLOSE. */
  private endStream(ws: WebSocket, node: NodeSocket, code: number, reason: string, tellBridge: boolean): void {
    ws.serializeAttachment({ ...node, ended: true } satisfies NodeSocket);
    ws.close(code, reason);
    if (tellBridge) this.liveBridge()?.send(encodeFrame(CLOSE, node.stream, utf8(reason)));
    log("stream_ended", { code });
  }

  /** A frame from the bridge on an HTTP stream: its head, bytes of its body, or its end. */
  private toHttpClient(bridge: WebSocket, frame: BridgeFrame, http: HttpStream): void {
    if (frame.kind === CLOSE) {
      this.httpStreams.delete(frame.stream);
      http.end("bridge_closed", bridgeRefusal(frame.reason), frame.reason === "");
      log("http_stream_closed", { streams: this.openStreams() });
    } else if (!http.data(frame.body)) {
      // The client has its 502; the bridge hears why. A stream error, not a link error: its socket stays.
      this.httpStreams.delete(frame.stream);
      bridge.send(encodeFrame(CLOSE, frame.stream, utf8("bad_head")));
      log("http_stream_bad_head", { streams: this.openStreams() });
    }
  }

  /**
   * Ends an HTTP stream from the object's side: the client hears `status` and `reason` before the head and
   * has its body cut after it; the bridge (if told) a CLOSE with `reason`.
   */
  private endHttpStream(stream: number, http: HttpStream, status: number, reason: string, tellBridge: boolean): void {
    this.httpStreams.delete(stream);
    http.end(reason, error(status, reason));
    if (tellBridge) this.liveBridge()?.send(encodeFrame(CLOSE, stream, utf8(reason)));
    log("http_stream_ended", { status, streams: this.openStreams() });
  }

  /** The client went away: the bridge hears an empty CLOSE. */
  private httpClientGone(stream: number): void {
    if (!this.httpStreams.delete(stream)) return;
    this.liveBridge()?.send(encodeFrame(CLOSE, stream, new Uint8Array()));
    log("http_stream_cancelled", { streams: this.openStreams() });
  }

  private liveBridge(): WebSocket | undefined {
    return this.ctx.getWebSockets(BRIDGE_TAG).find((ws) => socketOf<BridgeSocket>(ws).state === "ready");
  }

  /** Streams open, node streams and HTTP streams together: all of them, or those of one token. */
  private openStreams(tokenHash?: string): number {
    const tag = tokenHash === undefined ? NODE_TAG : tokenTag(tokenHash);
    const nodes = this.ctx.getWebSockets(tag).filter((ws) => !socketOf<NodeSocket>(ws).ended).length;
    let https = 0;
    for (const http of this.httpStreams.values()) if (tokenHash === undefined || http.tokenHash === tokenHash) https++;
    return nodes + https;
  }

  private tokenSet(): Set<string> | null {
    if (this.tokens === undefined) {
      const packed = this.ctx.storage.kv.get<Uint8Array>(TOKENS_KEY);
      this.tokens =
        packed === undefined
          ? null
          : new Set(Array.from({ length: packed.length / 32 }, (_, i) => toHex(packed.subarray(i * 32, i * 32 + 32))));
    }
    return this.tokens;
  }

  private ratesOf(tokenHash: string, now: number): TokenRates {
    let rates = this.rates.get(tokenHash);
    if (rates === undefined) {
      rates = new TokenRates(now);
      this.rates.set(tokenHash, rates);
    }
    return rates;
  }
}
