//! Bridge settings. Defaults are what `lanyard bridge` and `lanyard up` run with; tests shrink them.

use crate::connections::ConnectionCaps;
use crate::identity::KeyStore;
use crate::mdns::MdnsConfig;
use crate::ratelimit::RateLimits;
use node_kit::link::GatewayConnector;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 18790;

#[derive(Clone)]
pub struct BridgeConfig {
    /// The LAN-facing address; every interface on 18790 by default.
    pub bind: SocketAddr,
    /// The Lanyard home: the bridge's key lives under `bridge/` when there is no keychain.
    pub home: PathBuf,
    pub key_store: KeyStore,
    /// The gateway: a loopback URL, or in this process (`lanyard up`), where each link is an in-process
    /// link instead of a WebSocket.
    pub gateway: GatewayConnector,
    /// The gateway's bridge token (`gateway/bridge-token`): it lets the bridge speak for nodes.
    pub gateway_token: String,
    pub limits: RateLimits,
    /// How many connections may be held, unpaired and paired; `lanyard up` sizes them from the
    /// descriptor limit.
    pub caps: ConnectionCaps,
    /// Largest frame from a paired node.
    pub max_frame_bytes: usize,
    /// Largest frame (or unfinished fragmented message) before the peer is known to be paired.
    pub unpaired_max_frame_bytes: usize,
    /// Frames queued for an unpaired node (the pairing dialogue sends through a queue); a node that lets more
    /// pile up is dropped.
    pub outbound_queue: usize,
    /// How long the relay waits for a side to take a message before dropping it as not reading.
    pub write_stall: Duration,
    /// TLS, WebSocket and `connect` must all finish within this time.
    pub handshake_timeout: Duration,
    pub keepalive_interval: Duration,
    /// An unpaired peer's next pairing step must come within this time (waiting for the owner excepted).
    pub pairing_step_timeout: Duration,
    /// The longest an unpaired connection lives, waiting for the owner included.
    pub unpaired_lifetime: Duration,
    /// How often refused connections are summed up in one INFO line.
    pub refusal_summary_every: Duration,
    /// How long `screen.*` callers are told to wait while a node is in the background.
    pub background_retry_after: Duration,
    /// Bonjour/mDNS advertising.
    pub mdns: MdnsConfig,
}

impl std::fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("bind", &self.bind)
            .field("home", &self.home)
            .field("gateway", &self.gateway)
            .field("gateway_token", &"<redacted>")
            .field("caps", &self.caps)
            .field("mdns", &self.mdns)
            .finish_non_exhaustive()
    }
}

impl BridgeConfig {
    pub fn new(home: PathBuf, gateway: impl Into<GatewayConnector>, gateway_token: String) -> Self {
        BridgeConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            home,
            key_store: KeyStore::Auto,
            gateway: gateway.into(),
            gateway_token,
            limits: RateLimits::default(),
            caps: ConnectionCaps::default(),
            max_frame_bytes: node_kit::protocol::MAX_FRAME_BYTES,
            unpaired_max_frame_bytes: node_kit::protocol::UNPAIRED_MAX_FRAME_BYTES,
            outbound_queue: 1024,
            write_stall: Duration::from_secs(5),
            handshake_timeout: Duration::from_millis(node_kit::protocol::HANDSHAKE_TIMEOUT_MS),
            keepalive_interval: Duration::from_secs(30),
            pairing_step_timeout: Duration::from_millis(node_kit::protocol::HANDSHAKE_TIMEOUT_MS),
            // A pending request expires after 5 minutes, when the owner's answer is "expired".
            unpaired_lifetime: Duration::from_secs(6 * 60),
            refusal_summary_every: Duration::from_secs(60),
            background_retry_after: Duration::from_secs(5),
            mdns: MdnsConfig::default(),
        }
    }
}
