//! `pair.pin` (bridge only): door 3's first step. The bridge passes the node's SPAKE2 message with the
//! node key and the bridge key it saw in TLS, and the routing token the relay admitted the stream with.
//! Every call spends one of the code's tries, whatever its outcome.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, PairPinSubmit, method};
use serde_json::Value;

pub(crate) struct PairPin {
    submit: PairPinSubmit,
}

impl PairPin {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PairPin { submit: parse_params(method::PAIR_PIN, params)? })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let codes = &ctx.state.remote_codes;
        let answered = codes.answer(&self.submit);
        if !codes.is_live() {
            // That try burnt the code (or it was gone): the relay forgets its routing token, once the
            // answer is out.
            ctx.state.announce_tunnel_after(codes.linger());
        }
        let challenge = answered.inspect_err(|e| {
            tracing::info!(node = ?self.submit.node_id, code = %e.code, "remote pairing refused");
        })?;
        Ok(serde_json::to_value(challenge).expect("payloads serialise"))
    }
}
