//! Restarts while nodes are connected: they see a structured error, then work again by themselves,
//! without pairing again.

mod support;

use node_kit::Client;
use node_kit::node::{Backoff, Link, Node};
use node_kit::protocol::{ClientMode, ErrorCode, Scope, method};
use serde_json::json;
use std::time::Duration;
use support::gw::{LogCapture, TestGateway};
use support::{RawNode, TestBridge, pair};

fn quick_backoff() -> Backoff {
    Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500) }
}

#[tokio::test]
async fn a_gateway_restart_is_a_structured_error_then_nodes_work_again() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity.clone(), paired).backoff(quick_backoff()).connect().await.unwrap();
    node.request(method::HEALTH, json!({})).await.unwrap();
    let mut link = node.link();

    let addr = gateway.addr;
    let home = gateway.stop_keeping_home().await;
    let cause = tokio::time::timeout(Duration::from_secs(5), link.wait_for(|l| matches!(l, Link::Reconnecting(_))))
        .await
        .expect("the node hears the gateway is gone")
        .unwrap()
        .clone();
    let Link::Reconnecting(Some(cause)) = cause else { panic!("the bridge said why") };
    assert_eq!(cause.code, ErrorCode::GatewayUnavailable);
    assert!(cause.retryable && cause.retry_after_ms.is_some());
    let e = node.request(method::HEALTH, json!({})).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");

    let gateway = TestGateway::start_at(home, addr, |_| {}).await;
    node.connected(Duration::from_secs(10)).await.expect("the node comes back by itself");
    node.request(method::HEALTH, json!({})).await.unwrap();
    let list = gateway.operator().await.request(method::NODE_LIST, json!({})).await.unwrap();
    assert_eq!(list["nodes"][0]["nodeId"], identity.id().to_string(), "still paired, no new pairing");
}

#[tokio::test]
async fn after_a_bridge_restart_nodes_reconnect_by_themselves_with_their_pairing_intact() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity, paired).backoff(quick_backoff()).connect().await.unwrap();
    let first = node.client().unwrap();
    let bridge_id = bridge.id;

    let bridge = bridge.restart().await;
    assert_eq!(bridge.id, bridge_id, "the bridge keeps its key across restarts");
    tokio::time::timeout(Duration::from_secs(5), first.closed()).await.expect("the old connection ends");
    let second = node.connected(Duration::from_secs(10)).await.expect("the node reconnects by itself");
    assert!(second.hello().paired.is_some());
    node.request(method::HEALTH, json!({})).await.unwrap();
}

/// The gateway drops a node's older link when the node connects again, as a phone moving between the LAN and
/// the relay does while its old connection is still closing: the bridge ends that connection as replaced,
/// without a warning (the soak found one in its log for every such move). Here the newer link is opened straight to
/// the gateway, as the bridge opens it, so the drop does not race the bridge's own replacement.
#[tokio::test]
async fn a_link_the_gateway_replaces_is_no_warning() {
    // This test's runtime runs every task on this thread: a subscriber of its own sees the bridge's lines.
    let logs = LogCapture::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(gateway::logging::filter("info"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, _) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let mut older = RawNode::connect(bridge.addr, &identity, bridge.id, None).await;

    let newer = Client::builder(&gateway.url)
        .token(&gateway.bridge_token)
        .mode(ClientMode::Node)
        .instance_id(identity.id().to_string())
        .connect()
        .await
        .expect("the newer link is taken");
    assert_eq!(older.closed().await.as_deref(), Some("replaced by a newer connection of this node"));
    let text = logs.text();
    assert!(text.contains("a newer connection of the node replaced this one"), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    drop(newer);
}
