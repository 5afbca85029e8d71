//! A builder-style client for the gateway protocol, used by the CLI, by nodes and by tests.
//!
//! One reader task routes every incoming frame: answers to the caller waiting on that request id, `agent`
//! events to the run they belong to, other events to subscribers, and gateway→node requests to the
//! [`CommandHandler`]. One writer task owns the socket's sending half.

use crate::connection::{self, FrameReader, FrameWriter, Incoming};
use crate::outbound::Keepalive;
use crate::protocol::{
    AgentAck, AgentEvent, AgentEventKind, AgentOutcome, AgentParams, AttachParams, CancelParams, CancelResult,
    ClientInfo, ClientMode, ConnectParams, ErrorCode, ErrorShape, EventFrame, Frame, HelloOk, HistoryPage,
    HistoryParams, MAX_FRAME_BYTES, NodeAdvert, NodeCommandRequest, PROTOCOL_VERSION, PendingPrompts, Request,
    RespondParams, RespondResult, Response, RunStatus, SessionList, event, method,
};
use certs::{Identity, KeyId, PeerKeyVerifier, Pin};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Answers the commands the gateway sends to a node (`screen.*` and the node's own).
pub trait CommandHandler: Send + Sync + 'static {
    fn handle(&self, request: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>>;
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The peer at the address is not the pinned bridge: another key, or a copied certificate without its key.
    #[error(
        "{addr} is not the bridge this device expects ({reason}): its key is not the one pinned at pairing or \
         named by the connection string; refusing to talk to it"
    )]
    WrongBridgeKey { addr: String, reason: String },
    #[error("the server refused the connection: {0}")]
    Handshake(ErrorShape),
    #[error("{0}")]
    Remote(ErrorShape),
    #[error("the connection closed")]
    Closed,
    #[error("not connected to the bridge right now; reconnecting")]
    NotConnected,
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Away from the LAN, the relay is up but the bridge is not linked to it: the computer is off, asleep
    /// or offline. Retry later; the node does by itself.
    #[error("the bridge is offline: its computer is not connected to the relay")]
    BridgeOffline,
    /// The relay path failed for another reason.
    #[error(transparent)]
    Relay(crate::relay::RelayError),
}

impl ClientError {
    /// The protocol error code, when the server sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Handshake(e) | ClientError::Remote(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether the bridge (or its relay) said this device is not paired: its pairing was revoked, or was
    /// never approved. Retrying cannot help; only pairing again can.
    pub fn is_unpaired(&self) -> bool {
        self.code() == Some(ErrorCode::NotPaired)
    }

    /// Whether trying again later can succeed: transport trouble and errors the server marked retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            // An impostor may sit at the address for a while; the real bridge may come back.
            ClientError::Connect { .. }
            | ClientError::WrongBridgeKey { .. }
            | ClientError::Closed
            | ClientError::NotConnected
            | ClientError::BridgeOffline
            | ClientError::Relay(_) => true,
            ClientError::Handshake(e) | ClientError::Remote(e) => e.retryable,
            ClientError::Protocol(_) => false,
        }
    }
}

/// Where a client connects.
#[derive(Clone)]
enum Target {
    /// A plain `ws://` URL: the gateway on loopback.
    Url(String),
    /// The gateway in this process, over an in-process link.
    Link(crate::link::Connector),
    /// A bridge at `host:port`, over mutual TLS 1.3 with the node's identity and a pinned bridge key.
    Bridge { addr: String, tls: Arc<rustls::ClientConfig> },
    /// The same bridge, the same TLS session, carried by its relay.
    Relay { route: crate::relay::RelayRoute, tls: Arc<rustls::ClientConfig> },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Url(url) => url.clone(),
            Target::Link(_) => "the gateway in this process".into(),
            Target::Bridge { addr, .. } => format!("bridge {addr}"),
            Target::Relay { route, .. } => format!("bridge via relay {}", route.url),
        }
    }
}

#[derive(Clone)]
pub struct ClientBuilder {
    target: Target,
    token: Option<String>,
    info: ClientInfo,
    node: Option<NodeAdvert>,
    handler: Option<Arc<dyn CommandHandler>>,
    handshake_timeout: Duration,
    keepalive: Option<Duration>,
    local_address: Option<std::net::IpAddr>,
}

/// How often a client pings a silent server by default; two intervals without a word end the connection.
/// A bridge whose address vanished (the computer moved networks) sends no reset, so without this a node
/// would wait minutes for TCP to give up.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(15);

impl ClientBuilder {
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.info.instance_id = id.into();
        self
    }

    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.info.display_name = Some(name.into());
        self
    }

    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.info.platform = platform.into();
        self
    }

    /// Connect as a node offering `advert`, answering commands with `handler`.
    pub fn node(self, advert: NodeAdvert, handler: impl CommandHandler) -> Self {
        self.node_with(advert, Arc::new(handler))
    }

    /// [`ClientBuilder::node`] with a handler that is already shared (a reconnecting node reuses it).
    pub fn node_with(mut self, advert: NodeAdvert, handler: Arc<dyn CommandHandler>) -> Self {
        self.info.mode = ClientMode::Node;
        self.node = Some(advert);
        self.handler = Some(handler);
        self
    }

    /// Connect as another kind of client than an operator (the bridge uses [`ClientMode::Bridge`]).
    pub fn mode(mut self, mode: ClientMode) -> Self {
        self.info.mode = mode;
        self
    }

    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Ping interval (see [`DEFAULT_KEEPALIVE`]); `None` waits on a silent server forever.
    pub fn keepalive(mut self, interval: Option<Duration>) -> Self {
        self.keepalive = interval;
        self
    }

    /// The same bridge (same pin, same identity) at another address: where discovery found it now.
    pub fn bridge_address(mut self, addr: impl Into<String>) -> Self {
        if let Target::Bridge { addr: current, .. } = &mut self.target {
            *current = addr.into();
        }
        self
    }

    /// The same bridge (same pin, same identity) through its relay instead of the LAN.
    pub fn relay(mut self, route: crate::relay::RelayRoute) -> Self {
        if let Target::Bridge { tls, .. } | Target::Relay { tls, .. } = &self.target {
            self.target = Target::Relay { route, tls: tls.clone() };
        }
        self
    }

    /// Connects to a bridge from this local address (a device on several networks picks the one to use;
    /// tests and benchmarks play several hosts on loopback).
    pub fn local_address(mut self, ip: std::net::IpAddr) -> Self {
        self.local_address = Some(ip);
        self
    }

    /// Opens the connection (TCP, TLS for a bridge, WebSocket), sends `connect` and waits for `hello-ok`.
    pub async fn connect(self) -> Result<Client, ClientError> {
        let connect_error = |reason: String| ClientError::Connect { url: self.target.describe(), reason };
        let config = connection::websocket_config(MAX_FRAME_BYTES);
        match &self.target {
            Target::Url(url) => {
                let upgrade = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
                let (ws, _) = within(self.handshake_timeout, upgrade).await.map_err(connect_error)?;
                let (reader, writer) = connection::split(ws);
                self.start(reader, writer, None, None).await
            }
            Target::Link(connector) => {
                let end = within(self.handshake_timeout, connector.connect()).await.map_err(connect_error)?;
                let (reader, writer) = connection::split_link::<tokio::net::TcpStream>(end, MAX_FRAME_BYTES);
                self.start(reader, writer, None, None).await
            }
            Target::Bridge { addr, tls } => {
                let started = tokio::time::Instant::now();
                let tcp = tokio::time::timeout(self.handshake_timeout, tcp_connect(addr, self.local_address))
                    .await
                    .map_err(|_| connect_error("timed out".into()))?
                    .map_err(|e| connect_error(e.to_string()))?;
                let _ = tcp.set_nodelay(true);
                let (tls, addr) = (tls.clone(), addr.clone());
                self.bridge_session(tcp, tls, addr, started, None).await
            }
            Target::Relay { route, tls } => {
                let started = tokio::time::Instant::now();
                let stream = crate::relay::open_stream(route, self.handshake_timeout).await.map_err(|e| match e {
                    crate::relay::RelayError::BridgeOffline => ClientError::BridgeOffline,
                    other => ClientError::Relay(other),
                })?;
                let (tls, addr) = (tls.clone(), format!("relay {}", route.url));
                let close_code = stream.close_code();
                self.bridge_session(stream, tls, addr, started, Some(close_code)).await
            }
        }
    }

    /// The pinned TLS session with a bridge over `io`, then the WebSocket and `connect`, all within the
    /// handshake time counted from `started`. The same for a TCP connection and a relayed stream (with the
    /// relay's close code, read when the connection ends).
    async fn bridge_session<S>(
        self,
        io: S,
        tls: Arc<rustls::ClientConfig>,
        addr: String,
        started: tokio::time::Instant,
        relay_close: Option<RelayCloseCode>,
    ) -> Result<Client, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connect_error = |reason: String| ClientError::Connect { url: self.target.describe(), reason };
        let deadline = started + self.handshake_timeout;
        let name = rustls::pki_types::ServerName::try_from("lanyard").expect("a valid DNS name");
        let tls_stream = tokio::time::timeout_at(deadline, tokio_rustls::TlsConnector::from(tls).connect(name, io))
            .await
            .map_err(|_| connect_error("timed out".into()))?
            .map_err(|e| match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(why)) => {
                    ClientError::WrongBridgeKey { addr: addr.clone(), reason: format!("{why:?}") }
                }
                _ => connect_error(e.to_string()),
            })?;
        let bridge_key = certs::peer_key(tls_stream.get_ref().1)
            .ok_or_else(|| connect_error("the bridge presented no usable certificate".into()))?;
        let config = connection::websocket_config(MAX_FRAME_BYTES);
        let upgrade = tokio_tungstenite::client_async_with_config("wss://lanyard/", tls_stream, Some(config));
        let (ws, _) = tokio::time::timeout_at(deadline, upgrade)
            .await
            .map_err(|_| connect_error("timed out".into()))?
            .map_err(|e| connect_error(e.to_string()))?;
        let (reader, writer) = connection::split(ws);
        self.start(reader, writer, Some(bridge_key), relay_close).await
    }

    async fn start<S>(
        self,
        mut reader: FrameReader<S>,
        mut writer: FrameWriter<S>,
        peer_key: Option<KeyId>,
        relay_close: Option<RelayCloseCode>,
    ) -> Result<Client, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let connect_error = |reason: String| ClientError::Connect { url: self.target.describe(), reason };

        let hello = ConnectParams {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client: self.info.clone(),
            auth: self.token.clone().map(|token| crate::protocol::Auth { token }),
            node: self.node.clone(),
        };
        let hello =
            exchange_hello(&mut reader, &mut writer, &hello, self.handshake_timeout).await.map_err(|e| match e {
                ClientError::Connect { reason, .. } => connect_error(reason),
                other => other,
            })?;

        let (out_tx, mut out_rx) = mpsc::channel::<Message>(256);
        let closed = CancellationToken::new();
        let write_failed = closed.clone();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if writer.send_message(message).await.is_err() {
                    // A socket that cannot be written is gone: say so now, not at the next keepalive.
                    write_failed.cancel();
                    break;
                }
            }
            writer.close(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal, "bye").await;
        });
        let shared = Arc::new(Shared {
            out: out_tx,
            closed,
            last_error: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            next_id: AtomicU64::new(1),
        });
        let router = shared.clone();
        let handler = self.handler.clone();
        let mut keepalive = self.keepalive.map(Keepalive::new);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    incoming = reader.next() => {
                        if let Some(keepalive) = keepalive.as_mut() {
                            keepalive.heard();
                        }
                        match incoming {
                            Incoming::Frame(frame) => router.route(frame, handler.as_ref()),
                            Incoming::Heartbeat | Incoming::Invalid(_) => {}
                            Incoming::TooLarge(_) | Incoming::Closed(_) => break,
                        }
                    }
                    alive = tick(keepalive.as_mut()) => {
                        if !alive {
                            tracing::info!("the server went silent; closing the connection");
                            break;
                        }
                        let _ = router.out.try_send(Message::Ping(Default::default()));
                    }
                    // Closed by this side, or its writer failed.
                    () = router.closed.cancelled() => break,
                }
            }
            if relay_close.is_some_and(|code| code.get() == Some(&crate::relay::REVOKED_CLOSE_CODE)) {
                // The relay cut the stream because the pairing was revoked, before the bridge's own
                // `NOT_PAIRED` could come through: it is the same news.
                *router.last_error.lock().expect("last error lock") = Some(ErrorShape::new(
                    ErrorCode::NotPaired,
                    "the relay closed this device's stream: its pairing was revoked",
                ));
            }
            router.shut();
        });
        let guard = Arc::new(CloseOnDrop(shared.out.clone()));
        Ok(Client { shared, hello: Arc::new(hello), peer_key, _guard: guard })
    }
}

/// Where a relayed stream's task records the relay's close code.
type RelayCloseCode = Arc<std::sync::OnceLock<u16>>;

/// The next keepalive tick, or never without a keepalive.
async fn tick(keepalive: Option<&mut Keepalive>) -> bool {
    match keepalive {
        Some(keepalive) => keepalive.tick().await,
        None => std::future::pending().await,
    }
}

/// Runs one opening step within the handshake time; the error, if any, in words.
async fn within<T, E: std::fmt::Display>(
    limit: Duration,
    step: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, step).await.map_err(|_| "timed out".to_string())?.map_err(|e| e.to_string())
}

/// Sends `connect` and waits for `hello-ok`: the opening every client of the protocol performs (the bridge
/// too, on its links to the gateway).
pub async fn exchange_hello<S>(
    reader: &mut FrameReader<S>,
    writer: &mut FrameWriter<S>,
    params: &ConnectParams,
    timeout: Duration,
) -> Result<HelloOk, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let failed = |reason: String| ClientError::Connect { url: "the server".into(), reason };
    writer.send(&Frame::Connect(params.clone())).await.map_err(|e| failed(e.to_string()))?;
    let answer = async {
        loop {
            match reader.next().await {
                Incoming::Frame(Frame::HelloOk(hello)) => return Ok(*hello),
                Incoming::Frame(Frame::Error(e)) => return Err(ClientError::Handshake(e.error)),
                Incoming::Heartbeat => continue,
                Incoming::Closed(_) => return Err(ClientError::Closed),
                other => return Err(ClientError::Protocol(format!("expected hello-ok, got {other:?}"))),
            }
        }
    };
    tokio::time::timeout(timeout, answer).await.map_err(|_| failed("no hello-ok from the server in time".into()))?
}

/// A connected client. Cheap to clone; the connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    hello: Arc<HelloOk>,
    peer_key: Option<KeyId>,
    _guard: Arc<CloseOnDrop>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.hello.server.name)
            .field("connection_id", &self.hello.server.connection_id)
            .field("peer_key", &self.peer_key)
            .finish_non_exhaustive()
    }
}

/// Sends the close frame when the last [`Client`] clone goes away (the reader task keeps the queue alive).
struct CloseOnDrop(mpsc::Sender<Message>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.try_send(Message::Close(None));
    }
}

enum Pending {
    Call(oneshot::Sender<Result<Value, ErrorShape>>),
    Agent(mpsc::UnboundedSender<RunItem>),
}

enum RunItem {
    Ack(AgentAck),
    Event(AgentEvent),
    Done(Result<AgentOutcome, ErrorShape>),
}

struct Shared {
    out: mpsc::Sender<Message>,
    /// Cancelled when the connection is gone.
    closed: CancellationToken,
    /// The server's last connection-level error (e.g. why it is closing the connection).
    last_error: Mutex<Option<ErrorShape>>,
    pending: Mutex<HashMap<String, Pending>>,
    runs: Mutex<HashMap<String, mpsc::UnboundedSender<RunItem>>>,
    events: broadcast::Sender<EventFrame>,
    next_id: AtomicU64,
}

impl Shared {
    /// The connection is gone (or being closed): every waiting call and run fails now, and no new one
    /// is taken. Under the pending lock, so a call cannot slip in after the table is emptied and wait
    /// for an answer that will never come.
    fn shut(&self) {
        let mut pending = self.pending.lock().expect("pending lock");
        self.closed.cancel();
        // Dropping the waiting senders tells every caller the connection is gone.
        pending.clear();
        drop(pending);
        self.runs.lock().expect("runs lock").clear();
    }

    fn route(self: &Arc<Self>, frame: Frame, handler: Option<&Arc<dyn CommandHandler>>) {
        match frame {
            Frame::Res(res) => self.route_response(res),
            Frame::Event(ev) => {
                if ev.event == event::AGENT
                    && let Ok(agent_event) = serde_json::from_value::<AgentEvent>(ev.payload.clone())
                    && let Some(tx) = self.runs.lock().expect("runs lock").get(&agent_event.run_id)
                {
                    let _ = tx.send(RunItem::Event(agent_event));
                }
                let _ = self.events.send(ev);
            }
            Frame::Req(req) => self.answer_request(req, handler.cloned()),
            Frame::Error(e) => {
                tracing::debug!(code = %e.error.code, "the server reported an error");
                *self.last_error.lock().expect("last error lock") = Some(e.error);
            }
            _ => {}
        }
    }

    fn route_response(&self, res: Response) {
        let mut pending = self.pending.lock().expect("pending lock");
        let Some(entry) = pending.remove(&res.id) else {
            return;
        };
        match entry {
            Pending::Call(tx) => {
                let _ = tx.send(res.outcome);
            }
            Pending::Agent(tx) => match res.outcome {
                Ok(payload) if payload.get("status").and_then(Value::as_str) == Some("accepted") => {
                    match serde_json::from_value::<AgentAck>(payload) {
                        Ok(ack) => {
                            self.runs.lock().expect("runs lock").insert(ack.run_id.clone(), tx.clone());
                            let _ = tx.send(RunItem::Ack(ack));
                            pending.insert(res.id, Pending::Agent(tx));
                        }
                        Err(e) => {
                            let _ = tx.send(RunItem::Done(Err(bad_payload(e))));
                        }
                    }
                }
                outcome => {
                    let done = outcome.and_then(|p| serde_json::from_value::<AgentOutcome>(p).map_err(bad_payload));
                    if let Ok(outcome) = &done {
                        self.runs.lock().expect("runs lock").remove(&outcome.run_id);
                    }
                    let _ = tx.send(RunItem::Done(done));
                }
            },
        }
    }

    fn answer_request(self: &Arc<Self>, req: Request, handler: Option<Arc<dyn CommandHandler>>) {
        let shared = self.clone();
        tokio::spawn(async move {
            let outcome = match (req.method.as_str(), handler) {
                (method::NODE_INVOKE, Some(handler)) => match serde_json::from_value(req.params) {
                    Ok(command) => handler.handle(command).await,
                    Err(e) => Err(ErrorShape::invalid_request(format!("bad node.invoke params: {e}"))),
                },
                (other, _) => {
                    Err(ErrorShape::new(ErrorCode::UnknownMethod, format!("this client does not answer {other}")))
                }
            };
            let frame = Frame::Res(Response { id: req.id, outcome });
            let _ = shared.out.send(Message::text(frame.to_text())).await;
        });
    }
}

fn bad_payload(e: serde_json::Error) -> ErrorShape {
    ErrorShape::new(ErrorCode::Internal, format!("unreadable agent payload: {e}"))
}

impl Client {
    /// Starts building a client for the gateway at `url` (`ws://127.0.0.1:18789`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(Target::Url(url.into()))
    }

    /// Starts building a client for the gateway wherever `gateway` says it is: at a URL, or in this process.
    pub fn to_gateway(gateway: &crate::link::GatewayConnector) -> ClientBuilder {
        match gateway {
            crate::link::GatewayConnector::WebSocket(url) => Client::builder(url.clone()),
            crate::link::GatewayConnector::InProcess(connector) => ClientBuilder::new(Target::Link(connector.clone())),
        }
    }

    /// Starts building a client for the bridge at `addr` (`host:port`): mutual TLS 1.3 presenting
    /// `identity`, accepting only a bridge that `pin` accepts. With [`Pin::AnyKey`] (first contact, for
    /// pairing), read [`Client::peer_key`] and confirm it with the SAS before trusting it.
    pub fn bridge(addr: impl Into<String>, identity: &Identity, pin: Pin) -> Result<ClientBuilder, ClientError> {
        let tls = identity
            .client_config(PeerKeyVerifier::new(pin))
            .map_err(|e| ClientError::Protocol(format!("cannot build the TLS configuration: {e}")))?;
        let mut builder = ClientBuilder::new(Target::Bridge { addr: addr.into(), tls: Arc::new(tls) });
        builder.info.instance_id = identity.id().to_string();
        Ok(builder)
    }

    /// The bridge's key as seen in the TLS handshake (`None` on a plain gateway connection).
    pub fn peer_key(&self) -> Option<KeyId> {
        self.peer_key
    }

    /// Resolves when the connection has closed, for whatever reason.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Closes this connection now, for every clone (a node moving to another path closes the old one):
    /// calls and runs waiting on it fail at once, without waiting for the close to go round.
    pub fn close(&self) {
        self.shared.shut();
        let _ = self.shared.out.try_send(Message::Close(None));
    }

    /// The last connection-level error the server sent; after a close, usually why it closed.
    pub fn last_error(&self) -> Option<ErrorShape> {
        self.shared.last_error.lock().expect("last error lock").clone()
    }
}

impl ClientBuilder {
    fn new(target: Target) -> ClientBuilder {
        ClientBuilder {
            target,
            token: None,
            info: ClientInfo {
                instance_id: random_id(),
                mode: ClientMode::Operator,
                platform: std::env::consts::OS.to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                display_name: None,
                path: None,
            },
            node: None,
            handler: None,
            handshake_timeout: Duration::from_secs(10),
            keepalive: Some(DEFAULT_KEEPALIVE),
            local_address: None,
        }
    }
}

impl Client {
    /// What the server said in `hello-ok`.
    pub fn hello(&self) -> &HelloOk {
        &self.hello
    }

    /// Every event the server sends, as it arrives.
    pub fn subscribe(&self) -> broadcast::Receiver<EventFrame> {
        self.shared.events.subscribe()
    }

    async fn send_request(&self, method: &str, params: Value, pending: Pending) -> Result<(), ClientError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        {
            let mut waiting = self.shared.pending.lock().expect("pending lock");
            if self.shared.closed.is_cancelled() {
                return Err(ClientError::Closed);
            }
            waiting.insert(id.clone(), pending);
        }
        let frame = Frame::Req(Request { id: id.clone(), method: method.to_string(), params });
        if self.shared.out.send(Message::text(frame.to_text())).await.is_err() {
            self.shared.pending.lock().expect("pending lock").remove(&id);
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Calls `method` and waits for its answer.
    pub async fn request(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.send_request(method, params, Pending::Call(tx)).await?;
        rx.await.map_err(|_| ClientError::Closed)?.map_err(ClientError::Remote)
    }

    /// Calls `method` with typed params and reads its typed answer.
    async fn call<T: DeserializeOwned>(&self, method: &str, params: impl serde::Serialize) -> Result<T, ClientError> {
        let params = serde_json::to_value(params).expect("params serialise");
        let answer = self.request(method, params).await?;
        serde_json::from_value(answer).map_err(|e| ClientError::Protocol(format!("unreadable {method} answer: {e}")))
    }

    /// Starts an `agent` run and returns once the gateway accepted it.
    pub async fn agent(&self, params: AgentParams) -> Result<AgentRun, ClientError> {
        self.start_run(method::AGENT, serde_json::to_value(params).expect("agent params serialise"), 0).await
    }

    /// Follows a run from after the event `after_seq` (0: from the start of what the gateway still holds):
    /// its missed events, its pending prompts, then live events and the outcome, as [`Client::agent`] does.
    pub async fn attach(&self, params: AttachParams) -> Result<AgentRun, ClientError> {
        let after = params.after_seq;
        self.start_run(method::AGENT_ATTACH, serde_json::to_value(params).expect("attach params serialise"), after)
            .await
    }

    async fn start_run(&self, method: &str, params: Value, after_seq: u64) -> Result<AgentRun, ClientError> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.send_request(method, params, Pending::Agent(tx)).await?;
        match rx.recv().await {
            Some(RunItem::Ack(ack)) => Ok(AgentRun::new(ack, rx, after_seq)),
            Some(RunItem::Done(Err(e))) => Err(ClientError::Remote(e)),
            Some(_) => Err(ClientError::Protocol(format!("{method} answered without an ack"))),
            None => Err(ClientError::Closed),
        }
    }

    /// Answers a prompt (`permission`, `question` or `plan` event). The first answer wins; a later one
    /// gets `PROMPT_CLOSED`.
    pub async fn respond(&self, params: RespondParams) -> Result<RespondResult, ClientError> {
        self.call(method::AGENT_RESPOND, params).await
    }

    /// Stops a running turn through claude's interrupt (the conversation goes on with the next turn), or
    /// drops a queued one.
    pub async fn cancel(&self, run_id: impl Into<String>) -> Result<CancelResult, ClientError> {
        self.call(method::AGENT_CANCEL, CancelParams { run_id: run_id.into() }).await
    }

    /// The prompts waiting for this caller's answer.
    pub async fn pending(&self) -> Result<PendingPrompts, ClientError> {
        self.call(method::AGENT_PENDING, Value::Null).await
    }

    /// This caller's conversations, latest activity first.
    pub async fn sessions(&self) -> Result<SessionList, ClientError> {
        self.call(method::AGENT_SESSIONS, Value::Null).await
    }

    /// One conversation so far, a page at a time (latest first; follow `nextBefore` back).
    pub async fn history(&self, params: HistoryParams) -> Result<HistoryPage, ClientError> {
        self.call(method::AGENT_HISTORY, params).await
    }
}

/// A running `agent` turn: its events in order, then its outcome. Each event is delivered once, in
/// sequence order; after [`Client::attach`] the prompts still pending come first.
pub struct AgentRun {
    ack: AgentAck,
    rx: mpsc::UnboundedReceiver<RunItem>,
    /// Events to hand out before reading `rx` (pending prompts from an attach).
    front: std::collections::VecDeque<AgentEvent>,
    last_seq: u64,
    outcome: Option<Result<AgentOutcome, ClientError>>,
    /// Set for runs started through a node that keeps itself connected: a dropped link is followed by an
    /// attach on the next one.
    reattach: Option<Arc<dyn Relink>>,
}

/// What gives a run a fresh link after its own dropped: the node that started it, which reconnects by
/// itself. A trait, so that this module need not know the node's.
pub(crate) trait Relink: Send + Sync {
    /// The node's client once it is connected again, within `timeout`.
    fn connected(&self, timeout: Duration) -> BoxFuture<'_, Result<Client, ClientError>>;
}

impl std::fmt::Debug for AgentRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRun")
            .field("run_id", &self.ack.run_id)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// How long a run started through a node waits for the node to reconnect before it gives up on its
/// outcome.
pub const REATTACH_WITHIN: Duration = Duration::from_secs(120);
/// How long one attach may take before its link is taken for dead.
const ATTACH_WITHIN: Duration = Duration::from_secs(15);
/// The pause before trying again after a link that flapped.
const REATTACH_PAUSE: Duration = Duration::from_millis(50);

impl AgentRun {
    fn new(ack: AgentAck, rx: mpsc::UnboundedReceiver<RunItem>, after_seq: u64) -> AgentRun {
        // The replay starts after `after_seq`, or after the missed range when the buffer no longer
        // reaches back that far: open prompts up to there are handed out first, newer ones come with it.
        let front = ack
            .attach
            .as_ref()
            .map(|info| {
                let replayed_after = info.missed.as_ref().map_or(after_seq, |missed| missed.to.max(after_seq));
                info.pending.iter().filter(|p| p.seq <= replayed_after).cloned().collect()
            })
            .unwrap_or_default();
        AgentRun { ack, rx, front, last_seq: after_seq, outcome: None, reattach: None }
    }

    pub(crate) fn reattach_through(mut self, node: Arc<dyn Relink>) -> AgentRun {
        self.reattach = Some(node);
        self
    }

    pub fn run_id(&self) -> &str {
        &self.ack.run_id
    }

    /// True when the gateway recognised the idempotency key and is replaying the first run's outcome.
    pub fn is_duplicate(&self) -> bool {
        self.ack.duplicate
    }

    /// What an attach found: the missed range, if any, and the pending prompts.
    pub fn attach_info(&self) -> Option<&crate::protocol::AttachInfo> {
        self.ack.attach.as_ref()
    }

    /// The sequence number of the latest event handed out: what to attach after.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The next event, or `None` once the run has finished.
    pub async fn next_event(&mut self) -> Option<AgentEventKind> {
        self.next().await.map(|event| event.kind)
    }

    /// The next event with its run, session and sequence number, or `None` once the run has finished.
    pub async fn next(&mut self) -> Option<AgentEvent> {
        if let Some(prompt) = self.front.pop_front() {
            return Some(prompt);
        }
        loop {
            if self.outcome.is_some() {
                return None;
            }
            match self.rx.recv().await {
                // A replayed event already seen (an attach racing a live one) is skipped.
                Some(RunItem::Event(e)) if e.seq != 0 && e.seq <= self.last_seq => continue,
                Some(RunItem::Event(e)) => {
                    self.last_seq = self.last_seq.max(e.seq);
                    return Some(e);
                }
                Some(RunItem::Done(outcome)) => self.outcome = Some(outcome.map_err(ClientError::Remote)),
                Some(RunItem::Ack(_)) => {
                    self.outcome = Some(Err(ClientError::Protocol("a second ack for one run".into())));
                }
                None => match self.reattach().await {
                    Ok(()) => {
                        if let Some(prompt) = self.front.pop_front() {
                            return Some(prompt);
                        }
                    }
                    Err(e) => self.outcome = Some(Err(e)),
                },
            }
        }
    }

    /// The link dropped: through a node, wait for it to come back and attach after the last event seen.
    async fn reattach(&mut self) -> Result<(), ClientError> {
        let Some(node) = self.reattach.clone() else { return Err(ClientError::Closed) };
        let deadline = tokio::time::Instant::now() + REATTACH_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // A link that flaps (it dropped again, the bridge is briefly offline, a limit said later) is
            // waited out until the deadline: only a lasting refusal ends the run here.
            let retry = |e: &ClientError| e.is_retryable() && !left.is_zero();
            let client = match node.connected(left).await {
                Ok(client) => client,
                Err(e) if retry(&e) => {
                    tokio::time::sleep(REATTACH_PAUSE).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let params =
                AttachParams { run_id: Some(self.ack.run_id.clone()), session_key: None, after_seq: self.last_seq };
            match tokio::time::timeout(left.min(ATTACH_WITHIN), client.attach(params)).await {
                Ok(Ok(attached)) => {
                    tracing::info!(run_id = %self.ack.run_id, after_seq = self.last_seq, "reattached to the run");
                    self.rx = attached.rx;
                    self.front = attached.front;
                    return Ok(());
                }
                Ok(Err(e)) if retry(&e) => tokio::time::sleep(REATTACH_PAUSE).await,
                // Runs live in the gateway's memory: a run it does not know was lost when the computer stopped.
                Ok(Err(ClientError::Remote(e))) if e.code == ErrorCode::NotFound => {
                    return Err(ClientError::Remote(ErrorShape::new(
                        ErrorCode::NotFound,
                        "the computer stopped during this turn, and the turn was lost with it; send it again",
                    )));
                }
                Ok(Err(e)) => return Err(e),
                // A link that swallows the attach is no link: drop it and use the next.
                Err(_) => client.close(),
            }
        }
    }

    /// Waits for the end of the run, skipping events not yet read. A cancelled run is an outcome too
    /// (status `cancelled`).
    pub async fn outcome(mut self) -> Result<AgentOutcome, ClientError> {
        while self.next().await.is_some() {}
        match self.outcome.take().expect("set when next returns None")? {
            outcome if outcome.status != RunStatus::Accepted => Ok(outcome),
            _ => Err(ClientError::Protocol("agent outcome with status accepted".into())),
        }
    }
}

/// A random 128-bit identifier in hex, for instance and run IDs.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TCP connection to `addr`, from `local` when given.
async fn tcp_connect(addr: &str, local: Option<std::net::IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let Some(local) = local else { return tokio::net::TcpStream::connect(addr).await };
    let mut last_error = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address of that family");
    for remote in tokio::net::lookup_host(addr).await?.filter(|remote| remote.is_ipv4() == local.is_ipv4()) {
        let socket = if local.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        match socket.connect(remote).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{AttachInfo, SeqRange};

    fn plan(seq: u64) -> AgentEvent {
        let kind = AgentEventKind::Plan { request_id: format!("p{seq}"), plan: "Steps".into(), expires_at_ms: 0 };
        AgentEvent { run_id: "r".into(), session_key: "s".into(), seq, kind }
    }

    /// The prompts an attach hands out first: those the replay does not carry. The replay starts after
    /// `afterSeq`, or after the missed range when the buffer no longer reaches back that far.
    #[tokio::test]
    async fn an_attach_hands_out_first_the_open_prompts_its_replay_cannot_carry() {
        let attached = |after_seq: u64, missed: Option<SeqRange>| {
            let pending = vec![plan(3), plan(8), plan(20)];
            let attach = AttachInfo { session_key: "s".into(), after_seq, last_seq: 25, missed, pending };
            let ack =
                AgentAck { run_id: "r".into(), status: RunStatus::Accepted, duplicate: false, attach: Some(attach) };
            let (tx, rx) = mpsc::unbounded_channel();
            drop(tx);
            AgentRun::new(ack, rx, after_seq)
        };
        let seqs = |run: &AgentRun| run.front.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(&attached(5, None)), [3]);
        assert_eq!(seqs(&attached(5, Some(SeqRange { from: 6, to: 10 }))), [3, 8]);
        assert_eq!(seqs(&attached(0, None)), Vec::<u64>::new());
    }
}
