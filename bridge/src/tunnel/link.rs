//! One life of the bridge's link to its relay object: open the socket, prove the bridge's key, hand over
//! the routing-token set, then serve every node stream the object opens with the same session code as a
//! LAN connection (and every HTTP exchange of a simple client with [`crate::sealed`]), until the socket
//! goes or the link is stopped.

use super::frames::{Control, MAX_DATA, StreamFrame};
use crate::sealed::{self, Exchange};
use crate::session;
use crate::shared::BridgeShared;
use crate::source::Source;
use certs::Identity;
use futures_util::{SinkExt, StreamExt};
use node_kit::relay::{endpoint, web_tls};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;

/// What the object sends before `ready`, and how long the bridge waits for each step.
const PROOF_STEP: Duration = Duration::from_secs(10);
/// Inbound bytes buffered for one stream whose session reads slowly, in relay messages (≤ 64 KiB each):
/// past it the stream is closed rather than letting one slow session stall every other.
const STREAM_BACKLOG: usize = 16;
/// Frames the stream tasks may queue for the socket before they wait: shared back-pressure.
const OUTBOUND_QUEUE: usize = 64;
/// A link silent this long (no frame, no pong) is taken for dead.
const SILENCE: Duration = Duration::from_secs(45);
const PING_EVERY: Duration = Duration::from_secs(15);

/// The label signed in the proof, as `docs/relay.md` fixes it.
pub(crate) fn proof_message(bridge_id: &str, nonce: &str) -> String {
    format!("lanyard-relay-v1\nbridge\n{bridge_id}\n{nonce}")
}

/// How a link life ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("cannot reach the relay: {0}")]
    Connect(String),
    #[error("the relay refused the bridge's proof ({0})")]
    Refused(String),
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

/// Runs one link life. `Ok` when `stop` ended it.
pub(crate) async fn run(
    url: &str,
    shared: &Arc<BridgeShared>,
    identity: &Identity,
    mut tokens: watch::Receiver<Vec<String>>,
    events: LinkEvents<'_>,
    stop: &CancellationToken,
) -> Result<(), LinkError> {
    let bridge_id = identity.id().to_string();
    let target = endpoint(url, &identity.id(), "bridge");
    let config = node_kit::connection::websocket_config(MAX_DATA + 1024);
    let opened = tokio_tungstenite::connect_async_tls_with_config(target.as_str(), Some(config), true, Some(web_tls()));
    let (ws, _) = tokio::time::timeout(shared.config.handshake_timeout, opened)
        .await
        .map_err(|_| LinkError::Connect("timed out".into()))?
        .map_err(|e| LinkError::Connect(e.to_string()))?;
    let (mut sink, mut socket) = ws.split();

    // The proof, then the token set right behind it (the object takes messages in order).
    let nonce = match tokio::time::timeout(PROOF_STEP, next_control(&mut socket)).await {
        Ok(Ok(Control::Challenge { nonce })) => nonce,
        Ok(Ok(other)) => return Err(LinkError::Refused(format!("expected a challenge, got {other:?}"))),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(LinkError::Refused("no challenge".into())),
    };
    let b64 = |bytes: &[u8]| data_encoding::BASE64URL_NOPAD.encode(bytes);
    let proof = Control::Proof {
        key: b64(&identity.public_key()),
        signature: b64(&identity.sign(proof_message(&bridge_id, &nonce).as_bytes())),
    };
    let set = tokens.borrow_and_update().clone();
    for control in [proof, Control::Tokens { set }] {
        sink.send(control_message(&control)).await.map_err(|e| LinkError::Closed(e.to_string()))?;
    }
    match tokio::time::timeout(PROOF_STEP, next_control(&mut socket)).await {
        Ok(Ok(Control::Ready)) => {}
        Ok(Ok(other)) => return Err(LinkError::Refused(format!("expected ready, got {other:?}"))),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(LinkError::Refused("no answer to the proof".into())),
    }
    (events.ready)();
    tracing::info!(relay = url, "relay link ready");

    let (out_tx, mut out_rx) = mpsc::channel::<StreamFrame>(OUTBOUND_QUEUE);
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
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
                if let Err(e) = sink.send(control_message(&Control::Tokens { set })).await {
                    break Err(LinkError::Closed(e.to_string()));
                }
            }
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
    streams: &mut HashMap<u32, mpsc::Sender<Bytes>>,
    out: &mpsc::Sender<StreamFrame>,
) -> Option<StreamFrame> {
    match frame {
        StreamFrame::Open { stream, token_hash, http } => {
            let source = Source::Relay(token_hash);
            let refuse = |reason: &'static str| {
                shared.refusals.refused(source, reason);
                Some(StreamFrame::Close { stream, reason: reason.into() })
            };
            if shared.limiter.handshake(source).is_err() {
                return refuse("rate-limited");
            }
            if let Some(route) = http {
                let Ok(permit) = shared.exchanges.clone().try_acquire_owned() else {
                    return refuse("too-many-exchanges");
                };
                let (request_tx, request) = mpsc::channel(STREAM_BACKLOG);
                let (response, response_rx) = mpsc::channel(STREAM_BACKLOG);
                streams.insert(stream, request_tx);
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
            streams.insert(stream, inbound_tx);
            tokio::spawn(session::serve(Box::new(session_end), source, shared.clone(), admission));
            tokio::spawn(pump(stream, pump_end, inbound_rx, out.clone()));
            None
        }
        StreamFrame::Data { stream, bytes } => {
            // A stream this link no longer carries (ended here, its CLOSE crossing this DATA): say it again.
            let Some(inbound) = streams.get(&stream) else {
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

async fn next_control<S>(socket: &mut S) -> Result<Control, LinkError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(&text).map_err(|e| LinkError::Refused(format!("unreadable message: {e}")));
            }
            Some(Ok(Message::Close(close))) => {
                return Err(LinkError::Refused(
                    close.map_or_else(|| "closed".into(), |c| format!("{} {}", c.code, c.reason)),
                ));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(LinkError::Closed(e.to_string())),
            None => return Err(LinkError::Closed("the connection ended".into())),
        }
    }
}

fn control_message(control: &Control) -> Message {
    Message::text(serde_json::to_string(control).expect("control messages serialise"))
}
