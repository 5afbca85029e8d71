//! Away from home: the real relay Worker (workerd under `wrangler dev`, on loopback) between a node and
//! its bridge. The node runs the same pinned TLS session through it as on the LAN; the relay object only
//! ever receives TLS records. The node falls back to the relay when the LAN is gone, moves back when it
//! returns, and hears `bridge_offline` at once when the bridge's link to the relay drops.

mod support;

use node_kit::ClientError;
use node_kit::connection_string::RelayInvite;
use node_kit::node::{Backoff, Link, Node, Path};
use node_kit::pairing::{PairedBridge, PairingRequest, pair_with_pin};
use node_kit::protocol::{AgentEventKind, AgentParams, Decision, DeviceInfo, ErrorCode, RespondParams, Scope, method};
use node_kit::seal::{ChatFrame, Envelope};
use node_kit::sealed_client::{SealedClient, SealedError};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gw::messages_api::Reply;
use support::gw::{TestGateway, eventually};
use support::relay::{Away, KeySwappingRelay, LocalRelay, contains, files_under, relay_knows, texts};
use support::{Cable, DIARY_SECRET, diary_model, pair};
use tokio_tungstenite::tungstenite::Message;

impl Away {
    /// A node paired at home, on the LAN through a cable the test can pull: then it moves to the relay
    /// (300 ms), and back when the cable is in again (it looks every 100 ms).
    async fn on_a_cable(&self) -> (Node, Cable, certs::KeyId) {
        let (identity, mut paired) = self.paired_at_home().await;
        let cable = Cable::start(self.bridge.address()).await;
        paired.address = cable.addr.clone();
        let node_id = identity.id();
        let node = Node::builder(identity, paired)
            .backoff(quick())
            .relay_after(Duration::from_millis(300))
            .lan_retry_every(Duration::from_millis(100))
            .connect()
            .await
            .unwrap();
        (node, cable, node_id)
    }

    /// A node paired at home (door 1) that picked up its routing token on a connection at home.
    async fn paired_at_home(&self) -> (Arc<certs::Identity>, PairedBridge) {
        let (identity, paired) = pair(&self.bridge, &self.gateway, &[Scope::Chat, Scope::Voice]).await;
        let home = Node::builder(identity.clone(), paired).connect().await.expect("connects at home");
        assert_eq!(home.path(), Path::Lan);
        let paired = eventually(Duration::from_secs(10), async || {
            let bridge = home.bridge();
            bridge.relay.is_some().then_some(bridge)
        })
        .await;
        let relay = paired.relay.as_ref().unwrap();
        assert_eq!(relay.url, self.tap.url);
        home.close();
        // The token is passed on to the relay right after it is issued; a phone leaves home later.
        let known = async || relay_knows(&self.relay.url, &self.bridge.id, &relay.token).await.then_some(());
        eventually(Duration::from_secs(10), known).await;
        (identity, paired)
    }
}

/// A node away from home: its LAN address answers nothing, so it connects through the relay.
async fn away_node(identity: Arc<certs::Identity>, mut paired: PairedBridge) -> Node {
    paired.address = nowhere();
    let node = Node::builder(identity, paired)
        .backoff(quick())
        .relay_after(Duration::from_millis(200))
        .first_connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connects through the relay");
    assert_eq!(node.path(), Path::Relay);
    node
}

/// The path `node.list` shows for `node` (the console shows it too).
async fn listed_path(gateway: &TestGateway, node: &certs::KeyId) -> Option<String> {
    let list = gateway.operator().await.request(method::NODE_LIST, Value::Null).await.unwrap();
    let nodes = list["nodes"].as_array()?.clone();
    let entry = nodes.into_iter().find(|n| n["nodeId"] == node.to_string())?;
    entry["path"].as_str().map(str::to_string)
}

fn quick() -> Backoff {
    Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(300) }
}

/// An address where no bridge answers (a port just closed).
fn nowhere() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

fn prompt(text: &str, session: &str) -> AgentParams {
    AgentParams { timeout_ms: Some(120_000), ..AgentParams::new(text).session(session) }
}

#[tokio::test]
async fn a_node_away_from_home_does_everything_through_a_relay_that_sees_only_ciphertext() {
    const ASKED: &str = "CANARY-PROMPT-5d1e";
    const ANSWERED: &str = "CANARY-REPLY-93aa";
    let Some(away) = Away::start(|r| {
        if r.has_tool_result {
            Reply::text(&["wrote it: ", ANSWERED])
        } else {
            Reply::tool(
                "toolu_relay_1",
                "Bash",
                json!({ "command": "echo RELAYED > relayed.txt", "description": "Write" }),
            )
        }
    })
    .await
    else {
        return;
    };
    let (identity, mut paired) = away.paired_at_home().await;

    // Away: the LAN address answers nothing.
    paired.address = nowhere();
    let node_id = identity.id();
    let started = Instant::now();
    let node = Node::builder(identity, paired)
        .backoff(quick())
        .relay_after(Duration::from_millis(300))
        .first_connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connects through the relay");
    let connect_time = started.elapsed();
    assert_eq!(node.path(), Path::Relay);
    let client = node.client().unwrap();
    assert_eq!(client.peer_key(), Some(away.bridge.id), "the same pinned bridge key as at home");
    assert_eq!(listed_path(&away.gateway, &node_id).await.as_deref(), Some("relay"));

    let mut run = node.agent(prompt(ASKED, "away")).await.unwrap();
    let mut text = String::new();
    let mut permissions = 0;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), run.next()).await.expect("events keep coming")
    {
        match event.kind {
            AgentEventKind::TextDelta { text: piece } => text.push_str(&piece),
            AgentEventKind::Permission { ref tool_name, .. } => {
                assert_eq!(tool_name, "Bash");
                permissions += 1;
                let answer = RespondParams::new(run.run_id(), event.kind.prompt_id().unwrap(), Decision::Allow);
                node.respond(answer).await.unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(permissions, 1);
    assert_eq!(text, format!("wrote it: {ANSWERED}"));
    let cwd = away.gateway.claude_home.as_ref().unwrap().path().to_path_buf();
    assert_eq!(std::fs::read_to_string(cwd.join("relayed.txt")).unwrap().trim(), "RELAYED");
    assert!(away.api.requests().iter().any(|r| r.last_user_text.contains(ASKED)), "the prompt reached the model");

    // What the relay object received: TLS records and its own control messages, none of the words.
    let received = away.tap.received();
    assert!(received.len() > 4096, "the session's bytes went through the tap ({} bytes)", received.len());
    assert!(contains(&received, r#"{"type":"tokens""#), "the tap records the link's messages");
    assert!(received.windows(3).any(|w| w == [0x17, 0x03, 0x03]), "TLS application-data records");
    for canary in [ASKED, ANSWERED, "relayed.txt", "agent.respond"] {
        assert!(!contains(&received, canary), "the relay object received {canary:?} in clear");
    }
    for (path, bytes) in files_under(away.relay.state.path()) {
        for canary in [ASKED, ANSWERED] {
            assert!(!contains(&bytes, canary), "{canary:?} in the relay's state file {}", path.display());
        }
    }
    eprintln!("relay path: connect {connect_time:?}");
}

#[tokio::test]
async fn the_lan_goes_mid_turn_the_turn_finishes_over_the_relay_and_the_node_moves_back() {
    let pieces: Vec<String> = (0..12).map(|i| format!("piece{i} ")).collect();
    let Some((away, gate)) = Away::gated(&pieces).await else { return };
    let (node, cable, _) = away.on_a_cable().await;
    assert_eq!(node.path(), Path::Lan);

    let mut run = node.agent(prompt("TALK FOR A WHILE", "moving")).await.unwrap();
    let mut text = String::new();
    let mut seqs = Vec::new();
    for _ in 0..4 {
        gate.release_one();
        let event = run.next().await.unwrap();
        let AgentEventKind::TextDelta { text: piece } = event.kind else { panic!("a delta") };
        seqs.push(event.seq);
        text.push_str(&piece);
    }

    // The LAN goes; the model goes on writing.
    cable.unplug();
    let lost = Instant::now();
    gate.release_one();
    let event = tokio::time::timeout(Duration::from_secs(30), run.next()).await.unwrap().unwrap();
    let to_first_delta = lost.elapsed();
    let AgentEventKind::TextDelta { text: piece } = event.kind else { panic!("a delta over the relay") };
    seqs.push(event.seq);
    text.push_str(&piece);
    assert_eq!(node.path(), Path::Relay);
    for _ in 5..pieces.len() {
        gate.release_one();
    }
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), run.next()).await.unwrap() {
        if let AgentEventKind::TextDelta { text: piece } = event.kind {
            seqs.push(event.seq);
            text.push_str(&piece);
        }
    }
    assert_eq!(text, pieces.concat(), "every delta once, in order, across the switch");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // The LAN returns: the node moves back by itself.
    cable.restore();
    eventually(Duration::from_secs(15), async || (node.path() == Path::Lan).then_some(())).await;
    let client = node.connected(Duration::from_secs(5)).await.unwrap();
    client.request(method::HEALTH, Value::Null).await.expect("works on the LAN again");
    eprintln!("LAN loss to the first delta over the relay: {to_first_delta:?}");
}

#[tokio::test]
async fn one_turn_survives_the_node_moving_between_lan_and_relay_again_and_again() {
    const ROUNDS: usize = 4;
    let pieces: Vec<String> = (0..2 * ROUNDS + 3).map(|i| format!("step{i} ")).collect();
    let Some((away, gate)) = Away::gated(&pieces).await else { return };
    let (node, cable, node_id) = away.on_a_cable().await;
    let mut run = node.agent(prompt("KEEP TALKING", "roaming")).await.unwrap();
    let mut text = String::new();
    let mut next_delta = async |path: Path| {
        gate.release_one();
        let event = tokio::time::timeout(Duration::from_secs(30), run.next())
            .await
            .unwrap_or_else(|_| panic!("a delta within 30 s on the {path:?} path"))
            .expect("the run goes on");
        let AgentEventKind::TextDelta { text: piece } = event.kind else { panic!("a delta") };
        text.push_str(&piece);
    };
    next_delta(Path::Lan).await;
    let mut to_relay = Vec::new();
    for _ in 0..ROUNDS {
        cable.unplug();
        let lost = Instant::now();
        next_delta(Path::Relay).await;
        to_relay.push(lost.elapsed());
        assert_eq!(node.path(), Path::Relay);
        cable.restore();
        eventually(Duration::from_secs(15), async || (node.path() == Path::Lan).then_some(())).await;
        next_delta(Path::Lan).await;
    }
    for _ in 2 * ROUNDS + 1..pieces.len() {
        gate.release_one();
    }
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), run.next()).await.unwrap() {
        if let AgentEventKind::TextDelta { text: piece } = event.kind {
            text.push_str(&piece);
        }
    }
    assert_eq!(text, pieces.concat(), "every delta once, in order, across {ROUNDS} round trips");
    let client = node.connected(Duration::from_secs(5)).await.unwrap();
    client.request(method::HEALTH, Value::Null).await.expect("works on the LAN at the end");
    assert_eq!(listed_path(&away.gateway, &node_id).await.as_deref(), Some("lan"));
    eprintln!("LAN loss to the next delta over the relay, {ROUNDS} switches: {to_relay:?}");
}

#[tokio::test]
async fn the_bridge_link_drops_the_node_hears_bridge_offline_at_once_and_recovers_by_itself() {
    let Some(away) = Away::start(|_| Reply::text(&["fine"])).await else {
        return;
    };
    let (identity, paired) = away.paired_at_home().await;
    let node = away_node(identity, paired).await;

    let mut link = node.link();
    let cut = Instant::now();
    away.tap.cut_bridge(true);
    tokio::time::timeout(Duration::from_secs(10), link.wait_for(|l| matches!(l, Link::BridgeOffline)))
        .await
        .expect("the node learns the bridge is offline")
        .unwrap();
    let heard = cut.elapsed();
    assert!(matches!(node.request(method::HEALTH, Value::Null).await, Err(ClientError::BridgeOffline)));

    away.tap.let_bridge_in();
    let client = node.connected(Duration::from_secs(60)).await.expect("back by itself once the bridge relinks");
    client.request(method::HEALTH, Value::Null).await.unwrap();
    assert_eq!(node.path(), Path::Relay);
    eprintln!("bridge link cut to BridgeOffline at the node: {heard:?}");
}

#[tokio::test]
async fn revoking_a_node_closes_its_relayed_connection_and_its_token_is_refused() {
    let Some(away) = Away::start(|_| Reply::text(&["fine"])).await else {
        return;
    };
    let (identity, paired) = away.paired_at_home().await;
    let node = away_node(identity.clone(), paired.clone()).await;
    let client = node.client().unwrap();
    let operator = away.gateway.operator().await;
    operator.request(method::PAIR_REVOKE, json!({ "nodeId": identity.id() })).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), client.closed()).await.expect("the relayed connection closes");
    // As on the LAN (protocol §13, "Revocation"), the node hears why before the connection ends: the
    // bridge ends the stream itself (its last DATA, then its CLOSE) before it gives the relay the token set
    // without the node's token, which would have the relay cut the stream with 4003 first.
    assert_eq!(client.last_error().map(|e| e.code), Some(ErrorCode::NotPaired));
    let token_hash = node_kit::protocol::routing_token_hash(&paired.relay.as_ref().unwrap().token);
    let frame = |m: &Message| m.is_binary().then(|| m.clone().into_data()).filter(|f| f.len() >= 5);
    let (sent, dropped) = eventually(Duration::from_secs(10), async || {
        let sent = away.tap.sent_by_bridge();
        let holds = |m: &Message| m.to_text().is_ok_and(|text| text.contains(&token_hash));
        let held = sent.iter().position(|m| m.is_text() && holds(m))?;
        let dropped = held + sent[held..].iter().position(|m| m.is_text() && !holds(m))?;
        Some((sent, dropped))
    })
    .await;
    // The node's stream: the one the bridge last sent bytes on before the set (its NOT_PAIRED).
    let stream = sent[..dropped].iter().rev().filter_map(frame).find(|f| f[0] == 2).expect("DATA")[1..5].to_vec();
    let closed = sent[..dropped].iter().filter_map(frame).any(|f| f[0] == 3 && f[1..5] == stream[..]);
    assert!(closed, "the bridge ends the revoked node's stream before it sends the set without its token");
    // The node stops, unpaired, instead of retrying a token the relay no longer knows.
    let mut link = node.link();
    tokio::time::timeout(Duration::from_secs(10), link.wait_for(|l| matches!(l, Link::Unpaired(_))))
        .await
        .expect("the node knows it is unpaired")
        .unwrap();

    // The token is gone from the relay too: the relay itself refuses it, before the bridge hears a thing.
    let route = node_kit::relay::RelayRoute {
        url: away.tap.url.clone(),
        bridge_id: away.bridge.id,
        token: paired.relay.unwrap().token,
    };
    let refused = eventually(Duration::from_secs(10), async || {
        node_kit::relay::open_stream(&route, Duration::from_secs(5)).await.err()
    })
    .await;
    assert_eq!(refused, node_kit::relay::RelayError::UnknownToken);
}

fn phone() -> PairingRequest {
    PairingRequest::new("Away phone", "test").scopes([Scope::Chat, Scope::Voice])
}

fn wrong(pin: &str) -> String {
    format!("{:06}", (pin.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn a_device_that_never_saw_the_lan_pairs_by_pin_through_the_relay_and_works_there() {
    let Some(away) = Away::start(|_| Reply::text(&["hello from home"])).await else {
        return;
    };
    let (invite, code) = away.remote_code(&away.tap.url).await;
    let text: String = invite.to_string();
    assert_eq!(text.parse::<RelayInvite>().unwrap(), invite, "the QR code's text parses back");

    let identity = Arc::new(certs::Identity::generate());
    let paired = pair_with_pin(&invite, &code.pin, &identity, phone()).await.expect("pairs by PIN");
    assert_eq!(paired.bridge_id, away.bridge.id, "the key the PIN exchange authenticated is the bridge's");
    assert!(paired.relay.is_some());
    let operator = away.gateway.operator().await;
    let list = operator.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert!(list.to_string().contains("Away phone"), "{list}");

    // The same code does not work twice, and its routing token left the relay.
    let again = pair_with_pin(&invite, &code.pin, &Arc::new(certs::Identity::generate()), phone()).await.unwrap_err();
    assert!(
        matches!(again, ClientError::Relay(node_kit::relay::RelayError::UnknownToken))
            || again.code() == Some(ErrorCode::PairingCodeInvalid),
        "{again:?}"
    );
    let gone = async || (!relay_knows(&away.relay.url, &away.bridge.id, &invite.routing).await).then_some(());
    eventually(Duration::from_secs(15), gone).await;

    let node = away_node(identity, paired).await;
    let outcome = node.agent(prompt("are you there?", "pin")).await.unwrap().outcome().await.unwrap();
    assert_eq!(outcome.result, "hello from home");
}

#[tokio::test]
async fn five_wrong_pins_burn_the_code() {
    let Some(away) = Away::start(|_| Reply::text(&["no"])).await else {
        return;
    };
    let (invite, code) = away.remote_code(&away.tap.url).await;
    let identity = Arc::new(certs::Identity::generate());
    for _ in 0..5 {
        let refused = pair_with_pin(&invite, &wrong(&code.pin), &identity, phone()).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::PairingPinWrong), "{refused}");
    }
    let burnt = pair_with_pin(&invite, &code.pin, &identity, phone()).await.unwrap_err();
    assert!(
        matches!(burnt, ClientError::Relay(node_kit::relay::RelayError::UnknownToken))
            || burnt.code() == Some(ErrorCode::PairingCodeInvalid),
        "{burnt}"
    );
    let list = away.gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert_eq!(list["nodes"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_relay_that_swaps_in_its_own_tls_keys_makes_pin_pairing_fail_and_burns_a_try() {
    let Some(away) = Away::start(|_| Reply::text(&["no"])).await else {
        return;
    };
    let middle = KeySwappingRelay::start(&away.relay.url).await;
    let (through_middle, code) = away.remote_code(&middle.url).await;
    let identity = Arc::new(certs::Identity::generate());
    let refused = pair_with_pin(&through_middle, &code.pin, &identity, phone()).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::PairingPinWrong), "the right PIN, the wrong keys: {refused}");
    let list = away.gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert_eq!(list["nodes"].as_array().unwrap().len(), 0, "the middleman's key was not paired: {list}");

    // That exchange spent a try: four more wrong PINs through the honest relay burn the code.
    let honest = RelayInvite { relay_url: away.relay.url.clone(), ..through_middle };
    for _ in 0..4 {
        let refused = pair_with_pin(&honest, &wrong(&code.pin), &identity, phone()).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::PairingPinWrong), "{refused}");
    }
    assert!(pair_with_pin(&honest, &code.pin, &identity, phone()).await.is_err(), "burnt after five tries");
}

/// The seed contract's envelope for `command`.
fn envelope(command: &str, payload: Value) -> Envelope {
    Envelope { command: command.into(), version: 1, payload }
}

#[tokio::test]
async fn a_simple_http_client_pairs_by_pin_and_chats_in_sealed_bodies_the_relay_cannot_read() {
    const ASKED: &str = "CANARY-SEALED-PROMPT-71c0";
    const ANSWERED: &str = "CANARY-SEALED-REPLY-0be4";
    let Some(away) = Away::start(|_| Reply::text(&["sealed ", ANSWERED])).await else {
        return;
    };
    let (invite, code) = away.remote_code(&away.tap.url).await;
    let device = DeviceInfo { name: "Seed phone".into(), platform: "ios".into(), model: None };

    // A wrong PIN fails on the client's side of SPAKE2 and spends a try; the right one pairs.
    let wrong_pin = wrong(&code.pin);
    let refused = SealedClient::pair(&invite, &wrong_pin, device.clone(), vec![Scope::Chat]).await;
    assert!(matches!(refused.unwrap_err(), SealedError::Pin(_)));
    let mut client = SealedClient::pair(&invite, &code.pin, device, vec![Scope::Chat]).await.expect("pairs by PIN");
    assert_eq!(client.paired().scopes, vec![Scope::Chat]);
    let operator = away.gateway.operator().await;
    let list = operator.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert!(list.to_string().contains("Seed phone"), "{list}");
    let known = async || relay_knows(&away.relay.url, &away.bridge.id, &client.paired().token).await.then_some(());
    eventually(Duration::from_secs(10), known).await;

    // ai_chat streams the real claude's answer as sealed SSE frames.
    let started = Instant::now();
    let frames = client.chat("kitchen", ASKED).await.expect("ai_chat is accepted").collect().await.unwrap();
    let answered_in = started.elapsed();
    assert!(matches!(frames.first(), Some(ChatFrame::Accepted { .. })), "{frames:?}");
    assert_eq!(texts(&frames), format!("sealed {ANSWERED}"));
    match frames.last() {
        Some(ChatFrame::Done { outcome }) => assert_eq!(outcome.result, format!("sealed {ANSWERED}")),
        other => panic!("the last frame is the outcome, not {other:?}"),
    }
    assert!(away.api.requests().iter().any(|r| r.last_user_text.contains(ASKED)), "the prompt reached the model");

    // A command this computer does not know: 400 with the list, as the seed contract has it.
    let unknown = client.send(&envelope("future_command_that_doesnt_exist", json!({}))).await.unwrap_err();
    match unknown {
        SealedError::UnknownCommand { command, supported } => {
            assert_eq!(command, "future_command_that_doesnt_exist");
            assert_eq!(supported, node_kit::seal::command::all());
            assert!(supported.iter().any(|c| c == "agent.respond"), "{supported:?}");
        }
        other => panic!("{other:?}"),
    }

    // A body is taken once: the same bytes again are refused before anything runs.
    let asked_before = away.api.requests().len();
    let body = client.seal(&envelope("ai_chat", json!({ "conversation_id": "kitchen", "message": "again?" })));
    client.post(&body).await.expect("the first time").frames().unwrap().collect().await.unwrap();
    let replayed = client.post(&body).await.expect_err("the replay is refused");
    assert!(
        matches!(replayed, SealedError::Refused { status: 409, ref error, .. } if error == "replayed"),
        "{replayed:?}"
    );
    assert_eq!(away.api.requests().len(), asked_before + 1, "the replay ran nothing");

    // The relay object received only sealed bodies: none of the words, the command names or the reply.
    let received = away.tap.received();
    assert!(contains(&received, r#""http":"chat""#), "the tap saw the exchanges");
    for canary in [ASKED, ANSWERED, "ai_chat", "future_command_that_doesnt_exist", "kitchen"] {
        assert!(!contains(&received, canary), "the relay object received {canary:?} in clear");
    }
    for (path, bytes) in files_under(away.relay.state.path()) {
        for canary in [ASKED, ANSWERED] {
            assert!(!contains(&bytes, canary), "{canary:?} in the relay's state file {}", path.display());
        }
    }

    // The bridge away: 503 bridge_offline at once.
    away.tap.cut_bridge(true);
    let offline = eventually(Duration::from_secs(10), async || match client.chat("kitchen", "anyone?").await {
        Err(SealedError::BridgeOffline) => Some(()),
        _ => None,
    });
    offline.await;

    // Revoked: the token is refused.
    away.tap.let_bridge_in();
    operator.request(method::PAIR_REVOKE, json!({ "nodeId": client.paired().node_id })).await.unwrap();
    let refused = eventually(Duration::from_secs(20), async || match client.chat("kitchen", "still there?").await {
        Err(SealedError::Refused { status: 401, .. }) => Some(()),
        _ => None,
    });
    refused.await;
    eprintln!("sealed ai_chat answered in {answered_in:?}");
}

/// Issue 20, item 1: a sealed client's name is a label, never its identity. Two invites, one device name:
/// two IDs and two tokens that both keep working, and neither client reads, continues or dedupes into the
/// other's conversation, though both chat on `diary` with the same counters (so the same idempotency keys).
#[tokio::test]
async fn two_sealed_clients_with_one_name_share_no_id_token_conversation_or_run() {
    let Some(away) = Away::start(diary_model).await else {
        return;
    };
    let chat = async |client: &mut SealedClient, prompt: &str| {
        texts(&client.chat("diary", prompt).await.expect("ai_chat is accepted").collect().await.unwrap())
    };
    let pair_phone = async || away.sealed_client("phone", vec![Scope::Chat]).await;

    let mut first = pair_phone().await;
    assert_eq!(chat(&mut first, &format!("remember {DIARY_SECRET}")).await, "noted");
    assert_eq!(chat(&mut first, "what is my secret?").await, format!("your secret is {DIARY_SECRET}"));

    // The second invite's holder pairs under the same name and asks on the same conversation, with counters
    // 1 and 2 again: it is answered for itself both times, and the model never sees the first's secret.
    let mut second = pair_phone().await;
    const ASKED: &str = "the second phone asks: what is my secret?";
    for _ in 0..2 {
        assert_eq!(chat(&mut second, ASKED).await, format!("nothing on record for: {ASKED}"));
    }
    let seen = away.api.requests_with("the second phone asks");
    assert_eq!(seen.len(), 2, "both turns ran: neither was taken for a duplicate of the first's");
    assert!(seen.iter().all(|r| !r.body.to_string().contains(DIARY_SECRET)), "the first's secret reached the second");

    // The first keeps its token and its conversation.
    assert_eq!(chat(&mut first, "still mine?").await, format!("your secret is {DIARY_SECRET}"));
    assert_ne!(first.paired().node_id, second.paired().node_id);
    assert_ne!(first.paired().token, second.paired().token);
    let list = away.gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    let phones: Vec<&Value> = list["nodes"].as_array().unwrap().iter().filter(|n| n["name"] == "phone").collect();
    assert_eq!(phones.len(), 2, "{list}");
}

/// The relay answers a node's WebSocket close at once, with the node's code, under `wrangler dev` too (it
/// once left it unanswered there: the node waited out its close timeout, 10 s, and got 1006).
#[tokio::test]
async fn the_relay_answers_a_nodes_close_at_once_with_its_code() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let Some(relay) = LocalRelay::start().await else {
        return;
    };
    let bridge = certs::Identity::generate();
    let request = node_kit::relay::bridge_link_request(&relay.url, &bridge, node_kit::protocol::now_ms()).unwrap();
    let (mut link, _) = tokio_tungstenite::connect_async(request).await.expect("the proved bridge gets in");
    let token = data_encoding::BASE64URL_NOPAD.encode(&[7u8; 32]);
    let set = json!({ "type": "tokens", "set": [node_kit::protocol::routing_token_hash(&token)] });
    link.send(Message::text(set.to_string())).await.unwrap();
    eventually(Duration::from_secs(10), async || relay_knows(&relay.url, &bridge.id(), &token).await.then_some(()))
        .await;

    for code in [CloseCode::Normal, CloseCode::Away, CloseCode::Library(4321)] {
        let url = node_kit::relay::endpoint(&relay.url, &bridge.id(), "connect");
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (mut node, _) = tokio_tungstenite::connect_async(request).await.expect("the node's stream opens");
        let started = Instant::now();
        node.close(Some(CloseFrame { code, reason: "done".into() })).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match node.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                    Some(Ok(_)) => {}
                    other => panic!("no close answer: {other:?}"),
                }
            }
        })
        .await
        .expect("the relay answers the close");
        assert_eq!(answer, Some(code));
        eprintln!("close {code} answered in {:?}", started.elapsed());
    }
}

/// `docs/security.md` 3.45: a relayed stream's limits are keyed on its routing token's hash, so one token
/// that spent its budget does not spend another's, though the relay brings both from the same address.
#[tokio::test]
async fn relayed_limits_are_keyed_on_the_token_not_shared_by_everyone_behind_the_relay() {
    let one_a_minute = |config: &mut bridge::BridgeConfig| {
        config.limits.pairing_codes_per_address = bridge::ratelimit::Rate::per_minute(1, 1);
    };
    let Some(away) = Away::configured(|_| Reply::text(&["hello"]), one_a_minute).await else {
        return;
    };
    let (_, paired) = away.paired_at_home().await;
    let (invite, code) = away.remote_code(&away.tap.url).await;
    let device = || DeviceInfo { name: "phone".into(), platform: "ios".into(), model: None };
    let try_pin =
        async |invite: &RelayInvite| SealedClient::pair(invite, &wrong(&code.pin), device(), vec![Scope::Chat]).await;

    assert!(matches!(try_pin(&invite).await, Err(SealedError::Pin(_))), "the code's first try reaches the computer");
    let limited = try_pin(&invite).await;
    assert!(matches!(&limited, Err(SealedError::Refused { status: 429, .. })), "{limited:?}");
    // The node's own token, through the same relay: its budget is whole, so the computer itself answers.
    let node_token = RelayInvite { routing: paired.relay.unwrap().token, ..invite.clone() };
    let answered = try_pin(&node_token).await;
    assert!(
        matches!(&answered, Err(SealedError::Refused { status: 410, error, .. }) if error == "pairing_code_invalid"),
        "{answered:?}"
    );
}

/// Whether `text` holds `pin` as a number of its own (not inside a longer run of digits).
fn holds_number(text: &str, pin: &str) -> bool {
    text.match_indices(pin).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + pin.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// `docs/security.md` 3.45: door 3's PIN is never sent, logged or stored. A sealed client tries a wrong PIN
/// and then pairs; the PIN is in nothing the relay received, in no log line (each line's timestamp aside),
/// and in no file of the gateway's home or the relay's state.
#[tokio::test]
async fn the_pin_is_never_sent_logged_or_stored() {
    let logs = support::gw::LogCapture::install();
    let Some(away) = Away::start(|_| Reply::text(&["hello"])).await else {
        return;
    };
    let (invite, code) = away.remote_code(&away.tap.url).await;
    let device = DeviceInfo { name: "phone".into(), platform: "ios".into(), model: None };
    let wrong_pin = wrong(&code.pin);
    assert!(SealedClient::pair(&invite, &wrong_pin, device.clone(), vec![Scope::Chat]).await.is_err());
    SealedClient::pair(&invite, &code.pin, device, vec![Scope::Chat]).await.expect("pairs by PIN");

    assert!(!contains(&away.tap.received(), &code.pin), "the relay received the PIN");
    let logged = logs.text();
    let line = logged.lines().find(|line| holds_number(line.split_once(' ').map_or("", |(_, rest)| rest), &code.pin));
    assert_eq!(line, None, "the PIN was logged");
    let files = files_under(away.gateway.home.path()).into_iter().chain(files_under(away.relay.state.path()));
    for (path, bytes) in files {
        assert!(!holds_number(&String::from_utf8_lossy(&bytes), &code.pin), "the PIN is in {}", path.display());
    }
}
