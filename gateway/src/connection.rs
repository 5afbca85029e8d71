//! One client connection: WebSocket upgrade (a socket's; an in-process link from the bridge in this process
//! has none), `connect` handshake within the deadline, then the frame loop.
//! Requests run as their own tasks (an `agent` turn must not block a `health` on the same socket), bounded
//! per connection; answers and events go out through the connection's [`Outbound`] queue.

use crate::methods::{Context, Method, Peer};
use crate::nodes;
use crate::state::GatewayState;
use certs::KeyId;
use node_kit::connection::{self, FrameReader, FrameWriter, Incoming};
use node_kit::link::LinkEnd;
use node_kit::outbound::{Keepalive, WriterTask};
use node_kit::protocol::{
    ClientMode, ConnectParams, ErrorCode, ErrorFrame, ErrorShape, Frame, GATEWAY_SHUTTING_DOWN, HelloOk, Limits,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, PairedNode, ServerInfo, check_id, event, negotiate_version,
};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// A socket's or an in-process link's halves (a link's fit any socket type).
type Reader = FrameReader<TcpStream>;
type Writer = FrameWriter<TcpStream>;

/// The address an in-process link is logged and counted under: this computer, port 0 (no socket).
const IN_PROCESS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Serves a client's socket: the WebSocket upgrade, then the connection as [`serve_frames`] does.
pub(crate) async fn serve(stream: TcpStream, addr: SocketAddr, state: Arc<GatewayState>, shutdown: CancellationToken) {
    let conn_id = state.next_conn_id();
    let config = connection::websocket_config(state.config.max_frame_bytes);
    let deadline = Instant::now() + state.config.handshake_timeout;
    let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(config));
    let ws = match tokio::time::timeout_at(deadline.into(), upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(conn = conn_id, %addr, error = %e, "websocket upgrade failed");
            return;
        }
        Err(_) => return,
    };
    let (reader, writer) = connection::split(ws);
    serve_frames(reader, writer, (conn_id, addr), deadline, state, shutdown).await;
}

/// Serves an in-process link from the bridge in this process: the same handshake, checks and frame loop as
/// a socket, with the same frame limit.
pub(crate) async fn serve_link(end: LinkEnd, state: Arc<GatewayState>, shutdown: CancellationToken) {
    let conn_id = state.next_conn_id();
    let deadline = Instant::now() + state.config.handshake_timeout;
    let (reader, writer) = connection::split_link(end, state.config.max_frame_bytes);
    serve_frames(reader, writer, (conn_id, IN_PROCESS), deadline, state, shutdown).await;
}

/// The `connect` handshake by `deadline`, then the frame loop.
async fn serve_frames(
    mut reader: Reader,
    mut writer: Writer,
    (conn_id, addr): (u64, SocketAddr),
    deadline: Instant,
    state: Arc<GatewayState>,
    shutdown: CancellationToken,
) {
    let peer = match handshake(&mut reader, &mut writer, &state, conn_id, addr, deadline).await {
        Ok(peer) => peer,
        Err((error, code)) => {
            state.refusals.refused(addr.ip(), refusal_reason(error.code));
            let _ = writer.send(&Frame::Error(ErrorFrame { error })).await;
            writer.close(code, "connect refused").await;
            return;
        }
    };
    // Every `lanyard` command is an operator connection: at INFO they would fill the `up` terminal.
    if peer.peer.mode == ClientMode::Operator {
        tracing::debug!(conn = conn_id, %addr, instance = %peer.peer.instance_id, "operator connected");
    } else {
        tracing::info!(conn = conn_id, %addr, mode = ?peer.peer.mode, instance = %peer.peer.instance_id, "client connected");
    }
    // The answer (hello-ok) is sent by `run`, once the connection is registered.
    // Boxed: the task keeps this future for the connection's life, and the handshake's states need not stay.
    Box::pin(run(reader, writer, state, peer, shutdown)).await;
}

/// Wrong tokens answered at once on one connection before the answers slow down.
const FREE_TOKEN_TRIES: u32 = 3;
/// Wrong tokens one connection may present before it is closed.
const MAX_TOKEN_TRIES: u32 = 10;

/// How long the answer to the `failures`-th wrong token waits: nothing for the first few, then 100 ms
/// doubling to 2 s. Per connection, never per address: every local client shares 127.0.0.1, and the owner's
/// next connection must never be locked out by someone else's guesses.
fn token_delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE_TOKEN_TRIES + 1) {
        None => Duration::ZERO,
        Some(doublings) => Duration::from_millis(100 << doublings.min(5)).min(Duration::from_secs(2)),
    }
}

fn refusal_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Timeout => "timeout",
        ErrorCode::UnsupportedProtocol => "protocol",
        ErrorCode::NotPaired => "not-paired",
        ErrorCode::PayloadTooLarge => "too-large",
        _ => "invalid",
    }
}

/// A connected client before its frame loop: who it is and, for nodes, what it offers.
struct Admitted {
    peer: Peer,
    node: Option<node_kit::protocol::NodeSummary>,
    paired: Option<PairedNode>,
}

/// Waits for `connect` and checks it. A wrong token may be tried again on the same connection, answered
/// ever more slowly ([`token_delay`]); anything else wrong ends the handshake.
async fn handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    state: &GatewayState,
    conn_id: u64,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<Admitted, (ErrorShape, CloseCode)> {
    let mut failures = 0;
    loop {
        match check_connect(reader, state, conn_id, deadline).await {
            Err((refusal, _)) if refusal.code == ErrorCode::Unauthorized && failures + 1 < MAX_TOKEN_TRIES => {
                failures += 1;
                state.refusals.refused(addr.ip(), refusal_reason(refusal.code));
                tokio::time::sleep_until(deadline.min(Instant::now() + token_delay(failures)).into()).await;
                let _ = writer.send(&Frame::Error(ErrorFrame { error: refusal })).await;
            }
            outcome => return outcome,
        }
    }
}

/// Reads one `connect` and checks it: protocol version, string lengths, identity, token.
async fn check_connect(
    reader: &mut Reader,
    state: &GatewayState,
    conn_id: u64,
    deadline: Instant,
) -> Result<Admitted, (ErrorShape, CloseCode)> {
    let policy = |e: ErrorShape| (e, CloseCode::Policy);
    let connect = loop {
        match tokio::time::timeout_at(deadline.into(), reader.next()).await {
            Err(_) => {
                return Err(policy(ErrorShape::new(
                    ErrorCode::Timeout,
                    format!("no connect frame within {} ms", state.config.handshake_timeout.as_millis()),
                )));
            }
            Ok(Incoming::Heartbeat) => continue,
            Ok(Incoming::Frame(Frame::Connect(connect))) => break connect,
            Ok(Incoming::Frame(_)) => {
                return Err(policy(ErrorShape::invalid_request("the first frame must be connect")));
            }
            Ok(Incoming::Invalid(e)) => return Err(policy(e.error)),
            Ok(Incoming::TooLarge(e)) => return Err((e, CloseCode::Size)),
            Ok(Incoming::Closed(_)) => {
                return Err(policy(ErrorShape::invalid_request("closed before connect")));
            }
        }
    };
    connect.check_lengths().map_err(policy)?;
    let ConnectParams { min_protocol, max_protocol, client, auth, node } = connect;
    if negotiate_version(min_protocol, max_protocol).is_none() {
        return Err(policy(
            ErrorShape::new(
                ErrorCode::UnsupportedProtocol,
                format!("client speaks protocol {min_protocol}..={max_protocol}; this gateway speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}"),
            )
            .with_details(json!({ "minProtocol": MIN_PROTOCOL_VERSION, "maxProtocol": PROTOCOL_VERSION })),
        ));
    }
    let presented = auth.map(|a| a.token).unwrap_or_default();
    let credential = if state.token.matches(&presented) {
        ClientMode::Operator
    } else if state.bridge_token.matches(&presented) {
        ClientMode::Bridge
    } else {
        return Err(policy(ErrorShape::new(ErrorCode::Unauthorized, "missing or wrong gateway token")));
    };
    // Only the bridge speaks for nodes: it took their identity from their TLS key.
    match (credential, client.mode) {
        (ClientMode::Operator, ClientMode::Operator) | (ClientMode::Bridge, ClientMode::Node | ClientMode::Bridge) => {}
        (ClientMode::Operator, _) => {
            return Err(policy(ErrorShape::new(
                ErrorCode::Unauthorized,
                "only the bridge may connect as a node or bridge; nodes connect through the bridge",
            )));
        }
        _ => {
            return Err(policy(ErrorShape::new(ErrorCode::Unauthorized, "the bridge token is for the bridge only")));
        }
    }
    check_id("client.instanceId", &client.instance_id).map_err(policy)?;
    let paired = match client.mode {
        ClientMode::Node => Some(paired_record(state, &client.instance_id).map_err(policy)?),
        _ => None,
    };
    let node = paired.as_ref().map(|record| nodes::summary(&client, record, node.unwrap_or_default()));
    Ok(Admitted {
        peer: Peer { conn_id, mode: client.mode, instance_id: client.instance_id, platform: client.platform },
        node,
        paired,
    })
}

/// The pairing record of the node the bridge connects for; refused when its key is not paired.
fn paired_record(state: &GatewayState, instance_id: &str) -> Result<PairedNode, ErrorShape> {
    let node_id: KeyId = instance_id
        .parse()
        .map_err(|e| ErrorShape::invalid_request(format!("a node's instanceId is its key ID: {e}")))?;
    let record = state.paired.get(&node_id).ok_or_else(|| crate::methods::not_paired(&node_id))?;
    state.paired.touch(&node_id);
    Ok(record)
}

async fn run(
    mut reader: Reader,
    writer: Writer,
    state: Arc<GatewayState>,
    Admitted { peer, node, paired }: Admitted,
    shutdown: CancellationToken,
) {
    let conn_id = peer.conn_id;
    let peer = Arc::new(peer);
    let node_key = paired.as_ref().map(|record| record.node_id);
    let writer = WriterTask::spawn(writer, state.config.outbound_queue);
    let outbound = writer.outbound.clone();

    outbound.send(Frame::HelloOk(Box::new(HelloOk {
        protocol: PROTOCOL_VERSION,
        server: ServerInfo {
            name: "lanyard-gateway".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            connection_id: conn_id.to_string(),
        },
        methods: Method::NAMES.iter().map(|m| m.to_string()).collect(),
        events: [
            event::AGENT,
            event::NODE_EVENT,
            event::PRESENCE,
            event::PAIR_REQUESTED,
            event::PAIR_RESOLVED,
            event::PAIR_CODE_ISSUED,
            event::PAIR_RENAMED,
            event::TUNNEL,
        ]
        .map(String::from)
        .to_vec(),
        limits: Limits {
            max_frame_bytes: state.config.max_frame_bytes,
            max_in_flight: state.config.max_in_flight,
            handshake_timeout_ms: state.config.handshake_timeout.as_millis() as u64,
            keepalive_ms: state.config.keepalive_interval.as_millis() as u64,
        },
        relay_url: paired.as_ref().and_then(|_| state.tunnel.url()),
        paired,
    })));
    state.hub.insert(conn_id, peer.mode, outbound.clone());
    if let Some(summary) = node {
        let node_id = summary.node_id.clone();
        state.nodes.register(conn_id, summary, outbound.clone());
        // A revoke between the handshake's check and this registration found nothing to close: look again.
        if let Some(key) = node_key
            && state.paired.get(&key).is_none()
        {
            state.nodes.disconnect(&node_id, crate::methods::not_paired(&key));
        }
    }
    state.metrics.connected(peer.mode);
    let entry = state.presence.connected(conn_id, &peer.instance_id, peer.mode, &peer.platform);
    state.hub.broadcast(event::PRESENCE, &entry);

    let in_flight = Arc::new(Semaphore::new(state.config.max_in_flight));
    let mut keepalive = Keepalive::new(state.config.keepalive_interval);
    let close_reason = loop {
        tokio::select! {
            incoming = reader.next() => {
                keepalive.heard();
                match incoming {
                    Incoming::Frame(Frame::Req(req)) => {
                        state.requests.count(&req.method);
                        let ctx = Context { state: state.clone(), peer: peer.clone(), outbound: outbound.clone(), request_id: req.id };
                        match in_flight.clone().try_acquire_owned() {
                            Ok(permit) => spawn_request(ctx, req.method, req.params, permit),
                            Err(_) => {
                                let busy = ErrorShape::retryable(
                                    ErrorCode::RateLimited,
                                    format!("at most {} requests may run at once on one connection", state.config.max_in_flight),
                                    Some(100),
                                );
                                outbound.send(Frame::err(ctx.request_id, busy));
                            }
                        }
                    }
                    Incoming::Frame(Frame::Res(res)) if peer.mode == ClientMode::Node => state.nodes.complete(conn_id, res),
                    Incoming::Frame(other) => {
                        let refusal = format!("a client may not send {:?} frames here", other.kind());
                        outbound.send(error_frame(ErrorShape::invalid_request(refusal)));
                    }
                    Incoming::Invalid(e) => {
                        outbound.send(match e.request_id {
                            Some(id) => Frame::err(id, e.error),
                            None => error_frame(e.error),
                        });
                    }
                    Incoming::TooLarge(e) => {
                        outbound.send(error_frame(e));
                        break Some((CloseCode::Size, "frame too large"));
                    }
                    Incoming::Heartbeat => {}
                    // Closing flushes the Close that answers the client's (RFC 6455 §5.5.1).
                    Incoming::Closed(_) => break Some((CloseCode::Normal, "closed by the client")),
                }
            }
            alive = keepalive.tick() => {
                if !alive {
                    tracing::info!(conn = conn_id, "no sign of life from the client; closing");
                    break Some((CloseCode::Away, "keepalive timeout"));
                }
                outbound.ping();
            }
            () = outbound.closed().cancelled() => break Some((CloseCode::Policy, "closed by the gateway")),
            () = shutdown.cancelled() => break Some((CloseCode::Away, GATEWAY_SHUTTING_DOWN)),
        }
    };

    state.hub.remove(conn_id);
    if peer.mode == ClientMode::Node {
        state.nodes.unregister(conn_id, &peer.instance_id);
    }
    if let Some(entry) = state.presence.disconnected(conn_id, &peer.instance_id) {
        state.hub.broadcast(event::PRESENCE, &entry);
    }
    writer.finish(close_reason).await;
    state.metrics.disconnected(peer.mode);
    if peer.mode == ClientMode::Operator {
        tracing::debug!(conn = conn_id, "operator disconnected");
    } else {
        tracing::info!(conn = conn_id, "client disconnected");
    }
}

/// Runs one request as its own task, holding an in-flight permit until it is answered.
fn spawn_request(ctx: Context, method: String, params: serde_json::Value, permit: OwnedSemaphorePermit) {
    tracing::debug!(conn = ctx.peer.conn_id, method = %method, "request");
    tokio::spawn(async move {
        let outcome = match Method::parse(&method, params) {
            Ok(method) => method.apply(&ctx).await,
            Err(e) => Err(e),
        };
        ctx.outbound.send(match outcome {
            Ok(payload) => Frame::ok(ctx.request_id.clone(), payload),
            Err(e) => Frame::err(ctx.request_id.clone(), e),
        });
        drop(permit);
    });
}

fn error_frame(error: ErrorShape) -> Frame {
    Frame::Error(ErrorFrame { error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_tokens_slow_down_after_a_few() {
        let delays: Vec<u64> = (1..=10).map(|n| token_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [0, 0, 0, 100, 200, 400, 800, 1600, 2000, 2000]);
    }
}
