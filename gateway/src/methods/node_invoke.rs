//! `node.invoke`: send a command to a node and return its answer. Deduplicated by idempotency key, so a
//! retried invoke runs the command on the node once (see [`crate::invoke`]).

use super::{Context, parse_params};
use crate::invoke::checked;
use node_kit::protocol::{ErrorShape, NodeInvokeParams, method};
use serde_json::Value;

pub(crate) struct NodeInvoke {
    params: NodeInvokeParams,
}

impl NodeInvoke {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: NodeInvokeParams = parse_params(method::NODE_INVOKE, params)?;
        Ok(NodeInvoke { params: checked(params)? })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        ctx.state.invoker.invoke(self.params).await
    }
}
