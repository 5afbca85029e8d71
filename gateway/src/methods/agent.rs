//! `agent`: one turn of the agent. Answered twice: at once with `{runId, status: "accepted"}`, then, after
//! the `agent` events of the run, with the outcome. The turn runs to its end even if the caller goes
//! away, so a retry with the same idempotency key gets the outcome instead of a second run, and
//! `agent.attach` can pick the run up again.

use super::{Context, parse_params};
use crate::agent::Turn;
use crate::agent::runs::RunResult;
use crate::idempotency::Claim;
use node_kit::client::random_id;
use node_kit::protocol::{
    AgentAck, AgentOutcome, AgentParams, ClientMode, ErrorCode, ErrorShape, Frame, RunStatus, check_attachments,
    check_id, method,
};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const DEFAULT_SESSION: &str = "main";
/// Longest turn a caller may ask for: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

pub(crate) struct Agent {
    params: AgentParams,
}

impl Agent {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        // Sizes first, before the images are copied out of the params.
        check_attachments(&params)?;
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
        for (i, attachment) in params.attachments.iter().enumerate() {
            if data_encoding::BASE64.decode(attachment.data.as_bytes()).is_err() {
                return Err(ErrorShape::invalid_request(format!("attachments[{i}].data is not base64")));
            }
        }
        Ok(Agent { params })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        // Say at once when claude is missing, rather than accepting a run that cannot start.
        state.agent.claude_path()?;
        let p = self.params;
        let session_key = ctx.session_key(p.session_key.as_deref().unwrap_or(DEFAULT_SESSION));
        // A node gets idempotency keys of its own: it cannot read another node's outcomes by guessing one.
        let idempotency_key = match ctx.peer.mode {
            ClientMode::Node => format!("node:{}:{}", ctx.peer.instance_id, p.idempotency_key),
            _ => p.idempotency_key,
        };
        let completer = match state.agent_runs.claim(&idempotency_key, random_id)? {
            Claim::Existing { tag, waiter } => {
                ack(ctx, &tag, true);
                return waiter.outcome().await;
            }
            Claim::New(completer) => completer,
        };
        let run_id = completer.tag().to_string();
        tracing::info!(conn = ctx.peer.conn_id, run_id, session = %session_key, prompt_bytes = p.prompt.len(), images = p.attachments.len(), "agent run accepted");
        let run = state.runs.open(&run_id, &session_key, ctx.peer.conn_id, &ctx.outbound);
        ack(ctx, &run_id, false);

        let started = Instant::now();
        let (reply, replied) = oneshot::channel();
        let turn = Turn {
            run: run.clone(),
            prompt: p.prompt,
            attachments: p.attachments,
            timeout: p.timeout_ms.map_or(state.config.agent.turn_timeout, Duration::from_millis),
            policy: ctx.node_policy(),
            reply,
        };
        let result = match state.agent.submit(&session_key, turn) {
            Ok(()) => replied.await.unwrap_or_else(|_| {
                Err(ErrorShape::retryable(ErrorCode::AgentError, "the agent session ended before the turn", None))
            }),
            Err(e) => Err(e),
        };
        let status = |cancelled: bool| if cancelled { RunStatus::Cancelled } else { RunStatus::Ok };
        state.metrics.turn(result.as_ref().ok().map(|output| status(output.cancelled)), started.elapsed());
        let outcome: RunResult = result
            .map(|output| {
                let outcome = AgentOutcome {
                    run_id: run_id.clone(),
                    status: status(output.cancelled),
                    result: output.result,
                    session_id: output.session_id,
                    usage: output.usage,
                    duration_ms: started.elapsed().as_millis() as u64,
                };
                serde_json::to_value(outcome).expect("outcome serialises")
            })
            .map_err(|e| with_run_id(e, &run_id));
        run.finish(outcome.clone());
        state.runs.finished(&run_id);
        completer.complete(outcome.clone());
        outcome
    }
}

/// Errors after the ack name the run they belong to.
fn with_run_id(mut error: ErrorShape, run_id: &str) -> ErrorShape {
    if let Some(details) = error.details.get_or_insert_with(|| serde_json::json!({})).as_object_mut() {
        details.insert("runId".into(), run_id.into());
    }
    error
}

/// The first answer. A duplicate (a retry of a key already seen) gets no events, only the outcome.
fn ack(ctx: &Context, run_id: &str, duplicate: bool) {
    let ack = AgentAck { run_id: run_id.to_string(), status: RunStatus::Accepted, duplicate, attach: None };
    ctx.outbound.send(Frame::ok(ctx.request_id.clone(), serde_json::to_value(ack).expect("ack serialises")));
}
