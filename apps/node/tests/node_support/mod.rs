//! Support for the `lanyard-node` tests: the real binary as a child process (its stdin to type into, its
//! stdout and stderr as lines to wait for), a gateway with the real claude and a bridge in front of it, and
//! a web page the test draws on.
#![allow(dead_code)] // each test file uses a different part

#[path = "../../../../bridge/tests/support/mod.rs"]
pub mod support;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use bridge::BridgeConfig;
use node_kit::Client;
use node_kit::protocol::{NodeListPayload, NodeSummary, method};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::TestBridge;
use support::gw::messages_api::{ApiRequest, MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary, eventually, skip};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};

/// The page the tests show: white, with a red box at (100,100)–(300,200) and a blue one at (600,400)–(700,500).
pub const BOXES_HTML: &str = r#"<!doctype html><html><head><style>
html, body { margin: 0; background: #ffffff; }
.box { position: absolute; }
</style></head><body>
<div class="box" style="left:100px; top:100px; width:200px; height:100px; background:#ff0000"></div>
<div class="box" style="left:600px; top:400px; width:100px; height:100px; background:#0000ff"></div>
</body></html>"#;

/// A page no image format compresses: random pixels over the whole window.
pub const NOISE_HTML: &str = r#"<!doctype html><html><body style="margin:0"><canvas id="c"></canvas><script>
const c = document.getElementById("c"); c.width = innerWidth; c.height = innerHeight;
const ctx = c.getContext("2d"); const img = ctx.createImageData(c.width, c.height);
for (let i = 0; i < img.data.length; i++) img.data[i] = Math.random() * 256;
ctx.putImageData(img, 0, 0);
</script></body></html>"#;

/// The Chromium the node will find on PATH, or a skip (a failure under CI).
pub fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|n| which::which(n).ok());
    if found.is_none() {
        skip("no chromium on PATH: install it (apt-get install chromium), or run ./test.sh as root");
    }
    found
}

/// A web server on loopback for the tests' pages: `/` the boxes, `/noise` the noise, `/away` a redirect to
/// the same server under another name (`localhost`), which is another origin.
pub struct TestPage {
    pub origin: String,
    /// The same server as another origin.
    pub elsewhere: String,
}

impl TestPage {
    pub async fn start() -> TestPage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (origin, elsewhere) = (format!("http://127.0.0.1:{port}"), format!("http://localhost:{port}"));
        let away = format!("{elsewhere}/");
        let app = Router::new()
            .route("/", get(|| async { Html(BOXES_HTML) }))
            .route("/noise", get(|| async { Html(NOISE_HTML) }))
            .route("/away", get(move || async move { axum::response::Redirect::temporary(&away) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestPage { origin, elsewhere }
    }
}

/// The computer's side: the scripted API, a gateway running the real claude against it, a bridge.
pub struct Computer {
    pub api: MessagesApi,
    pub gateway: TestGateway,
    pub bridge: TestBridge,
}

impl Computer {
    /// `None` when claude or chromium is missing outside CI.
    pub async fn start(
        script: impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static,
        configure: impl FnOnce(&mut BridgeConfig),
    ) -> Option<Computer> {
        chromium()?;
        let claude = claude_binary()?;
        let api = MessagesApi::start(script).await;
        let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
        let bridge = TestBridge::start(&gateway, configure).await;
        Some(Computer { api, gateway, bridge })
    }

    pub async fn operator(&self) -> Client {
        self.gateway.operator().await
    }

    /// The connected node named `name`, once it is there.
    pub async fn node_named(&self, name: &str) -> NodeSummary {
        let operator = self.operator().await;
        eventually(Duration::from_secs(30), async || {
            let list = operator.request(method::NODE_LIST, Value::Null).await.ok()?;
            let list: NodeListPayload = serde_json::from_value(list).ok()?;
            list.nodes.into_iter().find(|n| n.display_name.as_deref() == Some(name))
        })
        .await
    }

    /// Waits until the node named `name` is listed in `state` (its beacon reached the gateway).
    pub async fn node_in_state(&self, name: &str, state: node_kit::protocol::AppState) {
        eventually(Duration::from_secs(60), async || (self.node_named(name).await.state == state).then_some(())).await;
    }

    /// `node.invoke` as the owner sends it.
    pub async fn invoke(&self, node_id: &str, command: &str, params: Value) -> Result<Value, node_kit::ErrorShape> {
        let request = json!({
            "nodeId": node_id, "command": command, "params": params,
            "idempotencyKey": node_kit::client::random_id(), "timeoutMs": 30_000,
        });
        self.operator()
            .await
            .request(method::NODE_INVOKE, request)
            .await
            .map(|r| r["payload"].clone())
            .map_err(support::remote)
    }

    pub async fn stop(self) {
        self.bridge.stop().await;
        self.gateway.stop().await;
    }
}

/// Lines a child printed, as they come, and a count of every byte (a line still being written counts).
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicUsize>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    /// Waits until at least `n` lines have come.
    pub async fn at_least(&self, n: usize, limit: Duration) -> Vec<String> {
        eventually(limit, async || Some(self.all()).filter(|l| l.len() >= n)).await
    }

    /// Waits for a line containing `needle`.
    pub async fn find(&self, needle: &str, limit: Duration) -> String {
        eventually(limit, async || self.all().into_iter().find(|l| l.contains(needle))).await
    }
}

/// `lanyard-node` with a state directory of its own.
pub struct NodeProcess {
    pub dir: tempfile::TempDir,
    pub name: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub stdout: Lines,
    pub stderr: Lines,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_lanyard-node")
}

/// Runs `lanyard-node --state DIR ARGS` to its end; its stdout, or a panic with its stderr.
pub async fn lanyard_node(state: &Path, args: &[&str]) -> String {
    let out = Command::new(binary()).arg("--state").arg(state).args(args).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "lanyard-node {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NodeProcess {
    /// Pairs a new node through door 2 with `settings` (global flags), then starts `run` with `run_args`.
    pub async fn pair_and_run(computer: &Computer, name: &str, settings: &[&str], run_args: &[&str]) -> NodeProcess {
        let dir = tempfile::tempdir().unwrap();
        let string = support::connection_string(&computer.bridge, &computer.gateway).await.to_string();
        let mut args = vec!["--name", name];
        args.extend_from_slice(settings);
        args.extend(["pair", string.as_str()]);
        let printed = lanyard_node(dir.path(), &args).await;
        assert!(printed.contains("Paired with bridge"), "{printed}");
        NodeProcess::run(dir, name, run_args)
    }

    /// Starts `lanyard-node run` in `dir`. The browser's profile goes under `dir` too (TMPDIR), so a test
    /// can find this node's Chromium among others.
    pub fn run(dir: tempfile::TempDir, name: &str, run_args: &[&str]) -> NodeProcess {
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mut child = Command::new(binary())
            .arg("--state")
            .arg(dir.path())
            .arg("run")
            // mDNS on loopback, on a port of this node's own: tests never hear each other (or anything else).
            .args(["--interface", "lo", "--mdns-port", &support::mdns_port().to_string()])
            .args(run_args)
            .env("TMPDIR", &tmp)
            .env("RUST_LOG", "lanyard_node=debug,node_kit=info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Lines::default(), Lines::default());
        collect(child.stdout.take().unwrap(), stdout.clone(), None);
        collect(child.stderr.take().unwrap(), stderr.clone(), Some(name.to_string()));
        NodeProcess { dir, name: name.to_string(), stdin: child.stdin.take(), child: Some(child), stdout, stderr }
    }

    pub async fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id().unwrap() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Processes whose command line mentions this node's directory: its Chromium and helpers.
    pub fn browser_processes(&self) -> Vec<i32> {
        let marker = self.dir.path().join("tmp").to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains(&marker))
            })
            .collect()
    }

    /// Waits (at most `limit`) for the node to exit by itself; its exit status.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        tokio::time::timeout(limit, child.wait()).await.expect("the node exits by itself in time").unwrap()
    }

    /// SIGTERM, then the exit status (bounded).
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let child = self.child.as_mut().unwrap();
        tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("the node stops within 15 s").unwrap()
    }
}

fn collect(mut output: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Lines, echo: Option<String>) {
    tokio::spawn(async move {
        let (mut buffer, mut pending) = ([0u8; 4096], Vec::new());
        while let Ok(n @ 1..) = output.read(&mut buffer).await {
            into.1.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            pending.extend_from_slice(&buffer[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..=end);
                if let Some(name) = &echo {
                    eprintln!("[{name}] {line}");
                }
                into.0.lock().unwrap().push(line);
            }
        }
    });
}

/// The tool_result block of the tool call `id` in the latest request the model got, if it is there.
pub fn tool_result(api: &MessagesApi, id: &str) -> Option<Value> {
    let request = api.requests().into_iter().rev().find(|r| r.body.to_string().contains(id))?;
    request.body["messages"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == id)
        .cloned()
}

/// The tool_use ids answered in the last user message of `request`.
pub fn answered_tools(request: &ApiRequest) -> Vec<String> {
    let messages = request.body["messages"].as_array().cloned().unwrap_or_default();
    let Some(last_user) = messages.iter().rev().find(|m| m["role"] == "user") else { return Vec::new() };
    last_user["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .filter_map(|b| b["tool_use_id"].as_str().map(str::to_string))
        .collect()
}

/// The text of a tool result's first text block.
pub fn result_text(block: &Value) -> String {
    match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks.iter().find_map(|b| b["text"].as_str()).unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

/// An https server on loopback with a self-signed certificate no browser trusts; every request gets a
/// small page. Its origin.
pub async fn untrusted_https() -> String {
    use tokio_rustls::rustls;
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![issued.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut request = [0u8; 4096];
                let _ = tls.read(&mut request).await;
                let body = "<html><body>impostor</body></html>";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(format!("{head}{body}").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    origin
}
