//! The app's secure storage: the device key and the list of paired computers live only there (the iOS
//! Keychain, the Android Keystore; a 0600 file store for desktops and tests).

use crate::NodeKitError;
use node_kit::pairing::PairedBridge;
use node_kit::protocol::LinkPath;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Storage the app provides. Items are small byte strings under fixed names: `device-key` (the device's
/// Ed25519 key, PKCS#8 PEM) and `computers` (the paired computers, with the relay routing tokens, JSON).
/// Both are secrets: keep them where the platform keeps keys.
#[uniffi::export(with_foreign)]
pub trait KeyStore: Send + Sync {
    /// The item, or nothing if it was never written (or was deleted).
    fn read(&self, item: String) -> Result<Option<Vec<u8>>, NodeKitError>;
    /// Replaces the item; it must be in place when this returns.
    fn write(&self, item: String, value: Vec<u8>) -> Result<(), NodeKitError>;
    fn delete(&self, item: String) -> Result<(), NodeKitError>;
}

/// The item that holds the device key.
pub const DEVICE_KEY: &str = "device-key";
/// The item that holds the paired computers.
pub const COMPUTERS: &str = "computers";

/// node-kit's file store: each item a 0600 file in `directory` (created 0700), replaced atomically. For
/// desktops and tests; a phone app passes its Keychain or Keystore instead.
#[uniffi::export]
pub fn file_key_store(directory: String) -> Arc<dyn KeyStore> {
    Arc::new(FileKeyStore { directory: PathBuf::from(directory) })
}

struct FileKeyStore {
    directory: PathBuf,
}

impl FileKeyStore {
    fn path(&self, item: &str) -> Result<PathBuf, NodeKitError> {
        if item.is_empty() || !item.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(NodeKitError::Invalid { detail: format!("{item:?} is not a key store item name") });
        }
        Ok(self.directory.join(item))
    }
}

fn store_error(e: std::io::Error) -> NodeKitError {
    NodeKitError::Store { detail: e.to_string() }
}

impl KeyStore for FileKeyStore {
    fn read(&self, item: String) -> Result<Option<Vec<u8>>, NodeKitError> {
        match std::fs::read(self.path(&item)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    fn write(&self, item: String, value: Vec<u8>) -> Result<(), NodeKitError> {
        node_kit::storage::write_private_file(&self.path(&item)?, &value).map_err(store_error)
    }

    fn delete(&self, item: String) -> Result<(), NodeKitError> {
        match std::fs::remove_file(self.path(&item)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(store_error(e)),
            _ => Ok(()),
        }
    }
}

/// The device key from the store, created and stored there on first use. It is kept nowhere else: not
/// on disk by this library, not in any log.
pub fn load_or_create_identity(store: &dyn KeyStore) -> Result<certs::Identity, NodeKitError> {
    if let Some(pem) = store.read(DEVICE_KEY.into())? {
        let pem = String::from_utf8(pem).map_err(|_| invalid_key("it is not text"))?;
        return certs::Identity::from_pkcs8_pem(&pem).map_err(|e| invalid_key(&e.to_string()));
    }
    let identity = certs::Identity::generate();
    store.write(DEVICE_KEY.into(), identity.to_pkcs8_pem().as_bytes().to_vec())?;
    Ok(identity)
}

fn invalid_key(why: &str) -> NodeKitError {
    NodeKitError::Store { detail: format!("the stored device key is unusable ({why})") }
}

/// One paired computer as stored: the pairing itself, and what the app shows about it.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredComputer {
    pub paired: PairedBridge,
    /// The computer's name, from its `hello-ok` or its mDNS announcement.
    #[serde(default)]
    pub name: Option<String>,
    /// The path of the last connection.
    #[serde(default)]
    pub last_path: Option<LinkPath>,
}

pub fn load_computers(store: &dyn KeyStore) -> Result<Vec<StoredComputer>, NodeKitError> {
    match store.read(COMPUTERS.into())? {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| NodeKitError::Store { detail: format!("the stored computers are unreadable: {e}") }),
    }
}

pub fn save_computers(store: &dyn KeyStore, computers: &[StoredComputer]) -> Result<(), NodeKitError> {
    store.write(COMPUTERS.into(), serde_json::to_vec(computers).expect("computers serialise"))
}
