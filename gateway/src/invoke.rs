//! `node.invoke` as the gateway runs it for every caller, the owner's request and the agent's tool alike:
//! the params are checked, the call is deduplicated by idempotency key, and it travels the node's own link,
//! where the bridge applies its ACL, capability, background, rate and size checks. There is no other way
//! for a command to reach a node.

use crate::idempotency::{Claim, IdempotencyCache};
use crate::nodes::{NodeRegistry, canonical};
use node_kit::protocol::{ErrorShape, NodeCommand, NodeInvokeParams, NodeInvokeResult, check_id};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub(crate) const MAX_TIMEOUT_MS: u64 = 600_000;

pub(crate) struct Invoker {
    pub nodes: Arc<NodeRegistry>,
    /// Idempotency keys of `node.invoke` calls, per node.
    cache: IdempotencyCache,
}

/// Checks `params` the way every `node.invoke` is checked, and spells the node ID canonically.
pub(crate) fn checked(mut params: NodeInvokeParams) -> Result<NodeInvokeParams, ErrorShape> {
    check_id("nodeId", &params.node_id)?;
    params.node_id = canonical(&params.node_id);
    check_id("command", &params.command)?;
    check_id("idempotencyKey", &params.idempotency_key)?;
    NodeCommand::parse(&params.command, &params.params).map_err(ErrorShape::invalid_request)?;
    if params.timeout_ms.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS) {
        return Err(ErrorShape::invalid_request(format!("timeoutMs must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    Ok(params)
}

impl Invoker {
    pub(crate) fn new(nodes: Arc<NodeRegistry>, cache: IdempotencyCache) -> Invoker {
        Invoker { nodes, cache }
    }

    /// Runs checked params (see [`checked`]) once per idempotency key and node; a retry gets the first
    /// call's outcome. The answer is a [`NodeInvokeResult`] as JSON, the form the cache keeps, so a large
    /// payload (a snapshot) is not converted back and forth.
    pub(crate) async fn invoke(&self, p: NodeInvokeParams) -> Result<Value, ErrorShape> {
        let key = format!("{}\u{0}{}", p.node_id, p.idempotency_key);
        let completer = match self.cache.claim(&key, String::new)? {
            Claim::Existing { waiter, .. } => return waiter.outcome().await,
            Claim::New(completer) => completer,
        };
        let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
        let outcome = self.nodes.invoke(&p.node_id, &p.command, p.params, timeout).await.map(|payload| {
            let result = NodeInvokeResult { node_id: p.node_id.clone(), command: p.command.clone(), payload };
            serde_json::to_value(result).expect("invoke results serialise")
        });
        completer.complete(outcome.clone());
        outcome
    }
}
