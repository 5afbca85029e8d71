//! The agent's tools: an MCP server (rmcp) whose tools are the node commands. Each call becomes a
//! `node.invoke` through [`Invoker`], so the agent meets every check the owner meets (the bridge's ACL,
//! capabilities, background state, rate and size limits), and node errors come back to the model as tool
//! errors carrying their code and `retryAfterMs`.

use crate::invoke::{Invoker, checked};
use data_encoding::BASE64;
use node_kit::client::random_id;
use node_kit::protocol::{ErrorCode, ErrorShape, ImageFormat, NodeInvokeParams, SnapshotResult, command};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, JsonObject, MetaObject, RequestMetaObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Tool names as claude lists them, for `--allowedTools`.
pub const TOOL_NAMES: &[&str] = &[
    "nodes_list",
    "screen_show",
    "screen_hide",
    "screen_navigate",
    "screen_eval",
    "screen_snapshot",
    "screen_set_mode",
];

#[derive(Clone)]
pub(crate) struct NodeTools {
    invoker: Arc<Invoker>,
    /// The node whose conversation this is: "this screen" when a call names no node.
    origin: Option<String>,
    tool_router: ToolRouter<NodeTools>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct Target {
    /// The node to act on (its ID from nodes_list). Leave it out to mean the node this conversation came
    /// from (the only one it may use), or the only connected node with a screen.
    node_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct NavigateArgs {
    /// See nodes_list; optional as in screen_show.
    node_id: Option<String>,
    /// An https URL the node's web allow-list admits (in web mode).
    url: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct EvalArgs {
    /// See nodes_list; optional as in screen_show.
    node_id: Option<String>,
    /// JavaScript to evaluate in the page; the value of its last expression comes back as JSON (promises
    /// are awaited).
    java_script: String,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum SnapshotFormat {
    Png,
    Jpeg,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct SnapshotArgs {
    /// See nodes_list; optional as in screen_show.
    node_id: Option<String>,
    /// Scale the image down to at most this many pixels wide.
    max_width: Option<u32>,
    /// JPEG quality, 1-100.
    quality: Option<u8>,
    /// png (default) or jpeg.
    format: Option<SnapshotFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// A blank page made to draw on: a full-size <canvas id="canvas"> and a <div id="root">.
    Canvas,
    /// Web pages at https URLs the node's allow-list admits.
    Web,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ModeArgs {
    /// See nodes_list; optional as in screen_show.
    node_id: Option<String>,
    mode: Mode,
}

#[tool_router]
impl NodeTools {
    pub(crate) fn new(invoker: Arc<Invoker>, origin: Option<String>) -> NodeTools {
        let mut tool_router = Self::tool_router();
        // claude (since 2.1.332) defers MCP tools behind its ToolSearch unless a tool says it must always
        // load: a model that never searches would not know the screen exists.
        let always_load = MetaObject(JsonObject::from_iter([("anthropic/alwaysLoad".to_string(), Value::Bool(true))]));
        for route in tool_router.map.values_mut() {
            route.attr.meta = Some(always_load.clone());
        }
        NodeTools { invoker, origin, tool_router }
    }

    #[tool(description = "List the devices (nodes) connected to this computer: ID, name, platform, what they \
        offer, whether they are in the foreground, and which one this conversation came from.")]
    async fn nodes_list(&self) -> CallToolResult {
        let nodes: Vec<Value> = self
            .invoker
            .nodes
            .list()
            .into_iter()
            // A node's conversation sees (and drives) that node only.
            .filter(|n| self.origin.as_ref().is_none_or(|origin| *origin == n.node_id))
            .map(|n| {
                json!({
                    "nodeId": n.node_id,
                    "name": n.display_name,
                    "platform": n.platform,
                    "caps": n.caps,
                    "commands": n.commands,
                    "state": n.state,
                    "voice": n.voice,
                    "thisConversation": self.origin.as_deref() == Some(n.node_id.as_str()),
                })
            })
            .collect();
        CallToolResult::success(vec![ContentBlock::text(json!({ "nodes": nodes }).to_string())])
    }

    #[tool(description = "Show the node's screen (bring its Canvas to the front).")]
    async fn screen_show(&self, Parameters(args): Parameters<Target>, meta: RequestMetaObject) -> CallToolResult {
        self.run(args.node_id, command::SCREEN_SHOW, json!({}), &meta).await
    }

    #[tool(description = "Hide the node's screen.")]
    async fn screen_hide(&self, Parameters(args): Parameters<Target>, meta: RequestMetaObject) -> CallToolResult {
        self.run(args.node_id, command::SCREEN_HIDE, json!({}), &meta).await
    }

    #[tool(description = "Open a URL on the node's screen (web mode; the node's allow-list decides which hosts).")]
    async fn screen_navigate(
        &self,
        Parameters(args): Parameters<NavigateArgs>,
        meta: RequestMetaObject,
    ) -> CallToolResult {
        self.run(args.node_id, command::SCREEN_NAVIGATE, json!({ "url": args.url }), &meta).await
    }

    #[tool(description = "Evaluate JavaScript in the page on the node's screen and return the result as JSON. \
        In canvas mode, draw on document.getElementById('canvas') or build DOM under #root.")]
    async fn screen_eval(&self, Parameters(args): Parameters<EvalArgs>, meta: RequestMetaObject) -> CallToolResult {
        self.run(args.node_id, command::SCREEN_EVAL, json!({ "javaScript": args.java_script }), &meta).await
    }

    #[tool(description = "Take a picture of what the node's screen shows now; the image comes back to you.")]
    async fn screen_snapshot(
        &self,
        Parameters(args): Parameters<SnapshotArgs>,
        meta: RequestMetaObject,
    ) -> CallToolResult {
        let mut params = serde_json::Map::new();
        if let Some(width) = args.max_width {
            params.insert("maxWidth".into(), width.into());
        }
        if let Some(quality) = args.quality {
            params.insert("quality".into(), quality.into());
        }
        if let Some(format) = args.format {
            params.insert("format".into(), serde_json::to_value(format_of(format)).expect("formats serialise"));
        }
        self.run(args.node_id, command::SCREEN_SNAPSHOT, Value::Object(params), &meta).await
    }

    #[tool(description = "Switch the node's screen between canvas mode (a blank page to draw on) and web mode.")]
    async fn screen_set_mode(&self, Parameters(args): Parameters<ModeArgs>, meta: RequestMetaObject) -> CallToolResult {
        let mode = match args.mode {
            Mode::Canvas => "canvas",
            Mode::Web => "web",
        };
        self.run(args.node_id, command::SCREEN_SET_MODE, json!({ "mode": mode }), &meta).await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NodeTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lanyard", env!("CARGO_PKG_VERSION")))
    }
}

fn format_of(format: SnapshotFormat) -> ImageFormat {
    match format {
        SnapshotFormat::Png => ImageFormat::Png,
        SnapshotFormat::Jpeg => ImageFormat::Jpeg,
    }
}

impl NodeTools {
    /// Sends `command` to the chosen node as a `node.invoke` keyed by claude's tool-use id (so a repeated
    /// delivery of the same call runs once) and turns the answer into a tool result.
    async fn run(
        &self,
        node_id: Option<String>,
        command: &str,
        params: Value,
        meta: &RequestMetaObject,
    ) -> CallToolResult {
        let outcome = async {
            let node_id = self.target(node_id, command)?;
            let key = meta.get("claudecode/toolUseId").and_then(Value::as_str).map_or_else(random_id, str::to_string);
            let params = checked(NodeInvokeParams {
                node_id,
                command: command.to_string(),
                params,
                idempotency_key: format!("tool:{key}"),
                timeout_ms: None,
            })?;
            self.invoker.invoke(params).await
        }
        .await;
        match outcome {
            Ok(mut result) => {
                let payload = result["payload"].take();
                if command == command::SCREEN_SNAPSHOT {
                    snapshot_result(result["nodeId"].as_str().unwrap_or_default(), payload)
                } else {
                    CallToolResult::success(vec![ContentBlock::text(payload.to_string())])
                }
            }
            Err(error) => tool_error(&error),
        }
    }

    /// The node a call acts on. A node's conversation acts on that node only: a phone's chat may not drive
    /// the wall display. The owner's conversations act on the node named, else on the only connected node
    /// that offers the command.
    fn target(&self, named: Option<String>, command: &str) -> Result<String, ErrorShape> {
        if let Some(origin) = &self.origin {
            return match named.map(|n| crate::nodes::canonical(&n)) {
                Some(other) if other != *origin => Err(ErrorShape::new(
                    ErrorCode::Forbidden,
                    format!("this conversation came from node {origin}; it may use that node's screen only"),
                )
                .with_details(json!({ "nodeId": other }))),
                _ => Ok(origin.clone()),
            };
        }
        if let Some(node) = named {
            return Ok(node);
        }
        let offering: Vec<String> = self
            .invoker
            .nodes
            .list()
            .into_iter()
            .filter(|n| n.commands.iter().any(|c| c == command))
            .map(|n| n.node_id)
            .collect();
        match offering.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ErrorShape::retryable(
                ErrorCode::NodeNotConnected,
                format!("no connected node offers {command}"),
                Some(1000),
            )),
            _ => Err(ErrorShape::invalid_request(format!(
                "{} connected nodes offer {command}; name one with nodeId (see nodes_list)",
                offering.len()
            ))
            .with_details(json!({ "nodeIds": offering }))),
        }
    }
}

/// A snapshot as the model sees it: a line about it, then the image itself.
fn snapshot_result(node_id: &str, payload: Value) -> CallToolResult {
    let shot: SnapshotResult = match serde_json::from_value(payload) {
        Ok(shot) => shot,
        Err(e) => {
            return tool_error(&ErrorShape::new(
                ErrorCode::Internal,
                format!("the node sent an unreadable snapshot: {e}"),
            ));
        }
    };
    if BASE64.decode(shot.base64.as_bytes()).is_err() {
        return tool_error(&ErrorShape::new(ErrorCode::Internal, "the node sent a snapshot that is not base64"));
    }
    let mime = match shot.format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
    };
    let about = format!("Snapshot of node {node_id}: {}x{} {mime}", shot.width, shot.height);
    CallToolResult::success(vec![ContentBlock::text(about), ContentBlock::image(shot.base64, mime)])
}

/// A failed call as the model sees it: the error object, code and `retryAfterMs` included.
fn tool_error(error: &ErrorShape) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(json!({ "error": error }).to_string())])
}
