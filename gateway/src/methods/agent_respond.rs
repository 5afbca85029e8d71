//! `agent.respond`: answers a prompt of a run (a tool permission, a question, a plan). Only the run's
//! node or an operator may; the first valid answer wins and a later one gets `PROMPT_CLOSED`.

use super::{Context, parse_params};
use node_kit::protocol::{ErrorShape, RespondParams, check_id, method};
use serde_json::Value;

pub(crate) struct AgentRespond {
    params: RespondParams,
}

impl AgentRespond {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: RespondParams = parse_params(method::AGENT_RESPOND, params)?;
        check_id("runId", &params.run_id)?;
        check_id("requestId", &params.request_id)?;
        Ok(AgentRespond { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let caller = ctx.caller();
        let run = ctx.state.runs.get(&caller, &self.params.run_id)?;
        let answered = run.respond(&caller, &self.params)?;
        Ok(serde_json::to_value(answered).expect("payloads serialise"))
    }
}
