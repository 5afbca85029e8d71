#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/fuzz_targets) and runs each for a bounded time on its seed corpus
# (fuzz/corpus) and dictionary (fuzz/dict): fails when any input crashes a target, and keeps that input
# under fuzz/artifacts/TARGET/ (replay it with `target/fuzz/<triple>/release/TARGET FILE`).
#
#   fuzz/run.sh                    # every target, 15 s each, two at a time
#   fuzz/run.sh frame pin          # some targets
#   FUZZ_SECONDS=300 FUZZ_JOBS=1 fuzz/run.sh
#
# New inputs the fuzzers find go to a temporary directory, never into the committed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${FUZZ_SECONDS:-15}
JOBS=${FUZZ_JOBS:-2}
TARGET_DIR=target/fuzz

say() { printf '==> %s\n' "$*" >&2; }

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

# cargo fuzz passes nightly-only flags; a stable toolchain takes them with RUSTC_BOOTSTRAP. The targets'
# code forbids unsafe, so no sanitizer: the coverage-guided search and the targets' assertions do the work.
export RUSTC_BOOTSTRAP=1
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
say "building the fuzz targets"
cargo fuzz build --sanitizer none --codegen-units 16 --target-dir "$TARGET_DIR" >&2
bin_dir="$TARGET_DIR/$(rustc -vV | sed -n 's/^host: //p')/release"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fuzz() {
  local target=$1 dict=() status=0
  case $target in
    connection_string | relay_invite) dict=(-dict=fuzz/dict/url.dict) ;;
    relay_frame | seal_open | pin) ;;
    *) dict=(-dict=fuzz/dict/json.dict) ;;
  esac
  mkdir -p "$work/$target" "fuzz/artifacts/$target"
  "$bin_dir/$target" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$target/" "${dict[@]}" "$work/$target" "fuzz/corpus/$target" \
    >"$work/$target.log" 2>&1 || status=$?
  echo "$status" >"$work/$target.status"
}

say "fuzzing ${#targets[@]} targets for ${SECONDS_EACH} s each, $JOBS at a time"
for target in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
    wait -n || true
  done
  fuzz "$target" &
done
wait

failed=()
for target in "${targets[@]}"; do
  if [ "$(cat "$work/$target.status")" = 0 ]; then
    stats=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
    say "$target: ok, $stats inputs run"
  else
    failed+=("$target")
    say "$target: FAILED"
    tail -n 40 "$work/$target.log" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "fuzzing failed: ${failed[*]} (the inputs are under fuzz/artifacts/)"
  exit 1
fi
say "fuzzing passed: ${#targets[@]} targets"
