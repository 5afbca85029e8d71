//! Agent turns as typed events: a listener the app implements, and a [`Turn`] handle that cancels.

use crate::{NodeKitError, RUNTIME};
use node_kit::AgentRun;
use node_kit::protocol::{AgentEvent, AgentEventKind, AgentOutcome, PromptResolution, RunPhase, RunStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What to ask the agent.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Prompt {
    pub text: String,
    /// The conversation to continue (`main` when none).
    pub session_key: Option<String>,
    /// A voice transcript rather than typed text (needs the `voice` scope).
    pub voice: bool,
    /// Images that reach the model with the prompt.
    pub images: Vec<Image>,
    /// Makes a retry safe: the same key within 5 minutes returns the first turn instead of starting
    /// another. A fresh one is made when none is given.
    pub idempotency_key: Option<String>,
}

/// An image sent with a prompt: `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
#[derive(Debug, Clone, uniffi::Record)]
pub struct Image {
    pub media_type: String,
    pub data: Vec<u8>,
}

impl Prompt {
    pub(crate) fn params(self) -> node_kit::protocol::AgentParams {
        let mut params = node_kit::protocol::AgentParams::new(self.text);
        params.session_key = self.session_key;
        if let Some(key) = self.idempotency_key {
            params.idempotency_key = key;
        }
        if self.voice {
            params.channel = node_kit::protocol::AgentChannel::Voice;
        }
        params.attachments = self
            .images
            .into_iter()
            .map(|image| node_kit::protocol::Attachment {
                media_type: image.media_type,
                data: data_encoding::BASE64.encode(&image.data),
            })
            .collect();
        params
    }
}

/// One event of a turn, with its place in the run (from 1, no gaps: what [`crate::Connection::attach`]
/// resumes after).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TurnEvent {
    pub run_id: String,
    pub seq: u64,
    pub kind: TurnEventKind,
}

#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum TurnEventKind {
    /// The next piece of the model's answer.
    Text {
        text: String,
    },
    /// The model called a tool; `input_json` is its input.
    ToolUse {
        tool_use_id: String,
        name: String,
        input_json: String,
    },
    ToolResult {
        tool_use_id: String,
        content_json: String,
        is_error: bool,
    },
    /// The agent wants to use a tool: answer with [`crate::Connection::respond`], allow or deny.
    Permission {
        request_id: String,
        tool_name: String,
        summary: String,
        input_json: String,
        expires_at_ms: u64,
    },
    /// The agent asks the person to choose: answer with each question's chosen label.
    Question {
        request_id: String,
        questions: Vec<QuestionPrompt>,
        expires_at_ms: u64,
    },
    /// The agent presents its plan: allow approves it, deny keeps planning (the message says why).
    Plan {
        request_id: String,
        plan: String,
        expires_at_ms: u64,
    },
    /// A prompt was answered (here or on another device), timed out, or withdrawn: stop showing it.
    PromptClosed {
        request_id: String,
        resolution: String,
    },
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QuestionPrompt {
    pub question: String,
    pub header: Option<String>,
    pub options: Vec<QuestionChoice>,
    /// Several labels may be chosen: answer them comma-separated.
    pub multi_select: bool,
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct QuestionChoice {
    pub label: String,
    pub description: Option<String>,
}

impl From<AgentEvent> for TurnEvent {
    fn from(event: AgentEvent) -> Self {
        let json = |value: serde_json::Value| value.to_string();
        let kind = match event.kind {
            AgentEventKind::TextDelta { text } => TurnEventKind::Text { text },
            AgentEventKind::ToolUse { tool_use_id, name, input } => {
                TurnEventKind::ToolUse { tool_use_id, name, input_json: json(input) }
            }
            AgentEventKind::ToolResult { tool_use_id, content, is_error } => {
                TurnEventKind::ToolResult { tool_use_id, content_json: json(content), is_error }
            }
            AgentEventKind::Permission { request_id, tool_name, summary, input, expires_at_ms, .. } => {
                TurnEventKind::Permission { request_id, tool_name, summary, input_json: json(input), expires_at_ms }
            }
            AgentEventKind::Question { request_id, questions, expires_at_ms } => TurnEventKind::Question {
                request_id,
                questions: questions
                    .into_iter()
                    .map(|q| QuestionPrompt {
                        question: q.question,
                        header: q.header,
                        options: q
                            .options
                            .into_iter()
                            .map(|o| QuestionChoice { label: o.label, description: o.description })
                            .collect(),
                        multi_select: q.multi_select,
                    })
                    .collect(),
                expires_at_ms,
            },
            AgentEventKind::Plan { request_id, plan, expires_at_ms } => {
                TurnEventKind::Plan { request_id, plan, expires_at_ms }
            }
            AgentEventKind::PromptClosed { request_id, resolution } => {
                TurnEventKind::PromptClosed { request_id, resolution: resolution_name(resolution).into() }
            }
        };
        TurnEvent { run_id: event.run_id, seq: event.seq, kind }
    }
}

fn resolution_name(resolution: PromptResolution) -> &'static str {
    match resolution {
        PromptResolution::Allowed => "allowed",
        PromptResolution::Denied => "denied",
        PromptResolution::TimedOut => "timed_out",
        PromptResolution::Withdrawn => "withdrawn",
    }
}

/// How a turn ended at the computer.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct TurnOutcome {
    pub run_id: String,
    /// False when the turn was cancelled (here, on another device, or dropped from the queue).
    pub completed: bool,
    /// The whole answer text.
    pub result: String,
    /// claude's own session ID.
    pub session_id: String,
    pub duration_ms: u64,
}

impl From<AgentOutcome> for TurnOutcome {
    fn from(outcome: AgentOutcome) -> Self {
        TurnOutcome {
            run_id: outcome.run_id,
            completed: outcome.status == RunStatus::Ok,
            result: outcome.result,
            session_id: outcome.session_id,
            duration_ms: outcome.duration_ms,
        }
    }
}

/// The last call a [`TurnListener`] gets.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum TurnEnd {
    Finished {
        outcome: TurnOutcome,
    },
    /// The turn failed, or could not be followed to its end (the link stayed down too long); `code` is
    /// the protocol's error code when the computer sent one.
    Failed {
        message: String,
        code: Option<String>,
    },
}

/// Receives a turn's events, in order and each once, then its end. Called on node-kit's threads.
#[uniffi::export(with_foreign)]
pub trait TurnListener: Send + Sync {
    fn on_event(&self, event: TurnEvent);
    fn on_end(&self, end: TurnEnd);
}

/// What `agent.cancel` found: the turn was running (claude was interrupted), queued (it will not run),
/// or already finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CancelPhase {
    Queued,
    Running,
    Finished,
}

/// An answer to a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Decision {
    Allow,
    Deny,
}

/// A conversation of this device's, newest activity first.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Session {
    pub session_key: String,
    pub title: String,
    pub created_at_ms: u64,
    pub last_activity_ms: u64,
    pub turns: u64,
    pub running: bool,
}

/// One entry of a conversation: `user`, `assistant` or `tool` (whose `text` is the tool's summary).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct HistoryItem {
    pub index: u64,
    pub at_ms: u64,
    pub role: String,
    pub text: String,
}

impl From<node_kit::protocol::HistoryEntry> for HistoryItem {
    fn from(entry: node_kit::protocol::HistoryEntry) -> Self {
        use node_kit::protocol::HistoryItem as Item;
        let (role, text) = match entry.item {
            Item::User { text, .. } => ("user", text),
            Item::Assistant { text } => ("assistant", text),
            Item::Tool { name, summary, .. } => ("tool", format!("{name}: {summary}")),
        };
        HistoryItem { index: entry.index, at_ms: entry.at_ms, role: role.into(), text }
    }
}

/// A turn in progress. Its events go to the listener given when it started; [`Turn::cancel`] stops it at
/// the computer, [`Turn::stop_listening`] only here.
#[derive(uniffi::Object)]
pub struct Turn {
    run_id: String,
    duplicate: bool,
    node: node_kit::node::Node,
    last_seq: Arc<AtomicU64>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Turn {
    /// Follows `run` to its end on node-kit's runtime, handing each event to `listener`.
    pub(crate) fn follow(node: node_kit::node::Node, mut run: AgentRun, listener: Arc<dyn TurnListener>) -> Arc<Turn> {
        let last_seq = Arc::new(AtomicU64::new(run.last_seq()));
        let (run_id, duplicate) = (run.run_id().to_string(), run.is_duplicate());
        let seen = last_seq.clone();
        let pump = RUNTIME.spawn(async move {
            while let Some(event) = run.next().await {
                seen.store(event.seq, Ordering::Relaxed);
                listener.on_event(event.into());
            }
            let end = match run.outcome().await {
                Ok(outcome) => TurnEnd::Finished { outcome: outcome.into() },
                Err(e) => TurnEnd::Failed { code: e.code().map(|c| c.to_string()), message: e.to_string() },
            };
            listener.on_end(end);
        });
        Arc::new(Turn { run_id, duplicate, node, last_seq, pump: Mutex::new(Some(pump)) })
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Turn {
    pub fn run_id(&self) -> String {
        self.run_id.clone()
    }

    /// True when the prompt's idempotency key was seen before: this is the first turn, and its events
    /// are not sent again (attach to see them).
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// The sequence number of the last event handed to the listener.
    pub fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Relaxed)
    }

    /// Stops the turn at the computer (`agent.cancel`: claude is interrupted, or the queued turn
    /// dropped). The listener still gets the end, a cancelled outcome.
    pub async fn cancel(&self) -> Result<CancelPhase, NodeKitError> {
        let result = self.node.cancel(self.run_id.clone()).await?;
        Ok(match result.was {
            RunPhase::Queued => CancelPhase::Queued,
            RunPhase::Running => CancelPhase::Running,
            RunPhase::Finished => CancelPhase::Finished,
        })
    }

    /// Stops delivering events here; the turn goes on at the computer.
    pub fn stop_listening(&self) {
        if let Some(pump) = self.pump.lock().expect("pump lock").take() {
            pump.abort();
        }
    }
}
