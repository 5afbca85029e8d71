// HTTP streams (docs/relay.md, "HTTP streams"): a simple client's POST carried to the bridge as one stream.
// The Worker reads the request body with its bound; the object holds each stream's answer in memory while
// the bridge writes its head and then its body.

import { backOff, error } from "./http";
import { CAP_RETRY_MS } from "./limits";

/**
 * The request body, read with a bound: null when it is longer than `max` bytes (by its Content-Length, or
 * once more than `max` bytes have come). A BYOB reader fills one buffer of `max` + 1 bytes, so no more than
 * that is ever held, whatever the size of the chunks the client sends.
 */
export async function readBody(request: Request, max: number): Promise<Uint8Array | null> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > max) return null;
  if (request.body === null) return new Uint8Array();
  const reader = request.body.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(max + 1);
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(buffer, length));
    // The read takes the buffer over and hands it back in `value`, even at the end.
    if (value !== undefined) buffer = value.buffer;
    if (done) return new Uint8Array(buffer, 0, length);
    length += value.byteLength;
    if (length > max) {
      await reader.cancel();
      return null;
    }
  }
}

/**
 * What the client hears when the bridge ends an HTTP stream before its head, by the bridge's CLOSE reason:
 * the bridge's own limits (docs/relay.md, "Past a limit") as refusals to back off from, anything else
 * `502 bridge_closed`.
 */
export function bridgeRefusal(reason: string): Response {
  switch (reason) {
    case "rate-limited":
      return backOff(429, "rate_limited", CAP_RETRY_MS);
    case "too-many-exchanges":
      return backOff(503, "bridge_busy", CAP_RETRY_MS);
  }
  return error(502, "bridge_closed");
}

/** The bridge's answer to the request, sent as its first DATA on the stream. */
export interface Head {
  status: number;
  contentType: string;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A header value as is: printable ASCII, 1 to 100 characters, without a space at either end (the Headers
 * class would trim it, and refuses control characters).
 */
const CONTENT_TYPE = /^[!-~](?:[ -~]{0,98}[!-~])?$/;

/** Statuses whose response cannot have a body, and so could not carry the bridge's DATA. */
const NULL_BODY_STATUS = new Set([204, 205, 304]);

/** The head in a DATA body, UTF-8 JSON `{"status":NNN,"contentType":"…"}`, or null when it is not one. */
export function parseHead(bytes: Uint8Array): Head | null {
  let head: unknown;
  try {
    head = JSON.parse(strictUtf8.decode(bytes));
  } catch {
    return null;
  }
  if (typeof head !== "object" || head === null) return null;
  const { status, contentType } = head as Record<string, unknown>;
  if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) return null;
  if (NULL_BODY_STATUS.has(status)) return null;
  if (typeof contentType !== "string" || !CONTENT_TYPE.test(contentType)) return null;
  return { status, contentType };
}

/**
 * One HTTP stream, on the object's side. The client's request waits on `response` until the bridge's head
 * (or the stream's end before one); after the head, the body is a stream that each DATA from the bridge
 * adds to as it comes, since a chat answer (Server-Sent Events) must reach the client as it is written.
 */
export class HttpStream {
  readonly response: Promise<Response>;
  private answer!: (response: Response) => void;
  private readonly body: ReadableStream<Uint8Array>;
  private writer!: ReadableStreamDefaultController<Uint8Array>;
  private headSent = false;

  constructor(readonly tokenHash: string) {
    this.response = new Promise((resolve) => (this.answer = resolve));
    this.body = new ReadableStream({
      start: (controller) => {
        this.writer = controller;
      },
    });
  }

  /**
   * A DATA from the bridge: the head first, then bytes of the body. False when the head is not a head; the
   * client has been answered 502 then, and the stream is over.
   */
  data(bytes: Uint8Array): boolean {
    if (this.headSent) {
      this.writer.enqueue(bytes);
      return true;
    }
    const head = parseHead(bytes);
    if (head === null) {
      this.answer(error(502, "bad_gateway"));
      return false;
    }
    this.headSent = true;
    this.answer(
      new Response(this.body, {
        status: head.status,
        headers: { "content-type": head.contentType, "cache-control": "no-store" },
      }),
    );
    return true;
  }

  /**
   * Ends the stream from the bridge's or the object's side, for the reason `why`. Before the head the client
   * is answered `refusal`; after it the body ends, normally when `complete`, else cut (errored), so that the
   * client cannot take a cut answer for a whole one.
   */
  end(why: string, refusal: Response, complete = false): void {
    if (!this.headSent) this.answer(refusal);
    else if (complete) this.writer.close();
    // The runtime logs the error that ends a response (as uncaught): it says why, and nothing of the body.
    else this.writer.error(new Error(`HTTP stream cut: ${why}`));
  }
}
