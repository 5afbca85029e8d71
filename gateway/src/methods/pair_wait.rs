//! `pair.wait` (bridge only): held until the owner approves or rejects the request, or it expires. No
//! polling: the decision answers it at once.

use super::{Context, parse_params};
use crate::pairing::Decision;
use node_kit::protocol::{ErrorCode, ErrorShape, PairOutcome, PairResolution, PairWaitParams, method};
use serde_json::Value;

pub(crate) struct PairWait {
    request_id: String,
}

impl PairWait {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: PairWaitParams = parse_params(method::PAIR_WAIT, params)?;
        let request_id = params.request_id.ok_or_else(|| ErrorShape::invalid_request("requestId is required"))?;
        Ok(PairWait { request_id })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let (node_id, decision) = ctx.state.pending_pairings.wait(&self.request_id).await?;
        let resolution =
            |outcome, scopes| PairResolution { request_id: self.request_id.clone(), node_id, outcome, scopes };
        match decision {
            Decision::Approved(scopes) => {
                Ok(serde_json::to_value(resolution(PairOutcome::Approved, scopes)).expect("resolutions serialise"))
            }
            Decision::Rejected => Err(ErrorShape::new(ErrorCode::PairingRejected, "the owner rejected this device")),
            Decision::Expired => {
                ctx.state.pair_resolved(&resolution(PairOutcome::Expired, Vec::new()));
                Err(crate::pairing::expired("the pairing request expired before the owner answered; ask again"))
            }
            // Not an event: the request itself is still waiting, under the newer attempt.
            Decision::Superseded => Err(crate::pairing::expired("a newer attempt from this device replaced this one")),
        }
    }
}
