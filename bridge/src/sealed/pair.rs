//! `POST /v1/pair/start` and `POST /v1/pair/confirm`: door 3 for a client with no key. Its SPAKE2 identity
//! is the ID derived from the name it chose ([`node_kit::seal::client_id`]) and the bridge's is the bridge
//! ID of the invite, so both sides bind the same two IDs without TLS. The pairing answer is sealed with the
//! new key: only the client that knew the PIN reads its token, and nobody on the way can change it.

use super::parse;
use crate::pairing;
use crate::shared::BridgeShared;
use crate::source::Source;
use node_kit::protocol::{ErrorCode, ErrorShape, PairPinResult};
use node_kit::seal::{self, Direction, PairConfirmBody, PairStartBody, Paired, SealKey, SealedBody};
use serde_json::Value;

pub(super) async fn start(shared: &BridgeShared, source: Source, body: &[u8]) -> Result<Value, ErrorShape> {
    let PairStartBody { client, pin } = parse(body)?;
    seal::check_client(&client)?;
    pairing::pin_start(shared, seal::client_id(&client), source, pin).await
}

pub(super) async fn confirm(shared: &BridgeShared, source: Source, body: &[u8]) -> Result<Value, ErrorShape> {
    let PairConfirmBody { client, confirmation } = parse(body)?;
    seal::check_client(&client)?;
    let node_id = seal::client_id(&client);
    let result = pairing::pin_confirm(shared, node_id, source, confirmation, true).await?;
    let unreadable = |what: &str| ErrorShape::new(ErrorCode::Internal, format!("the gateway's pairing answer {what}"));
    let result: PairPinResult = serde_json::from_value(result).map_err(|e| unreadable(&e.to_string()))?;
    let key = result.seal_key.as_deref().and_then(SealKey::from_base64).ok_or_else(|| unreadable("has no seal key"))?;
    let paired = Paired {
        token: result.relay.token,
        node_id,
        bridge_public_key: data_encoding::BASE64URL_NOPAD.encode(&shared.bridge_key),
        relay_url: result.relay.relay_url,
        scopes: result.resolution.scopes,
    };
    let sealed = SealedBody { counter: None, sealed: key.seal_json(Direction::ToClient, 0, 0, &paired) };
    Ok(serde_json::to_value(sealed).expect("answers serialise"))
}
