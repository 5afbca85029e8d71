//! `agent` and `agent.attach`: a run of the paired client, started or followed again, streamed back as
//! sealed SSE frames: the run's id, each of its events as a node sees them, and its outcome. Both are the
//! node protocol's methods, called as the client through the checks of a TLS node's call. A client that
//! goes away stops the stream, not the run: it follows it again with `agent.attach` after the last
//! event it read.

use super::caller::Caller;
use super::reply::SealedReply;
use crate::gateway_link;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::AgentRun;
use node_kit::protocol::{AgentParams, AttachParams, ErrorShape, method};
use node_kit::seal::ChatFrame;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

/// Runs `method` (`agent` or `agent.attach`) with the client's `payload` as its params.
pub(super) async fn run(
    shared: &BridgeShared,
    node_id: KeyId,
    method: &str,
    payload: Value,
    request: &mut mpsc::Receiver<Bytes>,
    reply: SealedReply,
) {
    let started = async {
        let caller = Caller::open(shared, node_id).await?;
        caller.admit(shared, method, &payload)?;
        let run = if method == method::AGENT {
            caller.gateway().agent(params::<AgentParams>(method, payload)?).await
        } else {
            caller.gateway().attach(params::<AttachParams>(method, payload)?).await
        };
        // The run's events come on the caller's link: it lives as long as the stream.
        Ok::<_, ErrorShape>((caller, run.map_err(gateway_link::refusal)?))
    };
    match started.await {
        Ok((_caller, run)) => stream(node_id, run, request, reply).await,
        Err(e) => reply.refusal(&e).await,
    }
}

/// The node protocol's params, or `INVALID_REQUEST` saying what does not fit, as the gateway would.
fn params<T: DeserializeOwned>(method: &str, payload: Value) -> Result<T, ErrorShape> {
    serde_json::from_value(payload)
        .map_err(|e| ErrorShape::invalid_request(format!("invalid params for {method}: {e}")))
}

/// Streams `run` to its end, or until the client goes away.
async fn stream(node_id: KeyId, mut run: AgentRun, request: &mut mpsc::Receiver<Bytes>, mut reply: SealedReply) {
    if !reply.start_events().await || !reply.event(&ChatFrame::Accepted { run_id: run.run_id().to_string() }).await {
        return;
    }
    loop {
        tokio::select! {
            event = run.next() => match event {
                Some(event) => {
                    if !reply.event(&ChatFrame::Agent { event: Box::new(event) }).await {
                        return;
                    }
                }
                None => break,
            },
            more = request.recv() => if more.is_none() {
                tracing::debug!(node = %node_id, "the sealed client went away; its run goes on");
                return;
            },
        }
    }
    let last = match run.outcome().await {
        Ok(outcome) => ChatFrame::Done { outcome: Box::new(outcome) },
        Err(e) => ChatFrame::Error { error: gateway_link::refusal(e) },
    };
    reply.event(&last).await;
}
