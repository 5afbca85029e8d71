//! `pair.reject` (operators): drops the request without a trace and tells the waiting node.

use super::{Context, parse_params};
use crate::pairing::Decision;
use node_kit::protocol::{ErrorShape, PairDecisionParams, PairOutcome, PairResolution, method};
use serde_json::Value;

pub(crate) struct PairReject {
    request_id: String,
}

impl PairReject {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: PairDecisionParams = parse_params(method::PAIR_REJECT, params)?;
        Ok(PairReject { request_id: params.request_id })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let (request, ()) = ctx.state.pending_pairings.decide(&self.request_id, |_| Ok((Decision::Rejected, ())))?;
        tracing::info!(request = %request.request_id, "pairing rejected");
        let resolution = PairResolution {
            request_id: request.request_id,
            node_id: request.request.node_id,
            outcome: PairOutcome::Rejected,
            scopes: Vec::new(),
        };
        ctx.state.pair_resolved(&resolution);
        Ok(serde_json::to_value(resolution).expect("resolutions serialise"))
    }
}
