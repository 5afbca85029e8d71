//! The bridge's limits, each tried until it bites: pairing floods, voice and snapshot rates, snapshot size,
//! frame size, and a node that stops reading.

mod support;

use bridge::ratelimit::Rate;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use node_kit::CommandHandler;
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, request_pairing};
use node_kit::protocol::{AgentChannel, AgentParams, ErrorCode, ErrorShape, Frame, NodeCommandRequest, Scope, method};
use serde_json::{Value, json};
use std::time::Duration;
use support::gw::{TestGateway, eventually};
use support::{RawNode, TestBridge, gateway_requests, pair, pending_requests, remote, screen_advert};

fn assert_rate_limited(e: &ErrorShape) {
    assert_eq!(e.code, ErrorCode::RateLimited, "{e:?}");
    assert!(e.retryable);
    assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "a real retryAfterMs: {e:?}");
}

/// The bridge's own `pair.request` limit stops the flood before the gateway: only its burst of 4 is
/// filed (`pair.submit`); the gateway's bound of 2 waiting per address refuses two of those four.
#[tokio::test]
async fn a_pairing_flood_from_one_address_is_cut_off_and_the_pending_list_stays_bounded() {
    let gateway = TestGateway::start(|_| {}).await;
    // One more request a minute: no new one can be earned while the test runs, however slow the machine.
    let bridge = TestBridge::start(&gateway, |config| config.limits.pairing_per_address = Rate::per_minute(1, 4)).await;
    let mut accepted = 0;
    let mut refusals = Vec::new();
    for i in 0..12 {
        let identity = certs::Identity::generate();
        match request_pairing(&bridge.address(), &identity, PairingRequest::new(format!("flood {i}"), "test")).await {
            Ok(_) => accepted += 1,
            Err(e) => refusals.push(remote(e)),
        }
    }
    // Two wait at once per address (the gateway's bound); the rest are refused by one limit or the other.
    assert_eq!(accepted, 2);
    assert_eq!(refusals.len(), 10);
    refusals.iter().for_each(assert_rate_limited);
    assert_eq!(pending_requests(&gateway).await.len(), 2);
    // Which limit: the bridge's. Only its burst reached the gateway; the gateway alone would have seen 12.
    assert_eq!(gateway_requests(&gateway, method::PAIR_SUBMIT).await, 4, "the bridge's limiter stopped the rest");
}

/// One pairing dialogue by hand from `source`: `pair.request`, then `pair.confirm`; the confirm's outcome.
async fn ask_to_pair_from(source: std::net::IpAddr, bridge: &TestBridge) -> Result<Value, ErrorShape> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let identity = certs::Identity::generate();
    let mut ws = support::raw_websocket_from(Some(source), bridge.addr, &identity, bridge.id, None).await;
    let nonce = node_kit::protocol::pairing_nonce();
    let steps = [
        (
            method::PAIR_REQUEST,
            json!({"name": format!("device at {source}"), "platform": "test", "scopes": ["chat"],
            "nonceCommitment": node_kit::protocol::nonce_commitment(&nonce)}),
        ),
        (method::PAIR_CONFIRM, json!({"nonce": nonce})),
    ];
    let mut outcome = Ok(Value::Null);
    for (id, (name, params)) in steps.into_iter().enumerate() {
        let req = json!({"type": "req", "id": id.to_string(), "method": name, "params": params});
        ws.send(Message::text(req.to_string())).await.unwrap();
        outcome = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("answered in time");
            if let Message::Text(text) = next.unwrap().unwrap()
                && let Frame::Res(res) = Frame::parse(text.as_str()).unwrap()
            {
                break res.outcome;
            }
        };
        outcome.as_ref().map_err(|e| e.clone())?;
    }
    outcome
}

/// The overall bound: 16 requests wait for the owner at most, whoever sent them. Eight devices at eight
/// addresses file two each (the most one address may have waiting); a ninth address is refused with
/// `RATE_LIMITED` and the time until the oldest request in the way expires.
#[tokio::test]
async fn at_most_16_requests_wait_for_the_owner_in_all() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    for host in 2..10u8 {
        for _ in 0..2 {
            ask_to_pair_from([127, 0, 0, host].into(), &bridge).await.expect("room for this request");
        }
    }
    assert_eq!(pending_requests(&gateway).await.len(), 16);
    let refused = ask_to_pair_from([127, 0, 0, 10].into(), &bridge).await.expect_err("the list is full");
    assert_rate_limited(&refused);
    assert!(refused.retry_after_ms.unwrap() <= 5 * 60 * 1000, "at most a request's lifetime: {refused:?}");
    assert_eq!(pending_requests(&gateway).await.len(), 16);
}

#[tokio::test]
async fn voice_transcripts_are_rate_limited_per_node() {
    let gateway = TestGateway::start(|config| config.agent.claude_path = Some("/nonexistent/claude".into())).await;
    let bridge = TestBridge::start(&gateway, |config| config.limits.voice_per_node = Rate::per_minute(6, 2)).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat, Scope::Voice]).await;
    let node = Node::builder(identity, paired).connect().await.unwrap();
    let voice = || AgentParams { channel: AgentChannel::Voice, ..AgentParams::new("lights on") };
    for _ in 0..2 {
        // Within the limit the transcript reaches the gateway (which has no claude here).
        assert_eq!(remote(node.agent(voice()).await.unwrap_err()).code, ErrorCode::AgentUnavailable);
    }
    let refused = remote(node.agent(voice()).await.unwrap_err());
    assert_rate_limited(&refused);
    assert!(refused.retry_after_ms.unwrap() <= 10_000);
    // Typed prompts have no such limit.
    assert_eq!(remote(node.agent(AgentParams::new("hi")).await.unwrap_err()).code, ErrorCode::AgentUnavailable);
}

/// A canvas whose snapshot is as large as asked for.
struct Canvas;

impl CommandHandler for Canvas {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        let bytes = request.params["maxWidth"].as_u64().unwrap_or(10) as usize;
        async move { Ok(json!({ "format": "png", "data": "A".repeat(bytes), "width": 1, "height": 1 })) }.boxed()
    }
}

#[tokio::test]
async fn snapshots_are_rate_limited_and_size_capped() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.snapshots_per_node = Rate::per_minute(6, 2);
        config.limits.max_snapshot_bytes = 10_000;
    })
    .await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node_id = identity.id().to_string();
    let _node = Node::builder(identity, paired).commands(screen_advert(), Canvas).connect().await.unwrap();
    let operator = gateway.operator().await;
    let snapshot = |key: &str, width: u64| json!({"nodeId": node_id, "command": "screen.snapshot", "params": {"maxWidth": width}, "idempotencyKey": key, "timeoutMs": 5000});
    let too_big = remote(operator.request(method::NODE_INVOKE, snapshot("s1", 50_000)).await.unwrap_err());
    assert_eq!(too_big.code, ErrorCode::PayloadTooLarge);
    operator.request(method::NODE_INVOKE, snapshot("s2", 100)).await.unwrap();
    assert_rate_limited(&remote(operator.request(method::NODE_INVOKE, snapshot("s3", 100)).await.unwrap_err()));
}

/// A frame over the limit is answered `PAYLOAD_TOO_LARGE`, then the connection is closed with 1009
/// (message too big): from a paired node (the relay) and from a stranger (the pairing dialogue).
#[tokio::test]
async fn an_oversize_frame_is_refused_then_closed_with_1009() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| config.max_frame_bytes = 64 * 1024).await;
    let (paired, _) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let stranger = certs::Identity::generate();
    for (who, identity) in [("paired", &*paired), ("unpaired", &stranger)] {
        let mut ws = support::raw_websocket(bridge.addr, identity, bridge.id, None).await;
        let huge = json!({"type": "req", "id": "1", "method": "health", "params": {"pad": "x".repeat(100_000)}});
        ws.send(Message::text(huge.to_string())).await.unwrap();
        let mut messages = Vec::new();
        let close = loop {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("answered in time");
            match next.expect("a close frame before the end").expect("a clean close") {
                Message::Close(frame) => break frame.expect("the close says why"),
                Message::Text(text) => messages.push(Frame::parse(text.as_str()).unwrap()),
                _ => {}
            }
        };
        assert!(
            matches!(messages.as_slice(), [Frame::Error(e)] if e.error.code == ErrorCode::PayloadTooLarge),
            "{who}: {messages:?}"
        );
        assert_eq!(close.code, CloseCode::Size, "{who}: closed with 1009");
    }
}

#[tokio::test]
async fn a_node_that_stops_reading_is_dropped_while_others_continue() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| config.write_stall = Duration::from_secs(1)).await;
    let (sleepy_identity, _) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let sleepy_id = sleepy_identity.id().to_string();
    // Connects, then never reads again.
    let _sleepy = RawNode::connect(bridge.addr, &sleepy_identity, bridge.id, Some(screen_advert())).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let healthy_canvas = CountingCanvas::default();
    let healthy =
        Node::builder(identity, paired).commands(screen_advert(), healthy_canvas.clone()).connect().await.unwrap();
    let operator = gateway.operator().await;
    eventually(Duration::from_secs(5), async || {
        let list = operator.request(method::NODE_LIST, json!({})).await.unwrap();
        list["nodes"].as_array().unwrap().iter().any(|n| n["nodeId"] == sleepy_id).then_some(())
    })
    .await;

    // The healthy node is driven all along, from before the flood until after the drop: each round trip
    // (operator → gateway → bridge → node and back) must succeed within 5 s.
    let healthy_id = healthy.client().unwrap().hello().paired.as_ref().unwrap().node_id.to_string();
    let stop_probing = tokio_util::sync::CancellationToken::new();
    let prober = {
        let (operator, stop) = (operator.clone(), stop_probing.clone());
        tokio::spawn(async move {
            let mut trips = Vec::new();
            for i in 0.. {
                if stop.is_cancelled() {
                    return trips;
                }
                let params = json!({"nodeId": healthy_id, "command": "screen.eval",
                    "params": {"javaScript": "1+1"}, "idempotencyKey": format!("probe-{i}"), "timeoutMs": 5000});
                let started = std::time::Instant::now();
                let answer =
                    tokio::time::timeout(Duration::from_secs(5), operator.request(method::NODE_INVOKE, params));
                answer.await.expect("the healthy node answers within 5 s").expect("the healthy node answers");
                trips.push((started, std::time::Instant::now()));
            }
            unreachable!()
        })
    };
    eventually(Duration::from_secs(10), async || {
        healthy_canvas.0.load(std::sync::atomic::Ordering::SeqCst).gt(&0).then_some(())
    })
    .await;
    let flood_started = std::time::Instant::now();
    // 40 commands of 256 KB each: far more than the socket buffers hold, so the relay's writes stall.
    let script = "x".repeat(256 * 1024);
    let mut invokes = Vec::new();
    for i in 0..40 {
        let params = json!({"nodeId": sleepy_id, "command": "screen.eval", "params": {"javaScript": script},
            "idempotencyKey": format!("flood-{i}"), "timeoutMs": 3000});
        let operator = operator.clone();
        invokes.push(tokio::spawn(async move { operator.request(method::NODE_INVOKE, params).await }));
    }
    eventually(Duration::from_secs(10), async || {
        let list = operator.request(method::NODE_LIST, json!({})).await.unwrap();
        (!list["nodes"].as_array().unwrap().iter().any(|n| n["nodeId"] == sleepy_id)).then_some(())
    })
    .await;
    let gone_seen = std::time::Instant::now();
    // Keep probing a little past the drop, then look at what the healthy node went through.
    let past = healthy_canvas.0.load(std::sync::atomic::Ordering::SeqCst);
    eventually(Duration::from_secs(10), async || {
        (healthy_canvas.0.load(std::sync::atomic::Ordering::SeqCst) > past + 1).then_some(())
    })
    .await;
    stop_probing.cancel();
    let trips = prober.await.expect("every round trip with the healthy node succeeded");
    assert!(trips.first().unwrap().0 < flood_started, "probing began before the flood");
    assert!(trips.last().unwrap().1 > gone_seen, "and went on past the drop");
    healthy.request(method::HEALTH, json!({})).await.unwrap();
    for invoke in invokes {
        assert!(invoke.await.unwrap().is_err(), "the sleepy node answered nothing");
    }
}

/// Connection attempts from one address are limited before any TLS work is done for them: over the
/// limit, the bridge closes the TCP connection without sending a single byte (no ServerHello), at once
/// rather than at the handshake deadline.
#[tokio::test]
async fn handshake_attempts_are_limited_per_address_and_closed_before_tls() {
    use tokio::io::AsyncReadExt;
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        // No new attempt is earned while the test runs.
        config.limits.handshakes_per_address = Rate::per_minute(1, 3);
        // So that a close can only be the limiter's, not the handshake deadline's.
        config.handshake_timeout = Duration::from_secs(120);
    })
    .await;
    let identity = certs::Identity::generate();
    let builder = node_kit::Client::bridge(bridge.address(), &identity, certs::Pin::Key(bridge.id)).unwrap();
    for _ in 0..3 {
        builder.clone().connect().await.expect("within the limit");
    }
    let mut tcp = tokio::net::TcpStream::connect(bridge.addr).await.expect("the TCP connection is accepted");
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut first))
        .await
        .expect("closed well before the deadline");
    assert_eq!(read.expect("closed, not reset"), 0, "the bridge sent nothing before closing");
    // A client sees this as a failed connection, with no TLS alert to read.
    let refused = builder.clone().connect().await.expect_err("over the limit");
    assert!(matches!(refused, node_kit::ClientError::Connect { .. }), "{refused}");
}

/// A canvas that counts the commands that reach it.
#[derive(Clone, Default)]
struct CountingCanvas(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl CommandHandler for CountingCanvas {
    fn handle(&self, _: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok(json!({ "result": 2 })) }.boxed()
    }
}

/// While a node is in the background, the bridge answers its screen commands itself.
#[tokio::test]
async fn screen_commands_to_a_backgrounded_node_are_answered_by_the_bridge() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node_id = identity.id().to_string();
    let canvas = CountingCanvas::default();
    let node = Node::builder(identity, paired).commands(screen_advert(), canvas.clone()).connect().await.unwrap();
    let operator = gateway.operator().await;
    let eval = |key: &str| json!({"nodeId": node_id, "command": "screen.eval", "params": {"javaScript": "1+1"}, "idempotencyKey": key, "timeoutMs": 5000});
    operator.request(method::NODE_INVOKE, eval("fg-1")).await.unwrap();

    node.set_app_state(node_kit::protocol::AppState::Background).await.unwrap();
    let e = remote(operator.request(method::NODE_INVOKE, eval("bg-1")).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::NodeBackgroundUnavailable);
    assert!(e.retryable && e.retry_after_ms.is_some_and(|ms| ms > 0), "{e:?}");
    assert_eq!(canvas.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the node never saw it");

    node.set_app_state(node_kit::protocol::AppState::Foreground).await.unwrap();
    operator.request(method::NODE_INVOKE, eval("fg-2")).await.unwrap();
    assert_eq!(canvas.0.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// `screen.*` reaches only a node that granted the `screen` capability; the bridge refuses it otherwise.
#[tokio::test]
async fn screen_commands_need_the_screen_capability() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node_id = identity.id().to_string();
    let canvas = CountingCanvas::default();
    let no_screen = node_kit::protocol::NodeAdvert { caps: Vec::new(), ..screen_advert() };
    let _node = Node::builder(identity, paired).commands(no_screen, canvas.clone()).connect().await.unwrap();
    let invoke = json!({"nodeId": node_id, "command": "screen.eval", "params": {"javaScript": "1+1"},
        "idempotencyKey": "cap-1", "timeoutMs": 5000});
    let e = remote(gateway.operator().await.request(method::NODE_INVOKE, invoke).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::Forbidden, "screen.* needs the screen capability");
    assert_eq!(canvas.0.load(std::sync::atomic::Ordering::SeqCst), 0, "the node never saw it");
}

/// Sends a Close with an application code and returns the code of the Close the bridge answers with
/// (RFC 6455 §5.5.1), skipping frames sent before it; `None` when the connection ended without one.
async fn close_echo(ws: &mut tokio_tungstenite::WebSocketStream<support::RawStream>) -> Option<u16> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let bye = CloseFrame { code: CloseCode::Library(4001), reason: "bye".into() };
    ws.send(Message::Close(Some(bye))).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn a_nodes_close_is_answered_with_a_close_before_and_after_pairing() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let stranger = certs::Identity::generate();
    let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let tls = support::tls_over(tcp, &stranger, bridge.id).await.unwrap();
    let mut before_connect = support::websocket_over(tls, bridge.addr).await.unwrap();
    assert_eq!(close_echo(&mut before_connect).await, Some(4001));

    let mut unpaired = support::raw_websocket(bridge.addr, &stranger, bridge.id, None).await;
    assert_eq!(close_echo(&mut unpaired).await, Some(4001));

    let (identity, _) = support::pair(&bridge, &gateway, &[Scope::Chat]).await;
    let mut paired = support::raw_websocket(bridge.addr, &identity, bridge.id, None).await;
    assert_eq!(close_echo(&mut paired).await, Some(4001));
    bridge.stop().await;
    gateway.stop().await;
}

/// The caps security.md 3.29 gives, written out: a changed reserve, share or cost per connection fails here.
/// `lanyard up` (links in-process, a connection costs its socket) sizes them from the limit less the 48
/// descriptors its console may hold; `lanyard bridge` (a socket per link too) from the whole limit.
#[test]
fn the_caps_are_the_documented_numbers() {
    use bridge::connections::{ConnectionCaps, DescriptorCosts};
    let caps = |limit, costs| {
        let caps = ConnectionCaps::for_descriptors(limit, costs);
        (caps.unpaired, caps.unpaired_per_address, caps.unpaired_per_key, caps.paired)
    };
    let up = DescriptorCosts::GATEWAY_IN_PROCESS;
    assert_eq!(caps(1024 - 48, up), (228, 8, 2, 684));
    assert_eq!(caps(256 - 48, up), (36, 8, 2, 108));
    assert_eq!(caps(20_000 - 48, up), (1024, 8, 2, 18_864));
    let apart = DescriptorCosts::GATEWAY_APART;
    assert_eq!(caps(1024, apart), (120, 8, 2, 360));
    assert_eq!(caps(20_000, apart), (1024, 8, 2, 8944));
}
