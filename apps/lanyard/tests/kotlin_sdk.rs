//! node-kit from Kotlin: the JUnit suite in `node-kit/ffi/kotlin` runs on the JVM through the real native
//! library (JNA), against real `lanyard up` processes it starts itself (this test's binary) and the real
//! claude, with the model scripted here. Maven runs offline: `./test.sh` fetched its dependencies first.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        if let Some((answer, _)) = request.tool_result_text("toolu_ask") {
            return Reply::text(&["answered: ", answer.trim()]);
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
    if asked.contains("ASK-ME") {
        let question = json!({ "question": "Which color?", "header": "Color", "multiSelect": false,
            "options": [{ "label": "Red", "description": "A red button" }, { "label": "Blue", "description": "A blue button" }] });
        return Reply::tool("toolu_ask", "AskUserQuestion", json!({ "questions": [question] }));
    }
    // The prompt's own image, as the model got it (the marker may not be the message's last text block).
    let prompt = request.body["messages"].as_array().and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    if let Some(prompt) = prompt.filter(|p| p["content"].to_string().contains("LOOK")) {
        return Reply::text(&["image:", &image_data(prompt).unwrap_or_else(|| format!("none in {prompt}"))]);
    }
    if let Some(node) = word_after(asked, "SNAPSHOT ") {
        return Reply::tool("toolu_snap", "mcp__lanyard__screen_snapshot", json!({ "nodeId": node }));
    }
    if asked.contains("LONG") {
        let pieces: Vec<String> = (0..LONG_PIECES).map(|n| format!("{n} ")).collect();
        return Reply::Text { pieces, gap: Duration::ZERO };
    }
    if asked.contains("SLOW") {
        let pieces: Vec<String> = (0..80).map(|n| format!("{n} ")).collect();
        return Reply::Text { pieces, gap: Duration::from_millis(250) };
    }
    Reply::Text { pieces: ["Hello", " from", " the", " computer"].map(String::from).to_vec(), gap: Duration::ZERO }
}

/// The pieces of the long turn whose replay the overhead measurement times.
const LONG_PIECES: usize = 1000;

fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    rest.split_whitespace().next()
}

/// The base64 data of the first image block in a tool result or a message.
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
    let only = std::env::var("LANYARD_KOTLIN_TESTS").ok();
    let said = maven_test(&claude, &api, claude_home.path(), only.as_deref(), &[]).await;
    println!("{said}");
}

/// Runs the Kotlin suite (`only`: a `-Dtest=` filter) with `extra` in its environment; its output.
/// Panics when it fails.
async fn maven_test(
    claude: &Path,
    api: &MessagesApi,
    claude_home: &Path,
    only: Option<&str>,
    extra: &[(&str, String)],
) -> String {
    let env: Vec<String> = claude_env(api, claude_home).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../node-kit/ffi/kotlin");
    let native = native_dir();
    let out = tokio::process::Command::new("mvn")
        .current_dir(&project)
        .args(["-o", "-q", "-B", "test"])
        .args(only.map(|only| format!("-Dtest={only}")))
        .arg(format!("-Dlanyard.native.dir={}", native.display()))
        // Cargo's library path may hold an older build of the library: JNA must take the one Maven
        // packed as a resource, as an app's would.
        .env_remove("LD_LIBRARY_PATH")
        .env("LANYARD_BIN", env!("CARGO_BIN_EXE_lanyard"))
        .env("LANYARD_TEST_CLAUDE", claude)
        .env("LANYARD_TEST_CLAUDE_ENV", env.join("\n"))
        .env("LANYARD_TEST_CWD", claude_home)
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), out).await.expect("the Kotlin suite ends").unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "mvn test failed: {}\n{said}", out.status);
    said
}

/// How many clients the JVM's memory measurement connects.
/// (The bridge lets one address try 5 pairing codes a minute, so each takes about 12 s to pair.)
const MEASURED_CLIENTS: usize = 8;

/// The cost of the bindings, for docs/benchmarks.md ("Kotlin bindings"): one `lanyard up`, node-kit from
/// Rust here and then through the bindings from the JVM (`BindingsOverhead.kt`), the same calls and the
/// same replayed turn on both. Not a pass/fail test: it prints the figures.
#[tokio::test]
#[ignore = "a measurement: cargo test -p lanyard --test kotlin_sdk -- --ignored --nocapture"]
async fn bindings_overhead() {
    use node_kit::node::Node;
    use node_kit::pairing::{PairingRequest, redeem};
    use node_kit::protocol::{AgentParams, AttachParams};

    let claude = claude_binary().expect("claude is needed");
    let api = MessagesApi::start(script).await;
    let claude_home = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let bridge_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut up = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"));
    up.args(["up", "--port", "0", "--bridge-port", &bridge_port.to_string(), "--bridge-bind", "127.0.0.1"])
        .args(["--key-store", "file", "--mdns", "off", "--no-console", "--requests-per-node", "1000000", "--cwd"])
        .arg(claude_home.path())
        .arg("--claude")
        .arg(&claude)
        .env("LANYARD_HOME", home.path())
        .env("RUST_LOG", "warn")
        .env_remove("LANYARD_GATEWAY_URL")
        .envs(claude_env(&api, claude_home.path()))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut up = up.spawn().unwrap();
    let gateway = {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(up.stdout.take().unwrap()).lines();
        let mut gateway = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("Gateway:") {
                gateway = url.split_whitespace().next().map(String::from);
            }
            if line.contains("Stop with Ctrl-C") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        gateway.expect("the banner names the gateway")
    };
    // Calls are not rate limited here (`--requests-per-node`): back to back is the point.
    let string = {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(["--url", &gateway, "pair", "--string"])
            .env("LANYARD_HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };

    let state = tempfile::tempdir().unwrap();
    let identity = Arc::new(node_kit::storage::load_or_create_identity(&state.path().join("key.pem")).unwrap());
    let string = string.parse().unwrap();
    let paired = redeem(&string, &identity, PairingRequest::new("Rust phone", "linux")).await.unwrap();
    let node = Node::builder(identity, paired).connect().await.unwrap();
    let mut calls = Vec::new();
    for n in 0..1050 {
        let started = Instant::now();
        node.pending().await.unwrap();
        if n >= 50 {
            calls.push(started.elapsed());
        }
    }
    let mut run = node.agent(AgentParams::new("say LONG")).await.unwrap();
    let run_id = run.run_id().to_string();
    while run.next().await.is_some() {}
    let mut replays = Vec::new();
    let mut events = 0;
    for _ in 0..25 {
        let started = Instant::now();
        let params = AttachParams { run_id: Some(run_id.clone()), session_key: None, after_seq: 0 };
        let mut replay = node.attach(params).await.unwrap();
        events = 0;
        while replay.next().await.is_some() {
            events += 1;
        }
        replays.push(started.elapsed() / events);
    }
    node.close();

    // A new code replaces the last one: the JVM asks for each when it pairs.
    let measured = state.path().join("measured.txt");
    let extra = [
        ("LANYARD_MEASURE_GATEWAY", gateway.clone()),
        ("LANYARD_MEASURE_HOME", home.path().display().to_string()),
        ("LANYARD_MEASURE_CLIENTS", MEASURED_CLIENTS.to_string()),
        ("LANYARD_MEASURE_OUT", measured.display().to_string()),
        // A heap committed and touched from the start, so the resident set moves only with native memory.
        ("JAVA_TOOL_OPTIONS", "-Xms256m -Xmx256m -XX:+AlwaysPreTouch".to_string()),
    ];
    maven_test(&claude, &api, claude_home.path(), Some("BindingsOverhead"), &extra).await;
    let said = std::fs::read_to_string(&measured).unwrap();
    let kotlin = |key: &str| -> f64 {
        let line = said
            .lines()
            .find_map(|l| l.strip_prefix(&format!("MEASURED {key} ")))
            .unwrap_or_else(|| panic!("{key} in\n{said}"));
        line.trim().parse().unwrap()
    };
    let (rust_call, rust_event) = (median_us(&mut calls), median_us(&mut replays));
    let (kotlin_call, kotlin_event) = (kotlin("call_us"), kotlin("event_us"));
    println!(
        "pending round trip, median: Rust {rust_call:.1} us, Kotlin {kotlin_call:.1} us, +{:.1} us",
        kotlin_call - rust_call
    );
    println!(
        "per replayed event ({events} events), median of 25 replays: Rust {rust_event:.2} us, Kotlin {kotlin_event:.2} us, +{:.2} us",
        kotlin_event - rust_event
    );
    println!(
        "per connected client on the JVM ({MEASURED_CLIENTS}): heap {:.0} KiB, RSS {:.0} KiB",
        kotlin("client_heap_kib"),
        kotlin("client_rss_kib")
    );
    up.kill().await.unwrap();
}

fn median_us(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}
