//! Secrets stay secret: key, token, store and conversation files are 0600 in 0700 directories, and a
//! canary prompt, answer, a pairing code, a PIN, the tokens (gateway, bridge, metrics, console login,
//! session cookie, CSRF, routing) and the private keys never appear in the logs of a full paired session,
//! captured at TRACE through the filter the binaries use.

mod support;

use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, redeem};
use node_kit::protocol::{AgentParams, ConsoleLogin, RemotePairCode, RoutingToken, Scope, method};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{LogCapture, TestGateway, claude_binary};
use support::{TestBridge, connection_string, pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 exchange with the console at `console`: the whole answer.
async fn console_http(console: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let addr = console.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

/// The value of the header `name` in an HTTP answer.
fn header(answer: &str, name: &str) -> String {
    answer
        .lines()
        .find_map(|line| line.split_once(':').filter(|(key, _)| key.eq_ignore_ascii_case(name)))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {answer}"))
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_files_are_private() {
    let Some(claude) = claude_binary() else { return };
    let logs = LogCapture::install();

    const PROMPT_CANARY: &str = "canary-prompt-b71c04";
    let api = MessagesApi::start(|_| Reply::text(&["canary-answer-", "e93f"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |config| config.console_port = Some(0)).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity.clone(), paired).connect().await.unwrap();
    let outcome =
        node.agent(AgentParams::new(format!("remember {PROMPT_CANARY}"))).await.unwrap().outcome().await.unwrap();
    assert_eq!(outcome.result, "canary-answer-e93f");
    // Door 3's secrets: a PIN and its routing token (the tunnel is on, its relay unreachable), and the node's
    // own routing token.
    let operator = gateway.operator().await;
    operator.request(method::TUNNEL_SET, json!({ "url": "http://127.0.0.1:9" })).await.unwrap();
    let remote: RemotePairCode =
        serde_json::from_value(operator.request(method::PAIR_REMOTE, Value::Null).await.unwrap()).unwrap();
    let routing: RoutingToken =
        serde_json::from_value(node.request(method::TUNNEL_TOKEN, Value::Null).await.unwrap()).unwrap();
    node.close();

    // The console: a login link used once and refused again, the session's cookie and CSRF token each used,
    // and a scrape with the metrics token and with a wrong one.
    let console = gateway.console.clone().expect("a console");
    let login: ConsoleLogin =
        serde_json::from_value(operator.request(method::CONSOLE_LOGIN, Value::Null).await.unwrap()).unwrap();
    let login_path = login.url.strip_prefix(&console).unwrap().to_string();
    let logged_in = console_http(&console, "GET", &login_path, &[]).await;
    let cookie = header(&logged_in, "set-cookie").split(';').next().unwrap().to_string();
    assert!(console_http(&console, "GET", &login_path, &[]).await.starts_with("HTTP/1.0 4"), "the link works once");
    let session = console_http(&console, "GET", "/api/session", &[("Cookie", &cookie)]).await;
    let csrf: Value = serde_json::from_str(session.split_once("\r\n\r\n").unwrap().1).unwrap();
    let csrf = csrf["csrf"].as_str().unwrap().to_string();
    let (cookie_value, login_token) = (cookie.split_once('=').unwrap().1, login_path.split_once("token=").unwrap().1);
    let origin = [("Cookie", cookie.as_str()), ("Origin", console.as_str())];
    let forged =
        console_http(&console, "POST", "/api/logout", &[origin[0], origin[1], ("X-Lanyard-CSRF", "csrf-guess-4d1")])
            .await;
    assert!(forged.starts_with("HTTP/1.0 403"), "{forged}");
    let out = console_http(&console, "POST", "/api/logout", &[origin[0], origin[1], ("X-Lanyard-CSRF", &csrf)]).await;
    assert!(out.starts_with("HTTP/1.0 2"), "{out}");
    let metrics_token = std::fs::read_to_string(gateway::home::metrics_token_path(gateway.home.path())).unwrap();
    let metrics_token = metrics_token.trim();
    let bearer = format!("Bearer {metrics_token}");
    assert!(console_http(&console, "GET", "/metrics", &[("Authorization", &bearer)]).await.starts_with("HTTP/1.0 200"));
    let wrong = console_http(&console, "GET", "/metrics", &[("Authorization", "Bearer metrics-guess-7b2")]).await;
    assert!(wrong.starts_with("HTTP/1.0 401"), "{wrong}");

    // Door 2: the one-time code is a secret too, used and refused again (both paths log).
    let string = connection_string(&bridge, &gateway).await;
    let phone = certs::Identity::generate();
    redeem(&string, &phone, PairingRequest::new("QR phone", "test")).await.expect("redeemed");
    redeem(&string, &certs::Identity::generate(), PairingRequest::new("late", "test")).await.unwrap_err();

    let home = gateway.home.path().to_path_buf();
    // The conversation record holds the prompts: its index and history files are private too.
    let conversations: Vec<_> = std::fs::read_dir(home.join("agent")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(conversations.iter().any(|f| f.to_string_lossy().contains("history")), "{conversations:?}");
    let private_files = [
        gateway::home::token_path(&home),
        gateway::home::bridge_token_path(&home),
        gateway::home::metrics_token_path(&home),
        gateway::home::paired_store_path(&home),
        bridge::identity::key_file(&home),
        node_kit::running::RunningBridge::path(&home),
    ]
    .into_iter()
    .chain(conversations);
    for file in private_files {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        let dir_mode = std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700, "{}", file.parent().unwrap().display());
    }
    let key_pem = std::fs::read_to_string(bridge::identity::key_file(&home)).unwrap();
    let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let secrets = [
        PROMPT_CANARY.to_string(),
        "canary-answer".to_string(),
        gateway.token.clone(),
        gateway.bridge_token.clone(),
        key_body,
        identity.to_pkcs8_pem().lines().filter(|l| !l.starts_with("-----")).collect(),
        string.code.clone(),
        remote.routing.clone(),
        routing.token.clone(),
        login_token.to_string(),
        cookie_value.to_string(),
        csrf.clone(),
        "csrf-guess-4d1".to_string(),
        metrics_token.to_string(),
        "metrics-guess-7b2".to_string(),
    ];
    bridge.stop().await;
    gateway.stop().await;

    let text = logs.text();
    assert!(text.contains("paired node connected") && text.contains("agent run accepted"), "the capture works");
    assert!(text.contains("paired with a one-time code") && text.contains("pairing code refused"), "{text}");
    logs.assert_free_of(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
    // The PIN is six digits: looked for as a number of its own, outside each line's timestamp.
    let pin_line = text
        .lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).any(|number| number == remote.pin));
    assert!(pin_line.is_none(), "the PIN leaked into the logs: {pin_line:?}");
}
