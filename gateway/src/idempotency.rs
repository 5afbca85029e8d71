//! Idempotency keys that really deduplicate: the first request with a key runs, every retry with the same
//! key (while remembered) waits for and returns that run's outcome instead of running again.
//!
//! Outcomes that are retryable errors are forgotten once delivered, so a retry after a transient failure
//! (claude crashed, node went away) runs again instead of replaying the failure for five minutes.

use node_kit::protocol::{ErrorCode, ErrorShape};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) type Outcome = Result<Value, ErrorShape>;

pub(crate) struct IdempotencyCache {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    ttl: Duration,
    capacity: usize,
}

struct Entry {
    /// The run or invoke ID of the first request, shown to retries.
    tag: String,
    created: Instant,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Entry {
    fn finished(&self) -> bool {
        self.outcome.borrow().is_some()
    }
}

pub(crate) enum Claim {
    /// The key is new: run the work and hand its outcome to the completer.
    New(Completer),
    /// The key was seen: wait for the first run's outcome.
    Existing { tag: String, waiter: Waiter },
}

pub(crate) struct Completer {
    key: String,
    tag: String,
    tx: watch::Sender<Option<Outcome>>,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

pub(crate) struct Waiter(watch::Receiver<Option<Outcome>>);

impl IdempotencyCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        IdempotencyCache { entries: Arc::new(Mutex::new(HashMap::new())), ttl, capacity }
    }

    /// Claims `key`. A new key gets the tag `new_tag()` made. Fails only when the cache is full of
    /// unfinished runs.
    pub(crate) fn claim(&self, key: &str, new_tag: impl FnOnce() -> String) -> Result<Claim, ErrorShape> {
        let mut entries = self.entries.lock().expect("idempotency lock");
        let now = Instant::now();
        if let Some(entry) = entries.get(key)
            && (now.duration_since(entry.created) < self.ttl || !entry.finished())
        {
            return Ok(Claim::Existing { tag: entry.tag.clone(), waiter: Waiter(entry.outcome.clone()) });
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, e| !e.finished() || now.duration_since(e.created) < self.ttl);
        }
        if entries.len() >= self.capacity {
            let oldest =
                entries.iter().filter(|(_, e)| e.finished()).min_by_key(|(_, e)| e.created).map(|(k, _)| k.clone());
            match oldest {
                Some(oldest) => {
                    entries.remove(&oldest);
                }
                None => {
                    return Err(ErrorShape::retryable(
                        ErrorCode::RateLimited,
                        "too many requests in flight; try again shortly",
                        Some(1000),
                    ));
                }
            }
        }
        let tag = new_tag();
        let (tx, rx) = watch::channel(None);
        entries.insert(key.to_string(), Entry { tag: tag.clone(), created: now, outcome: rx });
        Ok(Claim::New(Completer { key: key.to_string(), tag, tx, entries: self.entries.clone() }))
    }
}

impl Completer {
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// Publishes the outcome to every waiting retry, and remembers it unless it is a retryable error.
    pub(crate) fn complete(self, outcome: Outcome) {
        let forget = matches!(&outcome, Err(e) if e.retryable);
        self.tx.send_replace(Some(outcome));
        if forget {
            self.forget();
        }
    }
}

impl Drop for Completer {
    /// A run that ended without an outcome (its task panicked) must not leave the key claimed forever.
    fn drop(&mut self) {
        if self.tx.borrow().is_none() {
            self.forget();
        }
    }
}

impl Completer {
    fn forget(&self) {
        if let Ok(mut entries) = self.entries.lock()
            && entries.get(&self.key).is_some_and(|e| e.tag == self.tag)
        {
            entries.remove(&self.key);
        }
    }
}

impl Waiter {
    pub(crate) async fn outcome(mut self) -> Outcome {
        match self.0.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for Some"),
            Err(_) => {
                Err(ErrorShape::retryable(ErrorCode::Internal, "the first request with this key was abandoned", None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tag(n: &str) -> impl FnOnce() -> String + '_ {
        move || n.to_string()
    }

    #[tokio::test]
    async fn retries_wait_for_and_share_the_first_outcome() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 8);
        let Claim::New(first) = cache.claim("k", tag("run-1")).unwrap() else { panic!("new key") };
        let Claim::Existing { tag: first_tag, waiter } = cache.claim("k", tag("run-2")).unwrap() else {
            panic!("seen key")
        };
        assert_eq!(first_tag, "run-1");
        first.complete(Ok(json!(42)));
        assert_eq!(waiter.outcome().await, Ok(json!(42)));
        assert!(matches!(cache.claim("k", tag("run-3")).unwrap(), Claim::Existing { .. }));
    }

    #[tokio::test]
    async fn retryable_failures_are_not_remembered() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 8);
        let Claim::New(first) = cache.claim("k", tag("a")).unwrap() else { panic!() };
        first.complete(Err(ErrorShape::retryable(ErrorCode::NodeNotConnected, "gone", None)));
        assert!(matches!(cache.claim("k", tag("b")).unwrap(), Claim::New(_)));
    }

    #[tokio::test]
    async fn bounded_and_expiring() {
        let cache = IdempotencyCache::new(Duration::from_millis(20), 2);
        let Claim::New(a) = cache.claim("a", tag("a")).unwrap() else { panic!() };
        let Claim::New(_b) = cache.claim("b", tag("b")).unwrap() else { panic!() };
        // Full of unfinished runs: refuse rather than forget a run in flight.
        assert_eq!(cache.claim("c", tag("c")).err().unwrap().code, ErrorCode::RateLimited);
        a.complete(Ok(json!(1)));
        let Claim::New(_c) = cache.claim("c", tag("c")).unwrap() else { panic!("the finished key makes room") };
        let len = cache.entries.lock().unwrap().len();
        assert_eq!(len, 2);
    }

    #[tokio::test]
    async fn finished_keys_expire_after_the_ttl() {
        // Wide enough that the second claim comes within the TTL on a loaded machine.
        let cache = IdempotencyCache::new(Duration::from_millis(500), 8);
        let Claim::New(a) = cache.claim("a", tag("a")).unwrap() else { panic!() };
        a.complete(Ok(json!(1)));
        assert!(matches!(cache.claim("a", tag("a2")).unwrap(), Claim::Existing { .. }));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(matches!(cache.claim("a", tag("a3")).unwrap(), Claim::New(_)));
    }

    #[tokio::test]
    async fn abandoned_runs_release_their_key() {
        let cache = IdempotencyCache::new(Duration::from_secs(60), 8);
        let Claim::New(first) = cache.claim("k", tag("a")).unwrap() else { panic!() };
        let Claim::Existing { waiter, .. } = cache.claim("k", tag("b")).unwrap() else { panic!() };
        drop(first);
        assert_eq!(waiter.outcome().await.unwrap_err().code, ErrorCode::Internal);
        assert!(matches!(cache.claim("k", tag("c")).unwrap(), Claim::New(_)));
    }
}
