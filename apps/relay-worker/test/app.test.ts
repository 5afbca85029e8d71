// The phone app served at the relay's origin (docs/relay.md, "The phone app"): every file of the build
// compiled in, with its type, a strict CSP and the other security headers, caching by ETag, HEAD, and
// nothing else changed: unknown paths still 404, the API answers as before.

import { describe, expect, it } from "vitest";
import { acceptsGzip, isContentAddressed } from "../src/app";
import { APP_ASSETS } from "../src/app-assets.generated";
import { expectError, relay } from "./helpers";

/** Written here apart from the generator's table, so that a wrong type there cannot hide. */
const EXPECTED_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  webmanifest: "application/manifest+json",
  json: "application/json",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  txt: "text/plain; charset=utf-8",
};

const PATHS = Object.keys(APP_ASSETS);

const isText = (type: string) => /^(text\/|application\/(json|manifest\+json)|image\/svg\+xml)/.test(type);

async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The CSP as a map of directive → sources. */
function directives(csp: string): Map<string, string[]> {
  return new Map(
    csp.split(";").map((part) => {
      const [name = "", ...sources] = part.trim().split(/\s+/);
      return [name, sources];
    }),
  );
}

function expectSecurityHeaders(response: Response, path: string): void {
  const headers = response.headers;
  const csp = directives(headers.get("content-security-policy") ?? "");
  expect(csp.get("default-src"), path).toEqual(["'none'"]);
  for (const directive of ["script-src", "style-src", "connect-src", "manifest-src", "worker-src"]) {
    expect(csp.get(directive), `${path}: ${directive}`).toEqual(["'self'"]);
  }
  expect(csp.get("img-src"), path).toEqual(["'self'", "blob:", "data:"]);
  for (const directive of ["base-uri", "form-action", "frame-ancestors"]) {
    expect(csp.get(directive), `${path}: ${directive}`).toEqual(["'none'"]);
  }
  expect(headers.get("x-content-type-options"), path).toBe("nosniff");
  expect(headers.get("referrer-policy"), path).toBe("no-referrer");
  expect(headers.get("cross-origin-opener-policy"), path).toBe("same-origin");
  const features = (headers.get("permissions-policy") ?? "").split(",").map((f) => f.trim());
  const allowed = features.filter((f) => !f.endsWith("=()"));
  expect(allowed.sort(), path).toEqual(["camera=(self)", "microphone=(self)"]);
  expect(features.length, path).toBeGreaterThan(10);
}

describe("the phone app", () => {
  it("has an index.html and only files of known types", () => {
    expect(PATHS).toContain("/index.html");
    for (const path of PATHS) {
      expect(EXPECTED_TYPES[path.slice(path.lastIndexOf(".") + 1)], path).toBeDefined();
    }
  });

  it("serves every file of the build with its type, its exact bytes and the security headers", async () => {
    for (const path of PATHS) {
      const response = await relay(path);
      expect(response.status, path).toBe(200);
      expect(response.headers.get("content-type"), path).toBe(EXPECTED_TYPES[path.slice(path.lastIndexOf(".") + 1)]);
      expectSecurityHeaders(response, path);
      const hash = await sha256Hex(await response.arrayBuffer());
      expect(hash, path).toBe(APP_ASSETS[path]?.sha256);
      expect(response.headers.get("etag"), path).toBe(`"${hash.slice(0, 32)}"`);
    }
  });

  it("answers / with index.html, under the CSP", async () => {
    const root = await relay("/");
    const index = await relay("/index.html");
    for (const response of [root, index]) {
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expectSecurityHeaders(response, "/");
    }
    expect(await root.text()).toBe(await index.text());
  });

  it("has no inline script, style or handler in index.html, and loads nothing from elsewhere", async () => {
    const html = await (await relay("/")).text();
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script\s*>/gi)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes = "", body = ""] of scripts) {
      expect(attributes).toMatch(/\bsrc=/i);
      expect(body.trim()).toBe("");
    }
    expect(html.match(/<script\b/gi)?.length).toBe(scripts.length);
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/javascript:/i);
    // Every file the page names is one of the app's own, served from here: no CDN, no external font.
    const named = [...html.matchAll(/\s(?:src|href)\s*=\s*"([^"]*)"/gi)].map(([, url = ""]) => url);
    expect(named.length).toBeGreaterThan(0);
    for (const url of named) {
      expect(url, url).toMatch(/^\/[^/]/);
      expect(PATHS, url).toContain(new URL(url, "https://relay.test").pathname);
    }
  });

  it("revalidates index.html and the service worker, and keeps content-addressed files for good", async () => {
    for (const path of ["/", "/index.html", "/sw.js"].filter((p) => p === "/" || PATHS.includes(p))) {
      expect((await relay(path)).headers.get("cache-control"), path).toBe("no-cache");
    }
    for (const path of PATHS) {
      const hashed = isContentAddressed(path, APP_ASSETS[path]?.sha256 ?? "");
      const expected = hashed ? "public, max-age=31536000, immutable" : "no-cache";
      expect((await relay(path)).headers.get("cache-control"), path).toBe(expected);
    }
  });

  it("takes a name for content-addressed only when it carries the start of the file's own SHA-256", () => {
    const sha = "3ca4e786" + "0".repeat(56);
    expect(isContentAddressed("/chunk.3ca4e786.js", sha)).toBe(true);
    expect(isContentAddressed("/icons/icon.3ca4e7860000.png", sha)).toBe(true);
    expect(isContentAddressed("/chunk.3ca4e787.js", sha)).toBe(false);
    expect(isContentAddressed("/chunk.3ca4e78.js", sha)).toBe(false);
    expect(isContentAddressed("/3ca4e786.js", sha)).toBe(false);
    expect(isContentAddressed("/chunk.3CA4E786.js", sha)).toBe(false);
    expect(isContentAddressed("/app.js", sha)).toBe(false);
  });

  it("answers a matching If-None-Match with 304 and no body, and anything else with the file", async () => {
    const etag = (await relay("/")).headers.get("etag") ?? "";
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const response = await relay("/", { headers: { "if-none-match": ifNoneMatch } });
      expect(response.status, ifNoneMatch).toBe(304);
      expect(response.headers.get("etag")).toBe(etag);
      expect(response.headers.get("cache-control")).toBe("no-cache");
      expect(await response.text()).toBe("");
    }
    const stale = await relay("/", { headers: { "if-none-match": '"0123456789abcdef0123456789abcdef"' } });
    expect(stale.status).toBe(200);
    expect(await stale.text()).toContain("<html");
  });

  it("sends text gzipped to a client that takes gzip, and as is otherwise", async () => {
    const gzip = { headers: { "accept-encoding": "br, gzip;q=0.8" } };
    for (const path of PATHS) {
      const sha256 = APP_ASSETS[path]?.sha256 ?? "";
      const response = await relay(path, gzip);
      expectSecurityHeaders(response, path);
      // The runtime's fetch undoes the gzip, as a browser does: the body read is the file.
      expect(await sha256Hex(await response.arrayBuffer()), path).toBe(sha256);
      if (isText(response.headers.get("content-type") ?? "")) {
        expect(response.headers.get("content-encoding"), path).toBe("gzip");
        expect(response.headers.get("vary"), path).toBe("accept-encoding");
        expect(response.headers.get("etag"), path).toBe(`"${sha256.slice(0, 32)}-gzip"`);
        expect(response.headers.get("content-length"), path).toBe(String(atob(APP_ASSETS[path]?.gzip ?? "").length));
        const refused = await relay(path, { headers: { "accept-encoding": "gzip;q=0, deflate" } });
        expect(refused.headers.get("content-encoding"), path).toBeNull();
        expect(refused.headers.get("vary"), path).toBe("accept-encoding");
        expect(await sha256Hex(await refused.arrayBuffer()), path).toBe(sha256);
      } else {
        expect(response.headers.get("content-encoding"), path).toBeNull();
      }
    }
    // Either tag of the current file revalidates it, whichever way it is asked for.
    const gzipTag = (await relay("/", gzip)).headers.get("etag") ?? "";
    const identityTag = (await relay("/")).headers.get("etag") ?? "";
    expect(gzipTag).not.toBe(identityTag);
    for (const tag of [gzipTag, identityTag]) {
      for (const encoding of ["gzip", "identity"]) {
        const headers = { "accept-encoding": encoding, "if-none-match": tag };
        expect((await relay("/", { headers })).status, `${tag} ${encoding}`).toBe(304);
      }
    }
  });

  it("reads Accept-Encoding as RFC 9110 writes it", () => {
    for (const yes of ["gzip", "GZIP", "deflate, gzip", "gzip;q=0.5", "br;q=1.0, gzip; q=0.1", "*"]) {
      expect(acceptsGzip(yes), yes).toBe(true);
    }
    for (const no of ["", "identity", "br, deflate", "gzip;q=0", "gzip; q=0.000", "*;q=0", "x-gzip2"]) {
      expect(acceptsGzip(no), no).toBe(false);
    }
  });

  it("answers HEAD with the headers of GET and no body", async () => {
    for (const path of PATHS) {
      const [get, head] = [await relay(path), await relay(path, { method: "HEAD" })];
      expect(head.status, path).toBe(200);
      expectSecurityHeaders(head, path);
      for (const name of ["content-type", "content-length", "etag", "cache-control"]) {
        expect(head.headers.get(name), `${path}: ${name}`).toBe(get.headers.get(name));
      }
      expect(head.headers.get("content-length"), path).toBe(String((await get.arrayBuffer()).byteLength));
      expect(await head.text(), path).toBe("");
    }
  });

  it("refuses other methods on the app's files", async () => {
    for (const method of ["POST", "PUT", "DELETE"]) {
      const response = await relay("/", { method });
      await expectError(response, 405, "method_not_allowed");
      expect(response.headers.get("allow")).toBe("GET, HEAD");
    }
  });

  it("still answers 404 for anything else, and the API as before", async () => {
    for (const path of ["/index.htm", "/app.js/", "/nothing.js", "/icons/", "/.well-known/x", "//index.html", "/v1/"]) {
      await expectError(await relay(path), 404, "not_found");
    }
    const health = await relay("/v1/health");
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ ok: true });
    await expectError(await relay("/v1/chat"), 405, "method_not_allowed");
    await expectError(await relay("/v1/chat", { method: "POST" }), 400, "bad_bridge_id");
  });
});
