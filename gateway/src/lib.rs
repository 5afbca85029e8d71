//! The Lanyard gateway: a WebSocket server on loopback only that runs the `claude` CLI for `agent` calls,
//! keeps a registry of connected nodes and routes `node.invoke` to them.
//!
//! Shaped like tokio's mini-redis: [`server`] accepts, [`connection`] runs one client through handshake and
//! frame loop, [`methods`] holds one file per method behind a dispatcher enum. State shared by connections
//! lives in [`state::GatewayState`]. The owner's [`console`] is a page on loopback that drives the same
//! methods as an operator.

pub mod agent;
pub mod config;
mod connection;
pub mod console;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
mod hub;
mod idempotency;
mod invoke;
pub mod logging;
mod methods;
mod metrics;
mod nodes;
pub mod pairing;
mod presence;
mod push;
mod request_counts;
pub mod server;
mod state;
mod tools;
pub mod tunnel;

pub use config::{AgentConfig, GatewayConfig};
pub use push::PushConfig;
pub use server::{Gateway, GatewayError};

pub(crate) use node_kit::protocol::now_ms;
