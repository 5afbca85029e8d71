//! `lanyard-node` through the events of its life, with real parts (the gateway with the real claude, the
//! bridge, the node binary, its Chromium): the owner revokes it, renames it, changes its web allow-list while
//! it runs; its link drops and comes back; it is killed with SIGKILL.

mod node_support;

use nix::sys::signal::Signal;
use node_kit::protocol::{ErrorCode, method};
use node_support::support::gw::eventually;
use node_support::support::gw::messages_api::Reply;
use node_support::{Computer, NodeProcess, TestPage, lanyard_node};
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn computer() -> Option<Computer> {
    Computer::start(|_| Reply::text(&["fine"]), |_| {}).await
}

/// A node with no screen, connected, and its ID.
async fn connected_node(computer: &Computer, name: &str) -> (NodeProcess, String) {
    let node = NodeProcess::pair_and_run(computer, name, &[], &["--no-screen"]).await;
    node.stderr.find("connected to bridge", WAIT).await;
    let id = computer.node_named(name).await.node_id;
    (node, id)
}

/// Revoked while it runs: the node says what happened and what to do, forgets the pairing (so `status`
/// says it is not paired) and exits with a failure, instead of running on as if paired.
#[tokio::test]
async fn a_revoked_node_says_so_forgets_its_pairing_and_exits() {
    let Some(computer) = computer().await else { return };
    let (mut node, id) = connected_node(&computer, "revoked").await;
    assert!(lanyard_node(node.dir.path(), &["status"]).await.contains("paired as"));

    computer.operator().await.request(method::PAIR_REVOKE, json!({ "nodeId": id })).await.unwrap();
    let status = node.exited(WAIT).await;
    assert!(!status.success(), "a revoked node exits with a failure");
    let said = node.stderr.find("unpaired this device", WAIT).await;
    assert!(said.contains("(revoked)") && said.contains("lanyard-node pair"), "{said}");
    assert!(!node.stderr.text().contains("protocol violation"), "{}", node.stderr.text());

    let status = lanyard_node(node.dir.path(), &["status"]).await;
    assert!(status.contains("not paired"), "{status}");
    assert!(!node.dir.path().join("bridge.json").exists());
    // Started again, it says at once that it needs pairing.
    let again = tokio::process::Command::new(node_support::binary())
        .arg("--state")
        .arg(node.dir.path())
        .args(["run", "--no-screen"])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not paired"));
    computer.stop().await;
}

/// The node prints one line when its link drops and one when it is back, saying where.
#[tokio::test]
async fn a_dropped_link_and_its_return_are_printed() {
    let Some(mut computer) = computer().await else { return };
    let (mut node, _) = connected_node(&computer, "blinking").await;
    let address = computer.bridge.address();

    computer.bridge = computer.bridge.restart().await;
    let lost = node.stderr.find("lanyard-node: link: lost", WAIT).await;
    let back = node.stderr.find("lanyard-node: link: connected on the LAN", WAIT).await;
    assert!(back.ends_with(&address), "{back}");
    let lines = node.stderr.all();
    let position = |line: &String| lines.iter().position(|l| l == line).unwrap();
    assert!(position(&lost) < position(&back), "lost before back: {lines:#?}");
    node.type_line("/status").await;
    node.stderr.find("lanyard-node: link connected", WAIT).await;
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// A rename by the owner reaches the running node at once: it says so, and `status` shows the new name.
#[tokio::test]
async fn a_rename_reaches_the_running_node() {
    let Some(computer) = computer().await else { return };
    let (mut node, id) = connected_node(&computer, "kitchen").await;

    let renamed = computer
        .operator()
        .await
        .request(method::PAIR_RENAME, json!({ "nodeId": id, "name": "Hall display" }))
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Hall display");
    node.stderr.find(r#"lists this device as "Hall display""#, WAIT).await;
    let status = lanyard_node(node.dir.path(), &["status"]).await;
    assert!(status.contains("Name:      Hall display"), "{status}");
    // The computer's own list shows it at once too, not at the next connect.
    assert_eq!(computer.node_named("Hall display").await.node_id, id);
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// `--web-allow` given to another `lanyard-node` command reaches the running node without a restart, and
/// so does taking it back.
#[tokio::test]
async fn a_web_allow_change_reaches_the_running_node() {
    let Some(computer) = computer().await else { return };
    let page = TestPage::start().await;
    let mut node = NodeProcess::pair_and_run(&computer, "wall", &[], &[]).await;
    node.stderr.find("connected to bridge", WAIT).await;
    let id = computer.node_named("wall").await.node_id;
    let navigate = async || computer.invoke(&id, "screen.navigate", json!({ "url": page.origin })).await;

    assert_eq!(navigate().await.unwrap_err().code, ErrorCode::UrlNotAllowed);
    lanyard_node(node.dir.path(), &["--web-allow", &page.origin, "status"]).await;
    let opened = navigate().await.expect("the running node admits the origin just allowed");
    assert!(opened["url"].as_str().unwrap().starts_with(&page.origin), "{opened}");

    lanyard_node(node.dir.path(), &["--web-allow-clear", "status"]).await;
    assert_eq!(navigate().await.unwrap_err().code, ErrorCode::UrlNotAllowed);
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// A node killed with SIGKILL cannot close its browser: the browser goes anyway, within seconds.
#[tokio::test]
async fn a_killed_node_leaves_no_browser_behind() {
    let Some(computer) = computer().await else { return };
    let mut node = NodeProcess::pair_and_run(&computer, "killed", &[], &[]).await;
    node.stderr.find("connected to bridge", WAIT).await;
    eventually(WAIT, async || (!node.browser_processes().is_empty()).then_some(())).await;

    node.signal(Signal::SIGKILL);
    node.exited(WAIT).await;
    eventually(Duration::from_secs(10), async || node.browser_processes().is_empty().then_some(())).await;
    computer.stop().await;
}
