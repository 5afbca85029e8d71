//! The owner's console: a page served on loopback by the gateway itself, for pairing, the paired devices,
//! the agent's prompts and the tunnel, updated live. Static assets are compiled in (no CDN, no build step).
//!
//! The page is a thin client of the gateway's own operator methods ([`api`]): what it may do is what
//! `lanyard` may do, through the same dispatcher. Its defences (`docs/security.md` 3.47) sit in one guard
//! in front of every route: the `Host` must name this loopback listener (DNS rebinding), a state change
//! needs a same-origin `Origin`, a session cookie (`HttpOnly; SameSite=Strict`, from a one-time login
//! link) and the session's CSRF token; no CORS header is ever sent, and the CSP allows only this origin's
//! own script, style and connections.

mod api;
pub(crate) mod auth;

use crate::state::GatewayState;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use node_kit::refusals::Acceptor;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

const COOKIE: &str = "lanyard_console";
const CSRF_HEADER: &str = "x-lanyard-csrf";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

pub(crate) struct Console {
    state: Arc<GatewayState>,
    /// This listener's port: the only one a `Host` header may name.
    port: u16,
    /// The gateway's own WebSocket, where the console acts as an operator.
    gateway_url: String,
    operator: api::Operator,
}

/// Connections the console holds at once; more are closed as they arrive. A browser uses a few (six at most
/// per site, one per live tab's event stream among them), so this is plenty for the owner and keeps a local
/// process that opens thousands from taking the descriptors the bridge and gateway need.
pub const MAX_CONNECTIONS: usize = 32;
/// Descriptors the console can hold: its connections, and an operator link (both ends) per event stream.
pub const DESCRIPTORS: u64 = MAX_CONNECTIONS as u64 + 2 * api::MAX_EVENT_STREAMS as u64;
/// How long a connection may take to send a request's headers, and how long it may sit idle between requests
/// (an event stream is a response in progress, so this never ends one).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the console on `listener` (bound to loopback by [`crate::server::Gateway::bind`]) until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<GatewayState>,
    gateway_url: String,
    stop: CancellationToken,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let refusals = state.refusals.clone();
    let console = Arc::new(Console { state, port, gateway_url, operator: api::Operator::default() });
    let router = Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/login", get(login))
        .route("/api/session", get(session_info))
        .route("/api/logout", post(logout))
        .route("/api/call", post(api::call))
        .route("/api/events", get(api::events))
        .route("/api/pair-code", post(api::pair_code))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(console.clone(), guard))
        .with_state(console);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut acceptor = Acceptor::new(listener, &refusals, stop.clone());
    while let Some((tcp, addr)) = acceptor.next().await {
        // Full: the connection is closed at once (dropped), counted, never waited on.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.refused(addr.ip(), "console-full");
            continue;
        };
        let connection = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(router.clone()));
        let stop = stop.clone();
        acceptor.spawn(async move {
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
            drop(slot);
        });
    }
    acceptor.finish().await;
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// A refusal, answered as JSON `{error, message}`.
pub(crate) struct Refusal {
    status: StatusCode,
    error: &'static str,
    message: String,
}

pub(crate) fn refuse(status: StatusCode, error: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { status, error, message: message.into() }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.error, "message": self.message }))).into_response()
    }
}

/// The one guard in front of every route.
async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
    let mut response = if !host_allowed(&host, console.port) {
        refuse(StatusCode::FORBIDDEN, "host_not_allowed", "the console answers only to its loopback address")
            .into_response()
    } else if request.method() != Method::GET && !origin_allowed(request.headers(), &host) {
        refuse(StatusCode::FORBIDDEN, "origin_not_allowed", "changes are only taken from the console's own page")
            .into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `Host` must be this listener by a loopback name: a page of another site that points its own name at
/// 127.0.0.1 (DNS rebinding) sends its name, and is refused.
fn host_allowed(host: &str, port: u16) -> bool {
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|name| host == format!("{name}:{port}"))
}

/// A state change must come from this origin: browsers send `Origin` on every POST, cross-site or not.
fn origin_allowed(headers: &HeaderMap, host: &str) -> bool {
    headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) == Some(format!("http://{host}").as_str())
}

/// The session cookie's value, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}

/// The live session of the request, or the refusal to answer with.
pub(crate) fn session(console: &Console, headers: &HeaderMap) -> Result<auth::Session, Refusal> {
    cookie(headers)
        .and_then(|c| console.state.console.session(&c))
        .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "login_required", "log in with the link `lanyard open` prints"))
}

/// A session that may change something: it also presents its CSRF token.
pub(crate) fn session_for_change(console: &Console, headers: &HeaderMap) -> Result<auth::Session, Refusal> {
    let session = session(console, headers)?;
    let presented = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok()).unwrap_or_default();
    if auth::ConsoleAuth::csrf_ok(&session, presented) {
        Ok(session)
    } else {
        Err(refuse(StatusCode::FORBIDDEN, "csrf_required", "this change did not come from the console's page"))
    }
}

/// `GET /metrics`: for a logged-in browser, or a scraper with `Authorization: Bearer` and the metrics
/// token (`gateway/metrics-token` in the home), which reads this and nothing else.
async fn metrics(State(console): State<Arc<Console>>, headers: HeaderMap) -> Result<Response, Refusal> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
    match bearer {
        Some(token) if console.state.metrics_token.matches(token) => {}
        Some(_) => return Err(refuse(StatusCode::UNAUTHORIZED, "wrong_token", "that is not the metrics token")),
        None => {
            session(&console, &headers)?;
        }
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], console.state.metrics.render()).into_response())
}

#[derive(Deserialize)]
struct LoginQuery {
    token: Option<String>,
}

/// The one-time link: its token becomes a session cookie, and the address bar loses the token.
async fn login(State(console): State<Arc<Console>>, Query(query): Query<LoginQuery>) -> Response {
    let Some(cookie) = query.token.and_then(|t| console.state.console.redeem(&t)) else {
        tracing::info!("a console login link was refused (used, expired or unknown)");
        let page = "<!doctype html><title>Lanyard</title><p>This login link was already used or has expired. \
                    Run <code>lanyard open</code> on this computer for a new one.</p>";
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    };
    tracing::info!("console login");
    let max_age = auth::SESSION_IDLE.as_secs();
    let set = format!("{COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    ([(header::SET_COOKIE, set)], Redirect::to("/")).into_response()
}

async fn session_info(State(console): State<Arc<Console>>, headers: HeaderMap) -> Result<Response, Refusal> {
    let session = session(&console, &headers)?;
    Ok(axum::Json(json!({ "csrf": session.csrf })).into_response())
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Result<Response, Refusal> {
    session_for_change(&console, &headers)?;
    if let Some(cookie) = cookie(&headers) {
        console.state.console.logout(&cookie);
    }
    let expired = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok(([(header::SET_COOKIE, expired)], StatusCode::NO_CONTENT).into_response())
}

/// What the console reads of a request before it acts on it, for the fuzz target `console_json` (`fuzz/`).
#[doc(hidden)]
pub struct RequestRead {
    /// The guard's checks, for a listener on `port`.
    pub host_allowed: bool,
    pub origin_allowed: bool,
    /// The session cookie's value.
    pub cookie: Option<String>,
    /// The body as `POST /api/call` reads it: the method and its params, or the refusal's status and name.
    pub call: Result<(String, serde_json::Value), (u16, &'static str)>,
    /// The body as `POST /api/pair-code` reads it: `remote`, or the refusal's status and name.
    pub pair_code: Result<bool, (u16, &'static str)>,
}

/// Reads a request's headers (those a `HeaderMap` can hold) and body as the guard and the JSON routes do.
#[doc(hidden)]
pub fn read_request(headers: &[(&[u8], &[u8])], port: u16, body: &[u8]) -> RequestRead {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (header::HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            map.append(name, value);
        }
    }
    let host = map.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let refusal = |refused: Refusal| (refused.status.as_u16(), refused.error);
    RequestRead {
        host_allowed: host_allowed(host, port),
        origin_allowed: origin_allowed(&map, host),
        cookie: cookie(&map),
        call: api::json_body::<api::Call>(&map, body).map(|call| (call.method, call.params)).map_err(refusal),
        pair_code: api::json_body::<api::PairCodeRequest>(&map, body).map(|asked| asked.remote).map_err(refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_listeners_loopback_names_are_hosts() {
        assert!(host_allowed("127.0.0.1:18790", 18790));
        assert!(host_allowed("localhost:18790", 18790));
        assert!(host_allowed("[::1]:18790", 18790));
        for bad in ["evil.example", "evil.example:18790", "127.0.0.1", "127.0.0.1:1", "localhost.evil:18790", ""] {
            assert!(!host_allowed(bad, 18790), "{bad}");
        }
    }

    #[test]
    fn an_origin_must_be_exactly_this_one() {
        let with = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
            headers
        };
        assert!(origin_allowed(&with("http://127.0.0.1:18790"), "127.0.0.1:18790"));
        assert!(!origin_allowed(&with("http://127.0.0.1:9999"), "127.0.0.1:18790"));
        assert!(!origin_allowed(&with("http://localhost:18790"), "127.0.0.1:18790"));
        assert!(!origin_allowed(&with("null"), "127.0.0.1:18790"));
        assert!(!origin_allowed(&HeaderMap::new(), "127.0.0.1:18790"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; lanyard_console=abc; b=2"));
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("lanyard_consolex=abc"));
        assert_eq!(cookie(&headers), None);
    }
}
