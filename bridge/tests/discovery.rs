//! Discovery and door 2 on one host: the bridge advertises over mDNS on loopback (inside the test run's
//! own network namespace), node-kit browses and resolves it, finds it again after a restart, pairs with
//! a connection string, and refuses used, expired and guessed codes.

mod support;

use bridge::ratelimit::Rate;
use node_kit::discovery::{Discovery, MdnsDiscovery, id_hint};
use node_kit::node::{Backoff, Node};
use node_kit::pairing::{PairingRequest, redeem};
use node_kit::protocol::{ErrorCode, PROTOCOL_VERSION, Scope, method};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gw::{TestGateway, eventually};
use support::{TestBridge, connection_string, mdns_on_loopback, mdns_port, pair, remote};

fn browse(port: u16) -> MdnsDiscovery {
    MdnsDiscovery::new().interfaces(["lo"]).port(port)
}

#[tokio::test]
async fn advertise_browse_resolve_on_loopback() {
    let gateway = TestGateway::start(|_| {}).await;
    let port = mdns_port();
    let started = Instant::now();
    let bridge = TestBridge::start(&gateway, |c| mdns_on_loopback(c, port, "Test computer")).await;
    let mut found = browse(port).watch().unwrap();
    let seen = found.find(Duration::from_secs(10), |_| true).await.expect("the bridge is discovered");
    eprintln!("discovered in {:?}", started.elapsed());
    assert_eq!(seen.instance, "Test computer._lanyard._tcp.local.");
    assert!(seen.addresses.contains(&bridge.address()), "{:?} should include {}", seen.addresses, bridge.address());
    assert_eq!(seen.hint.id_hint.as_deref(), Some(id_hint(&bridge.id).as_str()));
    assert_eq!(seen.hint.name.as_deref(), Some("Test computer"));
    assert_eq!(seen.hint.protocol, Some(PROTOCOL_VERSION));
    assert!(seen.hint.may_be(&bridge.id));

    // A clean stop withdraws the record at once (goodbye packets), not at TTL expiry.
    bridge.stop().await;
    assert!(found.lost(&seen.instance, Duration::from_secs(5)).await, "the bridge is reported lost after it stops");
}

#[tokio::test]
async fn a_paired_node_finds_its_bridge_at_a_new_port() {
    let gateway = TestGateway::start(|_| {}).await;
    let port = mdns_port();
    let bridge = TestBridge::start(&gateway, |c| mdns_on_loopback(c, port, "Moving computer")).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity, paired.clone())
        .discovery(browse(port))
        .backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500) })
        .connect()
        .await
        .expect("connects at the paired address");

    // The bridge comes back on another port: only mDNS can say where.
    bridge.stop().await;
    let moved = TestBridge::start(&gateway, |c| mdns_on_loopback(c, port, "Moving computer")).await;
    assert_ne!(moved.addr, paired.address.parse().unwrap());
    // The same key at a new place; the node remembers the place once it has connected there.
    eventually(Duration::from_secs(15), async || (node.bridge().address == moved.address()).then_some(())).await;
    let client = node.connected(Duration::from_secs(5)).await.expect("the node found the bridge again");
    assert_eq!(client.peer_key(), Some(moved.id));
    node.request(method::HEALTH, serde_json::Value::Null).await.expect("talks through the moved bridge");
}

#[tokio::test]
async fn door_two_pairs_with_a_connection_string_and_no_prompt() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let string = connection_string(&bridge, &gateway).await;
    let parsed = string.to_string().parse().expect("the printed string parses");
    let identity = Arc::new(certs::Identity::generate());
    let request = PairingRequest::new("QR phone", "test").scopes([Scope::Chat, Scope::Voice]);
    let paired = redeem(&parsed, &identity, request).await.expect("the code pairs the node");
    assert_eq!(paired.bridge_id, bridge.id);
    assert_eq!(paired.scopes, [Scope::Chat, Scope::Voice]);
    assert!(support::pending_requests(&gateway).await.is_empty(), "no prompt was needed");

    let node = Node::builder(identity, paired).connect().await.expect("connects as paired");
    node.request(method::HEALTH, serde_json::Value::Null).await.unwrap();

    // Single use: a second node with the same string is refused, clearly.
    let other = certs::Identity::generate();
    let again = redeem(&parsed, &other, PairingRequest::new("Second phone", "test")).await.unwrap_err();
    let again = remote(again);
    assert_eq!(again.code, ErrorCode::PairingCodeUsed);
    assert!(again.message.contains("already used"), "{}", again.message);
}

#[tokio::test]
async fn a_new_code_retires_the_old_one_and_expired_codes_say_so() {
    // Long enough that the first code is still within its lifetime when it is found retired, however
    // slow the machine; the second is then waited out.
    let ttl = Duration::from_secs(2);
    let gateway = TestGateway::start(|c| c.pairing.ttl = ttl).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let first = connection_string(&bridge, &gateway).await;
    let second = connection_string(&bridge, &gateway).await;
    let node = certs::Identity::generate();
    let e = remote(redeem(&first, &node, PairingRequest::new("p", "test")).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::PairingExpired);
    assert!(e.message.contains("newer pairing code"), "{}", e.message);

    // Past the second code's lifetime: it was issued before the redeem above.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let e = remote(redeem(&second, &node, PairingRequest::new("p", "test")).await.unwrap_err());
    assert_eq!(e.code, ErrorCode::PairingExpired);
    assert!(e.message.contains("expired"), "{}", e.message);
}

#[tokio::test]
async fn wrong_codes_are_refused_then_rate_limited() {
    let gateway = TestGateway::start(|_| {}).await;
    // A burst of 3, then one more guess every 5 s: the test cannot earn a fourth guess while it makes the
    // first three, however slow the machine, so exactly three reach the gateway.
    let rate = Rate { every: Duration::from_secs(5), burst: 3 };
    let bridge = TestBridge::start(&gateway, |c| c.limits.pairing_codes_per_address = rate).await;
    let mut string = connection_string(&bridge, &gateway).await;
    let real = std::mem::replace(&mut string.code, "aaaaaaaaaaaaaaaaaaaaaaaaaa".into());
    let mut refused = 0;
    let mut limited = None;
    for _ in 0..10 {
        let guesser = certs::Identity::generate();
        match remote(redeem(&string, &guesser, PairingRequest::new("guesser", "test")).await.unwrap_err()) {
            e if e.code == ErrorCode::PairingCodeInvalid => refused += 1,
            e if e.code == ErrorCode::RateLimited => {
                limited = Some(e);
                break;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    let limited = limited.expect("guessing is rate limited");
    assert_eq!(refused, 3, "the burst, then the limit");
    let wait = limited.retry_after_ms.expect("the refusal says when to retry");
    assert!(limited.retryable && wait > 0 && wait <= 5000, "{limited:?}");
    // Guesses past the limit never reached the gateway.
    assert_eq!(support::gateway_requests(&gateway, method::PAIR_REDEEM).await, refused);

    // Guessing did not spend the real code: after the wait the owner's phone pairs with it.
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    string.code = real;
    let node = certs::Identity::generate();
    redeem(&string, &node, PairingRequest::new("owner's phone", "test")).await.expect("the real code still works");
}
