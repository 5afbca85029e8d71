//! The task behind one session key: owns at most one claude process and runs the queued turns in order.
//! A node's conversation runs under the node's policy; when the owner changes it, the next turn starts a
//! new process (resuming the conversation) under the new one.

use super::claude::{ClaudeProcess, TurnFailure};
use super::stream::TurnReport;
use super::{AgentRunner, Turn, TurnOutput};
use node_kit::protocol::{ErrorCode, ErrorShape, GATEWAY_SHUTTING_DOWN};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::mpsc;

pub(super) async fn run(
    runner: Arc<AgentRunner>,
    key: String,
    mut turns: mpsc::Receiver<Turn>,
    pid: Arc<AtomicU32>,
    mut claude_session: Option<String>,
) {
    let mut process: Option<ClaudeProcess> = None;
    loop {
        let turn = tokio::select! {
            // Shutdown first, so queued turns are not started once it began.
            biased;
            () = runner.shutdown.cancelled() => break,
            turn = turns.recv() => match turn {
                Some(turn) => turn,
                None => break,
            },
            () = tokio::time::sleep(runner.config.idle_timeout) => {
                if runner.retire(&key, &turns) {
                    tracing::info!(session = %key, "agent session idle; ending its claude process");
                    break;
                }
                continue;
            }
        };
        if turn.run.cancel_token().is_cancelled() {
            // Cancelled while it waited in the queue: it never runs.
            let session_id = claude_session.clone().unwrap_or_default();
            let output = TurnOutput { result: String::new(), session_id, usage: json!({}), cancelled: true };
            let _ = turn.reply.send(Ok(output));
            continue;
        }
        turn.run.set_running();
        runner.book.start_turn(&key, &turn.run.run_id, &turn.prompt, turn.attachments.len());
        if let Some(running) = process.take_if(|p| p.policy() != turn.policy.as_ref()) {
            tracing::info!(session = %key, "the node's policy changed; restarting claude under the new one");
            running.kill().await;
        }
        let outcome = tokio::select! {
            outcome = run_turn(&runner, &key, &mut process, &claude_session, &turn) => outcome,
            () = runner.shutdown.cancelled() => Err(ErrorShape::retryable(ErrorCode::AgentError, GATEWAY_SHUTTING_DOWN, None)),
        };
        if let Some(id) = process.as_ref().and_then(ClaudeProcess::session_id) {
            claude_session = Some(id.to_string());
        }
        runner.book.finish_turn(&key, turn.run.transcript(), claude_session.as_deref());
        pid.store(process.as_ref().and_then(ClaudeProcess::pid).unwrap_or(0), Ordering::Relaxed);
        let _ = turn.reply.send(outcome);
    }
    if let Some(process) = process.take() {
        process.kill().await;
    }
    turns.close();
    while let Some(turn) = turns.recv().await {
        let _ = turn.reply.send(Err(ErrorShape::retryable(ErrorCode::AgentError, "the agent session ended", None)));
    }
}

async fn run_turn(
    runner: &AgentRunner,
    key: &str,
    process: &mut Option<ClaudeProcess>,
    claude_session: &Option<String>,
    turn: &Turn,
) -> Result<TurnOutput, ErrorShape> {
    let on_running = match process.as_mut() {
        Some(running) => Some(attempt(runner, running, turn).await),
        None => None,
    };
    let result = match on_running {
        Some(outcome) if !died_before_the_turn(&outcome) => outcome,
        stale => {
            if stale.is_some() {
                tracing::warn!(session = %key, "claude had ended since the last turn; starting it again");
            }
            let resumed =
                attempt(runner, process.insert(start(runner, key, claude_session.as_deref(), turn).await?), turn).await;
            if claude_session.is_some() && resume_failed(&resumed) {
                // claude writes its transcript lazily: a process killed right after a turn can leave no
                // conversation to resume. Losing the history beats failing every later turn.
                tracing::warn!(session = %key, "claude could not resume its conversation; starting a new one");
                if let Some(failed) = process.take() {
                    failed.kill().await;
                }
                attempt(runner, process.insert(start(runner, key, None, turn).await?), turn).await
            } else {
                resumed
            }
        }
    };
    match result {
        Ok(report) => Ok(TurnOutput {
            result: report.result,
            session_id: report.session_id,
            usage: report.usage,
            cancelled: report.interrupted,
        }),
        Err(TurnFailure::Reported(report)) if report.refused_locally() => Err(ErrorShape::new(
            ErrorCode::AgentUnavailable,
            format!(
                "claude cannot run: {}. Fix it on the computer running the gateway (log in by running `claude` \
                 once, or set ANTHROPIC_API_KEY for the gateway)",
                report.result
            ),
        )),
        Err(TurnFailure::Reported(report)) => {
            // No HTTP status: claude got no answer from the model's API at all (no network, no DNS). A retry
            // may work later, but "after 1000 ms" would be a promise nobody can keep.
            let unanswered = report.api_error_status.is_none();
            let retryable = report.api_error_status.is_none_or(|s| s == 429 || s >= 500);
            let message = if unanswered {
                format!("{} (claude got no answer from the model's API: check this computer's network)", report.result)
            } else {
                report.result
            };
            Err(ErrorShape {
                code: ErrorCode::AgentError,
                message,
                retryable,
                retry_after_ms: (retryable && !unanswered).then_some(1000),
                details: Some(json!({
                    "apiErrorStatus": report.api_error_status,
                    "subtype": report.subtype,
                    "sessionId": report.session_id,
                })),
            })
        }
        Err(TurnFailure::Exited { status, stderr, .. }) => {
            *process = None;
            let how = status.map_or_else(|| "unknown status".to_string(), |s| s.to_string());
            Err(ErrorShape::retryable(
                ErrorCode::AgentError,
                format!("claude exited during the turn ({how}); the next turn resumes the session"),
                None,
            )
            .with_details(json!({ "exitStatus": how, "stderrTail": stderr })))
        }
        Err(TurnFailure::TimedOut) => {
            if let Some(process) = process.take() {
                process.kill().await;
            }
            Err(ErrorShape::retryable(
                ErrorCode::Timeout,
                format!("the agent turn did not finish within {} ms; claude was stopped", turn.timeout.as_millis()),
                None,
            ))
        }
    }
}

async fn start(
    runner: &AgentRunner,
    key: &str,
    resume: Option<&str>,
    turn: &Turn,
) -> Result<ClaudeProcess, ErrorShape> {
    let path = runner.claude_path()?;
    let policy = turn.policy.as_ref();
    let process =
        ClaudeProcess::spawn(&path, &runner.config, resume, runner.tools(key), policy).await.map_err(|e| {
            ErrorShape::new(
                ErrorCode::AgentUnavailable,
                format!("cannot start {}: {e}; {}", path.display(), super::INSTALL_HINT),
            )
        })?;
    tracing::info!(session = %key, pid = process.pid(), resumed = resume.is_some(), "started claude");
    Ok(process)
}

type Attempt = Result<TurnReport, TurnFailure>;

async fn attempt(runner: &AgentRunner, running: &mut ClaudeProcess, turn: &Turn) -> Attempt {
    let started = std::time::Instant::now();
    let result = running.run_turn(turn, &runner.config).await;
    tracing::info!(run_id = %turn.run.run_id, ms = started.elapsed().as_millis() as u64, ok = result.is_ok(), "agent turn finished");
    result
}

/// The process was already dead when the turn was written to it: nothing of the turn ran.
fn died_before_the_turn(result: &Attempt) -> bool {
    matches!(result, Err(TurnFailure::Exited { output_seen: false, .. }))
}

/// A resumed process that failed before asking the model anything could not load the conversation.
fn resume_failed(result: &Attempt) -> bool {
    match result {
        Err(TurnFailure::Reported(report)) => report.num_turns == 0 && report.api_error_status.is_none(),
        Err(TurnFailure::Exited { .. }) => true,
        _ => false,
    }
}
