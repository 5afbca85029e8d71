//! `pair.revoke` (operators): forgets a node's key (and a sealed client's seal key, and its push
//! subscription) and closes its live connections at once.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairRevokeParams, PairRevoked, method};
use serde_json::Value;

pub(crate) struct PairRevoke {
    params: PairRevokeParams,
}

impl PairRevoke {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairRevoke { params: parse_params(method::PAIR_REVOKE, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node_id = self.params.node_id;
        if !ctx.state.paired.revoke(&node_id).map_err(|e| super::store_failed(&e))? {
            return Err(super::not_paired(&node_id));
        }
        // A sealed client's key goes too. Left behind it opens nothing (`seal.open` asks the paired store
        // first), so a failed write is only logged.
        if let Err(e) = ctx.state.sealed.forget(&node_id) {
            tracing::warn!(node = %node_id, error = %e.message, "could not forget the sealed client's key");
        }
        // Its push subscription goes too, so nothing more is pushed to it. The revoke stands if this write
        // fails (the device can no longer connect); the failure is logged.
        if let Err(e) = ctx.state.push.forget(&node_id) {
            tracing::error!(node = %node_id, error = %e.message, "could not forget the push subscription");
        }
        // The bridge relays this node over its gateway link; closing that link closes the node's socket.
        let connections_closed = ctx.state.nodes.disconnect(&node_id.to_string(), super::not_paired(&node_id));
        tracing::info!(node = %node_id, connections_closed, "pairing revoked");
        // Its routing token goes with it: the bridge tells its relay object, which closes relayed streams.
        ctx.state.announce_tunnel();
        Ok(serde_json::to_value(PairRevoked { node_id, connections_closed }).expect("payloads serialise"))
    }
}
