//! `health`: is the gateway up, is claude installed, who is connected.

use super::Context;
use node_kit::protocol::{AgentHealth, ClientMode, ErrorShape, HealthPayload};
use serde_json::Value;

pub(crate) struct Health;

impl Health {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        let claude = state.agent.claude_path().ok();
        // A node learns that the agent is up, not who else is connected or which conversations exist.
        let owner_view = ctx.peer.mode != ClientMode::Node;
        let payload = HealthPayload {
            ok: true,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: state.started.elapsed().as_millis() as u64,
            connections: state.hub.len(),
            nodes: state.nodes.len(),
            agent: AgentHealth {
                available: claude.is_some(),
                claude_path: claude.filter(|_| owner_view).map(|p| p.display().to_string()),
                sessions: if owner_view { state.agent.sessions() } else { Vec::new() },
            },
            presence: if owner_view { state.presence.list() } else { Vec::new() },
            requests: if owner_view { state.requests.by_method() } else { Default::default() },
            refused_connections: if owner_view { state.refusals.since_start() } else { Default::default() },
            limits: state.config.limits.clone().filter(|_| owner_view),
            tunnel: owner_view.then(|| state.tunnel.health(&state.paired)),
        };
        Ok(serde_json::to_value(payload).expect("health serialises"))
    }
}
