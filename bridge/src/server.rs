//! The listener: binding, the checks made before any TLS work (the per-address handshake rate and the
//! connection caps), and one task per connection, all ended by one shutdown.

use crate::config::BridgeConfig;
use crate::connections::{ConnectionCaps, ConnectionCounts, ConnectionTable};
use crate::gateway_link;
use crate::identity::{self, IdentityStoreError, KeyLocation};
use crate::mdns::{Advertiser, MdnsError};
use crate::ratelimit::Limiter;
use crate::session;
use crate::shared::BridgeShared;
use crate::source::Source;
use crate::stats::REPORT_EVERY;
use certs::{Identity, KeyId, PeerKeyVerifier, Pin};
use node_kit::Client;
use node_kit::protocol::method;
use node_kit::refusals::{Acceptor, RefusalLog};
use node_kit::running::RunningBridge;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Identity(#[from] IdentityStoreError),
    #[error("cannot build the bridge's TLS configuration: {0}")]
    Tls(#[from] certs::IdentityError),
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind { addr: SocketAddr, source: io::Error, hint: &'static str },
}

/// Whether the bridge is being advertised over mDNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdnsStatus {
    Off,
    /// Advertised under this DNS-SD instance name.
    Advertising(String),
    /// Advertising failed (the bridge works without it: connection strings and typed addresses).
    Failed(String),
}

/// A bound bridge, ready to [`run`](Bridge::run).
pub struct Bridge {
    listener: TcpListener,
    shared: Arc<BridgeShared>,
    /// Kept for the relay link, which proves the bridge's key to the relay outside TLS.
    identity: Arc<Identity>,
    key_location: KeyLocation,
    /// The advertisement; `Ok(None)` when mDNS is off, `Err` with the reason when it failed.
    advertiser: Result<Option<Advertiser>, MdnsError>,
}

impl Bridge {
    /// Loads (or on first run creates) the bridge's key and binds the listener.
    pub async fn bind(config: BridgeConfig) -> Result<Bridge, BridgeError> {
        let home = config.home.clone();
        let store = config.key_store;
        // The keychain may block on D-Bus; keep it off the async threads.
        let (identity, key_location) = tokio::task::spawn_blocking(move || identity::load_or_create(&home, store))
            .await
            .expect("the key loader does not panic")?;
        // Any client key may open TLS (an unpaired node must be able to ask to pair); what it may do is
        // decided from its key ID once the handshake has proved it holds that key.
        let tls = identity.server_config(PeerKeyVerifier::new(Pin::AnyKey))?;
        let listener = TcpListener::bind(config.bind).await.map_err(|source| {
            let hint = if source.kind() == io::ErrorKind::AddrInUse {
                " (is another bridge running? `--bridge-port` picks another port)"
            } else {
                ""
            };
            BridgeError::Bind { addr: config.bind, source, hint }
        })?;
        let local =
            listener.local_addr().map_err(|source| BridgeError::Bind { addr: config.bind, source, hint: "" })?;
        let running = RunningBridge {
            bridge_id: identity.id(),
            bind: local.ip(),
            port: local.port(),
            interfaces: config.mdns.interfaces.clone(),
            pid: std::process::id(),
        };
        if let Err(e) = running.write(&config.home) {
            tracing::warn!(error = %e, "cannot record the running bridge; `lanyard pair` will not find it");
        }
        let advertiser = config
            .mdns
            .enabled
            .then(|| Advertiser::start(&config.mdns, &identity.id(), local.ip(), local.port()))
            .transpose()
            .inspect_err(|e| {
                tracing::warn!(error = %e, "not advertised over mDNS; nodes need the address or a connection string");
            });
        let shared = Arc::new(BridgeShared {
            bridge_id: identity.id(),
            bridge_key: identity.public_key(),
            counters: Default::default(),
            exchanges: Arc::new(tokio::sync::Semaphore::new(crate::sealed::MAX_EXCHANGES)),
            sealed_links: Default::default(),
            tls: TlsAcceptor::from(Arc::new(tls)),
            limiter: Limiter::new(&config.limits),
            connections: ConnectionTable::new(config.caps),
            refusals: RefusalLog::new("connections"),
            stop: CancellationToken::new(),
            config,
        });
        Ok(Bridge { listener, shared, identity: Arc::new(identity), key_location, advertiser })
    }

    pub fn mdns(&self) -> MdnsStatus {
        match &self.advertiser {
            Ok(None) => MdnsStatus::Off,
            Ok(Some(advertiser)) => MdnsStatus::Advertising(advertiser.instance().to_string()),
            Err(e) => MdnsStatus::Failed(e.to_string()),
        }
    }

    pub fn id(&self) -> KeyId {
        self.shared.bridge_id
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn key_location(&self) -> &KeyLocation {
        &self.key_location
    }

    /// The connection caps in force.
    pub fn caps(&self) -> ConnectionCaps {
        self.shared.connections.caps()
    }

    /// A handle that reads the live connection counts while the bridge runs.
    pub fn counts(&self) -> impl Fn() -> ConnectionCounts + Send + Sync + 'static {
        let connections = self.shared.connections.clone();
        move || connections.counts()
    }

    /// Serves until `shutdown` resolves, then closes every node connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop = self.shared.stop.clone();
        let port = self.local_addr().port();
        let accept = tokio::spawn(accept_loop(self.listener, self.shared.clone(), stop.clone()));
        let tunnel = tokio::spawn(crate::tunnel::run(self.shared.clone(), self.identity.clone(), stop.clone()));
        let sweeper = tokio::spawn(forget_idle_limits(self.shared.clone(), stop.clone()));
        let stats = tokio::spawn(report_stats_every(self.shared.clone(), stop.clone()));
        let shared = self.shared.clone();
        let every = shared.config.refusal_summary_every;
        let summaries = tokio::spawn({
            let stop = stop.clone();
            async move { shared.refusals.summarise_every(every, stop).await }
        });
        shutdown.await;
        tracing::info!("bridge shutting down");
        if let Ok(Some(advertiser)) = self.advertiser {
            advertiser.withdraw().await;
        }
        stop.cancel();
        let _ = accept.await;
        let _ = tunnel.await;
        let _ = sweeper.await;
        let _ = stats.await;
        let _ = summaries.await;
        self.shared.refusals.summarise();
        RunningBridge::remove_if_mine(&self.shared.config.home, &self.shared.bridge_id, port);
    }
}

/// Sends the counters to the gateway every [`REPORT_EVERY`] until `stop`, once more at the end; a gateway
/// that is away misses reports, nothing else.
async fn report_stats_every(shared: Arc<BridgeShared>, stop: CancellationToken) {
    let mut gateway: Option<Client> = None;
    let mut timer = tokio::time::interval(REPORT_EVERY);
    loop {
        let last = tokio::select! {
            _ = timer.tick() => false,
            () = stop.cancelled() => true,
        };
        let stats = shared.counters.snapshot(shared.refusals.since_start(), shared.limiter.hits());
        if gateway.as_ref().is_none_or(Client::is_closed) {
            gateway = gateway_link::bridge_client(&shared.config).await.ok();
        }
        if let Some(client) = &gateway {
            let params = serde_json::to_value(stats).expect("stats serialise");
            match tokio::time::timeout(REPORT_EVERY, client.request(method::BRIDGE_STATS, params)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "the gateway did not take the bridge's counters"),
                Err(_) => tracing::debug!("the gateway did not answer the bridge's counters in time"),
            }
        }
        if last {
            return;
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<BridgeShared>, stop: CancellationToken) {
    let mut acceptor = Acceptor::new(listener, &shared.refusals, stop.clone());
    while let Some((tcp, addr)) = acceptor.next().await {
        // No TLS yet, so no way to say why: a refused connection is dropped before any work.
        let source = Source::Lan(addr.ip());
        if shared.limiter.handshake(source).is_err() {
            shared.refusals.refused(source, "rate-limited");
            continue;
        }
        let admission = match shared.connections.admit(source, &stop) {
            Ok(admission) => admission,
            Err(refusal) => {
                shared.refusals.refused(source, refusal.as_str());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        acceptor.spawn(session::serve(Box::new(tcp), source, shared.clone(), admission));
    }
    acceptor.finish().await;
}

async fn forget_idle_limits(shared: Arc<BridgeShared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => shared.limiter.forget_idle(),
            () = stop.cancelled() => return,
        }
    }
}
