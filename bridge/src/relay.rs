//! A paired node's calls, relayed to the gateway on the node's own link, and the gateway's commands
//! relayed back. Each direction passes its checks here: the ACL and the rate limits on the way in, the
//! node's capabilities, its background state and the snapshot limits on the way out. A frame that passes
//! is forwarded as the bytes that arrived, never serialised again. The pairing dialogue sends through a
//! queue ([`crate::pairing`]); the relay writes itself.

use crate::acl::{self, AllowedCall};
use crate::gateway_link::{NodeLink, unavailable};
use crate::node_side::NodeSide;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::connection::{FrameWriter, Incoming};
use node_kit::protocol::{
    AppState, ErrorCode, ErrorFrame, ErrorShape, Frame, FrameHead, GATEWAY_SHUTTING_DOWN, NodeCommand,
    REPLACED_BY_NEWER_CONNECTION, Request, Response, SCREEN_CAPABILITY, Scope, command, method,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// What the relay knows about the node while it runs.
struct NodeState {
    scopes: Vec<Scope>,
    caps: Vec<String>,
    background: bool,
    /// `node.invoke` ids of snapshots on their way to the node; their answers are size-checked.
    snapshots: HashSet<String>,
}

/// What one turn of the relay loop decided: at most one message for each side, then perhaps the end.
#[derive(Default)]
struct Turn {
    to_gateway: Option<Message>,
    to_node: Option<Message>,
    /// End the connection after the messages; `Some(None)` drops it without a close frame.
    end: Option<Option<(CloseCode, &'static str)>>,
}

impl Turn {
    fn to_node(frame: Frame) -> Turn {
        Turn { to_node: Some(Message::text(frame.to_text())), ..Turn::default() }
    }

    fn to_gateway(frame: Frame) -> Turn {
        Turn { to_gateway: Some(Message::text(frame.to_text())), ..Turn::default() }
    }

    fn relay_to_node(text: &Utf8Bytes) -> Turn {
        Turn { to_node: Some(Message::Text(text.clone())), ..Turn::default() }
    }

    fn relay_to_gateway(text: &Utf8Bytes) -> Turn {
        Turn { to_gateway: Some(Message::Text(text.clone())), ..Turn::default() }
    }

    /// An `error` frame to the node, then a close.
    fn closing(error: ErrorShape, close: (CloseCode, &'static str)) -> Turn {
        Turn { end: Some(Some(close)), ..Turn::to_node(Frame::Error(ErrorFrame { error })) }
    }

    fn end(close: Option<(CloseCode, &'static str)>) -> Turn {
        Turn { end: Some(close), ..Turn::default() }
    }
}

/// Relays until either side goes; `caps` are the capabilities the node granted in its `connect`.
///
/// One task does it all: it reads both sides and writes each message itself, so a call crosses the bridge
/// without a hand-off to another task. A side that does not take a message within the write-stall time
/// (its socket buffer full, so it is not reading) is dropped, as a full queue would drop it.
pub(crate) async fn run(mut node: NodeSide, link: NodeLink, caps: Vec<String>, shared: Arc<BridgeShared>) {
    let NodeLink { reader: mut link_reader, writer: mut link_writer, hello } = link;
    let mut state = NodeState {
        scopes: hello.paired.map(|p| p.scopes).unwrap_or_default(),
        caps,
        background: false,
        snapshots: HashSet::new(),
    };
    let node_id = node.node_id;
    let stall = shared.config.write_stall;

    let close = loop {
        let turn = tokio::select! {
            incoming = node.reader.next() => {
                node.keepalive.heard();
                match incoming {
                    Incoming::Frame(Frame::Req(req)) => match admit(&shared, &node, &mut state, &req) {
                        Ok(()) => Turn::relay_to_gateway(node.reader.last_text()),
                        Err(e) => {
                            tracing::debug!(node = %node_id, method = %req.method, code = %e.code, "refused by the bridge");
                            Turn::to_node(Frame::err(req.id, e))
                        }
                    },
                    Incoming::Frame(Frame::Res(res)) => {
                        let text = node.reader.last_text();
                        match checked_answer(&shared, &mut state, &res, text.len()) {
                            Ok(()) => Turn::relay_to_gateway(text),
                            Err(e) => Turn::to_gateway(Frame::err(res.id, e)),
                        }
                    }
                    Incoming::Frame(other) => {
                        let refusal = format!("a node may not send {:?} frames after connect", other.kind());
                        Turn::to_node(Frame::Error(ErrorFrame { error: ErrorShape::invalid_request(refusal) }))
                    }
                    Incoming::Invalid(e) => Turn::to_node(match e.request_id {
                        Some(id) => Frame::err(id, e.error),
                        None => Frame::Error(ErrorFrame { error: e.error }),
                    }),
                    Incoming::TooLarge(e) => Turn::closing(e, (CloseCode::Size, "frame too large")),
                    Incoming::Heartbeat => Turn::default(),
                    // Closing flushes the Close that answers the node's (RFC 6455 §5.5.1).
                    Incoming::Closed(_) => Turn::end(Some((CloseCode::Normal, "closed by the node"))),
                }
            }
            // Frames from the gateway are trusted: only their head is read, and they pass on as they came.
            incoming = link_reader.next_as(FrameHead::parse) => match incoming {
                Incoming::Frame(head) if head.kind == "req" => {
                    let id = head.id.clone().unwrap_or_default();
                    let checked = match head.method.as_deref() {
                        Some(method::NODE_INVOKE) => command_allowed(&shared, &node, &mut state, &id, head.command()),
                        other => Err(ErrorShape::new(ErrorCode::UnknownMethod, format!("nodes do not answer {}", other.unwrap_or("that")))),
                    };
                    match checked {
                        Ok(()) => Turn::relay_to_node(link_reader.last_text()),
                        Err(e) => Turn::to_gateway(Frame::err(id, e)),
                    }
                }
                Incoming::Frame(head) if head.kind == "error" => {
                    // The gateway's last word before it closes the link (a revoked pairing): pass it on.
                    let error = match Frame::parse(link_reader.last_text()) {
                        Ok(Frame::Error(e)) => e.error,
                        _ => unavailable("the gateway sent an unreadable error"),
                    };
                    tracing::info!(node = %node_id, code = %error.code, "the gateway closed the node's link");
                    Turn::closing(error, (CloseCode::Policy, "closed by the gateway"))
                }
                Incoming::Frame(_) => Turn::relay_to_node(link_reader.last_text()),
                Incoming::Heartbeat => Turn::default(),
                Incoming::Closed(Some(reason)) if reason == GATEWAY_SHUTTING_DOWN => {
                    tracing::info!(node = %node_id, "the gateway is shutting down; closing the node's link");
                    Turn::closing(unavailable(GATEWAY_SHUTTING_DOWN), (CloseCode::Again, "gateway unavailable"))
                }
                Incoming::Closed(Some(reason)) if reason == REPLACED_BY_NEWER_CONNECTION => {
                    // The node connected again while this connection was still open: no loss.
                    tracing::info!(node = %node_id, "a newer connection of the node replaced this one");
                    Turn::end(Some((CloseCode::Policy, REPLACED_BY_NEWER_CONNECTION)))
                }
                Incoming::Invalid(_) | Incoming::TooLarge(_) | Incoming::Closed(_) => {
                    tracing::warn!(node = %node_id, "lost the gateway link");
                    Turn::closing(unavailable("the link to the gateway closed"), (CloseCode::Again, "gateway unavailable"))
                }
            },
            alive = node.keepalive.tick() => {
                if alive {
                    Turn { to_node: Some(Message::Ping(Default::default())), ..Turn::default() }
                } else {
                    tracing::info!(node = %node_id, "no sign of life from the node; closing");
                    Turn::end(Some((CloseCode::Away, "keepalive timeout")))
                }
            }
            () = node.admission.stopped() => Turn::end(Some(node.admission.close_reason())),
        };
        let mut end = turn.end;
        let mut to_node = turn.to_node;
        let relayed: usize = [&turn.to_gateway, &to_node].into_iter().flatten().map(Message::len).sum();
        shared.counters.relayed(node.source, relayed);
        if let Some(message) = turn.to_gateway
            && deliver(&mut link_writer, message, stall).await.is_err()
        {
            to_node = Some(Message::text(
                Frame::Error(ErrorFrame { error: unavailable("the gateway stopped reading") }).to_text(),
            ));
            end = Some(Some((CloseCode::Again, "gateway unavailable")));
        }
        if let Some(message) = to_node
            && let Err(undelivered) = deliver(&mut node.writer, message, stall).await
        {
            match undelivered {
                Undelivered::Stalled => {
                    tracing::warn!(node = %node_id, "the node is not reading its frames; dropping it")
                }
                // A device that left (out of range, its app closed) while frames were on their way to it.
                Undelivered::Failed(e) => tracing::debug!(node = %node_id, error = %e, "the node's connection is gone"),
            }
            break None;
        }
        if let Some(close) = end {
            break close;
        }
    };
    tokio::time::timeout(stall, link_writer.close(CloseCode::Normal, "node gone")).await.ok();
    if let Some((code, why)) = close {
        tokio::time::timeout(stall, node.writer.close(code, why)).await.ok();
    }
    tracing::info!(node = %node_id, "paired node disconnected");
}

/// Why a message did not reach its side.
#[derive(Debug)]
enum Undelivered {
    /// The side did not take it within the write-stall time: it is not reading.
    Stalled,
    /// The write failed: the connection is gone (reset, closed by the peer).
    Failed(tokio_tungstenite::tungstenite::Error),
}

/// Writes one message, or gives up on a peer that has not taken it within `stall`.
async fn deliver<S>(writer: &mut FrameWriter<S>, message: Message, stall: Duration) -> Result<(), Undelivered>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(stall, writer.send_message(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Undelivered::Failed(e)),
        Err(_) => Err(Undelivered::Stalled),
    }
}

/// The checks on a node's request ([`admit_call`]); tracks background state.
fn admit(shared: &BridgeShared, node: &NodeSide, state: &mut NodeState, req: &Request) -> Result<(), ErrorShape> {
    admit_call(shared, &node.node_id, &req.method, &req.params, &state.scopes)?;
    if req.method == method::SYSTEM_EVENT
        && let Some(app_state) = req.params.get("state").and_then(|s| AppState::deserialize(s).ok())
    {
        state.background = app_state == AppState::Background;
    }
    Ok(())
}

/// The checks every call of a paired device passes on its way to the gateway, whichever way it came (a
/// node's frame here, a sealed client's command in [`crate::sealed`]): the per-device rate limit, the ACL
/// for the device's scopes, the voice limit and the attachment limits.
pub(crate) fn admit_call(
    shared: &BridgeShared,
    node_id: &KeyId,
    method: &str,
    params: &Value,
    scopes: &[Scope],
) -> Result<(), ErrorShape> {
    shared.limiter.request(node_id)?;
    if acl::check_node_call(method, params, scopes)? == AllowedCall::Voice {
        shared.limiter.voice(node_id)?;
    }
    if method == method::AGENT {
        // Images are refused here, before they cost the gateway anything.
        node_kit::protocol::check_attachments(params)?;
    }
    Ok(())
}

/// The checks on a command the gateway sends: capability, background state, snapshot rate.
fn command_allowed(
    shared: &BridgeShared,
    node: &NodeSide,
    state: &mut NodeState,
    id: &str,
    command: Option<&str>,
) -> Result<(), ErrorShape> {
    // Only the name is needed here; the params (a whole script, say) pass on untouched.
    let command = command.ok_or_else(|| ErrorShape::invalid_request("node.invoke params need a command name"))?;
    acl::check_command(command, &state.caps)?;
    if state.background && NodeCommand::capability(command) == Some(SCREEN_CAPABILITY) {
        let wait = shared.config.background_retry_after.as_millis() as u64;
        return Err(ErrorShape::retryable(
            ErrorCode::NodeBackgroundUnavailable,
            format!("the node is in the background; {command} needs it in the foreground"),
            Some(wait),
        ));
    }
    if command == command::SCREEN_SNAPSHOT {
        shared.limiter.snapshot(&node.node_id)?;
        state.snapshots.insert(id.to_string());
    }
    Ok(())
}

/// Checks a node's answer (`size` bytes as it arrived): an oversize snapshot is refused with
/// `PAYLOAD_TOO_LARGE`, which replaces it.
fn checked_answer(shared: &BridgeShared, state: &mut NodeState, res: &Response, size: usize) -> Result<(), ErrorShape> {
    if state.snapshots.remove(&res.id) && res.outcome.is_ok() {
        shared.limiter.snapshot_size(size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// The bridge's side of a WebSocket over an in-memory pipe of `buffer` bytes, and the pipe's far end.
    async fn writer(buffer: usize) -> (FrameWriter<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(buffer);
        let ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
        (node_kit::connection::split(ws).1, theirs)
    }

    /// A node that left is told apart from one that stopped reading: only the second is a warning (the soak
    /// found a device dropping mid-turn logged as "not reading its frames").
    #[tokio::test]
    async fn a_gone_peer_is_not_a_stalled_one() {
        let stall = Duration::from_millis(300);
        let (mut to_gone, far_end) = writer(64 * 1024).await;
        drop(far_end);
        let gone = deliver(&mut to_gone, Message::text("{}"), stall).await;
        assert!(matches!(gone, Err(Undelivered::Failed(_))), "{gone:?}");

        let (mut to_sleeper, _far_end) = writer(64).await;
        let stalled = deliver(&mut to_sleeper, Message::text("x".repeat(4096)), stall).await;
        assert!(matches!(stalled, Err(Undelivered::Stalled)), "{stalled:?}");

        let (mut to_reader, _far_end) = writer(64 * 1024).await;
        assert!(deliver(&mut to_reader, Message::text("{}"), stall).await.is_ok());
    }
}
