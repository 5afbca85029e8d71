#!/usr/bin/env bash
# Regenerates the committed Kotlin and Swift bindings from the library as built now. Run after changing
# the exported API; `cargo test -p node-kit-ffi --test bindings_current` fails until the result is committed.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(cd ../.. && pwd)
cargo build -p node-kit-ffi
LIB="$ROOT/target/debug/liblanyard_node_kit.so"
BINDGEN="$ROOT/target/debug/uniffi-bindgen"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$BINDGEN" generate --no-format --metadata-no-deps --language kotlin --library "$LIB" --out-dir "$OUT/kotlin"
"$BINDGEN" generate --no-format --metadata-no-deps --language swift --library "$LIB" --out-dir "$OUT/swift"
cp "$OUT/kotlin/dev/lanyard/nodekit/lanyard_node_kit.kt" kotlin/src/main/kotlin/dev/lanyard/nodekit/
mkdir -p swift/Sources/LanyardNodeKit swift/Headers
cp "$OUT/swift/LanyardNodeKit.swift" swift/Sources/LanyardNodeKit/
cp "$OUT/swift/LanyardNodeKitFFI.h" swift/Headers/
cp "$OUT/swift/LanyardNodeKitFFI.modulemap" swift/Headers/module.modulemap
