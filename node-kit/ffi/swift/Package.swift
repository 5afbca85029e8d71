// swift-tools-version:5.9
// node-kit for iOS and macOS apps. The generated bindings (Sources/, Headers/) are committed; the native
// library comes as an XCFramework that build-xcframework.sh makes on a Mac (with Headers/ inside it).
import PackageDescription

let package = Package(
    name: "LanyardNodeKit",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "LanyardNodeKit", targets: ["LanyardNodeKit"]),
    ],
    targets: [
        // The Rust library, static, for iOS devices, the iOS simulator and macOS, with the C module the
        // generated Swift imports.
        .binaryTarget(name: "LanyardNodeKitFFI", path: "LanyardNodeKitFFI.xcframework"),
        .target(name: "LanyardNodeKit", dependencies: ["LanyardNodeKitFFI"], path: "Sources/LanyardNodeKit"),
    ]
)
