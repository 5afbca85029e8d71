//! A paired node's calls, relayed to the gateway on the node's own link, and the gateway's commands
//! relayed back. Each direction passes its checks here: the ACL and the rate limits on the way in, the
//! node's capabilities, its background state and the snapshot limits on the way out. A frame that passes
//! is forwarded as the bytes that arrived, never serialised again.

use crate::acl::{self, AllowedCall};
use crate::gateway_link::{NodeLink, unavailable};
use crate::node_side::NodeSide;
use crate::shared::BridgeShared;
use node_kit::connection::Incoming;
use node_kit::outbound::WriterTask;
use node_kit::protocol::{
    AppState, ErrorCode, ErrorFrame, ErrorShape, Frame, FrameHead, NodeCommand, Request, Response, SCREEN_CAPABILITY,
    Scope, command, method,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What the relay knows about the node while it runs.
struct NodeState {
    scopes: Vec<Scope>,
    caps: Vec<String>,
    background: bool,
    /// `node.invoke` ids of snapshots on their way to the node; their answers are size-checked.
    snapshots: HashSet<String>,
}

/// Relays until either side goes; `caps` are the capabilities the node granted in its `connect`.
pub(crate) async fn run(mut node: NodeSide, link: NodeLink, caps: Vec<String>, shared: Arc<BridgeShared>) {
    let NodeLink { reader: mut link_reader, writer: link_writer, hello } = link;
    let link_writer = WriterTask::spawn(link_writer, shared.config.outbound_queue);
    let gateway = link_writer.outbound.clone();
    let mut state = NodeState {
        scopes: hello.paired.map(|p| p.scopes).unwrap_or_default(),
        caps,
        background: false,
        snapshots: HashSet::new(),
    };
    let node_id = node.node_id;

    let close = loop {
        tokio::select! {
            incoming = node.reader.next() => {
                node.keepalive.heard();
                match incoming {
                    Incoming::Frame(Frame::Req(req)) => match admit(&shared, &node, &mut state, &req) {
                        Ok(()) => { gateway.send_text(node.reader.last_text().clone()); }
                        Err(e) => {
                            tracing::debug!(node = %node_id, method = %req.method, code = %e.code, "refused by the bridge");
                            node.outbound.send(Frame::err(req.id, e));
                        }
                    },
                    Incoming::Frame(Frame::Res(res)) => {
                        let text = node.reader.last_text();
                        match checked_answer(&shared, &mut state, &res, text.len()) {
                            Ok(()) => gateway.send_text(text.clone()),
                            Err(e) => gateway.send(Frame::err(res.id, e)),
                        };
                    }
                    Incoming::Frame(other) => {
                        let refusal = format!("a node may not send {:?} frames after connect", other.kind());
                        node.send_error(ErrorShape::invalid_request(refusal));
                    }
                    Incoming::Invalid(e) => {
                        node.outbound.send(match e.request_id {
                            Some(id) => Frame::err(id, e.error),
                            None => Frame::Error(ErrorFrame { error: e.error }),
                        });
                    }
                    Incoming::TooLarge(e) => {
                        node.send_error(e);
                        break Some((CloseCode::Size, "frame too large"));
                    }
                    Incoming::Heartbeat => {}
                    Incoming::Closed(_) => break None,
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
                        Ok(()) => { node.outbound.send_text(link_reader.last_text().clone()); }
                        Err(e) => { gateway.send(Frame::err(id, e)); }
                    }
                }
                Incoming::Frame(head) if head.kind == "error" => {
                    // The gateway's last word before it closes the link (a revoked pairing): pass it on.
                    let error = match Frame::parse(link_reader.last_text()) {
                        Ok(Frame::Error(e)) => e.error,
                        _ => unavailable("the gateway sent an unreadable error"),
                    };
                    tracing::info!(node = %node_id, code = %error.code, "the gateway closed the node's link");
                    node.send_error(error);
                    break Some((CloseCode::Policy, "closed by the gateway"));
                }
                Incoming::Frame(_) => { node.outbound.send_text(link_reader.last_text().clone()); }
                Incoming::Heartbeat => {}
                Incoming::Invalid(_) | Incoming::TooLarge(_) | Incoming::Closed(_) => {
                    tracing::warn!(node = %node_id, "lost the gateway link");
                    node.send_error(unavailable("the link to the gateway closed"));
                    break Some((CloseCode::Again, "gateway unavailable"));
                }
            },
            alive = node.keepalive.tick() => {
                if !alive {
                    tracing::info!(node = %node_id, "no sign of life from the node; closing");
                    break Some((CloseCode::Away, "keepalive timeout"));
                }
                node.outbound.ping();
            }
            () = node.outbound.closed().cancelled() => break None,
            () = gateway.closed().cancelled() => {
                node.send_error(unavailable("the gateway stopped reading"));
                break Some((CloseCode::Again, "gateway unavailable"));
            }
            () = node.admission.stopped() => break Some(node.stop_reason()),
        }
    };
    link_writer.finish(Some((CloseCode::Normal, "node gone"))).await;
    node.finish(close).await;
    tracing::info!(node = %node_id, "paired node disconnected");
}

/// The checks on a node's request: rate limit, ACL, and the voice limit; tracks background state.
fn admit(shared: &BridgeShared, node: &NodeSide, state: &mut NodeState, req: &Request) -> Result<(), ErrorShape> {
    shared.limiter.request(&node.node_id)?;
    if acl::check_node_call(&req.method, &req.params, &state.scopes)? == AllowedCall::Voice {
        shared.limiter.voice(&node.node_id)?;
    }
    if req.method == method::SYSTEM_EVENT
        && let Some(app_state) = req.params.get("state").and_then(|s| AppState::deserialize(s).ok())
    {
        state.background = app_state == AppState::Background;
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
