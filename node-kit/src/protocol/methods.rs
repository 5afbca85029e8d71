//! Methods a client may call on the gateway, their params and payloads, and the events it sends.

use super::frame::ClientMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Method names, as sent in `req.method`.
pub mod method {
    pub const AGENT: &str = "agent";
    /// Answers a permission prompt, question or plan of a run.
    pub const AGENT_RESPOND: &str = "agent.respond";
    /// Stops a running turn (claude's interrupt) or drops a queued one.
    pub const AGENT_CANCEL: &str = "agent.cancel";
    /// Replays a run's events after a sequence number, then follows it live.
    pub const AGENT_ATTACH: &str = "agent.attach";
    /// The prompts waiting for an answer: the approvals inbox.
    pub const AGENT_PENDING: &str = "agent.pending";
    /// The caller's conversations.
    pub const AGENT_SESSIONS: &str = "agent.sessions";
    /// One conversation so far, paged.
    pub const AGENT_HISTORY: &str = "agent.history";
    pub const HEALTH: &str = "health";
    pub const NODE_DESCRIBE: &str = "node.describe";
    pub const NODE_EVENT: &str = "node.event";
    pub const NODE_INVOKE: &str = "node.invoke";
    pub const NODE_LIST: &str = "node.list";
    pub const SYSTEM_EVENT: &str = "system-event";

    // A node and the bridge, before the node is paired.
    pub const PAIR_REQUEST: &str = "pair.request";
    pub const PAIR_CONFIRM: &str = "pair.confirm";
    pub const PAIR_WAIT: &str = "pair.wait";
    /// Door 2: pair with the one-time code of a connection string (node → bridge → gateway).
    pub const PAIR_REDEEM: &str = "pair.redeem";
    /// Door 3 (operators): a code to pair a device away from home, by PIN through the relay.
    pub const PAIR_REMOTE: &str = "pair.remote";
    /// Door 3 (node → bridge → gateway): the node's SPAKE2 message; answered with the computer's and its
    /// key confirmation.
    pub const PAIR_PIN: &str = "pair.pin";
    /// Door 3 (node → bridge → gateway): the node's key confirmation; pairs the node.
    pub const PAIR_PIN_CONFIRM: &str = "pair.pin.confirm";
    /// The bridge's counters (bridge → gateway, every few seconds), for the console's `/metrics`.
    pub const BRIDGE_STATS: &str = "bridge.stats";
    /// The owner's console (operators): a one-time login link.
    pub const CONSOLE_LOGIN: &str = "console.login";
    /// The sealed HTTP contract (bridge → gateway): opens a client's sealed body once, by its counter.
    pub const SEAL_OPEN: &str = "seal.open";
    /// The owner sets or clears the relay URL.
    pub const TUNNEL_SET: &str = "tunnel.set";
    /// The bridge reads the relay URL and the routing-token hashes.
    pub const TUNNEL_SYNC: &str = "tunnel.sync";
    /// The bridge reports its relay link's state.
    pub const TUNNEL_REPORT: &str = "tunnel.report";
    /// A paired node gets a fresh routing token for the relay.
    pub const TUNNEL_TOKEN: &str = "tunnel.token";
    /// A paired device reads the computer's VAPID key and whether it has a push subscription.
    pub const PUSH_KEY: &str = "push.key";
    /// A paired device gives its browser's push subscription; the computer pushes to it from then on.
    pub const PUSH_SUBSCRIBE: &str = "push.subscribe";
    /// A paired device turns push off: its subscription is forgotten.
    pub const PUSH_UNSUBSCRIBE: &str = "push.unsubscribe";

    // The bridge and the gateway, which keeps the one store of paired nodes.
    pub const PAIR_SUBMIT: &str = "pair.submit";

    // The owner (an operator client) and the gateway.
    pub const PAIR_PENDING: &str = "pair.pending";
    pub const PAIR_APPROVE: &str = "pair.approve";
    pub const PAIR_REJECT: &str = "pair.reject";
    pub const PAIR_LIST: &str = "pair.list";
    pub const PAIR_RENAME: &str = "pair.rename";
    pub const PAIR_REVOKE: &str = "pair.revoke";
    /// Sets what a paired node's agent turns may do (its permission mode and tool patterns).
    pub const PAIR_POLICY: &str = "pair.policy";
    /// Issues the one-time code of a connection string (door 2); the previous code stops working.
    pub const PAIR_CODE: &str = "pair.code";
}

/// Event names, as sent in `event.event`.
pub mod event {
    /// To the bridge: the tunnel's settings changed ([`super::TunnelSync`]).
    pub const TUNNEL: &str = "tunnel";
    /// Progress of an `agent` run: text deltas, tool use, tool results, and the prompts that wait for an
    /// answer (`permission`, `question`, `plan`).
    pub const AGENT: &str = "agent";
    /// An event a node published with `node.event`, relayed to operators.
    pub const NODE_EVENT: &str = "node.event";
    /// A presence change: a client connected, disconnected or sent a beacon.
    pub const PRESENCE: &str = "presence";
    /// A pairing request is waiting for the owner (sent to operators).
    pub const PAIR_REQUESTED: &str = "pair.requested";
    /// A pairing request was approved, rejected or expired (sent to operators).
    pub const PAIR_RESOLVED: &str = "pair.resolved";
    /// A door-2 code was issued, which retired the one before it (sent to operators, [`super::PairCodeIssued`]).
    pub const PAIR_CODE_ISSUED: &str = "pair.code.issued";
    /// The owner renamed a paired node (sent to that node's own connection, [`super::PairRenamed`]).
    pub const PAIR_RENAMED: &str = "pair.renamed";
}

// ---- nodes ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeParams {
    pub node_id: String,
    pub command: String,
    #[serde(default)]
    pub params: Value,
    /// Required: a retry with the same key (within 5 minutes) runs the command once.
    pub idempotency_key: String,
    /// Defaults to 30 000; at most 600 000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Payload of a successful `node.invoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInvokeResult {
    pub node_id: String,
    pub command: String,
    /// What the node answered.
    pub payload: Value,
}

/// Params of the `node.invoke` request the gateway sends to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCommandRequest {
    pub command: String,
    #[serde(default)]
    pub params: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeDescribeParams {
    pub node_id: String,
}

/// One connected node, as `node.list` and `node.describe` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSummary {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub platform: String,
    pub version: String,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
    pub connected_at_ms: u64,
    /// Foreground or background, from the node's latest presence beacon; foreground until it says.
    #[serde(default = "AppState::foreground")]
    pub state: AppState,
    /// Whether the node can forward voice now, from its latest `voice` node event; unknown until it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<bool>,
    /// How the bridge reaches it: over the LAN or through the relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<super::LinkPath>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeListPayload {
    pub nodes: Vec<NodeSummary>,
}

/// Params of `node.event`, sent by a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeEventParams {
    pub event: String,
    #[serde(default)]
    pub payload: Value,
}

/// Payload of the `node.event` event operators receive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeEventNotice {
    pub node_id: String,
    pub event: String,
    pub payload: Value,
}

// ---- presence and health ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppState {
    Foreground,
    Background,
}

impl AppState {
    fn foreground() -> AppState {
        AppState::Foreground
    }
}

/// The `node.event` a node sends when it can or cannot forward voice (`{"available": bool}`).
pub const VOICE_EVENT: &str = "voice";

/// Payload of the [`VOICE_EVENT`] node event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceAvailability {
    pub available: bool,
}

/// Params of `system-event`: a presence beacon. Every field is optional; the last beacon per instance wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceBeacon {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AppState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_input_seconds: Option<u64>,
}

/// One client's presence, in `health` and in `presence` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub instance_id: String,
    pub mode: ClientMode,
    pub platform: String,
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon: Option<PresenceBeacon>,
    pub updated_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthPayload {
    pub ok: bool,
    pub version: String,
    pub uptime_ms: u64,
    pub connections: usize,
    pub nodes: usize,
    pub agent: AgentHealth,
    pub presence: Vec<PresenceEntry>,
    /// Requests received since start, by method; names the server does not know count as `(unknown)`.
    #[serde(default)]
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Connections refused at `connect` since start, by reason (`unauthorized`, `invalid`, `not-paired`, …).
    #[serde(default)]
    pub refused_connections: std::collections::BTreeMap<String, u64>,
    /// The limits in force in the serving process (shown to operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsHealth>,
    /// The off-LAN tunnel (shown to operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<super::TunnelHealth>,
}

/// The resource limits a server runs with, as `lanyard up` sized them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsHealth {
    /// The soft descriptor limit in force (after raising it to the hard limit) and the hard limit.
    pub open_files: u64,
    pub open_files_hard: u64,
    /// The bridge's connection caps, when the bridge runs in the same process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeCapsHealth>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeCapsHealth {
    pub unpaired: usize,
    pub unpaired_per_address: usize,
    pub unpaired_per_key: usize,
    pub paired: usize,
    /// Largest frame before pairing, and after.
    pub unpaired_max_frame_bytes: usize,
    pub max_frame_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentHealth {
    /// Whether a `claude` binary was found.
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claude_path: Option<String>,
    pub sessions: Vec<AgentSessionInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSessionInfo {
    pub session_key: String,
    /// The running `claude` process, if one is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Turns waiting behind the running one.
    pub queued: usize,
}

/// Payload of `console.login`: the link that logs one browser in, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleLogin {
    pub url: String,
    pub expires_at_ms: u64,
}

/// Params of `bridge.stats`: the bridge's counters since it started (gauges as they are now). Paths are
/// `lan` and `relay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStats {
    /// TLS handshakes completed, by path.
    pub handshakes: std::collections::BTreeMap<String, u64>,
    /// Connections and streams turned away, by reason.
    pub refused: std::collections::BTreeMap<String, u64>,
    /// Calls refused by a rate limit, by limit.
    pub rate_limited: std::collections::BTreeMap<String, u64>,
    /// Paired nodes connected now, by path.
    pub connections: std::collections::BTreeMap<String, u64>,
    /// Bytes of frames relayed between nodes and the gateway, both ways, by path.
    pub relayed_bytes: std::collections::BTreeMap<String, u64>,
}
