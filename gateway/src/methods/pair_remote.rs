//! `pair.remote` (operators): door 3's code, for pairing a device away from home through the relay by
//! PIN. Needs the tunnel on. The previous remote code stops working; this one leaves the relay's token
//! set when it expires, is used, or is burnt.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorCode, ErrorShape, PairRemoteParams, Scope, method};
use serde_json::Value;

pub(crate) struct PairRemote {
    scopes: Vec<Scope>,
}

impl PairRemote {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: PairRemoteParams =
            if params.is_null() { PairRemoteParams::default() } else { parse_params(method::PAIR_REMOTE, params)? };
        let scopes = super::code_scopes(params.scopes)?;
        Ok(PairRemote { scopes })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        let Some(relay_url) = state.tunnel.url() else {
            return Err(ErrorShape::new(
                ErrorCode::InvalidRequest,
                "pairing away from home goes through the relay: turn the tunnel on first with \
                 `lanyard tunnel enable https://…`",
            ));
        };
        let code = state.remote_codes.issue(self.scopes.clone(), relay_url);
        tracing::info!(request = %code.request_id, scopes = ?self.scopes, "remote pairing code issued");
        state.announce_tunnel();
        // When the code expires, its routing token leaves the relay's set.
        state.announce_tunnel_after(std::time::Duration::from_millis(
            code.expires_at_ms.saturating_sub(crate::now_ms()),
        ));
        Ok(serde_json::to_value(code).expect("codes serialise"))
    }
}
