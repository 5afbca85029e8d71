//! Every command answered with one value ([`node_kit::seal::command::UNARY`]): the node protocol's method
//! of the command's name, called as the paired client through the checks of a TLS node's call, with the
//! payload as its params; its result is the answer as it is. A new such method is a new name in that
//! list, never code here.

use super::caller::Caller;
use super::reply::SealedReply;
use crate::gateway_link;
use crate::shared::BridgeShared;
use certs::KeyId;
use serde_json::Value;

pub(super) async fn run(shared: &BridgeShared, node_id: KeyId, method: &str, payload: Value, reply: SealedReply) {
    let answered = async {
        let caller = Caller::open(shared, node_id).await?;
        caller.admit(shared, method, &payload)?;
        caller.gateway().request(method, payload).await.map_err(gateway_link::refusal)
    };
    match answered.await {
        Ok(result) => reply.value(&result).await,
        Err(e) => reply.refusal(&e).await,
    }
}
