#!/usr/bin/env bash
# Runs every Lanyard test. First installs what the tests need (the real Claude Code CLI from npm into
# .tools/, system tools when run as root), builds everything, then runs the suites inside a fresh network
# namespace with only loopback up, so no test can send anything off this machine.
#
#   ./test.sh                 # everything
#   ./test.sh -p gateway      # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
CLAUDE_VERSION=2.1.337

say() { printf '==> %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# System tools: unshare and ip (namespaces), npm (the claude CLI), chromium (the reference node's Canvas),
# systemd-analyze (checks the unit `lanyard service install` writes; nothing is started).
missing=()
have unshare || missing+=(util-linux)
have ip || missing+=(iproute2)
have npm || missing+=(npm)
have chromium || have chromium-browser || missing+=(chromium)
have systemd-analyze || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]} (install them, or run as root to let this script do it)" >&2
    exit 1
  fi
fi

# The real claude CLI, pinned, inside the repo. npm may skip its postinstall; the native binary in the
# platform package runs as is.
find_claude() {
  find "$ROOT/.tools/node_modules/@anthropic-ai" -maxdepth 2 -type f -name claude -perm -u+x 2>/dev/null | head -n1
}
if [ "$(cat .tools/.claude-version 2>/dev/null)" != "$CLAUDE_VERSION" ] || [ -z "$(find_claude)" ]; then
  say "installing @anthropic-ai/claude-code@$CLAUDE_VERSION into .tools/"
  mkdir -p .tools
  (cd .tools && npm install --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_VERSION" >/dev/null)
  echo "$CLAUDE_VERSION" > .tools/.claude-version
fi
LANYARD_TEST_CLAUDE=$(find_claude)
[ -n "$LANYARD_TEST_CLAUDE" ] || { echo "the claude binary was not found after npm install" >&2; exit 1; }
export LANYARD_TEST_CLAUDE
say "claude: $LANYARD_TEST_CLAUDE ($("$LANYARD_TEST_CLAUDE" --version 2>/dev/null || echo 'version unknown'))"

# The relay Worker's toolchain (Node 22, wrangler, vitest with workerd), pinned in its package-lock.json;
# its tests run with the others, unless arguments narrow the run to some Rust tests.
# The Rust relay tests run the Worker under wrangler too, so the tools are installed for every run.
say "installing the relay Worker's tools"
apps/relay-worker/test.sh --install-only
WORKER=""
if [ $# -eq 0 ]; then
  WORKER="; apps/relay-worker/test.sh; worker=\$?; [ \$rust -ne 0 ] || rust=\$worker"
fi

# The Kotlin bindings' JUnit suite (node-kit/ffi/kotlin, run by apps/lanyard/tests/kotlin_sdk.rs) needs
# Maven and Java 17, and runs Maven offline inside the namespace: its plugins and dependencies are fetched
# here (test-compile, and the JUnit provider Surefire would otherwise resolve only when tests run). Under
# CI a missing Maven or Java is a failure; elsewhere that suite is skipped.
if ! have mvn || ! have java; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    say "installing maven and openjdk-17-jdk-headless"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven openjdk-17-jdk-headless >/dev/null
  elif [ -n "${CI:-}" ]; then
    echo "missing: maven and Java 17 (the Kotlin bindings' tests need them under CI)" >&2
    exit 1
  fi
fi
if have mvn && have java; then
  say "fetching the Kotlin bindings' Maven dependencies"
  (
    cd node-kit/ffi/kotlin
    mvn -q -B test-compile
    mvn -q -B dependency:get -Dartifact=org.apache.maven.surefire:surefire-junit-platform:3.5.4
    mvn -q -B dependency:get -Dartifact=org.junit.platform:junit-platform-launcher:1.14.1
  )
fi

# Under CI, every fuzz target for a bounded time on its corpus (fuzz/run.sh installs cargo-fuzz when
# missing); its build is removed afterwards, so the test build below has the disk to itself.
if [ -n "${CI:-}" ] && [ $# -eq 0 ]; then
  say "fuzzing"
  fuzz/run.sh
  rm -rf target/fuzz
fi

# Build with the network (crates.io), run without it.
say "building"
cargo test --workspace --locked --no-run "$@"

# Under CI, after the tests and in their namespace: the soak (apps/soak, docs/benchmarks.md "Soak"), 5 minutes
# of 200 devices against the debug binaries just built; its failure fails the run.
SOAK=""
if [ -n "${CI:-}" ] && [ $# -eq 0 ]; then
  cargo build --locked -p lanyard-soak
  SOAK="; target/debug/lanyard-soak --duration 5m --devices 200 --report target/soak-report.md; soak=\$?; [ \$rust -ne 0 ] || rust=\$soak"
fi

# The suites, with a closing line that counts every test of every suite.
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
run_tests="ip link set lo up && { cargo test --workspace --locked --offline $*; rust=\$?$WORKER$SOAK; exit \$rust; }"
set +e
if [ "$(id -u)" = 0 ] && unshare --net true 2>/dev/null; then
  say "running the tests in a fresh network namespace"
  unshare --net -- sh -c "$run_tests" 2>&1 | tee "$LOG"
elif unshare -rn true 2>/dev/null; then
  say "running the tests in a fresh user and network namespace"
  unshare -rn -- sh -c "$run_tests" 2>&1 | tee "$LOG"
elif [ -n "${CI:-}" ]; then
  echo "cannot create a network namespace; under CI the tests must not run on the real network" >&2
  exit 1
else
  say "WARNING: no network namespace available; running the tests on this host's loopback"
  sh -c "${run_tests#ip link set lo up && }" 2>&1 | tee "$LOG"
fi
status=${PIPESTATUS[0]}
set -e
# A test that cannot run returns early and so "passes"; it says so first with a `SKIPPED: <test> (<why>)`
# line (the `skip` helper in gateway/tests/support), which is counted here as skipped, not passed. Under
# CI the helper fails the test instead.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /SKIPPED: / { s += 1 }
     END { printf "summary: %d passed, %d failed, %d skipped (%d returned early, %d ignored)\n", p - s, f, s + i, s, i }' "$LOG"
if grep -q 'SKIPPED: ' "$LOG"; then
  grep -o 'SKIPPED: .*' "$LOG" >&2
fi
exit "$status"
