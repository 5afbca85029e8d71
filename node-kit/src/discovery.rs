//! Finding bridges. As in iroh, discovery is a small trait with pluggable providers: [`MdnsDiscovery`]
//! browses Bonjour/mDNS on the local network, [`StaticDiscovery`] names an address, and a
//! [`ConnectionString`] is a provider too. Each streams [`DiscoveryEvent`]s: bridges found (with their
//! addresses) and lost.
//!
//! Nothing a provider reports is trusted. The TXT record's bridge-ID hint only helps pick the right
//! bridge among several; the key a node pins comes from pairing, and a bridge whose TLS key differs from
//! the pinned one is refused whatever discovery said.
//!
//! ```no_run
//! # async fn demo() -> Result<(), node_kit::discovery::DiscoveryError> {
//! use node_kit::discovery::{Discovery, DiscoveryEvent, MdnsDiscovery};
//! let mut found = MdnsDiscovery::new().watch()?;
//! while let Some(event) = found.next().await {
//!     if let DiscoveryEvent::Found(bridge) = event {
//!         println!("{} at {:?}", bridge.hint.name.as_deref().unwrap_or("a bridge"), bridge.addresses);
//!     }
//! }
//! # Ok(()) }
//! ```

use crate::connection_string::ConnectionString;
use certs::KeyId;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::sync::mpsc;

/// The DNS-SD service type bridges advertise.
pub const SERVICE_TYPE: &str = "_lanyard._tcp.local.";

/// The computer's name, as the owner knows it: the first label of its host name. The bridge advertises
/// it, and a relay invite shows it to the phone.
pub fn computer_name() -> String {
    let name = gethostname::gethostname().to_string_lossy().trim().to_string();
    let name = name.split('.').next().unwrap_or_default().to_string();
    if name.is_empty() { "lanyard".to_string() } else { name }
}

/// The TXT record's keys. Nothing else is published: no user name, no path, no other port.
pub mod txt {
    /// The protocol version the bridge speaks.
    pub const PROTOCOL: &str = "v";
    /// The first characters of the bridge's key ID ([`super::id_hint`]).
    pub const ID_HINT: &str = "id";
    /// The name the owner sees for the computer.
    pub const NAME: &str = "name";
}

/// The short bridge-ID hint published in TXT: the first two groups of the key ID (40 bits). Enough to
/// tell a home's bridges apart, far too short to stand for the key.
pub fn id_hint(id: &KeyId) -> String {
    id.to_string().split('-').take(2).collect::<Vec<_>>().join("-")
}

/// What a provider said about a bridge, all of it unverified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeHint {
    /// [`id_hint`] as advertised.
    pub id_hint: Option<String>,
    /// The full key, when the source names it (a connection string).
    pub bridge_id: Option<KeyId>,
    pub name: Option<String>,
    pub protocol: Option<u32>,
}

impl BridgeHint {
    /// Whether this may be the bridge with key `id`: nothing contradicts it.
    pub fn may_be(&self, id: &KeyId) -> bool {
        self.bridge_id.is_none_or(|full| full == *id) && self.id_hint.as_ref().is_none_or(|hint| *hint == id_hint(id))
    }
}

/// A bridge a provider found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredBridge {
    /// Names the bridge for [`DiscoveryEvent::Lost`]: the mDNS instance, or the address for static sources.
    pub instance: String,
    /// `host:port` addresses to try, best first.
    pub addresses: Vec<String>,
    pub hint: BridgeHint,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    Found(DiscoveredBridge),
    Lost { instance: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot start mDNS: {0}")]
    Mdns(String),
}

/// A source of bridges. `watch` starts a search that lasts until the returned stream is dropped.
pub trait Discovery: Send + Sync + 'static {
    fn watch(&self) -> Result<DiscoveryStream, DiscoveryError>;
}

/// Found and lost bridges, as they happen. Dropping it stops the search.
pub struct DiscoveryStream {
    events: mpsc::Receiver<DiscoveryEvent>,
}

impl DiscoveryStream {
    /// A stream fed by the sender this returns; the provider stops when `is_closed` says so.
    pub fn channel() -> (mpsc::Sender<DiscoveryEvent>, DiscoveryStream) {
        let (tx, events) = mpsc::channel(64);
        (tx, DiscoveryStream { events })
    }

    /// The next event; `None` once the provider has nothing more to say.
    pub async fn next(&mut self) -> Option<DiscoveryEvent> {
        self.events.recv().await
    }

    /// Waits up to `timeout` for a bridge that `accept` likes.
    pub async fn find(
        &mut self,
        timeout: Duration,
        accept: impl Fn(&DiscoveredBridge) -> bool,
    ) -> Option<DiscoveredBridge> {
        let search = async {
            while let Some(event) = self.next().await {
                if let DiscoveryEvent::Found(bridge) = event
                    && accept(&bridge)
                {
                    return Some(bridge);
                }
            }
            None
        };
        tokio::time::timeout(timeout, search).await.ok().flatten()
    }

    /// Waits up to `timeout` for the bridge `instance` to be reported lost; false if it was not.
    pub async fn lost(&mut self, instance: &str, timeout: Duration) -> bool {
        let watch = async {
            while let Some(event) = self.next().await {
                if matches!(&event, DiscoveryEvent::Lost { instance: gone } if gone == instance) {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(timeout, watch).await.unwrap_or(false)
    }
}

/// One known address (typed by the person, or remembered from last time).
#[derive(Debug, Clone)]
pub struct StaticDiscovery {
    address: String,
}

impl StaticDiscovery {
    pub fn new(address: impl Into<String>) -> Self {
        StaticDiscovery { address: address.into() }
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self) -> Result<DiscoveryStream, DiscoveryError> {
        Ok(once(DiscoveredBridge {
            instance: self.address.clone(),
            addresses: vec![self.address.clone()],
            hint: BridgeHint::default(),
        }))
    }
}

/// A connection string names its bridge's address and full key.
impl Discovery for ConnectionString {
    fn watch(&self) -> Result<DiscoveryStream, DiscoveryError> {
        let address = self.address();
        Ok(once(DiscoveredBridge {
            instance: address.clone(),
            addresses: vec![address],
            hint: BridgeHint { bridge_id: Some(self.bridge_id), ..BridgeHint::default() },
        }))
    }
}

fn once(bridge: DiscoveredBridge) -> DiscoveryStream {
    let (tx, stream) = DiscoveryStream::channel();
    tx.try_send(DiscoveryEvent::Found(bridge)).expect("a fresh channel has room");
    stream
}

/// Browses `_lanyard._tcp.local.` with mdns-sd.
#[derive(Debug, Clone)]
pub struct MdnsDiscovery {
    interfaces: Vec<String>,
    port: u16,
}

impl Default for MdnsDiscovery {
    fn default() -> Self {
        MdnsDiscovery::new()
    }
}

impl MdnsDiscovery {
    /// Every interface, the standard port 5353.
    pub fn new() -> Self {
        MdnsDiscovery { interfaces: Vec::new(), port: mdns_sd::MDNS_PORT }
    }

    /// Browse only on these interfaces (by name). Empty means every interface.
    pub fn interfaces(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.interfaces = names.into_iter().map(Into::into).collect();
        self
    }

    /// Another UDP port than 5353, to keep test networks apart; advertiser and browser must agree.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

impl Discovery for MdnsDiscovery {
    fn watch(&self) -> Result<DiscoveryStream, DiscoveryError> {
        let failed = |e: mdns_sd::Error| DiscoveryError::Mdns(e.to_string());
        let daemon = mdns_daemon(self.port, &self.interfaces).map_err(failed)?;
        let browse = daemon.browse(SERVICE_TYPE).map_err(failed)?;
        let (tx, stream) = DiscoveryStream::channel();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = browse.recv_async() => match event {
                        Ok(event) => event,
                        Err(_) => break,
                    },
                    () = tx.closed() => break,
                };
                let event = match event {
                    // A record left with no usable address (the computer's address went away) is as good as lost.
                    mdns_sd::ServiceEvent::ServiceResolved(service) => match resolved(&service) {
                        Some(bridge) => DiscoveryEvent::Found(bridge),
                        None => DiscoveryEvent::Lost { instance: service.get_fullname().to_string() },
                    },
                    mdns_sd::ServiceEvent::ServiceRemoved(_, fullname) => DiscoveryEvent::Lost { instance: fullname },
                    _ => continue,
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
            let _ = daemon.shutdown();
        });
        Ok(stream)
    }
}

/// An mdns-sd daemon on `port`, limited to `interfaces` when any are named. Shared with the bridge's
/// advertiser so both sides select interfaces the same way.
pub fn mdns_daemon(port: u16, interfaces: &[String]) -> Result<mdns_sd::ServiceDaemon, mdns_sd::Error> {
    let daemon = mdns_sd::ServiceDaemon::new_with_port(port)?;
    if !interfaces.is_empty() {
        daemon.disable_interface(mdns_sd::IfKind::All)?;
        let names: Vec<mdns_sd::IfKind> = interfaces.iter().map(mdns_sd::IfKind::from).collect();
        daemon.enable_interface(names)?;
    }
    Ok(daemon)
}

fn resolved(service: &mdns_sd::ResolvedService) -> Option<DiscoveredBridge> {
    let mut ips: Vec<IpAddr> = service
        .get_addresses()
        .iter()
        .map(mdns_sd::ScopedIp::to_ip_addr)
        // A link-local IPv6 address needs its interface to be reached; the others do not.
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    if ips.is_empty() {
        return None;
    }
    let port = service.get_port();
    let text = |key: &str| service.get_property_val_str(key).map(str::to_string);
    Some(DiscoveredBridge {
        instance: service.get_fullname().to_string(),
        addresses: ips.iter().map(|ip| SocketAddr::new(*ip, port).to_string()).collect(),
        hint: BridgeHint {
            id_hint: text(txt::ID_HINT),
            bridge_id: None,
            name: text(txt::NAME),
            protocol: text(txt::PROTOCOL).and_then(|v| v.parse().ok()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_never_contradict_and_never_prove() {
        let a = certs::Identity::generate().id();
        let b = certs::Identity::generate().id();
        assert_eq!(id_hint(&a).len(), 9);
        assert!(BridgeHint::default().may_be(&a));
        let hinted = BridgeHint { id_hint: Some(id_hint(&a)), ..BridgeHint::default() };
        assert!(hinted.may_be(&a));
        assert!(!hinted.may_be(&b));
        let named = BridgeHint { bridge_id: Some(b), ..BridgeHint::default() };
        assert!(!named.may_be(&a));
    }

    #[tokio::test]
    async fn static_sources_report_their_address() {
        let mut found = StaticDiscovery::new("10.0.0.2:18790").watch().unwrap();
        let bridge = found.find(Duration::from_secs(1), |_| true).await.unwrap();
        assert_eq!(bridge.addresses, ["10.0.0.2:18790"]);
    }
}
