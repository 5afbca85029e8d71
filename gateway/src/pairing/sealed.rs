//! The clients of the sealed HTTP contract: per client, the seal key its PIN exchange derived and the last
//! counter the computer took from it. One JSON file (mode 0600), replaced atomically on every change, and
//! written before a body is let through: a body is taken once, even across a crash or a restart.

use certs::KeyId;
use node_kit::protocol::{ErrorCode, ErrorShape};
use node_kit::seal::{Direction, SealKey};
use node_kit::storage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use zeroize::Zeroizing;

/// The file under the gateway's home.
pub const SEALED_FILE: &str = "sealed-clients.json";
const FILE_VERSION: u32 = 1;

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Client {
    seal_key: Zeroizing<String>,
    last_counter: u64,
}

#[derive(Serialize, Deserialize)]
struct SealedFile {
    version: u32,
    clients: BTreeMap<KeyId, Client>,
}

pub(crate) struct SealedClients {
    path: PathBuf,
    /// `None` when the file could not be read: then nothing is opened and nothing is written, rather than
    /// starting empty and overwriting every client's key.
    clients: Mutex<Option<BTreeMap<KeyId, Client>>>,
}

fn refused(reason: &str, message: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::SealRejected, message).with_details(serde_json::json!({ "reason": reason }))
}

fn unreadable_store() -> ErrorShape {
    ErrorShape::new(ErrorCode::Internal, format!("the computer cannot read {SEALED_FILE}; see the gateway's log"))
}

impl SealedClients {
    pub(crate) fn load(path: PathBuf) -> SealedClients {
        let clients = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<SealedFile>(&bytes) {
                Ok(file) if file.version == FILE_VERSION => Some(file.clients),
                Ok(file) => {
                    tracing::error!(version = file.version, "{SEALED_FILE} has a version this gateway does not know");
                    None
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read {SEALED_FILE}; sealed clients are refused until it is fixed");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(BTreeMap::new()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read {SEALED_FILE}; sealed clients are refused until it is fixed");
                None
            }
        };
        SealedClients { path, clients: Mutex::new(clients) }
    }

    /// Applies `edit` to a copy, writes it, and only then keeps it.
    fn change<T>(
        &self,
        edit: impl FnOnce(&mut BTreeMap<KeyId, Client>) -> Result<T, ErrorShape>,
    ) -> Result<T, ErrorShape> {
        let mut guard = self.clients.lock().expect("sealed clients lock");
        let clients = guard.as_mut().ok_or_else(unreadable_store)?;
        let mut edited = clients.clone();
        let answer = edit(&mut edited)?;
        let file = SealedFile { version: FILE_VERSION, clients: edited };
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("the file serialises"));
        storage::write_private_file(&self.path, &bytes).map_err(|e| {
            tracing::error!(error = %e, "cannot write {SEALED_FILE}");
            ErrorShape::new(ErrorCode::Internal, format!("cannot write {SEALED_FILE}: {e}"))
        })?;
        *clients = file.clients;
        Ok(answer)
    }

    /// Keeps a newly paired client's key; its counters start at 1. A client's key is never replaced: an ID
    /// already here is refused.
    pub(crate) fn add(&self, node_id: KeyId, key: &SealKey) -> Result<(), ErrorShape> {
        self.change(|clients| match clients.entry(node_id) {
            std::collections::btree_map::Entry::Occupied(_) => Err(crate::methods::already_paired(&node_id)),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(Client { seal_key: key.to_base64(), last_counter: 0 });
                Ok(())
            }
        })
    }

    /// Forgets a client (revoked); false when it was none.
    pub(crate) fn forget(&self, node_id: &KeyId) -> Result<bool, ErrorShape> {
        let known = self.clients.lock().expect("sealed clients lock").as_ref().is_some_and(|c| c.contains_key(node_id));
        if !known {
            return Ok(false);
        }
        self.change(|clients| Ok(clients.remove(node_id).is_some()))
    }

    /// Opens `node_id`'s body number `counter`, once: a counter at or below the last one taken is a replay.
    /// The counter is only spent by a body that opens, so nobody without the key can use up a client's
    /// numbers. Returns the plaintext and the key for the answer.
    pub(crate) fn open(&self, node_id: &KeyId, counter: u64, sealed: &str) -> Result<(Vec<u8>, SealKey), ErrorShape> {
        self.change(|clients| {
            let client = clients.get_mut(node_id).ok_or_else(|| {
                ErrorShape::new(ErrorCode::Unauthorized, "this token does not belong to a sealed client")
            })?;
            let key = SealKey::from_base64(&client.seal_key).ok_or_else(unreadable_store)?;
            if counter <= client.last_counter {
                return Err(refused("replayed", "this counter was already used: seal every body with a new one"));
            }
            let plaintext =
                key.open(Direction::ToBridge, counter, 0, sealed).map_err(|e| refused("unreadable", &e.to_string()))?;
            client.last_counter = counter;
            Ok((plaintext, key))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8) -> KeyId {
        KeyId::from_digest([byte; 32])
    }

    fn reason(e: ErrorShape) -> String {
        assert_eq!(e.code, ErrorCode::SealRejected);
        e.details.unwrap()["reason"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_body_opens_once_and_only_with_a_higher_counter_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEALED_FILE);
        let key = SealKey::new([5; 32]);
        let store = SealedClients::load(path.clone());
        store.add(id(1), &key).unwrap();
        let first = key.seal(Direction::ToBridge, 1, 0, b"one");
        assert_eq!(store.open(&id(1), 1, &first).unwrap().0, b"one");
        assert_eq!(reason(store.open(&id(1), 1, &first).err().unwrap()), "replayed");

        let restarted = SealedClients::load(path);
        assert_eq!(reason(restarted.open(&id(1), 1, &first).err().unwrap()), "replayed");
        let third = key.seal(Direction::ToBridge, 3, 0, b"three");
        assert_eq!(restarted.open(&id(1), 3, &third).unwrap().0, b"three");
        let second = key.seal(Direction::ToBridge, 2, 0, b"two");
        assert_eq!(reason(restarted.open(&id(1), 2, &second).err().unwrap()), "replayed");
    }

    #[test]
    fn a_clients_key_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SealedClients::load(dir.path().join(SEALED_FILE));
        let key = SealKey::new([5; 32]);
        store.add(id(1), &key).unwrap();
        let other = SealKey::new([6; 32]);
        assert_eq!(store.add(id(1), &other).err().unwrap().code, ErrorCode::Forbidden);
        let sealed = key.seal(Direction::ToBridge, 1, 0, b"still mine");
        assert_eq!(store.open(&id(1), 1, &sealed).unwrap().0, b"still mine");
    }

    #[test]
    fn a_body_that_does_not_open_spends_no_counter() {
        let dir = tempfile::tempdir().unwrap();
        let store = SealedClients::load(dir.path().join(SEALED_FILE));
        let key = SealKey::new([5; 32]);
        store.add(id(1), &key).unwrap();
        let forged = SealKey::new([6; 32]).seal(Direction::ToBridge, u64::MAX, 0, b"x");
        assert_eq!(reason(store.open(&id(1), u64::MAX, &forged).err().unwrap()), "unreadable");
        assert!(store.open(&id(1), 1, &key.seal(Direction::ToBridge, 1, 0, b"ok")).is_ok());
    }

    #[test]
    fn unknown_and_forgotten_clients_are_refused_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEALED_FILE);
        let store = SealedClients::load(path.clone());
        let key = SealKey::new([5; 32]);
        store.add(id(1), &key).unwrap();
        assert_eq!(store.open(&id(2), 1, "x").err().unwrap().code, ErrorCode::Unauthorized);
        assert!(store.forget(&id(1)).unwrap());
        assert!(!store.forget(&id(1)).unwrap());
        let sealed = key.seal(Direction::ToBridge, 1, 0, b"x");
        assert_eq!(store.open(&id(1), 1, &sealed).err().unwrap().code, ErrorCode::Unauthorized);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_unreadable_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SEALED_FILE);
        std::fs::write(&path, b"{ torn").unwrap();
        let store = SealedClients::load(path.clone());
        assert_eq!(store.add(id(1), &SealKey::new([1; 32])).err().unwrap().code, ErrorCode::Internal);
        assert_eq!(std::fs::read(&path).unwrap(), b"{ torn");
        // Nor is a file of a version this gateway does not know.
        let newer = dir.path().join("newer.json");
        std::fs::write(&newer, br#"{"version":2,"clients":{}}"#).unwrap();
        let store = SealedClients::load(newer);
        assert_eq!(store.add(id(1), &SealKey::new([1; 32])).err().unwrap().code, ErrorCode::Internal);
        // A file that cannot be read at all (here a directory in its place) is not an empty store either.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        let store = SealedClients::load(blocked);
        assert_eq!(store.add(id(1), &SealKey::new([1; 32])).err().unwrap().code, ErrorCode::Internal);
    }
}

/// The computer's side of the counter rules (`docs/protocol.md`, "Sealing") against a model, over any
/// sequence of bodies.
#[cfg(test)]
mod counter_rules {
    use super::*;
    use proptest::prelude::*;

    /// One body a client or the relay sends: its counter, whether it was sealed under the client's key
    /// (else a forgery), and whether the gateway restarts before it.
    type Body = (u64, bool, bool);

    fn body() -> impl Strategy<Value = Body> {
        (prop_oneof![0u64..8, Just(u64::MAX)], any::<bool>(), prop::bool::weighted(0.1))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// A body is taken only when its counter is above every counter taken before (so counter 0, the
        /// pairing answer's, never), and only when it opens; a body that does not open spends nothing. The
        /// store agrees with that model after restarts, whatever the order: replays and reordered bodies
        /// are `replayed`, forgeries `unreadable`.
        #[test]
        fn a_body_is_taken_once_in_rising_order(bodies in proptest::collection::vec(body(), 1..16)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(SEALED_FILE);
            let (client, key, forger) = (KeyId::from_digest([1; 32]), SealKey::new([5; 32]), SealKey::new([6; 32]));
            let mut store = SealedClients::load(path.clone());
            store.add(client, &key).unwrap();
            let mut last_taken = 0;
            for (counter, genuine, restart) in bodies {
                if restart {
                    store = SealedClients::load(path.clone());
                }
                let plaintext = format!("body {counter}");
                let sealer = if genuine { &key } else { &forger };
                let sealed = sealer.seal(Direction::ToBridge, counter, 0, plaintext.as_bytes());
                let outcome = store.open(&client, counter, &sealed).map(|(opened, _)| opened);
                if counter <= last_taken {
                    prop_assert_eq!(refusal(outcome), "replayed");
                } else if !genuine {
                    prop_assert_eq!(refusal(outcome), "unreadable");
                } else {
                    prop_assert_eq!(outcome.map_err(|e| e.message), Ok(plaintext.into_bytes()));
                    last_taken = counter;
                }
            }
        }
    }

    fn refusal(outcome: Result<Vec<u8>, ErrorShape>) -> String {
        match outcome {
            Ok(opened) => format!("taken: {}", String::from_utf8_lossy(&opened)),
            Err(e) if e.code == ErrorCode::SealRejected => e.details.unwrap()["reason"].as_str().unwrap().to_string(),
            Err(e) => format!("{e:?}"),
        }
    }
}
