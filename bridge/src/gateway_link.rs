//! The bridge's connections to the gateway, authenticated with the bridge token: loopback WebSockets, or
//! in-process links when the gateway runs in this process (`lanyard up`), with the same frames and checks.
//!
//! A paired node gets a link of its own, opened as `mode: node` with the node's key ID as its identity:
//! the gateway takes node IDs from nobody else. Frames on it are relayed as they are. Pairing calls go
//! over a `mode: bridge` client; a sealed client's command over a `mode: node` client of its own.

use crate::config::BridgeConfig;
use certs::KeyId;
use node_kit::client::{Client, ClientError, exchange_hello};
use node_kit::connection::{self, FrameReader, FrameWriter};
use node_kit::link::GatewayConnector;
use node_kit::protocol::{
    Auth, ClientInfo, ClientMode, ConnectParams, ErrorCode, ErrorShape, HelloOk, LinkPath, NodeAdvert, PROTOCOL_VERSION,
};
use tokio::net::TcpStream;
use tokio_tungstenite::MaybeTlsStream;

/// A WebSocket link's transport; an in-process link's halves have the same type.
pub(crate) type LinkStream = MaybeTlsStream<TcpStream>;

pub(crate) struct NodeLink {
    pub reader: FrameReader<LinkStream>,
    pub writer: FrameWriter<LinkStream>,
    pub hello: HelloOk,
}

/// How long to tell nodes to wait when the gateway is down.
const GATEWAY_RETRY_MS: u64 = 1000;

pub(crate) fn unavailable(why: impl std::fmt::Display) -> ErrorShape {
    ErrorShape::retryable(
        ErrorCode::GatewayUnavailable,
        format!("the bridge cannot reach the gateway on this computer ({why}); retry shortly"),
        Some(GATEWAY_RETRY_MS),
    )
}

/// The gateway's answer to a call as the node should see it.
pub(crate) fn refusal(e: ClientError) -> ErrorShape {
    match e {
        ClientError::Remote(shape) => shape,
        other => unavailable(other),
    }
}

/// Opens a link for the node `node_id`. The gateway's refusal (`NOT_PAIRED` for an unknown key) comes
/// back as is; a gateway that cannot be reached is `GATEWAY_UNAVAILABLE`.
pub(crate) async fn open_node_link(
    config: &BridgeConfig,
    (node_id, path): (KeyId, LinkPath),
    client: ClientInfo,
    advert: Option<NodeAdvert>,
) -> Result<NodeLink, ErrorShape> {
    let (mut reader, mut writer) =
        tokio::time::timeout(config.handshake_timeout, open(config)).await.map_err(|_| unavailable("timed out"))??;
    let params = ConnectParams {
        min_protocol: PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        client: ClientInfo { instance_id: node_id.to_string(), mode: ClientMode::Node, path: Some(path), ..client },
        auth: Some(Auth { token: config.gateway_token.clone() }),
        node: advert,
    };
    match exchange_hello(&mut reader, &mut writer, &params, config.handshake_timeout).await {
        Ok(hello) => Ok(NodeLink { reader, writer, hello }),
        Err(ClientError::Handshake(refusal)) => Err(refusal),
        Err(e) => Err(unavailable(e)),
    }
}

/// A link's two halves, before its `connect`.
async fn open(config: &BridgeConfig) -> Result<(FrameReader<LinkStream>, FrameWriter<LinkStream>), ErrorShape> {
    match &config.gateway {
        GatewayConnector::WebSocket(url) => {
            let ws_config = connection::websocket_config(config.max_frame_bytes);
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true)
                .await
                .map_err(unavailable)?;
            Ok(connection::split(ws))
        }
        GatewayConnector::InProcess(connector) => {
            let end = connector.connect().await.map_err(unavailable)?;
            Ok(connection::split_link(end, config.max_frame_bytes))
        }
    }
}

/// A client for the bridge's own calls (pairing).
pub(crate) async fn bridge_client(config: &BridgeConfig) -> Result<Client, ErrorShape> {
    client(config, ClientMode::Bridge, "bridge".into()).await
}

/// A client speaking for the sealed client `node_id` (it has no socket of its own to relay).
pub(crate) async fn node_client(config: &BridgeConfig, node_id: KeyId) -> Result<Client, ErrorShape> {
    client(config, ClientMode::Node, node_id.to_string()).await
}

async fn client(config: &BridgeConfig, mode: ClientMode, instance_id: String) -> Result<Client, ErrorShape> {
    Client::to_gateway(&config.gateway)
        .token(config.gateway_token.clone())
        .mode(mode)
        .instance_id(instance_id)
        .handshake_timeout(config.handshake_timeout)
        .connect()
        .await
        .map_err(|e| match e {
            ClientError::Handshake(refusal) => refusal,
            other => unavailable(other),
        })
}
