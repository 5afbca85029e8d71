//! Binding and accepting. The gateway holds the agent and every node's commands, so it listens on
//! loopback only: a non-loopback address is refused at startup, not merely discouraged. A bridge in the same
//! process (`lanyard up`) reaches it through in-process links instead, served as sockets are.

use crate::config::GatewayConfig;
use crate::connection;
use crate::home::GatewayToken;
use crate::pairing::PairedStore;
use crate::state::GatewayState;
use node_kit::link;
use node_kit::refusals::Acceptor;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "refusing to listen on {0}: the gateway runs the agent and must only be reachable from this \
         computer; bind a loopback address, 127.0.0.1 or ::1 (devices on the LAN reach it through the bridge)"
    )]
    NonLoopbackBind(SocketAddr),
    #[error("cannot listen on {addr}: {source}{hint}")]
    Bind { addr: SocketAddr, source: io::Error, hint: &'static str },
    #[error("cannot read or create the gateway token at {path}: {source}")]
    Token { path: PathBuf, source: io::Error },
    #[error(
        "cannot read the paired-node store at {path}: {source} (fix or move the file; it is never overwritten while unreadable)"
    )]
    Store { path: PathBuf, source: io::Error },
}

/// A bound gateway, ready to [`run`](Gateway::run).
pub struct Gateway {
    listeners: Vec<TcpListener>,
    console: Option<TcpListener>,
    /// In-process links, from a bridge in this process.
    links: (link::Connector, link::Listener),
    state: Arc<GatewayState>,
}

impl Gateway {
    /// Checks the configuration, creates the tokens on first run, binds every address, then loads the
    /// paired-node store.
    pub async fn bind(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let addrs = config.bind_addrs();
        if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(GatewayError::NonLoopbackBind(*addr));
        }
        // The tokens come before the ports: once a port accepts connections, a client of this home (the
        // bridge, the CLI) must find its token on disk. An existing token is only read, so a second
        // gateway on the same home changes nothing here before its bind fails.
        let token_at =
            |path: PathBuf| GatewayToken::load_or_create(&path).map_err(|source| GatewayError::Token { path, source });
        let token = token_at(crate::home::token_path(&config.home))?;
        let bridge_token = token_at(crate::home::bridge_token_path(&config.home))?;
        let metrics_token = token_at(crate::home::metrics_token_path(&config.home))?;
        let mut listeners = Vec::new();
        for addr in &addrs {
            match TcpListener::bind(addr).await {
                Ok(listener) => listeners.push(listener),
                // ::1 is missing on hosts without IPv6; the IPv4 loopback is enough.
                Err(e) if config.bind.is_empty() && addr.is_ipv6() && e.kind() != io::ErrorKind::AddrInUse => {
                    tracing::debug!(error = %e, "no IPv6 loopback; listening on 127.0.0.1 only");
                }
                Err(source) => {
                    let hint = if source.kind() == io::ErrorKind::AddrInUse {
                        " (is Lanyard already running here? `lanyard up --port` picks another port)"
                    } else {
                        ""
                    };
                    return Err(GatewayError::Bind { addr: *addr, source, hint });
                }
            }
        }
        // The console listens on the IPv4 loopback only: its `Host` check names exactly that listener.
        let console = match config.console_port {
            Some(port) => {
                let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
                let listener = TcpListener::bind(addr).await.map_err(|source| {
                    let hint = if source.kind() == io::ErrorKind::AddrInUse {
                        " (the console's port; `lanyard up --console-port` picks another)"
                    } else {
                        ""
                    };
                    GatewayError::Bind { addr, source, hint }
                })?;
                Some(listener)
            }
            None => None,
        };
        // The store is read only once the ports are ours: loading it clears half-written files, which a
        // second gateway on the same home must not do to the first one's writes; it stops at the bind.
        let store_path = crate::home::paired_store_path(&config.home);
        let store =
            PairedStore::load(store_path.clone()).map_err(|source| GatewayError::Store { path: store_path, source })?;
        let state = Arc::new(GatewayState::new(
            config,
            [token, bridge_token, metrics_token],
            store,
            crate::methods::Method::NAMES,
        ));
        if let Some(addr) = console.as_ref().and_then(|l| l.local_addr().ok()) {
            let _ = state.console_url.set(format!("http://{addr}"));
        }
        Ok(Gateway { listeners, console, links: link::listen(), state })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The claude binary the agent will run, or why there is none (with what to install).
    pub fn claude_path(&self) -> Result<PathBuf, node_kit::ErrorShape> {
        self.state.agent.claude_path()
    }

    /// The `ws://` URL of the first listener.
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addrs()[0])
    }

    /// Opens in-process links to this gateway, for a bridge in the same process: each is served as a socket
    /// would be, from the `connect` handshake and its token check on.
    pub fn link_connector(&self) -> link::Connector {
        self.links.0.clone()
    }

    /// The console's `http://` address, when it is served.
    pub fn console_url(&self) -> Option<String> {
        self.state.console_url.get().cloned()
    }

    /// Serves until `shutdown` resolves, then closes every connection and ends every claude process.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let stop = CancellationToken::new();
        let mut accepts = JoinSet::new();
        if let Some(listener) = self.console {
            let gateway_url = format!("ws://{}", self.listeners[0].local_addr().expect("a bound listener"));
            accepts.spawn(crate::console::serve(listener, self.state.clone(), gateway_url, stop.clone()));
        }
        for listener in self.listeners {
            let state = self.state.clone();
            let stop = stop.clone();
            accepts.spawn(accept_loop(listener, state, stop));
        }
        let (_, links) = self.links;
        accepts.spawn(accept_links(links, self.state.clone(), stop.clone()));
        let state = self.state.clone();
        let summaries = tokio::spawn({
            let stop = stop.clone();
            async move { state.refusals.summarise_every(state.config.refusal_summary_every, stop).await }
        });
        let last_seen = tokio::spawn(save_last_seen_every(self.state.clone(), stop.clone()));
        shutdown.await;
        tracing::info!("gateway shutting down");
        stop.cancel();
        while accepts.join_next().await.is_some() {}
        let _ = summaries.await;
        let _ = last_seen.await;
        self.state.refusals.summarise();
        save_last_seen(&self.state);
        self.state.agent.shutdown().await;
    }
}

/// Writes the nodes' last-seen times once a minute when they changed: connecting never waits for a write.
async fn save_last_seen_every(state: Arc<GatewayState>, stop: CancellationToken) {
    let every = state.config.last_seen_save_every;
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = timer.tick() => {
                let state = state.clone();
                let _ = tokio::task::spawn_blocking(move || save_last_seen(&state)).await;
            }
            () = stop.cancelled() => return,
        }
    }
}

fn save_last_seen(state: &GatewayState) {
    if let Err(e) = state.paired.save_last_seen() {
        tracing::warn!(error = %e, "cannot record when nodes were last seen");
    }
}

/// Serves the in-process links opened until `stop`, then waits for them to end.
async fn accept_links(mut links: link::Listener, state: Arc<GatewayState>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            Some(end) = links.accept() => {
                connections.spawn(connection::serve_link(end, state.clone(), stop.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stop.cancelled() => break,
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn accept_loop(listener: TcpListener, state: Arc<GatewayState>, stop: CancellationToken) {
    let mut acceptor = Acceptor::new(listener, &state.refusals, stop.clone());
    while let Some((stream, addr)) = acceptor.next().await {
        let _ = stream.set_nodelay(true);
        acceptor.spawn(connection::serve(stream, addr, state.clone(), stop.clone()));
    }
    acceptor.finish().await;
}
