//! The agent's methods and events: turns (`agent`), the prompts a turn raises and their answers
//! (`agent.respond`), interrupts (`agent.cancel`), catch-up (`agent.attach`, `agent.pending`), and the
//! conversations so far (`agent.sessions`, `agent.history`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentParams {
    pub prompt: String,
    /// Conversation to continue; one `claude` process serves one session. Defaults to `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Required: a retry with the same key (within 5 minutes) returns the first run's outcome.
    pub idempotency_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where the prompt came from. A node needs the matching scope; voice transcripts have their own
    /// rate limit.
    #[serde(default, skip_serializing_if = "AgentChannel::is_chat")]
    pub channel: AgentChannel,
    /// Images that reach the model with the prompt; at most [`MAX_ATTACHMENTS`](super::MAX_ATTACHMENTS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

impl AgentParams {
    /// A typed prompt on the default session, with a fresh idempotency key.
    pub fn new(prompt: impl Into<String>) -> AgentParams {
        AgentParams {
            prompt: prompt.into(),
            session_key: None,
            idempotency_key: crate::client::random_id(),
            timeout_ms: None,
            channel: AgentChannel::Chat,
            attachments: Vec::new(),
        }
    }

    /// The same prompt on the conversation `key`.
    pub fn session(mut self, key: impl Into<String>) -> AgentParams {
        self.session_key = Some(key.into());
        self
    }

    /// Adds an image.
    pub fn attach(mut self, attachment: Attachment) -> AgentParams {
        self.attachments.push(attachment);
        self
    }
}

/// An image sent with a prompt: base64 `data` of one of [`ATTACHMENT_MEDIA_TYPES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub media_type: String,
    pub data: String,
}

/// The image types the model reads.
pub const ATTACHMENT_MEDIA_TYPES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentChannel {
    /// Typed text.
    #[default]
    Chat,
    /// A voice transcript.
    Voice,
}

impl AgentChannel {
    fn is_chat(&self) -> bool {
        *self == AgentChannel::Chat
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// First answer to `agent` (and `agent.attach`): the run is queued, running, or being replayed.
    Accepted,
    /// Final answer: the run finished.
    Ok,
    /// Final answer: the run was stopped by `agent.cancel` (claude's interrupt) or dropped from the queue.
    Cancelled,
}

/// The first `res` to an `agent` or `agent.attach` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentAck {
    pub run_id: String,
    pub status: RunStatus,
    /// True when this is a retry of an idempotency key already seen; no events are re-sent.
    #[serde(default)]
    pub duplicate: bool,
    /// Set on the ack of `agent.attach`: what the replay holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<AttachInfo>,
}

/// What an `agent.attach` replays. Events after `afterSeq` follow this ack in order, then live ones,
/// then the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachInfo {
    pub session_key: String,
    /// The sequence number the replay starts after.
    pub after_seq: u64,
    /// The run's latest event so far.
    pub last_seq: u64,
    /// Events the run's buffer no longer holds (it keeps the latest ones): the caller cannot get these
    /// back; the final outcome still carries the whole answer text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed: Option<SeqRange>,
    /// Prompts of the run still waiting for an answer, re-sent whatever `afterSeq` says.
    #[serde(default)]
    pub pending: Vec<AgentEvent>,
}

/// Sequence numbers `from..=to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub from: u64,
    pub to: u64,
}

/// Payload of an `agent` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentEvent {
    pub run_id: String,
    pub session_key: String,
    /// The event's place in its run, from 1 with no gaps: what `agent.attach` resumes after.
    #[serde(default)]
    pub seq: u64,
    #[serde(flatten)]
    pub kind: AgentEventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum AgentEventKind {
    /// The next piece of the model's text, in order.
    TextDelta { text: String },
    /// The model called a tool.
    ToolUse { tool_use_id: String, name: String, input: Value },
    /// A tool's result went back to the model.
    ToolResult { tool_use_id: String, content: Value, is_error: bool },
    /// The agent wants to use a tool that needs permission; answer with `agent.respond`.
    Permission {
        request_id: String,
        tool_name: String,
        /// What the tool would do, in a line a person can read ("Run `make test`").
        summary: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
        /// Unanswered by then, the prompt is denied and the model told so.
        expires_at_ms: u64,
    },
    /// The agent asks the person to choose (AskUserQuestion); answer with `agent.respond` and `answers`.
    Question { request_id: String, questions: Vec<Question>, expires_at_ms: u64 },
    /// The agent presents its plan and asks to leave plan mode (ExitPlanMode); allow approves it, deny
    /// keeps plan mode and gives the model the message as the reason.
    Plan { request_id: String, plan: String, expires_at_ms: u64 },
    /// A prompt was answered, timed out, or withdrawn by claude: other devices can drop it.
    PromptClosed { request_id: String, resolution: PromptResolution },
}

impl AgentEventKind {
    /// The request id of a prompt that waits for an answer.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            AgentEventKind::Permission { request_id, .. }
            | AgentEventKind::Question { request_id, .. }
            | AgentEventKind::Plan { request_id, .. } => Some(request_id),
            _ => None,
        }
    }
}

/// One question of an AskUserQuestion prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    pub question: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub options: Vec<QuestionOption>,
    /// Several labels may be chosen: answer them comma-separated.
    #[serde(default)]
    pub multi_select: bool,
}

impl Question {
    /// The labels `text` picks by option number (`2`, or `1, 3` where several may be chosen), joined by
    /// `, ` as claude takes them; `Ok(None)` when `text` is not a list of numbers (an answer in words).
    /// Several numbers for a single-choice question, or one with no option, is an error that says so.
    pub fn chosen(&self, text: &str) -> Result<Option<String>, String> {
        let numbers: Option<Vec<usize>> = text.split(',').map(|n| n.trim().parse::<usize>().ok()).collect();
        let Some(numbers) = numbers else { return Ok(None) };
        if numbers.len() > 1 && !self.multi_select {
            return Err(format!("{:?} takes one option", self.question));
        }
        let labels = numbers
            .into_iter()
            .map(|n| match n.checked_sub(1).and_then(|i| self.options.get(i)) {
                Some(option) => Ok(option.label.clone()),
                None => Err(format!("{:?} has no option {n} (1 to {})", self.question, self.options.len())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(labels.join(", ")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionOption {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptResolution {
    Allowed,
    Denied,
    /// Nobody answered in time: denied, and the model was told why.
    TimedOut,
    /// claude withdrew it (the turn was interrupted or ended).
    Withdrawn,
}

/// The final `res` payload of an `agent` run that ran to its end or was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentOutcome {
    pub run_id: String,
    pub status: RunStatus,
    pub result: String,
    /// claude's own session ID (what `claude --resume` takes).
    pub session_id: String,
    pub usage: Value,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// Params of `agent.respond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RespondParams {
    pub run_id: String,
    pub request_id: String,
    pub decision: Decision,
    /// What the model reads: the reason of a denial or a rejected plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The input to run instead of the one asked for (operators only; a node may not change a tool's
    /// input, but may edit a plan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_input: Option<Value>,
    /// A question's answers: question text → the chosen label (comma-separated when several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<BTreeMap<String, String>>,
}

impl RespondParams {
    pub fn new(run_id: impl Into<String>, request_id: impl Into<String>, decision: Decision) -> RespondParams {
        RespondParams {
            run_id: run_id.into(),
            request_id: request_id.into(),
            decision,
            message: None,
            updated_input: None,
            answers: None,
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> RespondParams {
        self.message = Some(message.into());
        self
    }

    /// Allows a question with one answer.
    pub fn answer(mut self, question: impl Into<String>, label: impl Into<String>) -> RespondParams {
        self.answers.get_or_insert_with(BTreeMap::new).insert(question.into(), label.into());
        self
    }
}

/// Payload of a successful `agent.respond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RespondResult {
    pub run_id: String,
    pub request_id: String,
    pub resolution: PromptResolution,
}

/// Params of `agent.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelParams {
    pub run_id: String,
}

/// Payload of `agent.cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelResult {
    pub run_id: String,
    /// `running` (claude was interrupted), `queued` (the turn will not run) or `finished` (nothing to stop).
    pub was: RunPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunPhase {
    Queued,
    Running,
    Finished,
}

/// Params of `agent.attach`: the run by id, or the latest run of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttachParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// The last event seen; 0 replays everything the buffer holds.
    #[serde(default)]
    pub after_seq: u64,
}

impl AttachParams {
    /// The run `run_id`, from after the event `after_seq`.
    pub fn run(run_id: impl Into<String>, after_seq: u64) -> AttachParams {
        AttachParams { run_id: Some(run_id.into()), session_key: None, after_seq }
    }
}

/// Payload of `agent.pending`: every prompt waiting for an answer that the caller may answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingPrompts {
    pub prompts: Vec<AgentEvent>,
}

/// Payload of `agent.sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub sessions: Vec<SessionEntry>,
}

/// One conversation, newest activity first in [`SessionList`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    /// The key the caller uses (a node sees its own keys, without the gateway's prefix).
    pub session_key: String,
    /// The start of the first prompt.
    pub title: String,
    pub created_at_ms: u64,
    pub last_activity_ms: u64,
    pub turns: u64,
    /// A turn is running or queued now.
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
}

/// Params of `agent.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryParams {
    pub session_key: String,
    /// Return entries with an index below this one (the page before); the latest entries by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// At most this many entries (default 50, at most 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Payload of `agent.history`: entries in order, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub session_key: String,
    pub entries: Vec<HistoryEntry>,
    /// Entries the conversation has in all.
    pub total: u64,
    /// Pass as `before` for the previous page; absent on the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Position in the conversation, from 0.
    pub index: u64,
    pub at_ms: u64,
    #[serde(flatten)]
    pub item: HistoryItem,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum HistoryItem {
    /// A prompt, with the number of images sent with it.
    User {
        text: String,
        #[serde(default)]
        attachments: usize,
    },
    /// The model's text.
    Assistant { text: String },
    /// A tool call, in summary.
    Tool { name: String, summary: String, is_error: bool },
}

/// What a node's agent turns may do: set by the owner, stored with the node's pairing record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePolicy {
    #[serde(default)]
    pub mode: PermissionMode,
    /// claude permission rules that run without asking (`Bash(npm test:*)`, `Edit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tools: Vec<String>,
    /// Rules that are refused without asking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_tools: Vec<String>,
}

/// The permission modes a node may be given. `bypassPermissions` is not one of them, by design: a node's
/// turns always ask (or follow the owner's rules).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PermissionMode {
    /// Everything that needs permission is asked.
    #[default]
    Default,
    /// File edits in the working directory run unasked; commands still ask.
    AcceptEdits,
    /// The agent plans first and asks to leave plan mode.
    Plan,
}

impl PermissionMode {
    /// The name claude's `--permission-mode` takes.
    pub fn as_str(&self) -> &'static str {
        match self {
            PermissionMode::Default => "default",
            PermissionMode::AcceptEdits => "acceptEdits",
            PermissionMode::Plan => "plan",
        }
    }
}

impl std::fmt::Display for PermissionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PermissionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "default" => Ok(PermissionMode::Default),
            "acceptEdits" => Ok(PermissionMode::AcceptEdits),
            "plan" => Ok(PermissionMode::Plan),
            "bypassPermissions" => Err("a node can never be given bypassPermissions".into()),
            other => Err(format!("unknown permission mode {other:?} (default, acceptEdits or plan)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_events_are_flat_with_a_kind() {
        let e = AgentEvent {
            run_id: "r".into(),
            session_key: "main".into(),
            seq: 4,
            kind: AgentEventKind::ToolUse { tool_use_id: "t".into(), name: "Read".into(), input: json!({}) },
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"runId": "r", "sessionKey": "main", "seq": 4, "kind": "tool_use", "toolUseId": "t", "name": "Read", "input": {}})
        );
        let closed = AgentEventKind::PromptClosed { request_id: "p".into(), resolution: PromptResolution::TimedOut };
        assert_eq!(
            serde_json::to_value(&closed).unwrap(),
            json!({"kind": "prompt_closed", "requestId": "p", "resolution": "timed_out"})
        );
    }

    #[test]
    fn agent_params_require_an_idempotency_key() {
        assert!(serde_json::from_value::<AgentParams>(json!({"prompt": "hi"})).is_err());
    }

    #[test]
    fn a_node_policy_never_names_bypass() {
        assert!("bypassPermissions".parse::<PermissionMode>().unwrap_err().contains("never"));
        assert!(serde_json::from_value::<NodePolicy>(json!({"mode": "bypassPermissions"})).is_err());
        let policy: NodePolicy = serde_json::from_value(json!({"mode": "acceptEdits"})).unwrap();
        assert_eq!(policy.mode.as_str(), "acceptEdits");
        assert_eq!(serde_json::to_value(NodePolicy::default()).unwrap(), json!({"mode": "default"}));
    }
}
