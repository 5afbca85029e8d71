//! What every connection of one bridge shares. Its own module so the listener and the session code both
//! depend on it, not on each other.

use crate::config::BridgeConfig;
use crate::connections::ConnectionTable;
use crate::ratelimit::Limiter;
use crate::source::Source;
use certs::KeyId;
use node_kit::refusals::RefusalLog;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub(crate) struct BridgeShared {
    pub config: BridgeConfig,
    pub bridge_id: KeyId,
    /// The bridge's Ed25519 public key (its ID is the hash of it), for sealed clients' pairing answer.
    pub bridge_key: [u8; 32],
    pub tls: TlsAcceptor,
    pub limiter: Limiter,
    pub connections: Arc<ConnectionTable>,
    /// Connections turned away, summed up once a minute instead of a line each.
    pub refusals: RefusalLog<Source>,
    /// Cancelled when the bridge stops: ends every connection, LAN or relayed.
    pub stop: CancellationToken,
    /// Handshakes, connections and bytes, for `bridge.stats`.
    pub counters: crate::stats::Counters,
    /// Places for the sealed HTTP contract's exchanges ([`crate::sealed::MAX_EXCHANGES`]).
    pub exchanges: Arc<Semaphore>,
    /// The gateway links of sealed clients with a command running.
    pub sealed_links: Arc<crate::sealed::SealedLinks>,
}
