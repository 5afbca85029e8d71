//! One node connection, from TCP to its end: TLS (the node's key is the credential), WebSocket, the
//! node's `connect`, then either the pairing dialogue (unknown key) or the relay (paired key).
//!
//! Until the gateway says the key is paired, the WebSocket runs with the small unpaired frame limit, so a
//! stranger can make the bridge buffer only a few KB. A paired node's socket is then given the normal
//! limit: nodes send nothing between `connect` and `hello-ok` (protocol.md), so no bytes are buffered when
//! the WebSocket is rebuilt around the same TLS stream.

use crate::connections::Admission;
use crate::node_side::ByteStream;
use crate::node_side::{NodeSide, NodeStream};
use crate::shared::BridgeShared;
use crate::source::Source;
use crate::{gateway_link, pairing, relay};
use node_kit::connection::{self, FrameReader, FrameWriter, Incoming};
use node_kit::outbound::WriterTask;
use node_kit::protocol::{
    ConnectParams, ErrorCode, ErrorFrame, ErrorShape, Frame, HelloOk, Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    PairedNode, ServerInfo, negotiate_version,
};
use std::sync::Arc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long a paired node is told to wait when the paired pool is full.
const PAIRED_FULL_RETRY_MS: u64 = 5000;

/// Every connection's task holds this future for its whole life, and a future is as large as its largest
/// state: the handshake's futures (TLS, the WebSocket upgrade, the gateway link) and the long-lived relay
/// or dialogue are boxed, so an idle connection keeps only what its relay needs.
pub(crate) async fn serve(io: Box<dyn ByteStream>, source: Source, shared: Arc<BridgeShared>, admission: Admission) {
    let refused = |reason| shared.refusals.refused(source, reason);
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let tls = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, Box::pin(shared.tls.accept(io))) => match accepted {
            Ok(Ok(tls)) => tls,
            Ok(Err(_)) => return refused("tls-failed"),
            Err(_) => return refused("tls-timeout"),
        },
        () = admission.stopped() => return,
    };
    let Some(node_id) = certs::peer_key(tls.get_ref().1) else {
        return;
    };
    shared.counters.handshake(source);
    if let Err(refusal) = admission.identify(node_id) {
        return refused(refusal.as_str());
    }
    let unpaired = connection::websocket_config(shared.config.unpaired_max_frame_bytes);
    let upgrade = Box::pin(tokio_tungstenite::accept_async_with_config(tls, Some(unpaired)));
    let ws = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        _ => return refused("websocket-failed"),
    };
    let (mut reader, writer) = connection::split(ws);
    let connect = tokio::time::timeout_at(deadline, read_connect(&mut reader)).await.unwrap_or_else(|_| {
        let waited = shared.config.handshake_timeout.as_millis();
        Err((ErrorShape::new(ErrorCode::Timeout, format!("no connect frame within {waited} ms")), CloseCode::Policy))
    });
    let ConnectParams { client, node, .. } = match connect {
        Ok(connect) => connect,
        Err((error, close)) => {
            refused("connect-refused");
            return Box::pin(refuse(writer, &shared, error, close, "connect refused")).await;
        }
    };
    let caps = node.as_ref().map(|advert| advert.caps.clone()).unwrap_or_default();
    match Box::pin(gateway_link::open_node_link(&shared.config, (node_id, source.path()), client, node)).await {
        Ok(link) => {
            if let Err(refusal) = admission.promote() {
                refused(refusal.as_str());
                let full = ErrorShape::retryable(
                    ErrorCode::RateLimited,
                    "this computer has as many paired devices connected as it can hold; retry later",
                    Some(PAIRED_FULL_RETRY_MS),
                );
                return Box::pin(refuse(writer, &shared, full, CloseCode::Again, "too many devices")).await;
            }
            // Paired: the same TLS stream, now with the normal frame limit.
            let tls = connection::reunite(reader, writer).into_inner();
            let normal = connection::websocket_config(shared.config.max_frame_bytes);
            let ws = WebSocketStream::from_raw_socket(tls, Role::Server, Some(normal)).await;
            let mut side = NodeSide::new(ws, &shared, node_id, source, admission);
            tracing::info!(%source, node = %node_id, "paired node connected");
            let in_flight = link.hello.limits.max_in_flight;
            let paired = (link.hello.paired.clone(), link.hello.relay_url.clone());
            let hello = hello(&shared, paired, crate::acl::node_methods(), in_flight);
            if send_hello(&mut side, &shared, hello).await {
                let _connected = shared.counters.connected(source);
                Box::pin(relay::run(side, link, caps, shared.clone())).await
            }
        }
        Err(refusal) if refusal.code == ErrorCode::NotPaired => {
            tracing::debug!(%source, node = %node_id, "unpaired node connected; it may only ask to pair");
            let ws = connection::reunite(reader, writer);
            let mut side = NodeSide::new(ws, &shared, node_id, source, admission);
            let methods = pairing::METHODS.iter().map(|m| m.to_string()).collect();
            // The dialogue answers one request at a time.
            if send_hello(&mut side, &shared, hello(&shared, (None, None), methods, 1)).await {
                Box::pin(pairing::run(side, shared)).await
            }
        }
        Err(refusal) => {
            tracing::info!(%source, node = %node_id, code = %refusal.code, "node refused");
            Box::pin(refuse(writer, &shared, refusal, CloseCode::Again, "try again later")).await
        }
    }
}

/// Sends `hello-ok`; false when the node did not take it within the write-stall time.
async fn send_hello(side: &mut NodeSide, shared: &BridgeShared, hello: Frame) -> bool {
    matches!(tokio::time::timeout(shared.config.write_stall, side.writer.send(&hello)).await, Ok(Ok(())))
}

/// Sends `error` and closes, within the writer's bounded grace period.
async fn refuse(
    writer: FrameWriter<NodeStream>,
    shared: &BridgeShared,
    error: ErrorShape,
    close: CloseCode,
    why: &'static str,
) {
    let writer = WriterTask::spawn(writer, shared.config.outbound_queue);
    writer.outbound.send(Frame::Error(ErrorFrame { error }));
    writer.finish(Some((close, why))).await
}

/// Reads and checks `connect`: the frame, the protocol version and the length of every string in it.
async fn read_connect(reader: &mut FrameReader<NodeStream>) -> Result<ConnectParams, (ErrorShape, CloseCode)> {
    let policy = |e| (e, CloseCode::Policy);
    let connect = loop {
        match reader.next().await {
            Incoming::Heartbeat => continue,
            Incoming::Frame(Frame::Connect(connect)) => break connect,
            Incoming::Frame(_) => return Err(policy(ErrorShape::invalid_request("the first frame must be connect"))),
            Incoming::Invalid(e) => return Err(policy(e.error)),
            Incoming::TooLarge(e) => return Err((e, CloseCode::Size)),
            Incoming::Closed(_) => return Err(policy(ErrorShape::invalid_request("closed before connect"))),
        }
    };
    if negotiate_version(connect.min_protocol, connect.max_protocol).is_none() {
        return Err(policy(ErrorShape::new(
            ErrorCode::UnsupportedProtocol,
            format!(
                "node speaks protocol {}..={}; this bridge speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                connect.min_protocol, connect.max_protocol
            ),
        )));
    }
    connect.check_lengths().map_err(policy)?;
    Ok(connect)
}

/// The bridge's `hello-ok`; `paired` is what the gateway said of the node: its record and the relay URL.
fn hello(
    shared: &BridgeShared,
    (paired, relay_url): (Option<PairedNode>, Option<String>),
    methods: Vec<String>,
    max_in_flight: usize,
) -> Frame {
    let config = &shared.config;
    let max_frame_bytes = if paired.is_some() { config.max_frame_bytes } else { config.unpaired_max_frame_bytes };
    Frame::HelloOk(Box::new(HelloOk {
        protocol: PROTOCOL_VERSION,
        server: ServerInfo {
            name: "lanyard-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            connection_id: node_kit::client::random_id(),
        },
        methods,
        events: vec![node_kit::protocol::event::AGENT.to_string()],
        limits: Limits {
            max_frame_bytes,
            max_in_flight,
            handshake_timeout_ms: config.handshake_timeout.as_millis() as u64,
            keepalive_ms: config.keepalive_interval.as_millis() as u64,
        },
        paired,
        relay_url,
    }))
}
