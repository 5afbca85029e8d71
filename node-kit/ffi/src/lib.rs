//! node-kit for phone apps: one surface, exported with UniFFI to Kotlin (JNA) and Swift.
//!
//! - [`NodeKit`] is the device: its key (kept only in the app's [`KeyStore`]), the computers it is paired
//!   with, pairing by all three doors, and [`NodeKit::connect`].
//! - [`Connection`] stays connected to one computer and reports a [`LinkState`] that never lies; it starts
//!   agent turns ([`Turn`]: a listener plus a handle that cancels), answers prompts, catches up with
//!   `agent.attach`, and serves the app's commands through a [`CommandHandler`].
//! - Discovery: node-kit's mDNS, or the app's own browser through [`BrowseSource`] (phones restrict raw
//!   multicast).
//!
//! Threading: every `async` function runs on tokio (`async_runtime = "tokio"`) and is cancel-safe: a
//! dropped call leaves nothing half done. Because a Swift task's cancellation does not reach the Rust
//! future, every call that can wait long also has an explicit cancel ([`Turn::cancel`],
//! [`PairingApproval::cancel`], [`TaskHandle::cancel`]). Listeners and handlers are called on node-kit's
//! threads, never the app's main thread.

mod commands;
mod connection;
mod discovery;
mod pairing;
mod store;
mod turn;

pub use commands::{CommandHandler, CommandReply, ImageKind};
pub use connection::{ConnectOptions, Connection, LinkListener, LinkState, NetworkPath};
pub use discovery::{BrowseSink, BrowseSource, DiscoveredComputer, DiscoveryListener};
pub use pairing::{NodeKit, PairedComputer, PairingApproval};
pub use store::{KeyStore, file_key_store};
pub use turn::{
    CancelPhase, Decision, HistoryItem, Image, Prompt, QuestionChoice, QuestionPrompt, Session, Turn, TurnEnd,
    TurnEvent, TurnEventKind, TurnListener, TurnOutcome,
};

use node_kit::ClientError;
use std::sync::{Arc, LazyLock, Mutex};

uniffi::setup_scaffolding!();

/// Everything that can go wrong, with the protocol's error code when the computer sent one.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum NodeKitError {
    /// The computer (or its relay) answered with an error; `code` is the protocol's (`PAIRING_CODE_USED`,
    /// `PROMPT_CLOSED`, …) and `retryable` says whether trying again later can help.
    #[error("{code}: {detail}")]
    Remote { code: String, detail: String, retryable: bool },
    /// The computer could not be reached (no route, refused, timed out).
    #[error("{detail}")]
    Unreachable { detail: String },
    /// Something answered at the address, but not with the key pinned at pairing: refused.
    #[error("{detail}")]
    WrongComputer { detail: String },
    /// The computer no longer knows this device (the owner revoked it): only pairing again helps.
    #[error("{detail}")]
    Unpaired { detail: String },
    /// Not connected right now; the connection is being re-established.
    #[error("not connected to the computer right now; reconnecting")]
    NotConnected,
    /// The app's key store failed (thrown by the app's [`KeyStore`]).
    #[error("key store: {detail}")]
    Store { detail: String },
    /// Input the library cannot use (a malformed connection string, an unknown computer).
    #[error("{detail}")]
    Invalid { detail: String },
    /// The call was cancelled with its explicit cancel, or the object was closed.
    #[error("cancelled")]
    Cancelled,
    /// The peer broke the protocol.
    #[error("{detail}")]
    Protocol { detail: String },
}

impl From<ClientError> for NodeKitError {
    fn from(e: ClientError) -> Self {
        let detail = e.to_string();
        match e {
            ClientError::Handshake(shape) | ClientError::Remote(shape) => remote(shape),
            ClientError::Connect { .. } | ClientError::BridgeOffline | ClientError::Relay(_) => {
                NodeKitError::Unreachable { detail }
            }
            ClientError::WrongBridgeKey { .. } => NodeKitError::WrongComputer { detail },
            ClientError::Closed | ClientError::NotConnected => NodeKitError::NotConnected,
            ClientError::Protocol(_) => NodeKitError::Protocol { detail },
        }
    }
}

/// The computer's error as [`NodeKitError`]: `NOT_PAIRED` is its own kind, since the app must pair again.
fn remote(shape: node_kit::ErrorShape) -> NodeKitError {
    if shape.code == node_kit::ErrorCode::NotPaired {
        return NodeKitError::Unpaired { detail: shape.message };
    }
    NodeKitError::Remote { code: shape.code.to_string(), detail: shape.message, retryable: shape.retryable }
}

impl From<uniffi::UnexpectedUniFFICallbackError> for NodeKitError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        NodeKitError::Store { detail: e.reason }
    }
}

/// Runs what sync exported functions start (listener pumps); async ones run on UniFFI's tokio runtime.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lanyard-node-kit")
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
});

/// A running listener (a turn's events, the link state, discovery). Dropping the handle does not stop
/// it; [`TaskHandle::cancel`] does.
#[derive(uniffi::Object)]
pub struct TaskHandle {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TaskHandle {
    fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) -> Arc<TaskHandle> {
        Arc::new(TaskHandle { task: Mutex::new(Some(RUNTIME.spawn(future))) })
    }
}

#[uniffi::export]
impl TaskHandle {
    /// Stops the listener: no call reaches it after this returns (one already running may finish).
    pub fn cancel(&self) {
        if let Some(task) = self.task.lock().expect("task lock").take() {
            task.abort();
        }
    }

    /// Whether the listener has ended (done, or cancelled).
    pub fn is_finished(&self) -> bool {
        self.task.lock().expect("task lock").as_ref().is_none_or(|task| task.is_finished())
    }
}
