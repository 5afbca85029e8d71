//! `node.event`: a node publishes an event; every operator receives it as a `node.event` event.

use super::{Context, parse_params};
use node_kit::protocol::{
    ErrorShape, NodeEventNotice, NodeEventParams, VOICE_EVENT, VoiceAvailability, check_id, event, method,
};
use serde_json::{Value, json};

pub(crate) struct NodeEvent {
    params: NodeEventParams,
}

impl NodeEvent {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        let params: NodeEventParams = parse_params(method::NODE_EVENT, params)?;
        check_id("event", &params.event)?;
        Ok(NodeEvent { params })
    }

    pub(crate) fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        if self.params.event == VOICE_EVENT
            && let Ok(voice) = serde_json::from_value::<VoiceAvailability>(self.params.payload.clone())
        {
            ctx.state.nodes.update(&ctx.peer.instance_id, |node| node.voice = Some(voice.available));
        }
        let notice = NodeEventNotice {
            node_id: ctx.peer.instance_id.clone(),
            event: self.params.event,
            payload: self.params.payload,
        };
        ctx.state.hub.broadcast(event::NODE_EVENT, &notice);
        Ok(json!({ "ok": true }))
    }
}
