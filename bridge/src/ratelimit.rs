//! Every rate limit the bridge enforces, in one place, each answered `RATE_LIMITED` with the real time
//! until the next call would pass (`retryAfterMs`, from governor's GCRA state, not a guess).

use crate::source::Source;
use certs::KeyId;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use node_kit::protocol::{ErrorCode, ErrorShape};
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A steady rate with a burst: one more call allowed every `every`, up to `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub every: Duration,
    pub burst: u32,
}

impl Rate {
    pub fn per_minute(calls: u32, burst: u32) -> Rate {
        Rate { every: Duration::from_secs(60) / calls.max(1), burst }
    }

    pub fn per_second(calls: u32, burst: u32) -> Rate {
        Rate { every: Duration::from_secs(1) / calls.max(1), burst }
    }

    fn quota(self) -> Quota {
        let every = self.every.max(Duration::from_nanos(1));
        Quota::with_period(every)
            .expect("a non-zero period")
            .allow_burst(NonZeroU32::new(self.burst.max(1)).expect("≥ 1"))
    }
}

#[derive(Debug, Clone)]
pub struct RateLimits {
    /// TLS handshakes per source address.
    pub handshakes_per_address: Rate,
    /// `pair.request` calls per source address.
    pub pairing_per_address: Rate,
    /// `pair.redeem` calls (one-time codes tried) per source address: a guesser gets a few tries a minute.
    pub pairing_codes_per_address: Rate,
    /// Requests per paired node, all methods together.
    pub requests_per_node: Rate,
    /// Voice transcripts (`agent` with channel `voice`) per node.
    pub voice_per_node: Rate,
    /// `screen.snapshot` commands per node.
    pub snapshots_per_node: Rate,
    /// Largest snapshot answer a node may send, in bytes of frame text.
    pub max_snapshot_bytes: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            handshakes_per_address: Rate::per_minute(60, 20),
            pairing_per_address: Rate::per_minute(6, 3),
            pairing_codes_per_address: Rate::per_minute(5, 3),
            requests_per_node: Rate::per_second(20, 50),
            voice_per_node: Rate::per_minute(20, 5),
            snapshots_per_node: Rate::per_minute(30, 5),
            max_snapshot_bytes: 3 * 1024 * 1024,
        }
    }
}

pub struct Limiter {
    handshakes: DefaultKeyedRateLimiter<Source>,
    pairing: DefaultKeyedRateLimiter<Source>,
    pairing_codes: DefaultKeyedRateLimiter<Source>,
    requests: DefaultKeyedRateLimiter<KeyId>,
    voice: DefaultKeyedRateLimiter<KeyId>,
    snapshots: DefaultKeyedRateLimiter<KeyId>,
    max_snapshot_bytes: usize,
    /// Calls each limit refused, in the order of [`LIMITS`].
    hits: [AtomicU64; 6],
}

/// The limits' names, as `/metrics` shows their hits.
const LIMITS: [&str; 6] = ["handshakes", "pairing_requests", "pairing_codes", "requests", "voice", "snapshots"];

impl Limiter {
    pub fn new(limits: &RateLimits) -> Limiter {
        Limiter {
            handshakes: DefaultKeyedRateLimiter::keyed(limits.handshakes_per_address.quota()),
            pairing: DefaultKeyedRateLimiter::keyed(limits.pairing_per_address.quota()),
            pairing_codes: DefaultKeyedRateLimiter::keyed(limits.pairing_codes_per_address.quota()),
            requests: DefaultKeyedRateLimiter::keyed(limits.requests_per_node.quota()),
            voice: DefaultKeyedRateLimiter::keyed(limits.voice_per_node.quota()),
            snapshots: DefaultKeyedRateLimiter::keyed(limits.snapshots_per_node.quota()),
            max_snapshot_bytes: limits.max_snapshot_bytes,
            hits: Default::default(),
        }
    }

    /// How many calls each limit refused since the bridge started.
    pub fn hits(&self) -> std::collections::BTreeMap<String, u64> {
        LIMITS.iter().zip(&self.hits).map(|(name, hits)| (name.to_string(), hits.load(Ordering::Relaxed))).collect()
    }

    fn counted<K: Hash + Eq + Clone>(
        &self,
        limit: usize,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        what: &str,
    ) -> Result<(), ErrorShape> {
        check(limiter, key, what).inspect_err(|_| {
            self.hits[limit].fetch_add(1, Ordering::Relaxed);
        })
    }

    /// Checked before any TLS work, so a flood of handshakes costs the bridge almost nothing.
    pub fn handshake(&self, from: Source) -> Result<(), ErrorShape> {
        self.counted(0, &self.handshakes, &from, "connection attempts from this source")
    }

    pub fn pairing_request(&self, from: Source) -> Result<(), ErrorShape> {
        self.counted(1, &self.pairing, &from, "pairing requests from this source")
    }

    pub fn pairing_code(&self, from: Source) -> Result<(), ErrorShape> {
        self.counted(2, &self.pairing_codes, &from, "pairing codes tried from this source")
    }

    pub fn request(&self, node: &KeyId) -> Result<(), ErrorShape> {
        self.counted(3, &self.requests, node, "requests from this node")
    }

    pub fn voice(&self, node: &KeyId) -> Result<(), ErrorShape> {
        self.counted(4, &self.voice, node, "voice transcripts from this node")
    }

    pub fn snapshot(&self, node: &KeyId) -> Result<(), ErrorShape> {
        self.counted(5, &self.snapshots, node, "snapshots of this node")
    }

    pub fn snapshot_size(&self, bytes: usize) -> Result<(), ErrorShape> {
        if bytes > self.max_snapshot_bytes {
            return Err(ErrorShape::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "snapshot of {bytes} bytes exceeds the limit of {} bytes; ask for a smaller maxWidth or quality",
                    self.max_snapshot_bytes
                ),
            )
            .with_details(serde_json::json!({ "size": bytes, "maxSnapshotBytes": self.max_snapshot_bytes })));
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully recovered, so the tables do not grow with every address seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.handshakes, &self.pairing, &self.pairing_codes] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.requests, &self.voice, &self.snapshots] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K, what: &str) -> Result<(), ErrorShape> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(limiter.clock().now());
        let retry_after_ms = (wait.as_millis() as u64).max(1);
        ErrorShape::retryable(
            ErrorCode::RateLimited,
            format!("too many {what}; retry in {retry_after_ms} ms"),
            Some(retry_after_ms),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_wait_is_told() {
        let limits = RateLimits { voice_per_node: Rate::per_minute(6, 2), ..RateLimits::default() };
        let limiter = Limiter::new(&limits);
        let node = KeyId::of_spki(b"n");
        limiter.voice(&node).unwrap();
        limiter.voice(&node).unwrap();
        let refused = limiter.voice(&node).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retryable);
        let wait = refused.retry_after_ms.unwrap();
        assert!((9_000..=10_000).contains(&wait), "{wait}");
        // Another node has its own budget.
        limiter.voice(&KeyId::of_spki(b"m")).unwrap();
    }

    #[test]
    fn oversize_snapshots_are_refused() {
        let limiter = Limiter::new(&RateLimits { max_snapshot_bytes: 10, ..RateLimits::default() });
        limiter.snapshot_size(10).unwrap();
        assert_eq!(limiter.snapshot_size(11).unwrap_err().code, ErrorCode::PayloadTooLarge);
    }
}
