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
    #[error(
        "the bridge key was stored in the OS keychain, which cannot give it back now ({reason}); unlock the \
         keychain and start again. A new key would unpair every device: to start over anyway, delete {}",
        marker.display()
    )]
    KeychainLost { marker: PathBuf, reason: String },
}

pub fn key_file(home: &Path) -> PathBuf {
    home.join("bridge").join("identity.pem")
}

/// Where the key went last time, when that was the keychain: without this note, a keychain that is locked
/// or gone at the next start would look like a first run, and a new key would unpair every device.
pub fn keychain_marker(home: &Path) -> PathBuf {
    home.join("bridge").join("identity.in-keychain")
}

/// Loads the bridge's key, creating it on first run. A key file, once there, is always used, and so is a
/// key the keychain holds; with [`KeyStore::Auto`] a new key goes to the keychain when one works.
pub fn load_or_create(home: &Path, store: KeyStore) -> Result<(Identity, KeyLocation), IdentityStoreError> {
    let path = key_file(home);
    let io_error = |source| IdentityStoreError::Io { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(pem) => return parse(&pem, KeyLocation::File(path.clone())),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(e)),
        Err(_) => {}
    }
    let marker = keychain_marker(home);
    let stored_there = marker.exists();
    // A key already in the keychain is looked for there whatever the setting: the setting only says where a
    // new key goes, and a new key would unpair every device.
    if store == KeyStore::Auto || stored_there {
        match keychain_read(home) {
            Ok(Some(pem)) => return parse(&pem, KeyLocation::Keychain),
            Ok(None) if !stored_there => {
                if let Some(identity) = keychain_create(home, &marker)? {
                    return Ok((identity, KeyLocation::Keychain));
                }
            }
            Ok(None) => return Err(IdentityStoreError::KeychainLost { marker, reason: "the entry is gone".into() }),
            Err(e) if stored_there => return Err(IdentityStoreError::KeychainLost { marker, reason: e.to_string() }),
            Err(e) => tracing::info!(error = %e, "no usable keychain; using a 0600 file for the bridge key"),
        }
    }
    let identity = Identity::generate();
    storage::write_private_file(&path, identity.to_pkcs8_pem().as_bytes()).map_err(io_error)?;
    Ok((identity, KeyLocation::File(path)))
}

fn parse(pem: &str, location: KeyLocation) -> Result<(Identity, KeyLocation), IdentityStoreError> {
    match Identity::from_pkcs8_pem(pem) {
        Ok(identity) => Ok((identity, location)),
        Err(source) => Err(IdentityStoreError::Corrupt { location, source }),
    }
}

/// This home's key from the keychain: `None` when the keychain works but holds none.
fn keychain_read(home: &Path) -> keyring::Result<Option<String>> {
    match keychain_entry(home)?.get_password() {
        Ok(pem) => Ok(Some(pem)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A new key stored in the keychain, with the marker that says so; `None` when the keychain refuses it.
fn keychain_create(home: &Path, marker: &Path) -> Result<Option<Identity>, IdentityStoreError> {
    let identity = Identity::generate();
    if let Err(e) = keychain_entry(home).and_then(|entry| entry.set_password(&identity.to_pkcs8_pem())) {
        tracing::info!(error = %e, "the keychain refused the bridge key; using a 0600 file");
        return Ok(None);
    }
    storage::write_private_file(marker, b"the bridge key is in the OS keychain\n")
        .map_err(|source| IdentityStoreError::Io { path: marker.to_path_buf(), source })?;
    Ok(Some(identity))
}

/// The keychain entry of this home's bridge key; one entry per home, so two installations on one account do
/// not share a key.
fn keychain_entry(home: &Path) -> keyring::Result<keyring::Entry> {
    keyring::Entry::new("lanyard-bridge", &home.display().to_string())
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

    #[test]
    fn a_key_once_in_the_keychain_is_never_silently_replaced() {
        let home = tempfile::tempdir().unwrap();
        storage::write_private_file(&keychain_marker(home.path()), b"").unwrap();
        // This home's keychain entry does not exist (or there is no keychain): that is a lost key, not a
        // first run.
        for store in [KeyStore::Auto, KeyStore::File] {
            let refused = load_or_create(home.path(), store).unwrap_err();
            assert!(matches!(refused, IdentityStoreError::KeychainLost { .. }), "{refused}");
        }
        assert!(!key_file(home.path()).exists());
    }
}
