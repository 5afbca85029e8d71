//! `node.invoke`: send a command to a node and return its answer. Deduplicated by idempotency key, so a
//! retried invoke runs the command on the node once.

use super::{Context, check_key, parse_params};
use crate::idempotency::Claim;
use node_kit::protocol::{ErrorShape, NodeCommand, NodeInvokeParams, NodeInvokeResult, method};
use serde_json::Value;
use std::time::Duration;

const DEFAULT_TIMEOUT_MS: u64 = 30_000;
const MAX_TIMEOUT_MS: u64 = 600_000;

pub(crate) struct NodeInvoke {
    params: NodeInvokeParams,
}

impl NodeInvoke {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let mut params: NodeInvokeParams = parse_params(method::NODE_INVOKE, params)?;
        check_key("nodeId", &params.node_id)?;
        params.node_id = crate::nodes::canonical(&params.node_id);
        check_key("command", &params.command)?;
        check_key("idempotencyKey", &params.idempotency_key)?;
        NodeCommand::parse(&params.command, &params.params).map_err(ErrorShape::invalid_request)?;
        if params.timeout_ms.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS) {
            return Err(ErrorShape::invalid_request(format!("timeoutMs must be between 1 and {MAX_TIMEOUT_MS}")));
        }
        Ok(NodeInvoke { params })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let p = self.params;
        let key = format!("{}\u{0}{}", p.node_id, p.idempotency_key);
        let completer = match ctx.state.invokes.claim(&key, String::new)? {
            Claim::Existing { waiter, .. } => return waiter.outcome().await,
            Claim::New(completer) => completer,
        };
        let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        let outcome = ctx.state.nodes.invoke(&p.node_id, &p.command, p.params, timeout).await.map(|payload| {
            let result = NodeInvokeResult { node_id: p.node_id.clone(), command: p.command.clone(), payload };
            serde_json::to_value(result).expect("invoke result serialises")
        });
        completer.complete(outcome.clone());
        outcome
    }
}
