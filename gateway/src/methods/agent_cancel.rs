//! `agent.cancel`: stops a running turn with claude's interrupt (the process stays for the next turn) or
//! keeps a queued one from running. The run's own `agent` request then answers with status `cancelled`.

use super::{Context, parse_params};
use node_kit::protocol::{CancelParams, CancelResult, ErrorShape, check_id, method};
use serde_json::Value;

pub(crate) struct AgentCancel {
    params: CancelParams,
}

impl AgentCancel {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: CancelParams = parse_params(method::AGENT_CANCEL, params)?;
        check_id("runId", &params.run_id)?;
        Ok(AgentCancel { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let run = ctx.state.runs.get(&ctx.caller(), &self.params.run_id)?;
        let was = run.phase();
        run.cancel_token().cancel();
        tracing::info!(conn = ctx.peer.conn_id, run_id = %run.run_id, ?was, "agent run cancelled");
        Ok(serde_json::to_value(CancelResult { run_id: run.run_id.clone(), was }).expect("payloads serialise"))
    }
}
