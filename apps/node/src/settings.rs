//! What the node keeps in its state directory: its key, its pairing, the owner's settings and, while it
//! runs, its status. Every file is written atomically with mode 0600 (node-kit's storage).

use crate::allow::AllowEntry;
use anyhow::Context;
use node_kit::pairing::PairedBridge;
use node_kit::storage::{load_or_create_identity, write_private_file};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Largest snapshot image the node sends, in bytes; larger pictures are scaled down or refused. The bridge
/// refuses snapshot answers over 3 MiB of frame text, and base64 adds a third.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: usize = 2 * 1024 * 1024;
/// The most the snapshot setting may be: its base64, inside an answer frame, stays under the bridge's
/// 3 MiB limit on snapshot answers.
pub const MAX_SNAPSHOT_BYTES_LIMIT: usize = 2_300_000;

/// Settings the owner of the device chooses; changed by the global flags and kept across runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// How the computer lists this device.
    pub name: String,
    /// Whether transcripts are forwarded to the agent.
    pub voice: bool,
    /// Where web mode may go (default: nowhere).
    #[serde(default)]
    pub web_allow: Vec<AllowEntry>,
    /// Largest snapshot image sent, in bytes.
    #[serde(default = "default_max_snapshot")]
    pub max_snapshot_bytes: usize,
}

fn default_max_snapshot() -> usize {
    DEFAULT_MAX_SNAPSHOT_BYTES
}

impl Default for Settings {
    fn default() -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Settings {
            name: if host.is_empty() { "Lanyard node".into() } else { host },
            voice: true,
            web_allow: Vec::new(),
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }
}

/// What a running node last reported about itself, for `lanyard-node status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub pid: u32,
    /// `connected`, `connected (relay)`, `reconnecting`, `bridge offline (retrying)` or `stopped: <why>`.
    pub link: String,
    pub foreground: bool,
    /// Whether the Canvas browser is running.
    pub screen: String,
    pub updated_at_ms: u64,
}

/// The node's state directory.
#[derive(Debug, Clone)]
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn new(path: PathBuf) -> StateDir {
        StateDir(path)
    }

    /// `~/.local/share/lanyard-node` on Linux, `~/Library/Application Support/lanyard-node` on macOS.
    pub fn default_path() -> anyhow::Result<PathBuf> {
        directories::ProjectDirs::from("", "", "lanyard-node")
            .map(|dirs| dirs.data_dir().to_path_buf())
            .context("cannot find a home directory for the node's state; pass --state DIR")
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn identity(&self) -> anyhow::Result<certs::Identity> {
        let path = self.0.join("identity.pem");
        load_or_create_identity(&path)
            .with_context(|| format!("cannot read or create the device key {}", path.display()))
    }

    pub fn pairing(&self) -> anyhow::Result<Option<PairedBridge>> {
        read_json(&self.0.join("bridge.json"))
    }

    pub fn save_pairing(&self, paired: &PairedBridge) -> anyhow::Result<()> {
        write_json(&self.0.join("bridge.json"), paired)
    }

    /// Forgets the pairing (the computer revoked it). Removing the file is atomic: a crash leaves the
    /// pairing whole or gone. The device key stays, to pair again with.
    pub fn forget_pairing(&self) -> anyhow::Result<()> {
        let path = self.0.join("bridge.json");
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(read_json(&self.0.join("settings.json"))?.unwrap_or_default())
    }

    pub fn save_settings(&self, settings: &Settings) -> anyhow::Result<()> {
        write_json(&self.0.join("settings.json"), settings)
    }

    pub fn status(&self) -> anyhow::Result<Option<RunStatus>> {
        read_json(&self.0.join("status.json"))
    }

    pub fn save_status(&self, status: &RunStatus) -> anyhow::Result<()> {
        write_json(&self.0.join("status.json"), status)
    }

    pub fn clear_status(&self) {
        let _ = std::fs::remove_file(self.0.join("status.json"));
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{} is damaged", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("settings serialise");
    write_private_file(path, &bytes).with_context(|| format!("cannot write {}", path.display()))
}
