//! The bridge's own counters, reported to the gateway every few seconds (`bridge.stats`), which shows
//! them on the console's `/metrics` with its own: the bridge serves no page of its own on the LAN.

use crate::source::Source;
use node_kit::protocol::BridgeStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the gateway hears the counters: a scrape is at most this stale.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(5);

const PATHS: [&str; 2] = ["lan", "relay"];

/// The index of the source's path in [`PATHS`].
fn path(source: Source) -> usize {
    source.path() as usize
}

#[derive(Default)]
pub(crate) struct Counters {
    handshakes: [AtomicU64; 2],
    connections: [AtomicU64; 2],
    relayed_bytes: [AtomicU64; 2],
}

/// A paired node's connection, counted while it lives.
pub(crate) struct Connected<'a> {
    counters: &'a Counters,
    path: usize,
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.counters.connections[self.path].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    pub(crate) fn handshake(&self, source: Source) {
        self.handshakes[path(source)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connected(&self, source: Source) -> Connected<'_> {
        self.connections[path(source)].fetch_add(1, Ordering::Relaxed);
        Connected { counters: self, path: path(source) }
    }

    pub(crate) fn relayed(&self, source: Source, bytes: usize) {
        self.relayed_bytes[path(source)].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Everything now, with the refusals and rate-limit hits the bridge keeps elsewhere.
    pub(crate) fn snapshot(
        &self,
        refused: std::collections::BTreeMap<String, u64>,
        rate_limited: std::collections::BTreeMap<String, u64>,
    ) -> BridgeStats {
        let by_path = |counters: &[AtomicU64; 2]| {
            PATHS.iter().zip(counters).map(|(p, c)| (p.to_string(), c.load(Ordering::Relaxed))).collect()
        };
        BridgeStats {
            handshakes: by_path(&self.handshakes),
            refused,
            rate_limited,
            connections: by_path(&self.connections),
            relayed_bytes: by_path(&self.relayed_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn counts_go_to_their_path_and_a_connection_counts_while_it_lives() {
        let counters = Counters::default();
        let (lan, relay) = (Source::Lan(IpAddr::from([10, 0, 0, 2])), Source::Relay([1; 32]));
        counters.handshake(lan);
        counters.handshake(relay);
        counters.handshake(relay);
        counters.relayed(relay, 100);
        let held = counters.connected(lan);
        let stats = counters.snapshot(Default::default(), Default::default());
        assert_eq!(stats.handshakes["lan"], 1);
        assert_eq!(stats.handshakes["relay"], 2);
        assert_eq!(stats.relayed_bytes["relay"], 100);
        assert_eq!(stats.connections["lan"], 1);
        drop(held);
        assert_eq!(counters.snapshot(Default::default(), Default::default()).connections["lan"], 0);
    }
}
