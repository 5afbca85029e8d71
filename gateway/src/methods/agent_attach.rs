//! `agent.attach`: follows a run again after a lost link, or from another device. Answered like `agent`:
//! an ack saying what the replay holds (and the prompts still waiting), the events after `afterSeq` in
//! order, live events, then the run's outcome as the final answer.

use super::{Context, parse_params};
use node_kit::protocol::{AttachParams, ErrorShape, check_id, method};
use serde_json::Value;

pub(crate) struct AgentAttach {
    params: AttachParams,
}

impl AgentAttach {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: AttachParams = parse_params(method::AGENT_ATTACH, params)?;
        match (&params.run_id, &params.session_key) {
            (Some(run_id), None) => check_id("runId", run_id)?,
            (None, Some(key)) => check_id("sessionKey", key)?,
            _ => return Err(ErrorShape::invalid_request("agent.attach takes either runId or sessionKey")),
        }
        Ok(AgentAttach { params })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let caller = ctx.caller();
        let run = match (&self.params.run_id, &self.params.session_key) {
            (Some(run_id), _) => ctx.state.runs.get(&caller, run_id)?,
            (None, Some(key)) => ctx.state.runs.latest(&caller, &ctx.session_key(key))?,
            (None, None) => unreachable!("checked by parse"),
        };
        tracing::info!(conn = ctx.peer.conn_id, run_id = %run.run_id, after_seq = self.params.after_seq, "attached to a run");
        run.attach(ctx.peer.conn_id, &ctx.outbound, &ctx.request_id, self.params.after_seq);
        run.outcome().await
    }
}
