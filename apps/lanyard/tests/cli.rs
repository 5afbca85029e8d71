//! The `lanyard` binary as a user runs it: help texts, refusals, `lanyard up` with a device paired
//! through `lanyard nodes`, and a gateway started from the CLI answering `lanyard agent` with the real
//! claude against the scripted Messages API. Every server listens on 127.0.0.1 only.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use certs::Identity;
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, request_pairing};
use node_kit::protocol::Scope;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::messages_api::{MessagesApi, Reply};
use support::{claude_binary, claude_env, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

fn lanyard(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("LANYARD_HOME", home)
        .env_remove("LANYARD_GATEWAY_URL")
        .output()
        .expect("lanyard runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_explains_itself() {
    let home = tempfile::tempdir().unwrap();
    for (args, phrase) in [
        (vec!["--help"], "loopback-only gateway"),
        (vec!["--help"], "Start everything with `lanyard up`, then pair a device"),
        (vec!["up", "--help"], "the gateway and the bridge together"),
        (vec!["up", "--help"], "--bridge-bind"),
        (vec!["gateway", "--help"], "loopback-only WebSocket server"),
        (vec!["bridge", "--help"], "LAN-facing TLS server that devices pair with"),
        (vec!["bridge", "--help"], "--key-store"),
        (vec!["agent", "--help"], "stream its answer"),
        (vec!["nodes", "--help"], "answer their pairing requests"),
        (vec!["nodes", "list", "--help"], "connected now"),
        (vec!["nodes", "pending", "--help"], "pairing requests waiting for your decision"),
        (vec!["nodes", "approve", "--help"], "someone is in the middle"),
        (vec!["nodes", "approve", "--help"], "--scopes"),
        (vec!["nodes", "reject", "--help"], "Reject a pairing request"),
        (vec!["nodes", "rename", "--help"], "another name"),
        (vec!["nodes", "revoke", "--help"], "close its live connections"),
        (vec!["invoke", "--help"], "Run a command on a connected node"),
    ] {
        let out = lanyard(home.path(), &args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains(phrase), "{args:?}: {}", text(&out.stdout));
    }
}

#[test]
fn refusals_say_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = lanyard(home.path(), &["gateway", "--bind", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("loopback"), "{}", text(&out.stderr));

    let out = lanyard(home.path(), &["agent", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lanyard gateway"), "{}", text(&out.stderr));

    let out = lanyard(home.path(), &["invoke", "n1", "screen.eval", "--params", "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--params is not valid JSON"), "{}", text(&out.stderr));

    // The bridge needs the token a gateway creates; it says so before listening anywhere.
    let out = lanyard(home.path(), &["bridge", "--bridge-bind", "127.0.0.1", "--bridge-port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("start the gateway first with `lanyard up`"), "{}", text(&out.stderr));

    // Malformed IDs and scopes are refused before any connection.
    let out = lanyard(home.path(), &["nodes", "revoke", "ABCD-EFGH"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("lanyard nodes list"), "{}", text(&out.stderr));
    let out = lanyard(home.path(), &["nodes", "approve", "r1", "--scopes", "chat,admin"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the scopes are chat and voice"), "{}", text(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `lanyard ARGS` against the gateway at `url`, run off the async threads (it blocks until it exits).
async fn lanyard_at(home: &Path, url: &str, args: &[&str]) -> Output {
    let home = home.to_path_buf();
    let args: Vec<String> = ["--url", url].iter().chain(args).map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lanyard(&home, &args)
    });
    tokio::time::timeout(Duration::from_secs(20), run).await.expect("lanyard finishes").unwrap()
}

/// `lanyard ARGS` that must succeed; its stdout.
async fn lanyard_ok(home: &Path, url: &str, args: &[&str]) -> String {
    let out = lanyard_at(home, url, args).await;
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A long-running `lanyard` command (a server), killed if the test panics.
fn serve(home: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"));
    command
        .args(args)
        .env("LANYARD_HOME", home)
        .env("RUST_LOG", "warn")
        .env_remove("LANYARD_GATEWAY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn listening(port: u16) {
    eventually(Duration::from_secs(10), async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()).await;
}

/// SIGTERM ends a server cleanly (exit status 0) and promptly.
async fn terminate(server: Child) {
    Command::new("kill").args(["-TERM", &server.id().unwrap().to_string()]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), server.wait_with_output())
        .await
        .expect("the server stops within 10 s of SIGTERM")
        .unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));
}

/// `lanyard up` on free loopback ports, started and past its banner.
struct Up {
    process: Child,
    home: tempfile::TempDir,
    url: String,
    bridge_addr: String,
    banner: String,
}

impl Up {
    async fn start() -> Up {
        let home = tempfile::tempdir().unwrap();
        let (port, bridge_port) = (free_port(), free_port());
        let mut process = serve(home.path(), &["up", "--port", &port.to_string(), "--bridge-port"])
            .args([&bridge_port.to_string(), "--bridge-bind", "127.0.0.1", "--key-store", "file"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let mut banner = String::new();
        let read = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                banner.push_str(&line);
                banner.push('\n');
                if line.contains("Stop with Ctrl-C") {
                    return;
                }
            }
            panic!("lanyard up ended before its banner was complete:\n{banner}");
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("lanyard up prints its banner");
        let url = format!("ws://127.0.0.1:{port}");
        Up { process, home, url, bridge_addr: format!("127.0.0.1:{bridge_port}"), banner }
    }

    async fn lanyard(&self, args: &[&str]) -> Output {
        lanyard_at(self.home.path(), &self.url, args).await
    }

    async fn lanyard_ok(&self, args: &[&str]) -> String {
        lanyard_ok(self.home.path(), &self.url, args).await
    }

    /// The bridge ID, computed from the key the first run stored under the home.
    fn bridge_id(&self) -> String {
        let pem = std::fs::read_to_string(bridge::identity::key_file(self.home.path())).unwrap();
        Identity::from_pkcs8_pem(&pem).unwrap().id().to_string()
    }
}

#[tokio::test]
async fn up_starts_gateway_and_bridge_and_nodes_commands_reach_it() {
    let up = Up::start().await;
    assert!(up.banner.contains(&format!("Bridge ID:    {}", up.bridge_id())), "{}", up.banner);
    assert!(up.banner.contains(&format!("Devices use:  {}", up.bridge_addr)), "{}", up.banner);
    assert!(up.banner.contains(&format!("connect to {} and ask to pair", up.bridge_addr)), "{}", up.banner);
    assert!(up.banner.contains(&format!("Gateway:      {}", up.url)), "{}", up.banner);
    assert!(up.banner.contains("identity.pem (mode 0600)"), "{}", up.banner);
    // Started from a test, stdin is not a terminal: approvals go through `lanyard nodes`.
    assert!(
        up.banner.contains("approve pairing requests with `lanyard nodes pending|approve|reject`"),
        "{}",
        up.banner
    );

    assert!(up.lanyard_ok(&["nodes", "list"]).await.starts_with("no paired devices; pair one with"));
    assert_eq!(up.lanyard_ok(&["nodes", "pending"]).await, "no pairing requests waiting\n");
    let out = up.lanyard(&["nodes", "approve", "nonexistent"]).await;
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(error.contains("no pairing request nonexistent is waiting"), "{error}");
    assert!(error.contains("`lanyard nodes pending` lists the ones waiting now"), "{error}");

    terminate(up.process).await;
}

#[tokio::test]
async fn a_device_pairs_through_up_and_is_managed_with_nodes() {
    let up = Up::start().await;
    let identity = Arc::new(Identity::generate());
    let node_id = identity.id().to_string();

    // The device asks; the owner sees the same code and the same bridge the device sees.
    let request = PairingRequest::new("Ada's phone", "ios").model("iPhone15,2").scopes([Scope::Chat, Scope::Voice]);
    let pending = request_pairing(&up.bridge_addr, &identity, request).await.unwrap();
    assert_eq!(pending.bridge_id().to_string(), up.bridge_id());
    let shown = up.lanyard_ok(&["nodes", "pending"]).await;
    assert!(shown.contains("Ada's phone (ios, iPhone15,2) at 127.0.0.1\n"), "{shown}");
    assert!(shown.contains("asks for: chat,voice"), "{shown}");
    assert!(shown.contains(&format!("code:     {}", pending.sas())), "{shown}");
    assert!(shown.contains(&format!("request:  {}", pending.request_id())), "{shown}");
    assert!(shown.contains("expires:  in 4 min"), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&up.lanyard_ok(&["nodes", "pending", "--json"]).await).unwrap();
    assert_eq!(json["requests"][0]["sas"], pending.sas());

    // Approved with a narrower grant than asked for.
    let approved = up.lanyard_ok(&["nodes", "approve", pending.request_id(), "--scopes", "chat"]).await;
    assert_eq!(approved, format!("approved: \"Ada's phone\" is paired as {node_id} with scopes chat\n"));
    let paired = tokio::time::timeout(Duration::from_secs(10), pending.approved()).await.unwrap().unwrap();
    assert_eq!(paired.scopes, [Scope::Chat]);
    assert_eq!(up.lanyard_ok(&["nodes", "pending"]).await, "no pairing requests waiting\n");

    // Connected through the bridge, it lists as connected now.
    let node = Node::builder(identity, paired).connect().await.unwrap();
    let listed = eventually(Duration::from_secs(10), async || {
        let listed = up.lanyard_ok(&["nodes", "list"]).await;
        listed.contains(" yes").then_some(listed)
    })
    .await;
    let row = listed.lines().find(|l| l.starts_with(&node_id)).unwrap_or_else(|| panic!("{listed}"));
    let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells, [node_id.as_str(), "Ada's phone", "ios", "chat", "now", "yes"], "{listed}");
    assert!(listed.starts_with("ID "), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&up.lanyard_ok(&["nodes", "list", "--json"]).await).unwrap();
    assert_eq!(json["nodes"][0]["nodeId"], node_id);
    assert_eq!(json["nodes"][0]["connected"], true);

    let renamed = up.lanyard_ok(&["nodes", "rename", &node_id.to_lowercase(), "Kitchen\ntablet"]).await;
    assert_eq!(renamed, format!("renamed {node_id} to \"Kitchen tablet\"\n"));
    assert!(up.lanyard_ok(&["nodes", "list"]).await.contains("Kitchen tablet"));

    // Revoking closes the live connection at once; the device is gone from the list.
    let revoked = up.lanyard_ok(&["nodes", "revoke", &node_id]).await;
    assert!(revoked.contains("1 live connection closed"), "{revoked}");
    assert!(up.lanyard_ok(&["nodes", "list"]).await.starts_with("no paired devices"));
    let out = up.lanyard(&["nodes", "revoke", &node_id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not paired"), "{}", text(&out.stderr));
    drop(node);

    terminate(up.process).await;
}

#[tokio::test]
async fn bridge_runs_against_a_separately_started_gateway() {
    let home = tempfile::tempdir().unwrap();
    let (port, bridge_port) = (free_port(), free_port());
    let gateway = serve(home.path(), &["gateway", "--port", &port.to_string(), "--bind", "127.0.0.1"]).spawn().unwrap();
    listening(port).await;
    let url = format!("ws://127.0.0.1:{port}");
    let bridge = serve(home.path(), &["--url", &url, "bridge", "--bridge-port", &bridge_port.to_string()])
        .args(["--bridge-bind", "127.0.0.1", "--key-store", "file"])
        .spawn()
        .unwrap();
    listening(bridge_port).await;

    let identity = Identity::generate();
    let request = PairingRequest::new("Pi", "linux");
    let pending = request_pairing(&format!("127.0.0.1:{bridge_port}"), &identity, request).await.unwrap();
    let shown = lanyard_ok(home.path(), &url, &["nodes", "pending"]).await;
    assert!(shown.contains(&format!("code:     {}", pending.sas())), "{shown}");
    let rejected = lanyard_ok(home.path(), &url, &["nodes", "reject", pending.request_id()]).await;
    assert_eq!(rejected, format!("rejected: device {} was told no and nothing about it was kept\n", identity.id()));
    let refused = tokio::time::timeout(Duration::from_secs(10), pending.approved()).await.unwrap();
    assert_eq!(refused.unwrap_err().code(), Some(node_kit::ErrorCode::PairingRejected));

    terminate(bridge).await;
    terminate(gateway).await;
}

#[tokio::test]
async fn gateway_then_agent_streams_an_answer() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["Hello", " from", " the model"])).await;
    let home = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    let port = free_port();
    let gateway = serve(home.path(), &["gateway", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--claude")
        .arg(&claude)
        .arg("--cwd")
        .arg(claude_home.path())
        .envs(claude_env(&api, claude_home.path()))
        .spawn()
        .unwrap();
    listening(port).await;

    let url = format!("ws://127.0.0.1:{port}");
    assert_eq!(lanyard_ok(home.path(), &url, &["agent", "hello"]).await, "Hello from the model\n");
    assert!(lanyard_ok(home.path(), &url, &["nodes", "list"]).await.starts_with("no paired devices"));

    terminate(gateway).await;
}
