//! `ai_chat`: one prompt on one of the client's conversations, run as an `agent` turn of the paired client
//! (through the bridge's ACL and rate limit, as a node's call), streamed back as sealed SSE frames: the
//! run's id, each of its events as a node sees them, and its outcome. The turn's prompts (permissions,
//! questions) reach the client as events; this command cannot answer them, so they run out as the owner's
//! policy for the client says. A client that goes away stops the stream, not the turn.

use super::reply::SealedReply;
use crate::acl;
use crate::gateway_link;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::protocol::{AgentParams, ErrorShape, check_id, method};
use node_kit::seal::{ChatFrame, ChatPayload};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

pub(super) async fn run(
    shared: &BridgeShared,
    node_id: KeyId,
    counter: u64,
    payload: Value,
    request: &mut mpsc::Receiver<Bytes>,
    mut reply: SealedReply,
) {
    let params = match agent_params(payload, counter) {
        Ok(params) => params,
        Err(e) => return reply.refusal(&e).await,
    };
    let gateway = match gateway_link::node_client(&shared.config, node_id).await {
        Ok(gateway) => gateway,
        Err(e) => return reply.refusal(&e).await,
    };
    let scopes = gateway.hello().paired.as_ref().map(|p| p.scopes.clone()).unwrap_or_default();
    let params_value = serde_json::to_value(&params).expect("params serialise");
    let admitted =
        shared.limiter.request(&node_id).and_then(|()| acl::check_node_call(method::AGENT, &params_value, &scopes));
    if let Err(e) = admitted {
        return reply.refusal(&e).await;
    }
    let mut run = match gateway.agent(params).await {
        Ok(run) => run,
        Err(e) => return reply.refusal(&gateway_link::refusal(e)).await,
    };
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
                tracing::debug!(node = %node_id, "the sealed client went away; its turn goes on");
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

fn agent_params(payload: Value, counter: u64) -> Result<AgentParams, ErrorShape> {
    let ChatPayload { conversation_id, message } = serde_json::from_value(payload)
        .map_err(|e| ErrorShape::invalid_request(format!("invalid ai_chat payload: {e}")))?;
    check_id("conversation_id", &conversation_id)?;
    if message.trim().is_empty() {
        return Err(ErrorShape::invalid_request("message must not be empty"));
    }
    let mut params = AgentParams::new(message);
    params.session_key = Some(conversation_id);
    // A body is taken once, so its counter names the turn: a retry of the same body is a replay, refused.
    params.idempotency_key = format!("sealed-{counter}");
    Ok(params)
}
