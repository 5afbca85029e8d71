//! One life of the bridge's link to its relay object: open the socket with the bridge's key proof in its
//! upgrade request, hand over the routing-token set, then serve every node stream the object opens with the same session code as a
//! LAN connection (and every HTTP exchange of a simple client with [`crate::sealed`]), until the socket
//! goes or the link is stopped.

use super::frames::{Control, MAX_DATA, StreamFrame, parse_hash};
use crate::sealed::{self, Exchange};
use crate::session;
use crate::shared::BridgeShared;
use crate::source::Source;
use certs::Identity;
use futures_util::{SinkExt, StreamExt};
use node_kit::relay::{bridge_link_request, web_tls};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_util::sync::CancellationToken;

/// Inbound bytes buffered for one stream whose session reads slowly, in relay messages (≤ 64 KiB each):
/// past it the stream is closed rather than letting one slow session stall every other.
const STREAM_BACKLOG: usize = 16;
/// Frames the stream tasks may queue for the socket before they wait: shared back-pressure.
const OUTBOUND_QUEUE: usize = 64;
/// A link silent this long (no frame, no pong) is taken for dead.
const SILENCE: Duration = Duration::from_secs(45);
const PING_EVERY: Duration = Duration::from_secs(15);
/// How long a token set that drops a carried stream's token waits for that stream's session to end: the
/// session's last words (a revoked node's `NOT_PAIRED`) must reach the relay before the set, which makes
/// the relay cut the stream.
const REVOKED_GRACE: Duration = Duration::from_secs(2);

/// A stream the link carries: where its inbound bytes go, and the token it was opened with.
struct Carried {
    inbound: mpsc::Sender<Bytes>,
    token_hash: [u8; 32],
}

/// Whether every carried stream's token is in `set`.
fn carries_only(streams: &HashMap<u32, Carried>, set: &[String]) -> bool {
    let set: HashSet<[u8; 32]> = set.iter().filter_map(|hash| parse_hash(hash).ok()).collect();
    streams.values().all(|carried| set.contains(&carried.token_hash))
}

/// How a link life ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("cannot reach the relay: {0}")]
    Connect(String),
    #[error("the relay refused the bridge's proof ({0})")]
    Refused(String),
    /// The proof's time was outside the relay's window: the relay's clock said `relay_time_ms`.
    #[error("the relay's clock and this computer's differ by more than a minute")]
    Expired { relay_time_ms: u64 },
    #[error("the relay closed the link ({0})")]
    Closed(String),
    #[error("the link went silent")]
    Silent,
}

/// Live facts of the link the supervisor reports.
pub(crate) struct LinkEvents<'a> {
    pub ready: &'a (dyn Fn() + Sync),
    pub streams: &'a (dyn Fn(usize) + Sync),
}

/// Runs one link life, its proof stamped `time_ms` (the relay's clock as far as the bridge knows it). `Ok`
/// when `stop` ended it.
pub(crate) async fn run(
    url: &str,
    shared: &Arc<BridgeShared>,
    identity: &Identity,
    time_ms: u64,
    mut tokens: watch::Receiver<Vec<String>>,
    events: LinkEvents<'_>,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let request = bridge_link_request(url, identity, time_ms).map_err(LinkError::Connect)?;
    let config = node_kit::connection::websocket_config(MAX_DATA + 1024);
    let opened = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(web_tls()));
    // The relay accepts the socket only once the proof holds: an open socket is a live link.
    let (ws, _) = match tokio::time::timeout(shared.config.handshake_timeout, opened).await {
        Err(_) => return Err(LinkError::Connect("timed out".into())),
        Ok(Err(WsError::Http(response))) => return Err(refusal(&response)),
        Ok(Err(e)) => return Err(LinkError::Connect(e.to_string())),
        Ok(Ok(opened)) => opened,
    };
    let (mut sink, mut socket) = ws.split();
    let set = tokens.borrow_and_update().clone();
    sink.send(control_message(&Control::Tokens { set })).await.map_err(|e| LinkError::Closed(e.to_string()))?;
    (events.ready)();
    tracing::info!(relay = url, "relay link ready");

    let (out_tx, mut out_rx) = mpsc::channel::<StreamFrame>(OUTBOUND_QUEUE);
    let mut streams: HashMap<u32, Carried> = HashMap::new();
    // A token set that waits for the sessions of the tokens it drops, and until when at most.
    let mut held: Option<(Vec<String>, tokio::time::Instant)> = None;
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = tokio::time::Instant::now();
    let result = loop {
        tokio::select! {
            message = socket.next() => {
                heard = tokio::time::Instant::now();
                match message {
                    Some(Ok(Message::Binary(bytes))) => match StreamFrame::decode(&bytes) {
                        Ok(frame) => {
                            // A CLOSE the link owes goes out with back-pressure: one lost would leave the
                            // node's stream open at the relay with nobody behind it.
                            if let Some(close) = on_frame(frame, shared, &mut streams, &out_tx)
                                && let Err(e) = sink.send(Message::binary(close.encode())).await
                            {
                                break Err(LinkError::Closed(e.to_string()));
                            }
                        }
                        // The object never sends one; a link that does is not the relay we speak to.
                        Err(e) => break Err(LinkError::Closed(e.to_string())),
                    },
                    Some(Ok(Message::Close(close))) => {
                        break Err(LinkError::Closed(close.map_or_else(|| "no reason".into(), |c| format!("{} {}", c.code, c.reason))));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(LinkError::Closed(e.to_string())),
                    None => break Err(LinkError::Closed("the connection ended".into())),
                }
            }
            Some(frame) = out_rx.recv() => {
                if let StreamFrame::Close { stream, .. } = &frame {
                    streams.remove(stream);
                }
                if let Err(e) = sink.send(Message::binary(frame.encode())).await {
                    break Err(LinkError::Closed(e.to_string()));
                }
            }
            Ok(()) = tokens.changed() => {
                let set = tokens.borrow_and_update().clone();
                // A newer set replaces a held one, and keeps its deadline: changes never hold a set longer.
                let until = held.map_or_else(|| tokio::time::Instant::now() + REVOKED_GRACE, |(_, until)| until);
                held = Some((set, until));
            }
            () = tokio::time::sleep_until(held.as_ref().map_or_else(tokio::time::Instant::now, |(_, until)| *until)), if held.is_some() => {}
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE {
                    break Err(LinkError::Silent);
                }
                let _ = sink.send(Message::Ping(Default::default())).await;
            }
            () = stop.cancelled() => {
                let close = CloseFrame { code: CloseCode::Normal, reason: "bridge stopping".into() };
                let _ = sink.send(Message::Close(Some(close))).await;
                break Ok(());
            }
        }
        if let Some((set, until)) = &held
            && (carries_only(&streams, set) || tokio::time::Instant::now() >= *until)
        {
            let set = set.clone();
            held = None;
            if let Err(e) = sink.send(control_message(&Control::Tokens { set })).await {
                break Err(LinkError::Closed(e.to_string()));
            }
        }
        (events.streams)(streams.len());
    };
    // Dropping the senders ends every stream's pump, and so its session.
    drop(streams);
    (events.streams)(0);
    result
}

/// One stream frame from the object; returns the `CLOSE` the link owes it, if any.
fn on_frame(
    frame: StreamFrame,
    shared: &Arc<BridgeShared>,
    streams: &mut HashMap<u32, Carried>,
    out: &mpsc::Sender<StreamFrame>,
) -> Option<StreamFrame> {
    match frame {
        StreamFrame::Open { stream, token_hash, http } => {
            let source = Source::Relay(token_hash);
            let refuse = |reason: &'static str| {
                shared.refusals.refused(source, reason);
                Some(StreamFrame::Close { stream, reason: reason.into() })
            };
            // The per-source rate of openings is for what costs the bridge a handshake: a TLS stream or a
            // pairing step. A sealed call (`chat`) comes from a paired client and is held to that client's
            // rate of calls once opened, as a LAN call is; counting it here too would refuse an app's
            // ordinary calls at 20 in a burst, then one a second.
            let opening = http != Some(sealed::Route::Chat);
            if opening && shared.limiter.handshake(source).is_err() {
                return refuse("rate-limited");
            }
            if let Some(route) = http {
                let Ok(permit) = shared.exchanges.clone().try_acquire_owned() else {
                    return refuse("too-many-exchanges");
                };
                let (request_tx, request) = mpsc::channel(STREAM_BACKLOG);
                let (response, response_rx) = mpsc::channel(STREAM_BACKLOG);
                streams.insert(stream, Carried { inbound: request_tx, token_hash });
                let exchange = Exchange { source, request, response };
                tokio::spawn(sealed::serve(route, exchange, shared.clone(), permit));
                tokio::spawn(respond(stream, response_rx, out.clone()));
                return None;
            }
            let admission = match shared.connections.admit(source, &shared.stop) {
                Ok(admission) => admission,
                Err(refusal) => return refuse(refusal.as_str()),
            };
            let (session_end, pump_end) = tokio::io::duplex(MAX_DATA);
            let (inbound_tx, inbound_rx) = mpsc::channel(STREAM_BACKLOG);
            streams.insert(stream, Carried { inbound: inbound_tx, token_hash });
            tokio::spawn(session::serve(Box::new(session_end), source, shared.clone(), admission));
            tokio::spawn(pump(stream, pump_end, inbound_rx, out.clone()));
            None
        }
        StreamFrame::Data { stream, bytes } => {
            // A stream this link no longer carries (ended here, its CLOSE crossing this DATA): say it again.
            let Some(Carried { inbound, .. }) = streams.get(&stream) else {
                return Some(StreamFrame::Close { stream, reason: "unknown stream".into() });
            };
            if inbound.try_send(bytes).is_err() {
                // The session is not reading: end this stream, not the link.
                streams.remove(&stream);
                return Some(StreamFrame::Close { stream, reason: "stream backlog full".into() });
            }
            None
        }
        StreamFrame::Close { stream, .. } => {
            streams.remove(&stream);
            None
        }
    }
}

/// Carries one stream's bytes between its session (through `io`) and the link, until either ends. The two
/// directions run side by side: a session busy writing a large answer still has its node's bytes read, so
/// neither direction can wait on the other.
async fn pump(stream: u32, io: DuplexStream, mut inbound: mpsc::Receiver<Bytes>, out: mpsc::Sender<StreamFrame>) {
    let (mut from_session, mut to_session) = tokio::io::split(io);
    let to_link = async {
        let mut buf = vec![0u8; MAX_DATA];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    if out.send(StreamFrame::Data { stream, bytes: Bytes::copy_from_slice(&buf[..n]) }).await.is_err() {
                        return false;
                    }
                }
            }
        }
    };
    let to_session = async {
        // Ends when the node or the link is gone (the object has ended the stream), or the session is.
        while let Some(bytes) = inbound.recv().await {
            if to_session.write_all(&bytes).await.is_err() {
                return true;
            }
        }
        false
    };
    // Whether the session ended it, so the object must hear of it.
    let session_ended = tokio::select! {
        ended = to_link => ended,
        ended = to_session => ended,
    };
    if session_ended {
        let _ = out.send(StreamFrame::Close { stream, reason: String::new() }).await;
    }
}

/// Carries one HTTP exchange's answer to the link, cut to frames, and ends the stream after it.
async fn respond(stream: u32, mut response: mpsc::Receiver<Vec<u8>>, out: mpsc::Sender<StreamFrame>) {
    while let Some(bytes) = response.recv().await {
        let bytes = Bytes::from(bytes);
        for start in (0..bytes.len()).step_by(MAX_DATA) {
            let chunk = bytes.slice(start..bytes.len().min(start + MAX_DATA));
            if out.send(StreamFrame::Data { stream, bytes: chunk }).await.is_err() {
                return;
            }
        }
    }
    let _ = out.send(StreamFrame::Close { stream, reason: String::new() }).await;
}

/// The relay's refusal of the upgrade: `401` with `{"error": …}` (and the relay's time for an expired proof).
fn refusal(response: &tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>) -> LinkError {
    let body: serde_json::Value =
        response.body().as_deref().and_then(|body| serde_json::from_slice(body).ok()).unwrap_or_default();
    let error = body["error"].as_str().unwrap_or_default();
    match (response.status().as_u16(), error, body["relayTimeMs"].as_u64()) {
        (401, "proof_expired", Some(relay_time_ms)) => LinkError::Expired { relay_time_ms },
        (401, _, _) => LinkError::Refused(error.to_string()),
        (status, _, _) => LinkError::Connect(format!("{status} {error}")),
    }
}

fn control_message(control: &Control) -> Message {
    Message::text(serde_json::to_string(control).expect("control messages serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::Response;

    fn answer(status: u16, body: &str) -> Response<Option<Vec<u8>>> {
        Response::builder().status(status).body(Some(body.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn the_relays_refusals_are_read() {
        let expired = refusal(&answer(401, r#"{"error":"proof_expired","relayTimeMs":1700000000000}"#));
        assert!(matches!(expired, LinkError::Expired { relay_time_ms: 1_700_000_000_000 }), "{expired:?}");
        let replayed = refusal(&answer(401, r#"{"error":"proof_replayed"}"#));
        assert!(matches!(replayed, LinkError::Refused(ref e) if e == "proof_replayed"), "{replayed:?}");
        assert!(matches!(refusal(&answer(401, "not json")), LinkError::Refused(_)));
        assert!(matches!(refusal(&answer(503, "")), LinkError::Connect(_)));
    }
}
