//! Commands the computer sends to the device (`screen.snapshot` and the app's own), answered by the app.

use crate::NodeKitError;
use futures_util::future::BoxFuture;
use node_kit::protocol::{ErrorCode, ErrorShape, ImageFormat, NodeCommandRequest, SnapshotResult};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ImageKind {
    Png,
    Jpeg,
}

/// What a command returns.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum CommandReply {
    /// A picture of the screen (the answer to `screen.snapshot`): the encoded image and its size.
    Snapshot { kind: ImageKind, width: u32, height: u32, data: Vec<u8> },
    /// Any other answer, as JSON.
    Json { json: String },
}

/// Answers the computer's commands. `params_json` is the command's params. Throw
/// `NodeKitException.Remote` with a protocol code (`SCREEN_UNAVAILABLE`, `INVALID_REQUEST`, …) to refuse.
/// Called on a thread of its own, so it may block (take the picture) without holding up the connection.
#[uniffi::export(with_foreign)]
pub trait CommandHandler: Send + Sync {
    fn handle(&self, command: String, params_json: String) -> Result<CommandReply, NodeKitError>;
}

/// node-kit's handler trait over the app's.
pub(crate) struct ForeignCommands(pub Arc<dyn CommandHandler>);

impl node_kit::CommandHandler for ForeignCommands {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        let handler = self.0.clone();
        Box::pin(async move {
            let params = request.params.to_string();
            let reply = tokio::task::spawn_blocking(move || handler.handle(request.command, params))
                .await
                .map_err(|_| ErrorShape::new(ErrorCode::ScreenUnavailable, "the app's command handler failed"))?;
            match reply {
                Ok(CommandReply::Snapshot { kind, width, height, data }) => {
                    let format = match kind {
                        ImageKind::Png => ImageFormat::Png,
                        ImageKind::Jpeg => ImageFormat::Jpeg,
                    };
                    let shot = SnapshotResult { format, width, height, base64: data_encoding::BASE64.encode(&data) };
                    Ok(serde_json::to_value(shot).expect("snapshots serialise"))
                }
                Ok(CommandReply::Json { json }) => serde_json::from_str(&json)
                    .map_err(|e| ErrorShape::new(ErrorCode::InvalidRequest, format!("the app answered bad JSON: {e}"))),
                Err(NodeKitError::Remote { code, detail, retryable }) => {
                    let code = serde_json::from_value(Value::String(code)).unwrap_or(ErrorCode::InvalidRequest);
                    Err(ErrorShape { retryable, ..ErrorShape::new(code, detail) })
                }
                Err(other) => Err(ErrorShape::new(ErrorCode::ScreenUnavailable, other.to_string())),
            }
        })
    }
}
