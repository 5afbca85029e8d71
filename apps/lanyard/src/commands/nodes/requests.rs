//! `lanyard nodes pending | approve | reject`: the pairing requests waiting for the owner.

use super::display::{describe_request, scopes};
use super::explain;
use anyhow::Context;
use node_kit::Client;
use node_kit::protocol::{PairDecisionParams, PairResolution, PairedNode, PendingPairingList, Scope, method};
use serde_json::Value;

pub(super) async fn pending(client: &Client, json: bool) -> anyhow::Result<()> {
    let payload = client.request(method::PAIR_PENDING, Value::Null).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&payload)?);
        return Ok(());
    }
    let list: PendingPairingList =
        serde_json::from_value(payload).context("the gateway sent an unreadable pair.pending")?;
    if list.requests.is_empty() {
        println!("no pairing requests waiting");
        return Ok(());
    }
    let now = node_kit::protocol::now_ms();
    for request in &list.requests {
        println!("{}\n", describe_request(request, now));
    }
    println!("Check that the device shows the same code, then `lanyard nodes approve REQUEST` (or `reject`).");
    Ok(())
}

/// The owner's answer to a pairing request.
pub(crate) enum Verdict {
    /// Pair the device; `Some` narrows the scopes to these, `None` grants everything it asked for.
    Approve(Option<Vec<Scope>>),
    Reject,
}

/// Sends the owner's answer and says, in words, what came of it. `lanyard nodes approve|reject` and
/// `lanyard up`'s prompt both answer through here.
pub(crate) async fn decide(client: &Client, request_id: &str, verdict: Verdict) -> anyhow::Result<String> {
    let (method, granted) = match &verdict {
        Verdict::Approve(granted) => (method::PAIR_APPROVE, granted.clone()),
        Verdict::Reject => (method::PAIR_REJECT, None),
    };
    let params = serde_json::to_value(PairDecisionParams { request_id: request_id.to_string(), scopes: granted })?;
    let payload = client.request(method, params).await.map_err(explain)?;
    let unreadable = || format!("the gateway sent an unreadable {method} answer");
    match verdict {
        Verdict::Approve(_) => {
            let node: PairedNode = serde_json::from_value(payload).with_context(unreadable)?;
            Ok(format!(
                "approved: \"{}\" is paired as {} with scopes {}",
                node.device.name,
                node.node_id,
                scopes(&node.scopes)
            ))
        }
        Verdict::Reject => {
            let resolution: PairResolution = serde_json::from_value(payload).with_context(unreadable)?;
            Ok(format!("rejected: device {} was told no and nothing about it was kept", resolution.node_id))
        }
    }
}
