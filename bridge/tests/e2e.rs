//! The whole path with real parts: a node pairs by approval over pinned mutual TLS, reconnects as paired,
//! streams an `agent` turn from the real claude (against the scripted Messages API) through the bridge,
//! and answers a `node.invoke` the owner sends from the gateway.

mod support;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use node_kit::CommandHandler;
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, request_pairing};
use node_kit::protocol::{AgentEventKind, AgentParams, ErrorShape, NodeCommandRequest, Scope, method};
use serde_json::{Value, json};
use std::sync::Arc;
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary};
use support::{DIARY_SECRET, TestBridge, diary_model, pair, pending_requests, screen_advert};

struct Canvas;

impl CommandHandler for Canvas {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        async move { Ok(json!({ "result": format!("ran {} with {}", request.command, request.params) })) }.boxed()
    }
}

#[tokio::test]
async fn pair_approve_reconnect_then_agent_and_invoke_through_the_bridge() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["Hello", " from", " the model"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let operator = gateway.operator().await;
    let mut owner_events = operator.subscribe();

    // Door 1: the node asks; the owner sees the request with the same SAS and approves it.
    let identity = Arc::new(certs::Identity::generate());
    let request = PairingRequest::new("Ada's phone", "ios").model("iPhone 17").scopes([Scope::Chat]);
    let pending = request_pairing(&bridge.address(), &identity, request).await.unwrap();
    assert_eq!(pending.bridge_id(), bridge.id);
    let announced = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let event = owner_events.recv().await.unwrap();
            if event.event == "pair.requested" {
                return event;
            }
        }
    })
    .await
    .expect("the owner hears of the request at once");
    assert_eq!(announced.payload["sas"], pending.sas());
    let shown = &pending_requests(&gateway).await[0];
    assert_eq!(shown.request.sas, pending.sas());
    assert_eq!(shown.request.device.name, "Ada's phone");
    assert_eq!(shown.request.address, "127.0.0.1");
    operator.request(method::PAIR_APPROVE, json!({ "requestId": pending.request_id() })).await.unwrap();
    let paired = pending.approved().await.unwrap();
    assert_eq!(paired.bridge_id, bridge.id);
    assert_eq!(paired.scopes, [Scope::Chat]);

    // Reconnect as paired, pinned to the bridge key learnt above.
    let node = Node::builder(identity.clone(), paired).commands(screen_advert(), Canvas).connect().await.unwrap();
    let hello = node.client().unwrap().hello().clone();
    assert_eq!(hello.paired.unwrap().node_id, identity.id());

    let mut run = node.agent(AgentParams::new("hello through the bridge")).await.unwrap();
    let mut streamed = String::new();
    while let Some(event) = run.next_event().await {
        if let AgentEventKind::TextDelta { text } = event {
            streamed.push_str(&text);
        }
    }
    let outcome = run.outcome().await.unwrap();
    assert_eq!(streamed, "Hello from the model");
    assert_eq!(outcome.result, "Hello from the model");
    assert_eq!(api.requests_with("hello through the bridge").len(), 1);

    // The node's conversation is its own, apart from the owner's, and the node does not get to see the list.
    let health = operator.request(method::HEALTH, json!({})).await.unwrap();
    let sessions: Vec<&str> =
        health["agent"]["sessions"].as_array().unwrap().iter().map(|s| s["sessionKey"].as_str().unwrap()).collect();
    assert_eq!(sessions, [format!("node:{}:main", identity.id())]);
    let seen_by_node = node.request(method::HEALTH, json!({})).await.unwrap();
    assert_eq!(seen_by_node["agent"]["sessions"], json!([]));
    assert_eq!(seen_by_node["presence"], json!([]));

    // The owner drives the node's screen from the gateway; the command crosses the bridge and comes back.
    let invoke = json!({
        "nodeId": identity.id().to_string(), "command": "screen.eval", "params": {"javaScript": "1+1"},
        "idempotencyKey": "e2e-1", "timeoutMs": 5000,
    });
    let answer = operator.request(method::NODE_INVOKE, invoke).await.unwrap();
    assert_eq!(answer["payload"]["result"], "ran screen.eval with {\"javaScript\":\"1+1\"}");
    node.close();
}

/// Issue 20, item 1, for TLS nodes: a node is its key, never its display name. Two nodes with the same
/// `displayName` each ask on conversation `diary` with the same idempotency keys: the second is answered for
/// itself, and the model never sees the first's secret.
#[tokio::test]
async fn two_tls_nodes_with_one_display_name_share_no_conversation_or_run() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(diary_model).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let connect = async || {
        let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
        Node::builder(identity, paired).connect().await.unwrap()
    };
    let ask = async |node: &Node, turn: u32, prompt: &str| {
        let params = AgentParams {
            session_key: Some("diary".into()),
            idempotency_key: format!("diary-{turn}"),
            ..AgentParams::new(prompt)
        };
        node.agent(params).await.unwrap().outcome().await.unwrap().result
    };
    let first = connect().await;
    assert_eq!(ask(&first, 1, &format!("remember {DIARY_SECRET}")).await, "noted");
    assert_eq!(ask(&first, 2, "what is my secret?").await, format!("your secret is {DIARY_SECRET}"));

    let second = connect().await;
    const ASKED: &str = "the second node asks: what is my secret?";
    for turn in 1..=2 {
        assert_eq!(ask(&second, turn, ASKED).await, format!("nothing on record for: {ASKED}"));
    }
    let seen = api.requests_with("the second node asks");
    assert_eq!(seen.len(), 2, "both turns ran: neither was taken for a duplicate of the first's");
    assert!(seen.iter().all(|r| !r.body.to_string().contains(DIARY_SECRET)), "the first's secret reached the second");
    assert_eq!(ask(&first, 3, "still mine?").await, format!("your secret is {DIARY_SECRET}"));

    let list = gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    let nodes = list["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["name"], nodes[1]["name"], "one display name");
    assert_ne!(nodes[0]["nodeId"], nodes[1]["nodeId"]);
}
