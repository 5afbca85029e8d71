//! The node's end of one connection once `connect` is read: what the pairing dialogue and the relay both
//! drive. Its own module so that the session code, which picks one of the two, and the two themselves all
//! depend on it, not on each other.

use crate::connections::{Admission, Ended};
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::connection::{self, FrameReader};
use node_kit::outbound::{Keepalive, Outbound, WriterTask};
use node_kit::protocol::{ErrorFrame, ErrorShape, Frame};
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub(crate) type NodeStream = TlsStream<TcpStream>;

/// The node's end of a connection, after `connect`: frames in, a bounded queue out, a keepalive, and its
/// place in the connection table.
pub(crate) struct NodeSide {
    pub reader: FrameReader<NodeStream>,
    pub outbound: Outbound,
    pub keepalive: Keepalive,
    pub node_id: KeyId,
    pub addr: SocketAddr,
    pub admission: Admission,
    writer: WriterTask,
}

impl NodeSide {
    pub(crate) fn new(
        ws: WebSocketStream<NodeStream>,
        shared: &BridgeShared,
        node_id: KeyId,
        addr: SocketAddr,
        admission: Admission,
    ) -> NodeSide {
        let (reader, writer) = connection::split(ws);
        let writer = WriterTask::spawn(writer, shared.config.outbound_queue);
        NodeSide {
            reader,
            outbound: writer.outbound.clone(),
            keepalive: Keepalive::new(shared.config.keepalive_interval),
            node_id,
            addr,
            admission,
            writer,
        }
    }

    /// Closes gracefully (queued frames first) when `reason` is given, else drops the connection now.
    pub async fn finish(self, reason: Option<(CloseCode, &'static str)>) {
        self.writer.finish(reason).await
    }

    pub fn send_error(&self, error: ErrorShape) {
        self.outbound.send(Frame::Error(ErrorFrame { error }));
    }

    /// Why the connection table or the bridge ended this connection, as a close frame.
    pub fn stop_reason(&self) -> (CloseCode, &'static str) {
        match self.admission.ended() {
            Some(Ended::Replaced) => (CloseCode::Policy, Ended::Replaced.reason()),
            Some(Ended::Evicted) => (CloseCode::Again, Ended::Evicted.reason()),
            None => (CloseCode::Away, "the bridge is shutting down"),
        }
    }
}
