//! Every size limit a peer's input meets, written once. The bridge checks them where a stranger's bytes
//! enter; the gateway checks the same ones again, so a limit never depends on which hop saw it first.

use super::agent::{ATTACHMENT_MEDIA_TYPES, NodePolicy};
use super::error::{ErrorCode, ErrorShape};
use super::pairing::{DeviceInfo, PairRedeemParams};
use serde_json::json;

/// Largest frame either side accepts from a paired peer, in bytes of UTF-8 text. Snapshots travel
/// base64-encoded inside a frame, so this bounds them too.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Largest message (including an unfinished fragmented one) the bridge accepts before the peer is known to
/// be paired: `connect` and the pairing dialogue fit in a fraction of it.
pub const UNPAIRED_MAX_FRAME_BYTES: usize = 8 * 1024;
/// The `connect` frame must arrive within this many milliseconds of the WebSocket opening.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Longest accepted request id, idempotency key or session key.
pub const MAX_ID_LEN: usize = 128;
/// Longest device or display name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest platform name (`ios`, `linux`), in bytes.
pub const MAX_PLATFORM_LEN: usize = 64;
/// Longest device model, in bytes.
pub const MAX_MODEL_LEN: usize = 128;
/// Longest client version string, in bytes.
pub const MAX_VERSION_LEN: usize = 64;
/// Longest one-time pairing code, in bytes (a real one is 26 base32 characters).
pub const MAX_CODE_LEN: usize = 64;
/// Longest gateway token, in bytes (a real one is 43 base64url characters).
pub const MAX_TOKEN_LEN: usize = 128;
/// Most capability or command names a node may advertise, and the longest of each.
pub const MAX_ADVERTISED: usize = 32;
pub const MAX_ADVERTISED_LEN: usize = 64;

/// Most images one `agent` prompt may carry.
pub const MAX_ATTACHMENTS: usize = 4;
/// Largest image, in bytes of its base64 text (about 1.5 MB of image).
pub const MAX_ATTACHMENT_BYTES: usize = 2 * 1024 * 1024;
/// Largest total of a prompt's images, in base64 bytes: with the prompt it stays inside one frame.
pub const MAX_ATTACHMENTS_TOTAL_BYTES: usize = 3 * 1024 * 1024;
/// Longest message or answer in `agent.respond`, in bytes.
pub const MAX_RESPONSE_TEXT_LEN: usize = 16 * 1024;
/// Most tool patterns in a node's policy, and the longest of each.
pub const MAX_TOOL_PATTERNS: usize = 64;
pub const MAX_TOOL_PATTERN_LEN: usize = 256;

/// Checks an identifier the caller chose (request id, idempotency key, session key, node ID, command):
/// 1 to [`MAX_ID_LEN`] bytes, no control characters.
pub fn check_id(field: &str, value: &str) -> Result<(), ErrorShape> {
    if value.is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(ErrorShape::invalid_request(format!(
            "{field} must be 1 to {MAX_ID_LEN} bytes without control characters"
        ))
        .with_details(json!({ "field": field, "maxLength": MAX_ID_LEN })));
    }
    Ok(())
}

/// Refuses `value` when it is longer than `max` bytes, naming the field and the limit.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), ErrorShape> {
    if value.len() > max {
        return Err(ErrorShape::invalid_request(format!("{field} is {} bytes; the limit is {max}", value.len()))
            .with_details(json!({ "field": field, "size": value.len(), "maxLength": max })));
    }
    Ok(())
}

impl DeviceInfo {
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        check_len("name", &self.name, MAX_NAME_LEN)?;
        check_len("platform", &self.platform, MAX_PLATFORM_LEN)?;
        if let Some(model) = &self.model {
            check_len("model", model, MAX_MODEL_LEN)?;
        }
        Ok(())
    }
}

impl PairRedeemParams {
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        check_len("code", &self.code, MAX_CODE_LEN)?;
        self.device.check_lengths()
    }
}

/// Checks the `attachments` of raw `agent` params (the bridge reads them without decoding the images):
/// count, type and size. Too many or too large is `PAYLOAD_TOO_LARGE`; a wrong shape or type is
/// `INVALID_REQUEST`.
pub fn check_attachments(params: &serde_json::Value) -> Result<(), ErrorShape> {
    let Some(list) = params.get("attachments") else { return Ok(()) };
    let list = list.as_array().ok_or_else(|| ErrorShape::invalid_request("attachments must be an array"))?;
    let too_large = |message: String| {
        ErrorShape::new(ErrorCode::PayloadTooLarge, message).with_details(json!({
            "maxAttachments": MAX_ATTACHMENTS,
            "maxAttachmentBytes": MAX_ATTACHMENT_BYTES,
            "maxTotalBytes": MAX_ATTACHMENTS_TOTAL_BYTES,
        }))
    };
    if list.len() > MAX_ATTACHMENTS {
        return Err(too_large(format!("{} attachments; at most {MAX_ATTACHMENTS} may go with one prompt", list.len())));
    }
    let mut total = 0;
    for (i, attachment) in list.iter().enumerate() {
        let media_type = attachment.get("mediaType").and_then(serde_json::Value::as_str).unwrap_or_default();
        if !ATTACHMENT_MEDIA_TYPES.contains(&media_type) {
            return Err(ErrorShape::invalid_request(format!(
                "attachments[{i}].mediaType must be one of {}",
                ATTACHMENT_MEDIA_TYPES.join(", ")
            )));
        }
        let data = attachment
            .get("data")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| ErrorShape::invalid_request(format!("attachments[{i}].data must be base64 text")))?;
        if data.len() > MAX_ATTACHMENT_BYTES {
            return Err(too_large(format!(
                "attachments[{i}] is {} bytes of base64; the limit is {MAX_ATTACHMENT_BYTES}",
                data.len()
            )));
        }
        total += data.len();
    }
    if total > MAX_ATTACHMENTS_TOTAL_BYTES {
        return Err(too_large(format!(
            "the attachments total {total} bytes; the limit is {MAX_ATTACHMENTS_TOTAL_BYTES}"
        )));
    }
    Ok(())
}

impl NodePolicy {
    /// Tool patterns become claude arguments: bounded in number and length, no control characters, and
    /// none that claude could read as an option.
    pub fn check(&self) -> Result<(), ErrorShape> {
        for (field, patterns) in [("allowedTools", &self.allowed_tools), ("deniedTools", &self.denied_tools)] {
            if patterns.len() > MAX_TOOL_PATTERNS {
                return Err(ErrorShape::invalid_request(format!(
                    "{field} lists {} patterns; the limit is {MAX_TOOL_PATTERNS}",
                    patterns.len()
                )));
            }
            for pattern in patterns {
                check_len(field, pattern, MAX_TOOL_PATTERN_LEN)?;
                if pattern.trim().is_empty() || pattern.starts_with('-') || pattern.chars().any(char::is_control) {
                    return Err(ErrorShape::invalid_request(format!(
                        "{field}: {pattern:?} is not a tool pattern (like Bash(npm test:*) or Edit)"
                    ))
                    .with_details(json!({ "field": field })));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_code_lengths() {
        let device = DeviceInfo { name: "n".repeat(MAX_NAME_LEN), platform: "p".into(), model: Some("m".into()) };
        device.check_lengths().unwrap();
        let long_model = DeviceInfo { model: Some("m".repeat(MAX_MODEL_LEN + 1)), ..device.clone() };
        assert!(long_model.check_lengths().is_err());
        let redeem = PairRedeemParams { code: "c".repeat(MAX_CODE_LEN + 1), device, scopes: vec![] };
        assert_eq!(redeem.check_lengths().unwrap_err().details.unwrap()["field"], "code");
    }

    #[test]
    fn attachments_are_counted_typed_and_sized() {
        let image = |bytes: usize| json!({"mediaType": "image/png", "data": "A".repeat(bytes)});
        check_attachments(&json!({"prompt": "hi"})).unwrap();
        check_attachments(&json!({"attachments": [image(MAX_ATTACHMENT_BYTES)]})).unwrap();
        let code = |params| check_attachments(&params).unwrap_err().code;
        assert_eq!(code(json!({"attachments": [image(MAX_ATTACHMENT_BYTES + 1)]})), ErrorCode::PayloadTooLarge);
        assert_eq!(code(json!({"attachments": vec![image(1); MAX_ATTACHMENTS + 1]})), ErrorCode::PayloadTooLarge);
        let two_large = json!({"attachments": [image(MAX_ATTACHMENT_BYTES), image(MAX_ATTACHMENT_BYTES)]});
        assert_eq!(code(two_large), ErrorCode::PayloadTooLarge);
        check_attachments(&json!({"attachments": vec![image(1); MAX_ATTACHMENTS]})).unwrap();
        let svg = json!({"attachments": [{"mediaType": "image/svg+xml", "data": "AAAA"}]});
        assert_eq!(code(svg), ErrorCode::InvalidRequest);
        assert_eq!(code(json!({"attachments": [{"mediaType": "image/png"}]})), ErrorCode::InvalidRequest);
        assert_eq!(code(json!({"attachments": "x"})), ErrorCode::InvalidRequest);
    }

    #[test]
    fn policy_patterns_are_bounded_and_never_options() {
        let policy = |allowed: Vec<&str>| NodePolicy {
            allowed_tools: allowed.into_iter().map(String::from).collect(),
            ..NodePolicy::default()
        };
        policy(vec!["Bash(npm test:*)", "Edit"]).check().unwrap();
        for bad in ["--dangerously-skip-permissions", "", " ", "Bash\n"] {
            assert!(policy(vec![bad]).check().is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_TOOL_PATTERN_LEN + 1);
        assert!(policy(vec![&long]).check().is_err());
        assert!(policy(vec!["Edit"; MAX_TOOL_PATTERNS + 1]).check().is_err());
        let denied = NodePolicy { denied_tools: vec!["-x".into()], ..NodePolicy::default() };
        assert!(denied.check().is_err());
    }
}
