//! `seal.open` (bridge only): a `/v1/chat` body of the sealed HTTP contract, opened once. The routing token
//! the relay admitted the request with names the paired client; its key opens the body and its counter
//! must be new. The bridge gets the plaintext and the key to seal the answer with.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorCode, ErrorShape, SealOpenParams, SealOpened, method};
use serde_json::Value;

pub(crate) struct SealOpen {
    params: SealOpenParams,
}

impl SealOpen {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(SealOpen { params: parse_params(method::SEAL_OPEN, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let SealOpenParams { routing_hash, counter, sealed } = self.params;
        let node = ctx.state.paired.by_routing_hash(&routing_hash).ok_or_else(|| {
            ErrorShape::new(ErrorCode::Unauthorized, "this token belongs to no paired client (revoked?); pair again")
        })?;
        let (plaintext, key) = ctx.state.sealed.open(&node.node_id, counter, &sealed).inspect_err(|e| {
            tracing::info!(node = %node.node_id, code = %e.code, "sealed body refused");
        })?;
        let plaintext = String::from_utf8(plaintext)
            .map_err(|_| ErrorShape::invalid_request("the sealed envelope is not UTF-8 JSON"))?;
        ctx.state.paired.touch(&node.node_id);
        let opened = SealOpened { node_id: node.node_id, plaintext, seal_key: key.to_base64().to_string() };
        Ok(serde_json::to_value(opened).expect("payloads serialise"))
    }
}
