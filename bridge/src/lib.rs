//! The bridge: the only Lanyard process that faces the LAN.
//!
//! Every connection is mutual TLS 1.3 with pinned Ed25519 keys ([`certs`]). A node whose key is not paired
//! may only ask to pair ([`pairing`]); a paired node's calls pass the ACL ([`acl`]) and the rate limits
//! ([`ratelimit`]) and are relayed to the loopback gateway ([`relay`]) on a link that carries the node's
//! identity as the TLS handshake proved it. The gateway keeps the one store of paired nodes, so this
//! process holds no pairing state of its own beyond the requests it is relaying. It advertises itself
//! over mDNS ([`mdns`]) so nodes on the LAN find it.

pub mod acl;
pub mod config;
pub mod connections;
pub mod descriptors;
#[doc(hidden)]
pub mod fuzzing;
mod gateway_link;
pub mod identity;
pub mod mdns;
mod node_side;
mod pairing;
pub mod ratelimit;
mod relay;
mod sealed;
pub mod server;
mod session;
mod shared;
pub mod source;
mod stats;
mod tunnel;

pub use config::BridgeConfig;
pub use server::{Bridge, BridgeError};
