//! Every size limit a peer's input meets, written once. The bridge checks them where a stranger's bytes
//! enter; the gateway checks the same ones again, so a limit never depends on which hop saw it first.

use super::error::ErrorShape;
use super::frame::{ConnectParams, NodeAdvert};
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

impl ConnectParams {
    /// The lengths of everything a peer chose in its `connect`.
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        let client = &self.client;
        check_len("client.instanceId", &client.instance_id, MAX_ID_LEN)?;
        check_len("client.platform", &client.platform, MAX_PLATFORM_LEN)?;
        check_len("client.version", &client.version, MAX_VERSION_LEN)?;
        if let Some(name) = &client.display_name {
            check_len("client.displayName", name, MAX_NAME_LEN)?;
        }
        if let Some(auth) = &self.auth {
            check_len("auth.token", &auth.token, MAX_TOKEN_LEN)?;
        }
        if let Some(node) = &self.node {
            node.check_lengths()?;
        }
        Ok(())
    }
}

impl NodeAdvert {
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        for (field, names) in [("node.caps", &self.caps), ("node.commands", &self.commands)] {
            if names.len() > MAX_ADVERTISED {
                return Err(ErrorShape::invalid_request(format!(
                    "{field} lists {} names; the limit is {MAX_ADVERTISED}",
                    names.len()
                )));
            }
            for name in names {
                check_len(field, name, MAX_ADVERTISED_LEN)?;
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientInfo, ClientMode, ErrorCode, PROTOCOL_VERSION};

    fn connect() -> ConnectParams {
        ConnectParams {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client: ClientInfo {
                instance_id: "i".into(),
                mode: ClientMode::Node,
                platform: "linux".into(),
                version: "1".into(),
                display_name: Some("n".repeat(MAX_NAME_LEN)),
            },
            auth: None,
            node: Some(NodeAdvert { caps: vec!["screen".into()], commands: vec![] }),
        }
    }

    #[test]
    fn each_connect_string_is_checked_at_its_limit() {
        connect().check_lengths().unwrap();
        type Spoil = fn(&mut ConnectParams);
        let cases: [(&str, Spoil); 5] = [
            ("client.displayName", |c| c.client.display_name = Some("n".repeat(MAX_NAME_LEN + 1))),
            ("client.platform", |c| c.client.platform = "p".repeat(MAX_PLATFORM_LEN + 1)),
            ("client.version", |c| c.client.version = "v".repeat(MAX_VERSION_LEN + 1)),
            ("client.instanceId", |c| c.client.instance_id = "i".repeat(MAX_ID_LEN + 1)),
            ("node.caps", |c| c.node.as_mut().unwrap().caps = vec!["c".repeat(MAX_ADVERTISED_LEN + 1)]),
        ];
        for (field, spoil) in cases {
            let mut params = connect();
            spoil(&mut params);
            let refused = params.check_lengths().unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{field}");
            assert_eq!(refused.details.as_ref().unwrap()["field"], field);
        }
        let mut many = connect();
        many.node.as_mut().unwrap().commands = vec!["c".into(); MAX_ADVERTISED + 1];
        assert_eq!(many.check_lengths().unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn device_and_code_lengths() {
        let device = DeviceInfo { name: "n".repeat(MAX_NAME_LEN), platform: "p".into(), model: Some("m".into()) };
        device.check_lengths().unwrap();
        let long_model = DeviceInfo { model: Some("m".repeat(MAX_MODEL_LEN + 1)), ..device.clone() };
        assert!(long_model.check_lengths().is_err());
        let redeem = PairRedeemParams { code: "c".repeat(MAX_CODE_LEN + 1), device, scopes: vec![] };
        assert_eq!(redeem.check_lengths().unwrap_err().details.unwrap()["field"], "code");
    }
}
