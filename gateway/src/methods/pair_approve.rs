//! `pair.approve` (operators): stores the node with the granted scopes, then answers the waiting node.

use super::{Context, parse_params};
use crate::pairing::Decision;
use node_kit::protocol::{ErrorShape, PairDecisionParams, PairOutcome, PairResolution, method};
use serde_json::Value;

pub(crate) struct PairApprove {
    params: PairDecisionParams,
}

impl PairApprove {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairApprove { params: parse_params(method::PAIR_APPROVE, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let granted = self.params.scopes;
        let (pending, node) = ctx.state.pending_pairings.decide(&self.params.request_id, |pending| {
            let request = &pending.request;
            // The owner can narrow what the node asked for, never widen it.
            let scopes: Vec<_> = match &granted {
                Some(granted) => request.scopes.iter().copied().filter(|s| granted.contains(s)).collect(),
                None => request.scopes.clone(),
            };
            if scopes.is_empty() {
                return Err(ErrorShape::invalid_request(format!(
                    "grant at least one of the scopes the device asked for: {}",
                    request.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            let node = super::store_paired(ctx, request.node_id, request.device.clone(), scopes.clone())?;
            Ok((Decision::Approved(scopes), node))
        })?;
        let scopes = node.scopes.clone();
        tracing::info!(request = %pending.request_id, node = %node.node_id, "pairing approved");
        let resolution = PairResolution {
            request_id: pending.request_id,
            node_id: node.node_id,
            outcome: PairOutcome::Approved,
            scopes,
        };
        ctx.state.pair_resolved(&resolution);
        Ok(serde_json::to_value(node).expect("records serialise"))
    }
}
