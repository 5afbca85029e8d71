//! `lanyard nodes list | rename | revoke | policy`: the paired devices.

use super::display::{ago, describe_policy, policy_cell, scopes, table};
use super::explain;
use anyhow::{Context, bail};
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

pub(super) async fn rename(client: &Client, node_id: KeyId, name: String) -> anyhow::Result<()> {
    let params = serde_json::to_value(PairRenameParams { node_id, name: name.clone() })?;
    let payload = client.request(method::PAIR_RENAME, params).await.map_err(explain)?;
    // The gateway cleans names up (no control characters, at most 64 characters): show what it kept.
    let renamed: PairRenamed = serde_json::from_value(payload)?;
    println!("renamed {node_id} to \"{}\"", renamed.name);
    Ok(())
}

pub(super) async fn revoke(client: &Client, node_id: KeyId) -> anyhow::Result<()> {
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

/// The paired device `node` names: its ID, or its name when one device has that name.
async fn find(client: &Client, node: &str) -> anyhow::Result<PairedNode> {
    let payload = client.request(method::PAIR_LIST, Value::Null).await?;
    let paired: PairedNodeList = serde_json::from_value(payload).context("the gateway sent an unreadable pair.list")?;
    if let Ok(id) = node.parse::<KeyId>() {
        return match paired.nodes.into_iter().find(|n| n.node_id == id) {
            Some(found) => Ok(found),
            None => bail!("{id} is not paired; `lanyard nodes list` shows the paired devices and their IDs"),
        };
    }
    let mut named: Vec<PairedNode> = paired.nodes.into_iter().filter(|n| n.device.name == node).collect();
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => bail!("no paired device has the ID or name {node:?}; `lanyard nodes list` shows them"),
        n => bail!(
            "{n} paired devices are named {node:?}; give the ID instead: {}",
            named.iter().map(|n| n.node_id.to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}
