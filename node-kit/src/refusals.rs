//! Refusals counted, not logged one by one. A flood of connections a server turns away must not turn into a
//! flood of log lines: each refusal is a DEBUG line and a count, and INFO gets one summary per interval
//! ("refused N connections from M addresses in the last 60 s: reason=count, …"). A failing `accept` (out of
//! descriptors, most often) is counted the same way, and [`AcceptBackoff`] spaces the retries; [`Acceptor`] is
//! the accept loop every server of ours runs with them.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Display;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct addresses remembered per interval; beyond it the summary says "at least".
const MAX_ADDRESSES: usize = 4096;
/// `accept`'s "too many open files" for the process and for the system (the same numbers on Linux and macOS).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;
/// The first wait after a failed `accept`, doubled while failures go on, up to the last.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

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
        self.count(Some(from), reason);
    }

    /// Counts one failed `accept`: no address to count it by, and a reason that says whether the process ran
    /// out of descriptors.
    pub fn accept_failed(&self, error: &std::io::Error) {
        let reason = match error.raw_os_error() {
            Some(EMFILE | ENFILE) => "out-of-descriptors",
            _ => "accept-failed",
        };
        tracing::debug!(%error, what = self.what, "accept failed");
        self.count(None, reason);
    }

    fn count(&self, from: Option<K>, reason: &'static str) {
        *self.since_start.lock().expect("refusal log lock").entry(reason).or_default() += 1;
        let mut window = self.window.lock().expect("refusal log lock");
        window.total += 1;
        *window.by_reason.entry(reason).or_default() += 1;
        if let Some(from) = from
            && window.addresses.len() < MAX_ADDRESSES
        {
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

/// The wait between `accept` calls while they fail: a process out of descriptors stays out for a while, and
/// retrying at once would spin a core and fill the log.
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { next: FIRST_BACKOFF }
    }
}

impl AcceptBackoff {
    /// An accept worked: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.next = FIRST_BACKOFF;
    }

    /// Counts `error` into `log`, then waits (twice as long as last time, at most [`MAX_BACKOFF`]) or until `stop`.
    pub async fn failed<K: Hash + Eq + Display>(
        &mut self,
        log: &RefusalLog<K>,
        error: &std::io::Error,
        stop: &tokio_util::sync::CancellationToken,
    ) {
        log.accept_failed(error);
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// A server's accept loop: accepts until `stop`, counts and spaces failed accepts, and owns the tasks that
/// serve the accepted connections, so that a shutdown can wait for them.
pub struct Acceptor<'a, K> {
    listener: tokio::net::TcpListener,
    log: &'a RefusalLog<K>,
    stop: tokio_util::sync::CancellationToken,
    backoff: AcceptBackoff,
    connections: tokio::task::JoinSet<()>,
}

impl<'a, K: Hash + Eq + Display> Acceptor<'a, K> {
    pub fn new(
        listener: tokio::net::TcpListener,
        log: &'a RefusalLog<K>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Acceptor<'a, K> {
        Acceptor { listener, log, stop, backoff: AcceptBackoff::default(), connections: tokio::task::JoinSet::new() }
    }

    /// The next connection, or `None` once `stop` is cancelled. Finished connection tasks are reaped meanwhile.
    pub async fn next(&mut self) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => {
                        self.backoff.succeeded();
                        return Some(accepted);
                    }
                    Err(e) => self.backoff.failed(self.log, &e, &self.stop).await,
                },
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {}
                () = self.stop.cancelled() => return None,
            }
        }
    }

    /// Serves an accepted connection on a task of this loop.
    pub fn spawn(&mut self, serve: impl std::future::Future<Output = ()> + Send + 'static) {
        self.connections.spawn(serve);
    }

    /// Waits until every connection's task has ended.
    pub async fn finish(mut self) {
        while self.connections.join_next().await.is_some() {}
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

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_are_counted_and_spaced_out_up_to_a_second() {
        let log = RefusalLog::<IpAddr>::new("connections");
        let stop = tokio_util::sync::CancellationToken::new();
        let out_of_descriptors = std::io::Error::from_raw_os_error(24);
        let mut backoff = AcceptBackoff::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let started = tokio::time::Instant::now();
            backoff.failed(&log, &out_of_descriptors, &stop).await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        let started = tokio::time::Instant::now();
        backoff.failed(&log, &std::io::Error::other("reset"), &stop).await;
        assert_eq!(started.elapsed().as_millis(), 10, "a success starts the waits again");
        let summary = log.summarise().unwrap();
        assert_eq!((summary.total, summary.addresses), (10, 0));
        assert_eq!(summary.by_reason[&"out-of-descriptors"], 9);
        assert_eq!(summary.by_reason[&"accept-failed"], 1);
        stop.cancel();
        let started = tokio::time::Instant::now();
        backoff.failed(&log, &out_of_descriptors, &stop).await;
        assert_eq!(started.elapsed().as_millis(), 0, "a stopping server does not wait");
    }
}
