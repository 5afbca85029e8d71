//! Gateway settings. Defaults are what `lanyard gateway` runs with; tests shrink the timeouts.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The gateway's default port.
pub const DEFAULT_PORT: u16 = 18789;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Addresses to listen on; every one must be loopback. Empty means 127.0.0.1 and ::1 (where present)
    /// on `port`.
    pub bind: Vec<SocketAddr>,
    /// The port of the default addresses.
    pub port: u16,
    /// The Lanyard home: the token and other state live here.
    pub home: PathBuf,
    pub agent: AgentConfig,
    pub max_frame_bytes: usize,
    /// Requests one connection may have running at once.
    pub max_in_flight: usize,
    /// Frames queued for one connection; a client that lets more pile up is dropped.
    pub outbound_queue: usize,
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// How many idempotency keys are remembered at most, per kind.
    pub idempotency_capacity: usize,
    pub pairing: PairingConfig,
    /// How often refused connects are summed up in one INFO line.
    pub refusal_summary_every: Duration,
    /// How often changed last-seen times are written to the paired-node store.
    pub last_seen_save_every: Duration,
    /// The process's limits as the app sized them, reported by `health`.
    pub limits: Option<node_kit::protocol::LimitsHealth>,
    /// The owner's console, on 127.0.0.1 at this port (0 picks one); `None` serves none.
    pub console_port: Option<u16>,
    /// Web Push to paired devices.
    pub push: crate::push::PushConfig,
}

/// Bounds on pairing requests waiting for the owner.
#[derive(Debug, Clone)]
pub struct PairingConfig {
    /// A request not approved within this time vanishes.
    pub ttl: Duration,
    /// Requests waiting at once, in all.
    pub max_pending: usize,
    /// Requests waiting at once from one network address.
    pub max_pending_per_address: usize,
}

impl Default for PairingConfig {
    fn default() -> Self {
        PairingConfig { ttl: Duration::from_secs(300), max_pending: 16, max_pending_per_address: 2 }
    }
}

impl GatewayConfig {
    pub fn new(home: PathBuf) -> Self {
        GatewayConfig {
            bind: Vec::new(),
            port: DEFAULT_PORT,
            home,
            agent: AgentConfig::default(),
            max_frame_bytes: node_kit::protocol::MAX_FRAME_BYTES,
            max_in_flight: 64,
            outbound_queue: 1024,
            handshake_timeout: Duration::from_millis(node_kit::protocol::HANDSHAKE_TIMEOUT_MS),
            keepalive_interval: Duration::from_secs(30),
            idempotency_ttl: Duration::from_secs(300),
            idempotency_capacity: 4096,
            pairing: PairingConfig::default(),
            refusal_summary_every: Duration::from_secs(60),
            last_seen_save_every: Duration::from_secs(60),
            limits: None,
            console_port: None,
            push: crate::push::PushConfig::from_env(),
        }
    }

    /// The addresses to bind, with the default pair filled in.
    pub fn bind_addrs(&self) -> Vec<SocketAddr> {
        if self.bind.is_empty() {
            vec![SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)), SocketAddr::from((Ipv6Addr::LOCALHOST, self.port))]
        } else {
            self.bind.clone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The `claude` binary; `None` looks it up on `PATH`.
    pub claude_path: Option<PathBuf>,
    /// Working directory for claude; `None` inherits the gateway's.
    pub cwd: Option<PathBuf>,
    /// Extra environment for claude (e.g. `ANTHROPIC_BASE_URL` in tests).
    pub env: Vec<(String, String)>,
    /// Extra arguments appended to claude's command line.
    pub extra_args: Vec<String>,
    /// A session's claude process is ended after this long without a turn.
    pub idle_timeout: Duration,
    /// Default limit for one turn, when the request gives none.
    pub turn_timeout: Duration,
    /// Turns that may wait behind the running one, per session.
    pub max_queued_turns: usize,
    /// A permission prompt, question or plan unanswered this long is denied, and the model told why.
    pub prompt_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            claude_path: None,
            cwd: None,
            env: Vec::new(),
            extra_args: Vec::new(),
            idle_timeout: Duration::from_secs(600),
            turn_timeout: Duration::from_secs(600),
            max_queued_turns: 16,
            prompt_timeout: Duration::from_secs(600),
        }
    }
}
