//! Pairing requests waiting for the owner. Bounded in all and per address, each lives five minutes at
//! most, and a retry from the same key keeps its request ID (it replaces the attempt, not the request).

use crate::config::PairingConfig;
use crate::now_ms;
use certs::KeyId;
use node_kit::client::random_id;
use node_kit::protocol::{ErrorCode, ErrorShape, PairSubmitParams, PendingPairing, Scope};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// What the owner decided, as told to the bridge waiting on the request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Approved(Vec<Scope>),
    Rejected,
    /// Timed out.
    Expired,
    /// Replaced by a newer attempt from the same key, which keeps the request waiting.
    Superseded,
}

struct Waiting {
    info: PendingPairing,
    waiters: Vec<oneshot::Sender<Decision>>,
}

/// A decision nobody was waiting for yet: the node may call `pair.wait` just after the owner answered.
struct Unheard {
    node_id: KeyId,
    decision: Decision,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Requests {
    waiting: HashMap<KeyId, Waiting>,
    unheard: HashMap<String, Unheard>,
}

pub(crate) struct PendingRequests {
    config: PairingConfig,
    requests: Mutex<Requests>,
}

impl PendingRequests {
    pub(crate) fn new(config: PairingConfig) -> Self {
        PendingRequests { config, requests: Mutex::new(Requests::default()) }
    }

    /// Files a request, or refreshes the one this key already has (same request ID, new SAS and expiry).
    pub(crate) fn submit(&self, p: PairSubmitParams) -> Result<PendingPairing, ErrorShape> {
        let now = now_ms();
        let ttl_ms = self.config.ttl.as_millis() as u64;
        let mut requests = self.requests.lock().expect("pending lock");
        requests.prune(now);
        let request_id = match requests.waiting.remove(&p.node_id) {
            Some(previous) => {
                for waiter in previous.waiters {
                    let _ = waiter.send(Decision::Superseded);
                }
                previous.info.request_id
            }
            None => {
                self.check_room(&requests.waiting, &p.address, now)?;
                random_id()
            }
        };
        let node_id = p.node_id;
        let request = PairSubmitParams { device: p.device.sanitised(), ..p };
        let info = PendingPairing { request_id, request, created_at_ms: now, expires_at_ms: now + ttl_ms };
        requests.waiting.insert(node_id, Waiting { info: info.clone(), waiters: Vec::new() });
        Ok(info)
    }

    fn check_room(&self, requests: &HashMap<KeyId, Waiting>, address: &str, now: u64) -> Result<(), ErrorShape> {
        let full = |what: &str, oldest: Option<u64>| {
            let retry_after = oldest.map(|expires| expires.saturating_sub(now).max(1));
            Err(ErrorShape::retryable(
                ErrorCode::RateLimited,
                format!("too many pairing requests are waiting {what}; ask the owner to answer them or try later"),
                retry_after,
            ))
        };
        let oldest = |filter: &dyn Fn(&PendingPairing) -> bool| {
            requests.values().filter(|w| filter(&w.info)).map(|w| w.info.expires_at_ms).min()
        };
        let from_address = requests.values().filter(|w| w.info.request.address == address).count();
        if from_address >= self.config.max_pending_per_address {
            return full("from this address", oldest(&|i| i.request.address == address));
        }
        if requests.len() >= self.config.max_pending {
            return full("in all", oldest(&|_| true));
        }
        Ok(())
    }

    /// Waits for the owner's decision on `request_id`; `Expired` when the request runs out of time.
    /// Returns the requesting node's ID with the decision.
    pub(crate) async fn wait(&self, request_id: &str) -> Result<(KeyId, Decision), ErrorShape> {
        let (rx, expires_at_ms, node_id) = {
            let mut requests = self.requests.lock().expect("pending lock");
            requests.prune(now_ms());
            if let Some(unheard) = requests.unheard.remove(request_id) {
                return Ok((unheard.node_id, unheard.decision));
            }
            let waiting = requests
                .waiting
                .values_mut()
                .find(|w| w.info.request_id == request_id)
                .ok_or_else(|| expired("no such pairing request is waiting (it expired or was answered)"))?;
            let (tx, rx) = oneshot::channel();
            waiting.waiters.push(tx);
            (rx, waiting.info.expires_at_ms, waiting.info.request.node_id)
        };
        let left = std::time::Duration::from_millis(expires_at_ms.saturating_sub(now_ms()));
        let decision = match tokio::time::timeout(left, rx).await {
            Ok(Ok(decision)) => decision,
            Ok(Err(_)) => Decision::Expired,
            Err(_) => {
                self.requests.lock().expect("pending lock").prune(now_ms());
                Decision::Expired
            }
        };
        Ok((node_id, decision))
    }

    pub(crate) fn list(&self) -> Vec<PendingPairing> {
        let mut requests = self.requests.lock().expect("pending lock");
        requests.prune(now_ms());
        let mut list: Vec<_> = requests.waiting.values().map(|w| w.info.clone()).collect();
        list.sort_by_key(|i| i.created_at_ms);
        list
    }

    /// Answers a waiting request: `decide` sees it and returns the decision with what it made of it (or an
    /// error, which leaves the request waiting). The request is then gone and its waiters are told; when none is waiting yet, the
    /// decision is kept for the node's `pair.wait` until the request would have expired.
    pub(crate) fn decide<T>(
        &self,
        request_id: &str,
        decide: impl FnOnce(&PendingPairing) -> Result<(Decision, T), ErrorShape>,
    ) -> Result<(PendingPairing, T), ErrorShape> {
        let mut requests = self.requests.lock().expect("pending lock");
        requests.prune(now_ms());
        let gone = || expired(&format!("no pairing request {request_id} is waiting (it expired or was answered)"));
        let node_id =
            requests.waiting.values().find(|w| w.info.request_id == request_id).ok_or_else(gone)?.info.request.node_id;
        let (decision, made) = decide(&requests.waiting[&node_id].info)?;
        let Waiting { info, waiters } = requests.waiting.remove(&node_id).expect("found above");
        if waiters.is_empty() {
            let unheard = Unheard { node_id, decision, expires_at_ms: info.expires_at_ms };
            requests.unheard.insert(info.request_id.clone(), unheard);
        } else {
            for waiter in waiters {
                let _ = waiter.send(decision.clone());
            }
        }
        Ok((info, made))
    }
}

impl Requests {
    /// Drops expired requests (their waiters learn it from their own timers) and unheard decisions.
    fn prune(&mut self, now: u64) {
        self.waiting.retain(|_, w| w.info.expires_at_ms > now);
        self.unheard.retain(|_, u| u.expires_at_ms > now);
    }
}

pub(crate) fn expired(message: &str) -> ErrorShape {
    ErrorShape::new(ErrorCode::PairingExpired, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::protocol::DeviceInfo;
    use std::time::Duration;

    fn params(key: &str, address: &str) -> PairSubmitParams {
        PairSubmitParams {
            node_id: KeyId::of_spki(key.as_bytes()),
            device: DeviceInfo { name: "phone\u{202E}".into(), platform: "ios".into(), model: None },
            scopes: vec![Scope::Chat],
            address: address.into(),
            sas: "123456".into(),
        }
    }

    fn config(ttl: Duration) -> PairingConfig {
        PairingConfig { ttl, max_pending: 3, max_pending_per_address: 2 }
    }

    #[test]
    fn bounded_per_address_and_in_all_with_a_retry_time() {
        let pending = PendingRequests::new(config(Duration::from_secs(60)));
        pending.submit(params("a", "10.0.0.1")).unwrap();
        pending.submit(params("b", "10.0.0.1")).unwrap();
        let refused = pending.submit(params("c", "10.0.0.1")).unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert!(refused.retry_after_ms.unwrap() > 59_000);
        pending.submit(params("c", "10.0.0.2")).unwrap();
        assert_eq!(pending.submit(params("d", "10.0.0.3")).unwrap_err().code, ErrorCode::RateLimited);
        assert_eq!(pending.list().len(), 3);
        assert_eq!(pending.list()[0].request.device.name, "phone");
    }

    #[test]
    fn a_retry_keeps_its_request_id_and_room() {
        let pending = PendingRequests::new(config(Duration::from_secs(60)));
        let first = pending.submit(params("a", "10.0.0.1")).unwrap();
        let mut again = params("a", "10.0.0.1");
        again.sas = "654321".into();
        let second = pending.submit(again).unwrap();
        assert_eq!(first.request_id, second.request_id);
        assert_eq!(pending.list().len(), 1);
        assert_eq!(pending.list()[0].request.sas, "654321");
    }

    #[tokio::test]
    async fn expired_requests_vanish_and_their_waiters_hear_it() {
        // Wide enough that the wait begins before the expiry on a loaded machine.
        let pending = PendingRequests::new(config(Duration::from_secs(1)));
        let info = pending.submit(params("a", "10.0.0.1")).unwrap();
        assert_eq!(pending.wait(&info.request_id).await.unwrap(), (info.request.node_id, Decision::Expired));
        assert!(pending.list().is_empty());
        assert!(pending.decide(&info.request_id, |_| Ok((Decision::Rejected, ()))).is_err());
        assert_eq!(pending.wait(&info.request_id).await.unwrap_err().code, ErrorCode::PairingExpired);
    }

    #[tokio::test]
    async fn a_decision_before_the_wait_is_kept_for_it() {
        let pending = PendingRequests::new(config(Duration::from_secs(60)));
        let info = pending.submit(params("a", "10.0.0.1")).unwrap();
        pending.decide(&info.request_id, |_| Ok((Decision::Approved(vec![Scope::Chat]), ()))).unwrap();
        assert!(pending.list().is_empty());
        let heard = pending.wait(&info.request_id).await.unwrap();
        assert_eq!(heard, (info.request.node_id, Decision::Approved(vec![Scope::Chat])));
    }
}
