//! The Lanyard home directory and the gateway token kept in it.

use node_kit::storage;
use std::io;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// `LANYARD_HOME` if set, else the platform's data directory for Lanyard.
pub fn lanyard_home() -> PathBuf {
    if let Some(home) = std::env::var_os("LANYARD_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    directories::ProjectDirs::from("dev", "Lanyard", "lanyard")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".lanyard"))
}

/// Where the operators' gateway token lives under a home.
pub fn token_path(home: &Path) -> PathBuf {
    home.join("gateway").join("token")
}

/// Where the bridge's gateway token lives. Only a client holding it may speak for a node, so a node's
/// identity reaches the gateway only as the bridge established it.
pub fn bridge_token_path(home: &Path) -> PathBuf {
    home.join("gateway").join("bridge-token")
}

/// The token that lets a scraper read the console's `/metrics` (and nothing else).
pub fn metrics_token_path(home: &Path) -> PathBuf {
    home.join("gateway").join("metrics-token")
}

/// Where the paired-node store lives.
pub fn paired_store_path(home: &Path) -> PathBuf {
    home.join("gateway").join("paired-nodes.json")
}

/// A secret a loopback client presents in `connect`. Never printed, never logged.
#[derive(Clone)]
pub struct GatewayToken(String);

impl std::fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

impl GatewayToken {
    /// Reads the token at `path`, creating it (256 random bits, mode 0600) on first run.
    pub fn load_or_create(path: &Path) -> io::Result<GatewayToken> {
        match GatewayToken::load(path) {
            Ok(token) => Ok(token),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let token = node_kit::client::random_id() + &node_kit::client::random_id();
                storage::write_private_file(path, token.as_bytes())?;
                Ok(GatewayToken(token))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads an existing token; `NotFound` when the gateway has never run with this home.
    pub fn load(path: &Path) -> io::Result<GatewayToken> {
        let text = std::fs::read_to_string(path)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the gateway token file is empty"));
        }
        Ok(GatewayToken(token.to_string()))
    }

    /// Constant-time comparison, so timing does not reveal how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_path(dir.path());
        let first = GatewayToken::load_or_create(&path).unwrap();
        let second = GatewayToken::load_or_create(&path).unwrap();
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 64);
        assert!(first.matches(second.expose()));
        assert!(!first.matches("wrong"));
        assert!(!format!("{first:?}").contains(first.expose()));
    }
}
