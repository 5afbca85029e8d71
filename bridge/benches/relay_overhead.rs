//! What the bridge costs a node, side by side with the same work against the gateway directly, in one
//! run: connecting (TCP, TLS 1.3 with both keys pinned, WebSocket, `connect`/`hello-ok`, and the bridge's
//! own link to the gateway) against a plain loopback gateway connection, the TLS handshake alone, and the
//! round trip of one request (`system-event`) through the bridge against the same request sent to the gateway.
//! Prints a Markdown table for docs/benchmarks.md.
//!
//!   cargo bench -p bridge --bench relay_overhead
//!   BENCH_CONNECTS=200 BENCH_CALLS=2000 to change the sample sizes.

#[path = "../../gateway/benches/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use bridge::ratelimit::Rate;
use certs::{PeerKeyVerifier, Pin};
use node_kit::Client;
use node_kit::protocol::{Scope, method};
use stats::{paired_median_ms, print_table};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gw::TestGateway;
use support::{TestBridge, pair};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let connects = env_or("BENCH_CONNECTS", 200);
    let calls = env_or("BENCH_CALLS", 2000);
    let gateway = TestGateway::start(|_| {}).await;
    // The benchmark itself is a flood from one address and one node: lift the limits out of its way.
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.handshakes_per_address = Rate::per_second(100_000, 100_000);
        config.limits.requests_per_node = Rate::per_second(100_000, 100_000);
    })
    .await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node_builder = Client::bridge(bridge.address(), &identity, Pin::Key(paired.bridge_id)).unwrap();
    let tls = Arc::new(identity.client_config(PeerKeyVerifier::new(Pin::Key(paired.bridge_id))).unwrap());

    // Calls first, on a quiet gateway: the connections below leave presence entries behind.
    let operator = gateway.operator().await;
    let node = node_builder.clone().connect().await.unwrap();
    let (mut direct_calls, mut bridge_calls) = (Vec::new(), Vec::new());
    for i in 0..calls + 50 {
        let (d, b) = if i % 2 == 0 {
            let d = timed_call(&operator).await;
            (d, timed_call(&node).await)
        } else {
            let b = timed_call(&node).await;
            (timed_call(&operator).await, b)
        };
        if i >= 50 {
            direct_calls.push(d);
            bridge_calls.push(b);
        }
    }
    drop((operator, node));

    let (mut direct_connect, mut bridge_connect, mut tls_only) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..connects + 5 {
        let started = Instant::now();
        let operator = gateway.operator().await;
        let direct = started.elapsed();
        drop(operator);
        let started = Instant::now();
        let node = node_builder.clone().connect().await.unwrap();
        let through_bridge = started.elapsed();
        drop(node);
        let started = Instant::now();
        let tcp = tokio::net::TcpStream::connect(bridge.addr).await.unwrap();
        let name = certs::rustls::pki_types::ServerName::try_from("lanyard").unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.unwrap();
        let handshake = started.elapsed();
        drop(stream);
        if i >= 5 {
            direct_connect.push(direct);
            bridge_connect.push(through_bridge);
            tls_only.push(handshake);
        }
    }

    bridge.stop().await;
    gateway.stop().await;

    let connect_diff = paired_median_ms(&direct_connect, &bridge_connect);
    let call_diff = paired_median_ms(&direct_calls, &bridge_calls);
    print_table(
        "samples",
        &mut [
            ("connect to the gateway directly (TCP, WebSocket, connect/hello-ok)", &mut direct_connect),
            (
                "connect through the bridge (TCP, mutual pinned TLS 1.3, WebSocket, connect, gateway link, hello-ok)",
                &mut bridge_connect,
            ),
            ("TLS 1.3 handshake alone (mutual, pinned, Ed25519)", &mut tls_only),
            ("`system-event` round trip, gateway directly", &mut direct_calls),
            ("`system-event` round trip through the bridge", &mut bridge_calls),
        ],
    );
    println!("\nMedian of paired differences: connect {connect_diff:+.3} ms, call {call_diff:+.3} ms");
}

/// One request that does the same work and gets the same answer on both paths: an empty presence beacon
/// (`health` would not do: a node's answer leaves out what only the owner may see).
async fn timed_call(client: &Client) -> Duration {
    let started = Instant::now();
    client.request(method::SYSTEM_EVENT, serde_json::json!({})).await.unwrap();
    started.elapsed()
}
