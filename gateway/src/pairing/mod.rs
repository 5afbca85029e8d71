//! Pairing, owned by the gateway as the single loopback control plane: the one store of paired nodes and
//! the requests waiting for the owner. The bridge submits requests (it saw the node's key in TLS); the
//! owner decides through an operator client (`lanyard nodes approve`, the prompt of `lanyard up`).

mod codes;
mod pending;
mod remote;
mod sealed;
mod store;

pub(crate) use codes::PairingCodes;
pub(crate) use pending::{Decision, PendingRequests, expired};
pub(crate) use remote::RemoteCodes;
pub(crate) use sealed::{SEALED_FILE, SealedClients};
pub use store::PairedStore;
