//! Every `agent` run the gateway remembers: its events, numbered and kept in a bounded buffer so a caller
//! that lost its link can attach again and get what it missed; the prompts waiting for an answer; and
//! its outcome. A run's events go to its subscribers (the caller, and whoever attached since); prompts
//! also go to every operator, so the owner can answer from any of their devices.

use super::prompts::{Prompt, Responder};
use crate::hub::ConnectionHub;
use crate::push::Push;
use node_kit::outbound::Outbound;
use node_kit::protocol::{
    AgentAck, AgentEvent, AgentEventKind, AttachInfo, ErrorCode, ErrorShape, Frame, HistoryItem, PromptResolution,
    RespondParams, RespondResult, RunPhase, RunStatus, SeqRange, event,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Events one run keeps for catch-up, and their total size: the latest ones stay.
pub(crate) const MAX_RUN_EVENTS: usize = 4096;
pub(crate) const MAX_RUN_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Finished runs remembered for late attaches; the oldest go first.
const MAX_FINISHED_RUNS: usize = 256;
/// The assistant text kept per history entry.
const MAX_HISTORY_TEXT: usize = 64 * 1024;

/// Who a run belongs to: a node's own conversation, or the owner's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Party {
    Owner,
    Node(String),
}

impl Party {
    /// The party of a gateway session key (`node:<id>:<session>` for a node's).
    pub(crate) fn of_session(key: &str) -> Party {
        match key.strip_prefix("node:").and_then(|rest| rest.split_once(':')) {
            Some((node, _)) => Party::Node(node.to_string()),
            None => Party::Owner,
        }
    }
}

/// The caller of a method that acts on runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// An operator (the owner): may act on every run.
    Operator,
    Node(String),
}

impl Caller {
    fn may_act_on(&self, party: &Party) -> bool {
        match (self, party) {
            (Caller::Operator, _) => true,
            (Caller::Node(caller), Party::Node(owner)) => caller == owner,
            (Caller::Node(_), Party::Owner) => false,
        }
    }

    fn responder(&self) -> Responder {
        match self {
            Caller::Operator => Responder::Operator,
            Caller::Node(_) => Responder::Node,
        }
    }
}

/// The outcome of a run as its `agent` request answers it: the final `res` payload, or its error.
pub(crate) type RunResult = Result<Value, ErrorShape>;

pub(crate) struct RunLog {
    pub run_id: String,
    pub session_key: String,
    pub party: Party,
    cancel: CancellationToken,
    state: Mutex<RunState>,
    outcome: watch::Sender<Option<RunResult>>,
    hub: Arc<ConnectionHub>,
    push: Arc<Push>,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog")
            .field("run_id", &self.run_id)
            .field("session_key", &self.session_key)
            .finish_non_exhaustive()
    }
}

struct RunState {
    phase: RunPhase,
    events: VecDeque<(u64, Value, usize)>,
    bytes: usize,
    next_seq: u64,
    /// Connections following the run, by connection id.
    subscribers: Vec<(u64, Outbound)>,
    open: BTreeMap<String, OpenPrompt>,
    /// How each closed prompt ended, for a clear answer to a late `agent.respond`.
    closed: HashMap<String, PromptResolution>,
    /// The turn as the history will show it.
    transcript: Vec<HistoryItem>,
}

struct OpenPrompt {
    prompt: Prompt,
    event: Value,
    seq: u64,
    /// Where the answer goes: the claude process that asked.
    to_claude: mpsc::UnboundedSender<Value>,
}

impl RunLog {
    /// Cancelled by `agent.cancel`.
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    pub(crate) fn set_running(&self) {
        self.state.lock().expect("run lock").phase = RunPhase::Running;
    }

    /// Numbers `kind`, keeps it for catch-up and sends it to the subscribers; prompts and their closing
    /// also to every operator.
    pub(crate) fn publish(&self, kind: AgentEventKind) {
        let mut state = self.state.lock().expect("run lock");
        self.publish_locked(&mut state, kind);
    }

    fn publish_locked(&self, state: &mut RunState, kind: AgentEventKind) -> (u64, Value) {
        state.record(&kind);
        let to_operators = kind.prompt_id().is_some() || matches!(kind, AgentEventKind::PromptClosed { .. });
        let seq = state.next_seq;
        state.next_seq += 1;
        let event = AgentEvent { run_id: self.run_id.clone(), session_key: self.session_key.clone(), seq, kind };
        let payload = serde_json::to_value(event).expect("agent events serialise");
        let size = payload.to_string().len();
        state.events.push_back((seq, payload.clone(), size));
        state.bytes += size;
        while state.events.len() > MAX_RUN_EVENTS || (state.bytes > MAX_RUN_EVENT_BYTES && state.events.len() > 1) {
            if let Some((_, _, size)) = state.events.pop_front() {
                state.bytes -= size;
            }
        }
        state.subscribers.retain(|(_, out)| !out.closed().is_cancelled());
        for (_, out) in &state.subscribers {
            out.event(event::AGENT, payload.clone());
        }
        if to_operators {
            let except: Vec<u64> = state.subscribers.iter().map(|(id, _)| *id).collect();
            self.hub.to_operators(event::AGENT, &payload, &except);
        }
        (seq, payload)
    }

    /// Opens a prompt: sends its event and waits for [`RunLog::respond`], [`RunLog::expire`] or
    /// [`RunLog::withdraw`] to close it. The answer is written to `to_claude`.
    pub(crate) fn open_prompt(
        self: &Arc<Self>,
        prompt: Prompt,
        timeout: Duration,
        to_claude: mpsc::UnboundedSender<Value>,
    ) {
        let expires_at_ms = crate::now_ms() + timeout.as_millis() as u64;
        let request_id = prompt.request_id.clone();
        let notice = crate::push::notice(&self.party, &self.run_id, &self.session_key, Some(&prompt));
        {
            let mut state = self.state.lock().expect("run lock");
            let (seq, event) = self.publish_locked(&mut state, prompt.event(expires_at_ms));
            state.open.insert(request_id.clone(), OpenPrompt { prompt, event, seq, to_claude });
        }
        // Once the prompt is open, so the device the push wakes finds it in `agent.pending`.
        self.push(notice);
        tracing::info!(run_id = %self.run_id, request_id, "prompt sent; waiting for an answer");
        let run = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(run) = run.upgrade() {
                run.expire(&request_id, timeout);
            }
        });
    }

    /// The prompts still waiting, as their events.
    pub(crate) fn open_prompts(&self) -> Vec<AgentEvent> {
        let state = self.state.lock().expect("run lock");
        let mut open: Vec<_> = state.open.values().collect();
        open.sort_by_key(|p| p.seq);
        open.into_iter().filter_map(|p| serde_json::from_value(p.event.clone()).ok()).collect()
    }

    pub(crate) fn has_open_prompts(&self) -> bool {
        !self.state.lock().expect("run lock").open.is_empty()
    }

    /// Answers a prompt: the first valid answer wins; a later one is `PROMPT_CLOSED`.
    pub(crate) fn respond(&self, caller: &Caller, answer: &RespondParams) -> Result<RespondResult, ErrorShape> {
        let mut state = self.state.lock().expect("run lock");
        let Some(open) = state.open.get(&answer.request_id) else {
            return Err(match state.closed.get(&answer.request_id) {
                Some(resolution) => ErrorShape::new(
                    ErrorCode::PromptClosed,
                    format!("prompt {} was already closed ({})", answer.request_id, resolution_name(*resolution)),
                )
                .with_details(json!({ "resolution": resolution, "requestId": answer.request_id })),
                None => ErrorShape::new(
                    ErrorCode::NotFound,
                    format!("run {} has no prompt {}", self.run_id, answer.request_id),
                ),
            });
        };
        let (response, resolution) = open.prompt.answer(answer, caller.responder())?;
        self.close_locked(&mut state, &answer.request_id, Some(response), resolution);
        tracing::info!(run_id = %self.run_id, request_id = %answer.request_id, by = ?caller.responder(), ?resolution, "prompt answered");
        Ok(RespondResult { run_id: self.run_id.clone(), request_id: answer.request_id.clone(), resolution })
    }

    /// Denies a prompt nobody answered in time.
    fn expire(&self, request_id: &str, waited: Duration) {
        let mut state = self.state.lock().expect("run lock");
        if let Some(open) = state.open.get(request_id) {
            let response = open.prompt.expired(waited);
            self.close_locked(&mut state, request_id, Some(response), PromptResolution::TimedOut);
            tracing::info!(run_id = %self.run_id, request_id, "prompt unanswered in time; denied");
        }
    }

    /// claude no longer waits for this prompt (its `control_cancel_request`, or the turn ended).
    pub(crate) fn withdraw(&self, request_id: &str) {
        let mut state = self.state.lock().expect("run lock");
        if state.open.contains_key(request_id) {
            self.close_locked(&mut state, request_id, None, PromptResolution::Withdrawn);
        }
    }

    fn close_locked(
        &self,
        state: &mut RunState,
        request_id: &str,
        response: Option<Value>,
        resolution: PromptResolution,
    ) {
        let Some(open) = state.open.remove(request_id) else { return };
        if let Some(response) = response {
            let _ = open.to_claude.send(super::mcp::control_success(request_id, response));
        }
        state.closed.insert(request_id.to_string(), resolution);
        self.publish_locked(state, AgentEventKind::PromptClosed { request_id: request_id.to_string(), resolution });
    }

    /// Sends `ack` (built from what the replay holds) on `outbound`, then every event after `after_seq`,
    /// and subscribes it to what follows: one critical section, so nothing falls between replay and live.
    pub(crate) fn attach(&self, conn_id: u64, outbound: &Outbound, request_id: &str, after_seq: u64) {
        let mut state = self.state.lock().expect("run lock");
        let first_held = state.events.front().map_or(state.next_seq, |(seq, _, _)| *seq);
        let missed = (after_seq + 1 < first_held).then(|| SeqRange { from: after_seq + 1, to: first_held - 1 });
        let mut open: Vec<_> = state.open.values().collect();
        open.sort_by_key(|p| p.seq);
        let pending = open.into_iter().filter_map(|p| serde_json::from_value(p.event.clone()).ok()).collect();
        let ack = AgentAck {
            run_id: self.run_id.clone(),
            status: RunStatus::Accepted,
            duplicate: false,
            attach: Some(AttachInfo {
                session_key: self.session_key.clone(),
                after_seq,
                last_seq: state.next_seq - 1,
                missed,
                pending,
            }),
        };
        outbound.send(Frame::ok(request_id.to_string(), serde_json::to_value(ack).expect("acks serialise")));
        for (_, payload, _) in state.events.iter().filter(|(seq, _, _)| *seq > after_seq) {
            outbound.event(event::AGENT, payload.clone());
        }
        if state.phase != RunPhase::Finished {
            state.subscribers.retain(|(id, out)| *id != conn_id && !out.closed().is_cancelled());
            state.subscribers.push((conn_id, outbound.clone()));
        }
    }

    /// Ends the run: withdraws any prompt still open and publishes the outcome to every waiter.
    pub(crate) fn finish(&self, result: RunResult) {
        {
            let mut state = self.state.lock().expect("run lock");
            let open: Vec<String> = state.open.keys().cloned().collect();
            for request_id in open {
                self.close_locked(&mut state, &request_id, None, PromptResolution::Withdrawn);
            }
            state.phase = RunPhase::Finished;
            state.subscribers.clear();
        }
        self.outcome.send_replace(Some(result));
        self.push(crate::push::notice(&self.party, &self.run_id, &self.session_key, None));
    }

    /// Sends the run's device, if it is a device's run and the device subscribed, its push.
    fn push(&self, notice: Option<(certs::KeyId, node_kit::protocol::PushNotice)>) {
        if let Some((node, notice)) = notice {
            self.push.send(node, notice);
        }
    }

    /// Waits for the outcome.
    pub(crate) async fn outcome(&self) -> RunResult {
        let mut outcome = self.outcome.subscribe();
        let done = outcome.wait_for(Option::is_some).await.expect("the run log owns the sender");
        done.clone().expect("waited for some")
    }

    pub(crate) fn phase(&self) -> RunPhase {
        self.state.lock().expect("run lock").phase
    }

    /// The turn as history entries (the prompt is recorded when the turn starts).
    pub(crate) fn transcript(&self) -> Vec<HistoryItem> {
        self.state.lock().expect("run lock").transcript.clone()
    }
}

impl RunState {
    /// Adds what the event shows to the turn's history: text joined into assistant entries, tool calls
    /// in summary.
    fn record(&mut self, kind: &AgentEventKind) {
        match kind {
            AgentEventKind::TextDelta { text } => match self.transcript.last_mut() {
                Some(HistoryItem::Assistant { text: so_far }) => {
                    if so_far.len() < MAX_HISTORY_TEXT {
                        so_far.push_str(text);
                    }
                }
                _ => self.transcript.push(HistoryItem::Assistant { text: text.clone() }),
            },
            AgentEventKind::ToolUse { name, input, .. } => self.transcript.push(HistoryItem::Tool {
                name: name.clone(),
                summary: super::prompts::summary(name, input),
                is_error: false,
            }),
            AgentEventKind::ToolResult { is_error: true, .. } => {
                if let Some(HistoryItem::Tool { is_error, .. }) =
                    self.transcript.iter_mut().rev().find(|i| matches!(i, HistoryItem::Tool { .. }))
                {
                    *is_error = true;
                }
            }
            _ => {}
        }
    }
}

fn resolution_name(resolution: PromptResolution) -> &'static str {
    match resolution {
        PromptResolution::Allowed => "allowed",
        PromptResolution::Denied => "denied",
        PromptResolution::TimedOut => "timed out: nobody answered in time",
        PromptResolution::Withdrawn => "withdrawn by the agent",
    }
}

/// The runs the gateway remembers: every unfinished one, and the latest finished ones.
pub(crate) struct RunBoard {
    hub: Arc<ConnectionHub>,
    push: Arc<Push>,
    runs: Mutex<Runs>,
}

#[derive(Default)]
struct Runs {
    by_id: HashMap<String, Arc<RunLog>>,
    /// The latest run of each session key.
    latest: HashMap<String, String>,
    finished: VecDeque<String>,
}

impl RunBoard {
    pub(crate) fn new(hub: Arc<ConnectionHub>, push: Arc<Push>) -> RunBoard {
        RunBoard { hub, push, runs: Mutex::new(Runs::default()) }
    }

    /// Registers a new run with its caller as the first subscriber.
    pub(crate) fn open(&self, run_id: &str, session_key: &str, conn_id: u64, caller: &Outbound) -> Arc<RunLog> {
        let (outcome, _) = watch::channel(None);
        let run = Arc::new(RunLog {
            run_id: run_id.to_string(),
            session_key: session_key.to_string(),
            party: Party::of_session(session_key),
            cancel: CancellationToken::new(),
            state: Mutex::new(RunState {
                phase: RunPhase::Queued,
                events: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                subscribers: vec![(conn_id, caller.clone())],
                open: BTreeMap::new(),
                closed: HashMap::new(),
                transcript: Vec::new(),
            }),
            outcome,
            hub: self.hub.clone(),
            push: self.push.clone(),
        });
        let mut runs = self.runs.lock().expect("runs lock");
        runs.by_id.insert(run_id.to_string(), run.clone());
        runs.latest.insert(session_key.to_string(), run_id.to_string());
        run
    }

    /// Notes that a run finished; the oldest finished runs are forgotten beyond the bound.
    pub(crate) fn finished(&self, run_id: &str) {
        let mut runs = self.runs.lock().expect("runs lock");
        runs.finished.push_back(run_id.to_string());
        while runs.finished.len() > MAX_FINISHED_RUNS {
            let Some(old) = runs.finished.pop_front() else { break };
            if let Some(run) = runs.by_id.remove(&old)
                && runs.latest.get(&run.session_key) == Some(&old)
            {
                runs.latest.remove(&run.session_key);
            }
        }
    }

    /// The run `run_id` if the caller may act on it: `FORBIDDEN` for a node on another's run (run ids are
    /// random, so the answer tells nothing a node could use), `NOT_FOUND` when none is remembered.
    pub(crate) fn get(&self, caller: &Caller, run_id: &str) -> Result<Arc<RunLog>, ErrorShape> {
        let run = self.runs.lock().expect("runs lock").by_id.get(run_id).cloned();
        match run {
            Some(run) if caller.may_act_on(&run.party) => Ok(run),
            // Only a node can be refused a run that exists: an operator may act on every one.
            Some(_) => Err(ErrorShape::new(
                ErrorCode::Forbidden,
                "that run belongs to another conversation; a node may act only on its own",
            )),
            None => Err(ErrorShape::new(
                ErrorCode::NotFound,
                format!("no run {run_id} (finished runs are kept for a while)"),
            )
            .with_details(json!({ "runId": run_id }))),
        }
    }

    /// The latest run of the gateway session `session_key`.
    pub(crate) fn latest(&self, caller: &Caller, session_key: &str) -> Result<Arc<RunLog>, ErrorShape> {
        let run_id = self.runs.lock().expect("runs lock").latest.get(session_key).cloned();
        match run_id {
            Some(run_id) => self.get(caller, &run_id),
            None => Err(ErrorShape::new(ErrorCode::NotFound, "no run of that session is remembered")),
        }
    }

    /// Whether a turn of `session_key` is queued or running.
    pub(crate) fn busy(&self, session_key: &str) -> bool {
        let runs = self.runs.lock().expect("runs lock");
        runs.by_id.values().any(|run| run.session_key == session_key && run.phase() != RunPhase::Finished)
    }

    /// Every open prompt the caller may answer, the one that expires first (asked first) first.
    pub(crate) fn pending(&self, caller: &Caller) -> Vec<AgentEvent> {
        let runs: Vec<Arc<RunLog>> = self
            .runs
            .lock()
            .expect("runs lock")
            .by_id
            .values()
            .filter(|run| caller.may_act_on(&run.party) && run.has_open_prompts())
            .cloned()
            .collect();
        let mut prompts: Vec<AgentEvent> = runs.iter().flat_map(|run| run.open_prompts()).collect();
        prompts.sort_by_key(|prompt| match prompt.kind {
            AgentEventKind::Permission { expires_at_ms, .. }
            | AgentEventKind::Question { expires_at_ms, .. }
            | AgentEventKind::Plan { expires_at_ms, .. } => expires_at_ms,
            _ => u64::MAX,
        });
        prompts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::Decision;

    fn board() -> RunBoard {
        let home = std::env::temp_dir().join("lanyard-runs-tests-never-written");
        let push = Push::new(home, &crate::push::PushConfig::default(), Duration::from_secs(60));
        RunBoard::new(Arc::new(ConnectionHub::new()), Arc::new(push))
    }

    fn outbound() -> (Outbound, mpsc::Receiver<node_kit::outbound::Outgoing>) {
        Outbound::new(64)
    }

    #[test]
    fn only_the_party_or_an_operator_may_act_on_a_run() {
        let board = board();
        let (out, _rx) = outbound();
        board.open("r1", "node:n1:main", 1, &out);
        board.open("r2", "main", 1, &out);
        assert!(board.get(&Caller::Node("n1".into()), "r1").is_ok());
        assert!(board.get(&Caller::Operator, "r1").is_ok());
        assert_eq!(board.get(&Caller::Node("n2".into()), "r1").unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(board.get(&Caller::Node("n1".into()), "r2").unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(board.get(&Caller::Node("n1".into()), "nope").unwrap_err().code, ErrorCode::NotFound);
        assert_eq!(board.latest(&Caller::Node("n1".into()), "node:n1:main").unwrap().run_id, "r1");
    }

    #[tokio::test]
    async fn the_first_answer_wins_and_the_buffer_keeps_the_latest() {
        let board = board();
        let (out, _rx) = outbound();
        let run = board.open("r1", "node:n1:main", 1, &out);
        let (to_claude, mut answers) = mpsc::unbounded_channel();
        let request = json!({"tool_name": "Bash", "input": {"command": "touch x"}});
        run.open_prompt(Prompt::from_request("p1", &request), Duration::from_secs(60), to_claude);
        assert_eq!(board.pending(&Caller::Node("n1".into())).len(), 1);
        assert!(board.pending(&Caller::Node("n2".into())).is_empty());
        let allow = RespondParams::new("r1", "p1", Decision::Allow);
        run.respond(&Caller::Node("n1".into()), &allow).unwrap();
        assert_eq!(answers.recv().await.unwrap()["response"]["response"]["behavior"], "allow");
        let again = run.respond(&Caller::Operator, &allow).unwrap_err();
        assert_eq!(again.code, ErrorCode::PromptClosed);
        assert_eq!(again.details.unwrap()["resolution"], "allowed");
        for i in 0..MAX_RUN_EVENTS + 10 {
            run.publish(AgentEventKind::TextDelta { text: i.to_string() });
        }
        let state = run.state.lock().unwrap();
        assert_eq!(state.events.len(), MAX_RUN_EVENTS);
        assert_eq!(state.events.back().unwrap().0, state.next_seq - 1);
    }

    #[tokio::test]
    async fn pending_lists_the_prompt_asked_first_first() {
        let board = board();
        let (out, _rx) = outbound();
        let (to_claude, _answers) = mpsc::unbounded_channel();
        let request = json!({"tool_name": "Bash", "input": {"command": "true"}});
        // Run ids sort the other way round from when the prompts expire; the board's own order is a hash's.
        for (run_id, prompt_id, timeout) in [("r9", "p1", 10), ("r7", "p2", 20), ("r4", "p3", 30), ("r1", "p4", 40)] {
            let run = board.open(run_id, "main", 1, &out);
            run.open_prompt(Prompt::from_request(prompt_id, &request), Duration::from_secs(timeout), to_claude.clone());
        }
        let ids: Vec<_> =
            board.pending(&Caller::Operator).iter().map(|p| p.kind.prompt_id().unwrap().to_string()).collect();
        assert_eq!(ids, ["p1", "p2", "p3", "p4"]);
    }

    #[tokio::test]
    async fn an_unanswered_prompt_is_denied_after_its_time() {
        let board = board();
        let (out, _rx) = outbound();
        let run = board.open("r1", "main", 1, &out);
        let (to_claude, mut answers) = mpsc::unbounded_channel();
        let request = json!({"tool_name": "Write", "input": {"file_path": "/x"}});
        run.open_prompt(Prompt::from_request("p1", &request), Duration::from_millis(50), to_claude);
        let answer = answers.recv().await.unwrap();
        assert_eq!(answer["response"]["response"]["behavior"], "deny");
        assert!(answer["response"]["response"]["message"].as_str().unwrap().contains("Nobody answered"));
        assert!(!run.has_open_prompts());
        let late = run.respond(&Caller::Operator, &RespondParams::new("r1", "p1", Decision::Allow)).unwrap_err();
        assert_eq!(late.details.unwrap()["resolution"], "timed_out");
    }
}
