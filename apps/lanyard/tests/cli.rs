//! The `lanyard` binary as a user runs it: help texts, refusals, and a gateway started from the CLI
//! answering `lanyard agent` with the real claude against the scripted Messages API.

#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::messages_api::{MessagesApi, Reply};
use support::{claude_binary, claude_env};

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
        (vec!["gateway", "--help"], "loopback-only WebSocket server"),
        (vec!["agent", "--help"], "stream its answer"),
        (vec!["nodes", "--help"], "nodes"),
        (vec!["nodes", "list", "--help"], "connected now"),
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
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn gateway_then_agent_streams_an_answer() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["Hello", " from", " the model"])).await;
    let home = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(["gateway", "--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--claude")
        .arg(&claude)
        .arg("--cwd")
        .arg(claude_home.path())
        .env("LANYARD_HOME", home.path())
        .envs(claude_env(&api, claude_home.path()))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = format!("ws://127.0.0.1:{port}");
    let home_path = home.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || lanyard(&home_path, &["--url", &url, "agent", "hello"])).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello from the model\n");

    let url = format!("ws://127.0.0.1:{port}");
    let home_path = home.path().to_path_buf();
    let out =
        tokio::task::spawn_blocking(move || lanyard(&home_path, &["--url", &url, "nodes", "list"])).await.unwrap();
    assert_eq!(text(&out.stdout), "no nodes connected\n");

    // SIGTERM ends the gateway cleanly and promptly.
    Command::new("kill").args(["-TERM", &gateway.id().unwrap().to_string()]).status().unwrap();
    let status =
        tokio::time::timeout(Duration::from_secs(10), gateway.wait()).await.expect("the gateway stops").unwrap();
    assert!(status.success());
}
