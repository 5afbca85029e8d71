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
