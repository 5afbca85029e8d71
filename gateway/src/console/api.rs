//! What the page calls: the gateway's operator methods, through an operator connection of the console's
//! own, so the page can do exactly what `lanyard` can and nothing else; live events as Server-Sent Events.

use super::{Console, Refusal, refuse, session, session_for_change};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use node_kit::connection_string::{ConnectionString, RelayInvite};
use node_kit::discovery::computer_name;
use node_kit::protocol::{ClientMode, PairCode, RemotePairCode, event, method};
use node_kit::running::RunningBridge;
use node_kit::{Client, ClientError};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore};
use tokio_stream::wrappers::BroadcastStream;

/// The operator methods the page uses; anything else is refused here, before the gateway.
const METHODS: &[&str] = &[
    method::HEALTH,
    method::NODE_LIST,
    method::PAIR_PENDING,
    method::PAIR_APPROVE,
    method::PAIR_REJECT,
    method::PAIR_LIST,
    method::PAIR_RENAME,
    method::PAIR_REVOKE,
    method::PAIR_POLICY,
    method::AGENT_PENDING,
    method::AGENT_RESPOND,
    method::AGENT_SESSIONS,
];
/// Live event streams open at once (a few tabs); each holds an operator connection.
pub(crate) const MAX_EVENT_STREAMS: usize = 8;

/// The console's operator connection for calls, opened when first needed and again after it drops.
pub(crate) struct Operator {
    client: Mutex<Option<Client>>,
    streams: Arc<Semaphore>,
}

impl Default for Operator {
    fn default() -> Self {
        Operator { client: Mutex::new(None), streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)) }
    }
}

async fn connect(console: &Console) -> Result<Client, ClientError> {
    Client::builder(console.gateway_url.clone())
        .token(console.state.token.expose().to_string())
        .mode(ClientMode::Operator)
        .instance_id("console")
        .display_name("console")
        .connect()
        .await
}

impl Operator {
    async fn client(&self, console: &Console) -> Result<Client, ClientError> {
        let mut client = self.client.lock().await;
        if let Some(live) = client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(live.clone());
        }
        let fresh = connect(console).await?;
        *client = Some(fresh.clone());
        Ok(fresh)
    }
}

/// A JSON body, and only JSON: a cross-site form cannot send `application/json` without a preflight,
/// which this server never answers.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Refusal> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "json_required", "send application/json"));
    }
    serde_json::from_slice(body).map_err(|e| refuse(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))
}

#[derive(Deserialize)]
pub(super) struct Call {
    pub(super) method: String,
    #[serde(default)]
    pub(super) params: Value,
}

/// `POST /api/call {method, params}`: one operator method; its answer, or `{error}` with its shape.
pub(crate) async fn call(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    session_for_change(&console, &headers)?;
    let call: Call = json_body(&headers, &body)?;
    if !METHODS.contains(&call.method.as_str()) {
        return Err(refuse(StatusCode::FORBIDDEN, "method_not_allowed", "the console does not call that method"));
    }
    let unavailable = |e: ClientError| refuse(StatusCode::BAD_GATEWAY, "gateway_unavailable", e.to_string());
    let client = console.operator.client(&console).await.map_err(unavailable)?;
    match client.request(&call.method, call.params).await {
        Ok(answer) => Ok(Json(answer).into_response()),
        Err(ClientError::Remote(error)) => {
            Ok((StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response())
        }
        Err(e) => Err(unavailable(e)),
    }
}

#[derive(Deserialize)]
pub(super) struct PairCodeRequest {
    /// A device away from home: door 3's invite and PIN, through the relay.
    #[serde(default)]
    pub(super) remote: bool,
}

/// How long the bridge's record is checked against the bridge itself.
const BRIDGE_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// `POST /api/pair-code {remote}`: a one-time code as the device takes it, text and QR code (SVG): door 2's
/// connection string to this computer's bridge, or door 3's relay invite with its PIN.
pub(crate) async fn pair_code(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Refusal> {
    session_for_change(&console, &headers)?;
    let PairCodeRequest { remote } = json_body(&headers, &body)?;
    let home = &console.state.config.home;
    let bridge = match RunningBridge::read(home) {
        Ok(Some(bridge)) if bridge.answers(BRIDGE_CHECK).await => bridge,
        _ => {
            let why = "the bridge is not running; start it with `lanyard up` (it serves this console too)";
            return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "bridge_not_running", why));
        }
    };
    let unavailable = |e: ClientError| refuse(StatusCode::BAD_GATEWAY, "gateway_unavailable", e.to_string());
    let client = console.operator.client(&console).await.map_err(unavailable)?;
    let ask = |method: &'static str| async move {
        match client.request(method, Value::Null).await {
            Ok(answer) => Ok(answer),
            Err(ClientError::Remote(error)) => Err(refuse(StatusCode::BAD_REQUEST, "refused", error.message)),
            Err(e) => Err(unavailable(e)),
        }
    };
    let unreadable = |e: serde_json::Error| refuse(StatusCode::BAD_GATEWAY, "gateway_unavailable", e.to_string());
    let answer = if remote {
        let code: RemotePairCode = serde_json::from_value(ask(method::PAIR_REMOTE).await?).map_err(unreadable)?;
        let invite =
            RelayInvite { relay_url: code.relay_url, bridge_id: bridge.bridge_id, routing: code.routing, name: None }
                .named(&computer_name());
        json!({ "text": invite.to_string(), "pin": code.pin, "requestId": code.request_id, "expiresAtMs": code.expires_at_ms })
    } else {
        let code: PairCode = serde_json::from_value(ask(method::PAIR_CODE).await?).map_err(unreadable)?;
        let host = bridge.device_address();
        let string = ConnectionString {
            host: host.to_string(),
            port: bridge.port,
            bridge_id: bridge.bridge_id,
            code: code.code,
        };
        json!({
            "text": string.to_string(), "requestId": code.request_id, "expiresAtMs": code.expires_at_ms,
            "loopbackOnly": host.is_loopback(),
        })
    };
    let text = answer["text"].as_str().expect("set above").to_string();
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(240, 240).build();
    let mut answer = answer;
    answer["svg"] = Value::String(svg);
    Ok(Json(answer).into_response())
}

/// Whether the page needs to hear of an event: pairing and presence, and an agent run's prompts (not
/// every text delta of every turn).
fn wanted(event: &node_kit::protocol::EventFrame) -> bool {
    match event.event.as_str() {
        event::PAIR_REQUESTED | event::PAIR_RESOLVED | event::PRESENCE => true,
        event::AGENT => matches!(
            event.payload.get("kind").and_then(Value::as_str),
            Some("permission" | "question" | "plan" | "prompt_closed")
        ),
        _ => false,
    }
}

/// `GET /api/events`: the gateway's events the page reacts to, as they happen, on an operator connection
/// of the stream's own.
pub(crate) async fn events(State(console): State<Arc<Console>>, headers: HeaderMap) -> Result<Response, Refusal> {
    session(&console, &headers)?;
    let Ok(permit) = console.operator.streams.clone().try_acquire_owned() else {
        return Err(refuse(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", "close another console tab"));
    };
    let client =
        connect(&console).await.map_err(|e| refuse(StatusCode::BAD_GATEWAY, "gateway_unavailable", e.to_string()))?;
    let stream = BroadcastStream::new(client.subscribe())
        .filter_map(|item| async move { item.ok().filter(wanted) })
        .map(move |frame| {
            // The stream keeps the connection and its place among the streams for as long as it lives.
            let _held = (&client, &permit);
            Ok::<_, std::convert::Infallible>(Event::default().event(frame.event).data(frame.payload.to_string()))
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
