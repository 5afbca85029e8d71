//! `pair.pending` (operators): the requests waiting for the owner, oldest first.

use super::Context;
use node_kit::protocol::{ErrorShape, PendingPairingList};
use serde_json::Value;

pub(crate) struct PairPending;

impl PairPending {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let list = PendingPairingList { requests: ctx.state.pending_pairings.list() };
        Ok(serde_json::to_value(list).expect("lists serialise"))
    }
}
