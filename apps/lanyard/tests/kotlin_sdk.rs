//! node-kit from Kotlin: the JUnit suite in `node-kit/ffi/kotlin` runs on the JVM through the real native
//! library (JNA), against real `lanyard up` processes it starts itself (this test's binary) and the real
//! claude, with the model scripted here. Maven runs offline: `./test.sh` fetched its dependencies first.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::messages_api::{ApiRequest, MessagesApi, Reply};
use support::{claude_binary, claude_env, skip};

/// The scripted model. Each marker in the prompt asks for one thing; the tool's result (or its denial)
/// comes back as the model's text, so the Kotlin side sees what reached the model.
fn script(request: &ApiRequest) -> Reply {
    let asked = request.last_user_text.as_str();
    if request.has_tool_result {
        if let Some(image) = request.tool_result("toolu_snap").as_ref().and_then(image_data) {
            return Reply::text(&["image:", &image]);
        }
        let (text, is_error) = request.tool_result_text("toolu_permit").unwrap_or_default();
        return Reply::text(&[if is_error { "refused: " } else { "ran: " }, text.trim()]);
    }
    // After a denial claude drops the tool call and asks again with "(no content)" as the user's message.
    if asked == "(no content)" {
        return Reply::text(&["refused"]);
    }
    if let Some(file) = word_after(asked, "PERMIT ") {
        let command = format!("echo permitted > {file} && echo wrote {file}");
        return Reply::tool("toolu_permit", "Bash", json!({ "command": command, "description": "Write a file" }));
    }
    if let Some(node) = word_after(asked, "SNAPSHOT ") {
        return Reply::tool("toolu_snap", "mcp__lanyard__screen_snapshot", json!({ "nodeId": node }));
    }
    if asked.contains("SLOW") {
        let pieces: Vec<String> = (0..80).map(|n| format!("{n} ")).collect();
        return Reply::Text { pieces, gap: Duration::from_millis(250) };
    }
    Reply::Text { pieces: ["Hello", " from", " the", " computer"].map(String::from).to_vec(), gap: Duration::ZERO }
}

fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split_whitespace().next()
}

/// The base64 data of the first image block in a tool result.
fn image_data(block: &Value) -> Option<String> {
    let parts = block["content"].as_array()?;
    let image = parts.iter().find(|p| p["type"] == "image")?;
    image["source"]["data"].as_str().map(String::from)
}

/// The directory cargo left `liblanyard_node_kit.so` in: next to this test's own binary (`deps/`) or
/// one above.
fn native_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps, deps.parent().unwrap()]
        .into_iter()
        .find(|dir| dir.join("liblanyard_node_kit.so").is_file())
        .unwrap_or_else(|| panic!("liblanyard_node_kit.so is not built next to {}", deps.display()))
        .to_path_buf()
}

fn have(tool: &str) -> bool {
    which::which(tool).is_ok()
}

#[tokio::test]
async fn the_kotlin_suite_passes_against_a_real_computer() {
    let Some(claude) = claude_binary() else { return };
    if !have("mvn") || !have("java") {
        return skip("Maven and Java 17 are needed for the Kotlin bindings");
    }
    let api = MessagesApi::start(script).await;
    let claude_home = tempfile::tempdir().unwrap();
    let env: Vec<String> = claude_env(&api, claude_home.path()).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node-kit/ffi/kotlin");
    let native = native_dir();
    let out = tokio::process::Command::new("mvn")
        .current_dir(&project)
        .args(["-o", "-q", "-B", "test"])
        .args(std::env::var("LANYARD_KOTLIN_TESTS").map(|only| format!("-Dtest={only}")))
        .arg(format!("-Dlanyard.native.dir={}", native.display()))
        // Cargo's library path may hold an older build of the library: JNA must take the one Maven
        // packed as a resource, as an app's would.
        .env_remove("LD_LIBRARY_PATH")
        .env("LANYARD_BIN", env!("CARGO_BIN_EXE_lanyard"))
        .env("LANYARD_TEST_CLAUDE", &claude)
        .env("LANYARD_TEST_CLAUDE_ENV", env.join("\n"))
        .env("LANYARD_TEST_CWD", claude_home.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), out).await.expect("the Kotlin suite ends").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{said}");
    assert!(out.status.success(), "mvn test failed: {}\n{said}", out.status);
}
