//! State shared by every connection.

use crate::agent::runs::RunBoard;
use crate::agent::{AgentRunner, SessionBook};
use crate::config::GatewayConfig;
use crate::home::GatewayToken;
use crate::hub::ConnectionHub;
use crate::idempotency::IdempotencyCache;
use crate::invoke::Invoker;
use crate::nodes::NodeRegistry;
use crate::pairing::{PairedStore, PairingCodes, PendingRequests, RemoteCodes, SealedClients};
use crate::presence::Presence;
use crate::push::Push;
use crate::request_counts::RequestCounts;
use crate::tunnel::TunnelBook;
use node_kit::protocol::{TunnelSync, event};
use node_kit::refusals::RefusalLog;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How long a used or burnt door-3 code's routing token stays with the relay: long enough for the answer
/// that ended it to reach the device.
const REMOTE_CODE_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) struct GatewayState {
    pub config: GatewayConfig,
    /// Operators present this one.
    pub token: GatewayToken,
    /// The bridge presents this one; only it may speak for nodes.
    pub bridge_token: GatewayToken,
    /// Reads `/metrics` only.
    pub metrics_token: GatewayToken,
    pub paired: PairedStore,
    /// The relay URL and the bridge's report on its relay link.
    pub tunnel: TunnelBook,
    pub pending_pairings: PendingRequests,
    /// The live one-time code of door 2, if any.
    pub pairing_codes: PairingCodes,
    /// The live code of door 3 (PIN, through the relay), if any.
    pub remote_codes: RemoteCodes,
    /// Keys and counters of the sealed HTTP contract's clients.
    pub sealed: SealedClients,
    /// The console's login tokens and sessions.
    pub console: crate::console::auth::ConsoleAuth,
    /// The console's address, once it listens.
    pub console_url: std::sync::OnceLock<String>,
    pub agent: Arc<AgentRunner>,
    pub nodes: Arc<NodeRegistry>,
    pub presence: Presence,
    pub hub: Arc<ConnectionHub>,
    /// `agent` runs: their events for catch-up, their open prompts, their outcomes.
    pub runs: RunBoard,
    /// Web Push to the paired devices that subscribed.
    pub push: Arc<Push>,
    /// Idempotency keys of `agent` runs.
    pub agent_runs: IdempotencyCache,
    /// Runs `node.invoke` for the owner and for the agent's tools.
    pub invoker: Arc<Invoker>,
    pub started: Instant,
    /// Refused connects, summed up once a minute instead of a line each.
    pub refusals: Arc<RefusalLog>,
    next_conn_id: AtomicU64,
    /// Requests received, by method.
    pub requests: Arc<RequestCounts>,
    pub metrics: crate::metrics::GatewayMetrics,
}

impl GatewayState {
    /// `tokens` are the operators', the bridge's and the metrics reader's; `methods` are the names the
    /// gateway answers, counted one by one in `requests`.
    pub fn new(
        config: GatewayConfig,
        [token, bridge_token, metrics_token]: [GatewayToken; 3],
        paired: PairedStore,
        methods: &'static [&'static str],
    ) -> Self {
        let cache = || IdempotencyCache::new(config.idempotency_ttl, config.idempotency_capacity);
        let nodes = Arc::new(NodeRegistry::new());
        let invoker = Arc::new(Invoker::new(nodes.clone(), cache()));
        let hub = Arc::new(ConnectionHub::new());
        let book = SessionBook::open(config.home.join("agent"));
        let requests = Arc::new(RequestCounts::new(methods));
        let refusals = Arc::new(RefusalLog::new("gateway connections"));
        let tunnel = TunnelBook::load(&config.home);
        let push = Arc::new(Push::new(config.home.clone(), &config.push, config.agent.prompt_timeout));
        GatewayState {
            agent: AgentRunner::new(config.agent.clone(), invoker.clone(), book),
            nodes,
            invoker,
            presence: Presence::new(),
            runs: RunBoard::new(hub.clone(), push.clone()),
            push,
            hub,
            agent_runs: cache(),
            started: Instant::now(),
            refusals: refusals.clone(),
            next_conn_id: AtomicU64::new(1),
            requests: requests.clone(),
            metrics: crate::metrics::GatewayMetrics::new(requests, refusals.clone(), tunnel.link_report()),
            pending_pairings: PendingRequests::new(config.pairing.clone()),
            pairing_codes: PairingCodes::new(config.pairing.ttl),
            remote_codes: RemoteCodes::new(config.pairing.ttl, REMOTE_CODE_LINGER),
            sealed: SealedClients::load(config.home.join(crate::pairing::SEALED_FILE)),
            console: Default::default(),
            console_url: std::sync::OnceLock::new(),
            tunnel,
            token,
            bridge_token,
            metrics_token,
            paired,
            config,
        }
    }

    /// A pairing request or code was resolved: counted, and operators hear of it.
    pub(crate) fn pair_resolved(&self, resolution: &node_kit::protocol::PairResolution) {
        self.metrics.paired(resolution.outcome);
        self.hub.broadcast(node_kit::protocol::event::PAIR_RESOLVED, resolution);
    }

    /// What the bridge needs for its relay link: the URL, every paired node's routing-token hash and the
    /// live door-3 code's.
    pub(crate) fn tunnel_sync(&self) -> TunnelSync {
        let mut sync = self.tunnel.sync(&self.paired);
        sync.tokens.extend(self.remote_codes.routing_hash());
        sync
    }

    /// Tells the bridge the tunnel's settings changed (it passes a new token set to its relay at once).
    pub(crate) fn announce_tunnel(&self) {
        self.hub.broadcast(event::TUNNEL, self.tunnel_sync());
    }

    /// [`GatewayState::announce_tunnel`] once `delay` has passed (a code's routing token leaving the set).
    pub(crate) fn announce_tunnel_after(self: &Arc<Self>, delay: std::time::Duration) {
        let state = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            state.announce_tunnel();
        });
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
