//! The committed Kotlin and Swift bindings are what `uniffi-bindgen` makes of the library as built now: a
//! change to the exported API that was not regenerated fails here (`node-kit/ffi/generate.sh` fixes it).

use std::path::{Path, PathBuf};

/// The built library, next to this test's binary (`deps/`) or one above.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .into_iter()
        .map(|dir| dir.join("liblanyard_node_kit.so"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("liblanyard_node_kit.so is not built next to {}", deps.display()))
}

/// Generates `language` bindings into a fresh directory.
fn generate(language: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--no-format", "--metadata-no-deps", "--language", language, "--library"])
        .arg(library())
        .arg("--out-dir")
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "uniffi-bindgen {language}: {status}");
    out
}

fn assert_same(generated: &Path, committed: &Path) {
    let fresh = std::fs::read_to_string(generated).unwrap_or_else(|e| panic!("{}: {e}", generated.display()));
    let kept = std::fs::read_to_string(committed).unwrap_or_else(|e| panic!("{}: {e}", committed.display()));
    assert!(
        fresh == kept,
        "{} is out of date: run node-kit/ffi/generate.sh and commit the result",
        committed.display()
    );
}

#[test]
fn the_committed_kotlin_bindings_are_current() {
    let out = generate("kotlin");
    let file = "dev/lanyard/nodekit/lanyard_node_kit.kt";
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("kotlin/src/main/kotlin").join(file);
    assert_same(&out.path().join(file), &committed);
}

#[test]
fn the_committed_swift_bindings_are_current() {
    let out = generate("swift");
    let swift = Path::new(env!("CARGO_MANIFEST_DIR")).join("swift");
    assert_same(&out.path().join("LanyardNodeKit.swift"), &swift.join("Sources/LanyardNodeKit/LanyardNodeKit.swift"));
    assert_same(&out.path().join("LanyardNodeKitFFI.h"), &swift.join("Headers/LanyardNodeKitFFI.h"));
    assert_same(&out.path().join("LanyardNodeKitFFI.modulemap"), &swift.join("Headers/module.modulemap"));
}
