//! State shared by every connection.

use crate::agent::AgentRunner;
use crate::config::GatewayConfig;
use crate::home::GatewayToken;
use crate::hub::ConnectionHub;
use crate::idempotency::IdempotencyCache;
use crate::methods::Method;
use crate::nodes::NodeRegistry;
use crate::pairing::{PairedStore, PairingCodes, PendingRequests};
use crate::presence::Presence;
use node_kit::refusals::RefusalLog;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub(crate) struct GatewayState {
    pub config: GatewayConfig,
    /// Operators present this one.
    pub token: GatewayToken,
    /// The bridge presents this one; only it may speak for nodes.
    pub bridge_token: GatewayToken,
    pub paired: PairedStore,
    pub pending_pairings: PendingRequests,
    /// The live one-time code of door 2, if any.
    pub pairing_codes: PairingCodes,
    pub agent: Arc<AgentRunner>,
    pub nodes: NodeRegistry,
    pub presence: Presence,
    pub hub: ConnectionHub,
    /// Idempotency keys of `agent` runs.
    pub agent_runs: IdempotencyCache,
    /// Idempotency keys of `node.invoke` calls.
    pub invokes: IdempotencyCache,
    pub started: Instant,
    /// Refused connects, summed up once a minute instead of a line each.
    pub refusals: RefusalLog,
    next_conn_id: AtomicU64,
    /// Requests received, by method (known names only, so the map stays bounded).
    /// One counter per name in `Method::NAMES`, then one for unknown names: no lock on the request path.
    requests: Vec<AtomicU64>,
}

impl GatewayState {
    pub fn new(config: GatewayConfig, token: GatewayToken, bridge_token: GatewayToken, paired: PairedStore) -> Self {
        let cache = || IdempotencyCache::new(config.idempotency_ttl, config.idempotency_capacity);
        GatewayState {
            agent: AgentRunner::new(config.agent.clone()),
            nodes: NodeRegistry::new(),
            presence: Presence::new(),
            hub: ConnectionHub::new(),
            agent_runs: cache(),
            invokes: cache(),
            started: Instant::now(),
            refusals: RefusalLog::new("gateway connections"),
            next_conn_id: AtomicU64::new(1),
            requests: (0..=Method::NAMES.len()).map(|_| AtomicU64::new(0)).collect(),
            pending_pairings: PendingRequests::new(config.pairing.clone()),
            pairing_codes: PairingCodes::new(config.pairing.ttl),
            token,
            bridge_token,
            paired,
            config,
        }
    }

    pub fn count_request(&self, method: &str) {
        let slot = Method::NAMES.iter().position(|m| *m == method).unwrap_or(Method::NAMES.len());
        self.requests[slot].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests_by_method(&self) -> BTreeMap<String, u64> {
        let names = Method::NAMES.iter().copied().chain(["(unknown)"]);
        names
            .zip(&self.requests)
            .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| (name.to_string(), count))
            .collect()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}
