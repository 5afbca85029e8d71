//! `tunnel.sync` (the bridge): the relay URL and every routing-token hash, read when the bridge starts;
//! after that the `tunnel` event brings each change.

use super::Context;
use node_kit::protocol::ErrorShape;
use serde_json::Value;

pub(crate) struct TunnelSync;

impl TunnelSync {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        Ok(serde_json::to_value(ctx.state.tunnel_sync()).expect("payloads serialise"))
    }
}
