//! The registry of connected nodes and the `node.invoke` requests waiting for their answers.

use crate::now_ms;
use node_kit::outbound::Outbound;
use node_kit::protocol::{
    AppState, ClientInfo, ErrorCode, ErrorFrame, ErrorShape, Frame, NodeAdvert, NodeCommandRequest, NodeSummary,
    PairRenamed, PairedNode, REPLACED_BY_NEWER_CONNECTION, Request, Response, event, method,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub(crate) struct NodeRegistry {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, ConnectedNode>,
    pending: HashMap<String, PendingInvoke>,
    next_invoke: u64,
}

struct ConnectedNode {
    conn_id: u64,
    summary: NodeSummary,
    outbound: Outbound,
}

struct PendingInvoke {
    /// Only the connection the request went to may answer it.
    conn_id: u64,
    reply: oneshot::Sender<Result<Value, ErrorShape>>,
}

fn not_connected(node_id: &str, why: &str) -> ErrorShape {
    ErrorShape::retryable(ErrorCode::NodeNotConnected, format!("node {node_id} {why}"), Some(1000))
        .with_details(json!({ "nodeId": node_id }))
}

impl NodeRegistry {
    pub(crate) fn new() -> Self {
        NodeRegistry { inner: Mutex::new(Inner::default()) }
    }

    /// Registers a node connection. A node that reconnects replaces its old connection, which is closed.
    pub(crate) fn register(&self, conn_id: u64, summary: NodeSummary, outbound: Outbound) {
        let node_id = summary.node_id.clone();
        let old =
            self.inner.lock().expect("nodes lock").nodes.insert(node_id, ConnectedNode { conn_id, summary, outbound });
        if let Some(old) = old {
            // Gracefully, with the reason: the bridge tells a replaced link from a lost one.
            old.outbound.finish(CloseCode::Policy, REPLACED_BY_NEWER_CONNECTION);
        }
    }

    /// Removes the node if this connection still holds it, and fails the invokes that went to it.
    pub(crate) fn unregister(&self, conn_id: u64, node_id: &str) {
        let mut inner = self.inner.lock().expect("nodes lock");
        if inner.nodes.get(node_id).is_some_and(|n| n.conn_id == conn_id) {
            inner.nodes.remove(node_id);
        }
        // Dropping the reply senders wakes the waiting invokes with "node disconnected".
        inner.pending.retain(|_, p| p.conn_id != conn_id);
    }

    /// Closes the node's connection, telling it why first. Returns how many connections were closed.
    pub(crate) fn disconnect(&self, node_id: &str, why: ErrorShape) -> usize {
        let Some(node) = self.inner.lock().expect("nodes lock").nodes.remove(node_id) else {
            return 0;
        };
        node.outbound.send(Frame::Error(ErrorFrame { error: why }));
        node.outbound.finish(CloseCode::Policy, "pairing revoked");
        1
    }

    /// A renamed node: `node.list` shows the new name at once, and the node's connection hears it
    /// (`pair.renamed`), so the device knows what the computer calls it.
    pub(crate) fn renamed(&self, renamed: &PairRenamed) {
        let key = renamed.node_id.to_string();
        let mut inner = self.inner.lock().expect("nodes lock");
        if let Some(node) = inner.nodes.get_mut(&key) {
            node.summary.display_name = Some(renamed.name.clone());
            node.outbound.event(event::PAIR_RENAMED, serde_json::to_value(renamed).expect("payloads serialise"));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().expect("nodes lock").nodes.len()
    }

    pub(crate) fn list(&self) -> Vec<NodeSummary> {
        let mut nodes: Vec<_> =
            self.inner.lock().expect("nodes lock").nodes.values().map(|n| n.summary.clone()).collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes
    }

    /// Notes what a node's presence beacon or `voice` event said, for `node.list` and the agent's tools.
    pub(crate) fn update(&self, node_id: &str, change: impl FnOnce(&mut NodeSummary)) {
        if let Some(node) = self.inner.lock().expect("nodes lock").nodes.get_mut(node_id) {
            change(&mut node.summary);
        }
    }

    pub(crate) fn describe(&self, node_id: &str) -> Option<NodeSummary> {
        self.inner.lock().expect("nodes lock").nodes.get(node_id).map(|n| n.summary.clone())
    }

    /// Sends `command` to the node as a `node.invoke` request and waits for its answer.
    pub(crate) async fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, ErrorShape> {
        let (invoke_id, conn_id, rx) = {
            let mut inner = self.inner.lock().expect("nodes lock");
            let node = inner.nodes.get(node_id).ok_or_else(|| not_connected(node_id, "is not connected"))?;
            check_offered(&node.summary, command)?;
            let conn_id = node.conn_id;
            let outbound = node.outbound.clone();
            inner.next_invoke += 1;
            let invoke_id = format!("invoke-{}", inner.next_invoke);
            let (tx, rx) = oneshot::channel();
            inner.pending.insert(invoke_id.clone(), PendingInvoke { conn_id, reply: tx });
            let params = serde_json::to_value(NodeCommandRequest { command: command.to_string(), params })
                .expect("command requests serialise");
            let frame = Frame::Req(Request { id: invoke_id.clone(), method: method::NODE_INVOKE.to_string(), params });
            if !outbound.send(frame) {
                inner.pending.remove(&invoke_id);
                return Err(not_connected(node_id, "is not accepting commands"));
            }
            (invoke_id, conn_id, rx)
        };
        tracing::debug!(node_id, command, invoke_id, conn_id, "node.invoke sent");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(not_connected(node_id, "disconnected before answering")),
            Err(_) => {
                self.inner.lock().expect("nodes lock").pending.remove(&invoke_id);
                Err(ErrorShape::retryable(
                    ErrorCode::Timeout,
                    format!("node {node_id} did not answer {command} within {} ms", timeout.as_millis()),
                    None,
                ))
            }
        }
    }

    /// Delivers a node's answer to the invoke waiting for it. Answers to unknown ids, or from a connection
    /// the request was not sent to, are ignored.
    pub(crate) fn complete(&self, conn_id: u64, response: Response) {
        let mut inner = self.inner.lock().expect("nodes lock");
        if inner.pending.get(&response.id).is_some_and(|p| p.conn_id == conn_id) {
            let pending = inner.pending.remove(&response.id).expect("checked above");
            let _ = pending.reply.send(response.outcome);
        }
    }
}

/// A node ID as the registry keys it: a key ID in its canonical text form, however it was typed, so that
/// lookups and idempotency keys do not depend on the spelling.
pub(crate) fn canonical(node_id: &str) -> String {
    node_id.parse::<certs::KeyId>().map_or_else(|_| node_id.to_string(), |id| id.to_string())
}

/// A command must be one the node offers. Whether the node granted the capability a command needs is the
/// bridge's ACL to decide (`bridge/src/acl.rs`), on the only way commands reach a node.
fn check_offered(node: &NodeSummary, command: &str) -> Result<(), ErrorShape> {
    if !node.commands.iter().any(|c| c == command) {
        return Err(ErrorShape::new(
            ErrorCode::UnknownCommand,
            format!("node {} does not offer {command}", node.node_id),
        )
        .with_details(json!({ "supported": node.commands })));
    }
    Ok(())
}

/// A summary for a node that just connected: its ID and name from its pairing record, the rest from what
/// it sent.
pub(crate) fn summary(info: &ClientInfo, record: &PairedNode, advert: NodeAdvert) -> NodeSummary {
    NodeSummary {
        node_id: record.node_id.to_string(),
        display_name: Some(record.device.name.clone()),
        platform: info.platform.clone(),
        version: info.version.clone(),
        caps: advert.caps,
        commands: advert.commands,
        connected_at_ms: now_ms(),
        state: AppState::Foreground,
        voice: None,
        path: info.path,
    }
}
