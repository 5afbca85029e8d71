//! `pair.list` (operators): every paired node, connected or not.

use super::Context;
use node_kit::protocol::{ErrorShape, PairedNodeList};
use serde_json::Value;

pub(crate) struct PairList;

impl PairList {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        Ok(serde_json::to_value(PairedNodeList { nodes: ctx.state.paired.list() }).expect("lists serialise"))
    }
}
