//! `health`: is the gateway up, is claude installed, who is connected.

use super::Context;
use node_kit::protocol::{AgentHealth, ErrorShape, HealthPayload};
use serde_json::Value;

pub(crate) struct Health;

impl Health {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        let claude = state.agent.claude_path().ok();
        let payload = HealthPayload {
            ok: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: state.started.elapsed().as_millis() as u64,
            connections: state.hub.len(),
            nodes: state.nodes.len(),
            agent: AgentHealth {
                available: claude.is_some(),
                claude_path: claude.map(|p| p.display().to_string()),
                sessions: state.agent.sessions(),
            },
            presence: state.presence.list(),
            requests: state.requests_by_method(),
        };
        Ok(serde_json::to_value(payload).expect("health serialises"))
    }
}
