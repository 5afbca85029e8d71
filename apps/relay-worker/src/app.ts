// The phone app, served at the relay's origin from the files compiled into the Worker
// (scripts/app-assets.mjs). Contract: docs/relay.md, "The phone app".

import { APP_ASSETS } from "./app-assets.generated";
import { error } from "./http";

/** One file of the app's build, as the generated module holds it. */
export interface AppAssetSource {
  type: string;
  /** Lowercase hex SHA-256 of the bytes. */
  sha256: string;
  base64: string;
  /** The bytes gzipped at build time, for text. */
  gzip?: string;
}

/** One way of sending a file: as is, or gzipped. */
interface Body {
  bytes: Uint8Array;
  etag: string;
}

interface AppAsset {
  type: string;
  identity: Body;
  gzip?: Body;
  cacheControl: string;
}

/**
 * Scripts, styles, images, the manifest, the service worker and fetches come from this origin only; nothing
 * inline, no eval, no plugins, no framing, no form posts anywhere. Photos the app previews before sending
 * are `blob:` or `data:` images.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "worker-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

/** Camera (photos) and microphone (voice input) for the app itself; every other powerful feature for no one. */
export const PERMISSIONS_POLICY = [
  "camera=(self)",
  "microphone=(self)",
  ...[
    "accelerometer",
    "autoplay",
    "bluetooth",
    "browsing-topics",
    "display-capture",
    "encrypted-media",
    "fullscreen",
    "geolocation",
    "gyroscope",
    "hid",
    "idle-detection",
    "magnetometer",
    "midi",
    "payment",
    "picture-in-picture",
    "publickey-credentials-get",
    "screen-wake-lock",
    "serial",
    "usb",
    "xr-spatial-tracking",
  ].map((feature) => `${feature}=()`),
].join(", ");

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "permissions-policy": PERMISSIONS_POLICY,
};

export const IMMUTABLE = "public, max-age=31536000, immutable";
/** Kept, but asked about again (a 304 when unchanged) before each use: a new app reaches the phone at once. */
export const REVALIDATE = "no-cache";

/**
 * A name that carries its content's hash, `NAME.HEX.EXT` with HEX at least the first 8 hex digits of the
 * file's SHA-256, never changes meaning, so it is cached for good. Every other name is revalidated.
 */
export function isContentAddressed(path: string, sha256: string): boolean {
  const parts = path.slice(path.lastIndexOf("/") + 1).split(".");
  if (parts.length < 3) return false;
  const hex = parts[parts.length - 2] ?? "";
  return /^[0-9a-f]{8,64}$/.test(hex) && sha256.startsWith(hex);
}

function decode(base64: string): Uint8Array {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The app's files by path, decoded once per isolate. Each way of sending a file has its own ETag. */
const ASSETS = new Map<string, AppAsset>(
  Object.entries(APP_ASSETS).map(([path, source]) => {
    const tag = source.sha256.slice(0, 32);
    const asset: AppAsset = {
      type: source.type,
      identity: { bytes: decode(source.base64), etag: `"${tag}"` },
      cacheControl: isContentAddressed(path, source.sha256) ? IMMUTABLE : REVALIDATE,
    };
    if (source.gzip !== undefined) asset.gzip = { bytes: decode(source.gzip), etag: `"${tag}-gzip"` };
    return [path, asset];
  }),
);

/**
 * Whether `If-None-Match` names this version of the file, sent either way (weak comparison, as RFC 9110
 * says for this header): Cloudflare asks the Worker for gzip whatever the client took.
 */
function matches(ifNoneMatch: string, asset: AppAsset): boolean {
  const current = [asset.identity.etag, asset.gzip?.etag];
  return ifNoneMatch
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .some((tag) => tag === "*" || current.includes(tag));
}

/** Whether `Accept-Encoding` takes gzip: named (or `*`) without `q=0`. */
export function acceptsGzip(acceptEncoding: string): boolean {
  return acceptEncoding.split(",").some((entry) => {
    const [coding = "", ...params] = entry.split(";").map((part) => part.trim().toLowerCase());
    const q = params.find((param) => param.startsWith("q="));
    return (coding === "gzip" || coding === "*") && (q === undefined || Number(q.slice(2)) > 0);
  });
}

/** The answer for `pathname` if it is one of the app's files (`/` is `/index.html`), else undefined. */
export function appAnswer(request: Request, pathname: string): Response | undefined {
  const asset = ASSETS.get(pathname === "/" ? "/index.html" : pathname);
  if (asset === undefined) return undefined;
  if (request.method !== "GET" && request.method !== "HEAD") {
    const refused = error(405, "method_not_allowed");
    refused.headers.set("allow", "GET, HEAD");
    return refused;
  }
  // Gzipped here rather than left to Cloudflare's edge, so that `wrangler dev` sends what production does.
  const body =
    asset.gzip !== undefined && acceptsGzip(request.headers.get("accept-encoding") ?? "") ? asset.gzip : asset.identity;
  const headers = new Headers({ ...SECURITY_HEADERS, etag: body.etag, "cache-control": asset.cacheControl });
  if (asset.gzip !== undefined) headers.set("vary", "accept-encoding");
  if (matches(request.headers.get("if-none-match") ?? "", asset)) {
    return new Response(null, { status: 304, headers });
  }
  headers.set("content-type", asset.type);
  // Set here so that a HEAD says it too; the runtime drops the body of an answer to HEAD.
  headers.set("content-length", String(body.bytes.length));
  if (body === asset.gzip) headers.set("content-encoding", "gzip");
  // "manual": the bytes are sent as they are, already encoded as the header says.
  return new Response(body.bytes, { headers, encodeBody: "manual" });
}
