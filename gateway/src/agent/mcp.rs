//! The agent's MCP server, reached in-band: claude sends each MCP message to its host as an `mcp_message`
//! control request on the stdout the gateway already reads, and takes the answer as a `control_response` on
//! stdin (CLAUDE-CLI.md §6). No extra process and no port: only the claude process the gateway started can
//! call the tools, and the session (and node) it serves is known without any token.
//!
//! The MCP protocol itself is rmcp's: the messages pass, one JSON line each, through an in-memory pipe to an
//! rmcp server running [`NodeTools`]; this module only pairs its answers with claude's request ids.

use crate::tools::NodeTools;
use rmcp::ServiceExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};
use tokio::sync::mpsc;

/// The name claude knows the server by: its tools are `mcp__lanyard__<tool>`.
pub const SERVER_NAME: &str = "lanyard";
/// Bytes buffered in each direction of the pipe to the rmcp server.
const PIPE_BYTES: usize = 64 * 1024;
/// Longest message accepted from the rmcp server (a snapshot result is base64 inside it).
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Answers waiting to be written to claude.
const ANSWER_QUEUE: usize = 64;

/// The `initialize` control request that declares the in-band server; sent before the first user line.
pub(crate) fn initialize_request() -> Value {
    json!({
        "type": "control_request",
        "request_id": "lanyard-initialize",
        "request": { "subtype": "initialize", "sdkMcpServers": [SERVER_NAME] },
    })
}

/// A successful `control_response` to claude's request `request_id`.
pub(crate) fn control_success(request_id: &str, response: Value) -> Value {
    json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": request_id, "response": response },
    })
}

/// A failed `control_response`: claude reports `error` to the model and goes on.
pub(crate) fn control_error(request_id: &str, error: &str) -> Value {
    json!({
        "type": "control_response",
        "response": { "subtype": "error", "request_id": request_id, "error": error },
    })
}

/// One claude process's link to its own rmcp server.
pub(crate) struct McpChannel {
    to_server: WriteHalf<DuplexStream>,
    /// JSON-RPC request id (as JSON text) → claude's control request id.
    waiting: Arc<Mutex<HashMap<String, String>>>,
    /// `control_response` lines ready for claude's stdin.
    answers: mpsc::Receiver<Value>,
    answers_tx: mpsc::Sender<Value>,
}

impl McpChannel {
    /// Starts an rmcp server for `tools`; it ends when the channel is dropped (with its claude process).
    pub(crate) fn start(tools: NodeTools) -> McpChannel {
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let (server_read, server_write) = tokio::io::split(theirs);
        tokio::spawn(async move {
            match tools.serve((server_read, server_write)).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => tracing::warn!(error = %e, "the agent's MCP session did not start"),
            }
        });
        let (from_server, to_server) = tokio::io::split(ours);
        let waiting = Arc::new(Mutex::new(HashMap::<String, String>::new()));
        let (answers_tx, answers) = mpsc::channel(ANSWER_QUEUE);
        let (pending, tx) = (waiting.clone(), answers_tx.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(from_server).lines();
            loop {
                // This task holds half of our end of the pipe: it must end with the channel, or that end
                // would never close, and the rmcp server waiting for it (and this task waiting for the
                // server) would outlive every claude process (the soak saw the gateway grow by each).
                let line = tokio::select! {
                    line = lines.next_line() => line,
                    () = tx.closed() => return,
                };
                let Ok(Some(line)) = line else { return };
                if line.len() > MAX_LINE_BYTES {
                    tracing::warn!(bytes = line.len(), "dropping an oversized MCP answer");
                    continue;
                }
                let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
                // Only answers to claude's requests go back; the server sends nothing else we need.
                let Some(id) = message.get("id").filter(|_| message.get("method").is_none()) else { continue };
                let request_id = pending.lock().expect("mcp lock").remove(&id.to_string());
                if let Some(request_id) = request_id {
                    let answer = control_success(&request_id, json!({ "mcp_response": message }));
                    if tx.send(answer).await.is_err() {
                        return;
                    }
                }
            }
        });
        McpChannel { to_server, waiting, answers, answers_tx }
    }

    /// Hands claude's `mcp_message` request (`request` is its `request` object) to the server. The answer
    /// comes later from [`McpChannel::next_answer`]; a notification is acknowledged at once, as claude expects.
    pub(crate) async fn forward(&mut self, request_id: &str, request: &Value) {
        let server = request.get("server_name").and_then(Value::as_str).unwrap_or_default();
        let Some(message) = request.get("message").filter(|_| server == SERVER_NAME) else {
            let _ = self.answers_tx.send(control_error(request_id, &format!("no MCP server named {server:?}"))).await;
            return;
        };
        match message.get("id") {
            Some(id) => {
                self.waiting.lock().expect("mcp lock").insert(id.to_string(), request_id.to_string());
            }
            None => {
                let ack = json!({ "mcp_response": { "jsonrpc": "2.0", "result": {}, "id": 0 } });
                let _ = self.answers_tx.send(control_success(request_id, ack)).await;
            }
        }
        let mut line = message.to_string();
        line.push('\n');
        if self.to_server.write_all(line.as_bytes()).await.is_err() {
            self.waiting.lock().expect("mcp lock").retain(|_, r| r != request_id);
            let _ = self.answers_tx.send(control_error(request_id, "the gateway's MCP server stopped")).await;
        }
    }

    /// The next `control_response` to write to claude.
    pub(crate) async fn next_answer(&mut self) -> Option<Value> {
        self.answers.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::IdempotencyCache;
    use crate::invoke::Invoker;
    use crate::nodes::NodeRegistry;
    use std::time::Duration;

    /// The rmcp server and the task reading it end when the channel goes (with its claude process): each
    /// claude process the gateway ever started kept both, and its tools, before.
    #[tokio::test]
    async fn the_server_ends_with_its_channel() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 8);
        let invoker = Arc::new(Invoker::new(Arc::new(NodeRegistry::new()), cache));
        let mut channel = McpChannel::start(NodeTools::new(invoker.clone(), None));
        let initialize = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "claude-code", "version": "2" } } });
        channel.forward("init-1", &json!({ "server_name": SERVER_NAME, "message": initialize })).await;
        let answer = tokio::time::timeout(Duration::from_secs(10), channel.next_answer()).await.unwrap().unwrap();
        assert_eq!(answer["response"]["request_id"], "init-1", "{answer}");
        assert!(Arc::strong_count(&invoker) > 1, "the running server holds the tools");

        drop(channel);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&invoker) > 1 {
            assert!(tokio::time::Instant::now() < deadline, "the MCP server outlived its channel");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
