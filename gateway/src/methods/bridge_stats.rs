//! `bridge.stats` (bridge only): the bridge's counters, kept until the next report for `/metrics`.

use super::{Context, parse_params};
use node_kit::protocol::{BridgeStats, ErrorShape, method};
use serde_json::Value;

/// Each table of the report holds at most this many entries: a bridge's reasons and limits are a few.
const MAX_ENTRIES: usize = 64;

pub(crate) struct BridgeStatsMethod {
    stats: BridgeStats,
}

impl BridgeStatsMethod {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let stats: BridgeStats = parse_params(method::BRIDGE_STATS, params)?;
        let tables = [&stats.handshakes, &stats.refused, &stats.rate_limited, &stats.connections, &stats.relayed_bytes];
        if tables.iter().any(|t| t.len() > MAX_ENTRIES || t.keys().any(|k| k.len() > 64)) {
            return Err(ErrorShape::invalid_request(format!(
                "bridge.stats tables hold at most {MAX_ENTRIES} short names"
            )));
        }
        Ok(BridgeStatsMethod { stats })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        ctx.state.metrics.bridge_reported(self.stats);
        Ok(Value::Object(Default::default()))
    }
}
