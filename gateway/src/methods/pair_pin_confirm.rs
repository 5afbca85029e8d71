//! `pair.pin.confirm` (bridge only): door 3's last step. A node whose confirmation proves the key of its
//! exchange is paired at once, with the scopes it asked for that the code grants, and gets its routing
//! token; operators hear `pair.resolved`. A keyless client of the sealed HTTP contract is paired under the
//! ID its exchange made and has its seal key kept; the bridge gets the key to seal the answer. A
//! confirmation that does not match spends the try for good.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairOutcome, PairPinConfirmSubmit, PairPinResult, PairResolution, method};
use serde_json::Value;

pub(crate) struct PairPinConfirm {
    submit: PairPinConfirmSubmit,
}

impl PairPinConfirm {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairPinConfirm { submit: parse_params(method::PAIR_PIN_CONFIRM, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        let confirmed = state.remote_codes.confirm(&self.submit, |granted| {
            // Checked before a sealed key is kept, so a refused pairing leaves the paired one's key alone.
            if state.paired.get(&granted.node_id).is_some() {
                return Err(super::already_paired(&granted.node_id));
            }
            // A sealed client's key is kept first: a client told it is paired can always chat.
            if let Some(key) = &granted.seal_key {
                state.sealed.add(granted.node_id, key)?;
            }
            let node = super::store_paired(ctx, granted.node_id, granted.device.sanitised(), granted.scopes)?;
            let seal_key = granted.seal_key.map(|key| key.to_base64().to_string());
            Ok((granted.request_id, node, seal_key))
        });
        // Used or burnt: either way the code's routing token leaves the relay's set (and a new node's joins).
        if !state.remote_codes.is_live() {
            state.announce_tunnel_after(state.remote_codes.linger());
        }
        let (request_id, node, seal_key) = match confirmed {
            Ok(paired) => paired,
            Err(e) => {
                tracing::info!(node = ?self.submit.node_id, code = %e.code, "remote pairing refused");
                return Err(e);
            }
        };
        let relay = super::tunnel_token::issue(state, node.node_id)?;
        tracing::info!(node = %node.node_id, "paired by PIN through the relay");
        let resolution =
            PairResolution { request_id, node_id: node.node_id, outcome: PairOutcome::Approved, scopes: node.scopes };
        state.pair_resolved(&resolution);
        Ok(serde_json::to_value(PairPinResult { resolution, relay, seal_key }).expect("payloads serialise"))
    }
}
