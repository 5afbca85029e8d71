//! The agent: one persistent `claude` process per session key, one turn at a time per session (later
//! turns queue), idle processes ended after a timeout, crashed processes replaced by one that resumes the
//! same claude session.

mod claude;
mod mcp;
mod session;
mod stream;

use crate::config::AgentConfig;
use crate::invoke::Invoker;
use crate::tools::{NodeTools, TOOL_NAMES};
use node_kit::protocol::{AgentEventKind, AgentSessionInfo, ErrorCode, ErrorShape};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What to install when claude is missing; part of every `AGENT_UNAVAILABLE` message.
pub const INSTALL_HINT: &str = "install Claude Code with `npm install -g @anthropic-ai/claude-code` \
(or point the gateway at the binary with --claude PATH)";

/// How claude is run: one persistent process reading user turns as stream-json lines on stdin and printing
/// stream-json on stdout, with token-level deltas.
pub const CLAUDE_ARGS: &[&str] = &[
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--include-partial-messages",
];

/// `--allowedTools=mcp__lanyard__<tool>` for each of the agent's node tools: they run without a
/// permission prompt, and nothing else is allowed that was not before.
pub fn allowed_tool_args() -> Vec<String> {
    TOOL_NAMES.iter().map(|tool| format!("--allowedTools=mcp__{}__{tool}", mcp::SERVER_NAME)).collect()
}

/// Remembered claude session ids of retired sessions, so a later turn resumes the conversation.
const MAX_RESUME_IDS: usize = 1024;

/// One turn handed to a session.
pub(crate) struct Turn {
    pub run_id: String,
    pub prompt: String,
    pub timeout: Duration,
    pub events: mpsc::Sender<AgentEventKind>,
    pub reply: oneshot::Sender<Result<TurnOutput, ErrorShape>>,
}

/// A finished turn.
#[derive(Debug, Clone)]
pub(crate) struct TurnOutput {
    pub result: String,
    pub session_id: String,
    pub usage: Value,
}

pub struct AgentRunner {
    config: AgentConfig,
    /// How the agent's tools reach nodes.
    invoker: Arc<Invoker>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    resume_ids: Mutex<HashMap<String, String>>,
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait until each claude process is gone.
    tasks: TaskTracker,
}

/// The node whose conversation a session key belongs to (`node:<id>:<session>`), if any.
fn origin_node(key: &str) -> Option<String> {
    key.strip_prefix("node:").and_then(|rest| rest.split_once(':')).map(|(node, _)| node.to_string())
}

struct SessionHandle {
    turns: mpsc::Sender<Turn>,
    /// The running process's pid, 0 when none.
    pid: Arc<AtomicU32>,
}

impl AgentRunner {
    pub(crate) fn new(config: AgentConfig, invoker: Arc<Invoker>) -> Arc<AgentRunner> {
        Arc::new(AgentRunner {
            config,
            invoker,
            sessions: Mutex::new(HashMap::new()),
            resume_ids: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    /// The claude binary to run, or `AGENT_UNAVAILABLE` saying what to install.
    pub fn claude_path(&self) -> Result<PathBuf, ErrorShape> {
        let unavailable =
            |what: String| ErrorShape::new(ErrorCode::AgentUnavailable, format!("{what}; {INSTALL_HINT}"));
        match &self.config.claude_path {
            // Absolute, so a relative --claude still works when claude runs in another directory.
            Some(path) if path.is_file() => Ok(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            Some(path) => Err(unavailable(format!("the claude binary {} does not exist", path.display()))),
            None => which::which("claude").map_err(|_| unavailable("no `claude` on PATH".into())),
        }
    }

    /// Queues a turn on the session `key`, starting the session if needed.
    pub(crate) fn submit(self: &Arc<Self>, key: &str, turn: Turn) -> Result<(), ErrorShape> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let turn = match sessions.get(key) {
            Some(handle) => match handle.turns.try_send(turn) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(ErrorShape::retryable(
                        ErrorCode::RateLimited,
                        format!("session {key} already has {} turns waiting", self.config.max_queued_turns),
                        Some(5000),
                    ));
                }
                // The session task ended (shutdown); start a new one below.
                Err(mpsc::error::TrySendError::Closed(turn)) => turn,
            },
            None => turn,
        };
        let (tx, rx) = mpsc::channel(self.config.max_queued_turns.max(1));
        let pid = Arc::new(AtomicU32::new(0));
        tx.try_send(turn).expect("a new queue has room");
        sessions.insert(key.to_string(), SessionHandle { turns: tx, pid: pid.clone() });
        let resume = self.resume_ids.lock().expect("resume lock").remove(key);
        self.tasks.spawn(session::run(self.clone(), key.to_string(), rx, pid, resume));
        Ok(())
    }

    /// The agent's tools for the session `key`: "this screen" is the node the session belongs to.
    fn tools(&self, key: &str) -> NodeTools {
        NodeTools::new(self.invoker.clone(), origin_node(key))
    }

    /// Called by an idle session task: removes the session unless a turn arrived meanwhile. Holding the
    /// sessions lock here and in `submit` means no turn can slip into a queue nobody reads.
    fn retire(&self, key: &str, turns: &mpsc::Receiver<Turn>, claude_session: Option<String>) -> bool {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if !turns.is_empty() {
            return false;
        }
        sessions.remove(key);
        if let Some(id) = claude_session {
            let mut ids = self.resume_ids.lock().expect("resume lock");
            if ids.len() >= MAX_RESUME_IDS {
                ids.clear();
            }
            ids.insert(key.to_string(), id);
        }
        true
    }

    pub fn sessions(&self) -> Vec<AgentSessionInfo> {
        let sessions = self.sessions.lock().expect("sessions lock");
        let mut list: Vec<_> = sessions
            .iter()
            .map(|(key, handle)| AgentSessionInfo {
                session_key: key.clone(),
                pid: Some(handle.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0),
                queued: handle.turns.max_capacity() - handle.turns.capacity(),
            })
            .collect();
        list.sort_by(|a, b| a.session_key.cmp(&b.session_key));
        list
    }

    /// Ends every claude process and waits until they are gone; queued turns are answered with an error.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}
