//! The devices' push subscriptions, by node ID: one JSON file (mode 0600) under the gateway's directory,
//! replaced atomically on every change. An unreadable file refuses subscribing and sends nothing rather
//! than being overwritten.

use super::ece::Recipient;
use certs::KeyId;
use data_encoding::BASE64URL_NOPAD;
use node_kit::protocol::{ErrorCode, ErrorShape, PushSubscriptionKeys};
use node_kit::storage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// The file under the gateway's directory.
pub(crate) const SUBSCRIPTIONS_FILE: &str = "push-subscriptions.json";
const FILE_VERSION: u32 = 1;

/// One device's subscription: where to POST, and the keys to encrypt to.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Subscription {
    pub endpoint: String,
    pub p256dh: String,
    pub auth: Zeroizing<String>,
}

impl Subscription {
    /// Checks the keys (a point on P-256, a 16-byte secret) and keeps them as given.
    pub(crate) fn new(endpoint: String, keys: PushSubscriptionKeys) -> Result<Subscription, ErrorShape> {
        let subscription = Subscription { endpoint, p256dh: keys.p256dh, auth: Zeroizing::new(keys.auth) };
        subscription.recipient()?;
        Ok(subscription)
    }

    pub(crate) fn recipient(&self) -> Result<Recipient, ErrorShape> {
        let decode = |field: &str, text: &str| {
            BASE64URL_NOPAD
                .decode(text.trim_end_matches('=').as_bytes())
                .map_err(|_| ErrorShape::invalid_request(format!("keys.{field} is not base64url")))
        };
        let point = decode("p256dh", &self.p256dh)?;
        if point.len() != 65 {
            return Err(ErrorShape::invalid_request("keys.p256dh must be a 65-byte uncompressed P-256 point"));
        }
        let public_key = p256::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| ErrorShape::invalid_request("keys.p256dh is not a point on P-256"))?;
        let auth_secret = Zeroizing::new(decode("auth", &self.auth)?)
            .as_slice()
            .try_into()
            .map_err(|_| ErrorShape::invalid_request("keys.auth must be 16 bytes"))?;
        Ok(Recipient { public_key, auth_secret })
    }
}

#[derive(Serialize, Deserialize)]
struct SubscriptionsFile {
    version: u32,
    subscriptions: BTreeMap<KeyId, Subscription>,
}

pub(crate) struct Subscriptions {
    path: PathBuf,
    /// `None` when the file could not be read.
    by_node: Mutex<Option<BTreeMap<KeyId, Subscription>>>,
}

fn unreadable() -> ErrorShape {
    ErrorShape::new(
        ErrorCode::Internal,
        format!("the computer cannot read {SUBSCRIPTIONS_FILE}; see the gateway's log"),
    )
}

impl Subscriptions {
    pub(crate) fn load(path: PathBuf) -> Subscriptions {
        let read = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<SubscriptionsFile>(&bytes) {
                Ok(file) if file.version == FILE_VERSION => Some(file.subscriptions),
                Ok(file) => {
                    tracing::error!(
                        version = file.version,
                        "{SUBSCRIPTIONS_FILE} has a version this gateway does not know"
                    );
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read {SUBSCRIPTIONS_FILE}; no push is sent until it is fixed");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(BTreeMap::new()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read {SUBSCRIPTIONS_FILE}; no push is sent until it is fixed");
                None
            }
        };
        Subscriptions { path, by_node: Mutex::new(read) }
    }

    pub(crate) fn get(&self, node_id: &KeyId) -> Option<Subscription> {
        self.by_node.lock().expect("subscriptions lock").as_ref().and_then(|s| s.get(node_id).cloned())
    }

    /// Sets (or replaces) the node's subscription.
    pub(crate) fn set(&self, node_id: KeyId, subscription: Subscription) -> Result<(), ErrorShape> {
        self.change(|all| {
            all.insert(node_id, subscription);
            true
        })
        .map(|_| ())
    }

    /// Forgets the node's subscription; false when it had none.
    pub(crate) fn remove(&self, node_id: &KeyId) -> Result<bool, ErrorShape> {
        self.change(|all| all.remove(node_id).is_some())
    }

    /// Forgets the node's subscription only if it is still `endpoint` (the push service said it is gone,
    /// and the device may have subscribed again since).
    pub(crate) fn remove_if(&self, node_id: &KeyId, endpoint: &str) -> Result<bool, ErrorShape> {
        self.change(|all| match all.get(node_id) {
            Some(s) if s.endpoint == endpoint => all.remove(node_id).is_some(),
            _ => false,
        })
    }

    /// Applies `edit` to a copy and, when it changed something, writes it before keeping it.
    fn change(&self, edit: impl FnOnce(&mut BTreeMap<KeyId, Subscription>) -> bool) -> Result<bool, ErrorShape> {
        let mut guard = self.by_node.lock().expect("subscriptions lock");
        let current = guard.as_mut().ok_or_else(unreadable)?;
        let mut edited = current.clone();
        if !edit(&mut edited) {
            return Ok(false);
        }
        let file = SubscriptionsFile { version: FILE_VERSION, subscriptions: edited };
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("the file serialises"));
        storage::write_private_file(&self.path, &bytes).map_err(|e| {
            tracing::error!(error = %e, "cannot write {SUBSCRIPTIONS_FILE}");
            ErrorShape::new(ErrorCode::Internal, format!("cannot write {SUBSCRIPTIONS_FILE}: {e}"))
        })?;
        *current = file.subscriptions;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn keys() -> PushSubscriptionKeys {
        let point = p256::SecretKey::from_slice(&[9; 32]).unwrap().public_key().to_encoded_point(false);
        PushSubscriptionKeys {
            p256dh: BASE64URL_NOPAD.encode(point.as_bytes()),
            auth: BASE64URL_NOPAD.encode(&[3; 16]),
        }
    }

    #[test]
    fn keys_are_checked() {
        assert!(Subscription::new("https://p.example/x".into(), keys()).is_ok());
        let mut short = keys();
        short.auth = BASE64URL_NOPAD.encode(&[3; 15]);
        assert!(Subscription::new("https://p.example/x".into(), short).err().unwrap().message.contains("16 bytes"));
        let mut off_curve = keys();
        off_curve.p256dh = BASE64URL_NOPAD.encode(&[4; 65]);
        assert!(Subscription::new("https://p.example/x".into(), off_curve).err().unwrap().message.contains("P-256"));
        let mut garbage = keys();
        garbage.p256dh = "!!".into();
        assert!(Subscription::new("https://p.example/x".into(), garbage).err().unwrap().message.contains("base64url"));
    }

    #[test]
    fn kept_across_restarts_0600_and_an_unreadable_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SUBSCRIPTIONS_FILE);
        let node = KeyId::from_digest([1; 32]);
        let store = Subscriptions::load(path.clone());
        store.set(node, Subscription::new("https://p.example/a".into(), keys()).unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let restarted = Subscriptions::load(path.clone());
        assert_eq!(restarted.get(&node).unwrap().endpoint, "https://p.example/a");
        assert!(!restarted.remove_if(&node, "https://p.example/old").unwrap());
        assert!(restarted.remove_if(&node, "https://p.example/a").unwrap());
        assert!(!restarted.remove(&node).unwrap());

        std::fs::write(&path, "{").unwrap();
        let broken = Subscriptions::load(path.clone());
        assert_eq!(
            broken.set(node, Subscription::new("https://p.example/b".into(), keys()).unwrap()).unwrap_err().code,
            ErrorCode::Internal
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{");
    }
}
