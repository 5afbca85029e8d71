//! Shared support for the bridge tests: the gateway test support (a real gateway, the scripted Messages
//! API, the real claude), plus a real bridge in front of it, pairing through the real door, and a raw
//! TLS WebSocket for tests that must misbehave below the client library.
#![allow(dead_code)] // each test file uses a different part of the support module

#[path = "../../../gateway/tests/support/mod.rs"]
pub mod gw;
pub mod relay;

use bridge::connections::ConnectionCounts;
use bridge::identity::KeyStore;
use bridge::{Bridge, BridgeConfig};
use certs::{Identity, KeyId, PeerKeyVerifier, Pin};
use gw::TestGateway;
use node_kit::ClientError;
use node_kit::connection::{self, FrameReader, FrameWriter, Incoming};
use node_kit::connection_string::ConnectionString;
use node_kit::pairing::{PairedBridge, PairingRequest, request_pairing};
use node_kit::protocol::{
    ClientInfo, ClientMode, ConnectParams, ErrorShape, Frame, NodeAdvert, PROTOCOL_VERSION, PairCode, PendingPairing,
    PendingPairingList, Scope, method,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A bridge running for one test, in front of a [`TestGateway`], sharing its home. Stops when dropped.
pub struct TestBridge {
    pub addr: SocketAddr,
    pub id: KeyId,
    /// The live connection counts of the bridge's table.
    pub counts: Arc<dyn Fn() -> ConnectionCounts + Send + Sync>,
    config: BridgeConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBridge {
    pub async fn start(gateway: &TestGateway, configure: impl FnOnce(&mut BridgeConfig)) -> TestBridge {
        let mut config =
            BridgeConfig::new(gateway.home.path().to_path_buf(), gateway.url.clone(), gateway.bridge_token.clone());
        config.bind = "127.0.0.1:0".parse().unwrap();
        config.key_store = KeyStore::File;
        // No test advertises on mDNS unless it asks to, and then only on the interfaces it names.
        config.mdns.enabled = false;
        configure(&mut config);
        TestBridge::run(config).await
    }

    async fn run(mut config: BridgeConfig) -> TestBridge {
        let bridge = Bridge::bind(config.clone()).await.expect("bridge binds");
        let (addr, id, counts) = (bridge.local_addr(), bridge.id(), Arc::new(bridge.counts()));
        config.bind = addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bridge.run(async {
            let _ = stopped.await;
        }));
        TestBridge { addr, id, counts, config, stop: Some(stop), task: Some(task) }
    }

    /// The bridge's own identity, as kept in its home.
    pub fn identity(&self) -> Identity {
        bridge::identity::load_or_create(&self.config.home, KeyStore::File).unwrap().0
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the bridge and starts it again on the same port with the same key.
    pub async fn restart(mut self) -> TestBridge {
        let config = self.config.clone();
        self.shut_down().await;
        TestBridge::run(config).await
    }

    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("bridge stops in time").unwrap();
        }
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Pairs a fresh node through door 1: the node asks, the owner approves by request ID.
pub async fn pair(bridge: &TestBridge, gateway: &TestGateway, scopes: &[Scope]) -> (Arc<Identity>, PairedBridge) {
    let identity = Arc::new(Identity::generate());
    let request = PairingRequest::new("Test phone", "test").scopes(scopes.iter().copied());
    let pending = request_pairing(&bridge.address(), &identity, request).await.expect("pairing request accepted");
    let approve = serde_json::json!({ "requestId": pending.request_id() });
    gateway.operator().await.request(method::PAIR_APPROVE, approve).await.expect("approve");
    let paired = pending.approved().await.expect("approved");
    (identity, paired)
}

/// Issues a door-2 code as the owner (`lanyard pair`) and builds the connection string for `bridge`.
pub async fn connection_string(bridge: &TestBridge, gateway: &TestGateway) -> ConnectionString {
    let issued = gateway.operator().await.request(method::PAIR_CODE, serde_json::Value::Null).await.expect("pair.code");
    let issued: PairCode = serde_json::from_value(issued).unwrap();
    ConnectionString {
        host: bridge.addr.ip().to_string(),
        port: bridge.addr.port(),
        bridge_id: bridge.id,
        code: issued.code,
    }
}

/// Turns on mDNS for a bridge on loopback, on a UDP port of the test's own so that tests running at the
/// same time do not hear each other.
pub fn mdns_on_loopback(config: &mut BridgeConfig, port: u16, instance: &str) {
    config.mdns.enabled = true;
    config.mdns.interfaces = vec!["lo".into()];
    config.mdns.port = port;
    config.mdns.instance = Some(instance.into());
    config.mdns.address_check = Duration::from_secs(1);
}

/// A UDP port for one test's mDNS traffic.
pub fn mdns_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn pending_requests(gateway: &TestGateway) -> Vec<PendingPairing> {
    let list = gateway.operator().await.request(method::PAIR_PENDING, serde_json::Value::Null).await.unwrap();
    serde_json::from_value::<PendingPairingList>(list).unwrap().requests
}

/// The protocol error inside a client error.
pub fn remote(e: ClientError) -> ErrorShape {
    match e {
        ClientError::Remote(e) | ClientError::Handshake(e) => e,
        other => panic!("expected an error from the server, got {other}"),
    }
}

pub fn screen_advert() -> NodeAdvert {
    NodeAdvert { caps: vec!["screen".into()], commands: ["screen.eval", "screen.snapshot"].map(String::from).to_vec() }
}

/// How many requests the gateway has received for `method`, from its `health`.
pub async fn gateway_requests(gateway: &TestGateway, method_name: &str) -> u64 {
    let health = gateway.operator().await.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
    health["requests"][method_name].as_u64().unwrap_or(0)
}

/// The gateway's request counters (`health.requests`), read so that two readings differ only by what
/// others sent: the `health` calls made to read them are taken off, and so are the bridge's reports of its
/// own counters (`bridge.stats`), which it sends on a timer whatever nodes do. Every other method the
/// gateway answers is counted, `health` and `pair.*` included, so "no counter moved" can be checked as
/// one equality.
pub struct GatewayCounters {
    operator: node_kit::Client,
    reads: u64,
}

impl GatewayCounters {
    pub async fn new(gateway: &TestGateway) -> GatewayCounters {
        GatewayCounters { operator: gateway.operator().await, reads: 0 }
    }

    pub async fn read(&mut self) -> std::collections::BTreeMap<String, u64> {
        self.reads += 1;
        let health = self.operator.request(method::HEALTH, serde_json::Value::Null).await.unwrap();
        let mut counts: std::collections::BTreeMap<String, u64> =
            serde_json::from_value(health["requests"].clone()).unwrap();
        let own = counts.get_mut(method::HEALTH).expect("this reading is counted");
        *own -= self.reads;
        counts.remove(method::BRIDGE_STATS);
        counts.retain(|_, count| *count > 0);
        counts
    }
}

/// A TLS server with a key of its own, as an impostor bridge presents it (the same TLS settings as
/// `Bridge::bind`), that records how every handshake made with it ended. It never gets further than
/// TLS: a handshake that completes is what the tests look for. Stops when dropped.
pub struct TlsImpostor {
    pub addr: SocketAddr,
    pub id: KeyId,
    outcomes: Arc<std::sync::Mutex<Vec<Result<(), String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsImpostor {
    pub async fn start(bind: SocketAddr) -> TlsImpostor {
        let identity = Identity::generate();
        let config = identity.server_config(PeerKeyVerifier::new(Pin::AnyKey)).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let outcomes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = outcomes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let outcome = acceptor.accept(tcp).await.map(drop).map_err(|e| e.to_string());
                    seen.lock().unwrap().push(outcome);
                });
            }
        });
        TlsImpostor { addr, id: identity.id(), outcomes, task }
    }

    /// How every handshake so far ended: `Ok` for one that completed, else the error the server saw.
    pub fn outcomes(&self) -> Vec<Result<(), String>> {
        self.outcomes.lock().unwrap().clone()
    }
}

impl Drop for TlsImpostor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub type RawStream = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS, WebSocket and `connect` by hand, as a node would, up to and including `hello-ok`; the WebSocket
/// itself, for tests that need to see what the client library hides (close codes).
pub async fn raw_websocket(
    addr: SocketAddr,
    identity: &Identity,
    bridge: KeyId,
    advert: Option<NodeAdvert>,
) -> tokio_tungstenite::WebSocketStream<RawStream> {
    raw_websocket_from(None, addr, identity, bridge, advert).await
}

/// [`raw_websocket`] from a source address of the test's choosing (any of 127.0.0.0/8 on loopback), for
/// tests that play several devices.
pub async fn raw_websocket_from(
    source: Option<std::net::IpAddr>,
    addr: SocketAddr,
    identity: &Identity,
    bridge: KeyId,
    advert: Option<NodeAdvert>,
) -> tokio_tungstenite::WebSocketStream<RawStream> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let tcp = match source {
        None => TcpStream::connect(addr).await.unwrap(),
        Some(source) => tcp_from(source, addr).await.unwrap(),
    };
    let mut ws = websocket_over(tls_over(tcp, identity, bridge).await.unwrap(), addr).await.unwrap();
    let connect = raw_connect(identity, advert);
    ws.send(Message::text(Frame::Connect(connect).to_text())).await.unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("hello-ok in time");
        match message.expect("the bridge answers connect").unwrap() {
            Message::Text(text) => match Frame::parse(text.as_str()).unwrap() {
                Frame::HelloOk(_) => return ws,
                other => panic!("expected hello-ok, got {other:?}"),
            },
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected hello-ok, got {other:?}"),
        }
    }
}

/// A node below the client library: TLS, WebSocket and `connect` by hand, then frames as the test likes.
pub struct RawNode {
    pub reader: FrameReader<RawStream>,
    pub writer: FrameWriter<RawStream>,
}

/// A TCP connection to `to` from the local address `from` (any 127.0.0.0/8 address works on loopback), so
/// one test can be several hosts to the bridge's per-address limits.
pub async fn tcp_from(from: std::net::IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A TLS session to the bridge over `tcp`, pinned to `bridge`.
pub async fn tls_over(tcp: TcpStream, identity: &Identity, bridge: KeyId) -> std::io::Result<RawStream> {
    let tls = identity.client_config(PeerKeyVerifier::new(Pin::Key(bridge))).unwrap();
    let name = certs::rustls::pki_types::ServerName::try_from("lanyard").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await
}

/// The WebSocket upgrade over a TLS session to the bridge at `addr`.
pub async fn websocket_over(
    stream: RawStream,
    addr: SocketAddr,
) -> Result<tokio_tungstenite::WebSocketStream<RawStream>, tokio_tungstenite::tungstenite::Error> {
    let config = connection::websocket_config(node_kit::protocol::MAX_FRAME_BYTES);
    Ok(tokio_tungstenite::client_async_with_config(format!("wss://{addr}/"), stream, Some(config)).await?.0)
}

/// The `connect` a raw node sends.
pub fn raw_connect(identity: &Identity, advert: Option<NodeAdvert>) -> ConnectParams {
    ConnectParams {
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        client: ClientInfo {
            instance_id: identity.id().to_string(),
            mode: ClientMode::Node,
            platform: "test".into(),
            version: "0".into(),
            display_name: None,
            path: None,
        },
        auth: None,
        node: advert,
    }
}

impl RawNode {
    pub async fn connect(addr: SocketAddr, identity: &Identity, bridge: KeyId, advert: Option<NodeAdvert>) -> RawNode {
        let (reader, writer) = connection::split(raw_websocket(addr, identity, bridge, advert).await);
        RawNode { reader, writer }
    }

    /// The next frame, skipping pings; panics on anything else or after 10 s.
    pub async fn next_frame(&mut self) -> Frame {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.reader.next()).await.expect("a frame in time") {
                Incoming::Frame(frame) => return frame,
                Incoming::Heartbeat => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// Reads until the connection ends; returns the close reason.
    pub async fn closed(&mut self) -> Option<String> {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.reader.next()).await.expect("closed in time") {
                Incoming::Closed(reason) => return reason,
                _ => continue,
            }
        }
    }
}

/// A man in the middle of a first contact: it shows the node a bridge key of its own and the real bridge
/// a node key of its own, and relays the pairing dialogue word for word. Serves one node; stops when
/// dropped.
pub struct Middleman {
    pub addr: SocketAddr,
    /// The key it shows nodes in place of the bridge's.
    pub posing_as_bridge: KeyId,
    /// The key it shows the bridge in place of the node's.
    pub posing_as_node: KeyId,
    task: tokio::task::JoinHandle<()>,
}

impl Middleman {
    pub async fn start(bridge_addr: String, bind: &str) -> Middleman {
        use node_kit::connection::{self, Incoming};
        use node_kit::protocol::Response;
        let (posing_as_bridge, posing_as_node) = (Identity::generate(), Identity::generate());
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
            posing_as_bridge.server_config(PeerKeyVerifier::new(Pin::AnyKey)).unwrap(),
        ));
        let upstream = node_kit::Client::bridge(bridge_addr, &posing_as_node, Pin::AnyKey).unwrap();
        let task = tokio::spawn(async move {
            // The first connection that completes TLS is the node it serves (a paired node probing the
            // address refuses the middleman's key and leaves).
            let tls = loop {
                let (tcp, _) = listener.accept().await.unwrap();
                if let Ok(tls) = acceptor.accept(tcp).await {
                    break tls;
                }
            };
            let ws = tokio_tungstenite::accept_async(tls).await.unwrap();
            let (mut from_node, mut to_node) = connection::split(ws);
            let upstream = upstream.connect().await.unwrap();
            while let Incoming::Frame(frame) = from_node.next().await {
                match frame {
                    Frame::Connect(_) => {
                        to_node.send(&Frame::HelloOk(Box::new((*upstream.hello()).clone()))).await.unwrap()
                    }
                    Frame::Req(req) => {
                        let outcome = upstream.request(&req.method, req.params).await.map_err(remote);
                        to_node.send(&Frame::Res(Response { id: req.id, outcome })).await.unwrap();
                    }
                    _ => {}
                }
            }
        });
        Middleman { addr, posing_as_bridge: posing_as_bridge.id(), posing_as_node: posing_as_node.id(), task }
    }
}

impl Drop for Middleman {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One proxied connection: extra handles on the node's and the bridge's socket, and the copying task.
type CableLink = (tokio::net::TcpStream, tokio::net::TcpStream, tokio::task::JoinHandle<()>);

/// A TCP middlebox between the node and the bridge whose links can be cut hard (RST, no close frame).
pub struct Cable {
    pub addr: String,
    links: Arc<Mutex<Vec<CableLink>>>,
    /// While set, new connections are dropped at once: the bridge is gone from this network.
    refusing: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cable {
    pub async fn start(to: String) -> Cable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let links = Arc::new(Mutex::new(Vec::new()));
        let refusing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (held, refuse) = (links.clone(), refusing.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((node_side, _)) = listener.accept().await else { return };
                if refuse.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = node_side.set_zero_linger();
                    continue;
                }
                let Ok(bridge_side) = tokio::net::TcpStream::connect(&to).await else { continue };
                // Keep a second handle on each socket so `cut` can reset them while the copy runs.
                let (a, b) = (dup(&node_side), dup(&bridge_side));
                let copy = tokio::spawn(async move {
                    let (mut n, mut b) = (node_side, bridge_side);
                    let _ = tokio::io::copy_bidirectional(&mut n, &mut b).await;
                });
                held.lock().unwrap().push((a, b, copy));
            }
        });
        Cable { addr, links, refusing, task }
    }

    /// Resets every live link: both ends get a TCP reset (zero linger on close), not a WebSocket close.
    pub fn cut(&self) {
        for (node_side, bridge_side, copy) in self.links.lock().unwrap().drain(..) {
            for socket in [&node_side, &bridge_side] {
                socket.set_zero_linger().unwrap();
            }
            copy.abort();
        }
    }
}

impl Cable {
    /// Cuts every live link and turns new ones away until [`Cable::restore`]: the LAN path is gone.
    pub fn unplug(&self) {
        self.refusing.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
    }

    pub fn restore(&self) {
        self.refusing.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Cable {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn dup(socket: &tokio::net::TcpStream) -> tokio::net::TcpStream {
    let fd = std::os::fd::AsFd::as_fd(socket).try_clone_to_owned().unwrap();
    let std_socket = std::net::TcpStream::from(fd);
    std_socket.set_nonblocking(true).unwrap();
    tokio::net::TcpStream::from_std(std_socket).unwrap()
}

/// What one device tells the model in the identity tests (issue 20, item 1).
pub const DIARY_SECRET: &str = "CANARY-DIARY-SECRET-5e1d";

/// The model of the identity tests: "noted" when told the secret, the secret again whenever the
/// conversation it is sent holds it, and otherwise "nothing on record" with the prompt.
pub fn diary_model(request: &gw::messages_api::ApiRequest) -> gw::messages_api::Reply {
    use gw::messages_api::Reply;
    if request.last_user_text.contains(DIARY_SECRET) {
        Reply::text(&["noted"])
    } else if request.body.to_string().contains(DIARY_SECRET) {
        Reply::text(&["your secret is ", DIARY_SECRET])
    } else {
        Reply::text(&["nothing on record for: ", &request.last_user_text])
    }
}

/// A Bash call that writes `canary` to `file` and prints it.
pub fn tee(id: &str, canary: &str, file: &str) -> gw::messages_api::Reply {
    gw::messages_api::Reply::tool(
        id,
        "Bash",
        serde_json::json!({ "command": format!("echo {canary} | tee {file}"), "description": "Write the canary" }),
    )
}

/// The model of the catch-up tests: it writes `pieces`, each once the test lets it through `gate`, then
/// asks to run `echo CAUGHT-UP-3 | tee away.txt` (`toolu_away`), and says "finished" once it has the result.
pub fn caught_up_model(
    pieces: Vec<String>,
    gate: gw::messages_api::Gate,
) -> impl Fn(&gw::messages_api::ApiRequest) -> gw::messages_api::Reply + Send + Sync + 'static {
    use gw::messages_api::Reply;
    move |request| {
        if request.has_tool_result {
            Reply::text(&["finished"])
        } else {
            Reply::GatedThenTool {
                pieces: pieces.clone(),
                gate: gate.clone(),
                id: "toolu_away".into(),
                name: "Bash".into(),
                input: serde_json::json!({ "command": "echo CAUGHT-UP-3 | tee away.txt", "description": "Write it" }),
            }
        }
    }
}
