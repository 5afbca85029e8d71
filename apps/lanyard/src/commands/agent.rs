//! `lanyard agent "PROMPT"`: one turn of the agent, streamed to stdout as it arrives.

use clap::Args;
use node_kit::protocol::{AgentEventKind, AgentParams};
use std::io::Write;
use std::path::Path;

/// Send a prompt to the agent and stream its answer to stdout as it arrives. Tool use is reported on
/// stderr. Turns in the same --session continue one conversation.
#[derive(Args)]
pub struct AgentArgs {
    /// What to ask
    prompt: String,

    /// Conversation to continue
    #[arg(long, default_value = "main", value_name = "KEY")]
    session: String,

    /// Give up on the turn after this many seconds [default: the gateway's turn timeout]
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,

    /// Print the events and the outcome as JSON lines instead of text
    #[arg(long)]
    json: bool,
}

pub async fn run(args: AgentArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    let mut run = client
        .agent(AgentParams {
            channel: Default::default(),
            prompt: args.prompt,
            session_key: Some(args.session),
            idempotency_key: super::idempotency_key(),
            timeout_ms: args.timeout.map(|s| s * 1000),
            attachments: Vec::new(),
        })
        .await?;
    let mut stdout = std::io::stdout().lock();
    let mut wrote_text = false;
    while let Some(event) = run.next_event().await {
        if args.json {
            writeln!(stdout, "{}", serde_json::to_string(&event)?)?;
            continue;
        }
        match event {
            AgentEventKind::TextDelta { text } => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
                wrote_text = true;
            }
            AgentEventKind::ToolUse { name, .. } => eprintln!("[tool] {name}"),
            AgentEventKind::ToolResult { is_error: true, .. } => eprintln!("[tool] failed"),
            _ => {}
        }
    }
    let outcome = run.outcome().await?;
    if args.json {
        writeln!(stdout, "{}", serde_json::to_string(&outcome)?)?;
    } else if !wrote_text {
        // No deltas streamed (an older claude, say): print the result whole.
        writeln!(stdout, "{}", outcome.result)?;
    } else {
        writeln!(stdout)?;
    }
    Ok(())
}
