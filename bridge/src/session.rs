//! One node connection, from TCP to its end: TLS (the node's key is the credential), WebSocket, the
//! node's `connect`, then either the pairing dialogue (unknown key) or the relay (paired key).

use crate::server::BridgeShared;
use crate::{gateway_link, pairing, relay};
use certs::KeyId;
use node_kit::connection::{self, FrameReader, Incoming};
use node_kit::outbound::{Keepalive, Outbound, WriterTask};
use node_kit::protocol::{
    ConnectParams, ErrorCode, ErrorFrame, ErrorShape, Frame, HelloOk, Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    PairedNode, ServerInfo, negotiate_version,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

pub(crate) type NodeStream = TlsStream<TcpStream>;

/// The node's end of a connection, after `connect`: frames in, a bounded queue out, a keepalive.
pub(crate) struct NodeSide {
    pub reader: FrameReader<NodeStream>,
    pub outbound: Outbound,
    pub keepalive: Keepalive,
    pub node_id: KeyId,
    pub addr: SocketAddr,
    writer: WriterTask,
}

impl NodeSide {
    /// Closes gracefully (queued frames first) when `reason` is given, else drops the connection now.
    pub async fn finish(self, reason: Option<(CloseCode, &'static str)>) {
        self.writer.finish(reason).await
    }

    pub fn send_error(&self, error: ErrorShape) {
        self.outbound.send(Frame::Error(ErrorFrame { error }));
    }
}

pub(crate) async fn serve(tcp: TcpStream, addr: SocketAddr, shared: Arc<BridgeShared>, shutdown: CancellationToken) {
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let tls = match tokio::time::timeout_at(deadline, shared.tls.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%addr, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%addr, "TLS handshake timed out");
            return;
        }
    };
    let Some(node_id) = certs::peer_key(tls.get_ref().1) else {
        return;
    };
    let ws_config = connection::websocket_config(shared.config.max_frame_bytes);
    let ws = match tokio::time::timeout_at(deadline, tokio_tungstenite::accept_async_with_config(tls, Some(ws_config)))
        .await
    {
        Ok(Ok(ws)) => ws,
        _ => {
            tracing::debug!(%addr, node = %node_id, "websocket upgrade failed");
            return;
        }
    };
    let (mut reader, writer) = connection::split(ws);
    let writer = WriterTask::spawn(writer, shared.config.outbound_queue);
    let outbound = writer.outbound.clone();
    let connect = tokio::time::timeout_at(deadline, read_connect(&mut reader)).await.unwrap_or_else(|_| {
        Err(ErrorShape::new(
            ErrorCode::Timeout,
            format!("no connect frame within {} ms", shared.config.handshake_timeout.as_millis()),
        ))
    });
    let side = NodeSide {
        reader,
        outbound,
        keepalive: Keepalive::new(shared.config.keepalive_interval),
        node_id,
        addr,
        writer,
    };
    let connect = match connect {
        Ok(connect) => connect,
        Err(error) => {
            tracing::info!(%addr, node = %node_id, code = %error.code, "connect refused");
            side.send_error(error);
            return side.finish(Some((CloseCode::Policy, "connect refused"))).await;
        }
    };
    let ConnectParams { client, node, .. } = connect;
    let caps = node.as_ref().map(|advert| advert.caps.clone()).unwrap_or_default();
    match gateway_link::open_node_link(&shared.config, node_id, client, node).await {
        Ok(link) => {
            tracing::info!(%addr, node = %node_id, "paired node connected");
            let in_flight = link.hello.limits.max_in_flight;
            side.outbound.send(hello(&shared, link.hello.paired.clone(), crate::acl::node_methods(), in_flight));
            relay::run(side, link, caps, shared, shutdown).await
        }
        Err(refusal) if refusal.code == ErrorCode::NotPaired => {
            tracing::info!(%addr, node = %node_id, "unpaired node connected; it may only ask to pair");
            let methods = pairing::METHODS.iter().map(|m| m.to_string()).collect();
            // The dialogue answers one request at a time.
            side.outbound.send(hello(&shared, None, methods, 1));
            pairing::run(side, shared, shutdown).await
        }
        Err(refusal) => {
            tracing::info!(%addr, node = %node_id, code = %refusal.code, "node refused");
            side.send_error(refusal);
            side.finish(Some((CloseCode::Again, "try again later"))).await
        }
    }
}

async fn read_connect(reader: &mut FrameReader<NodeStream>) -> Result<ConnectParams, ErrorShape> {
    let connect = loop {
        match reader.next().await {
            Incoming::Heartbeat => continue,
            Incoming::Frame(Frame::Connect(connect)) => break connect,
            Incoming::Frame(_) => return Err(ErrorShape::invalid_request("the first frame must be connect")),
            Incoming::Invalid(e) => return Err(e.error),
            Incoming::TooLarge(e) => return Err(e),
            Incoming::Closed(_) => return Err(ErrorShape::invalid_request("closed before connect")),
        }
    };
    if negotiate_version(connect.min_protocol, connect.max_protocol).is_none() {
        return Err(ErrorShape::new(
            ErrorCode::UnsupportedProtocol,
            format!(
                "node speaks protocol {}..={}; this bridge speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                connect.min_protocol, connect.max_protocol
            ),
        ));
    }
    Ok(connect)
}

fn hello(shared: &BridgeShared, paired: Option<PairedNode>, methods: Vec<String>, max_in_flight: usize) -> Frame {
    let config = &shared.config;
    Frame::HelloOk(HelloOk {
        protocol: PROTOCOL_VERSION,
        server: ServerInfo {
            name: "lanyard-bridge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            connection_id: node_kit::client::random_id(),
        },
        methods,
        events: vec![node_kit::protocol::event::AGENT.to_string()],
        limits: Limits {
            max_frame_bytes: config.max_frame_bytes,
            max_in_flight,
            handshake_timeout_ms: config.handshake_timeout.as_millis() as u64,
            keepalive_ms: config.keepalive_interval.as_millis() as u64,
        },
        paired,
    })
}
