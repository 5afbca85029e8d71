//! Web Push (RFC 8030, 8291, 8292): a paired device gives the computer its browser's push subscription,
//! and the computer pushes a small encrypted notice when one of the device's runs needs it or ends.

use serde::{Deserialize, Serialize};

/// Payload of `push.key`: the computer's VAPID public key, which the browser's `pushManager.subscribe`
/// takes as `applicationServerKey`, and whether the calling device has a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushKey {
    /// base64url (no padding) of the 65-byte uncompressed P-256 point.
    pub vapid_public_key: String,
    pub subscribed: bool,
}

/// Params of `push.subscribe`: the browser's `PushSubscription.toJSON()` (other fields are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushSubscribeParams {
    /// The push service's URL for this subscription: `https`, on a public address.
    pub endpoint: String,
    pub keys: PushSubscriptionKeys,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushSubscriptionKeys {
    /// base64url of the browser's 65-byte uncompressed P-256 public key.
    pub p256dh: String,
    /// base64url of the 16-byte authentication secret.
    pub auth: String,
}

/// Why a push was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    Permission,
    Question,
    Plan,
    /// The run ended (done, cancelled or failed).
    Done,
}

/// The plaintext of every push: the least that lets the app open the right prompt. Never the prompt's
/// input, the question, the plan or the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushNotice {
    /// Always [`PushNotice::VERSION`].
    pub v: u32,
    pub kind: PushKind,
    pub run_id: String,
    /// The prompt to answer (`permission`, `question`, `plan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The device's own name of the conversation.
    pub session_key: String,
    /// The tool a permission prompt is for, at most [`PushNotice::MAX_TOOL_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

impl PushNotice {
    pub const VERSION: u32 = 1;
    pub const MAX_TOOL_CHARS: usize = 64;
}
