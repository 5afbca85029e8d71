//! The device and its pairings: the key from the app's store, the registry of paired computers, and
//! pairing by approval (with the SAS), by connection string, and by PIN through the relay.

use crate::connection::{ConnectOptions, Connection, NetworkPath};
use crate::discovery::BrowseSource;
use crate::store::{KeyStore, StoredComputer, load_computers, load_or_create_identity, save_computers};
use crate::{CommandHandler, NodeKitError};
use certs::KeyId;
use node_kit::connection_string::{ConnectionString, RelayInvite};
use node_kit::pairing::{PairedBridge, PairingRequest, PendingApproval};
use node_kit::protocol::Scope;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// A computer this device is paired with.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PairedComputer {
    /// The computer's key ID: pinned at pairing, the only key this device accepts from it.
    pub bridge_id: String,
    /// Its name, once known (from its first connection or its mDNS announcement).
    pub name: Option<String>,
    /// The LAN address that worked last (empty after PIN pairing until the device is home).
    pub address: String,
    /// How the last connection went: on the LAN or through the relay; none before the first.
    pub last_path: Option<NetworkPath>,
    /// Whether the device can reach the computer through the owner's relay when away.
    pub has_relay: bool,
    pub scopes: Vec<String>,
}

impl From<&StoredComputer> for PairedComputer {
    fn from(stored: &StoredComputer) -> Self {
        PairedComputer {
            bridge_id: stored.paired.bridge_id.to_string(),
            name: stored.name.clone(),
            address: stored.paired.address.clone(),
            last_path: stored.last_path.map(Into::into),
            has_relay: stored.paired.relay.is_some(),
            scopes: stored.paired.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        }
    }
}

/// This device: its key (only in the app's [`KeyStore`]) and the computers it is paired with.
#[derive(uniffi::Object)]
pub struct NodeKit {
    store: Arc<dyn KeyStore>,
    identity: Arc<certs::Identity>,
    name: String,
    platform: String,
    /// The registry, as stored; every change is written through to the store before it is seen here.
    computers: Mutex<Vec<StoredComputer>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl NodeKit {
    /// Opens the device kept in `store`, creating its key there on first use. `name` is how the
    /// computer's owner sees the device; `platform` is `android`, `ios`, ….
    #[uniffi::constructor]
    pub fn new(store: Arc<dyn KeyStore>, name: String, platform: String) -> Result<Arc<NodeKit>, NodeKitError> {
        let identity = Arc::new(load_or_create_identity(store.as_ref())?);
        let computers = Mutex::new(load_computers(store.as_ref())?);
        Ok(Arc::new(NodeKit { store, identity, name, platform, computers }))
    }

    /// This device's key ID, as the computer lists it.
    pub fn node_id(&self) -> String {
        self.identity.id().to_string()
    }

    /// The paired computers, in pairing order.
    pub fn computers(&self) -> Vec<PairedComputer> {
        self.computers.lock().expect("computers lock").iter().map(Into::into).collect()
    }

    /// Forgets a computer on this side (its owner revokes the device on the computer's side).
    pub fn forget(&self, bridge_id: String) -> Result<(), NodeKitError> {
        let id = parse_bridge_id(&bridge_id)?;
        self.update(|computers| computers.retain(|c| c.paired.bridge_id != id))
    }

    /// Door 2: pairs with the computer a `lanyard://…` connection string names (from `lanyard pair`, or
    /// its QR code), pinned to its key from the first packet. No approval step on the computer.
    pub async fn pair_with_connection_string(&self, connection_string: String) -> Result<PairedComputer, NodeKitError> {
        let string: ConnectionString =
            connection_string.parse().map_err(|e: node_kit::connection_string::ConnectionStringError| {
                NodeKitError::Invalid { detail: e.to_string() }
            })?;
        let paired = node_kit::pairing::redeem(&string, &self.identity, self.request()).await?;
        self.remember(paired, None)
    }

    /// Door 3, away from home: pairs through the relay an invite (`lanyard+https://…`) names, with the PIN
    /// the computer shows beside it. A wrong PIN is `PAIRING_PIN_WRONG`.
    pub async fn pair_with_pin(&self, invite: String, pin: String) -> Result<PairedComputer, NodeKitError> {
        let invite: RelayInvite = invite
            .parse()
            .map_err(|e: node_kit::connection_string::InviteError| NodeKitError::Invalid { detail: e.to_string() })?;
        let paired = node_kit::pairing::pair_with_pin(&invite, &pin, &self.identity, self.request()).await?;
        self.remember(paired, None)
    }

    /// Door 1: asks the computer at `address` (`host:port`, from discovery) to pair. Show
    /// [`PairingApproval::sas`] and ask the person to check the computer shows the same code, then wait
    /// with [`PairingApproval::approved`].
    pub async fn request_pairing(
        self: Arc<Self>,
        address: String,
        computer_name: Option<String>,
    ) -> Result<Arc<PairingApproval>, NodeKitError> {
        let pending = node_kit::pairing::request_pairing(&address, &self.identity, self.request()).await?;
        Ok(Arc::new(PairingApproval {
            sas: pending.sas().to_string(),
            bridge_id: pending.bridge_id().to_string(),
            kit: self,
            computer_name,
            pending: Mutex::new(Some(pending)),
            cancel: CancellationToken::new(),
        }))
    }

    /// Connects to a paired computer and keeps the connection up (LAN first, the relay when away) until
    /// [`Connection::disconnect`]. Gives up with the last error when the computer cannot be reached within
    /// `options.first_connect_timeout_ms`. `commands` answers what the computer asks of this device
    /// (`screen.*` and the app's own); `browse` feeds the platform's service browser in, for apps that
    /// cannot use mDNS directly.
    pub async fn connect(
        self: Arc<Self>,
        bridge_id: String,
        options: ConnectOptions,
        commands: Option<Arc<dyn CommandHandler>>,
        browse: Option<Arc<dyn BrowseSource>>,
    ) -> Result<Arc<Connection>, NodeKitError> {
        let id = parse_bridge_id(&bridge_id)?;
        let paired = self
            .computers
            .lock()
            .expect("computers lock")
            .iter()
            .find(|c| c.paired.bridge_id == id)
            .map(|c| c.paired.clone())
            .ok_or_else(|| NodeKitError::Invalid { detail: format!("this device is not paired with {bridge_id}") })?;
        Connection::open(self.clone(), paired, options, commands, browse).await
    }
}

impl NodeKit {
    pub(crate) fn identity(&self) -> Arc<certs::Identity> {
        self.identity.clone()
    }

    pub(crate) fn device_name(&self) -> (&str, &str) {
        (&self.name, &self.platform)
    }

    fn request(&self) -> PairingRequest {
        PairingRequest::new(&self.name, &self.platform).scopes([Scope::Chat, Scope::Voice])
    }

    /// Applies `change` to the registry and stores the result; the registry changes only once stored.
    fn update(&self, change: impl FnOnce(&mut Vec<StoredComputer>)) -> Result<(), NodeKitError> {
        let mut computers = self.computers.lock().expect("computers lock");
        let mut next = computers.clone();
        change(&mut next);
        save_computers(self.store.as_ref(), &next)?;
        *computers = next;
        Ok(())
    }

    /// Adds (or replaces) a pairing in the registry.
    fn remember(&self, paired: PairedBridge, name: Option<String>) -> Result<PairedComputer, NodeKitError> {
        let stored = StoredComputer { paired, name, last_path: None };
        let shown = PairedComputer::from(&stored);
        self.update(|computers| {
            computers.retain(|c| c.paired.bridge_id != stored.paired.bridge_id);
            computers.push(stored);
        })?;
        Ok(shown)
    }

    /// Records what a connection learnt: the address and path that worked, the relay token, the name.
    pub(crate) fn connected(&self, paired: PairedBridge, name: &str, path: NetworkPath) -> Result<(), NodeKitError> {
        self.update(|computers| {
            if let Some(known) = computers.iter_mut().find(|c| c.paired.bridge_id == paired.bridge_id) {
                known.paired = paired;
                known.name = Some(name.to_string());
                known.last_path = Some(path.into());
            }
        })
    }
}

fn parse_bridge_id(text: &str) -> Result<KeyId, NodeKitError> {
    text.parse().map_err(|e: certs::KeyIdError| NodeKitError::Invalid { detail: format!("bridge ID: {e}") })
}

/// A pairing request the computer accepted, waiting for its owner (door 1).
#[derive(uniffi::Object)]
pub struct PairingApproval {
    sas: String,
    bridge_id: String,
    kit: Arc<NodeKit>,
    computer_name: Option<String>,
    pending: Mutex<Option<PendingApproval>>,
    cancel: CancellationToken,
}

#[uniffi::export(async_runtime = "tokio")]
impl PairingApproval {
    /// The six digits to show; the computer shows the same ones unless someone is in the middle.
    pub fn sas(&self) -> String {
        self.sas.clone()
    }

    /// The key the computer showed on this first contact; pinned once the owner approves.
    pub fn bridge_id(&self) -> String {
        self.bridge_id.clone()
    }

    /// Waits for the owner: the paired computer (added to the registry), or `PAIRING_REJECTED`,
    /// `PAIRING_EXPIRED`, or `Cancelled` after [`PairingApproval::cancel`]. Callable once.
    pub async fn approved(&self) -> Result<PairedComputer, NodeKitError> {
        let pending = self.pending.lock().expect("pending lock").take().ok_or(NodeKitError::Cancelled)?;
        let paired = tokio::select! {
            paired = pending.approved() => paired?,
            () = self.cancel.cancelled() => return Err(NodeKitError::Cancelled),
        };
        self.kit.remember(paired, self.computer_name.clone())
    }

    /// Stops waiting (the request lapses on the computer).
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.pending.lock().expect("pending lock").take();
    }
}
