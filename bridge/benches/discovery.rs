//! How long a phone waits on the two moments it notices: from the bridge starting to the phone finding it
//! over mDNS, and from the owner's approval (door 1) or the code's redemption (door 2) to the first
//! answered call. Each is measured side by side with its floor in the same run: a bare mdns-sd service
//! registered and browsed the same way (the library's probing and announcing, without the bridge), and
//! an already paired node connecting and calling. Prints a Markdown table for docs/benchmarks.md.
//!
//! mDNS runs on loopback only, on a private UDP port; run it inside a network namespace of its own:
//!
//!   unshare --net -- sh -c 'ip link set lo up && cargo bench -p bridge --bench discovery'
//!   BENCH_ROUNDS=20 to change the number of rounds (default 10).

#[path = "../../gateway/benches/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use node_kit::discovery::{Discovery, MdnsDiscovery, SERVICE_TYPE, mdns_daemon};
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, redeem, request_pairing};
use node_kit::protocol::{Scope, method};
use stats::print_table;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gw::TestGateway;
use support::{TestBridge, connection_string, mdns_on_loopback, mdns_port};

#[tokio::main]
async fn main() {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(10usize).clamp(1, 100);
    let gateway = TestGateway::start(|_| {}).await;
    let (mut bare, mut bridge_found, mut approval, mut redemption, mut paired_call) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        bare.push(bare_mdns(round).await);

        let port = mdns_port();
        let started = Instant::now();
        let bridge = TestBridge::start(&gateway, |c| mdns_on_loopback(c, port, &format!("Bench {round}"))).await;
        let mut browse = MdnsDiscovery::new().interfaces(["lo"]).port(port).watch().unwrap();
        browse.find(Duration::from_secs(10), |_| true).await.expect("the bridge is found");
        bridge_found.push(started.elapsed());

        // Door 1: from the owner's approval to the first answer through the bridge.
        let identity = Arc::new(certs::Identity::generate());
        let pending =
            request_pairing(&bridge.address(), &identity, PairingRequest::new("bench", "bench")).await.unwrap();
        let operator = gateway.operator().await;
        let started = Instant::now();
        operator.request(method::PAIR_APPROVE, serde_json::json!({ "requestId": pending.request_id() })).await.unwrap();
        let paired = pending.approved().await.unwrap();
        first_call(identity.clone(), paired.clone()).await;
        approval.push(started.elapsed());

        // The floor: the same node, already paired, connecting and calling.
        let started = Instant::now();
        first_call(identity, paired).await;
        paired_call.push(started.elapsed());

        // Door 2: from the redemption of the code to the first answer.
        let string = connection_string(&bridge, &gateway).await;
        let identity = Arc::new(certs::Identity::generate());
        let started = Instant::now();
        let paired = redeem(&string, &identity, PairingRequest::new("bench", "bench").scopes([Scope::Chat])).await;
        first_call(identity, paired.unwrap()).await;
        redemption.push(started.elapsed());
        bridge.stop().await;
    }
    gateway.stop().await;

    print_table(
        "rounds",
        &mut [
            ("bare mdns-sd service: register → browse resolves (floor)", &mut bare),
            ("bridge start (key, listener, advertiser) → node-kit discovery finds it", &mut bridge_found),
            ("already paired node: connect + first `health` (floor)", &mut paired_call),
            ("door 1: owner approves → `pair.wait` answered → connect + first `health`", &mut approval),
            ("door 2: `pair.redeem` → connect + first `health`", &mut redemption),
        ],
    );
}

/// Connects as a paired node and waits for the first answered call.
async fn first_call(identity: Arc<certs::Identity>, paired: node_kit::pairing::PairedBridge) {
    let node = Node::builder(identity, paired).connect().await.unwrap();
    node.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    node.close();
}

/// mdns-sd alone: a service registered on loopback and browsed from a second daemon, as node-kit does.
async fn bare_mdns(round: usize) -> Duration {
    let port = mdns_port();
    let lo = ["lo".to_string()];
    let started = Instant::now();
    let advertiser = mdns_daemon(port, &lo).unwrap();
    let service = mdns_sd::ServiceInfo::new(
        SERVICE_TYPE,
        &format!("Bare {round}"),
        "bare.local.",
        "127.0.0.1",
        9,
        &[("v", "1")][..],
    )
    .unwrap();
    advertiser.register(service).unwrap();
    let browser = mdns_daemon(port, &lo).unwrap();
    let events = browser.browse(SERVICE_TYPE).unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv_async()).await {
            Ok(Ok(mdns_sd::ServiceEvent::ServiceResolved(_))) => break,
            Ok(Ok(_)) => continue,
            other => panic!("bare mdns-sd did not resolve: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let _ = advertiser.shutdown();
    let _ = browser.shutdown();
    elapsed
}
