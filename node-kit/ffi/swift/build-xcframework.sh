#!/usr/bin/env bash
# Builds LanyardNodeKitFFI.xcframework next to Package.swift, on macOS with Xcode and rustup:
#   rustup target add aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin
#   node-kit/ffi/swift/build-xcframework.sh
# The Swift sources it pairs with are the committed ones (regenerate with node-kit/ffi/generate.sh).
set -euo pipefail
cd "$(dirname "$0")"
SWIFT=$PWD
ROOT=$(cd ../../.. && pwd)
[ "$(uname -s)" = Darwin ] || { echo "build-xcframework.sh runs on macOS (it needs xcodebuild and lipo)" >&2; exit 1; }

build() {
  # A static library for iOS and macOS; the crate's cdylib is for JNA and Android.
  (cd "$ROOT" && cargo rustc -p node-kit-ffi --lib --release --target "$1" --crate-type staticlib)
}
for target in aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios aarch64-apple-darwin x86_64-apple-darwin; do
  build "$target"
done

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
lib() { echo "$ROOT/target/$1/release/liblanyard_node_kit.a"; }
mkdir -p "$OUT/ios-sim" "$OUT/macos"
# One library per platform: the simulator's and the Mac's two architectures are merged.
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$OUT/ios-sim/liblanyard_node_kit.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$OUT/macos/liblanyard_node_kit.a"

rm -rf LanyardNodeKitFFI.xcframework
xcodebuild -create-xcframework \
  -library "$(lib aarch64-apple-ios)" -headers "$SWIFT/Headers" \
  -library "$OUT/ios-sim/liblanyard_node_kit.a" -headers "$SWIFT/Headers" \
  -library "$OUT/macos/liblanyard_node_kit.a" -headers "$SWIFT/Headers" \
  -output LanyardNodeKitFFI.xcframework
echo "built $SWIFT/LanyardNodeKitFFI.xcframework; add this package (node-kit/ffi/swift) to your app"
