//! The off-LAN tunnel's settings and state, kept by the gateway because it keeps the paired-node store
//! the routing tokens belong to: the relay URL (`tunnel.json`, atomic, 0600), and the bridge's last
//! report on its relay link.

use crate::pairing::PairedStore;
use node_kit::protocol::{TunnelHealth, TunnelReport, TunnelSync};
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The file under the gateway's home that holds the relay URL.
pub const TUNNEL_FILE: &str = "tunnel.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TunnelFile {
    url: Option<String>,
}

/// Reads the relay URL saved under `home`; a missing file is no tunnel.
pub fn load_url(home: &Path) -> io::Result<Option<String>> {
    match std::fs::read(home.join(TUNNEL_FILE)) {
        Ok(bytes) => serde_json::from_slice::<TunnelFile>(&bytes)
            .map(|file| file.url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{TUNNEL_FILE}: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves the relay URL under `home` (atomically): what `tunnel.set` does, and what the CLI does itself
/// when no gateway is running.
pub fn save_url(home: &Path, url: Option<&str>) -> io::Result<()> {
    let file = TunnelFile { url: url.map(str::to_string) };
    node_kit::storage::write_private_file(&home.join(TUNNEL_FILE), &serde_json::to_vec_pretty(&file)?)
}

pub(crate) struct TunnelBook {
    home: PathBuf,
    url: Mutex<Option<String>>,
    link: Arc<Mutex<Option<TunnelReport>>>,
}

impl TunnelBook {
    /// An unreadable file is logged and treated as no tunnel: the LAN works without it.
    pub(crate) fn load(home: &Path) -> TunnelBook {
        let url = load_url(home).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the tunnel settings; the tunnel is off");
            None
        });
        TunnelBook { home: home.to_path_buf(), url: Mutex::new(url), link: Arc::new(Mutex::new(None)) }
    }

    pub(crate) fn url(&self) -> Option<String> {
        self.url.lock().expect("tunnel lock").clone()
    }

    /// Saves first, so a URL the gateway answers with is one it will still have after a restart.
    pub(crate) fn set_url(&self, url: Option<String>) -> io::Result<()> {
        let mut current = self.url.lock().expect("tunnel lock");
        save_url(&self.home, url.as_deref())?;
        *current = url;
        self.link.lock().expect("tunnel lock").take();
        Ok(())
    }

    /// The bridge's last report, shared with the metrics, which read it when scraped.
    pub(crate) fn link_report(&self) -> Arc<Mutex<Option<TunnelReport>>> {
        self.link.clone()
    }

    /// Keeps the bridge's report if it is about the URL in force (a late report on an old URL is dropped).
    pub(crate) fn report(&self, report: TunnelReport) {
        if self.url().as_deref() == Some(report.url.as_str()) {
            *self.link.lock().expect("tunnel lock") = Some(report);
        }
    }

    pub(crate) fn sync(&self, paired: &PairedStore) -> TunnelSync {
        let tokens = paired.list().into_iter().filter_map(|node| node.routing_token_hash).collect();
        TunnelSync { url: self.url(), tokens }
    }

    pub(crate) fn health(&self, paired: &PairedStore) -> TunnelHealth {
        let url = self.url();
        TunnelHealth {
            link: self.link.lock().expect("tunnel lock").clone().filter(|_| url.is_some()),
            url,
            nodes_with_tokens: paired.list().iter().filter(|node| node.routing_token_hash.is_some()).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::TunnelLinkState;

    #[test]
    fn the_url_survives_a_restart_and_reports_on_another_url_are_dropped() {
        let home = tempfile::tempdir().unwrap();
        let book = TunnelBook::load(home.path());
        assert_eq!(book.url(), None);
        book.set_url(Some("https://relay.example".into())).unwrap();
        let report = |url: &str| TunnelReport {
            state: TunnelLinkState::Ready,
            url: url.into(),
            relay_streams: 1,
            error: None,
            since_ms: 1,
        };
        book.report(report("https://old.example"));
        let paired = PairedStore::load(home.path().join("paired.json")).unwrap();
        assert_eq!(book.health(&paired).link, None);
        book.report(report("https://relay.example"));
        assert_eq!(book.health(&paired).link.map(|l| l.state), Some(TunnelLinkState::Ready));
        assert_eq!(TunnelBook::load(home.path()).url().as_deref(), Some("https://relay.example"));
        book.set_url(None).unwrap();
        assert_eq!(book.health(&paired), TunnelHealth::default());
    }
}
