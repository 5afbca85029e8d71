//! The node's side of pairing. Door 1, by approval: first contact with an unpinned bridge key, the SAS
//! the person compares with the computer's screen, then the owner's decision. Door 2, by connection
//! string ([`redeem`]): the bridge is pinned from the first packet and the one-time code is the approval.
//!
//! ```no_run
//! # async fn demo(identity: certs::Identity) -> Result<(), node_kit::ClientError> {
//! use node_kit::pairing::{PairingRequest, request_pairing};
//! use node_kit::protocol::Scope;
//! let request = PairingRequest::new("Ada's phone", "ios").scopes([Scope::Chat, Scope::Voice]);
//! let pending = request_pairing("192.168.1.20:18790", &identity, request).await?;
//! println!("Check that the computer shows {}", pending.sas());
//! let paired = pending.approved().await?; // keep `paired`: it holds the bridge's pinned key
//! # Ok(()) }
//! ```

use crate::client::{Client, ClientError};
use crate::connection_string::{ConnectionString, RelayInvite};
use crate::pin::{NodePin, PinError};
use crate::protocol::{
    DeviceInfo, ErrorCode, ErrorShape, PairChallenge, PairConfirmParams, PairPinChallenge, PairPinConfirmParams,
    PairPinParams, PairPinResult, PairRedeemParams, PairRequestParams, PairResolution, PairTicket, PairWaitParams,
    Scope, method, nonce_commitment, pairing_nonce, sas,
};
use crate::relay::RelayRoute;
use certs::{Identity, KeyId, Pin};
use serde::{Deserialize, Serialize};

/// What a node tells the owner about itself when it asks to pair.
#[derive(Debug, Clone)]
pub struct PairingRequest {
    device: DeviceInfo,
    scopes: Vec<Scope>,
}

impl PairingRequest {
    /// Asks for the `chat` scope unless [`PairingRequest::scopes`] says otherwise.
    pub fn new(name: impl Into<String>, platform: impl Into<String>) -> Self {
        let device = DeviceInfo { name: name.into(), platform: platform.into(), model: None };
        PairingRequest { device, scopes: vec![Scope::Chat] }
    }

    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.device.model = Some(model.into());
        self
    }

    pub fn scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = scopes.into_iter().collect();
        self
    }

    /// Opens the connection to pair over, introducing the device by its name and platform.
    async fn connect(&self, addr: &str, identity: &Identity, pin: Pin) -> Result<Client, ClientError> {
        Client::bridge(addr, identity, pin)?
            .display_name(self.device.name.clone())
            .platform(self.device.platform.clone())
            .connect()
            .await
    }
}

/// A bridge this node is paired with: where it was, the key to pin, and how to reach it off the LAN.
/// Save it privately: the relay's routing token lets its holder knock on the relay (never past the
/// bridge's TLS, which still wants this device's key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedBridge {
    pub bridge_id: KeyId,
    pub address: String,
    pub node_id: KeyId,
    pub scopes: Vec<Scope>,
    /// The relay and this node's routing token, once the owner turned the tunnel on and the node was home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<RelayAccess>,
}

/// A relay URL and the routing token the bridge issued for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayAccess {
    pub url: String,
    pub token: String,
}

/// A request the bridge accepted, waiting for the owner.
pub struct PendingApproval {
    client: Client,
    address: String,
    bridge_id: KeyId,
    node_id: KeyId,
    sas: String,
    ticket: PairTicket,
}

/// Opens a first-contact connection to the bridge at `addr` and asks to pair.
pub async fn request_pairing(
    addr: &str,
    identity: &Identity,
    request: PairingRequest,
) -> Result<PendingApproval, ClientError> {
    let client = request.connect(addr, identity, Pin::AnyKey).await?;
    let bridge_id = client.peer_key().ok_or_else(|| ClientError::Protocol("no bridge key".into()))?;
    let nonce = pairing_nonce();
    let params = PairRequestParams {
        device: request.device,
        scopes: request.scopes,
        nonce_commitment: nonce_commitment(&nonce),
    };
    let challenge: PairChallenge = call(&client, method::PAIR_REQUEST, &params).await?;
    let ticket: PairTicket = call(&client, method::PAIR_CONFIRM, &PairConfirmParams { nonce: nonce.clone() }).await?;
    let sas = sas(&bridge_id, &identity.id(), &challenge.bridge_nonce, &nonce);
    Ok(PendingApproval { client, address: addr.to_string(), bridge_id, node_id: identity.id(), sas, ticket })
}

/// Pairs through door 2: connects to the bridge the string names, pinned to its key, and presents the
/// one-time code. No prompt on the computer; a used, expired or wrong code is refused
/// (`PAIRING_CODE_USED`, `PAIRING_EXPIRED`, `PAIRING_CODE_INVALID`).
///
/// ```no_run
/// # async fn demo(identity: certs::Identity) -> Result<(), Box<dyn std::error::Error>> {
/// use node_kit::pairing::{PairingRequest, redeem};
/// let string = "lanyard://192.168.1.20:18790?id=…&code=…".parse()?;
/// let paired = redeem(&string, &identity, PairingRequest::new("Ada's phone", "ios")).await?;
/// # Ok(()) }
/// ```
pub async fn redeem(
    string: &ConnectionString,
    identity: &Identity,
    request: PairingRequest,
) -> Result<PairedBridge, ClientError> {
    let address = string.address();
    let client = request.connect(&address, identity, Pin::Key(string.bridge_id)).await?;
    let params = PairRedeemParams { code: string.code.clone(), device: request.device, scopes: request.scopes };
    let resolution: PairResolution = call(&client, method::PAIR_REDEEM, &params).await?;
    if resolution.node_id != identity.id() {
        return Err(ClientError::Protocol("the pairing names another node".into()));
    }
    Ok(PairedBridge {
        bridge_id: string.bridge_id,
        address,
        node_id: identity.id(),
        scopes: resolution.scopes,
        relay: None,
    })
}

/// Pairs through door 3, away from home: reaches the bridge through the relay the invite names, with the
/// bridge key not yet pinned, and runs the PIN exchange ([`crate::pin`]) with the key the bridge showed
/// in TLS and this device's own bound in. A wrong PIN, or a relay that put its own key in the middle,
/// fails here (`PAIRING_PIN_WRONG`) and spends one of the code's five tries. On success the key the
/// exchange authenticated is pinned and the device has its routing token; it has no LAN address yet
/// (discovery finds one at home).
pub async fn pair_with_pin(
    invite: &RelayInvite,
    pin: &str,
    identity: &Identity,
    request: PairingRequest,
) -> Result<PairedBridge, ClientError> {
    let route =
        RelayRoute { url: invite.relay_url.clone(), bridge_id: invite.bridge_id, token: invite.routing.clone() };
    let client = Client::bridge("", identity, Pin::AnyKey)?
        .relay(route)
        .display_name(request.device.name.clone())
        .platform(request.device.platform.clone())
        .connect()
        .await?;
    let bridge_id = client.peer_key().ok_or_else(|| ClientError::Protocol("no bridge key".into()))?;
    let bad_pin = |e: PinError| {
        ClientError::Remote(ErrorShape::new(ErrorCode::PairingPinWrong, format!("{e}; check the PIN and try again")))
    };
    let (exchange, message) = NodePin::start(pin, Some(&identity.id()), &bridge_id).map_err(bad_pin)?;
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let params = PairPinParams { message: b64(&message), device: request.device, scopes: request.scopes };
    let challenge: PairPinChallenge = call(&client, method::PAIR_PIN, &params).await?;
    let unb64 = |text: &str| data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).unwrap_or_default();
    let keys = exchange.finish(&unb64(&challenge.message), &unb64(&challenge.confirmation)).map_err(bad_pin)?;
    let confirm = PairPinConfirmParams { confirmation: b64(&keys.node_confirmation()) };
    let result: PairPinResult = call(&client, method::PAIR_PIN_CONFIRM, &confirm).await?;
    if result.resolution.node_id != identity.id() {
        return Err(ClientError::Protocol("the pairing names another node".into()));
    }
    let relay_url = result.relay.relay_url.unwrap_or_else(|| invite.relay_url.clone());
    Ok(PairedBridge {
        bridge_id,
        address: String::new(),
        node_id: identity.id(),
        scopes: result.resolution.scopes,
        relay: Some(RelayAccess { url: relay_url, token: result.relay.token }),
    })
}

impl PendingApproval {
    /// The six digits to show; the computer shows the same ones unless someone is in the middle.
    pub fn sas(&self) -> &str {
        &self.sas
    }

    pub fn request_id(&self) -> &str {
        &self.ticket.request_id
    }

    pub fn expires_at_ms(&self) -> u64 {
        self.ticket.expires_at_ms
    }

    /// The key of the bridge, as seen on this first contact.
    pub fn bridge_id(&self) -> KeyId {
        self.bridge_id
    }

    /// Waits for the owner's decision: the paired bridge, or `PAIRING_REJECTED` / `PAIRING_EXPIRED`.
    pub async fn approved(self) -> Result<PairedBridge, ClientError> {
        let resolution: PairResolution = call(&self.client, method::PAIR_WAIT, &PairWaitParams::default()).await?;
        if resolution.node_id != self.node_id {
            return Err(ClientError::Protocol("the approval names another node".into()));
        }
        Ok(PairedBridge {
            bridge_id: self.bridge_id,
            address: self.address,
            node_id: self.node_id,
            scopes: resolution.scopes,
            relay: None,
        })
    }
}

async fn call<T: serde::de::DeserializeOwned>(
    client: &Client,
    method: &str,
    params: &impl Serialize,
) -> Result<T, ClientError> {
    let payload = client.request(method, serde_json::to_value(params).expect("params serialise")).await?;
    serde_json::from_value(payload).map_err(|e| ClientError::Protocol(format!("unreadable {method} answer: {e}")))
}
