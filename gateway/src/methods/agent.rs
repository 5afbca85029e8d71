//! `agent`: one turn of the agent. Answered twice: at once with `{runId, status: "accepted"}`, then, after
//! the `agent` events of the run, with the outcome. The turn runs to its end even if the caller goes
//! away, so a retry with the same idempotency key gets the outcome instead of a second run.

use super::{Context, parse_params};
use crate::agent::{Turn, TurnOutput};
use crate::idempotency::Claim;
use node_kit::client::random_id;
use node_kit::protocol::{
    AgentAck, AgentEvent, AgentOutcome, AgentParams, ClientMode, ErrorCode, ErrorShape, Frame, RunStatus, check_id,
    event, method,
};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

const DEFAULT_SESSION: &str = "main";
/// Longest turn a caller may ask for: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// Agent events buffered between claude's output and the connection.
const EVENT_BUFFER: usize = 256;

pub(crate) struct Agent {
    params: AgentParams,
}

impl Agent {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: AgentParams = parse_params(method::AGENT, params)?;
        check_id("idempotencyKey", &params.idempotency_key)?;
        if let Some(key) = &params.session_key {
            check_id("sessionKey", key)?;
        }
        if params.prompt.trim().is_empty() {
            return Err(ErrorShape::invalid_request("prompt must not be empty"));
        }
        if params.timeout_ms.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS) {
            return Err(ErrorShape::invalid_request(format!("timeoutMs must be between 1 and {MAX_TIMEOUT_MS}")));
        }
        Ok(Agent { params })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        // Say at once when claude is missing, rather than accepting a run that cannot start.
        state.agent.claude_path()?;
        let p = self.params;
        let session_key = p.session_key.unwrap_or_else(|| DEFAULT_SESSION.to_string());
        // A node gets conversations and idempotency keys of its own: it can neither continue the owner's
        // conversations nor read another node's outcomes by guessing a key.
        let (session_key, idempotency_key) = match ctx.peer.mode {
            ClientMode::Node => {
                let node = &ctx.peer.instance_id;
                (format!("node:{node}:{session_key}"), format!("node:{node}:{}", p.idempotency_key))
            }
            _ => (session_key, p.idempotency_key),
        };
        let completer = match state.agent_runs.claim(&idempotency_key, random_id)? {
            Claim::Existing { tag, waiter } => {
                ack(ctx, &tag, true);
                return waiter.outcome().await;
            }
            Claim::New(completer) => completer,
        };
        let run_id = completer.tag().to_string();
        tracing::info!(conn = ctx.peer.conn_id, run_id, session = %session_key, prompt_bytes = p.prompt.len(), "agent run accepted");
        ack(ctx, &run_id, false);

        let started = Instant::now();
        let timeout = p.timeout_ms.map_or(state.config.agent.turn_timeout, Duration::from_millis);
        let outcome = run_turn(ctx, &run_id, &session_key, p.prompt, timeout).await.map(|output| {
            let outcome = AgentOutcome {
                run_id: run_id.clone(),
                status: RunStatus::Ok,
                result: output.result,
                session_id: output.session_id,
                usage: output.usage,
                duration_ms: started.elapsed().as_millis() as u64,
            };
            serde_json::to_value(outcome).expect("outcome serialises")
        });
        let outcome = outcome.map_err(|e| with_run_id(e, &run_id));
        completer.complete(outcome.clone());
        outcome
    }
}

/// Queues the turn on its session and forwards its events to the caller until it ends.
async fn run_turn(
    ctx: &Context,
    run_id: &str,
    session_key: &str,
    prompt: String,
    timeout: Duration,
) -> Result<TurnOutput, ErrorShape> {
    let (events_tx, mut events_rx) = mpsc::channel(EVENT_BUFFER);
    let (reply_tx, reply_rx) = oneshot::channel();
    let turn = Turn { run_id: run_id.to_string(), prompt, timeout, events: events_tx, reply: reply_tx };
    ctx.state.agent.submit(session_key, turn)?;
    // The session drops the event sender when the turn ends, so this loop ends before the reply is read.
    while let Some(kind) = events_rx.recv().await {
        let event = AgentEvent { run_id: run_id.to_string(), session_key: session_key.to_string(), kind };
        ctx.outbound.event(event::AGENT, serde_json::to_value(event).expect("agent events serialise"));
    }
    reply_rx.await.unwrap_or_else(|_| {
        Err(ErrorShape::retryable(ErrorCode::AgentError, "the agent session ended before the turn", None))
    })
}

/// Errors after the ack name the run they belong to.
fn with_run_id(mut error: ErrorShape, run_id: &str) -> ErrorShape {
    if let Some(details) = error.details.get_or_insert_with(|| serde_json::json!({})).as_object_mut() {
        details.insert("runId".into(), run_id.into());
    }
    error
}

fn ack(ctx: &Context, run_id: &str, duplicate: bool) {
    let ack = AgentAck { run_id: run_id.to_string(), status: RunStatus::Accepted, duplicate };
    ctx.outbound.send(Frame::ok(ctx.request_id.clone(), serde_json::to_value(ack).expect("ack serialises")));
}
