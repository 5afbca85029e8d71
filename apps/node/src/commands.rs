//! The node's answers to `node.invoke`: the protocol's `screen.*` commands go to the Canvas; anything else
//! is `UNKNOWN_COMMAND` listing what the node offers.

use crate::canvas::Canvas;
use futures_util::future::BoxFuture;
use node_kit::CommandHandler;
use node_kit::protocol::{ErrorCode, ErrorShape, NodeAdvert, NodeCommand, NodeCommandRequest, SCREEN_CAPABILITY};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct NodeCommands {
    canvas: Arc<Canvas>,
}

impl NodeCommands {
    pub fn new(canvas: Arc<Canvas>) -> NodeCommands {
        NodeCommands { canvas }
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
        Box::pin(async move {
            match NodeCommand::parse(&request.command, &request.params) {
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
