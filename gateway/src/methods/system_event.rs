//! `system-event`: a presence beacon. Kept per instance, listed in `health`, announced to operators.

use super::{Context, parse_params};
use node_kit::protocol::{ClientMode, ErrorShape, PresenceBeacon, event, method};
use serde_json::{Value, json};

pub(crate) struct SystemEvent {
    beacon: PresenceBeacon,
}

impl SystemEvent {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(SystemEvent { beacon: parse_params(method::SYSTEM_EVENT, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        if let Some(app_state) = self.beacon.state
            && ctx.peer.mode == ClientMode::Node
        {
            ctx.state.nodes.update(&ctx.peer.instance_id, |node| node.state = app_state);
        }
        if let Some(entry) = ctx.state.presence.beacon(&ctx.peer.instance_id, self.beacon) {
            ctx.state.hub.broadcast(event::PRESENCE, &entry);
        }
        Ok(json!({ "ok": true }))
    }
}
