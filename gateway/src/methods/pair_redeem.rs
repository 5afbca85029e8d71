//! `pair.redeem` (bridge only): door 2. A node that reached the bridge pinned to the key of a connection
//! string presents its one-time code; a live code pairs the node at once, with the scopes it asked for
//! that the code grants. Operators hear `pair.resolved` as for an approval.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairOutcome, PairRedeemSubmit, PairResolution, method};
use serde_json::Value;

pub(crate) struct PairRedeem {
    params: PairRedeemSubmit,
}

impl PairRedeem {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairRedeem { params: parse_params(method::PAIR_REDEEM, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let PairRedeemSubmit { node_id, address, redeem } = self.params;
        let redeemed = ctx.state.pairing_codes.redeem(&redeem.code, |granted| {
            let scopes: Vec<_> = redeem.scopes.iter().copied().filter(|s| granted.scopes.contains(s)).collect();
            if scopes.is_empty() {
                return Err(ErrorShape::invalid_request(format!(
                    "this code grants only {}; ask for one of those",
                    granted.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            let node = super::store_paired(ctx, node_id, redeem.device.sanitised(), scopes)?;
            Ok((granted.request_id, node))
        });
        let (request_id, node) =
            redeemed.inspect_err(|e| tracing::info!(%node_id, %address, code = %e.code, "pairing code refused"))?;
        tracing::info!(%node_id, %address, "paired with a one-time code");
        let resolution = PairResolution { request_id, node_id, outcome: PairOutcome::Approved, scopes: node.scopes };
        ctx.state.pair_resolved(&resolution);
        Ok(serde_json::to_value(resolution).expect("resolutions serialise"))
    }
}
