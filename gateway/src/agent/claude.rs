//! One running `claude` process in stream-json mode: a turn is one user line written to stdin and the
//! output lines read until claude's `result` line. Meanwhile claude asks its host things on the same
//! stdout (control requests): MCP messages for the agent's tools, and permission prompts, which wait for
//! a person's answer while the output goes on being read.

use super::Turn;
use super::mcp::{self, McpChannel};
use super::prompts::Prompt;
use super::stream::{ClaudeLine, TurnReport, parse_line};
use crate::config::AgentConfig;
use crate::tools::NodeTools;
use futures_util::StreamExt;
use node_kit::protocol::{Attachment, NodePolicy};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LinesCodec};

/// Longest output line accepted from claude (tool results can be large).
const MAX_LINE_BYTES: usize = 32 * 1024 * 1024;
/// How much of claude's stderr is kept for error reports.
const STDERR_TAIL_BYTES: usize = 2048;

pub(crate) struct ClaudeProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: FramedRead<ChildStdout, LinesCodec>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    session_id: Option<String>,
    /// The agent's node tools, served in-band.
    mcp: McpChannel,
    /// The node policy the process was started with; `None` for the owner's own settings.
    policy: Option<NodePolicy>,
    /// Answers to this process's prompts, from whoever answered them.
    answers_tx: mpsc::UnboundedSender<Value>,
    answers: mpsc::UnboundedReceiver<Value>,
}

/// Why a turn did not produce a result.
#[derive(Debug)]
pub(crate) enum TurnFailure {
    /// claude reported the turn as failed (an API error, say); the process is still usable.
    Reported(TurnReport),
    /// The process ended or its output broke; it is gone. `output_seen` tells whether it printed
    /// anything during this turn.
    Exited { status: Option<ExitStatus>, stderr: String, output_seen: bool },
    /// The turn ran past its time (not counting time spent waiting for a person's answer).
    TimedOut,
}

impl ClaudeProcess {
    /// Starts claude with `tools` as its in-band MCP server, resuming `resume` (a claude session id) when
    /// given. A node's conversation runs under the node's `policy`; the owner's under their own claude
    /// settings.
    pub(crate) async fn spawn(
        path: &Path,
        config: &AgentConfig,
        resume: Option<&str>,
        tools: NodeTools,
        policy: Option<&NodePolicy>,
    ) -> std::io::Result<ClaudeProcess> {
        let mut command = Command::new(path);
        command
            .args(super::CLAUDE_ARGS)
            .args(super::allowed_tool_args())
            .args(policy.map(super::policy_args).unwrap_or_default())
            .args(resume.map(|id| ["--resume", id]).into_iter().flatten())
            .args(&config.extra_args)
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &config.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Declares the tools before the first turn; claude answers during that turn's output.
        write_line(&mut stdin, &mcp::initialize_request()).await?;
        let stdout = FramedRead::new(
            child.stdout.take().expect("stdout is piped"),
            LinesCodec::new_with_max_length(MAX_LINE_BYTES),
        );
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let stderr = child.stderr.take().expect("stderr is piped");
        // claude's stderr may mention the prompt; keep only a short tail for error reports, never log it.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().expect("stderr lock");
                tail.extend(line.bytes().chain(std::iter::once(b'\n')));
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        });
        let (answers_tx, answers) = mpsc::unbounded_channel();
        Ok(ClaudeProcess {
            child,
            stdin,
            stdout,
            stderr_tail,
            session_id: resume.map(str::to_string),
            mcp: McpChannel::start(tools),
            policy: policy.cloned(),
            answers_tx,
            answers,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The claude session this process runs, once known.
    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The node policy the process runs under.
    pub(crate) fn policy(&self) -> Option<&NodePolicy> {
        self.policy.as_ref()
    }

    /// Runs one turn, publishing its events to the turn's run as they arrive. A cancelled run is
    /// interrupted (claude's own interrupt: the process stays) and reported with `interrupted` set.
    pub(crate) async fn run_turn(&mut self, turn: &Turn, config: &AgentConfig) -> Result<TurnReport, TurnFailure> {
        let message = json!({
            "type": "user",
            "message": { "role": "user", "content": user_content(&turn.prompt, &turn.attachments) },
        });
        if write_line(&mut self.stdin, &message).await.is_err() {
            return Err(self.exited(false).await);
        }
        let run = &turn.run;
        let mut output_seen = false;
        let mut interrupted = false;
        let mut deadline = Instant::now() + turn.timeout;
        // Time spent waiting for a person does not count against the turn.
        let mut waiting_since: Option<Instant> = None;
        loop {
            match (run.has_open_prompts(), waiting_since) {
                (true, None) => waiting_since = Some(Instant::now()),
                (false, Some(since)) => {
                    deadline += since.elapsed();
                    waiting_since = None;
                }
                _ => {}
            }
            let outgoing = tokio::select! {
                line = self.stdout.next() => Ok(line),
                Some(answer) = self.mcp.next_answer() => Err(answer),
                Some(answer) = self.answers.recv() => Err(answer),
                () = run.cancel_token().cancelled(), if !interrupted => {
                    interrupted = true;
                    tracing::info!(run_id = %run.run_id, "interrupting the turn");
                    Err(interrupt_request(&run.run_id))
                }
                () = tokio::time::sleep_until(deadline), if waiting_since.is_none() => return Err(TurnFailure::TimedOut),
            };
            let next = match outgoing {
                Ok(line) => line,
                Err(to_claude) => {
                    if write_line(&mut self.stdin, &to_claude).await.is_err() {
                        return Err(self.exited(output_seen).await);
                    }
                    continue;
                }
            };
            let line = match next {
                Some(Ok(line)) => line,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "unreadable claude output; ending the process");
                    let _ = self.child.start_kill();
                    return Err(self.exited(true).await);
                }
                None => return Err(self.exited(output_seen).await),
            };
            output_seen = true;
            match parse_line(&line) {
                ClaudeLine::Init { session_id } => self.session_id = Some(session_id),
                // Subscribers may all be gone (the caller disconnected); the turn still runs to its end.
                ClaudeLine::Events(list) => list.into_iter().for_each(|event| run.publish(event)),
                ClaudeLine::Result(mut report) => {
                    if !report.session_id.is_empty() {
                        self.session_id = Some(report.session_id.clone());
                    }
                    report.interrupted = interrupted;
                    return if report.is_error && !interrupted {
                        Err(TurnFailure::Reported(report))
                    } else {
                        Ok(report)
                    };
                }
                ClaudeLine::ControlRequest { request_id, request } => match request["subtype"].as_str() {
                    Some("mcp_message") => self.mcp.forward(&request_id, &request).await,
                    Some("can_use_tool") => {
                        let prompt = Prompt::from_request(&request_id, &request);
                        run.open_prompt(prompt, config.prompt_timeout, self.answers_tx.clone());
                    }
                    other => {
                        // Never leave claude waiting on a question this host does not answer.
                        let refusal = mcp::control_error(
                            &request_id,
                            &format!("this host does not answer {}", other.unwrap_or("that")),
                        );
                        if write_line(&mut self.stdin, &refusal).await.is_err() {
                            return Err(self.exited(true).await);
                        }
                    }
                },
                ClaudeLine::ControlCancel { request_id } => run.withdraw(&request_id),
                ClaudeLine::Other => {}
            }
        }
    }

    async fn exited(&mut self, output_seen: bool) -> TurnFailure {
        let status = self.child.wait().await.ok();
        let stderr =
            String::from_utf8_lossy(self.stderr_tail.lock().expect("stderr lock").make_contiguous()).into_owned();
        TurnFailure::Exited { status, stderr, output_seen }
    }

    /// Ends the process now.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The user message's content: the prompt alone, or the images first and the prompt after them.
fn user_content(prompt: &str, attachments: &[Attachment]) -> Value {
    if attachments.is_empty() {
        return Value::String(prompt.to_string());
    }
    let images = attachments.iter().map(
        |a| json!({ "type": "image", "source": { "type": "base64", "media_type": a.media_type, "data": a.data } }),
    );
    Value::Array(images.chain(std::iter::once(json!({ "type": "text", "text": prompt }))).collect())
}

/// claude's interrupt (CLAUDE-CLI.md §5): it stops the turn and stays up for the next one.
fn interrupt_request(run_id: &str) -> Value {
    json!({ "type": "control_request", "request_id": format!("interrupt-{run_id}"), "request": { "subtype": "interrupt" } })
}

/// Writes one JSON line to claude's stdin.
async fn write_line(stdin: &mut ChildStdin, value: &Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}
