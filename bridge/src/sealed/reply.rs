//! What goes back on an exchange: a head (`{"status","contentType"}`, `docs/relay.md`), then the body.
//! Errors before a chat body is opened are plain JSON `{"error","message"}`; everything after is sealed
//! ([`SealedReply`]), so the relay sees only a status and sealed bytes.

use node_kit::protocol::{ErrorCode, ErrorShape};
use node_kit::seal::{CommandError, Direction, SealKey, SealedBody};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub(crate) struct Reply {
    response: mpsc::Sender<Vec<u8>>,
}

/// The HTTP status and the `error` name an error is answered with.
pub(crate) fn status_of(error: &ErrorShape) -> (u16, String) {
    let status = match error.code {
        ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge => 400,
        ErrorCode::Unauthorized | ErrorCode::NotPaired => 401,
        ErrorCode::Forbidden | ErrorCode::PairingPinWrong => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::SealRejected | ErrorCode::PromptClosed => 409,
        ErrorCode::PairingCodeInvalid | ErrorCode::PairingCodeUsed | ErrorCode::PairingExpired => 410,
        ErrorCode::RateLimited => 429,
        ErrorCode::AgentError => 502,
        ErrorCode::GatewayUnavailable | ErrorCode::AgentUnavailable => 503,
        ErrorCode::Timeout => 504,
        _ => 500,
    };
    // A refused seal is named by its reason (`replayed`, `unreadable`), as the contract lists them.
    let reason = error.details.as_ref().and_then(|d| d.get("reason")).and_then(Value::as_str);
    let name = match (error.code, reason) {
        (ErrorCode::SealRejected, Some(reason)) => reason.to_string(),
        (code, _) => code.as_str().to_ascii_lowercase(),
    };
    (status, name)
}

impl Reply {
    pub(crate) fn new(response: mpsc::Sender<Vec<u8>>) -> Reply {
        Reply { response }
    }

    /// Sends bytes of the answer; false once the exchange is gone.
    pub(crate) async fn send(&self, bytes: Vec<u8>) -> bool {
        self.response.send(bytes).await.is_ok()
    }

    pub(crate) async fn head(&self, status: u16, content_type: &str) -> bool {
        let head = json!({ "status": status, "contentType": content_type });
        self.send(head.to_string().into_bytes()).await
    }

    /// A whole JSON answer.
    pub(crate) async fn json(self, status: u16, body: &impl Serialize) {
        if self.head(status, "application/json").await {
            self.send(serde_json::to_vec(body).expect("answers serialise")).await;
        }
    }

    /// A plain JSON error.
    pub(crate) async fn refuse(self, status: u16, error: &str, message: &str) {
        self.json(status, &json!({ "error": error, "message": message })).await
    }

    /// A plain JSON error for a refusal of the bridge or the gateway, with its details.
    pub(crate) async fn error(self, error: &ErrorShape) {
        let (status, name) = status_of(error);
        let mut body = json!({ "error": name, "message": error.message });
        if let Some(details) = &error.details {
            body["details"] = details.clone();
        }
        self.json(status, &body).await
    }

    /// `200` with the value, or the error.
    pub(crate) async fn answer(self, outcome: Result<Value, ErrorShape>) {
        match outcome {
            Ok(value) => self.json(200, &value).await,
            Err(e) => self.error(&e).await,
        }
    }
}

/// The answer to a chat body numbered `counter`, sealed frame by frame: frame `index` is sealed as
/// (computer, `counter`, `index`), so the client reads them in order and notices one missing.
pub(crate) struct SealedReply {
    reply: Reply,
    key: SealKey,
    counter: u64,
    next_index: u64,
}

impl SealedReply {
    pub(crate) fn new(reply: Reply, key: SealKey, counter: u64) -> SealedReply {
        SealedReply { reply, key, counter, next_index: 0 }
    }

    fn seal(&mut self, value: &impl Serialize) -> String {
        let sealed = self.key.seal_json(Direction::ToClient, self.counter, self.next_index, value);
        self.next_index += 1;
        sealed
    }

    /// A whole answer, sealed as frame 0: the status in clear, the body `{"sealed"}`.
    async fn sealed(mut self, status: u16, value: &impl Serialize) {
        let sealed = self.seal(value);
        self.reply.json(status, &SealedBody { counter: None, sealed }).await
    }

    /// `200` with one value.
    pub(crate) async fn value(self, value: &impl Serialize) {
        self.sealed(200, value).await
    }

    /// A sealed error.
    pub(crate) async fn error(self, status: u16, error: &CommandError) {
        self.sealed(status, error).await
    }

    /// A sealed error for a refusal of the bridge or the gateway.
    pub(crate) async fn refusal(self, error: &ErrorShape) {
        let (status, name) = status_of(error);
        let body = CommandError {
            error: name,
            message: Some(error.message.clone()),
            details: error.details.clone(),
            retry_after_ms: error.retry_after_ms,
            ..CommandError::default()
        };
        self.error(status, &body).await
    }

    /// Starts the Server-Sent Events answer.
    pub(crate) async fn start_events(&self) -> bool {
        self.reply.head(200, "text/event-stream").await
    }

    /// One sealed SSE event; false once the client is gone.
    pub(crate) async fn event(&mut self, frame: &impl Serialize) -> bool {
        let sealed = self.seal(frame);
        self.reply.send(format!("data: {sealed}\n\n").into_bytes()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_statuses_and_names() {
        let replayed = ErrorShape::new(ErrorCode::SealRejected, "again").with_details(json!({ "reason": "replayed" }));
        assert_eq!(status_of(&replayed), (409, "replayed".to_string()));
        let wrong = ErrorShape::new(ErrorCode::PairingPinWrong, "no");
        assert_eq!(status_of(&wrong), (403, "pairing_pin_wrong".to_string()));
        assert_eq!(status_of(&ErrorShape::invalid_request("x")).0, 400);
        assert_eq!(status_of(&ErrorShape::new(ErrorCode::PairingCodeInvalid, "x")).0, 410);
        assert_eq!(status_of(&ErrorShape::new(ErrorCode::Internal, "x")), (500, "internal".to_string()));
        assert_eq!(status_of(&ErrorShape::new(ErrorCode::PromptClosed, "x")), (409, "prompt_closed".to_string()));
    }
}
