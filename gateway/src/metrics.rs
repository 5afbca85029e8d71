//! The gateway's numbers in Prometheus text format, on the console's `/metrics`: connections by kind,
//! requests by method, pairings by outcome, agent turns and their latency, the relay link. Counting takes
//! no lock on the request path (atomics behind `prometheus-client`'s families); request counts are read
//! from the table `health` already keeps, at scrape time, rather than kept twice.

use crate::request_counts::RequestCounts;
use node_kit::protocol::{BridgeStats, ClientMode, PairOutcome, RunStatus, TunnelLinkState, TunnelReport};
use node_kit::refusals::RefusalLog;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

fn mode(mode: ClientMode) -> ModeLabel {
    ModeLabel {
        mode: match mode {
            ClientMode::Operator => "operator",
            ClientMode::Node => "node",
            ClientMode::Bridge => "bridge",
        },
    }
}

pub(crate) struct GatewayMetrics {
    registry: Registry,
    connections_opened: Family<ModeLabel, Counter>,
    connections_open: Family<ModeLabel, Gauge>,
    pairings: Family<OutcomeLabel, Counter>,
    turns: Family<OutcomeLabel, Counter>,
    turn_seconds: Histogram,
    bridge: Arc<Mutex<Option<BridgeStats>>>,
}

impl GatewayMetrics {
    /// `requests` and `relay` are read at each scrape.
    pub(crate) fn new(
        requests: Arc<RequestCounts>,
        refusals: Arc<RefusalLog>,
        relay: Arc<Mutex<Option<TunnelReport>>>,
    ) -> GatewayMetrics {
        let mut root = Registry::with_prefix("lanyard");
        let bridge = Arc::new(Mutex::new(None));
        root.sub_registry_with_prefix("bridge").register_collector(Box::new(BridgeReport(bridge.clone())));
        let registry = root.sub_registry_with_prefix("gateway");
        let connections_opened = Family::<ModeLabel, Counter>::default();
        registry.register(
            "connections_opened",
            "Connections accepted past the handshake, by kind",
            connections_opened.clone(),
        );
        let connections_open = Family::<ModeLabel, Gauge>::default();
        registry.register("connections_open", "Connections open now, by kind", connections_open.clone());
        let pairings = Family::<OutcomeLabel, Counter>::default();
        registry.register("pairings", "Pairing requests and codes resolved, by outcome", pairings.clone());
        let turns = Family::<OutcomeLabel, Counter>::default();
        registry.register("agent_turns", "Agent turns finished, by outcome", turns.clone());
        // 50 ms to about 7 minutes: a turn is a model's answer, tools and all.
        let turn_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register("agent_turn_seconds", "How long agent turns took, accepted to outcome", turn_seconds.clone());
        registry.register_collector(Box::new(Scraped { requests, refusals, relay }));
        GatewayMetrics { registry: root, connections_opened, connections_open, pairings, turns, turn_seconds, bridge }
    }

    pub(crate) fn connected(&self, client: ClientMode) {
        self.connections_opened.get_or_create(&mode(client)).inc();
        self.connections_open.get_or_create(&mode(client)).inc();
    }

    pub(crate) fn disconnected(&self, client: ClientMode) {
        self.connections_open.get_or_create(&mode(client)).dec();
    }

    pub(crate) fn paired(&self, outcome: PairOutcome) {
        let outcome = match outcome {
            PairOutcome::Approved => "approved",
            PairOutcome::Rejected => "rejected",
            PairOutcome::Expired => "expired",
        };
        self.pairings.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A turn's end: its status (`error` when it failed) and how long it took.
    pub(crate) fn turn(&self, status: Option<RunStatus>, took: Duration) {
        let outcome = match status {
            Some(RunStatus::Cancelled) => "cancelled",
            Some(_) => "ok",
            None => "error",
        };
        self.turns.get_or_create(&OutcomeLabel { outcome }).inc();
        self.turn_seconds.observe(took.as_secs_f64());
    }

    /// The bridge's latest counters (`bridge.stats`).
    pub(crate) fn bridge_reported(&self, stats: BridgeStats) {
        *self.bridge.lock().expect("metrics lock") = Some(stats);
    }

    /// Everything, in the Prometheus text format (OpenMetrics flavour).
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// What is read when scraped: the request table, the refusals and the bridge's last report on its relay
/// link.
struct Scraped {
    requests: Arc<RequestCounts>,
    refusals: Arc<RefusalLog>,
    relay: Arc<Mutex<Option<TunnelReport>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: String,
}

/// One family of numbers from a table, as counters or gauges.
fn table<L: EncodeLabelSet + std::fmt::Debug>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    rows: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (label, value) in rows {
        let row = family.encode_family(&label)?;
        match kind {
            MetricType::Gauge => ConstGauge::new(value as i64).encode(row)?,
            _ => ConstCounter::new(value).encode(row)?,
        }
    }
    Ok(())
}

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scraped")
    }
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let requests = self.requests.by_method().into_iter().map(|(method, n)| (MethodLabel { method }, n));
        table(&mut encoder, ("requests", "Requests received, by method", MetricType::Counter), requests)?;
        let refusals = self.refusals.since_start().into_iter().map(|(reason, n)| (ReasonLabel { reason }, n));
        table(
            &mut encoder,
            ("refusals", "Connections refused at the handshake, by reason", MetricType::Counter),
            refusals,
        )?;
        let report = self.relay.lock().expect("tunnel lock").clone();
        let up = report.as_ref().is_some_and(|r| r.state == TunnelLinkState::Ready);
        let link = encoder.encode_descriptor(
            "relay_link_up",
            "1 while the bridge's link to the relay is ready (0: connecting, retrying or no relay)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(up)).encode(link)?;
        let streams = encoder.encode_descriptor(
            "relay_streams",
            "Node streams the bridge carries through the relay now",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(report.map_or(0, |r| r.relay_streams as i64)).encode(streams)
    }
}

/// The bridge's last report, as it sent it; nothing until it has reported.
#[derive(Debug)]
struct BridgeReport(Arc<Mutex<Option<BridgeStats>>>);

impl Collector for BridgeReport {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.lock().expect("metrics lock").clone() else { return Ok(()) };
        let paths =
            |rows: std::collections::BTreeMap<String, u64>| rows.into_iter().map(|(path, n)| (PathLabel { path }, n));
        table(
            &mut encoder,
            ("handshakes", "TLS handshakes completed, by path", MetricType::Counter),
            paths(stats.handshakes),
        )?;
        let reasons = stats.refused.into_iter().map(|(reason, n)| (ReasonLabel { reason }, n));
        table(
            &mut encoder,
            ("refusals", "Connections and streams turned away, by reason", MetricType::Counter),
            reasons,
        )?;
        let limits = stats.rate_limited.into_iter().map(|(limit, n)| (LimitLabel { limit }, n));
        table(&mut encoder, ("rate_limited", "Calls refused by a rate limit, by limit", MetricType::Counter), limits)?;
        table(
            &mut encoder,
            ("connections", "Paired nodes connected now, by path", MetricType::Gauge),
            paths(stats.connections),
        )?;
        let bytes =
            ("relayed_bytes", "Bytes of frames relayed between nodes and the gateway, by path", MetricType::Counter);
        table(&mut encoder, bytes, paths(stats.relayed_bytes))
    }
}
