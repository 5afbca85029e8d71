//! `tunnel.set` (operators): turns the off-LAN tunnel on with a relay URL, or off with `null`. The bridge
//! hears of it at once (`tunnel` event) and opens or closes its relay link.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorCode, ErrorShape, TunnelSetParams, check_relay_url, method};
use serde_json::Value;

pub(crate) struct TunnelSet {
    url: Option<String>,
}

impl TunnelSet {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: TunnelSetParams = parse_params(method::TUNNEL_SET, params)?;
        let url = params.url.as_deref().map(check_relay_url).transpose().map_err(ErrorShape::invalid_request)?;
        Ok(TunnelSet { url })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        state
            .tunnel
            .set_url(self.url.clone())
            .map_err(|e| ErrorShape::new(ErrorCode::Internal, format!("cannot write the tunnel settings: {e}")))?;
        tracing::info!(url = ?self.url, "tunnel settings changed");
        state.announce_tunnel();
        Ok(serde_json::to_value(state.tunnel.health(&state.paired)).expect("payloads serialise"))
    }
}
