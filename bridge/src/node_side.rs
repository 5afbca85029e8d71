//! The node's end of one connection once `connect` is read: what the pairing dialogue and the relay both
//! drive. Its own module so that the session code, which picks one of the two, and the two themselves all
//! depend on it, not on each other.

use crate::connections::Admission;
use crate::shared::BridgeShared;
use crate::source::Source;
use certs::KeyId;
use node_kit::connection::{self, FrameReader, FrameWriter};
use node_kit::outbound::Keepalive;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;

/// The bytes under a node's TLS session: a TCP connection on the LAN, a relayed stream off it. Everything
/// from TLS up is the same code for both.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

pub(crate) type NodeStream = TlsStream<Box<dyn ByteStream>>;

/// The node's end of a connection, after `connect`: frames in and out, a keepalive, and its place in the
/// connection table.
pub(crate) struct NodeSide {
    pub reader: FrameReader<NodeStream>,
    pub writer: FrameWriter<NodeStream>,
    pub keepalive: Keepalive,
    pub node_id: KeyId,
    pub source: Source,
    pub admission: Admission,
}

impl NodeSide {
    pub(crate) fn new(
        ws: WebSocketStream<NodeStream>,
        shared: &BridgeShared,
        node_id: KeyId,
        source: Source,
        admission: Admission,
    ) -> NodeSide {
        let (reader, writer) = connection::split(ws);
        NodeSide {
            reader,
            writer,
            keepalive: Keepalive::new(shared.config.keepalive_interval),
            node_id,
            source,
            admission,
        }
    }
}
