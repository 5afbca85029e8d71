//! `ai_chat`: one prompt on one of the client's conversations (the first version of this contract), run
//! as an `agent` turn of the paired client ([`super::agent`]) and streamed back the same way.

use super::agent;
use super::reply::SealedReply;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::protocol::{AgentParams, ErrorShape, check_id, method};
use node_kit::seal::ChatPayload;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

pub(super) async fn run(
    shared: &BridgeShared,
    node_id: KeyId,
    counter: u64,
    payload: Value,
    request: &mut mpsc::Receiver<Bytes>,
    reply: SealedReply,
) {
    match agent_params(payload, counter) {
        Ok(params) => {
            let params = serde_json::to_value(&params).expect("params serialise");
            agent::run(shared, node_id, method::AGENT, params, request, reply).await
        }
        Err(e) => reply.refusal(&e).await,
    }
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
