//! Each attack in docs/security.md, tried for real against a real bridge and gateway.

mod support;

use certs::rustls::pki_types::PrivateKeyDer;
use certs::rustls::pki_types::pem::PemObject;
use certs::rustls::server::{ClientHello, ResolvesServerCert};
use certs::rustls::sign::CertifiedKey;
use certs::{Identity, PeerKeyVerifier, Pin};
use node_kit::link::GatewayConnector;
use node_kit::node::{Link, Node};
use node_kit::pairing::{PairingRequest, request_pairing};
use node_kit::protocol::{AgentChannel, AgentParams, ErrorCode, Scope, method};
use node_kit::{Client, ClientError};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::gw::{TestGateway, eventually};
use support::{GatewayCounters, Middleman, TestBridge, TlsImpostor, gateway_requests, pair, pending_requests, remote};

/// A node that is not paired may only ask to pair: `agent` is `NOT_PAIRED` and never reaches the gateway.
#[tokio::test]
async fn an_unpaired_node_calling_agent_gets_not_paired() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let stranger = Identity::generate();
    let client = Client::bridge(bridge.address(), &stranger, Pin::Key(bridge.id)).unwrap().connect().await.unwrap();
    assert!(client.hello().paired.is_none());
    let methods = ["pair.request", "pair.confirm", "pair.wait", "pair.redeem", "pair.pin", "pair.pin.confirm"];
    assert_eq!(client.hello().methods, methods);
    let e = remote(client.agent(AgentParams::new("let me in")).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::NotPaired);
    assert_eq!(gateway_requests(&gateway, method::AGENT).await, 0);
}

/// Door 3 (the PIN) is for devices away from home: on a LAN connection `pair.pin` and `pair.pin.confirm`
/// are refused by the bridge, and neither reaches the gateway (which alone holds the PIN).
#[tokio::test]
async fn pin_pairing_is_refused_on_the_lan() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let stranger = Identity::generate();
    let client = Client::bridge(bridge.address(), &stranger, Pin::Key(bridge.id)).unwrap().connect().await.unwrap();
    let start = json!({ "message": "AAAA", "name": "phone", "platform": "test", "scopes": ["chat"] });
    let e = remote(client.request(method::PAIR_PIN, start).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.message.contains("away from home"), "{}", e.message);
    let e = remote(client.request(method::PAIR_PIN_CONFIRM, json!({ "confirmation": "AAAA" })).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(gateway_requests(&gateway, method::PAIR_PIN).await, 0);
    assert_eq!(gateway_requests(&gateway, method::PAIR_PIN_CONFIRM).await, 0);
}

/// A key the gateway does not know reaches nothing there, whatever it calls: not one of the gateway's
/// request counters moves (they count every method, `health` and `pair.*` included).
#[tokio::test]
async fn a_node_with_an_unknown_client_key_cannot_reach_the_gateway() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let mut counters = GatewayCounters::new(&gateway).await;
    let before = counters.read().await;
    let stranger = Identity::generate();
    let client = Client::bridge(bridge.address(), &stranger, Pin::AnyKey).unwrap().connect().await.unwrap();
    for name in [method::HEALTH, method::NODE_LIST, method::NODE_INVOKE, method::SYSTEM_EVENT, method::PAIR_APPROVE] {
        let e = remote(client.request(name, json!({})).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::NotPaired, "{name}");
    }
    assert_eq!(counters.read().await, before, "a call from an unknown key reached the gateway");
}

/// A paired node's calls outside the ACL (or outside its scopes) are answered by the bridge: the gateway's
/// request counters do not move.
#[tokio::test]
async fn acl_denied_methods_never_reach_the_gateway() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity, paired).connect().await.unwrap();
    // Every counter is watched, so `pair.revoke`, `pair.submit` and unknown names are too.
    let mut counters = GatewayCounters::new(&gateway).await;
    let before = counters.read().await;
    let denied = [
        (method::NODE_INVOKE, json!({"nodeId": "x", "command": "screen.show", "idempotencyKey": "k"})),
        (method::NODE_LIST, json!({})),
        (method::NODE_DESCRIBE, json!({"nodeId": "x"})),
        (method::PAIR_APPROVE, json!({"requestId": "x"})),
        (method::PAIR_LIST, json!({})),
        (method::PAIR_REVOKE, json!({"nodeId": "x"})),
        (method::PAIR_SUBMIT, json!({})),
        ("no.such.method", json!({})),
    ];
    for (name, params) in denied {
        let e = remote(node.request(name, params).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Forbidden, "{name}");
    }
    // A voice transcript needs the voice scope, which this node was not granted.
    let voice = AgentParams { channel: AgentChannel::Voice, ..AgentParams::new("turn on the lights") };
    assert_eq!(remote(node.agent(voice).await.unwrap_err()).code, ErrorCode::Forbidden);
    assert_eq!(counters.read().await, before, "a denied call reached the gateway");
    // What the ACL allows does reach it, and shows in the counters.
    node.request(method::HEALTH, json!({})).await.unwrap();
    let after = counters.read().await;
    assert_eq!(after.get(method::HEALTH), Some(&(before.get(method::HEALTH).unwrap_or(&0) + 1)));
}

/// Revoking closes the node's live connection at once, and the node cannot come back.
#[tokio::test]
async fn a_revoked_node_is_refused_and_its_live_connection_closed() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    revocation_closes_the_node_and_refuses_it_again(&gateway, &bridge).await;
}

/// The same over in-process links, as `lanyard up` runs the bridge: the gateway's close of a node's link
/// reaches the node as it does over a WebSocket.
#[tokio::test]
async fn a_revocation_reaches_the_node_over_an_in_process_link() {
    let gateway = TestGateway::start(|_| {}).await;
    let link = GatewayConnector::InProcess(gateway.link.clone());
    let bridge = TestBridge::start(&gateway, |config| config.gateway = link).await;
    revocation_closes_the_node_and_refuses_it_again(&gateway, &bridge).await;
}

async fn revocation_closes_the_node_and_refuses_it_again(gateway: &TestGateway, bridge: &TestBridge) {
    let (identity, paired) = pair(bridge, gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity.clone(), paired.clone()).connect().await.unwrap();
    let client = node.client().unwrap();
    let revoked =
        gateway.operator().await.request(method::PAIR_REVOKE, json!({"nodeId": identity.id()})).await.unwrap();
    assert_eq!(revoked["connectionsClosed"], 1);
    tokio::time::timeout(Duration::from_secs(5), client.closed()).await.expect("the live connection closes at once");
    // The reconnect attempt is refused for good.
    let mut link = node.link();
    let stopped = tokio::time::timeout(Duration::from_secs(10), link.wait_for(|l| matches!(l, Link::Unpaired(_))))
        .await
        .expect("the node stops trying")
        .unwrap()
        .clone();
    let Link::Unpaired(why) = stopped else { unreachable!() };
    assert_eq!(why.code, ErrorCode::NotPaired);
    assert!(node.client().unwrap_err().is_unpaired());
    // A fresh connection with the revoked key is an unpaired one.
    let again = Client::bridge(bridge.address(), &identity, Pin::Key(bridge.id)).unwrap().connect().await.unwrap();
    assert!(again.hello().paired.is_none());
    assert_eq!(remote(again.request(method::HEALTH, json!({})).await.unwrap_err()).code, ErrorCode::NotPaired);
}

/// A node pinned to the bridge refuses another bridge (another key) at the same address.
#[tokio::test]
async fn an_impostor_bridge_with_a_different_key_is_refused_by_the_node() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    // The impostor runs a genuine bridge with its own key in front of its own gateway.
    let other_gateway = TestGateway::start(|_| {}).await;
    let impostor = TestBridge::start(&other_gateway, |_| {}).await;
    assert_ne!(impostor.id, bridge.id);
    let mut redirected = paired.clone();
    redirected.address = impostor.address();
    let refused = Node::builder(identity, redirected).connect().await.err().expect("the node refuses the impostor");
    assert!(matches!(refused, ClientError::WrongBridgeKey { .. }), "{refused}");
}

/// Presents the genuine bridge certificate, signing the handshake with another key.
#[derive(Debug)]
struct ReplayedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for ReplayedCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Someone who copied the bridge's public certificate (it is sent in clear in every handshake) cannot
/// pass as the bridge: the handshake signature is checked against the pinned key.
#[tokio::test]
async fn an_impostor_presenting_the_genuine_certificate_without_its_key_is_refused() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;

    let genuine = bridge.identity();
    let thief = Identity::generate();
    let stolen_key = PrivateKeyDer::from_pem_slice(thief.to_pkcs8_pem().as_bytes()).unwrap();
    let signer = certs::crypto_provider().key_provider.load_private_key(stolen_key).unwrap();
    let presented = Arc::new(CertifiedKey::new(vec![genuine.certificate().clone()], signer));
    let config = certs::rustls::ServerConfig::builder_with_provider(certs::crypto_provider())
        .with_protocol_versions(&[&certs::rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(Arc::new(PeerKeyVerifier::new(Pin::AnyKey)))
        .with_cert_resolver(Arc::new(ReplayedCertificate(presented)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handshakes = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(drop).map_err(|e| e.to_string())
    });

    let mut redirected = paired.clone();
    redirected.address = addr.to_string();
    let refused = Node::builder(identity, redirected).connect().await.err().expect("the node refuses the impostor");
    assert!(
        matches!(refused, ClientError::WrongBridgeKey { ref reason, .. } if reason.contains("BadSignature")),
        "{refused}"
    );
    assert!(handshakes.await.unwrap().is_err(), "the impostor never completes a session");
}

/// A rejected request leaves no trace: no paired record, no pending request, and the node is told.
#[tokio::test]
async fn a_reject_leaves_no_record() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let identity = Identity::generate();
    let pending =
        request_pairing(&bridge.address(), &identity, PairingRequest::new("Mallory's phone", "test")).await.unwrap();
    let operator = gateway.operator().await;
    operator.request(method::PAIR_REJECT, json!({"requestId": pending.request_id()})).await.unwrap();
    assert_eq!(remote(pending.approved().await.unwrap_err()).code, ErrorCode::PairingRejected);
    assert!(pending_requests(&gateway).await.is_empty());
    let paired = operator.request(method::PAIR_LIST, json!({})).await.unwrap();
    assert_eq!(paired["nodes"], json!([]));
    let store = gateway::home::paired_store_path(gateway.home.path());
    let on_disk = std::fs::read_to_string(&store).unwrap_or_default();
    assert!(!on_disk.contains(&identity.id().to_string()) && !on_disk.contains("Mallory"));
}

/// Requests not answered in time vanish, the waiting node is told so, and the owner's late approval of
/// that very request pairs nothing.
#[tokio::test]
async fn expired_requests_vanish() {
    // Long enough for the request to be seen pending on a loaded machine; the expiry itself is awaited.
    let gateway = TestGateway::start(|config| config.pairing.ttl = Duration::from_secs(2)).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let identity = Identity::generate();
    let pending = request_pairing(&bridge.address(), &identity, PairingRequest::new("phone", "test")).await.unwrap();
    let request_id = pending.request_id().to_string();
    assert_eq!(pending_requests(&gateway).await.len(), 1);
    let expired = tokio::time::timeout(Duration::from_secs(20), pending.approved()).await.expect("told in time");
    assert_eq!(remote(expired.unwrap_err()).code, ErrorCode::PairingExpired);
    assert!(pending_requests(&gateway).await.is_empty());
    let operator = gateway.operator().await;
    let late = operator.request(method::PAIR_APPROVE, json!({"requestId": request_id})).await;
    assert_eq!(remote(late.unwrap_err()).code, ErrorCode::PairingExpired);
    assert_eq!(operator.request(method::PAIR_LIST, json!({})).await.unwrap()["nodes"], json!([]));
    let again = Client::bridge(bridge.address(), &identity, Pin::Key(bridge.id)).unwrap().connect().await.unwrap();
    assert!(again.hello().paired.is_none(), "the expired request's key is not paired");
}

/// The six digits are the same on the node and on the computer, and change from one attempt to the next
/// (while a retry from the same key keeps its request ID).
#[tokio::test]
async fn the_sas_is_equal_on_both_sides_and_differs_between_attempts() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let identity = Identity::generate();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let pending =
            request_pairing(&bridge.address(), &identity, PairingRequest::new("phone", "test")).await.unwrap();
        let shown = eventually(Duration::from_secs(5), async || {
            pending_requests(&gateway).await.into_iter().find(|r| r.request.sas == pending.sas())
        })
        .await;
        assert_eq!(shown.request.node_id, identity.id());
        seen.push((pending.request_id().to_string(), pending.sas().to_string()));
    }
    assert!(seen.iter().all(|(id, _)| *id == seen[0].0), "a retry keeps its request ID: {seen:?}");
    assert!(seen[0].1 != seen[1].1 && seen[1].1 != seen[2].1, "each attempt has its own SAS: {seen:?}");
    assert_eq!(pending_requests(&gateway).await.len(), 1);
}

/// A nonce that does not match the commitment sent before it is refused, and nothing is filed.
#[tokio::test]
async fn a_nonce_that_does_not_match_its_commitment_is_refused() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let client = Client::bridge(bridge.address(), &Identity::generate(), Pin::AnyKey).unwrap().connect().await.unwrap();
    let committed = node_kit::protocol::pairing_nonce();
    let request = json!({"name": "phone", "platform": "test", "scopes": ["chat"],
        "nonceCommitment": node_kit::protocol::nonce_commitment(&committed)});
    client.request(method::PAIR_REQUEST, request).await.unwrap();
    let other = node_kit::protocol::pairing_nonce();
    let e = remote(client.request(method::PAIR_CONFIRM, json!({"nonce": other})).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(pending_requests(&gateway).await.is_empty());
    // The dialogue starts over: confirming again without a new request is out of order.
    let e = remote(client.request(method::PAIR_CONFIRM, json!({"nonce": committed})).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::InvalidRequest);
}

/// A man in the middle of a first contact: it shows the node a bridge key of its own and shows the real
/// bridge a node key of its own, relaying the pairing dialogue word for word. Each side computes its SAS
/// over the keys it saw, so the codes on the two screens differ and the owner rejects.
#[tokio::test]
async fn a_man_in_the_middle_of_pairing_shows_the_owner_a_different_sas() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let middle = Middleman::start(bridge.address(), "127.0.0.1:0").await;
    let (mitm_addr, posing_as_node) = (middle.addr, middle.posing_as_node);

    let node = Identity::generate();
    let pending = request_pairing(&mitm_addr.to_string(), &node, PairingRequest::new("phone", "test")).await.unwrap();
    assert_ne!(pending.bridge_id(), bridge.id, "the node met the middleman's key");
    let shown = pending_requests(&gateway).await.pop().expect("the request reached the owner");
    assert_eq!(shown.request.node_id, posing_as_node, "the owner sees the middleman's key");
    assert_ne!(shown.request.sas, pending.sas(), "the screens disagree");
    gateway.operator().await.request(method::PAIR_REJECT, json!({"requestId": shown.request_id})).await.unwrap();
    assert_eq!(remote(pending.approved().await.unwrap_err()).code, ErrorCode::PairingRejected);
}

/// The commitment must be lower-case hex, as protocol.md says: the same commitment in upper case is
/// `INVALID_REQUEST`, while in lower case it is accepted. Nothing is filed with the gateway.
#[tokio::test]
async fn a_commitment_in_upper_case_hex_is_refused() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let mut counters = GatewayCounters::new(&gateway).await;
    let before = counters.read().await;
    let client = Client::bridge(bridge.address(), &Identity::generate(), Pin::AnyKey).unwrap().connect().await.unwrap();
    let commitment = node_kit::protocol::nonce_commitment(&node_kit::protocol::pairing_nonce());
    assert!(commitment.bytes().any(|b| b.is_ascii_alphabetic()), "a commitment with letters in it: {commitment}");
    let request = |commitment: String| json!({"name": "phone", "platform": "test", "scopes": ["chat"], "nonceCommitment": commitment});
    let e = remote(client.request(method::PAIR_REQUEST, request(commitment.to_uppercase())).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    client.request(method::PAIR_REQUEST, request(commitment)).await.expect("the lower-case commitment is accepted");
    assert_eq!(counters.read().await, before, "nothing was filed with the gateway");
}

/// A `pair.wait` held for an attempt that a newer attempt from the same key replaced ends with
/// `PAIRING_EXPIRED`, and no `pair.resolved` event is sent for it: the request itself still waits, under
/// the newer attempt's SAS, and its approval is the only `pair.resolved` the owner's tools see.
#[tokio::test]
async fn a_wait_for_a_replaced_attempt_ends_without_a_resolved_event() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let operator = gateway.operator().await;
    let mut events = operator.subscribe();
    let identity = Identity::generate();
    let first = request_pairing(&bridge.address(), &identity, PairingRequest::new("phone", "test")).await.unwrap();
    let request_id = first.request_id().to_string();
    let first_wait = tokio::spawn(first.approved());
    // The gateway holds the first attempt's pair.wait before the second attempt is made.
    eventually(Duration::from_secs(10), async || {
        (gateway_requests(&gateway, method::PAIR_WAIT).await == 1).then_some(())
    })
    .await;
    let second = request_pairing(&bridge.address(), &identity, PairingRequest::new("phone", "test")).await.unwrap();
    assert_eq!(second.request_id(), request_id, "a retry keeps its request ID");

    let replaced = tokio::time::timeout(Duration::from_secs(10), first_wait).await.expect("answered at once");
    let e = remote(replaced.unwrap().unwrap_err());
    assert_eq!(e.code, ErrorCode::PairingExpired);
    assert!(e.message.contains("newer attempt"), "{}", e.message);
    let shown = pending_requests(&gateway).await;
    assert_eq!(shown.len(), 1, "the request still waits");
    assert_eq!(shown[0].request.sas, second.sas(), "under the newer attempt's code");

    operator.request(method::PAIR_APPROVE, json!({"requestId": request_id})).await.unwrap();
    second.approved().await.expect("the newer attempt is approved");
    let resolved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.unwrap();
            if event.event == node_kit::protocol::event::PAIR_RESOLVED {
                return event.payload;
            }
        }
    })
    .await
    .expect("the approval is announced");
    assert_eq!(resolved["outcome"], "approved", "the first pair.resolved is the approval: {resolved}");
}

/// `name`, `platform` and `model` are length-checked in bytes where they enter, at the bridge: one byte
/// over (256, 64, 128) is `INVALID_REQUEST` for `pair.request` and `pair.redeem`, and never reaches the
/// gateway; at the limit the request is accepted.
#[tokio::test]
async fn over_long_device_fields_are_refused_at_the_bridge() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        // The pairing rate limits are not what this test is about.
        config.limits.pairing_per_address = bridge::ratelimit::Rate::per_second(100, 100);
        config.limits.pairing_codes_per_address = bridge::ratelimit::Rate::per_second(100, 100);
    })
    .await;
    let mut counters = GatewayCounters::new(&gateway).await;
    let before = counters.read().await;
    let client = Client::bridge(bridge.address(), &Identity::generate(), Pin::AnyKey).unwrap().connect().await.unwrap();
    let nonce = node_kit::protocol::pairing_nonce();
    let commitment = node_kit::protocol::nonce_commitment(&nonce);
    let params = |call: &str, (name, platform, model): (String, String, String)| {
        let mut params = json!({"name": name, "platform": platform, "model": model, "scopes": ["chat"]});
        match call {
            method::PAIR_REQUEST => params["nonceCommitment"] = json!(commitment),
            _ => params["code"] = json!("a".repeat(26)),
        }
        params
    };
    let ok = || ("n".repeat(256), "p".repeat(64), "m".repeat(128));
    let over = [
        ("n".repeat(257), ok().1, ok().2),
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        ("é".repeat(129), ok().1, ok().2),
        (ok().0, "p".repeat(65), ok().2),
        (ok().0, ok().1, "m".repeat(129)),
    ];
    for fields in over {
        let lengths = (fields.0.len(), fields.1.len(), fields.2.len());
        for call in [method::PAIR_REQUEST, method::PAIR_REDEEM] {
            let e = remote(client.request(call, params(call, fields.clone())).await.unwrap_err());
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{call} with lengths {lengths:?}");
        }
    }
    assert_eq!(counters.read().await, before, "an over-long field reached the gateway");

    // At the limits the request goes through and is filed (its name shortened for display).
    client.request(method::PAIR_REQUEST, params(method::PAIR_REQUEST, ok())).await.expect("at the limit");
    client.request(method::PAIR_CONFIRM, json!({"nonce": nonce})).await.expect("filed");
    let shown = pending_requests(&gateway).await;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].request.device.name, "n".repeat(64), "shown cut to 64 characters");
}

/// A paired node whose bridge is gone, and an impostor (another key) on the bridge's address: the node
/// keeps dialling it, pinned, and refuses its key in every TLS handshake. None completes, so the node
/// never falls back to an unpinned connection and never starts pairing again with the impostor (door 1
/// would need an unpinned handshake to complete).
#[tokio::test]
async fn a_node_refused_by_the_pin_keeps_trying_pinned_and_never_pairs_again() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let backoff = node_kit::node::Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(200) };
    let node = Node::builder(identity, paired).backoff(backoff).connect().await.unwrap();
    let address = bridge.addr;
    bridge.stop().await;
    let impostor = TlsImpostor::start(address).await;
    // Three refused handshakes: the node dialled the impostor, and kept trying after being refused.
    let outcomes = eventually(Duration::from_secs(20), async || {
        let outcomes = impostor.outcomes();
        (outcomes.len() >= 3).then_some(outcomes)
    })
    .await;
    for outcome in &outcomes {
        let refusal = outcome.as_ref().expect_err("no handshake with the impostor completes");
        assert!(refusal.contains("alert"), "the node ended the handshake: {refusal}");
    }
    assert!(matches!(*node.link().borrow(), Link::Reconnecting(_)), "the node is still trying");
}
