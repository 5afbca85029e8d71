//! Shared test support: a gateway started in-process on a free loopback port with a throwaway home, the
//! scripted Messages API, and where to find the real `claude` binary.
#![allow(dead_code)] // each test file uses a different part of the support module

pub mod messages_api;

use gateway::home::GatewayToken;
use gateway::{Gateway, GatewayConfig};
use messages_api::MessagesApi;
use node_kit::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;

/// A gateway running for one test. Stops when dropped.
pub struct TestGateway {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub token: String,
    /// The token that lets a client speak for nodes, as the bridge does.
    pub bridge_token: String,
    pub home: tempfile::TempDir,
    /// claude's HOME and working directory, when the agent runs the real claude.
    pub claude_home: Option<tempfile::TempDir>,
    /// The console's `http://` address, when the configuration asked for one.
    pub console: Option<String>,
    /// Opens in-process links to the gateway, as a bridge in the same process (`lanyard up`) does.
    pub link: node_kit::link::Connector,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    pub async fn start(configure: impl FnOnce(&mut GatewayConfig)) -> TestGateway {
        TestGateway::start_at(tempfile::tempdir().unwrap(), "127.0.0.1:0".parse().unwrap(), configure).await
    }

    /// A gateway on `addr` with an existing home: how a restart looks (same port, same tokens and store).
    pub async fn start_at(
        home: tempfile::TempDir,
        addr: std::net::SocketAddr,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> TestGateway {
        let mut config = GatewayConfig::new(home.path().to_path_buf());
        config.bind = vec![addr];
        configure(&mut config);
        let gateway = Gateway::bind(config).await.expect("gateway binds");
        let url = gateway.url();
        let console = gateway.console_url();
        let link = gateway.link_connector();
        let addr = gateway.local_addrs()[0];
        let token = GatewayToken::load(&gateway::home::token_path(home.path())).unwrap().expose().to_string();
        let bridge_token =
            GatewayToken::load(&gateway::home::bridge_token_path(home.path())).unwrap().expose().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async {
            let _ = stopped.await;
        }));
        TestGateway {
            url,
            addr,
            token,
            bridge_token,
            home,
            claude_home: None,
            console,
            link,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A gateway whose agent runs the real claude against `api`.
    pub async fn with_claude(
        claude: PathBuf,
        api: &MessagesApi,
        configure: impl FnOnce(&mut GatewayConfig),
    ) -> TestGateway {
        let claude_home = tempfile::tempdir().unwrap();
        let env = claude_env(api, claude_home.path());
        let cwd = claude_home.path().to_path_buf();
        let mut gateway = TestGateway::start(move |config| {
            config.agent.claude_path = Some(claude);
            config.agent.cwd = Some(cwd);
            config.agent.env = env;
            configure(config);
        })
        .await;
        gateway.claude_home = Some(claude_home);
        gateway
    }

    /// Waits until claude has written the transcript of `session_id` (it writes lazily), so a killed
    /// process leaves a conversation to resume.
    pub async fn transcript_written(&self, session_id: &str) {
        let root = self.claude_home.as_ref().expect("a claude gateway").path();
        let name = format!("{session_id}.jsonl");
        let written = || files_under(root).iter().any(|file| file.file_name().is_some_and(|n| *n == *name));
        eventually(Duration::from_secs(10), async || written().then_some(())).await;
    }

    /// The permission mode claude ran the turn it was asked `prompt` in under, as claude itself recorded it:
    /// each prompt's line in its transcript carries the session's `permissionMode` at that turn.
    pub fn permission_mode_of(&self, prompt: &str) -> Option<String> {
        let root = self.claude_home.as_ref().expect("a claude gateway").path();
        files_under(root)
            .into_iter()
            .filter(|file| file.extension().is_some_and(|e| e == "jsonl"))
            .flat_map(|file| {
                std::fs::read_to_string(file).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
            })
            .find_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(&line).ok()?;
                (entry["type"] == "user" && entry["message"]["content"] == prompt)
                    .then(|| entry["permissionMode"].as_str().map(str::to_string))?
            })
    }

    pub async fn operator(&self) -> Client {
        Client::builder(&self.url).token(&self.token).connect().await.expect("operator connects")
    }

    /// A client with the bridge token, as the bridge speaks to the gateway.
    pub async fn bridge_client(&self) -> Client {
        Client::builder(&self.url)
            .token(&self.bridge_token)
            .mode(node_kit::protocol::ClientMode::Bridge)
            .connect()
            .await
            .expect("bridge connects")
    }

    /// Files a pairing request for `node_id` as the bridge does (`pair.submit`, from 192.168.1.23 with the
    /// code 428913); returns its request ID.
    pub async fn submit_pairing(&self, bridge: &Client, node_id: certs::KeyId, name: &str) -> String {
        let submit = serde_json::json!({
            "nodeId": node_id, "name": name, "platform": "ios", "scopes": ["chat", "voice"],
            "address": "192.168.1.23", "sas": "428913",
        });
        let ticket = bridge.request("pair.submit", submit).await.expect("pair.submit");
        ticket["requestId"].as_str().expect("a request ID").to_string()
    }

    /// Pairs `node_id` the way the bridge and the owner do: `pair.submit` with the bridge token, then
    /// `pair.approve` by an operator.
    pub async fn pair_node(&self, node_id: certs::KeyId, name: &str) {
        let request_id = self.submit_pairing(&self.bridge_client().await, node_id, name).await;
        let approve = serde_json::json!({ "requestId": request_id });
        self.operator().await.request("pair.approve", approve).await.expect("pair.approve");
    }

    /// Stops the gateway and waits for it to finish.
    pub async fn stop(self) {
        self.stop_keeping_home().await;
    }

    /// Stops the gateway and hands back its home, for a restart with [`TestGateway::start_at`].
    pub async fn stop_keeping_home(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("gateway stops in time").unwrap();
        }
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.home, placeholder)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The environment that points the real claude at the scripted API: offline, no retries, a throwaway home.
pub fn claude_env(api: &MessagesApi, home: &Path) -> Vec<(String, String)> {
    [
        ("ANTHROPIC_BASE_URL", api.base_url()),
        ("ANTHROPIC_API_KEY", "sk-ant-test-key".into()),
        ("HOME", home.display().to_string()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

/// The real claude binary: `LANYARD_TEST_CLAUDE`, the copy `./test.sh` installs under `.tools/`, or
/// `claude` on PATH. Missing is a failure under CI and a [`skip`] elsewhere.
pub fn claude_binary() -> Option<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(manifest_dir);
    let candidates = [
        std::env::var_os("LANYARD_TEST_CLAUDE").map(PathBuf::from),
        Some(workspace.join(".tools/node_modules/@anthropic-ai/claude-code-linux-x64/claude")),
        which::which("claude").ok(),
    ];
    if let Some(found) = candidates.into_iter().flatten().find(|p| p.is_file()) {
        return Some(found);
    }
    skip("the claude CLI is not installed: run ./test.sh, which installs it into .tools/");
    None
}

/// Marks the running test as skipped, for a test that returns early because something it needs is
/// missing. Under CI (`CI` set) a skip is a failure: this panics. Elsewhere it writes
/// `SKIPPED: <test> (<why>)` straight to stderr, past the test harness's capture, so the line shows
/// even though the test then passes; `./test.sh` counts these lines as skipped, not passed.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    if std::env::var_os("CI").is_some() {
        panic!("{test} may not be skipped under CI: {why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} ({why})");
}

/// Every log line of the process, captured at TRACE through the filter the binaries use, for tests that
/// search the logs for secrets.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs the capture as the process's subscriber (once per test binary).
    pub fn install() -> LogCapture {
        let capture = LogCapture::default();
        let sink = capture.clone();
        tracing_subscriber::fmt()
            .with_env_filter(gateway::logging::filter("trace"))
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .init();
        capture
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics with the offending line if any secret appears in the logs.
    pub fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        for secret in secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret)) {
                panic!("a secret leaked into the logs: {}", &line[..line.len().min(400)]);
            }
        }
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A paired node connecting and asking one turn, timed: the node, the answer, and how long both took. A
/// test times one with nothing in the way first, as the baseline for a bound that must hold on a loaded
/// machine.
pub async fn connect_and_ask(
    identity: &std::sync::Arc<certs::Identity>,
    paired: &node_kit::pairing::PairedBridge,
    prompt: &str,
) -> (node_kit::node::Node, String, Duration) {
    let started = std::time::Instant::now();
    let node = node_kit::node::Node::builder(identity.clone(), paired.clone())
        .connect()
        .await
        .expect("the paired node gets in");
    let outcome = node.agent(node_kit::protocol::AgentParams::new(prompt)).await.unwrap().outcome().await.unwrap();
    (node, outcome.result, started.elapsed())
}

/// Waits until `check` holds, polling, or panics after `limit`.
pub async fn eventually<T>(limit: Duration, check: impl AsyncFnMut() -> Option<T>) -> T {
    awaited("condition", limit, check).await
}

/// [`eventually`], whose failure names `what` it waited for (a panic here has no caller's line to show).
pub async fn awaited<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file anywhere under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() { files_under(&path) } else { vec![path] }
        })
        .collect()
}
