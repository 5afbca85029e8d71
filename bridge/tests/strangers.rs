//! Strangers on the LAN are cheap (security.md 3.28–3.32): an unpaired peer can make the bridge hold only
//! a few KB, the caps keep strangers from filling the bridge against a paired node, one key holds only its
//! cap of connections and gateway links, and every over-long string a peer sends is refused at the bridge.
//! Strangers come from several loopback addresses (127.0.0.2…), as several hosts would.

mod support;

use bridge::connections::{ConnectionCaps, ConnectionCounts};
use certs::Identity;
use futures_util::{SinkExt, StreamExt};
use node_kit::pairing::PairedBridge;
use node_kit::protocol::{
    ClientInfo, ErrorCode, Frame, MAX_CODE_LEN, MAX_NAME_LEN, Scope, UNPAIRED_MAX_FRAME_BYTES, method,
    nonce_commitment, pairing_nonce,
};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary, connect_and_ask, eventually};
use support::{RawNode, TestBridge, gateway_requests, raw_connect, tcp_from, tls_over, websocket_over};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

fn stranger_address(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n as u8))
}

/// The process's resident memory in bytes, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// A text fragment without its final frame (FIN unset), or a continuation of one.
fn fragment(len: usize, first: bool) -> Message {
    let opcode = if first { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
    Message::Frame(WsFrame::message(vec![b'x'; len], opcode, false))
}

/// Waits for the bridge's close frame and returns its code.
async fn close_code(ws: &mut tokio_tungstenite::WebSocketStream<support::RawStream>) -> Option<CloseCode> {
    let read = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("closed in time")
}

#[tokio::test]
async fn unfinished_fragmented_messages_are_cut_at_the_unpaired_limit_and_memory_stays_flat() {
    const PEERS: usize = 200;
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        config.caps = ConnectionCaps { unpaired: 2 * PEERS, unpaired_per_address: 8, ..ConnectionCaps::default() };
        config.limits.handshakes_per_address = bridge::ratelimit::Rate::per_second(100, 100);
    })
    .await;

    // Each stranger gets through TLS, WebSocket and connect, then starts a text message it never finishes,
    // just under the limit: the most an unpaired peer can make the bridge hold. The first few warm up what
    // the process allocates once (TLS, the runtime's and allocator's per-thread state): the growth is
    // measured from there.
    const WARM_UP: usize = 10;
    let mut before = 0;
    let mut peers = Vec::new();
    for n in 0..PEERS {
        if n == WARM_UP {
            before = rss_bytes();
        }
        let tcp = tcp_from(stranger_address(n / 8), bridge.addr).await.unwrap();
        let identity = Identity::generate();
        let mut ws = websocket_over(tls_over(tcp, &identity, bridge.id).await.unwrap(), bridge.addr).await.unwrap();
        ws.send(Message::text(Frame::Connect(raw_connect(&identity, None)).to_text())).await.unwrap();
        let Some(Ok(Message::Text(hello))) = ws.next().await else { panic!("no hello-ok") };
        assert!(hello.contains("hello-ok"), "{hello}");
        ws.send(fragment(UNPAIRED_MAX_FRAME_BYTES - 1024, true)).await.unwrap();
        peers.push(ws);
    }
    assert_eq!((bridge.counts)(), ConnectionCounts { unpaired: PEERS, paired: 0 });
    let per_peer = rss_bytes().saturating_sub(before) / (PEERS - WARM_UP) as u64;
    // Both ends of every connection live in this process, and other tests run beside this one, so the bound
    // is loose; before the unpaired limit, each such peer pinned about 8 MB of the bridge's memory.
    assert!(per_peer < 1 << 20, "each stranger grew the process by {} KB", per_peer >> 10);

    // One more fragment takes each past the limit: closed with 1009, message too big.
    for ws in &mut peers {
        ws.send(fragment(2048, false)).await.unwrap();
    }
    for ws in &mut peers {
        assert_eq!(close_code(ws).await, Some(CloseCode::Size));
    }
    eventually(Duration::from_secs(10), async || ((bridge.counts)().unpaired == 0).then_some(())).await;

    // A single oversize frame is refused from its header, before its body is read.
    let tcp = tcp_from(stranger_address(0), bridge.addr).await.unwrap();
    let identity = Identity::generate();
    let mut ws = websocket_over(tls_over(tcp, &identity, bridge.id).await.unwrap(), bridge.addr).await.unwrap();
    assert_refused_as_too_large(&mut ws, "x".repeat(4 << 20)).await;
}

/// Sends a message far over the unpaired limit. The bridge answers PAYLOAD_TOO_LARGE and closes with
/// 1009 as soon as it reads the header; as it closes with the body unread, the peer may see a reset before
/// it reads the answer, which is the one other outcome allowed.
async fn assert_refused_as_too_large(ws: &mut tokio_tungstenite::WebSocketStream<support::RawStream>, text: String) {
    let _ = ws.send(Message::text(text)).await;
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(refusal))) => {
                    let Ok(Frame::Error(refusal)) = Frame::parse(refusal.as_str()) else { panic!("{refusal}") };
                    assert_eq!(refusal.error.code, ErrorCode::PayloadTooLarge);
                }
                Some(Ok(Message::Close(frame))) => return assert_eq!(frame.map(|f| f.code), Some(CloseCode::Size)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("closed in time");
}

#[tokio::test]
async fn a_paired_node_gets_in_and_is_answered_while_strangers_fill_the_caps() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["still ", "here"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let caps = ConnectionCaps { unpaired: 16, unpaired_per_address: 4, unpaired_per_key: 2, paired: 4 };
    let bridge = TestBridge::start(&gateway, |config| config.caps = caps).await;
    let identity = std::sync::Arc::new(Identity::generate());
    gateway.pair_node(identity.id(), "owner's phone").await;
    let paired = PairedBridge {
        bridge_id: bridge.id,
        address: bridge.address(),
        node_id: identity.id(),
        scopes: vec![Scope::Chat, Scope::Voice],
        relay: None,
    };
    // A first turn starts the node's claude process; the second, timed, is what connecting and a turn in the
    // same conversation take here with nobody in the way, as a phone's next message would.
    connect_and_ask(&identity, &paired, "hello").await.0.close();
    let (node, _, baseline) = connect_and_ask(&identity, &paired, "anyone?").await;
    node.close();

    // Eight addresses try four connections each: half of them complete TLS and sit in the pairing
    // dialogue, half open TCP and say nothing. The pool holds 16; the rest are refused before TLS.
    let mut silent = Vec::new();
    let mut after_tls = Vec::new();
    for n in 0..32 {
        let Ok(tcp) = tcp_from(stranger_address(n % 8), bridge.addr).await else { continue };
        if n % 2 == 0 {
            silent.push(tcp);
        } else if let Ok(tls) = tls_over(tcp, &Identity::generate(), bridge.id).await {
            after_tls.push(tls);
        }
    }
    eventually(Duration::from_secs(10), async || ((bridge.counts)().unpaired == caps.unpaired).then_some(())).await;

    let (node, answer, took) = connect_and_ask(&identity, &paired, "are you there?").await;
    assert_eq!(answer, "still here");
    // Strangers in every slot cost the node next to nothing; queued behind them, it would wait out their
    // handshakes (10 s).
    assert!(took < baseline * 3 + Duration::from_secs(2), "{took:?}, where it took {baseline:?} alone");
    assert_eq!((bridge.counts)().paired, 1);
    // The owner's side is untouched.
    gateway.operator().await.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    node.close();
    drop((silent, after_tls));
}

#[tokio::test]
async fn one_key_from_many_addresses_holds_at_most_its_cap_of_connections_and_gateway_links() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let cap = ConnectionCaps::default().unpaired_per_key;
    let identity = Identity::generate();
    let mut admitted = Vec::new();
    for n in 0..6 {
        let tcp = tcp_from(stranger_address(n), bridge.addr).await.unwrap();
        let Ok(tls) = tls_over(tcp, &identity, bridge.id).await else { continue };
        let Ok(mut ws) = websocket_over(tls, bridge.addr).await else { continue };
        ws.send(Message::text(Frame::Connect(raw_connect(&identity, None)).to_text())).await.unwrap();
        // Over the cap, the bridge closes right after TLS, before answering connect.
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap() {
            Some(Ok(Message::Text(hello))) if hello.contains("hello-ok") => admitted.push(ws),
            _ => {}
        }
    }
    assert_eq!(admitted.len(), cap);
    // Each admitted connection files its request, which holds a link to the gateway while it waits.
    for ws in &mut admitted {
        let nonce = pairing_nonce();
        for (id, method, params) in [
            (
                "1",
                method::PAIR_REQUEST,
                serde_json::json!({"name": "k", "platform": "t", "scopes": ["chat"], "nonceCommitment": nonce_commitment(&nonce)}),
            ),
            ("2", method::PAIR_CONFIRM, serde_json::json!({ "nonce": nonce })),
        ] {
            let req = serde_json::json!({"type": "req", "id": id, "method": method, "params": params});
            ws.send(Message::text(req.to_string())).await.unwrap();
            let Some(Ok(Message::Text(answer))) = ws.next().await else { panic!("no answer") };
            assert!(answer.contains("\"ok\":true"), "{answer}");
        }
    }
    assert_eq!((bridge.counts)(), ConnectionCounts { unpaired: cap, paired: 0 });
    let health = gateway.operator().await.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    // The bridge's pairing links, plus its own two (one follows the tunnel settings, one reports its
    // counters), plus the operator asking.
    assert_eq!(health["connections"].as_u64().unwrap(), cap as u64 + 3, "{health}");
}

#[tokio::test]
async fn over_long_peer_strings_are_refused_at_the_bridge_and_never_reach_the_gateway() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.pairing_codes_per_address = bridge::ratelimit::Rate::per_second(100, 100);
    })
    .await;

    // In connect: a display name a little too long is INVALID_REQUEST naming the field; a huge one never
    // fits in the unpaired frame limit.
    for length in [MAX_NAME_LEN + 1, 4_000_000] {
        let identity = Identity::generate();
        let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
        let mut ws = websocket_over(tls_over(tcp, &identity, bridge.id).await.unwrap(), bridge.addr).await.unwrap();
        let mut connect = raw_connect(&identity, None);
        connect.client = ClientInfo { display_name: Some("n".repeat(length)), ..connect.client };
        if length > UNPAIRED_MAX_FRAME_BYTES {
            assert_refused_as_too_large(&mut ws, Frame::Connect(connect).to_text()).await;
            continue;
        }
        ws.send(Message::text(Frame::Connect(connect).to_text())).await.unwrap();
        let Some(Ok(Message::Text(refusal))) = ws.next().await else { panic!("no refusal") };
        let Frame::Error(refusal) = Frame::parse(refusal.as_str()).unwrap() else { panic!("{refusal}") };
        assert_eq!(refusal.error.code, ErrorCode::InvalidRequest, "{}", refusal.error.message);
        assert_eq!(refusal.error.details.unwrap()["field"], "client.displayName");
    }
    // A paired node's connect is checked the same way, before its link to the gateway opens.
    let paired = Identity::generate();
    gateway.pair_node(paired.id(), "phone").await;
    let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let mut ws = websocket_over(tls_over(tcp, &paired, bridge.id).await.unwrap(), bridge.addr).await.unwrap();
    let mut connect = raw_connect(&paired, None);
    connect.client.platform = "p".repeat(1000);
    ws.send(Message::text(Frame::Connect(connect).to_text())).await.unwrap();
    let Some(Ok(Message::Text(refusal))) = ws.next().await else { panic!("no refusal") };
    assert!(refusal.contains("INVALID_REQUEST") && refusal.contains("client.platform"), "{refusal}");

    // In the pairing dialogue: a code, a name, a model. (The gateway saw one pair.submit: the pairing above.)
    let submitted = gateway_requests(&gateway, method::PAIR_SUBMIT).await;
    let mut raw = RawNode::connect(bridge.addr, &Identity::generate(), bridge.id, None).await;
    let long_code = "C".repeat(MAX_CODE_LEN + 1);
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    let nonce = nonce_commitment(&pairing_nonce());
    for (method_name, params, field) in [
        (
            method::PAIR_REDEEM,
            serde_json::json!({"code": long_code, "name": "x", "platform": "t", "scopes": ["chat"]}),
            "code",
        ),
        (
            method::PAIR_REDEEM,
            serde_json::json!({"code": "c", "name": long_name, "platform": "t", "scopes": ["chat"]}),
            "name",
        ),
        (
            method::PAIR_REQUEST,
            serde_json::json!({"name": "x", "platform": "t", "model": "m".repeat(129), "scopes": ["chat"], "nonceCommitment": nonce}),
            "model",
        ),
    ] {
        let req = serde_json::json!({"type": "req", "id": "r", "method": method_name, "params": params});
        raw.writer.send_text(req.to_string().into()).await.unwrap();
        let Frame::Res(res) = raw.next_frame().await else { panic!("expected an answer") };
        let refusal = res.outcome.unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidRequest, "{method_name} {field}");
        assert_eq!(refusal.details.unwrap()["field"], field);
    }
    // A 3 MB code does not fit in a frame at all.
    let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
    let identity = Identity::generate();
    let mut ws = websocket_over(tls_over(tcp, &identity, bridge.id).await.unwrap(), bridge.addr).await.unwrap();
    ws.send(Message::text(Frame::Connect(raw_connect(&identity, None)).to_text())).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let req = serde_json::json!({"type": "req", "id": "r", "method": method::PAIR_REDEEM,
        "params": {"code": "C".repeat(3 << 20), "name": "x", "platform": "t", "scopes": ["chat"]}});
    assert_refused_as_too_large(&mut ws, req.to_string()).await;

    assert_eq!(gateway_requests(&gateway, method::PAIR_REDEEM).await, 0, "a pair.redeem reached the gateway");
    let health = gateway.operator().await.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    // Unpaired keys are refused there as `not-paired`: what the bridge refused never got that far.
    assert_eq!(health["refusedConnections"].get("invalid"), None, "a connect reached the gateway: {health}");
    assert_eq!(gateway_requests(&gateway, method::PAIR_SUBMIT).await, submitted, "a pair.request reached the gateway");
}

/// Reads `ws` until the bridge closes it, sending a request every `every` meanwhile when given; the close's
/// reason, and when it came.
async fn closed_with(
    ws: &mut tokio_tungstenite::WebSocketStream<support::RawStream>,
    every: Option<Duration>,
) -> (String, Instant) {
    let mut ticks = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    ticks.tick().await;
    let read = async {
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    Some(Ok(_)) => {}
                    _ => return String::new(),
                },
                _ = ticks.tick(), if every.is_some() => {
                    let req = serde_json::json!({"type": "req", "id": "x", "method": "no.such.step", "params": {}});
                    ws.send(Message::text(req.to_string())).await.unwrap();
                }
            }
        }
    };
    let reason = tokio::time::timeout(Duration::from_secs(60), read).await.expect("closed in time");
    (reason, Instant::now())
}

/// A stranger that connects and then says nothing is closed when the 10-second pairing step runs out.
#[tokio::test]
async fn a_stranger_that_stops_mid_dialogue_is_closed_after_ten_seconds() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let mut ws = support::raw_websocket_from(None, bridge.addr, &Identity::generate(), bridge.id, None).await;
    let started = Instant::now();
    let (reason, at) = closed_with(&mut ws, None).await;
    let after = at - started;
    assert_eq!(reason, "pairing step timed out");
    assert!(after >= Duration::from_secs(8) && after < Duration::from_secs(20), "closed after {after:?}");
}

/// Steps in time do not keep a stranger forever: an unpaired connection lives 6 minutes (the documented
/// defaults, written out), here shortened to 3 s while the stranger sends a request every half second.
#[tokio::test]
async fn a_stranger_that_keeps_talking_is_closed_at_the_unpaired_lifetime() {
    let gateway = TestGateway::start(|_| {}).await;
    let defaults = bridge::config::BridgeConfig::new(gateway.home.path().into(), gateway.url.clone(), String::new());
    assert_eq!(defaults.unpaired_lifetime, Duration::from_secs(6 * 60));
    assert_eq!(defaults.pairing_step_timeout, Duration::from_secs(10));
    let bridge = TestBridge::start(&gateway, |config| config.unpaired_lifetime = Duration::from_secs(3)).await;
    let mut ws = support::raw_websocket_from(None, bridge.addr, &Identity::generate(), bridge.id, None).await;
    let started = Instant::now();
    let (reason, at) = closed_with(&mut ws, Some(Duration::from_millis(500))).await;
    let after = at - started;
    assert_eq!(reason, "pairing took too long");
    assert!(after >= Duration::from_secs(2) && after < Duration::from_secs(15), "closed after {after:?}");
}
