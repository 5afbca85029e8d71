//! `lanyard nodes list | rename | revoke`: the paired devices.

use super::display::{ago, scopes, table};
use super::explain;
use anyhow::Context;
use certs::KeyId;
use node_kit::Client;
use node_kit::protocol::{
    AppState, NodeListPayload, NodeSummary, PairRenameParams, PairRenamed, PairRevokeParams, PairRevoked,
    PairedNodeList, method,
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
    let rows: Vec<[String; 9]> = paired
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
                if live.is_some() { "now".to_string() } else { ago(node.last_seen_ms, now) },
                if live.is_some() { "yes" } else { "no" }.to_string(),
                caps,
                state,
                voice,
            ]
        })
        .collect();
    let header = ["ID", "NAME", "PLATFORM", "SCOPES", "LAST SEEN", "CONNECTED", "CAPS", "STATE", "VOICE"];
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
