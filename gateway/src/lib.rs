//! The Lanyard gateway: a WebSocket server on loopback only that runs the `claude` CLI for `agent` calls,
//! keeps a registry of connected nodes and routes `node.invoke` to them.
//!
//! Shaped like tokio's mini-redis: [`server`] accepts, [`connection`] runs one client through handshake and
//! frame loop, [`methods`] holds one file per method behind a dispatcher enum. State shared by connections
//! lives in [`state::GatewayState`].

pub mod agent;
pub mod config;
mod connection;
pub mod home;
mod hub;
mod idempotency;
pub mod logging;
mod methods;
mod nodes;
pub mod pairing;
mod presence;
pub mod server;
mod state;

pub use config::{AgentConfig, GatewayConfig};
pub use server::{Gateway, GatewayError};

/// Milliseconds since the Unix epoch, for timestamps on the wire.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
