import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// No calls home from wrangler or Miniflare, even when `npm test` is run without test.sh: no metrics, no
// error reports, and no fetch of the `request.cf` data (Miniflare then uses a built-in placeholder).
for (const [name, value] of Object.entries({
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  WRANGLER_HIDE_BANNER: "true",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
})) {
  process.env[name] ??= value;
}

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.jsonc" },
      // For vitest's own runner inside workerd (it imports node:inspector); the relay uses no Node API.
      miniflare: { compatibilityFlags: ["nodejs_compat"] },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    // The 256-stream tests take 4 s alone; a loaded 2-core machine may take several times that.
    testTimeout: 30_000,
    // The object logs one line per stream event; show them only for a failing test.
    silent: "passed-only",
    reporters: ["default", "./test/summary-reporter.mjs"],
  },
});
