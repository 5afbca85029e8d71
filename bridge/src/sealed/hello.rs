//! `hello`: who the computer is, who this client is to it, its scopes and the commands the computer
//! knows. The app calls it after pairing and as a cheap probe of the whole way (relay, bridge, gateway):
//! it costs a link to the gateway, so it counts against the client's rate limit like any call.

use super::caller::Caller;
use super::reply::SealedReply;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::protocol::ErrorShape;
use node_kit::seal::{Named, SealedHello, command};
use serde_json::Value;

pub(super) async fn run(shared: &BridgeShared, node_id: KeyId, payload: Value, reply: SealedReply) {
    match hello(shared, node_id, payload).await {
        Ok(hello) => reply.value(&hello).await,
        Err(e) => reply.refusal(&e).await,
    }
}

async fn hello(shared: &BridgeShared, node_id: KeyId, payload: Value) -> Result<SealedHello, ErrorShape> {
    if !payload.as_object().is_some_and(|fields| fields.is_empty()) {
        return Err(ErrorShape::invalid_request("hello takes the empty payload {}"));
    }
    shared.limiter.request(&node_id)?;
    let caller = Caller::open(shared, node_id).await?;
    let paired = caller.paired()?;
    Ok(SealedHello {
        computer: Named { id: shared.bridge_id, name: shared.config.mdns.display_name() },
        device: Named { id: node_id, name: paired.device.name.clone() },
        scopes: paired.scopes.clone(),
        commands: command::all(),
    })
}
