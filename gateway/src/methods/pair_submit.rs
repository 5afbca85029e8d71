//! `pair.submit` (bridge only): a node the bridge met over TLS asks to be paired. Answered at once with the
//! request's ID; the bridge then waits for the owner with `pair.wait`. Operators hear `pair.requested`.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairSubmitParams, PairTicket, event, method};
use serde_json::Value;

pub(crate) struct PairSubmit {
    params: PairSubmitParams,
}

impl PairSubmit {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: PairSubmitParams = parse_params(method::PAIR_SUBMIT, params)?;
        if params.sas.len() != 6 || !params.sas.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ErrorShape::invalid_request("sas must be six digits"));
        }
        Ok(PairSubmit { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let pending = ctx.state.pending_pairings.submit(self.params)?;
        let request = &pending.request;
        tracing::info!(request = %pending.request_id, node = %request.node_id, address = %request.address, "pairing request waiting for the owner");
        ctx.state.hub.broadcast(event::PAIR_REQUESTED, &pending);
        let ticket = PairTicket { request_id: pending.request_id, expires_at_ms: pending.expires_at_ms };
        Ok(serde_json::to_value(ticket).expect("tickets serialise"))
    }
}
