//! `lanyard nodes list | rename | revoke | policy`: the paired devices.

use super::display::{ago, describe_policy, policy_cell, scopes, table};
use super::explain;
use anyhow::Context;
use certs::KeyId;
use node_kit::Client;
use node_kit::protocol::{
    AppState, NodeListPayload, NodeSummary, PairPolicyParams, PairRenameParams, PairRenamed, PairRevokeParams,
    PairRevoked, PairedNode, PairedNodeList, PermissionMode, method,
};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Every paired device from the store (`pair.list`), marked connected when `node.list` has it: the
/// store knows names and scopes, only the live registry knows who is online.
pub(super) async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let (paired, live) = tokio::try_join!(
        client.request(method::PAIR_LIST, Value::Null),
        client.request(method::NODE_LIST, Value::Null)
    )?;
    let paired: PairedNodeList = serde_json::from_value(paired).context("the gateway sent an unreadable pair.list")?;
    let live: NodeListPayload = serde_json::from_value(live).context("the gateway sent an unreadable node.list")?;
    let connected: HashMap<String, NodeSummary> =
        live.nodes.into_iter().map(|node| (node.node_id.clone(), node)).collect();
    let live_node = |node_id: &KeyId| connected.get(&node_id.to_string());
    if json {
        let mut nodes = Vec::with_capacity(paired.nodes.len());
        for node in &paired.nodes {
            let mut entry = serde_json::to_value(node)?;
            entry["connected"] = json!(live_node(&node.node_id).is_some());
            if let Some(live) = live_node(&node.node_id) {
                entry["caps"] = json!(live.caps);
                entry["commands"] = json!(live.commands);
                entry["state"] = json!(live.state);
                entry["voice"] = json!(live.voice);
            }
            nodes.push(entry);
        }
        println!("{}", serde_json::to_string_pretty(&json!({ "nodes": nodes }))?);
        return Ok(());
    }
    if paired.nodes.is_empty() {
        println!("no paired devices; pair one with `lanyard up`: ask to pair from the device, then approve it");
        return Ok(());
    }
    let now = node_kit::protocol::now_ms();
    let rows: Vec<[String; 10]> = paired
        .nodes
        .iter()
        .map(|node| {
            let live = live_node(&node.node_id);
            let (caps, state, voice) = match live {
                Some(live) => (
                    if live.caps.is_empty() { "none".to_string() } else { live.caps.join(",") },
                    match live.state {
                        AppState::Foreground => "foreground",
                        AppState::Background => "background",
                    }
                    .to_string(),
                    match live.voice {
                        Some(true) => "on",
                        Some(false) => "off",
                        None => "unknown",
                    }
                    .to_string(),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            [
                node.node_id.to_string(),
                node.device.name.clone(),
                node.device.platform.clone(),
                scopes(&node.scopes),
                policy_cell(&node.policy),
                if live.is_some() { "now".to_string() } else { ago(node.last_seen_ms, now) },
                if live.is_some() { "yes" } else { "no" }.to_string(),
                caps,
                state,
                voice,
            ]
        })
        .collect();
    let header = ["ID", "NAME", "PLATFORM", "SCOPES", "POLICY", "LAST SEEN", "CONNECTED", "CAPS", "STATE", "VOICE"];
    println!("{}", table(header, &rows));
    Ok(())
}

pub(super) async fn rename(client: &Client, node: &str, name: String) -> anyhow::Result<()> {
    let node_id = find(client, node).await?.node_id;
    let params = serde_json::to_value(PairRenameParams { node_id, name: name.clone() })?;
    let payload = client.request(method::PAIR_RENAME, params).await.map_err(explain)?;
    // The gateway cleans names up (no control characters, at most 64 characters): show what it kept.
    let renamed: PairRenamed = serde_json::from_value(payload)?;
    println!("renamed {node_id} to \"{}\"", renamed.name);
    Ok(())
}

pub(super) async fn revoke(client: &Client, node: &str) -> anyhow::Result<()> {
    let node_id = find(client, node).await?.node_id;
    let params = serde_json::to_value(PairRevokeParams { node_id })?;
    let payload = client.request(method::PAIR_REVOKE, params).await.map_err(explain)?;
    let closed = serde_json::from_value::<PairRevoked>(payload)?.connections_closed;
    let plural = if closed == 1 { "" } else { "s" };
    println!(
        "revoked {node_id}: its key is forgotten and {closed} live connection{plural} closed; it must pair \
         again to come back"
    );
    Ok(())
}

/// What `lanyard nodes policy` changes; `None` keeps the current value.
pub(super) struct PolicyChange {
    pub mode: Option<PermissionMode>,
    pub allowed_tools: Option<Vec<String>>,
    pub denied_tools: Option<Vec<String>>,
}

/// Shows a device's policy, after changing it when `change` asks for something.
pub(super) async fn policy(client: &Client, node: &str, change: PolicyChange, json: bool) -> anyhow::Result<()> {
    let found = find(client, node).await?;
    let PolicyChange { mode, allowed_tools, denied_tools } = change;
    let unchanged = mode.is_none() && allowed_tools.is_none() && denied_tools.is_none();
    let node = if unchanged {
        found
    } else {
        let params = PairPolicyParams { node_id: found.node_id, mode, allowed_tools, denied_tools };
        let payload = client.request(method::PAIR_POLICY, serde_json::to_value(params)?).await.map_err(explain)?;
        serde_json::from_value::<PairedNode>(payload).context("the gateway sent an unreadable pair.policy answer")?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "nodeId": node.node_id, "policy": node.policy }))?);
        return Ok(());
    }
    let said = if unchanged { "runs its agent turns with" } else { "now runs its agent turns with" };
    println!("\"{}\" ({}) {said}:\n{}", node.device.name, node.node_id, describe_policy(&node.policy));
    Ok(())
}

/// The paired device `node` names: its full ID, a unique start of its ID (dashes and case do not matter,
/// at least [`MIN_PREFIX`] characters), or its name.
pub(crate) async fn find(client: &Client, node: &str) -> anyhow::Result<PairedNode> {
    let payload = client.request(method::PAIR_LIST, Value::Null).await?;
    let paired: PairedNodeList = serde_json::from_value(payload).context("the gateway sent an unreadable pair.list")?;
    pick(paired.nodes, node).map_err(anyhow::Error::msg)
}

/// The fewest ID characters taken as a prefix: shorter ones pick a device by accident too easily.
const MIN_PREFIX: usize = 4;

fn pick(nodes: Vec<PairedNode>, node: &str) -> Result<PairedNode, String> {
    if let Ok(id) = node.parse::<KeyId>() {
        return nodes
            .into_iter()
            .find(|n| n.node_id == id)
            .ok_or_else(|| format!("{id} is not paired; `lanyard nodes list` shows the paired devices and their IDs"));
    }
    let plain = |text: &str| text.chars().filter(|c| *c != '-').collect::<String>().to_ascii_uppercase();
    let typed = plain(node.trim());
    let mut matching: Vec<PairedNode> = nodes
        .into_iter()
        .filter(|n| {
            n.device.name == node || (typed.len() >= MIN_PREFIX && plain(&n.node_id.to_string()).starts_with(&typed))
        })
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(format!(
            "no paired device has the name {node:?} or an ID starting with it (give at least {MIN_PREFIX} \
             characters of an ID); `lanyard nodes list` shows them"
        )),
        n => Err(format!(
            "{node:?} could be any of {n} paired devices; give more of the ID: {}",
            matching.iter().map(|n| format!("{} ({})", n.node_id, n.device.name)).collect::<Vec<_>>().join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paired(seed: &str, name: &str) -> PairedNode {
        let id = KeyId::of_spki(seed.as_bytes());
        let record = json!({ "nodeId": id, "name": name, "platform": "ios", "scopes": ["chat"], "createdAtMs": 0, "lastSeenMs": 0 });
        serde_json::from_value(record).unwrap()
    }

    #[test]
    fn a_device_is_named_by_its_id_a_unique_start_of_it_or_its_name() {
        let nodes = vec![paired("a", "Kitchen tablet"), paired("b", "Phone"), paired("c", "Phone")];
        let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]].map(|n| n.node_id.to_string());
        let picked = |text: &str| pick(nodes.clone(), text).map(|n| n.node_id.to_string());
        assert_eq!(picked(&a), Ok(a.clone()));
        assert_eq!(picked(&a[..9].to_lowercase()), Ok(a.clone()), "a prefix, any case, with its dash");
        assert_eq!(picked(&a[..9].replace('-', "")), Ok(a.clone()), "a prefix without its dash");
        assert_eq!(picked("Kitchen tablet"), Ok(a.clone()));
        let ambiguous = picked("Phone").unwrap_err();
        assert!(ambiguous.contains("any of 2 paired devices") && ambiguous.contains(&b) && ambiguous.contains(&c));
        assert!(picked(&a[..3]).unwrap_err().contains("at least 4 characters"), "too short a prefix");
        assert!(picked("nobody").unwrap_err().contains("`lanyard nodes list`"));
        let gone = KeyId::of_spki(b"gone").to_string();
        assert!(picked(&gone).unwrap_err().contains("is not paired"));
    }
}
