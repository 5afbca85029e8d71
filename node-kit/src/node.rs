//! A paired node's session with its bridge, kept alive across bridge restarts, gateway restarts, address
//! changes and network blips: when the connection drops it looks for the bridge (where discovery last saw
//! it, then the last address that worked) and reconnects with exponential backoff and jitter, always with
//! the pinned bridge key (there is no fallback to an unpinned or plaintext connection).
//!
//! Off the LAN it takes the relay the owner set up ([`crate::relay`]): LAN first, the relay when the LAN
//! gives no answer within a short bound, and back to the LAN as soon as it answers again. Both paths carry
//! the same TLS session with the same pinned key; a run in progress moves with the node through
//! `agent.attach` catch-up, so no event is lost or repeated.
//!
//! ```no_run
//! # async fn demo(identity: std::sync::Arc<certs::Identity>, paired: node_kit::pairing::PairedBridge)
//! # -> Result<(), node_kit::ClientError> {
//! use node_kit::node::Node;
//! use node_kit::protocol::AgentParams;
//! let node = Node::builder(identity, paired).display_name("Ada's phone").connect().await?;
//! let run = node.agent(AgentParams::new("What's on my calendar?")).await?;
//! println!("{}", run.outcome().await?.result);
//! # Ok(()) }
//! ```

use crate::client::{AgentRun, Client, ClientBuilder, ClientError, CommandHandler, Relink};
use crate::discovery::{Discovery, DiscoveryError, DiscoveryEvent};
use crate::pairing::{PairedBridge, RelayAccess};
use crate::protocol::{
    AgentParams, AppState, AttachParams, CancelResult, ErrorCode, ErrorShape, HistoryPage, HistoryParams, NodeAdvert,
    PairRenamed, PendingPrompts, PresenceBeacon, RespondParams, RespondResult, RoutingToken, SessionList, event,
    method,
};
use crate::relay::{RelayError, RelayRoute};
use certs::{Identity, KeyId, Pin};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Reconnect delays: doubling from `initial` up to `max`, each scaled by a random factor in [0.5, 1) so
/// that many nodes do not return at the same instant after a bridge restart.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(15) }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.initial.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        let mut byte = [0u8; 1];
        getrandom::fill(&mut byte).expect("the OS random source works");
        full.mul_f64(0.5 + f64::from(byte[0]) / 512.0)
    }
}

/// The state of a node's link to its bridge.
#[derive(Clone)]
pub enum Link {
    Connected(Client),
    /// Between connections; the node is trying again. Carries what the bridge said when it closed the
    /// last connection, if it said anything (`GATEWAY_UNAVAILABLE` while the gateway restarts).
    Reconnecting(Option<ErrorShape>),
    /// Away from the LAN, the relay answered that the bridge is not linked to it (the computer is off,
    /// asleep or offline). The node keeps trying, on both paths.
    BridgeOffline,
    /// The node gave up because the bridge no longer knows this device: the owner revoked its pairing (the
    /// bridge's `NOT_PAIRED`, or the relay's close 4003 `revoked`). Only pairing again helps. Carries what
    /// was said.
    Unpaired(ErrorShape),
    /// The node gave up: the bridge refused it for good for another reason, or the node was closed.
    Stopped(Arc<ClientError>),
}

/// One change of a node's link, as it happens, for a person to read ([`Node::changes`]). [`Link`] is the
/// state to act on; this is its history, with where the node went and why.
#[derive(Debug, Clone)]
pub enum LinkChange {
    /// Connected, again or on another path: on the LAN at the address `via`, or through the relay at the
    /// URL `via`.
    Connected { path: Path, via: String },
    /// The connection dropped; `cause` is the last `error` the bridge sent before it closed, if any.
    Lost { cause: Option<ErrorShape> },
    /// A round of reconnecting failed with `error`; the next starts within `next_attempt_in` (sooner when
    /// discovery sees the bridge).
    Retrying { error: Arc<ClientError>, next_attempt_in: Duration },
    /// Away from the LAN, the relay says the bridge is not linked to it; the next try is within
    /// `next_attempt_in`.
    BridgeOffline { next_attempt_in: Duration },
    /// Final: as [`Link::Unpaired`].
    Unpaired(ErrorShape),
    /// Final: as [`Link::Stopped`].
    Stopped(Arc<ClientError>),
}

/// Link changes kept for a slow reader of [`Node::changes`] before it starts missing them.
const CHANGES_KEPT: usize = 64;

/// Which way a node's connection goes.
pub use crate::protocol::LinkPath as Path;

pub struct NodeBuilder {
    client: ClientBuilder,
    bridge: PairedBridge,
    backoff: Backoff,
    discovery: Option<Arc<dyn Discovery>>,
    first_connect: Duration,
    paths: PathTimes,
}

/// How the node chooses between the LAN and the relay.
#[derive(Debug, Clone, Copy)]
struct PathTimes {
    /// With a relay to fall back on, how long the LAN gets to answer.
    lan_bound: Duration,
    /// On the relay, how often to look for the LAN again (discovery seeing the bridge also triggers it).
    lan_retry: Duration,
}

impl Default for PathTimes {
    fn default() -> Self {
        PathTimes { lan_bound: Duration::from_secs(2), lan_retry: Duration::from_secs(10) }
    }
}

impl NodeBuilder {
    /// With a relay to fall back on, how long the LAN gets to answer before the relay is tried (2 s).
    pub fn relay_after(mut self, bound: Duration) -> Self {
        self.paths.lan_bound = bound;
        self
    }

    /// On the relay, how often to try the LAN again (10 s; discovery seeing the bridge tries at once).
    pub fn lan_retry_every(mut self, every: Duration) -> Self {
        self.paths.lan_retry = every;
        self
    }

    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.client = self.client.display_name(name);
        self
    }

    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.client = self.client.platform(platform);
        self
    }

    /// Offer commands (`screen.*` and the node's own) answered by `handler`.
    pub fn commands(mut self, advert: NodeAdvert, handler: impl CommandHandler) -> Self {
        self.client = self.client.node_with(advert, Arc::new(handler));
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Where to look for the bridge when it is not at its last address (typically [`MdnsDiscovery`]).
    /// Found addresses are tried first, then the last one that worked; only the pinned key is accepted.
    /// With discovery, [`NodeBuilder::connect`] keeps looking for up to 10 s before giving up.
    ///
    /// [`MdnsDiscovery`]: crate::discovery::MdnsDiscovery
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.discovery = Some(Arc::new(discovery));
        self.first_connect = self.first_connect.max(Duration::from_secs(10));
        self
    }

    /// How long [`NodeBuilder::connect`] keeps trying before it returns the last error.
    pub fn first_connect_timeout(mut self, timeout: Duration) -> Self {
        self.first_connect = timeout;
        self
    }

    /// Time allowed for TCP, TLS, WebSocket and `connect` at one address.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.handshake_timeout(timeout);
        self
    }

    /// How often to ping the bridge; two silent intervals count as a lost connection.
    pub fn keepalive(mut self, interval: Duration) -> Self {
        self.client = self.client.keepalive(Some(interval));
        self
    }

    /// Connects (retrying within the first-connect time), then keeps the connection alive in the background.
    pub async fn connect(self) -> Result<Node, ClientError> {
        let candidates = Candidates::start(self.discovery.as_deref(), self.bridge.bridge_id)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let inner = Arc::new(NodeInner {
            link: watch::channel(Link::Reconnecting(None)).0,
            changes: tokio::sync::broadcast::channel(CHANGES_KEPT).0,
            name: watch::channel(None).0,
            app_state: Mutex::new(AppState::Foreground),
            bridge: Mutex::new(self.bridge),
            candidates,
            stop: CancellationToken::new(),
            paths: self.paths,
            path: Mutex::new(Path::Lan),
            token_refused: Default::default(),
        });
        let deadline = tokio::time::Instant::now() + self.first_connect;
        let first = inner.reconnect(&self.client, self.backoff, Some(deadline), 0).await?;
        inner.link.send_replace(Link::Connected(first.clone()));
        tokio::spawn(supervise(inner.clone(), self.client, self.backoff, first));
        Ok(Node { _guard: Arc::new(StopOnDrop(inner.stop.clone())), inner })
    }
}

/// Addresses discovery currently reports for the pinned bridge (those whose hints do not rule it out).
struct Candidates {
    found: Mutex<Vec<(String, Vec<String>)>>,
    changed: tokio::sync::Notify,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Candidates {
    fn drop(&mut self) {
        if let Some(task) = &self.watcher {
            task.abort();
        }
    }
}

impl Candidates {
    fn start(discovery: Option<&dyn Discovery>, pinned: KeyId) -> Result<Arc<Candidates>, DiscoveryError> {
        let stream = discovery.map(Discovery::watch).transpose()?;
        Ok(Arc::new_cyclic(|weak: &std::sync::Weak<Candidates>| {
            let watcher = stream.map(|mut stream| {
                let weak = weak.clone();
                tokio::spawn(async move {
                    while let Some(event) = stream.next().await {
                        let Some(candidates) = weak.upgrade() else { return };
                        candidates.update(event, &pinned);
                    }
                })
            });
            Candidates { found: Mutex::new(Vec::new()), changed: tokio::sync::Notify::new(), watcher }
        }))
    }

    fn update(&self, event: DiscoveryEvent, pinned: &KeyId) {
        let mut found = self.found.lock().expect("candidates lock");
        match event {
            DiscoveryEvent::Found(bridge) if bridge.hint.may_be(pinned) => {
                tracing::debug!(instance = %bridge.instance, addresses = ?bridge.addresses, "discovered the bridge");
                found.retain(|(instance, _)| *instance != bridge.instance);
                found.push((bridge.instance, bridge.addresses));
                drop(found);
                self.changed.notify_one();
            }
            DiscoveryEvent::Found(_) => {}
            DiscoveryEvent::Lost { instance } => found.retain(|(known, _)| *known != instance),
        }
    }

    /// Every address to try, newest discovery first, then `last` (the address that worked last).
    fn addresses(&self, last: &str) -> Vec<String> {
        let found = self.found.lock().expect("candidates lock");
        let mut all: Vec<String> = found.iter().rev().flat_map(|(_, addresses)| addresses.iter().cloned()).collect();
        all.push(last.to_string());
        let mut seen = std::collections::HashSet::new();
        all.retain(|a| seen.insert(a.clone()));
        all
    }

    /// Sleeps `delay`, cut short when discovery reports the bridge (then a short jittered pause, so that
    /// many nodes hearing the same announcement do not arrive at once).
    async fn wait(&self, delay: Duration) {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.changed.notified() => {
                tokio::time::sleep(Backoff::default().delay(0).min(delay)).await;
            }
        }
    }
}

struct NodeInner {
    link: watch::Sender<Link>,
    changes: tokio::sync::broadcast::Sender<LinkChange>,
    /// The name the computer lists this device by: its pairing record's, from each `hello-ok` and each
    /// `pair.renamed` event.
    name: watch::Sender<Option<String>>,
    app_state: Mutex<AppState>,
    /// The pairing, with the address that worked last.
    bridge: Mutex<PairedBridge>,
    candidates: Arc<Candidates>,
    stop: CancellationToken,
    paths: PathTimes,
    /// The path of the live connection (or of the last one).
    path: Mutex<Path>,
    /// The relay refused the routing token: get a new one at home.
    token_refused: std::sync::atomic::AtomicBool,
}

impl NodeInner {
    /// One try at reaching the bridge: the LAN, then the relay if the node has a route to it. A LAN
    /// connection also picks up a routing token when the owner has turned the tunnel on.
    async fn connect_round(&self, builder: &ClientBuilder) -> Result<Client, ClientError> {
        let Some(route) = self.route() else {
            let client = self.connect_lan(builder).await?;
            self.use_path(Path::Lan, &client).await;
            return Ok(client);
        };
        match tokio::time::timeout(self.paths.lan_bound, self.connect_lan(builder)).await {
            Ok(Ok(client)) => {
                self.use_path(Path::Lan, &client).await;
                return Ok(client);
            }
            Ok(Err(e)) if !e.is_retryable() => return Err(e),
            Ok(Err(e)) => tracing::debug!(error = %e, "the bridge is not on this network; trying the relay"),
            Err(_) => tracing::debug!("the bridge gave no answer on this network in time; trying the relay"),
        }
        match connect_paired(&builder.clone().relay(route)).await {
            Ok(client) => {
                self.use_path(Path::Relay, &client).await;
                Ok(client)
            }
            Err(e) => {
                if matches!(e, ClientError::Relay(RelayError::UnknownToken)) {
                    // Replaced, revoked, or not passed on to the relay yet: kept, and renewed at home.
                    self.token_refused.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    /// Tells [`Node::changes`] readers, if there are any.
    fn changed(&self, change: LinkChange) {
        let _ = self.changes.send(change);
    }

    /// Takes this device's name from the connection's `hello-ok`, then from each `pair.renamed` event on it
    /// (the owner renamed the device), until the connection ends.
    fn follow_name(&self, client: &Client) {
        if let Some(paired) = &client.hello().paired {
            self.name.send_replace(Some(paired.device.name.clone()));
        }
        let mut events = client.subscribe();
        let name = self.name.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(frame) if frame.event == event::PAIR_RENAMED => {
                        match serde_json::from_value::<PairRenamed>(frame.payload) {
                            Ok(renamed) => {
                                name.send_replace(Some(renamed.name));
                            }
                            Err(e) => tracing::debug!(error = %e, "unreadable pair.renamed event"),
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Ends the node's life with `e`: unpaired when the bridge no longer knows the device, stopped else.
    fn give_up(&self, e: ClientError) {
        match e {
            ClientError::Handshake(shape) | ClientError::Remote(shape) if shape.code == ErrorCode::NotPaired => {
                tracing::warn!(error = %shape, "this device is no longer paired with the bridge; not reconnecting");
                self.link.send_replace(Link::Unpaired(shape.clone()));
                self.changed(LinkChange::Unpaired(shape));
            }
            e => {
                let e = Arc::new(e);
                self.link.send_replace(Link::Stopped(e.clone()));
                self.changed(LinkChange::Stopped(e));
            }
        }
    }

    fn route(&self) -> Option<RelayRoute> {
        let bridge = self.bridge.lock().expect("bridge lock");
        let relay = bridge.relay.as_ref()?;
        Some(RelayRoute { url: relay.url.clone(), bridge_id: bridge.bridge_id, token: relay.token.clone() })
    }

    /// Records the path of a new connection; at home, fetches a routing token if the owner turned the
    /// tunnel on (or moved it) since the node last had one.
    async fn use_path(&self, path: Path, client: &Client) {
        *self.path.lock().expect("path lock") = path;
        tracing::info!(?path, "connected to the bridge");
        self.follow_name(client);
        let via = match path {
            Path::Lan => self.bridge.lock().expect("bridge lock").address.clone(),
            Path::Relay => self.route().map(|route| route.url).unwrap_or_default(),
        };
        self.changed(LinkChange::Connected { path, via });
        let Some(url) = client.hello().relay_url.clone().filter(|_| path == Path::Lan) else { return };
        let current = self.bridge.lock().expect("bridge lock").relay.as_ref().is_some_and(|relay| relay.url == url);
        if current && !self.token_refused.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match client.request(method::TUNNEL_TOKEN, serde_json::json!({})).await.map(serde_json::from_value) {
            Ok(Ok(RoutingToken { token, relay_url })) => {
                let url = relay_url.unwrap_or(url);
                tracing::info!(relay = %url, "got a routing token for the relay");
                self.bridge.lock().expect("bridge lock").relay = Some(RelayAccess { url, token });
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "unreadable routing token"),
            Err(e) => tracing::warn!(error = %e, "no routing token for the relay"),
        }
    }

    /// While on the relay: waits until the LAN answers again (tried every `lan_retry`, and at once when
    /// discovery sees the bridge), and returns that connection.
    async fn back_to_lan(&self, builder: &ClientBuilder) -> Client {
        loop {
            self.candidates.wait(self.paths.lan_retry).await;
            if let Ok(Ok(client)) = tokio::time::timeout(self.paths.lan_bound, self.connect_lan(builder)).await {
                self.use_path(Path::Lan, &client).await;
                return client;
            }
        }
    }

    /// One pass over every address that may reach the bridge. The first that answers with the pinned
    /// key and knows this node wins and becomes the last known address; an impostor is skipped.
    async fn connect_lan(&self, builder: &ClientBuilder) -> Result<Client, ClientError> {
        let last = self.bridge.lock().expect("bridge lock").address.clone();
        let mut failure = None;
        for address in self.candidates.addresses(&last) {
            match connect_paired(&builder.clone().bridge_address(address.clone())).await {
                Ok(client) => {
                    if address != last {
                        tracing::info!(%address, "the bridge is at a new address");
                        self.bridge.lock().expect("bridge lock").address = address;
                    }
                    return Ok(client);
                }
                Err(e) => {
                    if matches!(e, ClientError::WrongBridgeKey { .. }) {
                        tracing::warn!(error = %e, "skipping an address that is not the paired bridge");
                    } else {
                        tracing::debug!(%address, error = %e, "bridge not reachable here");
                    }
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    failure = Some(e);
                }
            }
        }
        Err(failure.unwrap_or(ClientError::NotConnected))
    }

    /// Connection rounds from backoff step `attempt` on, waiting between them (cut short when discovery
    /// reports the bridge), until one connects. Gives up on an error that retrying cannot fix, at
    /// `deadline`, or when the node is closed (`Closed`).
    async fn reconnect(
        &self,
        builder: &ClientBuilder,
        backoff: Backoff,
        deadline: Option<tokio::time::Instant>,
        mut attempt: u32,
    ) -> Result<Client, ClientError> {
        loop {
            let e = match self.connect_round(builder).await {
                Ok(client) => return Ok(client),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            let mut delay = backoff.delay(attempt);
            // A relay that refused for a limit named its wait (`Retry-After`): never sooner than that.
            if let ClientError::Relay(RelayError::Busy { retry_after: Some(wait), .. }) = &e {
                delay = delay.max(*wait);
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                delay = delay.min(left);
            }
            if matches!(e, ClientError::BridgeOffline) {
                self.link.send_replace(Link::BridgeOffline);
                self.changed(LinkChange::BridgeOffline { next_attempt_in: delay });
            } else {
                self.changed(LinkChange::Retrying { error: Arc::new(e), next_attempt_in: delay });
            }
            tracing::debug!(attempt, ?delay, "no bridge reached; will retry");
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = self.candidates.wait(delay) => {}
                () = self.stop.cancelled() => return Err(ClientError::Closed),
            }
        }
    }
}

/// A paired node's session. Cheap to clone; reconnecting stops when the last clone is dropped.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
    _guard: Arc<StopOnDrop>,
}

struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Relink for Node {
    fn connected(&self, timeout: Duration) -> BoxFuture<'_, Result<Client, ClientError>> {
        Box::pin(Node::connected(self, timeout))
    }
}

impl Node {
    /// A session with the bridge `paired` describes, as the node `identity`; only that bridge key is accepted.
    pub fn builder(identity: Arc<Identity>, paired: PairedBridge) -> NodeBuilder {
        let client = Client::bridge(paired.address.clone(), &identity, Pin::Key(paired.bridge_id))
            .expect("an Ed25519 identity always makes a TLS configuration");
        NodeBuilder {
            client,
            bridge: paired,
            backoff: Backoff::default(),
            discovery: None,
            first_connect: Duration::ZERO,
            paths: PathTimes::default(),
        }
    }

    /// The pairing with the address that worked last: save it, so the next start tries there first.
    pub fn bridge(&self) -> PairedBridge {
        self.inner.bridge.lock().expect("bridge lock").clone()
    }

    /// The path of the live connection (or of the last one): the LAN or the relay.
    pub fn path(&self) -> Path {
        *self.inner.path.lock().expect("path lock")
    }

    /// Watch the link: connected, reconnecting, unpaired, stopped.
    pub fn link(&self) -> watch::Receiver<Link> {
        self.inner.link.subscribe()
    }

    /// Every change of the link from now on, one event each: connected (on which path, where), lost (and
    /// why), a failed round (and when the next is), bridge offline, unpaired, stopped. For a person to
    /// read; [`Node::link`] is the state to act on.
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<LinkChange> {
        self.inner.changes.subscribe()
    }

    /// The name the computer lists this device by, as of the last `hello-ok` or `pair.renamed` event: a
    /// rename by the owner reaches a connected node at once. `None` before the first connection.
    pub fn name(&self) -> watch::Receiver<Option<String>> {
        self.inner.name.subscribe()
    }

    /// The live connection, or `NotConnected` while reconnecting.
    pub fn client(&self) -> Result<Client, ClientError> {
        match &*self.inner.link.borrow() {
            Link::Connected(client) if !client.is_closed() => Ok(client.clone()),
            Link::BridgeOffline => Err(ClientError::BridgeOffline),
            Link::Unpaired(e) => Err(ClientError::Remote(e.clone())),
            Link::Stopped(e) => Err(ClientError::Protocol(format!("the node stopped: {e}"))),
            _ => Err(ClientError::NotConnected),
        }
    }

    /// Waits until connected (or stopped), at most `timeout`.
    pub async fn connected(&self, timeout: Duration) -> Result<Client, ClientError> {
        let mut link = self.link();
        let wait = link.wait_for(|l| match l {
            Link::Connected(c) => !c.is_closed(),
            Link::Stopped(_) | Link::Unpaired(_) => true,
            Link::Reconnecting(_) | Link::BridgeOffline => false,
        });
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => self.client(),
            _ => Err(ClientError::NotConnected),
        }
    }

    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.client()?.request(method, params).await
    }

    /// Sends a prompt (typed, or a voice transcript with `AgentChannel::Voice`); events stream as they come.
    /// If the link drops mid-turn, the run waits for the node to reconnect and attaches again after the
    /// last event it handed out (within [`crate::client::REATTACH_WITHIN`]): nothing is lost or repeated.
    pub async fn agent(&self, params: AgentParams) -> Result<AgentRun, ClientError> {
        Ok(self.client()?.agent(params).await?.reattach_through(Arc::new(self.clone())))
    }

    /// Follows a run from after `after_seq`, as [`Client::attach`], reattaching as [`Node::agent`] does.
    pub async fn attach(&self, params: AttachParams) -> Result<AgentRun, ClientError> {
        Ok(self.client()?.attach(params).await?.reattach_through(Arc::new(self.clone())))
    }

    /// Answers a prompt; see [`Client::respond`].
    pub async fn respond(&self, params: RespondParams) -> Result<RespondResult, ClientError> {
        self.client()?.respond(params).await
    }

    /// Stops a run; see [`Client::cancel`].
    pub async fn cancel(&self, run_id: impl Into<String>) -> Result<CancelResult, ClientError> {
        self.client()?.cancel(run_id).await
    }

    /// The prompts waiting for this node's answer.
    pub async fn pending(&self) -> Result<PendingPrompts, ClientError> {
        self.client()?.pending().await
    }

    /// This node's conversations.
    pub async fn sessions(&self) -> Result<SessionList, ClientError> {
        self.client()?.sessions().await
    }

    /// One of this node's conversations so far.
    pub async fn history(&self, params: HistoryParams) -> Result<HistoryPage, ClientError> {
        self.client()?.history(params).await
    }

    /// Publishes an event to the computer's operators.
    pub async fn event(&self, event: &str, payload: Value) -> Result<(), ClientError> {
        let params = serde_json::json!({ "event": event, "payload": payload });
        self.request(method::NODE_EVENT, params).await.map(drop)
    }

    /// Tells the bridge the app went to the background or came back. While backgrounded the bridge
    /// answers `screen.*` itself. Remembered, and sent again after a reconnect.
    pub async fn set_app_state(&self, state: AppState) -> Result<(), ClientError> {
        *self.inner.app_state.lock().expect("app state lock") = state;
        send_app_state(&self.client()?, state).await
    }

    /// Stops reconnecting and closes the connection.
    pub fn close(&self) {
        self.inner.stop.cancel();
    }
}

/// Connects and checks that the bridge knows this node as paired: a bridge that no longer does (the
/// pairing was revoked) lets the key in only to pair again, which is a refusal for a paired session.
async fn connect_paired(builder: &ClientBuilder) -> Result<Client, ClientError> {
    let client = builder.clone().connect().await?;
    if client.hello().paired.is_none() {
        return Err(ClientError::Handshake(ErrorShape::new(
            ErrorCode::NotPaired,
            "the bridge does not know this device (its pairing was revoked or never approved); pair again",
        )));
    }
    Ok(client)
}

async fn send_app_state(client: &Client, state: AppState) -> Result<(), ClientError> {
    let beacon = PresenceBeacon { state: Some(state), ..Default::default() };
    let params = serde_json::to_value(beacon).expect("beacons serialise");
    client.request(method::SYSTEM_EVENT, params).await.map(drop)
}

/// Waits for each connection to end and replaces it, until stopped or refused for good.
async fn supervise(inner: Arc<NodeInner>, builder: ClientBuilder, backoff: Backoff, mut client: Client) {
    loop {
        let on_relay = *inner.path.lock().expect("path lock") == Path::Relay;
        // Biased: when the LAN comes back, the bridge replaces the relayed session with the new one, so the
        // relayed client closes just as the LAN one is ready; the ready one must win.
        tokio::select! {
            biased;
            () = inner.stop.cancelled() => {
                inner.give_up(ClientError::Closed);
                return;
            }
            lan = inner.back_to_lan(&builder), if on_relay => {
                // The LAN is back: move there, and close the relayed connection (a run following it
                // attaches again on the new one).
                tracing::info!("the bridge is reachable on this network again; leaving the relay");
                let relayed = std::mem::replace(&mut client, lan);
                inner.link.send_replace(Link::Connected(client.clone()));
                relayed.close();
                continue;
            }
            () = client.closed() => {}
        }
        let cause = client.last_error();
        inner.changed(LinkChange::Lost { cause: cause.clone() });
        if let Some(revoked) = cause.clone().filter(|e| e.code == ErrorCode::NotPaired) {
            inner.give_up(ClientError::Remote(revoked));
            return;
        }
        tracing::info!(code = ?cause.as_ref().map(|e| e.code), "connection to the bridge lost; reconnecting");
        inner.link.send_replace(Link::Reconnecting(cause));
        // A short jittered pause first, so that nodes dropped together by a bridge restart spread out.
        let reconnected = tokio::select! {
            () = inner.candidates.wait(backoff.delay(0)) => inner.reconnect(&builder, backoff, None, 1).await,
            () = inner.stop.cancelled() => Err(ClientError::Closed),
        };
        client = match reconnected {
            Ok(client) => client,
            Err(e) => {
                if !inner.stop.is_cancelled() && !e.is_unpaired() {
                    tracing::warn!(error = %e, "the bridge refused this node; not reconnecting");
                }
                inner.give_up(e);
                return;
            }
        };
        let state = *inner.app_state.lock().expect("app state lock");
        if state == AppState::Background {
            let _ = send_app_state(&client, state).await;
        }
        inner.link.send_replace(Link::Connected(client.clone()));
        tracing::info!("reconnected to the bridge");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        for attempt in 0..40 {
            let full = Duration::from_millis(100).saturating_mul(1 << attempt.min(16)).min(Duration::from_secs(2));
            let delay = backoff.delay(attempt);
            assert!(delay >= full / 2 && delay < full, "attempt {attempt}: {delay:?}");
        }
    }
}
