//! The off-LAN tunnel on the bridge's side: one outbound link to the owner's relay object, kept up with
//! backoff and jitter while the owner has a relay URL set, and the gateway watch that tells it the URL and
//! the routing-token hashes (and hears its state back for `health`).
//!
//! Nothing here is a second stack: every relayed stream is handed to [`crate::session::serve`], which runs
//! the same TLS, verifier, WebSocket, ACL and limits as for a LAN connection.

pub(crate) mod frames;
mod link;

use crate::gateway_link;
use crate::shared::BridgeShared;
use certs::Identity;
use node_kit::node::Backoff;
use node_kit::protocol::{TunnelLinkState, TunnelReport, TunnelSync, event, method, now_ms};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Waits between link attempts: from 1 s up to 30 s, jittered so a relay outage does not bring every
/// bridge back in the same second.
const LINK_BACKOFF: Backoff = Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30) };
/// A link that stayed ready this long starts its backoff from the beginning after it drops.
const STABLE: Duration = Duration::from_secs(30);

/// The link's state for the gateway's `health`; `None` while no relay URL is set.
type Status = Option<TunnelReport>;

/// Runs until `stop`: the gateway watch and the link.
pub(crate) async fn run(shared: Arc<BridgeShared>, identity: Arc<Identity>, stop: CancellationToken) {
    let (settings_tx, settings_rx) = watch::channel(TunnelSync::default());
    let (status_tx, status_rx) = watch::channel::<Status>(None);
    let watcher = tokio::spawn(watch_gateway(shared.clone(), settings_tx, status_rx, stop.clone()));
    supervise(shared, identity, settings_rx, status_tx, stop).await;
    let _ = watcher.await;
}

/// Keeps a link up for the URL in force, and none while there is none.
async fn supervise(
    shared: Arc<BridgeShared>,
    identity: Arc<Identity>,
    mut settings: watch::Receiver<TunnelSync>,
    status: watch::Sender<Status>,
    stop: CancellationToken,
) {
    let (tokens_tx, _) = watch::channel(Vec::<String>::new());
    loop {
        let current = settings.borrow_and_update().clone();
        tokens_tx.send_if_modified(|tokens| std::mem::replace(tokens, current.tokens.clone()) != current.tokens);
        let Some(url) = current.url else {
            status.send_replace(None);
            tokio::select! {
                Ok(()) = settings.changed() => continue,
                () = stop.cancelled() => return,
            }
        };
        // A link life for `url`; a URL change ends it (and starts one for the new URL).
        let life = CancellationToken::new();
        let follow = {
            let (mut settings, life, tokens_tx, url) = (settings.clone(), life.clone(), tokens_tx.clone(), url.clone());
            async move {
                while settings.changed().await.is_ok() {
                    let now = settings.borrow_and_update().clone();
                    if now.url.as_deref() != Some(url.as_str()) {
                        break;
                    }
                    tokens_tx.send_if_modified(|tokens| std::mem::replace(tokens, now.tokens.clone()) != now.tokens);
                }
                life.cancel();
            }
        };
        tokio::select! {
            () = keep_link(&shared, &identity, &url, tokens_tx.subscribe(), &status, &life) => {}
            () = follow => {}
            () = stop.cancelled() => { life.cancel(); }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// Link lives for one URL, one after another, until `life` ends.
async fn keep_link(
    shared: &Arc<BridgeShared>,
    identity: &Identity,
    url: &str,
    tokens: watch::Receiver<Vec<String>>,
    status: &watch::Sender<Status>,
    life: &CancellationToken,
) {
    let report = |state, error: Option<String>| TunnelReport {
        state,
        url: url.to_string(),
        relay_streams: 0,
        error,
        since_ms: now_ms(),
    };
    let mut attempt = 0;
    // The relay's clock less this computer's, as the relay last said; the proof's time is by the relay's.
    let mut clock_offset_ms = 0i64;
    let mut clock_taken = false;
    loop {
        status.send_replace(Some(report(TunnelLinkState::Connecting, None)));
        let started = tokio::time::Instant::now();
        let events = link::LinkEvents {
            ready: &|| {
                status.send_replace(Some(report(TunnelLinkState::Ready, None)));
            },
            streams: &|n| {
                status.send_if_modified(|s| match s {
                    Some(s) if s.relay_streams != n => {
                        s.relay_streams = n;
                        true
                    }
                    _ => false,
                });
            },
        };
        let time_ms = now_ms().saturating_add_signed(clock_offset_ms);
        let ended = link::run(url, shared, identity, time_ms, tokens.clone(), events, life).await;
        let Err(e) = ended else { return };
        // A clock the relay finds off by over a minute: take the relay's, and try again at once (once).
        if let link::LinkError::Expired { relay_time_ms } = e
            && !clock_taken
        {
            clock_offset_ms = i64::try_from(relay_time_ms).unwrap_or(i64::MAX).saturating_sub_unsigned(now_ms());
            clock_taken = true;
            tracing::warn!(relay = url, offset_ms = clock_offset_ms, "this computer's clock is off; using the relay's");
            continue;
        }
        clock_taken = false;
        if started.elapsed() > STABLE {
            attempt = 0;
        }
        let delay = LINK_BACKOFF.delay(attempt);
        attempt = attempt.saturating_add(1);
        tracing::warn!(relay = url, error = %e, retry_in_ms = delay.as_millis() as u64, "relay link down");
        status.send_replace(Some(report(TunnelLinkState::Retrying, Some(e.to_string()))));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = life.cancelled() => return,
        }
    }
}

/// Follows the gateway: the settings (`tunnel.sync`, then each `tunnel` event) in, the link's state
/// (`tunnel.report`) out. Reconnects to the gateway when it restarts; the link keeps its last settings.
async fn watch_gateway(
    shared: Arc<BridgeShared>,
    settings: watch::Sender<TunnelSync>,
    mut status: watch::Receiver<Status>,
    stop: CancellationToken,
) {
    let backoff = Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(5) };
    let mut attempt = 0;
    loop {
        let session = async {
            let client = gateway_link::bridge_client(&shared.config).await.map_err(|e| e.message)?;
            let mut events = client.subscribe();
            let sync = client.request(method::TUNNEL_SYNC, serde_json::json!({})).await.map_err(|e| e.to_string())?;
            settings.send_replace(serde_json::from_value(sync).map_err(|e| e.to_string())?);
            status.mark_changed();
            loop {
                tokio::select! {
                    event = events.recv() => match event {
                        Ok(event) if event.event == event::TUNNEL => {
                            if let Ok(sync) = serde_json::from_value::<TunnelSync>(event.payload) {
                                settings.send_replace(sync);
                            }
                        }
                        Ok(_) => {}
                        // Missed events: read the whole state again.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let sync = client.request(method::TUNNEL_SYNC, serde_json::json!({})).await.map_err(|e| e.to_string())?;
                            settings.send_replace(serde_json::from_value(sync).map_err(|e| e.to_string())?);
                        }
                        Err(_) => return Err::<(), String>("the gateway closed the connection".into()),
                    },
                    Ok(()) = status.changed() => {
                        let report = status.borrow_and_update().clone();
                        if let Some(report) = report {
                            let params = serde_json::to_value(report).expect("reports serialise");
                            client.request(method::TUNNEL_REPORT, params).await.map_err(|e| e.to_string())?;
                        }
                    }
                    () = client.closed() => return Err("the gateway closed the connection".into()),
                }
            }
        };
        tokio::select! {
            ended = session => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "tunnel settings: gateway not reachable; retrying");
                }
            }
            () = stop.cancelled() => return,
        }
        let delay = backoff.delay(attempt);
        attempt = (attempt + 1).min(8);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}
