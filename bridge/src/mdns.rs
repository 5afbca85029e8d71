//! Bonjour/mDNS advertising of `_lanyard._tcp.local.`, so a phone on the same network finds the bridge
//! without an address typed. The record says where the bridge listens and carries a minimal TXT record
//! (protocol version, a short bridge-ID hint, the display name) and nothing else: no user name, no
//! path, no other port. It is a hint for finding the bridge, never a source of trust.
//!
//! The daemon watches the host's addresses and re-announces when they change; [`Advertiser::withdraw`]
//! sends the goodbye packets on shutdown, so browsers drop the bridge at once rather than at TTL expiry.

use certs::KeyId;
pub use node_kit::discovery::computer_name;
use node_kit::discovery::{SERVICE_TYPE, id_hint, mdns_daemon, txt};
use node_kit::protocol::PROTOCOL_VERSION;
use std::net::IpAddr;
use std::time::Duration;

/// How the bridge advertises itself.
#[derive(Debug, Clone)]
pub struct MdnsConfig {
    pub enabled: bool,
    /// Advertise only on these interfaces (by name). Empty means every interface.
    pub interfaces: Vec<String>,
    /// The instance name browsers show; the computer's name by default.
    pub instance: Option<String>,
    /// The `name` in TXT; the instance name by default.
    pub display_name: Option<String>,
    /// UDP port; 5353 is mDNS. Tests use another to keep their networks apart.
    pub port: u16,
    /// How often the host's addresses are checked for changes to re-announce.
    pub address_check: Duration,
}

impl Default for MdnsConfig {
    fn default() -> Self {
        MdnsConfig {
            enabled: true,
            interfaces: Vec::new(),
            instance: None,
            display_name: None,
            port: mdns_sd::MDNS_PORT,
            address_check: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot advertise the bridge over mDNS: {0}")]
pub struct MdnsError(String);

impl MdnsConfig {
    /// The name this computer is shown by: on the LAN, and to sealed clients (`hello`, their pairing).
    pub fn display_name(&self) -> String {
        self.display_name.clone().or_else(|| self.instance.clone()).unwrap_or_else(computer_name)
    }
}

/// A running advertisement. Withdraw it on shutdown; dropping it stops the daemon without goodbyes.
pub struct Advertiser {
    daemon: mdns_sd::ServiceDaemon,
    fullname: String,
}

impl Advertiser {
    /// Starts advertising the bridge `id` listening on `bind_ip:port`. A bridge bound to one address
    /// advertises that address; one bound to every address advertises the addresses of the allowed
    /// interfaces as they come and go.
    pub fn start(config: &MdnsConfig, id: &KeyId, bind_ip: IpAddr, port: u16) -> Result<Advertiser, MdnsError> {
        let failed = |e: mdns_sd::Error| MdnsError(e.to_string());
        let daemon = mdns_daemon(config.port, &config.interfaces).map_err(failed)?;
        let computer = computer_name();
        let instance = config.instance.clone().unwrap_or_else(|| computer.clone());
        let display_name = config.display_name();
        let properties = [
            (txt::PROTOCOL, PROTOCOL_VERSION.to_string()),
            (txt::ID_HINT, id_hint(id)),
            (txt::NAME, truncate(&display_name, 200).to_string()),
        ];
        let host = format!("{}.local.", host_label(&computer));
        let addresses = if bind_ip.is_unspecified() { Vec::new() } else { vec![bind_ip] };
        let mut service = mdns_sd::ServiceInfo::new(
            SERVICE_TYPE,
            truncate(&instance, 63),
            &host,
            &addresses[..],
            port,
            &properties[..],
        )
        .map_err(failed)?;
        if addresses.is_empty() {
            service = service.enable_addr_auto();
        }
        if !config.interfaces.is_empty() {
            service.set_interfaces(config.interfaces.iter().map(mdns_sd::IfKind::from).collect());
        }
        let secs = config.address_check.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        daemon.set_ip_check_interval(secs).map_err(failed)?;
        let fullname = service.get_fullname().to_string();
        daemon.register(service).map_err(failed)?;
        tracing::info!(instance = %fullname, interfaces = ?config.interfaces, "advertising the bridge over mDNS");
        Ok(Advertiser { daemon, fullname })
    }

    /// The full DNS-SD instance name, e.g. `adas-mac._lanyard._tcp.local.`.
    pub fn instance(&self) -> &str {
        &self.fullname
    }

    /// Sends the goodbye packets (bounded wait) and stops the daemon.
    pub async fn withdraw(self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
        }
        tracing::info!(instance = %self.fullname, "mDNS advertisement withdrawn");
    }
}

/// A DNS label for the host record: letters, digits and dashes.
fn host_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    if label.is_empty() { "lanyard".to_string() } else { label }
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_labels_are_dns_safe() {
        assert_eq!(host_label("Ada's MacBook Pro"), "ada-s-macbook-pro");
        assert_eq!(host_label("…"), "lanyard");
        assert_eq!(truncate("ééé", 3), "é");
    }
}
