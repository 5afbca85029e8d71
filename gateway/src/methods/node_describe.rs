//! `node.describe`: one connected node's capabilities and commands.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorCode, ErrorShape, NodeDescribeParams, method};
use serde_json::{Value, json};

pub(crate) struct NodeDescribe {
    params: NodeDescribeParams,
}

impl NodeDescribe {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let mut params: NodeDescribeParams = parse_params(method::NODE_DESCRIBE, params)?;
        params.node_id = crate::nodes::canonical(&params.node_id);
        Ok(NodeDescribe { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node_id = &self.params.node_id;
        match ctx.state.nodes.describe(node_id) {
            Some(summary) => Ok(serde_json::to_value(summary).expect("summary serialises")),
            None => Err(ErrorShape::new(ErrorCode::NodeNotConnected, format!("node {node_id} is not connected"))
                .with_details(json!({ "nodeId": node_id }))),
        }
    }
}
