//! The paired client as the gateway sees it: one link, opened as the client's node ID as a TLS node's is,
//! and each call through the checks a TLS node's call passes ([`crate::relay::admit_call`]). The gateway
//! then runs the same method for it as for any node: nothing here answers for the gateway.
//!
//! The gateway keeps one connection per device ID (a second replaces the first, as when a node moves
//! from the LAN to the relay), so a client's commands share its link ([`SealedLinks`]): a stream and the
//! `agent.respond` that answers its prompt run side by side on it. The link closes when no command of the
//! client holds it.

use crate::config::BridgeConfig;
use crate::gateway_link;
use crate::relay::admit_call;
use crate::shared::BridgeShared;
use certs::KeyId;
use node_kit::Client;
use node_kit::protocol::{ErrorCode, ErrorShape, PairedNode};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The gateway links of the sealed clients with a command running, one per client.
#[derive(Default)]
pub(crate) struct SealedLinks {
    links: Mutex<HashMap<KeyId, Held>>,
    /// Held while a link opens, so two commands of one client never open two.
    opening: tokio::sync::Mutex<()>,
    next_generation: std::sync::atomic::AtomicU64,
}

struct Held {
    gateway: Client,
    users: usize,
    /// Which opening this is: a lease of a link since replaced leaves the new one alone.
    generation: u64,
}

impl SealedLinks {
    /// The link of `node_id` that is up, with one more user.
    fn join(&self, node_id: KeyId) -> Option<(Client, u64)> {
        let mut links = self.links.lock().expect("links lock");
        let held = links.get_mut(&node_id).filter(|held| !held.gateway.is_closed())?;
        held.users += 1;
        Some((held.gateway.clone(), held.generation))
    }

    async fn lease(self: &Arc<Self>, config: &BridgeConfig, node_id: KeyId) -> Result<Lease, ErrorShape> {
        let lease = |(gateway, generation)| Lease { links: self.clone(), node_id, generation, gateway };
        if let Some(joined) = self.join(node_id) {
            return Ok(lease(joined));
        }
        let _opening = self.opening.lock().await;
        if let Some(joined) = self.join(node_id) {
            return Ok(lease(joined));
        }
        let gateway = gateway_link::node_client(config, node_id).await?;
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let held = Held { gateway: gateway.clone(), users: 1, generation };
        self.links.lock().expect("links lock").insert(node_id, held);
        Ok(lease((gateway, generation)))
    }
}

/// One command's hold on its client's link.
struct Lease {
    links: Arc<SealedLinks>,
    node_id: KeyId,
    generation: u64,
    gateway: Client,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut links = self.links.links.lock().expect("links lock");
        if let Some(held) = links.get_mut(&self.node_id).filter(|held| held.generation == self.generation) {
            held.users -= 1;
            if held.users == 0 {
                // The last clone goes with this lease's: the link closes.
                links.remove(&self.node_id);
            }
        }
    }
}

pub(super) struct Caller {
    lease: Lease,
}

impl Caller {
    /// The client's link; a client the gateway no longer knows is refused here (`NOT_PAIRED`).
    pub(super) async fn open(shared: &BridgeShared, node_id: KeyId) -> Result<Caller, ErrorShape> {
        Ok(Caller { lease: shared.sealed_links.lease(&shared.config, node_id).await? })
    }

    pub(super) fn gateway(&self) -> &Client {
        &self.lease.gateway
    }

    /// What the gateway keeps of this client: its name, scopes and policy, as of the link's opening.
    pub(super) fn paired(&self) -> Result<&PairedNode, ErrorShape> {
        self.gateway()
            .hello()
            .paired
            .as_ref()
            .ok_or_else(|| ErrorShape::new(ErrorCode::NotPaired, "the computer does not know this client"))
    }

    /// Whether the bridge lets this client call `method` with `params`: the same checks as a TLS node.
    pub(super) fn admit(&self, shared: &BridgeShared, method: &str, params: &Value) -> Result<(), ErrorShape> {
        admit_call(shared, &self.lease.node_id, method, params, &self.paired()?.scopes)
    }
}
