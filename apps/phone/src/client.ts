// A client of the sealed HTTP contract (docs/protocol.md §20): pairing by PIN, then sealed commands whose
// answers are one sealed JSON frame or a stream of sealed Server-Sent Events.
import { b64url, fromB64url, fromUtf8, keyIdBytes, keyIdText, sameBytes, utf8 } from "./crypto/bytes.js";
import { SEALED_CLIENT_IDENTITY, bridgeIdOf, pinKeys } from "./crypto/pin.js";
import { TO_BRIDGE, TO_CLIENT, open, seal, sealedBodyLength } from "./crypto/seal.js";
import { startA } from "./crypto/spake2.js";
import { type Computer, takeCounter } from "./store.js";

/** The most a body may be: the relay refuses more. */
export const MAX_BODY = 65536;

/**
 * Why a call failed, as the app shows it:
 * `offline`: the relay says the computer is not connected (503 bridge_offline);
 * `unpaired`: the computer revoked this phone (401 unknown_token, not_paired, unauthorized);
 * `network`: the relay could not be reached, or the answer broke off;
 * `busy`: the relay or computer asks to come back later (429, 502);
 * `refused`: the computer or relay refused the call itself (details in `code`, `message`, `details`);
 * `tampered`: an answer did not open under the pairing's key.
 */
export type Failure = "offline" | "unpaired" | "network" | "busy" | "refused" | "tampered";

export class CallError extends Error {
  constructor(
    readonly failure: Failure,
    message: string,
    readonly status = 0,
    readonly code = "",
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

interface ErrorBody {
  error?: string;
  message?: string;
  details?: Record<string, unknown>;
}

function classify(status: number, body: ErrorBody): CallError {
  const code = (body.error ?? "").toLowerCase();
  const message = body.message ?? `refused with ${status} ${code}`;
  const failure: Failure =
    status === 503 && code === "bridge_offline"
      ? "offline"
      : code === "unknown_token" || code === "not_paired" || code === "unauthorized"
        ? "unpaired"
        : status === 429 || status === 502 || (status === 503 && code !== "gateway_unavailable")
          ? "busy"
          : "refused";
  return new CallError(failure, message, status, code, body.details ?? {});
}

async function post(route: string, bridgeId: string, token: string, body: string, signal?: AbortSignal): Promise<Response> {
  try {
    return await fetch(`/v1/${route}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Lanyard-Bridge": bridgeId, Authorization: `Bearer ${token}` },
      body,
      signal,
      cache: "no-store",
    });
  } catch (e) {
    if (signal?.aborted) throw e;
    throw new CallError("network", "cannot reach the relay");
  }
}

async function json(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    throw new CallError(response.ok ? "network" : "busy", `the relay answered ${response.status} without JSON`, response.status);
  }
}

// ---- Pairing ----------------------------------------------------------------------------------------

export interface Invite {
  bridgeId: string;
  route: string;
  /** Display only, untrusted. */
  name: string;
}

/** The invite in an address's fragment: `#id=BRIDGE_ID&route=ROUTING[&name=NAME]`; null if there is none. */
export function readInvite(fragment: string): Invite | null {
  const params = new URLSearchParams(fragment.replace(/^#/, ""));
  const id = params.get("id");
  const route = params.get("route");
  const bytes = id ? keyIdBytes(id) : null;
  if (!bytes || !route) return null;
  return { bridgeId: keyIdText(bytes), route, name: (params.get("name") ?? "").slice(0, 64) };
}

export interface Paired {
  token: string;
  node_id: string;
  bridge_public_key: string;
  relay_url: string | null;
  scopes: string[];
  computer_name?: string;
}

/** What the pairing gives, before it is stored. */
export type NewComputer = Omit<Computer, "nextCounter" | "sessionKey" | "push" | "unpaired" | "pairedAtMs">;

/**
 * Pairs with the invite's computer by its PIN. Throws CallError: `refused` with `code` `pairing_pin_wrong`
 * (and `details.triesLeft`), `pairing_code_invalid`, …; `offline`; `tampered` when the answer is not the
 * invite's computer's.
 */
export async function pair(invite: Invite, pin: string, device: { name: string; model?: string }): Promise<NewComputer> {
  const side = startA(pin, SEALED_CLIENT_IDENTITY, keyIdBytes(invite.bridgeId)!, crypto.getRandomValues(new Uint8Array(64)));
  const call = async (route: string, body: unknown) => {
    const response = await post(route, invite.bridgeId, invite.route, JSON.stringify(body));
    const answer = (await json(response)) as Record<string, unknown>;
    if (response.status !== 200) throw classify(response.status, answer as ErrorBody);
    return answer;
  };
  const start = { message: b64url(side.message), name: device.name, platform: "web", model: device.model, scopes: ["chat", "voice"] };
  const challenge = await call("pair/start", start);
  const k = side.finish(fromB64url(String(challenge.message)) ?? new Uint8Array(0));
  const keys = k && pinKeys(k);
  const theirs = fromB64url(String(challenge.confirmation));
  if (!keys || !theirs || !sameBytes(keys.bridgeConfirmation, theirs)) {
    // A wrong PIN (or not the computer). Confirm with random bytes, which tell nothing of this side's
    // key, so that the computer answers how many tries are left.
    await call("pair/confirm", { confirmation: b64url(crypto.getRandomValues(new Uint8Array(32))) });
    throw new CallError("refused", "the PIN did not match", 403, "pairing_pin_wrong");
  }
  const answer = await call("pair/confirm", { confirmation: b64url(keys.nodeConfirmation) });
  const opened = open(keys.sealKey, TO_CLIENT, 0n, 0n, String(answer.sealed));
  if (!opened) throw new CallError("tampered", "the pairing answer did not open under the PIN's key");
  const paired = JSON.parse(fromUtf8(opened)) as Paired;
  const bridgeKey = fromB64url(paired.bridge_public_key);
  if (!bridgeKey || bridgeKey.length !== 32 || bridgeIdOf(bridgeKey) !== invite.bridgeId || paired.node_id !== keys.clientId) {
    throw new CallError("tampered", "the computer that answered is not the one the invite names");
  }
  return {
    bridgeId: invite.bridgeId,
    name: paired.computer_name || invite.name || "Computer",
    relayOrigin: location.origin,
    token: paired.token,
    sealKey: b64url(keys.sealKey),
    nodeId: paired.node_id,
    scopes: paired.scopes,
  };
}

// ---- Sealed commands ----------------------------------------------------------------------------------

/** How many times a body refused as `replayed` (another tab or the worker took a later counter first) is resent. */
const REPLAY_RETRIES = 4;

/** Seals and posts one command; the answer's head and the counter it answers. */
async function send(computer: Computer, command: string, payload: unknown, signal?: AbortSignal): Promise<{ response: Response; counter: bigint; key: Uint8Array }> {
  const key = fromB64url(computer.sealKey)!;
  const plaintext = utf8(JSON.stringify({ command, version: 1, payload }));
  for (let attempt = 0; ; attempt++) {
    const counter = BigInt(await takeCounter(computer.bridgeId));
    if (sealedBodyLength(plaintext.length, counter) > MAX_BODY) {
      throw new CallError("refused", "this message is too large to send", 413, "body_too_large");
    }
    const body = JSON.stringify({ counter: Number(counter), sealed: seal(key, TO_BRIDGE, counter, 0n, plaintext) });
    const response = await post("chat", computer.bridgeId, computer.token, body, signal);
    if (response.status === 409 && attempt < REPLAY_RETRIES) {
      const refusal = (await response.clone().json().catch(() => ({}))) as ErrorBody;
      if (refusal.error === "replayed") continue;
    }
    return { response, counter, key };
  }
}

/** A refusal: sealed (frame 0 of the counter) once the computer opened the body, in clear before. */
async function refusal(response: Response, counter: bigint, key: Uint8Array): Promise<CallError> {
  const body = (await json(response)) as { sealed?: string } & ErrorBody;
  if (typeof body.sealed !== "string") return classify(response.status, body);
  const opened = open(key, TO_CLIENT, counter, 0n, body.sealed);
  if (!opened) return new CallError("tampered", "an answer did not open under this pairing's key");
  return classify(response.status, JSON.parse(fromUtf8(opened)) as ErrorBody);
}

/** A unary command: its result JSON. */
export async function call<T>(computer: Computer, command: string, payload: unknown = {}): Promise<T> {
  const { response, counter, key } = await send(computer, command, payload);
  if (response.status !== 200) throw await refusal(response, counter, key);
  const body = (await json(response)) as { sealed?: string };
  const opened = typeof body.sealed === "string" && open(key, TO_CLIENT, counter, 0n, body.sealed);
  if (!opened) throw new CallError("tampered", "an answer did not open under this pairing's key");
  return JSON.parse(fromUtf8(opened)) as T;
}

/** One frame of a streamed answer (`ChatFrame`). */
export type Frame =
  | { type: "accepted"; run_id: string }
  | { type: "agent"; event: AgentEvent }
  | { type: "done"; outcome: { runId?: string; status?: string; result?: string } }
  | { type: "error"; error: { code?: string; message?: string } };

export interface AgentEvent {
  runId: string;
  sessionKey: string;
  seq: number;
  kind: string;
  [field: string]: unknown;
}

/**
 * A streamed command: calls `onFrame` for each sealed SSE frame in order. Resolves when the answer ends;
 * throws CallError `network` if it broke off before its last frame (`done` or `error`).
 */
export async function stream(computer: Computer, command: string, payload: unknown, onFrame: (frame: Frame) => void, signal: AbortSignal): Promise<void> {
  const { response, counter, key } = await send(computer, command, payload, signal);
  if (response.status !== 200) throw await refusal(response, counter, key);
  if (!response.body) throw new CallError("network", "the answer has no body");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let index = 0n;
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").find((line) => line.startsWith("data: "));
        if (!data) continue;
        const opened = open(key, TO_CLIENT, counter, index++, data.slice(6).trim());
        if (!opened) throw new CallError("tampered", "a frame did not open under this pairing's key");
        const frame = JSON.parse(fromUtf8(opened)) as Frame;
        ended ||= frame.type === "done" || frame.type === "error";
        onFrame(frame);
      }
    }
  } catch (e) {
    if (e instanceof CallError || signal.aborted) throw e;
    throw new CallError("network", "the answer broke off");
  }
  if (!ended) throw new CallError("network", "the answer ended before its last frame");
}
