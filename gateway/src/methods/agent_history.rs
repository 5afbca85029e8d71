//! `agent.history`: one conversation so far (prompts, the model's text, tool calls in summary), a page
//! at a time from the latest back. A node reads only its own conversations.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorCode, ErrorShape, HistoryPage, HistoryParams, check_id, method};
use serde_json::Value;

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

pub(crate) struct AgentHistory {
    params: HistoryParams,
}

impl AgentHistory {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: HistoryParams = parse_params(method::AGENT_HISTORY, params)?;
        check_id("sessionKey", &params.session_key)?;
        if params.limit.is_some_and(|l| l == 0 || l > MAX_LIMIT) {
            return Err(ErrorShape::invalid_request(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        Ok(AgentHistory { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let p = self.params;
        let limit = p.limit.unwrap_or(DEFAULT_LIMIT) as usize;
        let key = ctx.session_key(&p.session_key);
        let (entries, total) = ctx
            .state
            .agent
            .book
            .history(&key, p.before, limit)
            .ok_or_else(|| ErrorShape::new(ErrorCode::NotFound, format!("no conversation {:?}", p.session_key)))?;
        let next_before = entries.first().map(|e| e.index).filter(|first| *first > 0);
        let page = HistoryPage { session_key: p.session_key, entries, total, next_before };
        Ok(serde_json::to_value(page).expect("payloads serialise"))
    }
}
