//! The bridge's counters reach the console's `/metrics` through the gateway (`bridge.stats`), and move
//! with what the bridge does: handshakes, connections and bytes by path, refusals, rate-limit hits.

mod support;

use bridge::ratelimit::Rate;
use node_kit::node::Node;
use node_kit::protocol::{Scope, method};
use serde_json::Value;
use std::time::Duration;
use support::gw::{TestGateway, eventually};
use support::{TestBridge, pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `/metrics` as a scraper reads it, with the metrics token.
async fn scrape(gateway: &TestGateway) -> prometheus_parse::Scrape {
    let token = gateway::home::GatewayToken::load(&gateway::home::metrics_token_path(gateway.home.path())).unwrap();
    let addr = gateway.console.as_deref().unwrap().trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        token.expose()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("the text format parses")
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, label: (&str, &str)) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name}"),
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_bridges_counters_move_with_its_traffic_on_the_consoles_metrics() {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.requests_per_node = Rate::per_minute(1, 5);
    })
    .await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity, paired).connect().await.unwrap();
    // Five calls pass the node's limit of five at once; the rest are refused by it.
    for _ in 0..8 {
        let _ = node.request(method::SYSTEM_EVENT, serde_json::json!({})).await;
    }
    // A stranger whose TLS handshake fails.
    let mut stranger = tokio::net::TcpStream::connect(bridge.address()).await.unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut sink)).await;

    let scraped = eventually(Duration::from_secs(20), async || {
        let scrape = scrape(&gateway).await;
        (value(&scrape, "lanyard_bridge_rate_limited_total", ("limit", "requests")) >= 3.0
            && value(&scrape, "lanyard_bridge_refusals_total", ("reason", "tls-failed")) >= 1.0)
            .then_some(scrape)
    })
    .await;
    assert!(value(&scraped, "lanyard_bridge_handshakes_total", ("path", "lan")) >= 2.0, "pairing and the node");
    assert_eq!(value(&scraped, "lanyard_bridge_connections", ("path", "lan")), 1.0);
    assert_eq!(value(&scraped, "lanyard_bridge_connections", ("path", "relay")), 0.0);
    assert!(value(&scraped, "lanyard_bridge_relayed_bytes_total", ("path", "lan")) > 0.0);

    node.close();
    eventually(Duration::from_secs(20), async || {
        (value(&scrape(&gateway).await, "lanyard_bridge_connections", ("path", "lan")) == 0.0).then_some(())
    })
    .await;
    let _ = gateway.operator().await.request(method::HEALTH, Value::Null).await;
}
