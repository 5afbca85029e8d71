//! `POST /v1/pair/start` and `POST /v1/pair/confirm`: door 3 for a client with no key. Its SPAKE2 identity
//! is the fixed [`node_kit::pin::SEALED_CLIENT_IDENTITY`] and the bridge's is the bridge ID of the invite,
//! so both sides bind the same two identities without TLS; the client's ID is made by the exchange (the
//! gateway derives it from the shared key), so no name it sends is its identity. The pairing answer is
//! sealed with the new key: only the client that knew the PIN reads its token and ID, and nobody on the
//! way can change them.

use super::parse;
use crate::pairing;
use crate::shared::BridgeShared;
use crate::source::Source;
use node_kit::protocol::{ErrorCode, ErrorShape, PairPinConfirmParams, PairPinResult};
use node_kit::seal::{Direction, Paired, SealKey, SealedBody};
use serde_json::Value;

pub(super) async fn start(shared: &BridgeShared, source: Source, body: &[u8]) -> Result<Value, ErrorShape> {
    pairing::pin_start(shared, None, source, parse(body)?).await
}

pub(super) async fn confirm(shared: &BridgeShared, source: Source, body: &[u8]) -> Result<Value, ErrorShape> {
    let PairPinConfirmParams { confirmation } = parse(body)?;
    let result = pairing::pin_confirm(shared, None, source, confirmation).await?;
    let unreadable = |what: &str| ErrorShape::new(ErrorCode::Internal, format!("the gateway's pairing answer {what}"));
    let result: PairPinResult = serde_json::from_value(result).map_err(|e| unreadable(&e.to_string()))?;
    let key = result.seal_key.as_deref().and_then(SealKey::from_base64).ok_or_else(|| unreadable("has no seal key"))?;
    let paired = Paired {
        token: result.relay.token,
        node_id: result.resolution.node_id,
        bridge_public_key: data_encoding::BASE64URL_NOPAD.encode(&shared.bridge_key),
        relay_url: result.relay.relay_url,
        scopes: result.resolution.scopes,
        computer_name: shared.config.mdns.display_name(),
    };
    let sealed = SealedBody { counter: None, sealed: key.seal_json(Direction::ToClient, 0, 0, &paired) };
    Ok(serde_json::to_value(sealed).expect("answers serialise"))
}
