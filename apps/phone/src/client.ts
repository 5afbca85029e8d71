// A client of the sealed HTTP contract (docs/protocol.md §20): sealed commands whose answers are one sealed
// JSON frame or a stream of sealed Server-Sent Events. Pairing is in pairing.ts.
import { fromB64url, fromUtf8, utf8 } from "./crypto/bytes.js";
import { TO_BRIDGE, TO_CLIENT, open, seal, sealedBodyLength } from "./crypto/seal.js";
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
    /** The computer itself refused (sealed): the way to it works. */
    readonly sealed = false,
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error?: string;
  message?: string;
  details?: Record<string, unknown>;
}

export function classify(status: number, body: ErrorBody): CallError {
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

export async function post(route: string, bridgeId: string, token: string, body: string, signal?: AbortSignal): Promise<Response> {
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

export async function json(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    throw new CallError(response.ok ? "network" : "busy", `the relay answered ${response.status} without JSON`, response.status);
  }
}

// ---- Sealed commands ----------------------------------------------------------------------------------

/**
 * How many times a body is resent when refused as `replayed` (another tab or the worker took a later counter
 * first), for a limit of the relay's or the computer's before the command ran (429 or 503 with a wait named,
 * docs/relay.md "Past a limit"), or `502 bridge_closed` (the computer closed the exchange before opening it,
 * so the command did not run; docs/protocol.md §20 says to retry).
 */
const RETRIES = 4;
/** The wait before the first resend after a refusal, doubled for each next one. */
const BRIDGE_CLOSED_WAIT_MS = 500;
/** The longest wait a refusal may name for the app to resend by itself; past it the call fails `busy`. */
const MAX_RESEND_WAIT_MS = 30_000;

/**
 * How long to wait before resending a body refused in clear on attempt `attempt` (from 0), or null when it
 * is not resent: `replayed` at once; `bridge_closed` after 0.5, 1, 2, 4 s; a refusal for a limit (429, or
 * 503 other than `bridge_offline`) no sooner than the wait it names (`retryAfterMs`, else `Retry-After` in
 * seconds), and not at all when it names none or more than 30 s. A sealed refusal (the command ran) never.
 */
export function resendAfter(status: number, retryAfter: string | null, refusal: ErrorBody & { retryAfterMs?: unknown }, attempt: number): number | null {
  if (typeof refusal.error !== "string") return null;
  const backoff = BRIDGE_CLOSED_WAIT_MS * 2 ** attempt;
  if (status === 409 && refusal.error === "replayed") return 0;
  if (status === 502 && refusal.error === "bridge_closed") return backoff;
  if (status !== 429 && !(status === 503 && refusal.error !== "bridge_offline")) return null;
  const named =
    typeof refusal.retryAfterMs === "number" ? refusal.retryAfterMs : retryAfter !== null && /^\d+$/.test(retryAfter.trim()) ? Number(retryAfter) * 1000 : null;
  if (named === null || !(named >= 0) || named > MAX_RESEND_WAIT_MS) return null;
  return Math.max(named, backoff);
}

/** Seals and posts one command; the answer's head and the counter it answers. */
async function send(computer: Computer, command: string, payload: unknown, signal?: AbortSignal): Promise<{ response: Response; counter: bigint; key: Uint8Array }> {
  // A computer that revoked this phone is never called again.
  if (computer.unpaired) throw new CallError("unpaired", `${computer.name} unpaired this phone`);
  const key = fromB64url(computer.sealKey)!;
  const plaintext = utf8(JSON.stringify({ command, version: 1, payload }));
  for (let attempt = 0; ; attempt++) {
    const counter = BigInt(await takeCounter(computer.bridgeId));
    if (sealedBodyLength(plaintext.length, counter) > MAX_BODY) {
      throw new CallError("refused", "this message is too large to send", 413, "body_too_large");
    }
    const body = JSON.stringify({ counter: Number(counter), sealed: seal(key, TO_BRIDGE, counter, 0n, plaintext) });
    const response = await post("chat", computer.bridgeId, computer.token, body, signal);
    if ([409, 429, 502, 503].includes(response.status) && attempt < RETRIES) {
      const refusal = (await response.clone().json().catch(() => ({}))) as ErrorBody;
      const wait = resendAfter(response.status, response.headers.get("retry-after"), refusal, attempt);
      if (wait !== null) {
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        continue;
      }
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
  const refused = classify(response.status, JSON.parse(fromUtf8(opened)) as ErrorBody);
  return new CallError(refused.failure, refused.message, refused.status, refused.code, refused.details, true);
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

/** The frames of a sealed SSE answer to body `counter`, in order: frame 0, 1, 2, … of that counter. */
export async function* sealedFrames(body: ReadableStream<Uint8Array<ArrayBuffer>>, key: Uint8Array, counter: bigint): AsyncGenerator<Frame> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let index = 0n;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").find((line) => line.startsWith("data: "));
      if (!data) continue;
      const opened = open(key, TO_CLIENT, counter, index++, data.slice(6).trim());
      if (!opened) throw new CallError("tampered", "a frame did not open under this pairing's key");
      yield JSON.parse(fromUtf8(opened)) as Frame;
    }
  }
}

/**
 * A streamed command: calls `onFrame` for each sealed SSE frame in order. Resolves when the answer ends;
 * throws CallError `network` if it broke off before its last frame (`done` or `error`).
 */
export async function stream(computer: Computer, command: string, payload: unknown, onFrame: (frame: Frame) => void, signal: AbortSignal): Promise<void> {
  const { response, counter, key } = await send(computer, command, payload, signal);
  if (response.status !== 200) throw await refusal(response, counter, key);
  if (!response.body) throw new CallError("network", "the answer has no body");
  let ended = false;
  try {
    for await (const frame of sealedFrames(response.body, key, counter)) {
      ended ||= frame.type === "done" || frame.type === "error";
      onFrame(frame);
    }
  } catch (e) {
    if (e instanceof CallError || signal.aborted) throw e;
    throw new CallError("network", "the answer broke off");
  }
  if (!ended) throw new CallError("network", "the answer ended before its last frame");
}
