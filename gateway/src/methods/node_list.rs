//! `node.list`: the nodes connected now.

use super::Context;
use node_kit::protocol::{ErrorShape, NodeListPayload};
use serde_json::Value;

pub(crate) struct NodeList;

impl NodeList {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let payload = NodeListPayload { nodes: ctx.state.nodes.list() };
        Ok(serde_json::to_value(payload).expect("node list serialises"))
    }
}
