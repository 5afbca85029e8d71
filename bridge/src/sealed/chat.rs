//! `POST /v1/chat`: one sealed envelope `{command, version, payload}`. The gateway opens the body once by
//! its counter; then the command is dispatched here: to its own module where it carries logic of its own
//! (`ai_chat`, `hello`, the streams of `agent` and `agent.attach`), else to [`super::unary`], which runs
//! the gateway method of the command's name. An unknown command is `400 unknown_command` with the list.

use super::reply::{Reply, SealedReply};
use super::{agent, ai_chat, hello, parse, unary};
use crate::pairing::forward;
use crate::shared::BridgeShared;
use crate::source::Source;
use node_kit::protocol::{ErrorCode, ErrorShape, SealOpenParams, SealOpened, method};
use node_kit::seal::{CommandError, ENVELOPE_VERSION, Envelope, SealKey, SealedBody, command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Bytes;

pub(super) async fn serve(
    shared: &BridgeShared,
    source: Source,
    body: &[u8],
    request: &mut mpsc::Receiver<Bytes>,
    reply: Reply,
) {
    let opened = match open(shared, source, body).await {
        Ok(opened) => opened,
        Err(e) => return reply.error(&e).await,
    };
    let (opened, counter) = opened;
    let Some(key) = SealKey::from_base64(&opened.seal_key) else {
        return reply.error(&ErrorShape::new(ErrorCode::Internal, "the gateway's seal key is unreadable")).await;
    };
    let reply = SealedReply::new(reply, key, counter);
    let envelope: Envelope = match serde_json::from_str(&opened.plaintext) {
        Ok(envelope) => envelope,
        Err(e) => return reply.error(400, &problem("bad_envelope", format!("not a command envelope: {e}"))).await,
    };
    if envelope.version != ENVELOPE_VERSION {
        let message = format!("envelope version {} is not {ENVELOPE_VERSION}", envelope.version);
        return reply.error(400, &problem("unsupported_version", message)).await;
    }
    let (node_id, payload) = (opened.node_id, envelope.payload);
    match envelope.command.as_str() {
        command::AI_CHAT => ai_chat::run(shared, node_id, counter, payload, request, reply).await,
        command::HELLO => hello::run(shared, node_id, payload, reply).await,
        name @ (command::AGENT | command::AGENT_ATTACH) => {
            agent::run(shared, node_id, name, payload, request, reply).await
        }
        name if command::UNARY.contains(&name) => unary::run(shared, node_id, name, payload, reply).await,
        other => {
            tracing::info!(node = %node_id, "unknown sealed command");
            let unknown = CommandError {
                error: "unknown_command".into(),
                command: Some(other.to_string()),
                supported: command::all(),
                ..CommandError::default()
            };
            reply.error(400, &unknown).await
        }
    }
}

/// The body opened by the gateway, with its counter.
async fn open(shared: &BridgeShared, source: Source, body: &[u8]) -> Result<(SealOpened, u64), ErrorShape> {
    let SealedBody { counter, sealed } = parse(body)?;
    let counter = counter.ok_or_else(|| ErrorShape::invalid_request("a chat body needs its counter"))?;
    let routing_hash = source.relay_hash_hex().ok_or_else(|| ErrorShape::invalid_request("not relayed"))?;
    let opened = forward(shared, method::SEAL_OPEN, SealOpenParams { routing_hash, counter, sealed }).await?;
    let opened = serde_json::from_value(opened)
        .map_err(|e| ErrorShape::new(ErrorCode::Internal, format!("unreadable seal.open answer: {e}")))?;
    Ok((opened, counter))
}

fn problem(error: &str, message: String) -> CommandError {
    CommandError { error: error.into(), message: Some(message), ..CommandError::default() }
}
