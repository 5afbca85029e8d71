//! Refusals counted, not logged one by one. A flood of connections a server turns away must not turn into a
//! flood of log lines: each refusal is a DEBUG line and a count, and INFO gets one summary per interval
//! ("refused N connections from M addresses in the last 60 s: reason=count, …").

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct addresses remembered per interval; beyond it the summary says "at least".
const MAX_ADDRESSES: usize = 4096;

/// `K` is what a refusal is counted by: an address, or whatever else names where a connection came from.
pub struct RefusalLog<K = IpAddr> {
    /// What is refused, for the summary ("connections", "gateway tokens").
    what: &'static str,
    window: Mutex<Window<K>>,
    since_start: Mutex<BTreeMap<&'static str, u64>>,
}

struct Window<K> {
    started: Instant,
    total: u64,
    by_reason: BTreeMap<&'static str, u64>,
    addresses: HashSet<K>,
}

impl<K> Window<K> {
    fn new() -> Window<K> {
        Window { started: Instant::now(), total: 0, by_reason: BTreeMap::new(), addresses: HashSet::new() }
    }
}

/// One interval's refusals, as the summary line reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    pub total: u64,
    pub addresses: usize,
    /// True when more distinct addresses came than were remembered.
    pub addresses_capped: bool,
    pub by_reason: BTreeMap<&'static str, u64>,
    pub over: Duration,
}

impl<K: Hash + Eq + Display> RefusalLog<K> {
    pub fn new(what: &'static str) -> RefusalLog<K> {
        RefusalLog { what, window: Mutex::new(Window::new()), since_start: Mutex::new(BTreeMap::new()) }
    }

    /// Refusals since the server started, by reason.
    pub fn since_start(&self) -> BTreeMap<String, u64> {
        let counts = self.since_start.lock().expect("refusal log lock");
        counts.iter().map(|(reason, n)| (reason.to_string(), *n)).collect()
    }

    /// Counts one refusal of `from` for `reason` (a short stable word, e.g. `rate-limited`).
    pub fn refused(&self, from: K, reason: &'static str) {
        tracing::debug!(%from, reason, what = self.what, "refused");
        *self.since_start.lock().expect("refusal log lock").entry(reason).or_default() += 1;
        let mut window = self.window.lock().expect("refusal log lock");
        window.total += 1;
        *window.by_reason.entry(reason).or_default() += 1;
        if window.addresses.len() < MAX_ADDRESSES {
            window.addresses.insert(from);
        }
    }

    /// Ends the interval: logs one INFO line if anything was refused, and returns what it said.
    pub fn summarise(&self) -> Option<RefusalSummary> {
        let window = std::mem::replace(&mut *self.window.lock().expect("refusal log lock"), Window::new());
        if window.total == 0 {
            return None;
        }
        let summary = RefusalSummary {
            total: window.total,
            addresses: window.addresses.len(),
            addresses_capped: window.addresses.len() >= MAX_ADDRESSES,
            by_reason: window.by_reason,
            over: window.started.elapsed(),
        };
        let reasons: Vec<String> = summary.by_reason.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
        tracing::info!(
            "refused {} {} from {}{} addresses in the last {} s: {}",
            summary.total,
            self.what,
            if summary.addresses_capped { "at least " } else { "" },
            summary.addresses,
            summary.over.as_secs().max(1),
            reasons.join(", ")
        );
        Some(summary)
    }

    /// Summarises every `every` until `stop` is cancelled.
    pub async fn summarise_every(&self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = timer.tick() => { self.summarise(); }
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_address_then_starts_again() {
        let log = RefusalLog::new("connections");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        log.refused(a, "rate-limited");
        log.refused(a, "rate-limited");
        log.refused(b, "tls");
        let summary = log.summarise().unwrap();
        assert_eq!(summary.total, 3);
        assert_eq!(summary.addresses, 2);
        assert!(!summary.addresses_capped);
        assert_eq!(summary.by_reason[&"rate-limited"], 2);
        assert_eq!(summary.by_reason[&"tls"], 1);
        assert_eq!(log.summarise(), None, "a quiet interval logs nothing");
        assert_eq!(log.since_start()["rate-limited"], 2);
    }

    #[test]
    fn the_address_set_is_bounded() {
        let log = RefusalLog::new("connections");
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            log.refused(IpAddr::from(i.to_be_bytes()), "full");
        }
        let summary = log.summarise().unwrap();
        assert_eq!(summary.addresses, MAX_ADDRESSES);
        assert!(summary.addresses_capped);
    }
}
