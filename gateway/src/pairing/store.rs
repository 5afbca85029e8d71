//! The store of paired nodes: one JSON file, mode 0600, replaced atomically on every change so that a
//! crash mid-write leaves the previous version in place.

use crate::now_ms;
use certs::KeyId;
use node_kit::protocol::PairedNode;
use node_kit::storage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct PairedStore {
    path: PathBuf,
    nodes: Mutex<BTreeMap<KeyId, PairedNode>>,
    /// Last-seen times changed in memory since the file was written.
    last_seen_unsaved: AtomicBool,
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    nodes: Vec<PairedNode>,
}

const STORE_VERSION: u32 = 1;

impl PairedStore {
    /// Reads the store at `path`; a missing file is an empty store. An unreadable file is an error, not
    /// an empty store: starting empty would silently unpair every device and then overwrite the file.
    pub fn load(path: PathBuf) -> io::Result<PairedStore> {
        if let Some(dir) = path.parent().filter(|d| d.is_dir()) {
            let removed = storage::remove_torn_writes(dir)?;
            if removed > 0 {
                tracing::warn!(removed, "removed half-written state files left by a crash");
            }
        }
        let nodes = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: StoreFile = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                if file.version != STORE_VERSION {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("store version {} is not {STORE_VERSION}", file.version),
                    ));
                }
                file.nodes.into_iter().map(|n| (n.node_id, n)).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(PairedStore { path, nodes: Mutex::new(nodes), last_seen_unsaved: AtomicBool::new(false) })
    }

    pub fn get(&self, node_id: &KeyId) -> Option<PairedNode> {
        self.nodes.lock().expect("store lock").get(node_id).cloned()
    }

    /// The node whose routing token hashes to `hash`.
    pub fn by_routing_hash(&self, hash: &str) -> Option<PairedNode> {
        let nodes = self.nodes.lock().expect("store lock");
        nodes.values().find(|n| n.routing_token_hash.as_deref() == Some(hash)).cloned()
    }

    pub fn list(&self) -> Vec<PairedNode> {
        self.nodes.lock().expect("store lock").values().cloned().collect()
    }

    /// Adds a record; false (and nothing written) when its ID is already paired, which it never replaces.
    pub fn add(&self, node: PairedNode) -> io::Result<bool> {
        self.change(|nodes| match nodes.entry(node.node_id) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(node);
                true
            }
        })
    }

    /// Returns false when no such node is paired.
    pub fn rename(&self, node_id: &KeyId, name: String) -> io::Result<bool> {
        self.change(|nodes| nodes.get_mut(node_id).map(|n| n.device.name = name).is_some())
    }

    /// Sets what the node's agent turns may do. Returns false when no such node is paired.
    pub fn set_policy(&self, node_id: &KeyId, policy: node_kit::protocol::NodePolicy) -> io::Result<bool> {
        self.change(|nodes| nodes.get_mut(node_id).map(|n| n.policy = policy).is_some())
    }

    /// Sets the hash of the node's relay routing token. Returns false when no such node is paired.
    pub fn set_routing_token(&self, node_id: &KeyId, hash: String) -> io::Result<bool> {
        self.change(|nodes| nodes.get_mut(node_id).map(|n| n.routing_token_hash = Some(hash)).is_some())
    }

    /// Removes the node's record; its key is unknown from then on. Returns false when it was not paired.
    pub fn revoke(&self, node_id: &KeyId) -> io::Result<bool> {
        self.change(|nodes| nodes.remove(node_id).is_some())
    }

    /// Records, in memory, that the node was just seen. Connecting must not cost a synced write of the
    /// whole store (10,000 nodes reconnecting after a restart would write it 10,000 times):
    /// [`PairedStore::save_last_seen`] writes every changed time at once, which the gateway does once a
    /// minute and when it stops.
    pub fn touch(&self, node_id: &KeyId) {
        if let Some(node) = self.nodes.lock().expect("store lock").get_mut(node_id) {
            node.last_seen_ms = now_ms();
            self.last_seen_unsaved.store(true, Ordering::Relaxed);
        }
    }

    /// Writes the store if a last-seen time changed since the last write. Returns whether it wrote.
    pub fn save_last_seen(&self) -> io::Result<bool> {
        if !self.last_seen_unsaved.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        self.change(|_| true).inspect_err(|_| self.last_seen_unsaved.store(true, Ordering::Relaxed))
    }

    /// Applies `edit` and, when it changed something, writes the whole store. The lock is held through the
    /// write so that writes land in the order of the changes.
    fn change(&self, edit: impl FnOnce(&mut BTreeMap<KeyId, PairedNode>) -> bool) -> io::Result<bool> {
        let mut nodes = self.nodes.lock().expect("store lock");
        let mut edited = nodes.clone();
        if !edit(&mut edited) {
            return Ok(false);
        }
        // Every write carries the latest last-seen times.
        self.last_seen_unsaved.store(false, Ordering::Relaxed);
        let file = StoreFile { version: STORE_VERSION, nodes: edited.values().cloned().collect() };
        let bytes = serde_json::to_vec_pretty(&file).expect("the store serialises");
        storage::write_private_file(&self.path, &bytes)?;
        *nodes = edited;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::{DeviceInfo, Scope};
    use std::os::unix::fs::PermissionsExt;

    fn node(seed: &str, name: &str) -> PairedNode {
        PairedNode {
            node_id: KeyId::of_spki(seed.as_bytes()),
            device: DeviceInfo { name: name.into(), platform: "test".into(), model: None },
            scopes: vec![Scope::Chat],
            created_at_ms: 1,
            last_seen_ms: 1,
            policy: Default::default(),
            routing_token_hash: None,
        }
    }

    #[test]
    fn changes_persist_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway").join("paired-nodes.json");
        let store = PairedStore::load(path.clone()).unwrap();
        store.add(node("a", "phone")).unwrap();
        store.add(node("b", "tablet")).unwrap();
        assert!(store.rename(&KeyId::of_spki(b"a"), "Ada's phone".into()).unwrap());
        assert!(store.revoke(&KeyId::of_spki(b"b")).unwrap());
        assert!(!store.revoke(&KeyId::of_spki(b"b")).unwrap());
        let reloaded = PairedStore::load(path.clone()).unwrap();
        let names: Vec<_> = reloaded.list().into_iter().map(|n| n.device.name).collect();
        assert_eq!(names, ["Ada's phone"]);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_paired_id_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired-nodes.json");
        let store = PairedStore::load(path.clone()).unwrap();
        let mut first = node("a", "phone");
        first.routing_token_hash = Some("first's token".into());
        assert!(store.add(first).unwrap());
        assert!(!store.add(node("a", "impostor")).unwrap(), "the same ID again is refused");
        for store in [store, PairedStore::load(path).unwrap()] {
            let kept = store.get(&KeyId::of_spki(b"a")).unwrap();
            assert_eq!(
                (kept.device.name.as_str(), kept.routing_token_hash.as_deref()),
                ("phone", Some("first's token"))
            );
        }
    }

    #[test]
    fn last_seen_reaches_the_disk_only_when_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired-nodes.json");
        let store = PairedStore::load(path.clone()).unwrap();
        store.add(node("a", "phone")).unwrap();
        let id = KeyId::of_spki(b"a");
        assert!(!store.save_last_seen().unwrap(), "nothing to save yet");
        store.touch(&id);
        store.touch(&KeyId::of_spki(b"unknown"));
        assert!(store.get(&id).unwrap().last_seen_ms > 1, "kept in memory at once");
        assert_eq!(PairedStore::load(path.clone()).unwrap().get(&id).unwrap().last_seen_ms, 1, "not written");
        assert!(store.save_last_seen().unwrap());
        let written = PairedStore::load(path.clone()).unwrap().get(&id).unwrap().last_seen_ms;
        assert_eq!(written, store.get(&id).unwrap().last_seen_ms);
        assert!(!store.save_last_seen().unwrap(), "written once");
        store.touch(&id);
        store.rename(&id, "renamed".into()).unwrap();
        assert!(!store.save_last_seen().unwrap(), "the rename's write carried the time");
    }

    #[test]
    fn an_unreadable_store_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired-nodes.json");
        std::fs::write(&path, b"{ half a fi").unwrap();
        assert_eq!(PairedStore::load(path).err().unwrap().kind(), io::ErrorKind::InvalidData);
    }

    /// Where the crash test's child process writes; set only for the child.
    const CRASH_CHILD_ENV: &str = "LANYARD_STORE_CRASH_CHILD";

    /// The child half of the crash test: writes ever larger stores until it is killed.
    fn write_until_killed(path: PathBuf) -> ! {
        let store = PairedStore::load(path).unwrap();
        for i in 0.. {
            // Long names make each write large enough to be caught in the middle.
            store.add(node(&format!("n{i}"), &"x".repeat(20_000))).unwrap();
        }
        unreachable!("killed by the parent")
    }

    #[test]
    fn a_crash_mid_write_leaves_the_previous_store() {
        // Re-run as the child (the same test, in another process) when the parent says so.
        if let Some(path) = std::env::var_os(CRASH_CHILD_ENV) {
            write_until_killed(PathBuf::from(path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paired-nodes.json");
        PairedStore::load(path.clone()).unwrap().add(node("first", "first")).unwrap();
        let leftovers =
            || std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().path() != path).count();
        // Kill the writer the moment a write is under way (its temp file exists) until at least three kills
        // have landed before the rename, checking the store after every kill.
        let mut torn = 0;
        for round in 0..50 {
            if torn >= 3 {
                break;
            }
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "pairing::store::tests::a_crash_mid_write_leaves_the_previous_store"])
                .env(CRASH_CHILD_ENV, &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while leftovers() == 0 && std::time::Instant::now() < deadline {
                std::hint::spin_loop();
            }
            child.kill().unwrap();
            child.wait().unwrap();
            torn += leftovers();
            let store = PairedStore::load(path.clone()).expect("the store survives a crash mid-write");
            assert!(store.get(&KeyId::of_spki(b"first")).is_some(), "round {round}: the earlier store is intact");
            assert_eq!(leftovers(), 0, "loading clears what the crash left");
        }
        assert!(torn >= 3, "too few kills landed mid-write; the test proved nothing");
    }
}
