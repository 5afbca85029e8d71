// Builds the Lanyard web app into dist/: index.html, app.js, app.css, sw.js, manifest.webmanifest and
// icons (the PNGs are drawn here from the same shapes as icon.svg). esbuild comes from
// apps/relay-worker/node_modules; nothing is fetched. Prints what the first load weighs, gzipped.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, gzipSync, crc32 } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = join(here, "../relay-worker/node_modules");
const { build } = createRequire(join(nodeModules, "package.json"))("esbuild");
const src = join(here, "src");
const dist = join(here, "dist");

/** The first load may fetch at most this much, gzipped (issue 21). */
const BUDGET = 100 * 1024;

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022", "safari16", "chrome111", "firefox115"],
  nodePaths: [nodeModules],
  legalComments: "none",
  logLevel: "warning",
  write: false,
};

const app = (await build({ ...common, entryPoints: [join(src, "main.ts")] })).outputFiles[0].contents;
const css = (await build({ ...common, entryPoints: [join(src, "app.css")], loader: { ".css": "css" } })).outputFiles[0].contents;
const html = readFileSync(join(src, "index.html"));
const svg = readFileSync(join(src, "icon.svg"));
const version = createHash("sha256").update(app).update(css).update(html).update(svg).digest("hex").slice(0, 16);
const sw = (await build({ ...common, entryPoints: [join(src, "sw.ts")], define: { SHELL_VERSION: JSON.stringify(version) } })).outputFiles[0].contents;

const manifest = {
  name: "Lanyard",
  short_name: "Lanyard",
  description: "Talk to the agent on your computers, and answer its questions, from your phone.",
  id: "/",
  start_url: "/",
  scope: "/",
  display: "standalone",
  background_color: "#1f3a5f",
  theme_color: "#1f3a5f",
  icons: [
    { src: "/icon.svg", sizes: "any", type: "image/svg+xml", purpose: "any" },
    { src: "/icon-192.png", sizes: "192x192", type: "image/png", purpose: "any" },
    { src: "/icon-512.png", sizes: "512x512", type: "image/png", purpose: "any maskable" },
  ],
};

// ---- PNG icons: icon.svg's shapes, drawn with 4×4 supersampling --------------------------------------

function png(size, pixel) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) raw.set(pixel(x, y), y * (size * 4 + 1) + 1 + x * 4);
  }
  const chunk = (type, data) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length);
    head.write(type, 4, "ascii");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 6, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw, { level: 9 })), chunk("IEND", Buffer.alloc(0))]);
}

const inRoundRect = (x, y, left, top, w, h, r) => {
  const dx = Math.max(left + r - x, 0, x - (left + w - r));
  const dy = Math.max(top + r - y, 0, y - (top + h - r));
  return x >= left && x <= left + w && y >= top && y <= top + h && dx * dx + dy * dy <= r * r;
};
const nearSegment = (x, y, [ax, ay], [bx, by], half) => {
  const t = Math.max(0, Math.min(1, ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)));
  return (x - ax - t * (bx - ax)) ** 2 + (y - ay - t * (by - ay)) ** 2 <= half * half;
};
/** The colour of icon.svg at (x, y) in its 512-unit box; null outside it. */
function iconColour(x, y, fullBleed) {
  if (!fullBleed && !inRoundRect(x, y, 0, 0, 512, 512, 96)) return null;
  if ((x - 256) ** 2 + (y - 290) ** 2 <= 22 * 22) return [0x1f, 0x3a, 0x5f];
  if (inRoundRect(x, y, 166, 236, 180, 220, 28)) return [255, 255, 255];
  if (nearSegment(x, y, [156, 64], [256, 250], 20) || nearSegment(x, y, [256, 250], [356, 64], 20)) return [0x8f, 0xb4, 0xe3];
  return [0x1f, 0x3a, 0x5f];
}
function icon(size, fullBleed) {
  const n = 4;
  return png(size, (px, py) => {
    let [r, g, b, a] = [0, 0, 0, 0];
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        // A maskable icon keeps its art in the middle 80%.
        const scale = fullBleed ? 512 / (size * 0.8) : 512 / size;
        const offset = fullBleed ? -512 * 0.125 : 0;
        const c = iconColour((px + (i + 0.5) / n) * scale + offset, (py + (j + 0.5) / n) * scale + offset, fullBleed);
        if (c) [r, g, b, a] = [r + c[0], g + c[1], b + c[2], a + 1];
      }
    return a ? [Math.round(r / a), Math.round(g / a), Math.round(b / a), Math.round((255 * a) / (n * n))] : [0, 0, 0, 0];
  });
}

writeFileSync(join(dist, "index.html"), html);
writeFileSync(join(dist, "app.js"), app);
writeFileSync(join(dist, "app.css"), css);
writeFileSync(join(dist, "sw.js"), sw);
writeFileSync(join(dist, "manifest.webmanifest"), JSON.stringify(manifest, null, 2) + "\n");
copyFileSync(join(src, "icon.svg"), join(dist, "icon.svg"));
writeFileSync(join(dist, "icon-180.png"), icon(180, true));
writeFileSync(join(dist, "icon-192.png"), icon(192, false));
writeFileSync(join(dist, "icon-512.png"), icon(512, true));

// What a first load fetches: the page, its script and style, the manifest and the icons it names, the
// service worker, and what the worker caches at install (the same files).
const firstLoad = readdirSync(dist).sort();
let total = 0;
const rows = firstLoad.map((name) => {
  const bytes = readFileSync(join(dist, name));
  const gz = gzipSync(bytes, { level: 9 }).length;
  total += gz;
  return `  ${name.padEnd(22)} ${String(bytes.length).padStart(7)} B  ${String(gz).padStart(7)} B gzip`;
});
console.log(`apps/phone/dist (version ${version}):\n${rows.join("\n")}\n  first load, everything: ${total} B gzip (budget ${BUDGET})`);
if (total > BUDGET) {
  console.error(`the first load weighs ${total} B gzipped, over the ${BUDGET} B budget`);
  process.exit(1);
}
