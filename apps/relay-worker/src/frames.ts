// Binary frames on the bridge socket: [kind: u8][stream: u32 big-endian][body].

export const OPEN = 1;
export const DATA = 2;
export const CLOSE = 3;

const HEADER = 5;
/** Largest DATA body, and so the largest node message the object forwards. */
export const MAX_DATA = 65536;
/** A CLOSE reason becomes a WebSocket close reason, whose limit this is. */
export const MAX_REASON = 123;

export type BridgeFrame =
  | { kind: typeof DATA; stream: number; body: Uint8Array }
  | { kind: typeof CLOSE; stream: number; reason: string };

export function encodeFrame(kind: number, stream: number, body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(HEADER + body.length);
  const view = new DataView(frame.buffer);
  view.setUint8(0, kind);
  view.setUint32(1, stream);
  frame.set(body, HEADER);
  return frame;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A frame from the bridge, or null when it is malformed: too short, a kind the bridge may not send (OPEN
 * goes only the other way), an empty or oversize DATA, or a CLOSE reason that could not be a WebSocket close
 * reason (over 123 bytes, or not UTF-8).
 */
export function decodeBridgeFrame(message: ArrayBuffer): BridgeFrame | null {
  if (message.byteLength < HEADER) return null;
  const view = new DataView(message);
  const kind = view.getUint8(0);
  const stream = view.getUint32(1);
  const body = new Uint8Array(message, HEADER);
  if (kind === DATA && body.length >= 1 && body.length <= MAX_DATA) return { kind, stream, body };
  if (kind === CLOSE && body.length <= MAX_REASON) {
    try {
      return { kind, stream, reason: strictUtf8.decode(body) };
    } catch {
      return null;
    }
  }
  return null;
}
