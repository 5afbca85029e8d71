// Test-side parties: a bridge with a real Ed25519 key, nodes with routing tokens, and a WebSocket peer that
// queues what it hears. Encodings here are written independently of src/ (bit strings, btoa), so that a
// bug shared by both sides cannot hide.

import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { expect, vi } from "vitest";
import type { RelayObject } from "../src/relay";

const HOST = "relay.test";
const ORIGIN = `https://${HOST}`;

const SPKI_PREFIX_HEX = "302a300506032b6570032100";
const BASE32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

export function b64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bytesToHex(bytes: Uint8Array): string {
  return [...bytes].map((b) => (b < 16 ? "0" : "") + b.toString(16)).join("");
}

/** The bridge ID of a raw Ed25519 key, by way of a string of bits cut into fives. */
export async function independentBridgeId(rawKey: Uint8Array): Promise<string> {
  const spki = new Uint8Array([...hexToBytes(SPKI_PREFIX_HEX), ...rawKey]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", spki));
  let bits = [...digest].map((b) => b.toString(2).padStart(8, "0")).join("");
  bits = bits.padEnd(Math.ceil(bits.length / 5) * 5, "0");
  let text = "";
  for (let i = 0; i < bits.length; i += 5) text += BASE32_ALPHABET[Number.parseInt(bits.slice(i, i + 5), 2)];
  const groups: string[] = [];
  for (let i = 0; i < text.length; i += 4) groups.push(text.slice(i, i + 4));
  return groups.join("-");
}

export interface BridgeKey {
  id: string;
  raw: Uint8Array;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

export async function newBridgeKey(): Promise<BridgeKey> {
  const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const raw = new Uint8Array((await crypto.subtle.exportKey("raw", pair.publicKey)) as ArrayBuffer);
  return {
    id: await independentBridgeId(raw),
    raw,
    sign: async (message) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, message)),
  };
}

/** The signed text of a bridge proof, written out here as docs/relay.md spells it. */
export function proofText(host: string, path: string, id: string, time: string, nonce: string): Uint8Array {
  return new TextEncoder().encode(["lanyard-relay-bridge-v2", host, path, id, time, nonce].join("\n"));
}

export interface Token {
  token: string;
  hash: string;
}

export async function newToken(): Promise<Token> {
  const token = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const hash = bytesToHex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(token))));
  return { token, hash };
}

type PeerEvent =
  | { kind: "message"; data: string | ArrayBuffer }
  | { kind: "close"; code: number; reason: string };

interface Frame {
  kind: number;
  stream: number;
  body: Uint8Array;
}

/** The client end of a WebSocket: every message and the close, in order, awaited one at a time. */
export class Peer {
  private readonly events: PeerEvent[] = [];
  private waiter: ((event: PeerEvent) => void) | undefined;

  constructor(readonly ws: WebSocket) {
    // At this compatibility date binary messages would otherwise arrive as Blobs, as in browsers.
    ws.binaryType = "arraybuffer";
    ws.addEventListener("message", (e) => this.push({ kind: "message", data: e.data }));
    ws.addEventListener("close", (e) => this.push({ kind: "close", code: e.code, reason: e.reason }));
    ws.accept();
  }

  private push(event: PeerEvent): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter(event);
    else this.events.push(event);
  }

  /** Events heard and not yet taken. */
  get queued(): number {
    return this.events.length;
  }

  next(timeoutMs = 3000): Promise<PeerEvent> {
    const queued = this.events.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`nothing heard within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (event) => {
        clearTimeout(timer);
        resolve(event);
      };
    });
  }

  async json(): Promise<Record<string, unknown>> {
    const event = await this.next();
    if (event.kind !== "message" || typeof event.data !== "string") throw new Error(`expected text, got ${show(event)}`);
    return JSON.parse(event.data) as Record<string, unknown>;
  }

  async binary(): Promise<Uint8Array> {
    const event = await this.next();
    if (event.kind !== "message" || typeof event.data === "string") throw new Error(`expected binary, got ${show(event)}`);
    return new Uint8Array(event.data);
  }

  async frame(): Promise<Frame> {
    const bytes = await this.binary();
    return {
      kind: bytes[0]!,
      stream: ((bytes[1]! << 24) >>> 0) + (bytes[2]! << 16) + (bytes[3]! << 8) + bytes[4]!,
      body: bytes.slice(5),
    };
  }

  /** The close, skipping any messages still queued before it (their count is returned). */
  async closed(timeoutMs = 3000): Promise<{ code: number; reason: string; skipped: number }> {
    let skipped = 0;
    for (;;) {
      const event = await this.next(timeoutMs);
      if (event.kind === "close") return { code: event.code, reason: event.reason, skipped };
      skipped++;
    }
  }
}

function show(event: PeerEvent): string {
  if (event.kind === "close") return `close ${event.code} ${event.reason}`;
  return typeof event.data === "string" ? `text ${event.data}` : `binary of ${event.data.byteLength} bytes`;
}

export function frame(kind: number, stream: number, body: Uint8Array | string = new Uint8Array()): Uint8Array<ArrayBuffer> {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const out = new Uint8Array(5 + bytes.length);
  out[0] = kind;
  out[1] = (stream >>> 24) & 255;
  out[2] = (stream >>> 16) & 255;
  out[3] = (stream >>> 8) & 255;
  out[4] = stream & 255;
  out.set(bytes, 5);
  return out;
}

export const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

export function relay(path: string, init?: RequestInit): Promise<Response> {
  return exports.default.fetch(ORIGIN + path, init);
}

export function stubFor(id: string) {
  return env.RELAY.get(env.RELAY.idFromName(id));
}

export const bridgePath = (id: string) => `/v1/bridges/${id}/bridge`;

/** What a proof may be made to get wrong, one part at a time. */
export interface ProofParts {
  id?: string;
  host?: string;
  path?: string;
  time?: string;
  nonce?: string;
  key?: Uint8Array;
}

/** The headers of a bridge's upgrade request, with a proof signed by `key` over the given or right parts. */
export async function proofHeaders(key: BridgeKey, parts: ProofParts = {}): Promise<Record<string, string>> {
  const id = parts.id ?? key.id;
  const time = parts.time ?? String(Date.now());
  const nonce = parts.nonce ?? b64url(crypto.getRandomValues(new Uint8Array(32)));
  const signature = await key.sign(proofText(parts.host ?? HOST, parts.path ?? bridgePath(id), id, time, nonce));
  return {
    Upgrade: "websocket",
    "Lanyard-Bridge-Key": b64url(parts.key ?? key.raw),
    "Lanyard-Bridge-Time": time,
    "Lanyard-Bridge-Nonce": nonce,
    "Lanyard-Bridge-Signature": b64url(signature),
  };
}

/** Asks for the bridge socket of `id` with `headers`. */
export function bridgeRequest(id: string, headers: Record<string, string>): Promise<Response> {
  return relay(bridgePath(id), { headers });
}

/** A proved bridge socket that has sent `tokens` (unless none are given) and seen them take effect. */
export async function connectBridge(key: BridgeKey, tokens?: Token[]): Promise<Peer> {
  const response = await bridgeRequest(key.id, await proofHeaders(key));
  expect(response.status).toBe(101);
  const peer = new Peer(response.webSocket!);
  if (tokens !== undefined) await setTokens(peer, key.id, tokens);
  return peer;
}

/** Sends a token set, then waits until the status route answers by it (the socket and HTTP are two roads). */
export async function setTokens(bridge: Peer, id: string, tokens: Token[], dropped: Token[] = []): Promise<void> {
  bridge.ws.send(JSON.stringify({ type: "tokens", set: tokens.map((t) => t.hash) }));
  const probe = tokens[0] ?? dropped[0];
  if (probe === undefined) return;
  const want = tokens.length > 0 ? 200 : 401;
  for (let i = 0; i < 100; i++) {
    const response = await status(id, probe);
    await response.arrayBuffer();
    if (response.status === want && (await allRefused(id, dropped))) return;
    await sleep(5);
  }
  throw new Error("token set never took effect");
}

async function allRefused(id: string, tokens: Token[]): Promise<boolean> {
  for (const token of tokens) {
    const response = await status(id, token);
    await response.arrayBuffer();
    if (response.status !== 401) return false;
  }
  return true;
}

export function status(id: string, token: Token): Promise<Response> {
  return relay(`/v1/bridges/${id}/status`, { headers: { Authorization: `Bearer ${token.token}` } });
}

export function connect(id: string, token: Token): Promise<Response> {
  return relay(`/v1/bridges/${id}/connect`, {
    headers: { Upgrade: "websocket", Authorization: `Bearer ${token.token}` },
  });
}

/** A node stream that the relay accepted; the bridge's OPEN for it is checked and its stream id returned. */
export async function openStream(id: string, token: Token, bridge: Peer): Promise<{ node: Peer; stream: number }> {
  const response = await connect(id, token);
  expect(response.status).toBe(101);
  const node = new Peer(response.webSocket!);
  const open = await bridge.frame();
  expect(open.kind).toBe(1);
  expect(JSON.parse(text(open.body))).toEqual({ tokenHash: token.hash });
  return { node, stream: open.stream };
}

export async function expectError(response: Response, status: number, error: string): Promise<void> {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/json");
  expect(await response.json()).toEqual({ error });
}

/**
 * A refusal for a limit: `status`, `{"error", "retryAfterMs"}` with a wait of at most `maxWaitMs`, and
 * `Retry-After` the same wait in whole seconds, at least 1. Returns the wait.
 */
export async function expectBackOff(response: Response, status: number, error: string, maxWaitMs = 1000): Promise<number> {
  expect(response.status).toBe(status);
  expect(response.headers.get("content-type")).toBe("application/json");
  const body = (await response.json()) as { error: string; retryAfterMs: number };
  expect(body).toEqual({ error, retryAfterMs: body.retryAfterMs });
  expect(Number.isInteger(body.retryAfterMs)).toBe(true);
  expect(body.retryAfterMs).toBeGreaterThan(0);
  expect(body.retryAfterMs).toBeLessThanOrEqual(maxWaitMs);
  expect(response.headers.get("retry-after")).toBe(String(Math.max(1, Math.ceil(body.retryAfterMs / 1000))));
  return body.retryAfterMs;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Blindness: what the object keeps, and a search of it (and of the logs) for marked payload bytes.

/** Every line logged to the console from now on, until the test restores its mocks. */
export function captureLogs(): string[] {
  const logged: string[] = [];
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(" "));
    });
  }
  return logged;
}

/** All the object keeps: its storage, its SQL tables, its sockets' attachments and its fields. */
export function keptBy(id: string) {
  return runInDurableObject(stubFor(id), (instance: RelayObject, ctx) => ({
    storage: [...ctx.storage.kv.list()],
    tables: [...ctx.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'")].map((row) => row.name),
    attachments: ctx.getWebSockets().map((ws) => ws.deserializeAttachment() as unknown),
    fields: { ...instance },
  }));
}

/**
 * That the object keeps only its token set, stream counter and the bridge's recent proof nonces in storage,
 * and none of `markers` anywhere.
 */
export function expectKeepsNone(kept: Awaited<ReturnType<typeof keptBy>>, markers: Uint8Array[]): void {
  expect(kept.storage.map(([name]) => name).sort()).toEqual(["nextStream", "proofNonces", "tokens"]);
  expect(kept.tables.filter((name) => !String(name).startsWith("_cf_"))).toEqual([]);
  for (const marker of markers) expect(holds(kept, marker)).toBe(false);
}

/** Whether `value`, searched through objects, arrays, maps, sets, strings and byte arrays, holds `marker`. */
export function holds(value: unknown, marker: Uint8Array, seen = new Set<unknown>()): boolean {
  if (value === null || value === undefined || seen.has(value)) return false;
  if (typeof value === "string") return holdsText(value, marker);
  if (typeof value !== "object") return false;
  seen.add(value);
  if (value instanceof ArrayBuffer) return holdsBytes(new Uint8Array(value), marker);
  if (ArrayBuffer.isView(value)) {
    return holdsBytes(new Uint8Array(value.buffer, value.byteOffset, value.byteLength), marker);
  }
  const children =
    value instanceof Map ? [...value.keys(), ...value.values()] : value instanceof Set ? [...value] : Object.values(value);
  return children.some((child) => holds(child, marker, seen));
}

function holdsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Whether `text` holds `marker` as text, hex or base64. */
export function holdsText(text: string, marker: Uint8Array): boolean {
  const forms = [
    new TextDecoder().decode(marker),
    [...marker].map((b) => b.toString(16).padStart(2, "0")).join(""),
    btoa(String.fromCharCode(...marker)),
  ];
  return forms.some((form) => text.includes(form));
}
