//! `push.key` (a paired device): the computer's VAPID public key, made on first use, for the browser's
//! `pushManager.subscribe`, and whether this device has a push subscription.

use super::Context;
use node_kit::protocol::{ErrorShape, PushKey};
use serde_json::Value;

pub(crate) struct PushKeyMethod;

impl PushKeyMethod {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node = ctx.node_id()?;
        let key = PushKey {
            vapid_public_key: ctx.state.push.vapid()?.public_key(),
            subscribed: ctx.state.push.subscribed(&node),
        };
        Ok(serde_json::to_value(key).expect("payloads serialise"))
    }
}
