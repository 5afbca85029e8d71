//! `tunnel.report` (the bridge): the state of its relay link, which `health` shows the owner.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, TunnelReport, method};
use serde_json::{Value, json};

pub(crate) struct TunnelReportMethod {
    report: TunnelReport,
}

impl TunnelReportMethod {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(TunnelReportMethod { report: parse_params(method::TUNNEL_REPORT, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        ctx.state.tunnel.report(self.report);
        Ok(json!({}))
    }
}
