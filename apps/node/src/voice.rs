//! Voice forward: transcripts (a phone does speech-to-text itself; this node takes its text) go to the
//! agent on the `voice` channel, on the node's own session, one at a time and in order; each reply streams
//! to stdout, with the prompts the turn raises (answered by stdin commands, see [`crate::prompts`]) and
//! `[cancelled]` for a turn stopped by `/cancel`. A transcript the bridge refuses for its rate is kept and
//! sent again after `retryAfterMs`, so a burst is slowed, never lost.

use crate::prompts::{self, CONSOLE, Turns};
use node_kit::ClientError;
use node_kit::node::Node;
use node_kit::protocol::{AgentChannel, AgentParams, ErrorCode, RunStatus};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Transcripts waiting their turn in the queue to the agent.
pub const QUEUE: usize = 64;
/// Transcripts the line reader holds beyond a full queue; past that it slows down instead of dropping
/// lines (prompt commands typed after them then wait too).
pub const BACKLOG: usize = 1024;
/// Attempts per transcript before it is given up (rate limits, reconnects).
const ATTEMPTS: u32 = 20;

/// Sends each transcript in turn until the queue closes.
pub async fn forward(node: Node, turns: Arc<Turns>, mut transcripts: mpsc::Receiver<String>) {
    while let Some(text) = transcripts.recv().await {
        if let Err(e) = send(&node, &turns, &text).await {
            eprintln!("lanyard-node: voice: the transcript {text:?} was not answered: {e}");
        }
    }
}

async fn send(node: &Node, turns: &Turns, text: &str) -> Result<(), ClientError> {
    let params = AgentParams { channel: AgentChannel::Voice, ..AgentParams::new(text) };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = match node.agent(params.clone()).await {
            Ok(run) => stream(run, turns).await,
            Err(e) => Err(e),
        };
        let wait = match &outcome {
            Err(ClientError::Remote(e) | ClientError::Handshake(e)) if e.code == ErrorCode::RateLimited => {
                let wait = e.retry_after_ms.unwrap_or(1000);
                eprintln!(
                    "lanyard-node: voice: {} (retryAfterMs={}): {}; sending it again in {wait} ms",
                    e.code,
                    e.retry_after_ms.map_or_else(|| "none".into(), |ms| ms.to_string()),
                    e.message
                );
                Duration::from_millis(wait)
            }
            Err(ClientError::NotConnected | ClientError::Closed) => {
                eprintln!("lanyard-node: voice: not connected to the bridge; waiting to send {text:?}");
                let _ = node.connected(Duration::from_secs(30)).await;
                Duration::ZERO
            }
            _ => return outcome,
        };
        if attempt >= ATTEMPTS {
            return outcome;
        }
        tokio::time::sleep(wait).await;
    }
}

/// Prints the reply as it streams, and the prompts the turn raises, then a newline (and `[cancelled]`
/// when the turn was stopped).
async fn stream(mut run: node_kit::client::AgentRun, turns: &Turns) -> Result<(), ClientError> {
    let run_id = run.run_id().to_string();
    turns.started(&run_id);
    let mut printed = false;
    while let Some(event) = run.next().await {
        printed |= prompts::show(turns, &event);
    }
    let outcome = run.outcome().await;
    turns.finished(&run_id);
    CONSOLE.end_reply(printed);
    if outcome.as_ref().is_ok_and(|o| o.status == RunStatus::Cancelled) {
        CONSOLE.lines("[cancelled]");
    }
    outcome.map(drop)
}
