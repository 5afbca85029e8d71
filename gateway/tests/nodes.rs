//! Nodes over the protocol: a test node (the node-kit client with a command handler) and an operator.

mod support;

use futures_util::future::BoxFuture;
use node_kit::link::GatewayConnector;
use node_kit::protocol::{
    ErrorCode, ErrorShape, NodeAdvert, NodeCommandRequest, NodeInvokeParams, NodeListPayload, NodeSummary, event,
    method,
};
use node_kit::{Client, ClientBuilder, ClientError, CommandHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::TestGateway;

/// A node that evaluates `screen.eval` as "the script's length", sleeps on `test.sleep`, refuses
/// `screen.snapshot` as if backgrounded, and counts every command it runs.
#[derive(Clone, Default)]
struct TestNode {
    runs: Arc<AtomicUsize>,
}

impl CommandHandler for TestNode {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match request.command.as_str() {
                "screen.eval" => {
                    let script = request.params["javaScript"].as_str().unwrap_or_default();
                    Ok(json!({ "result": script.len() }))
                }
                "test.sleep" => {
                    let ms = request.params["ms"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(json!({ "slept": ms }))
                }
                "screen.snapshot" => Err(ErrorShape::retryable(
                    ErrorCode::NodeBackgroundUnavailable,
                    "the app is in the background",
                    Some(2500),
                )),
                other => Err(ErrorShape::new(ErrorCode::UnknownCommand, format!("no {other}"))),
            }
        })
    }
}

/// The test node's ID: a key ID, as the bridge would take it from the node's TLS key.
fn phone_id() -> String {
    certs::KeyId::of_spki(b"phone-1").to_string()
}

/// Connects a paired node the way the bridge does: with the bridge token, the node's key ID as its identity.
async fn connect_node(gateway: &TestGateway, id: &str, caps: &[&str], node: TestNode) -> Client {
    gateway.pair_node(id.parse().unwrap(), "Test phone").await;
    let advert = NodeAdvert {
        caps: caps.iter().map(|c| c.to_string()).collect(),
        commands: ["screen.eval", "screen.snapshot", "test.sleep"].map(String::from).to_vec(),
    };
    Client::builder(&gateway.url)
        .token(&gateway.bridge_token)
        .instance_id(id)
        .display_name("Test phone")
        .platform("test")
        .node(advert, node)
        .connect()
        .await
        .expect("node connects")
}

/// A gateway with one connected test node and one operator.
struct Setup {
    gateway: TestGateway,
    node: TestNode,
    phone: Client,
    operator: Client,
}

async fn setup(node_id: &str, caps: &[&str]) -> Setup {
    let gateway = TestGateway::start(|_| {}).await;
    let node = TestNode::default();
    let phone = connect_node(&gateway, node_id, caps, node.clone()).await;
    let operator = gateway.operator().await;
    Setup { gateway, node, phone, operator }
}

fn invoke(node: &str, command: &str, params: Value, key: &str, timeout_ms: u64) -> Value {
    serde_json::to_value(NodeInvokeParams {
        node_id: node.into(),
        command: command.into(),
        params,
        idempotency_key: key.into(),
        timeout_ms: Some(timeout_ms),
    })
    .unwrap()
}

/// Calls `node.invoke` and returns the error it must fail with.
async fn invoke_fails(client: &Client, params: Value) -> ErrorShape {
    remote(client.request(method::NODE_INVOKE, params).await.unwrap_err())
}

fn remote(err: ClientError) -> ErrorShape {
    match err {
        ClientError::Remote(e) => e,
        other => panic!("expected a protocol error, got {other}"),
    }
}

#[tokio::test]
async fn invoke_round_trip_list_and_describe() {
    let Setup { gateway: _gateway, node, operator, phone: _phone } = setup(&phone_id(), &["screen"]).await;

    let list: NodeListPayload =
        serde_json::from_value(operator.request(method::NODE_LIST, Value::Null).await.unwrap()).unwrap();
    assert_eq!(list.nodes.len(), 1);
    assert_eq!(list.nodes[0].node_id, phone_id());
    assert_eq!(list.nodes[0].display_name.as_deref(), Some("Test phone"));
    let described: NodeSummary =
        serde_json::from_value(operator.request(method::NODE_DESCRIBE, json!({"nodeId": phone_id()})).await.unwrap())
            .unwrap();
    assert_eq!(described.caps, ["screen"]);

    let answer = operator
        .request(method::NODE_INVOKE, invoke(&phone_id(), "screen.eval", json!({"javaScript": "1+1"}), "k1", 5000))
        .await
        .unwrap();
    assert_eq!(answer, json!({"nodeId": phone_id(), "command": "screen.eval", "payload": {"result": 3}}));
    assert_eq!(node.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn timeout_and_node_errors_pass_through() {
    let Setup { gateway: _gateway, operator, phone: _phone, .. } = setup(&phone_id(), &["screen"]).await;

    let e = invoke_fails(&operator, invoke(&phone_id(), "test.sleep", json!({"ms": 2000}), "t1", 200)).await;
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.retryable);

    let e = invoke_fails(&operator, invoke(&phone_id(), "screen.snapshot", json!({}), "s1", 5000)).await;
    assert_eq!(e.code, ErrorCode::NodeBackgroundUnavailable);
    assert_eq!(e.retry_after_ms, Some(2500));

    // The operator's connection is still fine.
    operator.request(method::HEALTH, Value::Null).await.unwrap();
}

#[tokio::test]
async fn node_gone_mid_invoke_and_unknown_nodes() {
    let Setup { gateway: _gateway, operator, phone, node } = setup(&phone_id(), &["screen"]).await;

    let pending = {
        let operator = operator.clone();
        tokio::spawn(async move {
            operator
                .request(method::NODE_INVOKE, invoke(&phone_id(), "test.sleep", json!({"ms": 10_000}), "g1", 20_000))
                .await
        })
    };
    // The node has the command (it is running it) before it goes.
    support::eventually(Duration::from_secs(10), async || (node.runs.load(Ordering::SeqCst) == 1).then_some(())).await;
    drop(phone);
    let e = remote(
        tokio::time::timeout(Duration::from_secs(5), pending).await.expect("answered at once").unwrap().unwrap_err(),
    );
    assert_eq!(e.code, ErrorCode::NodeNotConnected);
    assert!(e.retryable);

    let e = invoke_fails(&operator, invoke("nobody", "screen.eval", json!({"javaScript": "1"}), "n1", 1000)).await;
    assert_eq!(e.code, ErrorCode::NodeNotConnected);
    let e = remote(operator.request(method::NODE_DESCRIBE, json!({"nodeId": "nobody"})).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::NodeNotConnected);
}

#[tokio::test]
async fn a_retried_idempotency_key_runs_the_command_once() {
    let Setup { gateway, node, operator: a, phone: _phone } = setup(&phone_id(), &["screen"]).await;
    let b = gateway.operator().await;

    let params = invoke(&phone_id(), "test.sleep", json!({"ms": 300}), "same-key", 5000);
    // Concurrent retries from two connections while the first is running, then one after it finished.
    let (first, second) =
        tokio::join!(a.request(method::NODE_INVOKE, params.clone()), b.request(method::NODE_INVOKE, params.clone()));
    let third = a.request(method::NODE_INVOKE, params).await;
    // The node ID spelt another way (lower case, no dashes) is the same node and the same retry.
    let respelt = phone_id().to_lowercase().replace('-', "");
    let fourth =
        a.request(method::NODE_INVOKE, invoke(&respelt, "test.sleep", json!({"ms": 300}), "same-key", 5000)).await;
    assert_eq!(first.unwrap(), second.as_ref().unwrap().clone());
    assert_eq!(second.as_ref().unwrap().clone(), third.unwrap());
    assert_eq!(second.unwrap(), fourth.unwrap());
    assert_eq!(node.runs.load(Ordering::SeqCst), 1, "the node ran the command once");

    // A different key runs again.
    a.request(method::NODE_INVOKE, invoke(&phone_id(), "test.sleep", json!({"ms": 1}), "other-key", 5000))
        .await
        .unwrap();
    assert_eq!(node.runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn commands_are_checked_before_they_reach_the_node() {
    let id = certs::KeyId::of_spki(b"no-screen").to_string();
    let Setup { gateway: _gateway, node, operator, phone: _phone } = setup(&id, &[]).await;

    let e = invoke_fails(&operator, invoke(&id, "lamp.on", json!({}), "u1", 1000)).await;
    assert_eq!(e.code, ErrorCode::UnknownCommand);
    assert_eq!(e.details.unwrap()["supported"], json!(["screen.eval", "screen.snapshot", "test.sleep"]));

    let e = invoke_fails(&operator, invoke(&id, "screen.eval", json!({"js": "1"}), "u2", 1000)).await;
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(node.runs.load(Ordering::SeqCst), 0);
    // The capability `screen.*` needs is checked by the bridge: bridge/tests/limits.rs.
}

#[tokio::test]
async fn node_events_and_presence_reach_operators_in_sequence() {
    let gateway = TestGateway::start(|_| {}).await;
    let operator = gateway.operator().await;
    let mut events = operator.subscribe();
    let phone = connect_node(&gateway, &phone_id(), &["screen"], TestNode::default()).await;

    phone.request(method::SYSTEM_EVENT, json!({"state": "background", "text": "locked"})).await.unwrap();
    phone.request(method::NODE_EVENT, json!({"event": "voice.transcript", "payload": {"bytes": 12}})).await.unwrap();
    // Nodes publish; they do not drive other nodes.
    let e = invoke_fails(&phone, invoke(&phone_id(), "test.sleep", json!({}), "x", 100)).await;
    assert_eq!(e.code, ErrorCode::Forbidden);
    // Operators do not publish node events.
    let e = remote(operator.request(method::NODE_EVENT, json!({"event": "x"})).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::Forbidden);

    let mut all = Vec::new();
    while all.last().is_none_or(|e: &node_kit::protocol::EventFrame| e.event != event::NODE_EVENT) {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("event arrives").unwrap();
        all.push(ev);
    }
    // Every event follows the one before it without a gap.
    for pair in all.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    // The operator may have seen its own presence first; the rest is the phone's.
    let seen: Vec<_> =
        all.into_iter().filter(|e| e.event == event::NODE_EVENT || e.payload["instanceId"] == phone_id()).collect();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].event, event::PRESENCE);
    assert_eq!(seen[0].payload["instanceId"], phone_id());
    assert_eq!(seen[1].payload["beacon"]["state"], "background");
    assert_eq!(seen[2].event, event::NODE_EVENT);
    assert_eq!(seen[2].payload, json!({"nodeId": phone_id(), "event": "voice.transcript", "payload": {"bytes": 12}}));

    let health = operator.request(method::HEALTH, Value::Null).await.unwrap();
    let phone_presence = health["presence"].as_array().unwrap().iter().find(|p| p["instanceId"] == phone_id()).unwrap();
    assert_eq!(phone_presence["beacon"]["text"], "locked");
    assert_eq!(phone_presence["connected"], true);
    assert_eq!(health["nodes"], 1);
}

/// Only the bridge speaks for nodes, and only for paired keys: over a loopback WebSocket, and over an
/// in-process link as a bridge in the same process (`lanyard up`) opens it.
#[tokio::test]
async fn node_identities_are_taken_only_from_the_bridge() {
    let gateway = TestGateway::start(|_| {}).await;
    let paired = phone_id();
    gateway.pair_node(paired.parse().unwrap(), "Test phone").await;
    for door in [GatewayConnector::WebSocket(gateway.url.clone()), GatewayConnector::InProcess(gateway.link.clone())] {
        let as_node = |token: &str, id: &str| {
            Client::to_gateway(&door).token(token).instance_id(id).node(NodeAdvert::default(), TestNode::default())
        };
        let refused = async |client: ClientBuilder| client.connect().await.expect_err("refused").code();
        // The operator token cannot claim to be a node, not even a paired one.
        assert_eq!(refused(as_node(&gateway.token, &paired)).await, Some(ErrorCode::Unauthorized), "{door}");
        // The bridge token speaks only for key IDs, and only paired ones.
        assert_eq!(refused(as_node(&gateway.bridge_token, "phone-1")).await, Some(ErrorCode::InvalidRequest), "{door}");
        let stranger = certs::KeyId::of_spki(b"stranger").to_string();
        assert_eq!(refused(as_node(&gateway.bridge_token, &stranger)).await, Some(ErrorCode::NotPaired), "{door}");
        // No token at all is no client.
        let anonymous = Client::to_gateway(&door).instance_id(&paired).node(NodeAdvert::default(), TestNode::default());
        assert_eq!(refused(anonymous).await, Some(ErrorCode::Unauthorized), "{door}");
        // With the bridge token, the paired key is the node.
        let node = as_node(&gateway.bridge_token, &paired).connect().await.expect("the paired node is let in");
        assert_eq!(node.hello().paired.as_ref().map(|p| p.node_id.to_string()), Some(paired.clone()), "{door}");
        node.close();
    }
}
