//! Pairing: the node's request, the owner's decision, and the short authentication string (SAS).
//!
//! A node meets the bridge with TLS keys neither has pinned yet, so a man in the middle could sit between
//! them. The SAS exposes one: it is computed from both TLS keys as each side saw them and from a nonce of
//! each side, so the two screens show the same six digits only when nobody is in the middle. The node
//! commits to its nonce before it sees the bridge's, so a middleman cannot search for nonces that make two
//! different key pairs give the same digits: it gets one guess in a million per attempt.

use certs::KeyId;
use serde::{Deserialize, Serialize};

/// What a paired node may do. The owner grants a subset of what the node asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send typed prompts to the agent.
    Chat,
    /// Send voice transcripts to the agent.
    Voice,
}

impl Scope {
    /// Every scope, in the order they are listed to people.
    pub const ALL: [Scope; 2] = [Scope::Chat, Scope::Voice];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Voice => "voice",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a device describes itself when it asks to pair: what the owner sees, and what the record keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// e.g. "Ada's phone". Chosen by whoever is on the network: sanitised before it is shown or stored.
    pub name: String,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Params of `pair.request` (node → bridge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRequestParams {
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
    /// [`nonce_commitment`] of the nonce the node reveals in `pair.confirm`, in lower-case hex.
    pub nonce_commitment: String,
}

/// Answer to `pair.request`: the bridge's nonce for this attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairChallenge {
    pub bridge_nonce: String,
}

/// Params of `pair.confirm` (node → bridge): the node reveals its nonce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairConfirmParams {
    pub nonce: String,
}

/// Answer to `pair.confirm` and to `pair.submit`: the request now waits for the owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairTicket {
    /// Stable across retries from the same key.
    pub request_id: String,
    pub expires_at_ms: u64,
}

/// Params of `pair.wait`; the bridge answers when the owner decides or the request expires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairWaitParams {
    /// Set by the bridge when it waits on the gateway; a node sends `{}` (its request is its connection's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Params of `pair.submit` (bridge → gateway): a node whose key the bridge saw, asking to be paired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairSubmitParams {
    pub node_id: KeyId,
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
    /// The node's address as the bridge saw it.
    pub address: String,
    pub sas: String,
}

/// Params of `pair.redeem` (node → bridge): door 2, the one-time code from a connection string standing
/// for the owner's approval. The node reached the bridge pinned to the key the string names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRedeemParams {
    pub code: String,
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
}

/// Params of `pair.redeem` (bridge → gateway): the node's request with the key the bridge saw in TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRedeemSubmit {
    pub node_id: KeyId,
    /// The node's address as the bridge saw it.
    pub address: String,
    #[serde(flatten)]
    pub redeem: PairRedeemParams,
}

/// Params of `pair.code` (operators).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairCodeParams {
    /// The most a node pairing with this code gets. Default: every scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// Payload of `pair.code`: a fresh single-use code; any earlier code no longer works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairCode {
    pub code: String,
    /// The `requestId` that `pair.resolved` carries when a node redeems this code.
    pub request_id: String,
    pub scopes: Vec<Scope>,
    pub expires_at_ms: u64,
}

/// Payload of the `pair.code.issued` event: a new door-2 code exists (never the code itself), so the code
/// before it, if any, is retired; whoever waits on that one can stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairCodeIssued {
    pub request_id: String,
    pub expires_at_ms: u64,
}

/// A request waiting for the owner, as `pair.pending` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPairing {
    pub request_id: String,
    /// What the bridge submitted, the device's description sanitised.
    #[serde(flatten)]
    pub request: PairSubmitParams,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Params of `pair.approve` and `pair.reject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairDecisionParams {
    pub request_id: String,
    /// On approve: grant only these (a subset of what was asked). Default: everything asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// A paired node: the one record all pairing doors end in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedNode {
    pub node_id: KeyId,
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
    pub created_at_ms: u64,
    pub last_seen_ms: u64,
    /// What the node's agent turns may do.
    #[serde(default)]
    pub policy: super::NodePolicy,
    /// The hash of the node's relay routing token ([`super::routing_token_hash`]), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_token_hash: Option<String>,
}

/// Payload of `pair.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedNodeList {
    pub nodes: Vec<PairedNode>,
}

/// Payload of `pair.pending`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPairingList {
    pub requests: Vec<PendingPairing>,
}

/// Params of `pair.rename`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairRenameParams {
    pub node_id: KeyId,
    pub name: String,
}

/// Payload of `pair.rename`: the name as stored (sanitised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRenamed {
    pub node_id: KeyId,
    pub name: String,
}

/// Payload of `pair.revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRevoked {
    pub node_id: KeyId,
    /// Live connections of the node that were closed.
    pub connections_closed: usize,
}

/// Params of `pair.revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairRevokeParams {
    pub node_id: KeyId,
}

/// Payload of `pair.resolved` events, and what `pair.wait` answers on approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairResolution {
    pub request_id: String,
    pub node_id: KeyId,
    pub outcome: PairOutcome,
    /// The granted scopes, when approved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairOutcome {
    Approved,
    Rejected,
    Expired,
}

/// A fresh 256-bit nonce, hex-encoded.
pub fn pairing_nonce() -> String {
    crate::client::random_id() + &crate::client::random_id()
}

/// The commitment a node sends before it sees the bridge's nonce.
pub fn nonce_commitment(nonce: &str) -> String {
    hex(&certs::sha256(&[b"lanyard-pair-commit-v1", nonce.as_bytes()]))
}

/// The six digits both screens show for one pairing attempt.
pub fn sas(bridge: &KeyId, node: &KeyId, bridge_nonce: &str, node_nonce: &str) -> String {
    let digest = certs::sha256(&[
        b"lanyard-sas-v1",
        bridge.as_bytes(),
        node.as_bytes(),
        bridge_nonce.as_bytes(),
        b"\0",
        node_nonce.as_bytes(),
    ]);
    let number = u32::from_be_bytes(digest[..4].try_into().expect("4 bytes")) % 1_000_000;
    format!("{number:06}")
}

impl DeviceInfo {
    /// The same description with every field made safe to show ([`display_safe_name`]).
    pub fn sanitised(&self) -> DeviceInfo {
        DeviceInfo {
            name: display_safe_name(&self.name),
            platform: display_safe_name(&self.platform),
            model: self.model.as_deref().map(display_safe_name),
        }
    }
}

/// Makes a name chosen by whoever is on the network safe to show the owner: no control or formatting
/// characters (which could fake a second line or reorder text), trimmed, at most 64 characters.
pub fn display_safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() || is_invisible_formatting(c) { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let cleaned: String = cleaned.chars().take(64).collect();
    if cleaned.is_empty() { "unnamed device".to_string() } else { cleaned }
}

/// Bidirectional overrides, zero-width characters and similar, which make one text display as another.
fn is_invisible_formatting(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{061C}')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_is_six_digits_and_depends_on_everything() {
        let (b, n) = (KeyId::of_spki(b"bridge"), KeyId::of_spki(b"node"));
        let base = sas(&b, &n, "x", "y");
        assert_eq!(base.len(), 6);
        assert!(base.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(sas(&b, &n, "x", "y"), base);
        let variants = [sas(&n, &b, "x", "y"), sas(&b, &n, "x2", "y"), sas(&b, &n, "x", "y2")];
        assert!(variants.iter().all(|v| *v != base), "{variants:?} vs {base}");
    }

    /// The vector in docs/protocol.md ("The SAS"): RFC 8032 test keys 1 (bridge) and 2 (device), so other
    /// implementations can check theirs against this one.
    #[test]
    fn matches_the_documented_test_vector() {
        fn unhex(text: &str) -> Vec<u8> {
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
        }
        let spki = |key: &str| [unhex("302a300506032b6570032100"), unhex(key)].concat();
        let bridge = KeyId::of_spki(&spki("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
        let device = KeyId::of_spki(&spki("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"));
        assert_eq!(bridge.to_string(), "A3R7-3D62-FG5W-BK2Z-KV66-MHW3-BLWN-WIYR-GS7D-BZ23-IVPY-4G3Z-F6UQ");
        assert_eq!(device.to_string(), "32ZN-5U45-YJX4-4DTA-QW3P-YNF7-NNMU-DEJ3-X7RO-UYKB-CPH7-TYAE-YFYA");
        let bridge_nonce = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let nonce = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
        assert_eq!(nonce_commitment(nonce), "a792d00b0a8cee1440a7fae29f9f89f1cdbfcc7bc9fcd48e39ebe99787507be8");
        assert_eq!(sas(&bridge, &device, bridge_nonce, nonce), "593249");
    }

    #[test]
    fn names_are_made_safe_to_show() {
        assert_eq!(display_safe_name("Ada's\nphone\u{202E}"), "Ada's phone");
        assert_eq!(display_safe_name("\u{0007}\t "), "unnamed device");
        assert_eq!(display_safe_name(&"x".repeat(500)).len(), 64);
        assert_eq!(display_safe_name("Zoë's iPad"), "Zoë's iPad");
    }

    #[test]
    fn commitment_binds_the_nonce() {
        assert_eq!(nonce_commitment("a"), nonce_commitment("a"));
        assert_ne!(nonce_commitment("a"), nonce_commitment("b"));
    }
}

/// Params of `pair.policy`: what a node's agent turns may do. Fields left out keep their value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairPolicyParams {
    pub node_id: KeyId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<super::PermissionMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_tools: Option<Vec<String>>,
}

/// Params of `pair.remote` (operators).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PairRemoteParams {
    /// The most a node pairing with this code gets. Default: every scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<Scope>>,
}

/// Payload of `pair.remote`: door 3's code. The routing token goes to the device with the relay URL and
/// the bridge ID (a QR code); the PIN is typed on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemotePairCode {
    pub routing: String,
    pub pin: String,
    pub relay_url: String,
    /// Names the pairing in `pair.resolved`.
    pub request_id: String,
    pub expires_at_ms: u64,
    pub tries: u32,
}

/// Params of `pair.pin` (node → bridge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinParams {
    /// The node's SPAKE2 message (side A), base64url.
    pub message: String,
    #[serde(flatten)]
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
}

/// Params of `pair.pin` (bridge → gateway): the node's message with what the bridge saw in TLS and the
/// routing token the relay admitted the stream with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinSubmit {
    /// The key the node showed in TLS; none for a keyless client of the sealed HTTP contract, whose ID
    /// the exchange makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<KeyId>,
    pub bridge_id: KeyId,
    pub routing_hash: String,
    #[serde(flatten)]
    pub pin: PairPinParams,
}

/// Payload of `pair.pin`: the computer's SPAKE2 message and its key confirmation, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinChallenge {
    pub message: String,
    pub confirmation: String,
}

/// Params of `pair.pin.confirm` (node → bridge): the node's key confirmation, base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinConfirmParams {
    pub confirmation: String,
}

/// Params of `pair.pin.confirm` (bridge → gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinConfirmSubmit {
    /// As in `pair.pin`: none for a client of the sealed HTTP contract, whose seal key the computer keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<KeyId>,
    pub routing_hash: String,
    pub confirmation: String,
}

/// Payload of `pair.pin.confirm`: the node is paired, and gets its own routing token for the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairPinResult {
    #[serde(flatten)]
    pub resolution: PairResolution,
    pub relay: super::RoutingToken,
    /// For a sealed client only (to the bridge, which seals the answer with it): the seal key, base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_key: Option<String>,
}

/// Params of `seal.open` (bridge → gateway): a sealed `/v1/chat` body and the routing token it came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealOpenParams {
    pub routing_hash: String,
    pub counter: u64,
    pub sealed: String,
}

/// Payload of `seal.open`: whose body it was, what it said, and the key to seal the answer with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealOpened {
    pub node_id: KeyId,
    pub plaintext: String,
    pub seal_key: String,
}
