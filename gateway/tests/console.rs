//! The owner's console over plain HTTP, request by request: the login link, and each of its defences
//! (`docs/security.md` 3.47). What a browser does with them is `console_browser.rs`.

mod support;

use node_kit::protocol::{ConsoleLogin, method};
use serde_json::{Value, json};
use support::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 exchange written by hand, so that every header (`Host` included) is exactly the test's.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON: {}", self.body))
    }
}

async fn http(console: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let addr = console.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_string(), body: body.to_string() }
}

type Headers<'a> = Vec<(&'a str, &'a str)>;

async fn with_console() -> (TestGateway, String) {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let console = gateway.console.clone().expect("a console");
    (gateway, console)
}

/// A login link from `console.login`, as `lanyard open` gets it: its path and query.
async fn login_path(gateway: &TestGateway) -> String {
    let login = gateway.operator().await.request(method::CONSOLE_LOGIN, Value::Null).await.unwrap();
    let login: ConsoleLogin = serde_json::from_value(login).unwrap();
    let console = gateway.console.as_deref().unwrap();
    login.url.strip_prefix(console).expect("a link to this console").to_string()
}

/// A logged-in session: its cookie header and CSRF token.
async fn logged_in(gateway: &TestGateway) -> (String, String) {
    let console = gateway.console.as_deref().unwrap();
    let answer = http(console, "GET", &login_path(gateway).await, &[], "").await;
    let cookie = answer.header("set-cookie").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let session = http(console, "GET", "/api/session", &[("Cookie", &cookie)], "").await;
    (cookie, session.json()["csrf"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn the_console_listens_on_loopback_only_and_only_when_asked() {
    let (_gateway, console) = with_console().await;
    assert!(console.starts_with("http://127.0.0.1:"), "{console}");
    let plain = TestGateway::start(|_| {}).await;
    assert_eq!(plain.console, None);
    let refused = plain.operator().await.request(method::CONSOLE_LOGIN, Value::Null).await.unwrap_err();
    assert!(refused.to_string().contains("no console"), "{refused}");
}

#[tokio::test]
async fn a_login_link_works_once_and_gives_a_strict_http_only_cookie() {
    let (gateway, console) = with_console().await;
    let path = login_path(&gateway).await;
    let first = http(&console, "GET", &path, &[], "").await;
    assert_eq!(first.status, 303);
    assert_eq!(first.header("location").as_deref(), Some("/"), "the token leaves the address bar");
    let cookie = first.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let again = http(&console, "GET", &path, &[], "").await;
    assert_eq!(again.status, 401, "a login link works once");
    assert!(again.header("set-cookie").is_none());
    assert_eq!(http(&console, "GET", "/login?token=made-up", &[], "").await.status, 401);
    assert_eq!(http(&console, "GET", "/api/session", &[], "").await.status, 401, "no cookie, no session");
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused() {
    let (gateway, console) = with_console().await;
    let path = login_path(&gateway).await;
    let port = console.rsplit(':').next().unwrap().to_string();
    let rebinding = format!("evil.example:{port}");
    for host in ["evil.example", rebinding.as_str(), "127.0.0.1:1"] {
        for target in ["/", "/app.js", "/api/session", path.as_str()] {
            let answer = http(&console, "GET", target, &[("Host", host)], "").await;
            assert_eq!(answer.status, 403, "{host} {target}");
            assert_eq!(answer.json()["error"], "host_not_allowed");
        }
    }
    // The login link was not spent by the refused requests.
    assert_eq!(http(&console, "GET", &path, &[], "").await.status, 303);
    let localhost = format!("localhost:{port}");
    assert_eq!(http(&console, "GET", "/", &[("Host", localhost.as_str())], "").await.status, 200);
}

#[tokio::test]
async fn a_change_needs_this_origin_a_session_its_csrf_token_and_json() {
    let (gateway, console) = with_console().await;
    let (cookie, csrf) = logged_in(&gateway).await;
    let origin = console.clone();
    let body = json!({ "method": "pair.list" }).to_string();
    let json = ("Content-Type", "application/json");
    let cases: Vec<(Headers, u16, &str)> = vec![
        (vec![json, ("Cookie", &cookie), ("X-Lanyard-Csrf", &csrf)], 403, "origin_not_allowed"),
        (
            vec![json, ("Origin", "http://127.0.0.1:9"), ("Cookie", &cookie), ("X-Lanyard-Csrf", &csrf)],
            403,
            "origin_not_allowed",
        ),
        (vec![json, ("Origin", "null"), ("Cookie", &cookie), ("X-Lanyard-Csrf", &csrf)], 403, "origin_not_allowed"),
        (vec![json, ("Origin", &origin), ("X-Lanyard-Csrf", &csrf)], 401, "login_required"),
        (vec![json, ("Origin", &origin), ("Cookie", &cookie)], 403, "csrf_required"),
        (vec![json, ("Origin", &origin), ("Cookie", &cookie), ("X-Lanyard-Csrf", "guess")], 403, "csrf_required"),
        (
            vec![
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Origin", &origin),
                ("Cookie", &cookie),
                ("X-Lanyard-Csrf", &csrf),
            ],
            415,
            "json_required",
        ),
    ];
    for (headers, status, error) in cases {
        let answer = http(&console, "POST", "/api/call", &headers, &body).await;
        assert_eq!((answer.status, answer.json()["error"].as_str().unwrap()), (status, error), "{headers:?}");
        assert!(answer.header("access-control-allow-origin").is_none());
    }
    let allowed = [json, ("Origin", origin.as_str()), ("Cookie", cookie.as_str()), ("X-Lanyard-Csrf", csrf.as_str())];
    let answer = http(&console, "POST", "/api/call", &allowed, &body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json()["nodes"].is_array());

    // Only the methods the page uses; `agent` (a turn as the owner) is not one.
    let agent = json!({ "method": "agent", "params": { "prompt": "hi", "idempotencyKey": "k" } }).to_string();
    let answer = http(&console, "POST", "/api/call", &allowed, &agent).await;
    assert_eq!((answer.status, answer.json()["error"].as_str().unwrap()), (403, "method_not_allowed"));

    // Logged out, the cookie is worth nothing.
    assert_eq!(http(&console, "POST", "/api/logout", &allowed, "").await.status, 204);
    assert_eq!(http(&console, "POST", "/api/call", &allowed, &body).await.status, 401);
}

#[tokio::test]
async fn every_answer_carries_a_strict_policy_and_no_cors() {
    let (gateway, console) = with_console().await;
    let (cookie, _) = logged_in(&gateway).await;
    for path in ["/", "/app.js", "/api/session", "/nowhere"] {
        let answer = http(&console, "GET", path, &[("Cookie", &cookie), ("Origin", "http://evil.example")], "").await;
        let csp = answer.header("content-security-policy").unwrap_or_default();
        for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(answer.header("x-frame-options").as_deref(), Some("DENY"));
        assert_eq!(answer.header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
        assert!(answer.header("access-control-allow-origin").is_none(), "{path}");
    }
    let preflight = http(
        &console,
        "OPTIONS",
        "/api/call",
        &[("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")],
        "",
    )
    .await;
    assert!(preflight.header("access-control-allow-origin").is_none());
    assert!(preflight.status >= 400, "{}", preflight.status);
    // The page has no inline script for a CSP to allow.
    let page = http(&console, "GET", "/", &[], "").await;
    assert!(!page.body.contains("<script>"), "{}", page.body);
}

/// The value of `name` with `label`=`value` in a scrape, parsed by a Prometheus text parser.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| label.is_none_or(|(key, value)| s.labels.get(key) == Some(value)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        })
        .unwrap_or(0.0)
}

async fn scrape(console: &str, auth: &[(&str, &str)]) -> prometheus_parse::Scrape {
    let answer = http(console, "GET", "/metrics", auth, "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    prometheus_parse::Scrape::parse(answer.body.lines().map(|l| Ok(l.to_string()))).expect("the text format parses")
}

#[tokio::test]
async fn metrics_parse_and_move_with_the_traffic() {
    let (gateway, console) = with_console().await;
    let token = gateway::home::GatewayToken::load(&gateway::home::metrics_token_path(gateway.home.path())).unwrap();
    let bearer = format!("Bearer {}", token.expose());
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(http(&console, "GET", "/metrics", &[], "").await.status, 401, "no token, no session");
    assert_eq!(http(&console, "GET", "/metrics", &[("Authorization", "Bearer guess")], "").await.status, 401);
    let (cookie, _) = logged_in(&gateway).await;
    assert_eq!(http(&console, "GET", "/metrics", &[("Cookie", &cookie)], "").await.status, 200);

    let before = scrape(&console, &auth).await;
    let operator = gateway.operator().await;
    for _ in 0..3 {
        operator.request(method::PAIR_LIST, Value::Null).await.unwrap();
    }
    gateway.pair_node(certs::Identity::generate().id(), "metered").await;
    let after = scrape(&console, &auth).await;
    let requests =
        |s: &prometheus_parse::Scrape| sample(s, "lanyard_gateway_requests_total", Some(("method", "pair.list")));
    assert_eq!(requests(&after) - requests(&before), 3.0);
    let approved =
        |s: &prometheus_parse::Scrape| sample(s, "lanyard_gateway_pairings_total", Some(("outcome", "approved")));
    assert_eq!(approved(&after) - approved(&before), 1.0);
    let opened = |s: &prometheus_parse::Scrape| {
        sample(s, "lanyard_gateway_connections_opened_total", Some(("mode", "operator")))
    };
    assert!(opened(&after) >= opened(&before) + 2.0, "the operator and pair_node's connections");
    assert!(sample(&after, "lanyard_gateway_connections_open", Some(("mode", "operator"))) >= 1.0);
    assert_eq!(sample(&after, "lanyard_gateway_relay_link_up", None), 0.0, "no relay");
}

/// The metrics name no device, key, token or conversation: a scraper learns counts, nothing about who.
#[tokio::test]
async fn metrics_carry_no_names_keys_or_tokens() {
    let (gateway, console) = with_console().await;
    let node = certs::Identity::generate().id();
    gateway.pair_node(node, "Ada's secret phone").await;
    let operator = gateway.operator().await;
    operator.request(method::PAIR_LIST, Value::Null).await.unwrap();
    let metrics_token =
        gateway::home::GatewayToken::load(&gateway::home::metrics_token_path(gateway.home.path())).unwrap();
    let bearer = format!("Bearer {}", metrics_token.expose());
    let answer = http(&console, "GET", "/metrics", &[("Authorization", &bearer)], "").await;
    assert_eq!(answer.status, 200);
    let node = node.to_string();
    for secret in
        [node.as_str(), &node[..16], "Ada", "secret", &gateway.token, &gateway.bridge_token, metrics_token.expose()]
    {
        assert!(!answer.body.contains(secret), "the metrics carry {secret:?}:\n{}", answer.body);
    }
}

/// The metrics token reads `/metrics` and nothing else: not the console's API, not the gateway; its file is
/// the owner's alone (0600).
#[tokio::test]
async fn the_metrics_token_reads_metrics_only_and_its_file_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let (gateway, console) = with_console().await;
    let path = gateway::home::metrics_token_path(gateway.home.path());
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let token = gateway::home::GatewayToken::load(&path).unwrap();
    let bearer = format!("Bearer {}", token.expose());
    let origin = console.clone();
    let body = json!({ "method": "pair.list" }).to_string();
    let headers =
        [("Authorization", bearer.as_str()), ("Origin", origin.as_str()), ("Content-Type", "application/json")];
    assert_eq!(http(&console, "GET", "/metrics", &headers, "").await.status, 200);
    for (method, path) in
        [("GET", "/api/session"), ("GET", "/api/events"), ("POST", "/api/call"), ("POST", "/api/pair-code")]
    {
        let answer = http(&console, method, path, &headers, &body).await;
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.body);
    }
    let refused = node_kit::Client::builder(&gateway.url).token(token.expose()).connect().await;
    assert!(refused.is_err(), "the metrics token is not a gateway token");
}

/// `GET /api/events` with `cookie`, read to the end of its head: the status, and the connection (an open
/// stream when 200).
async fn event_stream(console: &str, cookie: &str) -> (u16, tokio::net::TcpStream) {
    let addr = console.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), tcp)
}

/// At most 8 live event streams (each holds an operator connection): the 9th is refused with 429 until one
/// closes.
#[tokio::test]
async fn at_most_eight_event_streams_are_open_at_once() {
    let (gateway, console) = with_console().await;
    let (cookie, _) = logged_in(&gateway).await;
    let mut streams = Vec::new();
    for _ in 0..8 {
        let (status, stream) = event_stream(&console, &cookie).await;
        assert_eq!(status, 200);
        streams.push(stream);
    }
    let (status, _) = event_stream(&console, &cookie).await;
    assert_eq!(status, 429, "a 9th stream");
    drop(streams.pop());
    support::eventually(std::time::Duration::from_secs(10), async || {
        let (status, stream) = event_stream(&console, &cookie).await;
        (status == 200).then_some(stream)
    })
    .await;
}

/// Sessions live in the gateway's memory: after a restart (same home, same console port) the cookie is
/// worth nothing.
#[tokio::test]
async fn a_restart_logs_every_console_session_out() {
    let (gateway, console) = with_console().await;
    let (cookie, _) = logged_in(&gateway).await;
    assert_eq!(http(&console, "GET", "/api/session", &[("Cookie", &cookie)], "").await.status, 200);
    let port: u16 = console.rsplit(':').next().unwrap().parse().unwrap();
    let addr = gateway.addr;
    let home = gateway.stop_keeping_home().await;
    let restarted = TestGateway::start_at(home, addr, |config| config.console_port = Some(port)).await;
    assert_eq!(restarted.console.as_deref(), Some(console.as_str()));
    let answer = http(&console, "GET", "/api/session", &[("Cookie", &cookie)], "").await;
    assert_eq!((answer.status, answer.json()["error"].as_str()), (401, Some("login_required")));
}

/// Whether the console has closed `tcp`: a read that ends (0 bytes, or reset) within `within`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

/// A half-sent request, a connection that never sends a byte and one idle after a finished request each hold
/// a descriptor: the console closes all three when its 10-second header timeout runs out, not before.
#[tokio::test]
async fn half_sent_silent_and_idle_connections_are_closed_after_ten_seconds() {
    use std::time::{Duration, Instant};
    let (_gateway, console) = with_console().await;
    let addr = console.trim_start_matches("http://");
    let mut half_sent = tokio::net::TcpStream::connect(addr).await.unwrap();
    half_sent.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Unfinished: ").as_bytes()).await.unwrap();
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(format!("GET /app.css HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "a finished request is answered and the connection kept alive");
    let started = Instant::now();

    let mut tasks = tokio::task::JoinSet::new();
    for mut tcp in [half_sent, silent, idle] {
        tasks.spawn(async move {
            assert!(closed_within(&mut tcp, Duration::from_secs(30)).await, "closed at last");
            started.elapsed()
        });
    }
    while let Some(after) = tasks.join_next().await {
        let after = after.unwrap();
        assert!(after >= Duration::from_secs(5) && after < Duration::from_secs(25), "closed after {after:?}");
    }
}

/// The console holds at most 32 connections; each one past that is closed as it arrives and counted, and
/// once the holder lets go, the console answers again.
#[tokio::test]
async fn the_console_holds_at_most_32_connections_and_closes_the_rest() {
    use std::time::Duration;
    let (gateway, console) = with_console().await;
    let addr = console.trim_start_matches("http://");
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let closed = futures_util::future::join_all(held.iter_mut().map(|tcp| closed_within(tcp, Duration::from_secs(2))));
    assert_eq!(closed.await.into_iter().filter(|closed| *closed).count(), 8, "32 of 40 kept");
    let metrics_token =
        gateway::home::GatewayToken::load(&gateway::home::metrics_token_path(gateway.home.path())).unwrap();
    drop(held);
    let bearer = format!("Bearer {}", metrics_token.expose());
    // The slots come back as the console sees the closes.
    let scraped = support::eventually(Duration::from_secs(10), async || {
        let answer = http(&console, "GET", "/metrics", &[("Authorization", &bearer)], "").await;
        (answer.status == 200).then_some(answer.body)
    })
    .await;
    assert!(scraped.contains("lanyard_gateway_refusals_total{reason=\"console-full\"} 8"), "{scraped}");
}
