//! `node-kit`: the protocol every Lanyard party speaks and the client that nodes and operators embed.
//!
//! - [`protocol`] holds every wire type (frames, methods, node commands, error codes). No other crate
//!   defines wire types, so a change to the protocol is a change here.
//! - [`connection`] turns a WebSocket into a stream of typed frames with size limits; [`link`] is the
//!   in-process link that carries the same frames when the bridge and the gateway share a process.
//! - [`client`] is a builder-style client: connect, request, stream `agent` runs, answer node commands.
//! - [`pairing`] is a node's side of pairing (door 1 by approval, door 2 by [`connection_string`]);
//!   [`discovery`] finds bridges (mDNS, a static address, a connection string); [`node`] keeps a paired
//!   node connected and finds its bridge again after a move.
//! - [`outbound`] is a server connection's bounded send queue; [`refusals`] counts what a server turns
//!   away and logs a summary instead of a line each.
//! - [`seal`] is the sealed HTTP contract for clients with no TLS stack of their own; [`sealed_client`]
//!   is such a client.
//! - [`running`] is the record a running bridge leaves for the other commands of its home.
//! - [`storage`] writes private state files atomically with mode 0600.

pub mod client;
pub mod connection;
pub mod connection_string;
pub mod discovery;
pub mod link;
pub mod node;
pub mod outbound;
pub mod pairing;
pub mod pin;
pub mod protocol;
pub mod refusals;
pub mod relay;
pub mod running;
pub mod seal;
pub mod sealed_client;
pub mod storage;

pub use client::{AgentRun, Client, ClientBuilder, ClientError, CommandHandler};
pub use protocol::{ErrorCode, ErrorShape, Frame};
