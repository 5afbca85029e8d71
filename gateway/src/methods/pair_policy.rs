//! `pair.policy` (operators): what a paired node's agent turns may do: a permission mode (never
//! `bypassPermissions`) and tool patterns allowed or refused without asking. Stored with the pairing
//! record; the node's next turn runs under it.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairPolicyParams, method};
use serde_json::Value;

pub(crate) struct PairPolicy {
    params: PairPolicyParams,
}

impl PairPolicy {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairPolicy { params: parse_params(method::PAIR_POLICY, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let PairPolicyParams { node_id, mode, allowed_tools, denied_tools } = self.params;
        let mut node = ctx.state.paired.get(&node_id).ok_or_else(|| super::not_paired(&node_id))?;
        if let Some(mode) = mode {
            node.policy.mode = mode;
        }
        if let Some(allowed) = allowed_tools {
            node.policy.allowed_tools = allowed;
        }
        if let Some(denied) = denied_tools {
            node.policy.denied_tools = denied;
        }
        node.policy.check()?;
        // Set only if still paired: a revoke in between must not bring the record back.
        if !ctx.state.paired.set_policy(&node_id, node.policy.clone()).map_err(|e| super::store_failed(&e))? {
            return Err(super::not_paired(&node_id));
        }
        tracing::info!(node = %node_id, mode = %node.policy.mode, "node policy set");
        Ok(serde_json::to_value(node).expect("payloads serialise"))
    }
}
