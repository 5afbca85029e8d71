//! `agent.pending`: the approvals inbox, every prompt waiting for an answer that the caller may give (a
//! node: its own conversations'; an operator: all).

use super::Context;
use node_kit::protocol::{ErrorShape, PendingPrompts};
use serde_json::Value;

pub(crate) struct AgentPending;

impl AgentPending {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let prompts = ctx.state.runs.pending(&ctx.caller());
        Ok(serde_json::to_value(PendingPrompts { prompts }).expect("payloads serialise"))
    }
}
