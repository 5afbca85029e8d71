//! One file per command.

pub mod agent;
pub mod bridge;
pub mod doctor;
pub mod gateway;
pub mod invoke;
pub mod limits;
pub mod nodes;
pub mod open;
pub mod pair;
pub mod pending;
pub mod service;
pub mod tunnel;
pub mod up;

use ::gateway::home::GatewayToken;
use anyhow::{Context, anyhow};
use node_kit::running::RunningGateway;
use node_kit::{Client, ClientError};
use std::io::BufRead;
use std::path::Path;
use tokio::sync::mpsc;

/// The gateway client commands dial: `--url` when given, else where the gateway of `home` recorded that it
/// listens (so `lanyard up --port 18800` is found without `--url`), else the default port.
pub fn gateway_url(given: Option<String>, home: &Path) -> String {
    given
        .or_else(|| RunningGateway::read(home).ok().flatten().map(|running| running.url))
        .unwrap_or_else(|| format!("ws://127.0.0.1:{}", ::gateway::config::DEFAULT_PORT))
}

/// Keeps `gateway/running.json` for as long as it lives, so client commands of the same home find this
/// gateway on whatever port it got.
pub struct GatewayRecord {
    home: std::path::PathBuf,
    url: String,
}

impl GatewayRecord {
    pub fn write(home: &Path, url: String) -> GatewayRecord {
        let record = RunningGateway { url: url.clone(), pid: std::process::id() };
        if let Err(e) = record.write(home) {
            tracing::warn!(error = %e, "cannot record the running gateway; other commands need --url to find it");
        }
        GatewayRecord { home: home.to_path_buf(), url }
    }
}

impl Drop for GatewayRecord {
    fn drop(&mut self) {
        RunningGateway::remove_if_mine(&self.home, &self.url);
    }
}

/// Reads a token the gateway created in its home, with an error that says what to do when it is missing.
pub fn load_token(path: &Path) -> anyhow::Result<GatewayToken> {
    GatewayToken::load(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "no gateway token at {}: start the gateway first with `lanyard up` or `lanyard gateway` (it \
                 creates the token), or pass the same --home / LANYARD_HOME it uses",
                path.display()
            )
        } else {
            anyhow!("cannot read the gateway token at {}: {e}", path.display())
        }
    })
}

/// Connects to the gateway as an operator, with errors that say what to do.
pub async fn connect(url: &str, home: &Path) -> anyhow::Result<Client> {
    let token = load_token(&::gateway::home::token_path(home))?;
    Client::builder(url)
        .token(token.expose())
        .display_name("lanyard-cli")
        .connect()
        .await
        .map_err(|e| match e {
            ClientError::Connect { .. } => anyhow!(GatewayDown(e.to_string())),
            other => anyhow!(other),
        })
        .context("connecting to the gateway")
}

/// The gateway did not answer at all: not running, or at another address.
#[derive(Debug)]
pub struct GatewayDown(String);

impl std::fmt::Display for GatewayDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; is the gateway running? start it with `lanyard up`, or pass --url with the address it listens on",
            self.0
        )
    }
}

impl std::error::Error for GatewayDown {}

/// A fresh idempotency key for one command invocation.
pub fn idempotency_key() -> String {
    node_kit::client::random_id()
}

/// Lines typed on stdin. A plain thread does the blocking reads: a read cannot be cancelled, and a thread
/// stuck in one does not hold up the runtime's shutdown the way a blocking task would. The channel ends
/// when stdin does.
pub(crate) fn stdin_lines() -> std::io::Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    })?;
    Ok(rx)
}

/// Ends a command with this exit status and nothing more printed: the command has said what it had to.
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Resolves on Ctrl-C or SIGTERM (what `systemctl stop` and `kill` send), so every foreground command
/// ends its servers cleanly either way. The handlers are installed by the call, not the first poll, so a
/// signal that comes before the caller awaits is not fatal.
pub(crate) fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let watched = signal(SignalKind::interrupt()).and_then(|int| Ok((int, signal(SignalKind::terminate())?)));
        async move {
            match watched {
                Ok((mut interrupt, mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch for SIGTERM; stop with Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
