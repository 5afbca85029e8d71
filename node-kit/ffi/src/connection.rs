//! A connection to one paired computer, kept up across restarts, moves and revocation, with a link state
//! that says what is true now.

use crate::commands::ForeignCommands;
use crate::discovery::{BrowseSource, Browsed, mdns};
use crate::pairing::NodeKit;
use crate::turn::{Decision, HistoryItem, Prompt, Session, Turn, TurnEvent, TurnListener};
use crate::{CommandHandler, NodeKitError, TaskHandle};
use node_kit::node::{Backoff, Link, LinkChange, Node};
use node_kit::pairing::PairedBridge;
use node_kit::protocol::{AppState, AttachParams, HistoryParams, LinkPath, NodeAdvert, RespondParams, VOICE_EVENT};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NetworkPath {
    /// Straight to the computer on the local network.
    Lan,
    /// Through the owner's relay.
    Relay,
}

impl From<LinkPath> for NetworkPath {
    fn from(path: LinkPath) -> Self {
        match path {
            LinkPath::Lan => NetworkPath::Lan,
            LinkPath::Relay => NetworkPath::Relay,
        }
    }
}

impl From<NetworkPath> for LinkPath {
    fn from(path: NetworkPath) -> Self {
        match path {
            NetworkPath::Lan => LinkPath::Lan,
            NetworkPath::Relay => LinkPath::Relay,
        }
    }
}

/// The link to the computer, as it is now.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum LinkState {
    /// Connected on `path`; `via` is the LAN address or the relay's URL.
    Connected { path: NetworkPath, via: String },
    /// The connection dropped and is being re-established. `reason` is what went wrong last (the
    /// computer's words when it said why, as `code`); `next_attempt_ms` is when the next try starts, once
    /// a try has failed.
    Reconnecting { reason: Option<String>, code: Option<String>, next_attempt_ms: Option<u64> },
    /// Away from home, the relay says the computer is not connected to it (off, asleep, offline). Still
    /// trying.
    ComputerOffline { next_attempt_ms: Option<u64> },
    /// The computer no longer knows this device (its owner revoked it). Final: pair again.
    Unpaired { message: String },
    /// Closed, or refused for good for another reason. Final.
    Stopped { message: String },
}

impl LinkState {
    fn is_final(&self) -> bool {
        matches!(self, LinkState::Unpaired { .. } | LinkState::Stopped { .. })
    }
}

/// Told every change of the link state, starting with the current one.
#[uniffi::export(with_foreign)]
pub trait LinkListener: Send + Sync {
    fn on_link(&self, state: LinkState);
}

/// How to connect. [`default_connect_options`] gives the usual ones.
#[derive(Debug, Clone, uniffi::Record)]
pub struct ConnectOptions {
    /// Look for the computer with node-kit's mDNS (ignored when the app passes its own browser).
    pub mdns: bool,
    /// Browse only on these interfaces (every one when empty).
    pub mdns_interfaces: Vec<String>,
    /// Another port than 5353, for test networks.
    pub mdns_port: Option<u16>,
    /// The commands this device answers (`screen.snapshot`, …) and its capabilities (`screen`).
    pub commands: Vec<String>,
    pub caps: Vec<String>,
    /// How long [`crate::NodeKit::connect`] keeps trying before it gives up.
    pub first_connect_timeout_ms: u64,
    /// The longest wait between reconnection tries.
    pub max_retry_delay_ms: u64,
}

/// mDNS on every interface, no commands, 10 s to connect, retries at most 15 s apart.
#[uniffi::export]
pub fn default_connect_options() -> ConnectOptions {
    ConnectOptions {
        mdns: true,
        mdns_interfaces: Vec::new(),
        mdns_port: None,
        commands: Vec::new(),
        caps: Vec::new(),
        first_connect_timeout_ms: 10_000,
        max_retry_delay_ms: Backoff::default().max.as_millis() as u64,
    }
}

/// A connection to a paired computer. Close it when done: it reconnects by itself until then.
#[derive(uniffi::Object)]
pub struct Connection {
    node: Node,
    state: watch::Receiver<LinkState>,
}

impl Connection {
    pub(crate) async fn open(
        kit: Arc<NodeKit>,
        paired: PairedBridge,
        options: ConnectOptions,
        commands: Option<Arc<dyn CommandHandler>>,
        browse: Option<Arc<dyn BrowseSource>>,
    ) -> Result<Arc<Connection>, NodeKitError> {
        let (name, platform) = kit.device_name();
        let backoff = Backoff { max: Duration::from_millis(options.max_retry_delay_ms), ..Backoff::default() };
        let mut builder = Node::builder(kit.identity(), paired).display_name(name).platform(platform).backoff(backoff);
        if let Some(handler) = commands {
            let advert = NodeAdvert { caps: options.caps, commands: options.commands };
            builder = builder.commands(advert, ForeignCommands(handler));
        }
        builder = match browse {
            Some(source) => builder.discovery(Browsed(source)),
            None if options.mdns => builder.discovery(mdns(options.mdns_interfaces, options.mdns_port)),
            None => builder,
        };
        let node =
            builder.first_connect_timeout(Duration::from_millis(options.first_connect_timeout_ms)).connect().await?;
        let first = connected_state(&node);
        let (state, watcher) = watch::channel(first);
        remember(&kit, &node);
        tokio::spawn(follow_link(kit, node.clone(), state));
        Ok(Arc::new(Connection { node, state: watcher }))
    }
}

/// The state of a node that is connected now.
fn connected_state(node: &Node) -> LinkState {
    let path = node.path();
    let via = match path {
        LinkPath::Lan => node.bridge().address,
        LinkPath::Relay => node.bridge().relay.map(|relay| relay.url).unwrap_or_default(),
    };
    LinkState::Connected { path: path.into(), via }
}

/// Saves what the live connection learnt (address, path, relay token, the computer's name).
fn remember(kit: &NodeKit, node: &Node) {
    let Ok(client) = node.client() else { return };
    if let Err(e) = kit.connected(node.bridge(), &client.hello().server.name, node.path().into()) {
        tracing::warn!(error = %e, "could not store the computer's new address");
    }
}

/// Keeps `state` true: the node's link decides the state; its changes add why and when the next try is.
async fn follow_link(kit: Arc<NodeKit>, node: Node, state: watch::Sender<LinkState>) {
    let mut link = node.link();
    let mut changes = node.changes();
    loop {
        tokio::select! {
            changed = link.changed() => {
                if changed.is_err() {
                    return;
                }
                let next = match &*link.borrow_and_update() {
                    Link::Connected(_) => None,
                    Link::Reconnecting(cause) => Some(LinkState::Reconnecting {
                        reason: cause.as_ref().map(|e| e.message.clone()),
                        code: cause.as_ref().map(|e| e.code.to_string()),
                        next_attempt_ms: None,
                    }),
                    Link::BridgeOffline => Some(LinkState::ComputerOffline { next_attempt_ms: None }),
                    Link::Unpaired(e) => Some(LinkState::Unpaired { message: e.message.clone() }),
                    Link::Stopped(e) => Some(LinkState::Stopped { message: e.to_string() }),
                };
                let next = next.unwrap_or_else(|| {
                    remember(&kit, &node);
                    connected_state(&node)
                });
                let last = next.is_final();
                state.send_replace(next);
                if last {
                    return;
                }
            }
            change = changes.recv() => { match change {
                Ok(LinkChange::Retrying { error, next_attempt_in }) => state.send_if_modified(|now| {
                    let LinkState::Reconnecting { .. } = now else { return false };
                    *now = LinkState::Reconnecting {
                        reason: Some(error.to_string()),
                        code: error.code().map(|c| c.to_string()),
                        next_attempt_ms: Some(next_attempt_in.as_millis() as u64),
                    };
                    true
                }),
                Ok(LinkChange::BridgeOffline { next_attempt_in }) => state.send_if_modified(|now| {
                    *now = LinkState::ComputerOffline { next_attempt_ms: Some(next_attempt_in.as_millis() as u64) };
                    true
                }),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }; }
        }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Connection {
    /// The link as it is now.
    pub fn link_state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// Calls `listener` with the current state, then with every change, until the handle is cancelled
    /// or the state is final.
    pub fn observe_link(&self, listener: Arc<dyn LinkListener>) -> Arc<TaskHandle> {
        let mut state = self.state.clone();
        TaskHandle::spawn(async move {
            loop {
                let now = state.borrow_and_update().clone();
                let last = now.is_final();
                listener.on_link(now);
                if last || state.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// Waits until connected, at most `timeout_ms`; the state then.
    pub async fn wait_connected(&self, timeout_ms: u64) -> LinkState {
        let mut state = self.state.clone();
        let connected = state.wait_for(|s| matches!(s, LinkState::Connected { .. }) || s.is_final());
        let _ = tokio::time::timeout(Duration::from_millis(timeout_ms), connected).await;
        self.link_state()
    }

    /// Sends a prompt; its events go to `listener` as they come. Returns once the computer took the turn.
    /// If the link drops mid-turn, the turn is followed again after reconnecting from the last event
    /// seen: nothing lost, nothing twice.
    pub async fn start_turn(&self, prompt: Prompt, listener: Arc<dyn TurnListener>) -> Result<Arc<Turn>, NodeKitError> {
        let run = self.node.agent(prompt.params()).await?;
        Ok(Turn::follow(self.node.clone(), run, listener))
    }

    /// Follows a turn already started (here before the app was closed, or on another device), replaying
    /// its events after `after_seq` (0: every event the computer still holds).
    pub async fn attach(
        &self,
        run_id: String,
        after_seq: u64,
        listener: Arc<dyn TurnListener>,
    ) -> Result<Arc<Turn>, NodeKitError> {
        let params = AttachParams { run_id: Some(run_id), session_key: None, after_seq };
        let run = self.node.attach(params).await?;
        Ok(Turn::follow(self.node.clone(), run, listener))
    }

    /// Answers a permission prompt, a question (`answers`: question → chosen label) or a plan. Another
    /// device may have answered first: then `PROMPT_CLOSED`.
    pub async fn respond(
        &self,
        run_id: String,
        request_id: String,
        decision: Decision,
        message: Option<String>,
        answers: HashMap<String, String>,
    ) -> Result<(), NodeKitError> {
        let decision = match decision {
            Decision::Allow => node_kit::protocol::Decision::Allow,
            Decision::Deny => node_kit::protocol::Decision::Deny,
        };
        let mut params = RespondParams::new(run_id, request_id, decision);
        params.message = message;
        for (question, label) in answers {
            params = params.answer(question, label);
        }
        self.node.respond(params).await?;
        Ok(())
    }

    /// The prompts waiting for this device's answer (after a restart, to show them again).
    pub async fn pending(&self) -> Result<Vec<TurnEvent>, NodeKitError> {
        Ok(self.node.pending().await?.prompts.into_iter().map(Into::into).collect())
    }

    /// This device's conversations, newest activity first.
    pub async fn sessions(&self) -> Result<Vec<Session>, NodeKitError> {
        let list = self.node.sessions().await?;
        Ok(list
            .sessions
            .into_iter()
            .map(|s| Session {
                session_key: s.session_key,
                title: s.title,
                created_at_ms: s.created_at_ms,
                last_activity_ms: s.last_activity_ms,
                turns: s.turns,
                running: s.running,
            })
            .collect())
    }

    /// A page of a conversation, oldest first: the latest `limit` entries, or those before `before`.
    pub async fn history(
        &self,
        session_key: String,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Vec<HistoryItem>, NodeKitError> {
        let page = self.node.history(HistoryParams { session_key, before, limit }).await?;
        Ok(page.entries.into_iter().map(Into::into).collect())
    }

    /// The app went to the background (the computer answers `screen.*` itself meanwhile) or came back.
    pub async fn set_background(&self, background: bool) -> Result<(), NodeKitError> {
        let state = if background { AppState::Background } else { AppState::Foreground };
        Ok(self.node.set_app_state(state).await?)
    }

    /// Whether this device can take voice now (its microphone is free); the computer shows it.
    pub async fn set_voice_available(&self, available: bool) -> Result<(), NodeKitError> {
        Ok(self.node.event(VOICE_EVENT, serde_json::json!({ "available": available })).await?)
    }

    /// Publishes an event of the app's own to the computer's operators; `payload_json` is its JSON.
    pub async fn send_event(&self, event: String, payload_json: String) -> Result<(), NodeKitError> {
        let payload = serde_json::from_str(&payload_json)
            .map_err(|e| NodeKitError::Invalid { detail: format!("the payload is not JSON: {e}") })?;
        Ok(self.node.event(&event, payload).await?)
    }

    /// Stops reconnecting and closes the connection; the link state becomes `Stopped`. (Dropping the
    /// object, `close()` in Kotlin, does the same.)
    pub fn disconnect(&self) {
        self.node.close();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.node.close();
    }
}
