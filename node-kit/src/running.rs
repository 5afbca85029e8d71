//! `bridge/running.json` and `gateway/running.json`: what a running bridge or gateway tells the other
//! commands of the same home (`lanyard pair` prints the bridge's key and address in the connection string;
//! client commands dial the gateway where it listens, whatever port it was given). Written atomically at
//! start, removed on a clean stop; a crash leaves one behind, so readers check it answers before trusting it.

use certs::KeyId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningBridge {
    pub bridge_id: KeyId,
    pub bind: IpAddr,
    pub port: u16,
    /// The mDNS interface allow-list, which also limits the addresses offered to nodes.
    pub interfaces: Vec<String>,
    pub pid: u32,
}

impl RunningBridge {
    pub fn path(home: &Path) -> PathBuf {
        home.join("bridge").join("running.json")
    }

    pub fn write(&self, home: &Path) -> io::Result<()> {
        write_record(&Self::path(home), self)
    }

    /// The record of the bridge of `home`, if one started and did not stop cleanly.
    pub fn read(home: &Path) -> io::Result<Option<RunningBridge>> {
        read_record(&Self::path(home))
    }

    /// Removes the record if it is still this bridge's (a newer bridge may have replaced it).
    pub fn remove_if_mine(home: &Path, id: &KeyId, port: u16) {
        if let Ok(Some(record)) = Self::read(home)
            && record.bridge_id == *id
            && record.port == port
            && record.pid == std::process::id()
        {
            let _ = std::fs::remove_file(Self::path(home));
        }
    }

    /// Addresses a node may use: see [`lan_addresses`].
    pub fn lan_addresses(&self) -> Vec<IpAddr> {
        lan_addresses(self.bind, &self.interfaces)
    }

    /// Where a device should connect: the first LAN address, else loopback (which only this computer can
    /// use: [`IpAddr::is_loopback`] tells the caller to warn).
    pub fn device_address(&self) -> IpAddr {
        self.lan_addresses().into_iter().next().unwrap_or(if self.bind.is_ipv6() {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        })
    }

    /// Whether something accepts TCP connections where the bridge listens, within `within`: a crash leaves
    /// the record behind. A bridge on every address is asked on loopback.
    pub async fn answers(&self, within: Duration) -> bool {
        let targets: Vec<IpAddr> = match self.bind {
            IpAddr::V4(ip) if ip.is_unspecified() => vec![Ipv4Addr::LOCALHOST.into()],
            IpAddr::V6(ip) if ip.is_unspecified() => vec![Ipv6Addr::LOCALHOST.into(), Ipv4Addr::LOCALHOST.into()],
            ip => vec![ip],
        };
        let any = async {
            for ip in targets {
                if tokio::net::TcpStream::connect(SocketAddr::new(ip, self.port)).await.is_ok() {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(within, any).await.unwrap_or(false)
    }
}

/// Where the gateway of a home listens, for client commands run without `--url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningGateway {
    /// The gateway's WebSocket URL (`ws://127.0.0.1:PORT`).
    pub url: String,
    pub pid: u32,
}

impl RunningGateway {
    pub fn path(home: &Path) -> PathBuf {
        home.join("gateway").join("running.json")
    }

    pub fn write(&self, home: &Path) -> io::Result<()> {
        write_record(&Self::path(home), self)
    }

    /// The record of the gateway of `home`, if one started and did not stop cleanly.
    pub fn read(home: &Path) -> io::Result<Option<RunningGateway>> {
        read_record(&Self::path(home))
    }

    /// Removes the record if it is still this process's (a newer gateway may have replaced it).
    pub fn remove_if_mine(home: &Path, url: &str) {
        if let Ok(Some(record)) = Self::read(home)
            && record.url == url
            && record.pid == std::process::id()
        {
            let _ = std::fs::remove_file(Self::path(home));
        }
    }
}

fn write_record(path: &Path, record: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(record).expect("records serialise");
    crate::storage::write_private_file(path, &json)
}

fn read_record<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The addresses a node on the LAN may use for this bridge: the bound address, or when bound to every
/// address, those of the allowed interfaces (IPv4 first; no loopback unless allowed by name).
pub fn lan_addresses(bind_ip: IpAddr, interfaces: &[String]) -> Vec<IpAddr> {
    if !bind_ip.is_unspecified() {
        return vec![bind_ip];
    }
    let mut found: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| if interfaces.is_empty() { !i.is_loopback() } else { interfaces.contains(&i.name) })
        .map(|i| i.ip())
        .filter(|ip| !matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local()))
        .filter(|ip| ip.is_ipv4() == bind_ip.is_ipv4() || bind_ip.is_ipv6())
        .collect();
    found.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_address_is_the_only_one() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(lan_addresses(ip, &[]), vec![ip]);
    }
}
