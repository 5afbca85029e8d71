//! Every live connection, so events can reach all operators and `health` can count them.

use node_kit::outbound::Outbound;
use node_kit::protocol::ClientMode;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

pub(crate) struct ConnectionHub {
    peers: Mutex<HashMap<u64, (ClientMode, Outbound)>>,
}

impl ConnectionHub {
    pub(crate) fn new() -> Self {
        ConnectionHub { peers: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn insert(&self, conn_id: u64, mode: ClientMode, outbound: Outbound) {
        self.peers.lock().expect("hub lock").insert(conn_id, (mode, outbound));
    }

    pub(crate) fn remove(&self, conn_id: u64) {
        self.peers.lock().expect("hub lock").remove(&conn_id);
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.lock().expect("hub lock").len()
    }

    /// Sends an event to every operator and bridge connection (nodes only hear what is meant for them).
    pub(crate) fn broadcast(&self, event: &str, payload: impl Serialize) {
        let payload = serde_json::to_value(payload).expect("event payloads serialise");
        let targets: Vec<Outbound> = self
            .peers
            .lock()
            .expect("hub lock")
            .values()
            .filter(|(mode, _)| *mode != ClientMode::Node)
            .map(|(_, out)| out.clone())
            .collect();
        for out in targets {
            out.event(event, payload.clone());
        }
    }

    /// Sends an event to every operator except the connections in `except` (which have it already).
    pub(crate) fn to_operators(&self, event: &str, payload: &serde_json::Value, except: &[u64]) {
        let targets: Vec<Outbound> = self
            .peers
            .lock()
            .expect("hub lock")
            .iter()
            .filter(|(id, (mode, _))| *mode == ClientMode::Operator && !except.contains(id))
            .map(|(_, (_, out))| out.clone())
            .collect();
        for out in targets {
            out.event(event, payload.clone());
        }
    }
}
