//! The bridge's long-lived key: in the OS keychain where there is one, else in a 0600 file.
//!
//! Headless Linux hosts have no usable keychain (no Secret Service without a desktop session), so the
//! fallback is the normal case there, not an error.

use certs::Identity;
use node_kit::storage;
use std::io;
use std::path::{Path, PathBuf};

/// Where the bridge keeps its private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStore {
    /// The OS keychain when available, else the file.
    Auto,
    /// Always the 0600 file under the home.
    File,
}

/// Where the key was found or put, for the banner and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Keychain,
    File(PathBuf),
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyLocation::Keychain => f.write_str("the OS keychain"),
            KeyLocation::File(path) => write!(f, "{} (mode 0600)", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityStoreError {
    #[error("cannot read or write the bridge key at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the bridge key in {location} is unusable: {source}")]
    Corrupt { location: KeyLocation, source: certs::IdentityError },
}

pub fn key_file(home: &Path) -> PathBuf {
    home.join("bridge").join("identity.pem")
}

/// Loads the bridge's key, creating it on first run.
pub fn load_or_create(home: &Path, store: KeyStore) -> Result<(Identity, KeyLocation), IdentityStoreError> {
    if store == KeyStore::Auto
        && let Some(found) = from_keychain(home)
    {
        return found;
    }
    let path = key_file(home);
    let io_error = |source| IdentityStoreError::Io { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(pem) => Identity::from_pkcs8_pem(&pem)
            .map(|identity| (identity, KeyLocation::File(path.clone())))
            .map_err(|source| IdentityStoreError::Corrupt { location: KeyLocation::File(path.clone()), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let identity = Identity::generate();
            storage::write_private_file(&path, identity.to_pkcs8_pem().as_bytes()).map_err(io_error)?;
            Ok((identity, KeyLocation::File(path)))
        }
        Err(e) => Err(io_error(e)),
    }
}

/// The key from the keychain (created there on first run), or `None` when there is no usable keychain.
fn from_keychain(home: &Path) -> Option<Result<(Identity, KeyLocation), IdentityStoreError>> {
    // One entry per home, so two installations on one account do not share a key.
    let entry = keyring::Entry::new("lanyard-bridge", &home.display().to_string()).ok()?;
    let corrupt = |source| IdentityStoreError::Corrupt { location: KeyLocation::Keychain, source };
    match entry.get_password() {
        Ok(pem) => Some(Identity::from_pkcs8_pem(&pem).map(|i| (i, KeyLocation::Keychain)).map_err(corrupt)),
        Err(keyring::Error::NoEntry) => {
            let identity = Identity::generate();
            match entry.set_password(&identity.to_pkcs8_pem()) {
                Ok(()) => Some(Ok((identity, KeyLocation::Keychain))),
                Err(e) => {
                    tracing::info!(error = %e, "the keychain refused the bridge key; using a 0600 file");
                    None
                }
            }
        }
        Err(e) => {
            tracing::info!(error = %e, "no usable keychain; using a 0600 file for the bridge key");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_key_is_created_once_with_mode_0600() {
        let home = tempfile::tempdir().unwrap();
        let (first, location) = load_or_create(home.path(), KeyStore::File).unwrap();
        let (second, _) = load_or_create(home.path(), KeyStore::File).unwrap();
        assert_eq!(first.id(), second.id());
        assert_eq!(location, KeyLocation::File(key_file(home.path())));
        let mode = std::fs::metadata(key_file(home.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_key_file_is_reported_not_replaced() {
        let home = tempfile::tempdir().unwrap();
        storage::write_private_file(&key_file(home.path()), b"garbage").unwrap();
        assert!(matches!(load_or_create(home.path(), KeyStore::File), Err(IdentityStoreError::Corrupt { .. })));
        assert_eq!(std::fs::read(key_file(home.path())).unwrap(), b"garbage");
    }
}
