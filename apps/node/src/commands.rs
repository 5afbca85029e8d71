//! The node's answers to `node.invoke`: the protocol's `screen.*` commands go to the Canvas; anything else
//! is `UNKNOWN_COMMAND` listing what the node offers.

use crate::canvas::Canvas;
use futures_util::future::BoxFuture;
use node_kit::CommandHandler;
use node_kit::protocol::{ErrorCode, ErrorShape, NodeAdvert, NodeCommand, NodeCommandRequest, SCREEN_CAPABILITY};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long a caller is told to wait while the node is in the background.
const BACKGROUND_RETRY_MS: u64 = 5000;

pub struct NodeCommands {
    canvas: Arc<Canvas>,
    /// Set while the app is in the background. The bridge answers screen commands itself then; this is
    /// for the race around a switch, and for bridges that do not.
    background: Arc<AtomicBool>,
}

impl NodeCommands {
    pub fn new(canvas: Arc<Canvas>, background: Arc<AtomicBool>) -> NodeCommands {
        NodeCommands { canvas, background }
    }

    /// What the node offers: the screen capability and every `screen.*` command.
    pub fn advert() -> NodeAdvert {
        NodeAdvert {
            caps: vec![SCREEN_CAPABILITY.to_string()],
            commands: NodeCommand::ALL.iter().map(|c| c.to_string()).collect(),
        }
    }
}

impl CommandHandler for NodeCommands {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        let canvas = self.canvas.clone();
        let background = self.background.load(Ordering::Relaxed);
        Box::pin(async move {
            match NodeCommand::parse(&request.command, &request.params) {
                Ok(Some(command)) if background => Err(ErrorShape::retryable(
                    ErrorCode::NodeBackgroundUnavailable,
                    format!("the node is in the background; {} needs it in the foreground", command.name()),
                    Some(BACKGROUND_RETRY_MS),
                )),
                Ok(Some(command)) => canvas.run(command).await,
                Ok(None) => Err(ErrorShape::new(
                    ErrorCode::UnknownCommand,
                    format!("this node does not offer {}", request.command),
                )
                .with_details(json!({ "supported": NodeCommand::ALL }))),
                Err(reason) => Err(ErrorShape::invalid_request(reason)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow::WebAllow;
    use crate::canvas::{CanvasLimits, CanvasOptions};

    /// A handler whose Canvas has no browser started (none of these answers needs one).
    async fn handler(background: bool) -> NodeCommands {
        let options = CanvasOptions { browser: Some("/nonexistent".into()), headed: false, width: 64, height: 64 };
        let limits = CanvasLimits { web_allow: WebAllow::new(Vec::new), max_snapshot_bytes: 1024 };
        let canvas = Arc::new(Canvas::new(options, limits).await.unwrap());
        NodeCommands::new(canvas, Arc::new(AtomicBool::new(background)))
    }

    fn request(command: &str, params: Value) -> NodeCommandRequest {
        NodeCommandRequest { command: command.into(), params }
    }

    #[tokio::test]
    async fn in_the_background_screen_commands_are_refused_by_the_node_itself() {
        let e = handler(true).await.handle(request("screen.snapshot", json!({}))).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::NodeBackgroundUnavailable);
        assert_eq!(e.retry_after_ms, Some(BACKGROUND_RETRY_MS));
        // In the foreground the same command reaches the Canvas (here: no browser to run it).
        let e = handler(false).await.handle(request("screen.snapshot", json!({}))).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ScreenUnavailable);
    }

    #[tokio::test]
    async fn unknown_commands_and_bad_params_are_refused_before_the_canvas() {
        let commands = handler(false).await;
        let e = commands.handle(request("lamp.on", json!({}))).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownCommand);
        assert_eq!(e.details.unwrap()["supported"], json!(NodeCommand::ALL));
        let e = commands.handle(request("screen.navigate", json!({ "link": "x" }))).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }
}
