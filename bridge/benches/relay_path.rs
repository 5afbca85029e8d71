//! The relay path against the LAN path, in one run, with the real relay Worker (workerd under
//! `wrangler dev` on loopback): a call's round trip (`system-event`), connecting (relay WebSocket, then
//! the same pinned TLS 1.3 session, WebSocket, `connect`, `hello-ok`), and a LAN loss: from the reset to
//! the first call over the relay, against a reset after which the LAN is still there. LAN loss to the
//! first streamed delta of a turn is printed by `tests/relay.rs`.
//! Prints a Markdown table for docs/benchmarks.md.
//!
//!   cargo bench -p bridge --bench relay_path
//!   BENCH_CALLS=500 BENCH_CONNECTS=50 BENCH_SWITCHES=20 to change the sample sizes.

#[path = "../../gateway/benches/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use bridge::ratelimit::Rate;
use certs::Pin;
use node_kit::Client;
use node_kit::node::{Backoff, Node, Path};
use node_kit::protocol::{Scope, method};
use node_kit::relay::RelayRoute;
use stats::{paired_median_ms, print_table};
use std::time::{Duration, Instant};
use support::gw::{TestGateway, eventually};
use support::relay::{LocalRelay, relay_knows, tunnel_on};
use support::{Cable, TestBridge, pair};

const PACE_CALLS: Duration = Duration::from_millis(5);
const PACE_CONNECTS: Duration = Duration::from_millis(150);

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let (calls, connects) = (env_or("BENCH_CALLS", 500), env_or("BENCH_CONNECTS", 50));
    let switches = env_or("BENCH_SWITCHES", 20);
    let Some(relay) = LocalRelay::start().await else { return };
    let gateway = TestGateway::start(|_| {}).await;
    // The benchmark is a flood from one node: lift the limits out of its way.
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.handshakes_per_address = Rate::per_second(100_000, 100_000);
        config.limits.requests_per_node = Rate::per_second(100_000, 100_000);
    })
    .await;
    tunnel_on(&gateway, &relay.url).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let home = Node::builder(identity.clone(), paired).connect().await.unwrap();
    let paired = eventually(Duration::from_secs(10), async || {
        let bridge = home.bridge();
        bridge.relay.is_some().then_some(bridge)
    })
    .await;
    home.close();
    let access = paired.relay.clone().unwrap();
    eventually(Duration::from_secs(10), async || {
        relay_knows(&relay.url, &bridge.id, &access.token).await.then_some(())
    })
    .await;
    let route = RelayRoute { url: access.url.clone(), bridge_id: bridge.id, token: access.token.clone() };
    // Two paired devices, one per path: a node's second connection replaces its first at the gateway.
    let (lan_identity, _) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let lan = Client::bridge(bridge.address(), &lan_identity, Pin::Key(bridge.id)).unwrap();
    let relayed = Client::bridge(bridge.address(), &identity, Pin::Key(bridge.id)).unwrap().relay(route);

    let (lan_client, relay_client) = (lan.clone().connect().await.unwrap(), relayed.clone().connect().await.unwrap());
    let (mut lan_calls, mut relay_calls) = (Vec::new(), Vec::new());
    for i in 0..calls + 20 {
        let (l, r) = if i % 2 == 0 {
            let l = timed_call(&lan_client).await;
            (l, timed_call(&relay_client).await)
        } else {
            let r = timed_call(&relay_client).await;
            (timed_call(&lan_client).await, r)
        };
        if i >= 20 {
            lan_calls.push(l);
            relay_calls.push(r);
        }
        // The relay holds one token to 200 messages a second: stay under it (untimed).
        tokio::time::sleep(PACE_CALLS).await;
    }
    drop((lan_client, relay_client));

    let (mut lan_connects, mut relay_connects) = (Vec::new(), Vec::new());
    for i in 0..connects + 3 {
        let started = Instant::now();
        let client = lan.clone().connect().await.unwrap();
        let l = started.elapsed();
        drop(client);
        let started = Instant::now();
        let client = relayed.clone().connect().await.unwrap();
        let r = started.elapsed();
        drop(client);
        if i >= 3 {
            lan_connects.push(l);
            relay_connects.push(r);
        }
        // ...and to 10 new streams a second.
        tokio::time::sleep(PACE_CONNECTS).await;
    }

    // LAN loss: a node on the LAN through a cable, whose links are reset. Baseline: the cable is cut and
    // works again at once (the node reconnects on the LAN). Measured: the cable is unplugged (the node
    // moves to the relay), then plugged back in (it moves back). Both from the reset to the first call
    // answered through the node's own session.
    let cable = Cable::start(bridge.address()).await;
    let mut on_lan = paired.clone();
    on_lan.address = cable.addr.clone();
    let node = Node::builder(identity.clone(), on_lan)
        .backoff(Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(300) })
        .relay_after(Duration::from_millis(300))
        .lan_retry_every(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let (mut lan_again, mut to_relay) = (Vec::new(), Vec::new());
    for _ in 0..switches {
        cable.cut();
        lan_again.push(first_call(&node, Path::Lan).await);
        cable.unplug();
        to_relay.push(first_call(&node, Path::Relay).await);
        cable.restore();
        eventually(Duration::from_secs(15), async || (node.path() == Path::Lan).then_some(())).await;
        tokio::time::sleep(PACE_CONNECTS).await;
    }
    node.close();
    bridge.stop().await;
    gateway.stop().await;

    let call_diff = paired_median_ms(&lan_calls, &relay_calls);
    let connect_diff = paired_median_ms(&lan_connects, &relay_connects);
    let switch_diff = paired_median_ms(&lan_again, &to_relay);
    print_table(
        "samples",
        &mut [
            ("`system-event` round trip, LAN path", &mut lan_calls),
            ("`system-event` round trip, relay path (wrangler dev)", &mut relay_calls),
            ("connect, LAN path (TCP, pinned TLS 1.3, WebSocket, connect, hello-ok)", &mut lan_connects),
            ("connect, relay path (relay WebSocket, then the same)", &mut relay_connects),
            ("LAN links reset, LAN still there: reset to the first call (back on the LAN)", &mut lan_again),
            ("LAN gone: loss to the first call over the relay", &mut to_relay),
        ],
    );
    println!(
        "\nMedian of paired differences (relay − LAN): call {call_diff:+.3} ms, connect {connect_diff:+.3} ms, \
         first call after a LAN loss {switch_diff:+.3} ms"
    );
}

/// From now to the first call answered on `path` through the node's session (which reconnects by itself).
async fn first_call(node: &Node, path: Path) -> Duration {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(30), "no call on the {path:?} path within 30 s");
        if let Ok(client) = node.connected(Duration::from_secs(30)).await
            && node.path() == path
            && let Ok(Ok(_)) = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(method::SYSTEM_EVENT, serde_json::json!({})),
            )
            .await
        {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn timed_call(client: &Client) -> Duration {
    let started = Instant::now();
    client.request(method::SYSTEM_EVENT, serde_json::json!({})).await.unwrap();
    started.elapsed()
}
