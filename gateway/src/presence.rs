//! Presence: who is connected and the last beacon each instance sent. Bounded: entries of disconnected
//! instances are forgotten oldest first.

use crate::now_ms;
use node_kit::protocol::{ClientMode, PresenceBeacon, PresenceEntry};
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_ENTRIES: usize = 512;

pub(crate) struct Presence {
    /// Per instance: the connection that owns its presence, and the entry.
    entries: Mutex<HashMap<String, (u64, PresenceEntry)>>,
}

impl Presence {
    pub(crate) fn new() -> Self {
        Presence { entries: Mutex::new(HashMap::new()) }
    }

    /// Records a connect and returns the entry to announce. The connection becomes the instance's owner.
    pub(crate) fn connected(&self, conn_id: u64, instance_id: &str, mode: ClientMode, platform: &str) -> PresenceEntry {
        let mut entries = self.entries.lock().expect("presence lock");
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(instance_id) {
            let oldest = entries
                .values()
                .filter(|(_, e)| !e.connected)
                .min_by_key(|(_, e)| e.updated_at_ms)
                .map(|(_, e)| e.instance_id.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let entry = PresenceEntry {
            instance_id: instance_id.to_string(),
            mode,
            platform: platform.to_string(),
            connected: true,
            beacon: None,
            updated_at_ms: now_ms(),
        };
        entries.insert(instance_id.to_string(), (conn_id, entry.clone()));
        entry
    }

    /// Records a disconnect, unless a newer connection of the same instance owns the entry (a node that
    /// reconnected must not be shown as gone when its old connection closes late).
    pub(crate) fn disconnected(&self, conn_id: u64, instance_id: &str) -> Option<PresenceEntry> {
        self.update(instance_id, Some(conn_id), |entry| entry.connected = false)
    }

    /// Records a beacon and returns the entry to announce.
    pub(crate) fn beacon(&self, instance_id: &str, beacon: PresenceBeacon) -> Option<PresenceEntry> {
        self.update(instance_id, None, |entry| entry.beacon = Some(beacon))
    }

    fn update(
        &self,
        instance_id: &str,
        owner: Option<u64>,
        change: impl FnOnce(&mut PresenceEntry),
    ) -> Option<PresenceEntry> {
        let mut entries = self.entries.lock().expect("presence lock");
        let (current_owner, entry) = entries.get_mut(instance_id)?;
        if owner.is_some_and(|owner| owner != *current_owner) {
            return None;
        }
        change(entry);
        entry.updated_at_ms = now_ms();
        Some(entry.clone())
    }

    pub(crate) fn list(&self) -> Vec<PresenceEntry> {
        let mut list: Vec<_> = self.entries.lock().expect("presence lock").values().map(|(_, e)| e.clone()).collect();
        list.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_disconnect_of_a_replaced_connection_is_ignored() {
        let presence = Presence::new();
        presence.connected(1, "phone", ClientMode::Node, "ios");
        presence.connected(2, "phone", ClientMode::Node, "ios");
        assert!(presence.disconnected(1, "phone").is_none());
        assert!(presence.list()[0].connected);
        assert!(!presence.disconnected(2, "phone").unwrap().connected);
    }
}
