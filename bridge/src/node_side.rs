//! The node's end of one connection once `connect` is read: what the pairing dialogue and the relay both
//! drive. Its own module so that the session code, which picks one of the two, and the two themselves all
//! depend on it, not on each other.

use crate::connections::Admission;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::connection::{self, FrameReader, FrameWriter};
use node_kit::outbound::Keepalive;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;

pub(crate) type NodeStream = TlsStream<TcpStream>;

/// The node's end of a connection, after `connect`: frames in and out, a keepalive, and its place in the
/// connection table.
pub(crate) struct NodeSide {
    pub reader: FrameReader<NodeStream>,
    pub writer: FrameWriter<NodeStream>,
    pub keepalive: Keepalive,
    pub node_id: KeyId,
    pub addr: SocketAddr,
    pub admission: Admission,
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
        NodeSide {
            reader,
            writer,
            keepalive: Keepalive::new(shared.config.keepalive_interval),
            node_id,
            addr,
            admission,
        }
    }
}
