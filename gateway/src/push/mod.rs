//! Web Push from the computer to its paired devices' browsers: when a device's run raises a permission
//! prompt, a question or a plan, or ends, the gateway POSTs one small notice to the push service the
//! device's browser subscribed with. The notice is encrypted to the browser (RFC 8291), padded so every
//! push has one length, and signed for the push service with the computer's VAPID key (RFC 8292).
//!
//! [`vapid`] keeps the key, [`ece`] encrypts, [`endpoint`] decides where a push may go,
//! [`subscriptions`] keeps who subscribed, [`notice`] says what a push carries, [`delivery`] sends it.

mod delivery;
mod ece;
mod endpoint;
mod notice;
mod subscriptions;
mod vapid;

pub(crate) use endpoint::{EndpointRule, Refusal, ResolveError};
pub(crate) use notice::notice;
pub(crate) use subscriptions::Subscription;

use certs::KeyId;
use node_kit::protocol::{ErrorCode, ErrorShape, PushNotice};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subscriptions::Subscriptions;
use tokio::sync::Semaphore;
use vapid::VapidKey;

/// Pushes being sent at once; more wait their turn.
const MAX_SENDING: usize = 8;
/// Pushes sent or waiting at once; beyond this a push is dropped (and logged), not queued without end.
const MAX_PENDING: usize = 256;
/// One push, connecting and the push service's answer included.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Push settings. Tests turn on `allow_local`; the gateway reads it from `LANYARD_PUSH_ALLOW_LOCAL=1`.
#[derive(Debug, Clone, Default)]
pub struct PushConfig {
    /// TEST ONLY: lets a push endpoint be `http` and on a loopback or private address.
    pub allow_local: bool,
}

impl PushConfig {
    /// The env variable that turns [`PushConfig::allow_local`] on, for tests that run the real binaries.
    pub const ALLOW_LOCAL_ENV: &'static str = "LANYARD_PUSH_ALLOW_LOCAL";

    pub fn from_env() -> PushConfig {
        PushConfig { allow_local: std::env::var(Self::ALLOW_LOCAL_ENV).is_ok_and(|v| v == "1") }
    }
}

pub(crate) struct Push {
    /// The gateway's own directory, where the key and the subscriptions live.
    dir: PathBuf,
    /// The Lanyard home, where the relay URL (the VAPID contact) lives.
    home: PathBuf,
    rule: EndpointRule,
    /// Made on first use.
    vapid: Mutex<Option<Arc<VapidKey>>>,
    subscriptions: Subscriptions,
    http: reqwest::Client,
    sending: Arc<Semaphore>,
    pending: AtomicUsize,
    /// How long a push service keeps a prompt's push for an offline device: as long as the prompt waits.
    prompt_ttl: Duration,
}

impl Push {
    pub(crate) fn new(home: PathBuf, config: &PushConfig, prompt_ttl: Duration) -> Push {
        let dir = home.join("gateway");
        let rule = EndpointRule { allow_local: config.allow_local };
        if rule.allow_local {
            tracing::warn!("push endpoints on local addresses and over http are allowed: a setting for tests only");
        }
        Push {
            subscriptions: Subscriptions::load(dir.join(subscriptions::SUBSCRIPTIONS_FILE)),
            http: delivery::http_client(rule),
            dir,
            home,
            rule,
            vapid: Mutex::new(None),
            sending: Arc::new(Semaphore::new(MAX_SENDING)),
            pending: AtomicUsize::new(0),
            prompt_ttl,
        }
    }

    pub(crate) fn rule(&self) -> EndpointRule {
        self.rule
    }

    /// The computer's VAPID key, made and saved the first time it is needed.
    pub(crate) fn vapid(&self) -> Result<Arc<VapidKey>, ErrorShape> {
        let mut slot = self.vapid.lock().expect("vapid lock");
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = VapidKey::load_or_create(&self.dir.join(vapid::VAPID_FILE)).map_err(|e| {
            tracing::error!(error = %e, "cannot read or make the Web Push key ({})", vapid::VAPID_FILE);
            ErrorShape::new(ErrorCode::Internal, format!("cannot read or make the Web Push key: {e}"))
        })?;
        Ok(slot.insert(Arc::new(key)).clone())
    }

    pub(crate) fn subscribed(&self, node: &KeyId) -> bool {
        self.subscriptions.get(node).is_some()
    }

    pub(crate) fn subscribe(&self, node: KeyId, subscription: Subscription) -> Result<(), ErrorShape> {
        self.subscriptions.set(node, subscription)
    }

    /// Forgets the device's subscription (it turned push off, or was revoked); false when it had none.
    pub(crate) fn forget(&self, node: &KeyId) -> Result<bool, ErrorShape> {
        self.subscriptions.remove(node)
    }

    /// Sends `notice` to `node`'s browser if it subscribed, in the background: the run never waits for it.
    pub(crate) fn send(self: &Arc<Self>, node: KeyId, notice: PushNotice) {
        let raised = Instant::now();
        let Some(subscription) = self.subscriptions.get(&node) else { return };
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(node = %node, kind = ?notice.kind, "too many pushes waiting; this one is dropped");
            return;
        }
        let push = self.clone();
        tokio::spawn(async move {
            let permit = push.sending.clone().acquire_owned().await.expect("the semaphore is never closed");
            let sent = tokio::time::timeout(SEND_TIMEOUT, push.deliver(&subscription, &notice)).await;
            drop(permit);
            push.pending.fetch_sub(1, Ordering::SeqCst);
            let service = delivery::service_name(&subscription.endpoint);
            let elapsed_us = raised.elapsed().as_micros() as u64;
            match sent {
                Ok(Ok(status)) if status.is_success() => {
                    tracing::debug!(node = %node, kind = ?notice.kind, service, status = status.as_u16(), elapsed_us, "push sent");
                }
                // RFC 8030 §7.3: the subscription expired or was removed; it will never work again.
                Ok(Ok(status)) if status == 404 || status == 410 => {
                    tracing::info!(node = %node, service, status = status.as_u16(), "the push service no longer knows this subscription; forgotten");
                    if let Err(e) = push.subscriptions.remove_if(&node, &subscription.endpoint) {
                        tracing::warn!(node = %node, error = %e.message, "could not forget the push subscription");
                    }
                }
                Ok(Ok(status)) => {
                    tracing::warn!(node = %node, kind = ?notice.kind, service, status = status.as_u16(), "the push service refused the push");
                }
                Ok(Err(e)) => tracing::warn!(node = %node, kind = ?notice.kind, service, error = %e, "push not sent"),
                Err(_) => {
                    tracing::warn!(node = %node, kind = ?notice.kind, service, "push not sent: no answer in time")
                }
            }
        });
    }
}
