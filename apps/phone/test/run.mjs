// Bundles each test/*.test.ts with esbuild (packages from apps/relay-worker/node_modules) and runs them
// with Node's own test runner.
import { createRequire } from "node:module";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = join(here, "../../relay-worker/node_modules");
const { build } = createRequire(join(nodeModules, "package.json"))("esbuild");
const out = mkdtempSync(join(tmpdir(), "lanyard-phone-tests-"));
try {
  const tests = readdirSync(here).filter((name) => name.endsWith(".test.ts"));
  await build({
    entryPoints: tests.map((name) => join(here, name)),
    outdir: out,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node22",
    nodePaths: [nodeModules],
    logLevel: "warning",
    define: { "import.meta.dirname": JSON.stringify(here) },
  });
  const files = readdirSync(out).map((name) => join(out, name));
  const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
  process.exitCode = run.status ?? 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}
