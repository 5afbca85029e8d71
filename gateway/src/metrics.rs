//! The gateway's numbers in Prometheus text format, on the console's `/metrics`: connections by kind,
//! requests by method, pairings by outcome, agent turns and their latency, the relay link. Counting takes
//! no lock on the request path (atomics behind `prometheus-client`'s families); request counts are read
//! from the table `health` already keeps, at scrape time, rather than kept twice.

use crate::request_counts::RequestCounts;
use node_kit::protocol::{ClientMode, PairOutcome, RunStatus, TunnelLinkState, TunnelReport};
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
}

impl GatewayMetrics {
    /// `requests` and `relay` are read at each scrape.
    pub(crate) fn new(requests: Arc<RequestCounts>, relay: Arc<Mutex<Option<TunnelReport>>>) -> GatewayMetrics {
        let mut registry = Registry::with_prefix("lanyard_gateway");
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
        registry.register_collector(Box::new(Scraped { requests, relay }));
        GatewayMetrics { registry, connections_opened, connections_open, pairings, turns, turn_seconds }
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

    /// Everything, in the Prometheus text format (OpenMetrics flavour).
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// What is read when scraped: the request table and the bridge's last report on its relay link.
#[derive(Debug)]
struct Scraped {
    requests: Arc<RequestCounts>,
    relay: Arc<Mutex<Option<TunnelReport>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut requests =
            encoder.encode_descriptor("requests", "Requests received, by method", None, MetricType::Counter)?;
        for (method, count) in self.requests.by_method() {
            ConstCounter::new(count).encode(requests.encode_family(&MethodLabel { method })?)?;
        }
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
