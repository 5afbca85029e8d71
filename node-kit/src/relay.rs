//! The relay as a transport (`docs/relay.md`): how to reach a bridge's relay object, and, for a node, a
//! relayed stream that carries the same pinned TLS session as a LAN connection.
//!
//! The relay only ever sees the bytes of that TLS session; this module knows nothing of what is inside.

use crate::connection::websocket_config;
use certs::{Identity, KeyId};
use futures_util::{SinkExt, StreamExt};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_tungstenite::Connector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The largest message the relay takes from a node, and so the most a node's stream puts in one.
pub const MAX_RELAY_MESSAGE: usize = 65536;

/// The close code with which the relay ends a node's stream whose routing token left the bridge's set: the
/// owner revoked the device (`docs/relay.md`). No `NOT_PAIRED` frame may come before it.
pub const REVOKED_CLOSE_CODE: u16 = 4003;

/// Why a relayed stream could not be opened or ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The relay is up but the bridge is not connected to it (`503 bridge_offline`, or a stream ended
    /// with close code 1012).
    #[error("the bridge is not connected to its relay (the computer is off, asleep or offline)")]
    BridgeOffline,
    /// The relay does not know this node's routing token: the pairing was revoked, or the token replaced.
    #[error("the relay does not know this device's routing token; connect once at home to get a new one")]
    UnknownToken,
    /// The relay refused for a limit (`429`, `503 relay_busy`, …): retry no sooner than `retry_after`, the
    /// wait it named (`retryAfterMs`, else `Retry-After`), when it named one.
    #[error("the relay is busy ({error}); retry shortly")]
    Busy { error: String, retry_after: Option<Duration> },
    /// The relay could not be reached or answered something else.
    #[error("cannot reach the relay at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// `https://relay.example[/base]` → `wss://relay.example[/base]/v1/bridges/ID/SUFFIX`.
pub fn endpoint(relay_url: &str, bridge_id: &KeyId, suffix: &str) -> String {
    let base = relay_url.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws}/v1/bridges/{bridge_id}/{suffix}")
}

/// The text the bridge signs to prove its key to the relay (`docs/relay.md`, "The bridge link"): the
/// relay's host and the request's path as the bridge addressed them, its ID, the time and a fresh nonce.
pub fn bridge_proof_message(host: &str, path: &str, bridge_id: &KeyId, time_ms: &str, nonce: &str) -> String {
    format!("lanyard-relay-bridge-v2\n{host}\n{path}\n{bridge_id}\n{time_ms}\n{nonce}")
}

/// The bridge's upgrade request for its link to the relay at `relay_url`, its key proof in the headers,
/// stamped `time_ms` (ms since the Unix epoch, by the relay's clock as far as the bridge knows it). Each
/// call makes a fresh nonce: a request is good for one link.
pub fn bridge_link_request(relay_url: &str, identity: &Identity, time_ms: u64) -> Result<Request, String> {
    let bridge_id = identity.id();
    let target = endpoint(relay_url, &bridge_id, "bridge");
    let url = url::Url::parse(&target).map_err(|e| format!("{target:?} is not a URL: {e}"))?;
    let host = url.host_str().ok_or_else(|| format!("{target:?} has no host"))?;
    // As the Host header carries it: the port only when it is not the scheme's own.
    let host = url.port().map_or_else(|| host.to_string(), |port| format!("{host}:{port}"));
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| format!("no random source: {e}"))?;
    let nonce = data_encoding::BASE64URL_NOPAD.encode(&nonce);
    let time = time_ms.to_string();
    let signature = identity.sign(bridge_proof_message(&host, url.path(), &bridge_id, &time, &nonce).as_bytes());
    let mut request = target.as_str().into_client_request().map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    for (name, value) in [
        ("lanyard-bridge-key", data_encoding::BASE64URL_NOPAD.encode(&identity.public_key())),
        ("lanyard-bridge-time", time),
        ("lanyard-bridge-nonce", nonce),
        ("lanyard-bridge-signature", data_encoding::BASE64URL_NOPAD.encode(&signature)),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).expect("base64url and digits are header text"));
    }
    Ok(request)
}

/// The longest wait a relay's refusal is taken at its word for: a relay that names more is waited on this
/// long, and then asked again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The TLS client for `wss://` relays: the web's public roots (the relay's certificate is Cloudflare's),
/// with the ring provider every other TLS config here uses. This TLS protects only the routing token; the
/// bridge's own pinned TLS runs inside.
pub fn web_tls() -> Connector {
    Connector::Rustls(Arc::new(web_tls_config()))
}

/// [`web_tls`]'s configuration, for HTTPS clients of the relay.
pub fn web_tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    rustls::ClientConfig::builder_with_provider(certs::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Where a paired node reaches its bridge off the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRoute {
    pub url: String,
    pub bridge_id: KeyId,
    pub token: String,
}

/// A relayed stream to the bridge: bytes written to it reach the bridge, bytes the bridge sends can be read
/// from it; once it has ended, [`RelayedStream::close_code`] says how the relay ended it.
pub struct RelayedStream {
    io: DuplexStream,
    close_code: Arc<OnceLock<u16>>,
}

impl RelayedStream {
    /// The relay's close code, once it has closed the stream (set before the stream reads as ended).
    pub fn close_code(&self) -> Arc<OnceLock<u16>> {
        self.close_code.clone()
    }
}

impl AsyncRead for RelayedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for RelayedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Opens a relayed stream to the bridge. A task pumps between it and the relay's WebSocket until either
/// side closes.
pub async fn open_stream(route: &RelayRoute, timeout: Duration) -> Result<RelayedStream, RelayError> {
    let url = endpoint(&route.url, &route.bridge_id, "connect");
    let unreachable = |reason: String| RelayError::Unreachable { url: route.url.clone(), reason };
    let mut request = url.as_str().into_client_request().map_err(|e| unreachable(e.to_string()))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", route.token))
        .map_err(|_| unreachable("the routing token is not valid header text".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    let config = websocket_config(MAX_RELAY_MESSAGE + 1024);
    let opened = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, Some(web_tls()));
    let (ws, _) = match tokio::time::timeout(timeout, opened).await {
        Err(_) => return Err(unreachable("timed out".into())),
        Ok(Err(WsError::Http(response))) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
            let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok());
            return Err(refusal(response.status(), &body, retry_after, &route.url));
        }
        Ok(Err(e)) => return Err(unreachable(e.to_string())),
        Ok(Ok(opened)) => opened,
    };
    let (io, close_code) = pump(ws);
    Ok(RelayedStream { io, close_code })
}

/// The byte stream a relay WebSocket carries in its binary messages: what is written to the returned end
/// goes out in messages of at most [`MAX_RELAY_MESSAGE`] bytes, what comes in can be read from it. A task
/// pumps between the two until either side closes.
pub fn websocket_bytes<S>(ws: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pump(ws).0
}

/// [`websocket_bytes`], and the close code the far side ends with (recorded before the local end reads as
/// closed, so a reader that sees the end can ask why).
fn pump<S>(ws: WebSocketStream<S>) -> (DuplexStream, Arc<OnceLock<u16>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (local, mut far) = tokio::io::duplex(MAX_RELAY_MESSAGE);
    let close_code = Arc::new(OnceLock::new());
    let closed_with = close_code.clone();
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let mut buf = vec![0u8; MAX_RELAY_MESSAGE];
        loop {
            tokio::select! {
                read = far.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() { break },
                },
                message = stream.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => if far.write_all(&bytes).await.is_err() { break },
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(frame) = frame {
                            let _ = closed_with.set(u16::from(frame.code));
                        }
                        break;
                    }
                    Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        // The local end reads as ended now, not after the close handshake (which a relay may not answer).
        drop(far);
        let _ = sink.close().await;
    });
    (local, close_code)
}

/// The relay's HTTP refusal in typed form, with the wait it names: the body's `retryAfterMs`, else the
/// `Retry-After` header's seconds (`docs/relay.md`, "Past a limit"), at most [`MAX_RETRY_AFTER`].
fn refusal(status: StatusCode, body: &str, retry_after: Option<&str>, url: &str) -> RelayError {
    let body = serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
    let error = body.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_string();
    let wait = body
        .get("retryAfterMs")
        .and_then(serde_json::Value::as_u64)
        .map(Duration::from_millis)
        .or_else(|| retry_after.and_then(|seconds| seconds.trim().parse().ok()).map(Duration::from_secs))
        .map(|wait| wait.min(MAX_RETRY_AFTER));
    match (status.as_u16(), error.as_str()) {
        (503, "bridge_offline") => RelayError::BridgeOffline,
        (401, _) => RelayError::UnknownToken,
        (429, _) | (503, _) => {
            RelayError::Busy { error: if error.is_empty() { status.to_string() } else { error }, retry_after: wait }
        }
        _ => RelayError::Unreachable { url: url.to_string(), reason: format!("{status} {error}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_swap_http_for_ws() {
        let id = certs::Identity::generate().id();
        assert_eq!(endpoint("https://r.example/", &id, "connect"), format!("wss://r.example/v1/bridges/{id}/connect"));
        assert_eq!(
            endpoint("http://127.0.0.1:8787", &id, "bridge"),
            format!("ws://127.0.0.1:8787/v1/bridges/{id}/bridge")
        );
    }

    /// The relay's close code is known by the time the stream reads as ended: a client that sees the end
    /// can tell a revocation (4003) from a drop.
    #[tokio::test]
    async fn the_close_code_is_recorded_before_the_stream_ends() {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, frame::coding::CloseCode};
        let (near, far) = tokio::io::duplex(1024);
        let relay = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(far, Role::Server, None).await;
            ws.send(Message::binary(b"hello".to_vec())).await.unwrap();
            let revoked = CloseFrame { code: CloseCode::from(REVOKED_CLOSE_CODE), reason: "revoked".into() };
            ws.send(Message::Close(Some(revoked))).await.unwrap();
            while ws.next().await.is_some() {}
        });
        let ws = WebSocketStream::from_raw_socket(near, Role::Client, None).await;
        let (mut stream, close_code) = pump(ws);
        let mut read = Vec::new();
        stream.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, b"hello");
        assert_eq!(close_code.get(), Some(&REVOKED_CLOSE_CODE));
        relay.await.unwrap();
    }

    #[test]
    fn the_bridge_request_carries_a_proof_of_its_key_for_this_host_and_path() {
        let identity = Identity::generate();
        let id = identity.id();
        let request = bridge_link_request("https://r.example:443/", &identity, 1_700_000_000_123).unwrap();
        assert_eq!(request.uri().path(), format!("/v1/bridges/{id}/bridge"));
        let header = |name: &str| request.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("lanyard-bridge-time"), "1700000000123");
        let nonce = header("lanyard-bridge-nonce");
        assert_eq!(data_encoding::BASE64URL_NOPAD.decode(nonce.as_bytes()).unwrap().len(), 32);
        let key = data_encoding::BASE64URL_NOPAD.decode(header("lanyard-bridge-key").as_bytes()).unwrap();
        assert_eq!(key, identity.public_key());
        let signature = data_encoding::BASE64URL_NOPAD.decode(header("lanyard-bridge-signature").as_bytes()).unwrap();
        let message =
            format!("lanyard-relay-bridge-v2\nr.example\n/v1/bridges/{id}/bridge\n{id}\n1700000000123\n{nonce}");
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key);
        public.verify(message.as_bytes(), &signature).expect("the signature verifies");

        let local = bridge_link_request("http://127.0.0.1:8787", &identity, 1).unwrap();
        assert_ne!(local.headers()["lanyard-bridge-nonce"], request.headers()["lanyard-bridge-nonce"]);
        let signature = data_encoding::BASE64URL_NOPAD.decode(local.headers()["lanyard-bridge-signature"].as_bytes());
        let nonce = local.headers()["lanyard-bridge-nonce"].to_str().unwrap();
        let message = bridge_proof_message("127.0.0.1:8787", &format!("/v1/bridges/{id}/bridge"), &id, "1", nonce);
        public.verify(message.as_bytes(), &signature.unwrap()).expect("the host keeps its port");
    }

    #[test]
    fn refusals_are_typed() {
        let offline = refusal(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"bridge_offline"}"#, None, "u");
        assert_eq!(offline, RelayError::BridgeOffline);
        let unknown = refusal(StatusCode::UNAUTHORIZED, r#"{"error":"unknown_token"}"#, None, "u");
        assert_eq!(unknown, RelayError::UnknownToken);
        let busy = |body, header| refusal(StatusCode::TOO_MANY_REQUESTS, body, header, "u");
        let waits = |error: &str, ms: Option<u64>| RelayError::Busy {
            error: error.into(),
            retry_after: ms.map(Duration::from_millis),
        };
        // The body's milliseconds first, then the header's seconds, at most five minutes, else no wait named.
        assert_eq!(busy(r#"{"error":"rate_limited","retryAfterMs":120}"#, Some("1")), waits("rate_limited", Some(120)));
        assert_eq!(busy(r#"{"error":"too_many_streams"}"#, Some("2")), waits("too_many_streams", Some(2000)));
        assert_eq!(busy(r#"{"error":"too_many_streams"}"#, Some("86400")), waits("too_many_streams", Some(300_000)));
        assert_eq!(busy(r#"{"error":"too_many_streams"}"#, Some("soon")), waits("too_many_streams", None));
        assert_eq!(busy("", None), waits("429 Too Many Requests", None));
        assert!(matches!(refusal(StatusCode::NOT_FOUND, "", None, "u"), RelayError::Unreachable { .. }));
    }
}
