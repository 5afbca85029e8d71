//! `pair.code` (operators): issues the one-time code of a `lanyard://` connection string (door 2). The
//! owner asking for it is the approval, given in advance; the previous code stops working.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairCode as IssuedCode, PairCodeIssued, PairCodeParams, Scope, event, method};
use serde_json::Value;

pub(crate) struct PairCode {
    scopes: Vec<Scope>,
}

impl PairCode {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: PairCodeParams =
            if params.is_null() { PairCodeParams::default() } else { parse_params(method::PAIR_CODE, params)? };
        let scopes = super::code_scopes(params.scopes)?;
        Ok(PairCode { scopes })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let issued = ctx.state.pairing_codes.issue(self.scopes.clone());
        tracing::info!(request = %issued.request_id, scopes = ?self.scopes, "pairing code issued; any earlier code is retired");
        let announced = PairCodeIssued { request_id: issued.request_id.clone(), expires_at_ms: issued.expires_at_ms };
        ctx.state.hub.broadcast(event::PAIR_CODE_ISSUED, &announced);
        let issued = IssuedCode {
            code: issued.code,
            request_id: issued.request_id,
            scopes: self.scopes,
            expires_at_ms: issued.expires_at_ms,
        };
        Ok(serde_json::to_value(issued).expect("codes serialise"))
    }
}
