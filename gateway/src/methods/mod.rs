//! The method dispatcher: one file per method, one enum over them. A request's method name and params
//! are parsed into a [`Method`] first, so each method only ever sees well-typed params.

mod agent;
mod agent_attach;
mod agent_cancel;
mod agent_history;
mod agent_pending;
mod agent_respond;
mod agent_sessions;
mod bridge_stats;
mod console_login;
mod health;
mod node_describe;
mod node_event;
mod node_invoke;
mod node_list;
mod pair_approve;
mod pair_code;
mod pair_list;
mod pair_pending;
mod pair_pin;
mod pair_pin_confirm;
mod pair_policy;
mod pair_redeem;
mod pair_reject;
mod pair_remote;
mod pair_rename;
mod pair_revoke;
mod pair_submit;
mod pair_wait;
mod push_key;
mod push_subscribe;
mod push_unsubscribe;
mod seal_open;
mod system_event;
mod tunnel_report;
mod tunnel_set;
mod tunnel_sync;
mod tunnel_token;

use crate::agent::runs::Caller;
use crate::state::GatewayState;
use node_kit::outbound::Outbound;
use node_kit::protocol::{ClientMode, ErrorCode, ErrorShape, NodePolicy, method};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// Who sent a request, as established at `connect`.
pub(crate) struct Peer {
    pub conn_id: u64,
    pub mode: ClientMode,
    pub instance_id: String,
    pub platform: String,
}

/// What a method may use while it runs.
pub(crate) struct Context {
    pub state: Arc<GatewayState>,
    pub peer: Arc<Peer>,
    pub outbound: Outbound,
    pub request_id: String,
}

impl Context {
    /// Who is acting on runs: an operator, or the node the bridge speaks for.
    pub(crate) fn caller(&self) -> Caller {
        match self.peer.mode {
            ClientMode::Node => Caller::Node(self.peer.instance_id.clone()),
            _ => Caller::Operator,
        }
    }

    /// The gateway's key for the conversation the caller calls `key`. A node's conversations are its own
    /// (`node:<id>:<key>`): it can neither continue the owner's nor another node's.
    pub(crate) fn session_key(&self, key: &str) -> String {
        match self.peer.mode {
            ClientMode::Node => format!("node:{}:{key}", self.peer.instance_id),
            _ => key.to_string(),
        }
    }

    /// The key the caller knows the gateway session `key` by, if the caller may see it.
    pub(crate) fn visible_session(&self, key: &str) -> Option<String> {
        match self.peer.mode {
            ClientMode::Node => key
                .strip_prefix("node:")
                .and_then(|rest| rest.strip_prefix(self.peer.instance_id.as_str()))
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::to_string),
            _ => Some(key.to_string()),
        }
    }

    /// The calling device's ID: push subscriptions are kept by it.
    pub(crate) fn node_id(&self) -> Result<certs::KeyId, ErrorShape> {
        self.peer.instance_id.parse().map_err(|_| {
            ErrorShape::invalid_request(format!("{:?} is not a paired device's ID", self.peer.instance_id))
        })
    }

    /// The owner's policy for a node's turns; `None` for the owner's own, which keep their claude settings.
    pub(crate) fn node_policy(&self) -> Option<NodePolicy> {
        (self.peer.mode == ClientMode::Node).then(|| {
            self.peer
                .instance_id
                .parse()
                .ok()
                .and_then(|id| self.state.paired.get(&id))
                .map(|node| node.policy)
                .unwrap_or_default()
        })
    }
}

pub(crate) enum Method {
    Agent(agent::Agent),
    AgentAttach(agent_attach::AgentAttach),
    AgentCancel(agent_cancel::AgentCancel),
    AgentHistory(agent_history::AgentHistory),
    AgentPending(agent_pending::AgentPending),
    AgentRespond(agent_respond::AgentRespond),
    AgentSessions(agent_sessions::AgentSessions),
    BridgeStats(bridge_stats::BridgeStatsMethod),
    ConsoleLogin(console_login::ConsoleLoginMethod),
    Health(health::Health),
    NodeDescribe(node_describe::NodeDescribe),
    NodeEvent(node_event::NodeEvent),
    NodeInvoke(node_invoke::NodeInvoke),
    NodeList(node_list::NodeList),
    PairApprove(pair_approve::PairApprove),
    PairCode(pair_code::PairCode),
    PairList(pair_list::PairList),
    PairPending(pair_pending::PairPending),
    PairPin(pair_pin::PairPin),
    PairPinConfirm(pair_pin_confirm::PairPinConfirm),
    PairPolicy(pair_policy::PairPolicy),
    PairRedeem(pair_redeem::PairRedeem),
    PairReject(pair_reject::PairReject),
    PairRemote(pair_remote::PairRemote),
    PairRename(pair_rename::PairRename),
    PairRevoke(pair_revoke::PairRevoke),
    PairSubmit(pair_submit::PairSubmit),
    PairWait(pair_wait::PairWait),
    PushKey(push_key::PushKeyMethod),
    PushSubscribe(push_subscribe::PushSubscribe),
    PushUnsubscribe(push_unsubscribe::PushUnsubscribe),
    SealOpen(seal_open::SealOpen),
    SystemEvent(system_event::SystemEvent),
    TunnelReport(tunnel_report::TunnelReportMethod),
    TunnelSet(tunnel_set::TunnelSet),
    TunnelSync(tunnel_sync::TunnelSync),
    TunnelToken(tunnel_token::TunnelToken),
}

impl Method {
    /// Every method this gateway answers, as listed in `hello-ok` and in `UNKNOWN_METHOD` errors.
    pub(crate) const NAMES: &'static [&'static str] = &[
        method::AGENT,
        method::AGENT_ATTACH,
        method::AGENT_CANCEL,
        method::AGENT_HISTORY,
        method::AGENT_PENDING,
        method::AGENT_RESPOND,
        method::AGENT_SESSIONS,
        method::BRIDGE_STATS,
        method::CONSOLE_LOGIN,
        method::HEALTH,
        method::NODE_DESCRIBE,
        method::NODE_EVENT,
        method::NODE_INVOKE,
        method::NODE_LIST,
        method::PAIR_APPROVE,
        method::PAIR_CODE,
        method::PAIR_LIST,
        method::PAIR_PENDING,
        method::PAIR_PIN,
        method::PAIR_PIN_CONFIRM,
        method::PAIR_POLICY,
        method::PAIR_REDEEM,
        method::PAIR_REJECT,
        method::PAIR_REMOTE,
        method::PAIR_RENAME,
        method::PAIR_REVOKE,
        method::PAIR_SUBMIT,
        method::PAIR_WAIT,
        method::PUSH_KEY,
        method::PUSH_SUBSCRIBE,
        method::PUSH_UNSUBSCRIBE,
        method::SEAL_OPEN,
        method::SYSTEM_EVENT,
        method::TUNNEL_REPORT,
        method::TUNNEL_SET,
        method::TUNNEL_SYNC,
        method::TUNNEL_TOKEN,
    ];

    pub(crate) fn parse(name: &str, params: Value) -> Result<Method, ErrorShape> {
        Ok(match name {
            method::AGENT => Method::Agent(agent::Agent::parse(params)?),
            method::AGENT_ATTACH => Method::AgentAttach(agent_attach::AgentAttach::parse(params)?),
            method::AGENT_CANCEL => Method::AgentCancel(agent_cancel::AgentCancel::parse(params)?),
            method::AGENT_HISTORY => Method::AgentHistory(agent_history::AgentHistory::parse(params)?),
            method::AGENT_PENDING => Method::AgentPending(agent_pending::AgentPending),
            method::AGENT_RESPOND => Method::AgentRespond(agent_respond::AgentRespond::parse(params)?),
            method::AGENT_SESSIONS => Method::AgentSessions(agent_sessions::AgentSessions),
            method::BRIDGE_STATS => Method::BridgeStats(bridge_stats::BridgeStatsMethod::parse(params)?),
            method::CONSOLE_LOGIN => Method::ConsoleLogin(console_login::ConsoleLoginMethod),
            method::HEALTH => Method::Health(health::Health),
            method::NODE_DESCRIBE => Method::NodeDescribe(node_describe::NodeDescribe::parse(params)?),
            method::NODE_EVENT => Method::NodeEvent(node_event::NodeEvent::parse(params)?),
            method::NODE_INVOKE => Method::NodeInvoke(node_invoke::NodeInvoke::parse(params)?),
            method::NODE_LIST => Method::NodeList(node_list::NodeList),
            method::PAIR_APPROVE => Method::PairApprove(pair_approve::PairApprove::parse(params)?),
            method::PAIR_CODE => Method::PairCode(pair_code::PairCode::parse(params)?),
            method::PAIR_LIST => Method::PairList(pair_list::PairList),
            method::PAIR_PENDING => Method::PairPending(pair_pending::PairPending),
            method::PAIR_PIN => Method::PairPin(pair_pin::PairPin::parse(params)?),
            method::PAIR_PIN_CONFIRM => Method::PairPinConfirm(pair_pin_confirm::PairPinConfirm::parse(params)?),
            method::PAIR_POLICY => Method::PairPolicy(pair_policy::PairPolicy::parse(params)?),
            method::PAIR_REDEEM => Method::PairRedeem(pair_redeem::PairRedeem::parse(params)?),
            method::PAIR_REJECT => Method::PairReject(pair_reject::PairReject::parse(params)?),
            method::PAIR_REMOTE => Method::PairRemote(pair_remote::PairRemote::parse(params)?),
            method::PAIR_RENAME => Method::PairRename(pair_rename::PairRename::parse(params)?),
            method::PAIR_REVOKE => Method::PairRevoke(pair_revoke::PairRevoke::parse(params)?),
            method::PAIR_SUBMIT => Method::PairSubmit(pair_submit::PairSubmit::parse(params)?),
            method::PAIR_WAIT => Method::PairWait(pair_wait::PairWait::parse(params)?),
            method::PUSH_KEY => Method::PushKey(push_key::PushKeyMethod),
            method::PUSH_SUBSCRIBE => Method::PushSubscribe(push_subscribe::PushSubscribe::parse(params)?),
            method::PUSH_UNSUBSCRIBE => Method::PushUnsubscribe(push_unsubscribe::PushUnsubscribe),
            method::SEAL_OPEN => Method::SealOpen(seal_open::SealOpen::parse(params)?),
            method::SYSTEM_EVENT => Method::SystemEvent(system_event::SystemEvent::parse(params)?),
            method::TUNNEL_REPORT => Method::TunnelReport(tunnel_report::TunnelReportMethod::parse(params)?),
            method::TUNNEL_SET => Method::TunnelSet(tunnel_set::TunnelSet::parse(params)?),
            method::TUNNEL_SYNC => Method::TunnelSync(tunnel_sync::TunnelSync),
            method::TUNNEL_TOKEN => Method::TunnelToken(tunnel_token::TunnelToken),
            other => {
                return Err(ErrorShape::new(ErrorCode::UnknownMethod, format!("unknown method {other:?}"))
                    .with_details(json!({ "supported": Self::NAMES })));
            }
        })
    }

    /// Which kinds of client may call which method. Nodes publish events but do not drive other nodes;
    /// only the bridge files pairing requests; only operators (the owner) decide them and drive nodes.
    fn allowed_for(&self, mode: ClientMode) -> bool {
        match self {
            // A device's push subscription is its own: only a paired device (through the bridge) has one.
            Method::NodeEvent(_)
            | Method::TunnelToken(_)
            | Method::PushKey(_)
            | Method::PushSubscribe(_)
            | Method::PushUnsubscribe(_) => mode == ClientMode::Node,
            Method::PairSubmit(_)
            | Method::PairWait(_)
            | Method::PairRedeem(_)
            | Method::PairPin(_)
            | Method::PairPinConfirm(_)
            | Method::SealOpen(_)
            | Method::BridgeStats(_)
            | Method::TunnelReport(_)
            | Method::TunnelSync(_) => mode == ClientMode::Bridge,
            Method::NodeInvoke(_)
            | Method::NodeList(_)
            | Method::NodeDescribe(_)
            | Method::ConsoleLogin(_)
            | Method::PairApprove(_)
            | Method::PairCode(_)
            | Method::PairList(_)
            | Method::PairPending(_)
            | Method::PairPolicy(_)
            | Method::PairReject(_)
            | Method::PairRemote(_)
            | Method::PairRename(_)
            | Method::PairRevoke(_)
            | Method::TunnelSet(_) => mode == ClientMode::Operator,
            // Which runs a node may act on is narrowed in one place, `RunBoard::get`, by session key.
            Method::Agent(_)
            | Method::AgentAttach(_)
            | Method::AgentCancel(_)
            | Method::AgentHistory(_)
            | Method::AgentPending(_)
            | Method::AgentRespond(_)
            | Method::AgentSessions(_) => mode != ClientMode::Bridge,
            Method::Health(_) | Method::SystemEvent(_) => true,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Method::Agent(_) => method::AGENT,
            Method::AgentAttach(_) => method::AGENT_ATTACH,
            Method::AgentCancel(_) => method::AGENT_CANCEL,
            Method::AgentHistory(_) => method::AGENT_HISTORY,
            Method::AgentPending(_) => method::AGENT_PENDING,
            Method::AgentRespond(_) => method::AGENT_RESPOND,
            Method::AgentSessions(_) => method::AGENT_SESSIONS,
            Method::BridgeStats(_) => method::BRIDGE_STATS,
            Method::ConsoleLogin(_) => method::CONSOLE_LOGIN,
            Method::Health(_) => method::HEALTH,
            Method::NodeDescribe(_) => method::NODE_DESCRIBE,
            Method::NodeEvent(_) => method::NODE_EVENT,
            Method::NodeInvoke(_) => method::NODE_INVOKE,
            Method::NodeList(_) => method::NODE_LIST,
            Method::PairApprove(_) => method::PAIR_APPROVE,
            Method::PairCode(_) => method::PAIR_CODE,
            Method::PairList(_) => method::PAIR_LIST,
            Method::PairPending(_) => method::PAIR_PENDING,
            Method::PairPin(_) => method::PAIR_PIN,
            Method::PairPinConfirm(_) => method::PAIR_PIN_CONFIRM,
            Method::PairPolicy(_) => method::PAIR_POLICY,
            Method::PairRedeem(_) => method::PAIR_REDEEM,
            Method::PairReject(_) => method::PAIR_REJECT,
            Method::PairRemote(_) => method::PAIR_REMOTE,
            Method::PairRename(_) => method::PAIR_RENAME,
            Method::PairRevoke(_) => method::PAIR_REVOKE,
            Method::PairSubmit(_) => method::PAIR_SUBMIT,
            Method::PairWait(_) => method::PAIR_WAIT,
            Method::PushKey(_) => method::PUSH_KEY,
            Method::PushSubscribe(_) => method::PUSH_SUBSCRIBE,
            Method::PushUnsubscribe(_) => method::PUSH_UNSUBSCRIBE,
            Method::SealOpen(_) => method::SEAL_OPEN,
            Method::SystemEvent(_) => method::SYSTEM_EVENT,
            Method::TunnelReport(_) => method::TUNNEL_REPORT,
            Method::TunnelSet(_) => method::TUNNEL_SET,
            Method::TunnelSync(_) => method::TUNNEL_SYNC,
            Method::TunnelToken(_) => method::TUNNEL_TOKEN,
        }
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        if !self.allowed_for(ctx.peer.mode) {
            let caller = match ctx.peer.mode {
                ClientMode::Operator => "an operator",
                ClientMode::Node => "a node",
                ClientMode::Bridge => "the bridge",
            };
            return Err(ErrorShape::new(
                ErrorCode::Forbidden,
                format!("{} may not be called by {caller}", self.name()),
            ));
        }
        match self {
            Method::Agent(m) => m.apply(ctx).await,
            Method::AgentAttach(m) => m.apply(ctx).await,
            Method::AgentCancel(m) => m.apply(ctx),
            Method::AgentHistory(m) => m.apply(ctx),
            Method::AgentPending(m) => m.apply(ctx),
            Method::AgentRespond(m) => m.apply(ctx),
            Method::AgentSessions(m) => m.apply(ctx),
            Method::BridgeStats(m) => m.apply(ctx),
            Method::ConsoleLogin(m) => m.apply(ctx),
            Method::Health(m) => m.apply(ctx),
            Method::NodeDescribe(m) => m.apply(ctx),
            Method::NodeEvent(m) => m.apply(ctx),
            Method::NodeInvoke(m) => m.apply(ctx).await,
            Method::NodeList(m) => m.apply(ctx),
            Method::PairApprove(m) => m.apply(ctx),
            Method::PairCode(m) => m.apply(ctx),
            Method::PairList(m) => m.apply(ctx),
            Method::PairPending(m) => m.apply(ctx),
            Method::PairPin(m) => m.apply(ctx),
            Method::PairPinConfirm(m) => m.apply(ctx),
            Method::PairPolicy(m) => m.apply(ctx),
            Method::PairRedeem(m) => m.apply(ctx),
            Method::PairReject(m) => m.apply(ctx),
            Method::PairRemote(m) => m.apply(ctx),
            Method::PairRename(m) => m.apply(ctx),
            Method::PairRevoke(m) => m.apply(ctx),
            Method::PairSubmit(m) => m.apply(ctx),
            Method::PairWait(m) => m.apply(ctx).await,
            Method::PushKey(m) => m.apply(ctx),
            Method::PushSubscribe(m) => m.apply(ctx).await,
            Method::PushUnsubscribe(m) => m.apply(ctx),
            Method::SealOpen(m) => m.apply(ctx),
            Method::SystemEvent(m) => m.apply(ctx),
            Method::TunnelReport(m) => m.apply(ctx),
            Method::TunnelSet(m) => m.apply(ctx),
            Method::TunnelSync(m) => m.apply(ctx),
            Method::TunnelToken(m) => m.apply(ctx),
        }
    }
}

/// Reads a method's params, answering `INVALID_REQUEST` with serde's reason when they do not fit.
fn parse_params<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, ErrorShape> {
    serde_json::from_value(params).map_err(|e| ErrorShape::invalid_request(format!("invalid params for {method}: {e}")))
}

/// The scopes a pairing code grants: those asked for, or every scope; never none.
fn code_scopes(asked: Option<Vec<node_kit::protocol::Scope>>) -> Result<Vec<node_kit::protocol::Scope>, ErrorShape> {
    let scopes = asked.unwrap_or_else(|| node_kit::protocol::Scope::ALL.to_vec());
    if scopes.is_empty() {
        return Err(ErrorShape::invalid_request("a pairing code must grant at least one scope (chat, voice)"));
    }
    Ok(scopes)
}

/// The store could not be written: the change did not happen.
fn store_failed(e: &std::io::Error) -> ErrorShape {
    tracing::error!(error = %e, "cannot write the paired-node store");
    ErrorShape::new(ErrorCode::Internal, format!("cannot write the paired-node store: {e}"))
}

/// Pairs a node, whichever door it came through: its record is stored before the node hears of it, so a
/// node told it is paired always finds its record. An ID already paired is refused.
fn store_paired(
    ctx: &Context,
    node_id: certs::KeyId,
    device: node_kit::protocol::DeviceInfo,
    scopes: Vec<node_kit::protocol::Scope>,
) -> Result<node_kit::protocol::PairedNode, ErrorShape> {
    let now = crate::now_ms();
    let node = node_kit::protocol::PairedNode {
        node_id,
        device,
        scopes,
        created_at_ms: now,
        last_seen_ms: now,
        policy: NodePolicy::default(),
        routing_token_hash: None,
    };
    if !ctx.state.paired.add(node.clone()).map_err(|e| store_failed(&e))? {
        return Err(already_paired(&node_id));
    }
    Ok(node)
}

/// A pairing never takes over an ID already paired: not its token, its conversations nor its runs.
pub(crate) fn already_paired(node_id: &certs::KeyId) -> ErrorShape {
    ErrorShape::new(
        ErrorCode::Forbidden,
        format!("a device with ID {node_id} is already paired; revoke it first to pair it again"),
    )
    .with_details(json!({ "nodeId": node_id }))
}

pub(crate) fn not_paired(node_id: &certs::KeyId) -> ErrorShape {
    ErrorShape::new(ErrorCode::NotPaired, format!("node {node_id} is not paired with this computer (or was revoked)"))
        .with_details(json!({ "nodeId": node_id }))
}
