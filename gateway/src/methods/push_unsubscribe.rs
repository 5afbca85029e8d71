//! `push.unsubscribe` (a paired device): forgets the device's push subscription; the computer pushes
//! nothing to it from then on. Unsubscribing with none is not an error.

use super::Context;
use node_kit::protocol::ErrorShape;
use serde_json::{Value, json};

pub(crate) struct PushUnsubscribe;

impl PushUnsubscribe {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node = ctx.node_id()?;
        if ctx.state.push.forget(&node)? {
            tracing::info!(node = %node, "push subscription forgotten");
        }
        Ok(json!({}))
    }
}
