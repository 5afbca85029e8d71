//! The two servers under soak, each a real process with its log in a file: `lanyard up` (gateway and
//! bridge, running the real claude against the scripted Messages API) and the relay Worker under
//! `wrangler dev` (workerd). Each runs in a process group of its own, stopped whole on drop.

use anyhow::{Context, bail};
use certs::{Identity, KeyId};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on yet.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// A child process in a group of its own, its output appended to `log`.
pub struct Server {
    child: Child,
    pub log: PathBuf,
}

impl Server {
    fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Server> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = std::os::unix::process::CommandExt::process_group(
            command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out),
            0,
        )
        .spawn()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        Ok(Server { child, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The log's last `lines` lines, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM to the group, as a service manager stops it; SIGKILL after `patience`. Whether it exited
    /// on the SIGTERM, and how.
    pub fn stop(&mut self, patience: Duration) -> Option<std::process::ExitStatus> {
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// The relay Worker under `wrangler dev` on loopback, its state in `state`.
pub struct Relay {
    pub server: Server,
    pub url: String,
}

impl Relay {
    pub async fn start(node: &Path, worker: &Path, state: &Path, log: &Path, limit: Duration) -> anyhow::Result<Relay> {
        let wrangler = worker.join("node_modules/wrangler/bin/wrangler.js");
        if !wrangler.is_file() {
            bail!("{} is missing: run apps/relay-worker/test.sh --install-only", wrangler.display());
        }
        let port = free_port();
        let mut server = Server::spawn(
            Command::new(node)
                .arg(&wrangler)
                .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
                .args(["--inspector-port", &free_port().to_string(), "--persist-to"])
                .arg(state)
                .current_dir(worker)
                .env("WRANGLER_SEND_METRICS", "false")
                .env("WRANGLER_HIDE_BANNER", "true")
                .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                .env("WRANGLER_SEND_ERROR_REPORTS", "false")
                .env("NO_COLOR", "1"),
            log,
        )?;
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = server.exited() {
                bail!("wrangler dev exited ({status}):\n{}", server.log_tail(30));
            }
            if http_ok(&format!("127.0.0.1:{port}"), "/v1/health").await {
                return Ok(Relay { server, url: format!("http://127.0.0.1:{port}") });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("wrangler dev did not answer /v1/health within {limit:?}:\n{}", server.log_tail(30))
    }
}

/// Whether `GET path` at `addr` answers 200.
async fn http_ok(addr: &str, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else { return false };
    let request = format!("GET {path} HTTP/1.0\r\nHost: relay\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
}

/// How `lanyard up` is run.
pub struct UpSettings<'a> {
    pub lanyard: &'a Path,
    pub home: &'a Path,
    pub claude: &'a Path,
    /// claude's HOME and working directory.
    pub claude_dir: &'a Path,
    /// claude's environment (the scripted API's address, a throwaway home, no retries).
    pub claude_env: Vec<(String, String)>,
    pub log: &'a Path,
}

/// A running `lanyard up`.
pub struct Lanyard {
    pub server: Server,
    pub bridge: SocketAddr,
    pub bridge_id: KeyId,
    pub gateway_url: String,
    pub operator_token: String,
}

/// An idle claude process ends after this long: turns go to many devices' conversations, so processes
/// come and go all the time, as in a day of use; without it every device would keep a claude running.
const CLAUDE_IDLE_SECS: &str = "20";

impl Lanyard {
    pub async fn start(settings: UpSettings<'_>, limit: Duration) -> anyhow::Result<Lanyard> {
        let (gateway_port, bridge_port) = (free_port(), free_port());
        let mut server = Server::spawn(
            Command::new(settings.lanyard)
                .args(["up", "--mdns", "off", "--key-store", "file", "--bridge-bind", "127.0.0.1", "--no-console"])
                .args(["--port", &gateway_port.to_string(), "--bridge-port", &bridge_port.to_string()])
                .arg("--claude")
                .arg(settings.claude)
                .arg("--cwd")
                .arg(settings.claude_dir)
                .args(["--idle-timeout", CLAUDE_IDLE_SECS, "--turn-timeout", "300", "--prompt-timeout", "300"])
                .envs(settings.claude_env)
                .env("LANYARD_HOME", settings.home)
                // Its own default levels: the soak judges the log a user would get.
                .env_remove("RUST_LOG")
                .env("NO_COLOR", "1"),
            settings.log,
        )?;
        let started = Instant::now();
        loop {
            if let Some(status) = server.exited() {
                bail!("lanyard up exited ({status}):\n{}", server.log_tail(30));
            }
            let log = std::fs::read_to_string(settings.log).unwrap_or_default();
            if log.contains("Stop with Ctrl-C") {
                break;
            }
            if started.elapsed() > limit {
                bail!("lanyard up did not start within {limit:?}:\n{}", server.log_tail(30));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pem = std::fs::read_to_string(bridge::identity::key_file(settings.home)).context("the bridge's key")?;
        let token = gateway::home::GatewayToken::load(&gateway::home::token_path(settings.home))
            .map_err(|e| anyhow::anyhow!("the gateway's token: {e}"))?;
        Ok(Lanyard {
            server,
            bridge: SocketAddr::from(([127, 0, 0, 1], bridge_port)),
            bridge_id: Identity::from_pkcs8_pem(&pem).map_err(|e| anyhow::anyhow!("the bridge's key: {e}"))?.id(),
            gateway_url: format!("ws://127.0.0.1:{gateway_port}"),
            operator_token: token.expose().to_string(),
        })
    }

    /// `lanyard tunnel enable RELAY` through the running gateway, as the owner types it.
    pub async fn enable_tunnel(&self, lanyard: &Path, home: &Path, relay: &str) -> anyhow::Result<()> {
        let out = tokio::process::Command::new(lanyard)
            .args(["--url", &self.gateway_url, "tunnel", "enable", relay])
            .env("LANYARD_HOME", home)
            .stdin(Stdio::null())
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), out).await.context("lanyard tunnel enable hung")??;
        if !out.status.success() {
            bail!("lanyard tunnel enable failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}
