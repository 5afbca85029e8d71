//! One running `claude` process in stream-json mode: a turn is one user line written to stdin and the
//! output lines read until claude's `result` line.

use super::mcp::{self, McpChannel};
use super::stream::{ClaudeLine, TurnReport, parse_line};
use crate::config::AgentConfig;
use crate::tools::NodeTools;
use futures_util::StreamExt;
use node_kit::protocol::AgentEventKind;
use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
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
}

/// Why a turn did not produce a result.
#[derive(Debug)]
pub(crate) enum TurnFailure {
    /// claude reported the turn as failed (an API error, say); the process is still usable.
    Reported(TurnReport),
    /// The process ended or its output broke; it is gone. `output_seen` tells whether it printed
    /// anything during this turn.
    Exited { status: Option<ExitStatus>, stderr: String, output_seen: bool },
}

impl ClaudeProcess {
    /// Starts claude with `tools` as its in-band MCP server, resuming `resume` (a claude session id) when
    /// given.
    pub(crate) async fn spawn(
        path: &Path,
        config: &AgentConfig,
        resume: Option<&str>,
        tools: NodeTools,
    ) -> std::io::Result<ClaudeProcess> {
        let mut command = Command::new(path);
        command
            .args(super::CLAUDE_ARGS)
            .args(super::allowed_tool_args())
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
        Ok(ClaudeProcess {
            child,
            stdin,
            stdout,
            stderr_tail,
            session_id: resume.map(str::to_string),
            mcp: McpChannel::start(tools),
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The claude session this process runs, once known.
    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Runs one turn, sending stream events to `events` as they arrive.
    pub(crate) async fn run_turn(
        &mut self,
        prompt: &str,
        events: &mpsc::Sender<AgentEventKind>,
    ) -> Result<TurnReport, TurnFailure> {
        let message = serde_json::json!({
            "type": "user",
            "message": { "role": "user", "content": prompt },
        });
        if write_line(&mut self.stdin, &message).await.is_err() {
            return Err(self.exited(false).await);
        }
        let mut output_seen = false;
        loop {
            let next = tokio::select! {
                line = self.stdout.next() => line,
                Some(answer) = self.mcp.next_answer() => {
                    if write_line(&mut self.stdin, &answer).await.is_err() {
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
                ClaudeLine::Events(list) => {
                    for event in list {
                        // The receiver may be gone (caller disconnected); the turn still runs to its end.
                        let _ = events.send(event).await;
                    }
                }
                ClaudeLine::Result(report) => {
                    if !report.session_id.is_empty() {
                        self.session_id = Some(report.session_id.clone());
                    }
                    return if report.is_error { Err(TurnFailure::Reported(report)) } else { Ok(report) };
                }
                ClaudeLine::ControlRequest { request_id, request } => {
                    if request.get("subtype").and_then(serde_json::Value::as_str) == Some("mcp_message") {
                        self.mcp.forward(&request_id, &request).await;
                    } else {
                        // Never leave claude waiting on a question this host does not answer.
                        let subtype = request.get("subtype").and_then(serde_json::Value::as_str).unwrap_or("that");
                        let refusal = mcp::control_error(&request_id, &format!("this host does not answer {subtype}"));
                        if write_line(&mut self.stdin, &refusal).await.is_err() {
                            return Err(self.exited(true).await);
                        }
                    }
                }
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

/// Writes one JSON line to claude's stdin.
async fn write_line(stdin: &mut ChildStdin, value: &serde_json::Value) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}
