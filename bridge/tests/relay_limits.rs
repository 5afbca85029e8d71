//! Past the relay's limits (`docs/relay.md`, "Past a limit"), with the real relay Worker (workerd under
//! `wrangler dev`, on loopback) and a real bridge: a refusal names its wait and node-kit keeps to it, and a
//! paired client's sealed calls never spend the per-source budget of openings.

mod support;

use bridge::ratelimit::Rate;
use node_kit::node::{Backoff, Node, Path};
use node_kit::protocol::{DeviceInfo, Scope, method};
use node_kit::sealed_client::SealedClient;
use std::time::{Duration, Instant};
use support::TestBridge;
use support::gw::{TestGateway, eventually};
use support::relay::{LocalRelay, paired_with_route, raw_stream, relay_knows, remote_code, tunnel_on};

/// How many times the relay has refused a `connect` with 429, by its own request log.
fn connect_refusals(relay: &LocalRelay) -> usize {
    String::from_utf8_lossy(&relay.logs()).lines().filter(|line| line.contains("/connect 429")).count()
}

/// A node away from home whose token's streams are all taken: the relay answers `429 too_many_streams`
/// with `Retry-After: 1`. The node does not come back before that second is up (its own backoff is 50 ms),
/// and once a place is free it connects and its calls are answered.
#[tokio::test]
async fn a_node_waits_out_the_relays_retry_after_then_connects() {
    let Some(relay) = LocalRelay::start().await else { return };
    let gateway = TestGateway::start(|_| {}).await;
    // The held streams send no TLS: the bridge waits for them for a minute.
    let bridge = TestBridge::start(&gateway, |config| config.handshake_timeout = Duration::from_secs(60)).await;
    tunnel_on(&gateway, &relay.url).await;
    let (identity, mut paired, route) = paired_with_route(&bridge, &gateway, &relay.url).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(raw_stream(&route).await.expect("one of the token's 8 streams"));
    }
    let (status, retry_after, body) = raw_stream(&route).await.expect_err("a ninth stream is refused");
    assert_eq!((status, retry_after.as_deref()), (429, Some("1")), "{body}");
    let refused_before = connect_refusals(&relay);

    // Off the LAN: the LAN address refuses at once, so every round goes on to the relay.
    paired.address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let started = Instant::now();
    let connecting = tokio::spawn(
        Node::builder(identity, paired)
            .backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(100) })
            .relay_after(Duration::from_millis(500))
            .first_connect_timeout(Duration::from_secs(30))
            .connect(),
    );
    // Once the relay has refused the node, a place is freed.
    eventually(Duration::from_secs(20), async || (connect_refusals(&relay) > refused_before).then_some(())).await;
    let refused_at = started.elapsed();
    drop(held.pop());
    let node = connecting.await.unwrap().expect("connects through the relay once a place is free");
    let connected_at = started.elapsed();
    assert_eq!(node.path(), Path::Relay);
    assert!(
        connected_at >= Duration::from_millis(1000),
        "came back {connected_at:?} after starting (refused at {refused_at:?}), before the relay's Retry-After of 1 s"
    );
    assert_eq!(connect_refusals(&relay) - refused_before, 1, "asked again inside the wait the relay named");
    let client = node.connected(Duration::from_secs(5)).await.unwrap();
    client.request(method::SYSTEM_EVENT, serde_json::json!({})).await.expect("a call through the relay");
    node.close();
    bridge.stop().await;
    gateway.stop().await;
}

/// A sealed client's calls are calls on an established route, not openings: with the bridge allowing a
/// source three openings and one a minute after, a paired client makes twenty calls in a row.
#[tokio::test]
async fn sealed_calls_do_not_spend_the_openings_of_their_source() {
    let Some(relay) = LocalRelay::start().await else { return };
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.handshakes_per_address = Rate::per_minute(1, 3);
    })
    .await;
    tunnel_on(&gateway, &relay.url).await;
    let (invite, code) = remote_code(&gateway, &bridge, &relay.url, &relay.url).await;
    let device = DeviceInfo { name: "Busy phone".into(), platform: "web".into(), model: None };
    let mut client = SealedClient::pair(&invite, &code.pin, device, vec![Scope::Chat]).await.expect("pairs by PIN");
    let token = client.paired().token.clone();
    eventually(Duration::from_secs(10), async || relay_knows(&relay.url, &bridge.id, &token).await.then_some(())).await;
    for call in 0..20 {
        client.hello().await.unwrap_or_else(|e| panic!("sealed call {call} refused: {e}"));
    }
    bridge.stop().await;
    gateway.stop().await;
}
