//! The error object every failure is reported with: `{code, message, retryable, retryAfterMs?, details?}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Stable error codes. Clients branch on these, never on `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame or its params do not match the protocol.
    InvalidRequest,
    /// The method name is not one the server knows; `details.supported` lists the known ones.
    UnknownMethod,
    /// The node does not offer the command; `details.supported` lists what it offers.
    UnknownCommand,
    /// No protocol version in common; `details` carries the server's range.
    UnsupportedProtocol,
    /// The caller's key is not paired with the bridge.
    NotPaired,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Authenticated, but the ACL does not allow this call.
    Forbidden,
    /// Too many calls; `retryAfterMs` says when to try again.
    RateLimited,
    /// The target node is not connected (or went away during the call).
    NodeNotConnected,
    /// The node is in the background and cannot use its screen now.
    NodeBackgroundUnavailable,
    /// The call did not finish within its time limit.
    Timeout,
    /// The frame exceeds the size limit.
    PayloadTooLarge,
    /// The agent (the `claude` CLI) cannot be started; `message` says what to install.
    AgentUnavailable,
    /// The agent ran but the turn failed (API error, crash); `details` says how.
    AgentError,
    /// The owner rejected the pairing request.
    PairingRejected,
    /// The pairing request expired (5 minutes) or was replaced by a newer attempt from the same key.
    PairingExpired,
    /// The pairing code is not one this computer issued (mistyped, or from another computer).
    PairingCodeInvalid,
    /// The pairing code was already used; codes are single-use. Issue a new one with `lanyard pair`.
    PairingCodeUsed,
    /// Door 3: the PIN exchange failed (a wrong PIN, or someone in the middle); `details.triesLeft` says
    /// how many tries the code has left.
    PairingPinWrong,
    /// A sealed body of the HTTP contract was refused: `details.reason` is `replayed` (its counter was
    /// already used) or `unreadable` (it does not open under the pairing's key).
    SealRejected,
    /// The bridge cannot reach the gateway right now; retry after `retryAfterMs`.
    GatewayUnavailable,
    /// The node's screen cannot be used now (its browser is missing or crashed); `message` says what to fix.
    ScreenUnavailable,
    /// A script the node ran threw; `details` carries the exception text and its line and column.
    ScriptError,
    /// The node's settings do not allow this URL; `details.setting` names the setting that would.
    UrlNotAllowed,
    /// No run, prompt or conversation by that id that the caller may see (it never existed, belongs to
    /// someone else's conversation, or has left the gateway's bounded memory).
    NotFound,
    /// The prompt was already answered, timed out or withdrawn; `details.resolution` says which.
    PromptClosed,
    /// A server-side fault that is not the caller's doing.
    Internal,
    /// A code this build does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::UnknownMethod => "UNKNOWN_METHOD",
            ErrorCode::UnknownCommand => "UNKNOWN_COMMAND",
            ErrorCode::UnsupportedProtocol => "UNSUPPORTED_PROTOCOL",
            ErrorCode::NotPaired => "NOT_PAIRED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::NodeNotConnected => "NODE_NOT_CONNECTED",
            ErrorCode::NodeBackgroundUnavailable => "NODE_BACKGROUND_UNAVAILABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::AgentUnavailable => "AGENT_UNAVAILABLE",
            ErrorCode::AgentError => "AGENT_ERROR",
            ErrorCode::PairingRejected => "PAIRING_REJECTED",
            ErrorCode::PairingExpired => "PAIRING_EXPIRED",
            ErrorCode::PairingCodeInvalid => "PAIRING_CODE_INVALID",
            ErrorCode::PairingCodeUsed => "PAIRING_CODE_USED",
            ErrorCode::PairingPinWrong => "PAIRING_PIN_WRONG",
            ErrorCode::SealRejected => "SEAL_REJECTED",
            ErrorCode::GatewayUnavailable => "GATEWAY_UNAVAILABLE",
            ErrorCode::ScreenUnavailable => "SCREEN_UNAVAILABLE",
            ErrorCode::ScriptError => "SCRIPT_ERROR",
            ErrorCode::UrlNotAllowed => "URL_NOT_ALLOWED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::PromptClosed => "PROMPT_CLOSED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A structured error as carried by `res` and `error` frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorShape {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorShape {
    /// A non-retryable error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorShape { code, message: message.into(), retryable: false, retry_after_ms: None, details: None }
    }

    /// A retryable error; `retry_after_ms` is a hint, not a promise.
    pub fn retryable(code: ErrorCode, message: impl Into<String>, retry_after_ms: Option<u64>) -> Self {
        ErrorShape { retryable: true, retry_after_ms, ..ErrorShape::new(code, message) }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        ErrorShape::new(ErrorCode::InvalidRequest, message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl fmt::Display for ErrorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(ms) = self.retry_after_ms {
            write!(f, " (retry after {ms} ms)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorShape {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_round_trip_as_screaming_snake_case() {
        for code in [
            ErrorCode::NodeBackgroundUnavailable,
            ErrorCode::PayloadTooLarge,
            ErrorCode::AgentUnavailable,
            ErrorCode::ScreenUnavailable,
            ErrorCode::ScriptError,
            ErrorCode::UrlNotAllowed,
            ErrorCode::NotFound,
            ErrorCode::PromptClosed,
        ] {
            let text = serde_json::to_string(&code).unwrap();
            assert_eq!(text, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&text).unwrap(), code);
        }
    }

    #[test]
    fn unknown_codes_from_newer_peers_still_parse() {
        let e: ErrorShape = serde_json::from_value(json!({
            "code": "SOMETHING_NEW", "message": "m", "retryable": false
        }))
        .unwrap();
        assert_eq!(e.code, ErrorCode::Unknown);
    }

    #[test]
    fn optional_fields_are_omitted() {
        let v = serde_json::to_value(ErrorShape::new(ErrorCode::Timeout, "slow")).unwrap();
        assert_eq!(v, json!({"code": "TIMEOUT", "message": "slow", "retryable": false}));
    }
}
