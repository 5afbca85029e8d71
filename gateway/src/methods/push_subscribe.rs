//! `push.subscribe` (a paired device): keeps the device's browser push subscription, replacing any
//! earlier one. The endpoint must be `https` on a public address: a paired device must not be able to
//! make the computer POST into its own network.

use super::{Context, parse_params};
use crate::push::{ResolveError, Subscription};
use node_kit::protocol::{ErrorShape, PushSubscribeParams, method};
use serde_json::{Value, json};

pub(crate) struct PushSubscribe {
    params: PushSubscribeParams,
}

impl PushSubscribe {
    pub(crate) fn parse(params: Value) -> Result<Self, ErrorShape> {
        Ok(PushSubscribe { params: parse_params(method::PUSH_SUBSCRIBE, params)? })
    }

    pub(crate) async fn apply(self, ctx: &Context) -> Result<Value, ErrorShape> {
        let node = ctx.node_id()?;
        let push = &ctx.state.push;
        let rule = push.rule();
        let url = rule.check_url(&self.params.endpoint)?;
        // A name is checked again at every push; here it is only to say at once what would never work.
        // One that does not resolve now is taken: the computer may be offline.
        if let Some(url::Host::Domain(host)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            if let Err(ResolveError::NotPublic(ip)) = rule.resolve(host, port).await {
                return Err(crate::push::Refusal::NotPublic.into_error(&format!("{host} resolves to {ip}")));
            }
        }
        let subscription = Subscription::new(self.params.endpoint, self.params.keys)?;
        push.subscribe(node, subscription)?;
        // A revoke that ran while this call was under way must not leave the subscription behind.
        if ctx.state.paired.get(&node).is_none() {
            push.forget(&node)?;
            return Err(super::not_paired(&node));
        }
        tracing::info!(node = %node, service = url.host_str().unwrap_or_default(), "push subscription kept");
        Ok(json!({}))
    }
}
