//! Presence: who is connected and the last beacon each instance sent. Bounded: entries of disconnected
//! instances are forgotten oldest first.

use crate::now_ms;
use node_kit::protocol::{ClientMode, PresenceBeacon, PresenceEntry};
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_ENTRIES: usize = 512;

pub(crate) struct Presence {
    entries: Mutex<HashMap<String, PresenceEntry>>,
}

impl Presence {
    pub(crate) fn new() -> Self {
        Presence {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Records a connect or disconnect and returns the entry to announce.
    pub(crate) fn set_connected(
        &self,
        instance_id: &str,
        mode: ClientMode,
        platform: &str,
        connected: bool,
    ) -> PresenceEntry {
        self.update(instance_id, |entry| {
            entry.mode = mode;
            entry.platform = platform.to_string();
            entry.connected = connected;
        })
    }

    /// Records a beacon and returns the entry to announce.
    pub(crate) fn beacon(
        &self,
        instance_id: &str,
        mode: ClientMode,
        platform: &str,
        beacon: PresenceBeacon,
    ) -> PresenceEntry {
        self.update(instance_id, |entry| {
            entry.mode = mode;
            entry.platform = platform.to_string();
            entry.connected = true;
            entry.beacon = Some(beacon);
        })
    }

    fn update(&self, instance_id: &str, change: impl FnOnce(&mut PresenceEntry)) -> PresenceEntry {
        let mut entries = self.entries.lock().expect("presence lock");
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(instance_id) {
            let oldest = entries
                .values()
                .filter(|e| !e.connected)
                .min_by_key(|e| e.updated_at_ms)
                .map(|e| e.instance_id.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let entry = entries
            .entry(instance_id.to_string())
            .or_insert_with(|| PresenceEntry {
                instance_id: instance_id.to_string(),
                mode: ClientMode::Operator,
                platform: String::new(),
                connected: false,
                beacon: None,
                updated_at_ms: 0,
            });
        change(entry);
        entry.updated_at_ms = now_ms();
        entry.clone()
    }

    pub(crate) fn list(&self) -> Vec<PresenceEntry> {
        let mut list: Vec<_> = self
            .entries
            .lock()
            .expect("presence lock")
            .values()
            .cloned()
            .collect();
        list.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        list
    }
}
