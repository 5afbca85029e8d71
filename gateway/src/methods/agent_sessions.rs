//! `agent.sessions`: the caller's conversations, latest activity first. A node sees only its own, under
//! the keys it chose; an operator sees every one under the gateway's keys.

use super::Context;
use node_kit::protocol::{ErrorShape, SessionEntry, SessionList};
use serde_json::Value;

pub(crate) struct AgentSessions;

impl AgentSessions {
    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let state = &ctx.state;
        let mut sessions: Vec<SessionEntry> = state
            .agent
            .book
            .list(|key| ctx.visible_session(key))
            .into_iter()
            .map(|(key, shown, entry)| SessionEntry {
                session_key: shown,
                title: entry.title,
                created_at_ms: entry.created_at_ms,
                last_activity_ms: entry.last_activity_ms,
                turns: entry.turns,
                running: state.runs.busy(&key),
                last_run_id: entry.last_run_id,
            })
            .collect();
        sessions.sort_by(|a, b| b.last_activity_ms.cmp(&a.last_activity_ms).then(a.session_key.cmp(&b.session_key)));
        Ok(serde_json::to_value(SessionList { sessions }).expect("payloads serialise"))
    }
}
