//! The agent: one persistent `claude` process per session key, one turn at a time per session (later
//! turns queue), idle processes ended after a timeout, crashed processes replaced by one that resumes the
//! same claude session. claude asks the gateway before any tool that needs permission; each question
//! becomes a prompt of the turn's run ([`runs`]) that the session's node or the owner answers.

mod book;
mod claude;
mod mcp;
pub(crate) mod prompts;
pub(crate) mod runs;
mod session;
mod stream;

pub(crate) use book::SessionBook;

use crate::config::AgentConfig;
use crate::invoke::Invoker;
use crate::tools::{NodeTools, TOOL_NAMES};
use node_kit::protocol::{AgentSessionInfo, Attachment, ErrorCode, ErrorShape, NodePolicy};
use runs::RunLog;
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
/// stream-json on stdout, with token-level deltas, asking the gateway (on the same stdout) before every
/// tool that needs permission, and offering AskUserQuestion and ExitPlanMode, which only exist with the
/// stdio prompt.
pub const CLAUDE_ARGS: &[&str] = &[
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--permission-prompt-tool",
    "stdio",
];

/// The arguments that put a node's conversation under its owner-set policy. The mode is never
/// `bypassPermissions`: [`NodePolicy`] cannot hold it.
pub fn policy_args(policy: &NodePolicy) -> Vec<String> {
    let mut args = vec!["--permission-mode".to_string(), policy.mode.as_str().to_string()];
    args.extend(policy.allowed_tools.iter().map(|p| format!("--allowedTools={p}")));
    args.extend(policy.denied_tools.iter().map(|p| format!("--disallowedTools={p}")));
    args
}

/// The agent's node tools as claude names them: `mcp__lanyard__<tool>`.
pub fn claude_tool_names() -> impl Iterator<Item = String> {
    TOOL_NAMES.iter().map(|tool| format!("mcp__{}__{tool}", mcp::SERVER_NAME))
}

/// `--allowedTools=mcp__lanyard__<tool>` for each of the agent's node tools: they run without a
/// permission prompt, and nothing else is allowed that was not before.
pub fn allowed_tool_args() -> Vec<String> {
    claude_tool_names().map(|name| format!("--allowedTools={name}")).collect()
}

/// One turn handed to a session.
pub(crate) struct Turn {
    /// Where the turn's events, prompts and cancellation live.
    pub run: Arc<RunLog>,
    pub prompt: String,
    pub attachments: Vec<Attachment>,
    /// Not counting time spent waiting for answers.
    pub timeout: Duration,
    /// The node's policy for a node's conversation; `None` runs under the owner's claude settings.
    pub policy: Option<NodePolicy>,
    pub reply: oneshot::Sender<Result<TurnOutput, ErrorShape>>,
}

/// A finished turn.
#[derive(Debug, Clone)]
pub(crate) struct TurnOutput {
    pub result: String,
    pub session_id: String,
    pub usage: Value,
    /// Stopped by `agent.cancel`, running or still queued.
    pub cancelled: bool,
}

pub struct AgentRunner {
    config: AgentConfig,
    /// How the agent's tools reach nodes.
    invoker: Arc<Invoker>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    /// Every conversation's record: titles, history, and the claude session a new process resumes.
    pub(crate) book: SessionBook,
    shutdown: CancellationToken,
    /// Every session task, so shutdown can wait until each claude process is gone.
    tasks: TaskTracker,
}

struct SessionHandle {
    turns: mpsc::Sender<Turn>,
    /// The running process's pid, 0 when none.
    pid: Arc<AtomicU32>,
}

impl AgentRunner {
    pub(crate) fn new(config: AgentConfig, invoker: Arc<Invoker>, book: SessionBook) -> Arc<AgentRunner> {
        Arc::new(AgentRunner {
            config,
            invoker,
            sessions: Mutex::new(HashMap::new()),
            book,
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
        let resume = self.book.claude_session(key);
        self.tasks.spawn(session::run(self.clone(), key.to_string(), rx, pid, resume));
        Ok(())
    }

    /// The agent's tools for the session `key`: "this screen" is the node the session belongs to.
    fn tools(&self, key: &str) -> NodeTools {
        let node = match runs::Party::of_session(key) {
            runs::Party::Node(node) => Some(node),
            runs::Party::Owner => None,
        };
        NodeTools::new(self.invoker.clone(), node)
    }

    /// Called by an idle session task: removes the session unless a turn arrived meanwhile. Holding the
    /// sessions lock here and in `submit` means no turn can slip into a queue nobody reads. The book
    /// keeps the claude session, so a later turn resumes it.
    fn retire(&self, key: &str, turns: &mpsc::Receiver<Turn>) -> bool {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if !turns.is_empty() {
            return false;
        }
        sessions.remove(key);
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
