//! `tunnel.token` (a paired node, through the bridge): a fresh routing token for the relay. The node
//! asks while it is home (a node paired by PIN through the relay gets its first one with its pairing);
//! the gateway stores only the token's hash, replacing the node's earlier one, and the bridge passes the
//! new set of hashes to its relay object (`tunnel` event).

use super::Context;
use crate::state::GatewayState;
use node_kit::protocol::{ErrorShape, RoutingToken, routing_token_hash};
use serde_json::Value;

pub(crate) struct TunnelToken;

impl TunnelToken {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node_id: certs::KeyId =
            ctx.peer.instance_id.parse().map_err(|_| ErrorShape::invalid_request("the caller is not a node"))?;
        Ok(serde_json::to_value(issue(&ctx.state, node_id)?).expect("payloads serialise"))
    }
}

/// Issues `node_id` a new routing token and tells the bridge.
pub(super) fn issue(state: &GatewayState, node_id: certs::KeyId) -> Result<RoutingToken, ErrorShape> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random source works");
    let token = data_encoding::BASE64URL_NOPAD.encode(&secret);
    if !state.paired.set_routing_token(&node_id, routing_token_hash(&token)).map_err(|e| super::store_failed(&e))? {
        return Err(super::not_paired(&node_id));
    }
    tracing::info!(node = %node_id, "routing token issued");
    state.announce_tunnel();
    Ok(RoutingToken { token, relay_url: state.tunnel.url() })
}
