//! `bridge/running.json`: what a running bridge tells the other commands of the same home (`lanyard
//! pair` prints its key and address in the connection string). Written atomically at start, removed on a
//! clean stop; a crash leaves it behind, so readers check the bridge answers before trusting it.

use certs::KeyId;
use serde::{Deserialize, Serialize};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

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
        let json = serde_json::to_vec_pretty(self).expect("records serialise");
        node_kit::storage::write_private_file(&Self::path(home), &json)
    }

    /// The record of the bridge of `home`, if one started and did not stop cleanly.
    pub fn read(home: &Path) -> io::Result<Option<RunningBridge>> {
        match std::fs::read(Self::path(home)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
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

    /// Addresses a node may use: see [`crate::mdns::lan_addresses`].
    pub fn lan_addresses(&self) -> Vec<IpAddr> {
        crate::mdns::lan_addresses(self.bind, &self.interfaces)
    }
}
