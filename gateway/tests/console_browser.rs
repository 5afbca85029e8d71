//! The owner's console in a real headless Chromium: logging in through the one-time link, a pairing
//! request appearing live and approved, the device renamed and revoked, a permission prompt answered; and
//! what a page of another site can do to it in the same browser (nothing). Screenshots go to
//! `docs/console/` for the README when `LANYARD_UPDATE_SCREENSHOTS` is set (else under the target directory).

#[path = "support/chromium.rs"]
mod chromium;
mod support;

use chromium::{Chromium, click, eval, login_url, screenshot, until};
use node_kit::protocol::{AgentParams, PendingPairingList, method};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::messages_api::{MessagesApi, Reply};
use support::{TestGateway, claude_binary, eventually, skip};

/// A pairing request from a device, as the bridge files it.
async fn ask_to_pair(gateway: &TestGateway, name: &str) -> String {
    let bridge = gateway.bridge_client().await;
    gateway.submit_pairing(&bridge, certs::Identity::generate().id(), name).await
}

async fn pending(gateway: &TestGateway) -> Vec<String> {
    let list = gateway.operator().await.request(method::PAIR_PENDING, Value::Null).await.unwrap();
    serde_json::from_value::<PendingPairingList>(list).unwrap().requests.into_iter().map(|r| r.request_id).collect()
}

#[tokio::test]
async fn the_owner_logs_in_pairs_renames_revokes_and_answers_a_prompt_in_the_console() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|r| {
        if r.has_tool_result {
            Reply::text(&["done"])
        } else {
            Reply::tool(
                "toolu_console_1",
                "Bash",
                json!({ "command": "echo FROM-CONSOLE > console.txt", "description": "Write a file" }),
            )
        }
    })
    .await;
    let gateway = TestGateway::with_claude(claude, &api, |config| config.console_port = Some(0)).await;
    let Some(chromium) = Chromium::start(skip).await else { return };
    let console = gateway.console.clone().unwrap();

    // Log in through the one-time link: the page comes up, the address bar has lost the token.
    let link = login_url(&gateway.operator().await).await;
    let page = chromium.open(&link).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    assert_eq!(page.url().await.unwrap().as_deref(), Some(format!("{console}/").as_str()));
    until(&page, "document.getElementById('live').textContent === 'live'").await;

    // A device asks to pair: it shows up without a reload.
    let asked = Instant::now();
    let request_id = ask_to_pair(&gateway, "Ada's phone").await;
    until(&page, &format!("!!document.querySelector('#pending li[data-request=\"{request_id}\"]')")).await;
    let shown_after = asked.elapsed();
    let card: String = eval(&page, "document.querySelector('#pending li').textContent").await;
    assert!(card.contains("Ada's phone") && card.contains("428913") && card.contains("192.168.1.23"), "{card}");
    screenshot(&page, "pending").await;

    // Approve it with chat only.
    click(&page, "#pending input[data-scope=\"voice\"]").await;
    click(&page, "#pending .approve").await;
    until(&page, "!!document.querySelector('#devices li[data-node]')").await;
    let paired = gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert_eq!(paired["nodes"][0]["scopes"], json!(["chat"]), "{paired}");
    until(&page, "!document.querySelector('#pending li[data-request]')").await;

    // Rename it (the page asks with window.prompt: answered here).
    page.evaluate("window.prompt = () => 'Kitchen tablet'").await.unwrap();
    click(&page, "#devices .rename").await;
    until(&page, "document.querySelector('#devices li .name').textContent === 'Kitchen tablet'").await;
    screenshot(&page, "devices").await;

    // The agent asks for permission; the owner allows it in the console and the tool runs.
    let operator = gateway.operator().await;
    let run = tokio::spawn(async move {
        let params = AgentParams { timeout_ms: Some(120_000), ..AgentParams::new("write the file").session("desk") };
        operator.agent(params).await.unwrap().outcome().await
    });
    until(&page, "!!document.querySelector('#prompts li[data-prompt]')").await;
    let prompt: String = eval(&page, "document.querySelector('#prompts li').textContent").await;
    assert!(prompt.contains("Bash") && prompt.contains("FROM-CONSOLE"), "{prompt}");
    screenshot(&page, "prompt").await;
    click(&page, "#prompts .allow").await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), run).await.unwrap().unwrap().unwrap();
    assert_eq!(outcome.result, "done");
    let cwd = gateway.claude_home.as_ref().unwrap().path();
    assert_eq!(std::fs::read_to_string(cwd.join("console.txt")).unwrap().trim(), "FROM-CONSOLE");
    until(&page, "!document.querySelector('#prompts li[data-prompt]')").await;
    // The conversation is named by where it was started and its key; the first prompt is a line under it.
    until(&page, "!!document.querySelector('#sessions li[data-session=\"desk\"]')").await;
    let conversation: Vec<String> = eval(
        &page,
        "[...document.querySelectorAll('#sessions li[data-session=\"desk\"] div')].map(d => d.textContent)",
    )
    .await;
    assert_eq!(conversation[0], "This computer · desk", "{conversation:?}");
    assert!(conversation[1].starts_with("Started ") && conversation[1].contains(" · 1 turn · "), "{conversation:?}");
    assert_eq!(conversation[2], "“write the file”", "{conversation:?}");
    // Commands in the page's own text are code, not raw backticks.
    let tunnel: String = eval(&page, "document.getElementById('tunnel').innerHTML").await;
    assert!(tunnel.contains("<code>lanyard tunnel enable URL</code>") && !tunnel.contains('`'), "{tunnel}");
    // The turn is in the metrics, which the logged-in page may read.
    let metrics: String = eval(&page, "fetch('/metrics').then(r => r.text())").await;
    assert!(metrics.contains("lanyard_gateway_agent_turns_total{outcome=\"ok\"} 1"), "{metrics}");
    assert!(metrics.contains("lanyard_gateway_agent_turn_seconds_count 1"), "{metrics}");

    // Revoke it.
    page.evaluate("window.confirm = () => true").await.unwrap();
    click(&page, "#devices .revoke").await;
    until(&page, "!document.querySelector('#devices li[data-node]')").await;
    let paired = gateway.operator().await.request(method::PAIR_LIST, Value::Null).await.unwrap();
    assert_eq!(paired["nodes"], json!([]));

    // The login link does not work twice.
    let again = chromium.open(&link).await;
    let text: String = eval(&again, "document.body.textContent").await;
    assert!(text.contains("already used or has expired"), "{text}");

    // What the page weighs on the wire: the document, its script and its style (not the API's answers).
    let weight: f64 = eval(
        &page,
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
         .filter(e => !e.name.includes('/api/')).reduce((n, e) => n + e.transferSize, 0)",
    )
    .await;
    eprintln!(
        "console: page weight {weight} bytes (document, script, style); pairing request shown after {shown_after:?}"
    );
}

/// A tiny web server for the attacker's page: every request gets `html`.
async fn evil_site(html: String) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_page_of_another_site_in_the_same_browser_cannot_approve_a_request() {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let Some(chromium) = Chromium::start(skip).await else { return };
    let console = gateway.console.clone().unwrap();
    let page = chromium.open(&login_url(&gateway.operator().await).await).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    let request_id = ask_to_pair(&gateway, "Not yours").await;

    // The attacker's page tries every way a page can send a request: a form POST (no preflight), a
    // no-cors fetch with credentials, a CORS fetch with JSON and credentials.
    let call = json!({ "method": "pair.approve", "params": { "requestId": request_id } }).to_string();
    let html = format!(
        r#"<!doctype html><body><form id="f" method="POST" action="{console}/api/call" enctype="text/plain">
<input name='{call}' value=''></form>
<script>
Promise.allSettled([
  fetch("{console}/api/call", {{ method: "POST", mode: "no-cors", credentials: "include", body: '{call}' }}),
  fetch("{console}/api/call", {{ method: "POST", credentials: "include", headers: {{ "content-type": "application/json" }}, body: '{call}' }}),
  fetch("{console}/api/session", {{ credentials: "include" }}).then(r => r.text()),
]).then(([, , read]) => document.title = "sent: " + (read.value || "blocked"));
</script></body>"#
    );
    let (port, _site) = evil_site(html).await;
    // Another site (localhost is not 127.0.0.1's site), then the same site on another port.
    for origin in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
        let evil = chromium.open(&origin).await;
        until(&evil, "document.title.startsWith('sent: ')").await;
        let title: String = eval(&evil, "document.title").await;
        assert!(!title.contains("csrf"), "the attacker's page read the session from {origin}: {title}");
        // The fetches are answered; now the form, which leaves the attacker's page for the console's refusal.
        evil.evaluate("document.getElementById('f').submit()").await.unwrap();
        // Mid-navigation the page has no context to evaluate in: such a check counts as not yet.
        let refused = "location.pathname === '/api/call' && document.body.textContent.includes('origin_not_allowed')";
        let deadline = Instant::now() + Duration::from_secs(20);
        while evil.evaluate(refused).await.ok().and_then(|v| v.into_value::<bool>().ok()) != Some(true) {
            assert!(Instant::now() < deadline, "the form's POST from {origin} was not answered with its refusal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pending(&gateway).await, vec![request_id.clone()], "still waiting after {origin}");
    }
    // The owner's own page still works.
    click(&page, "#pending .approve").await;
    eventually(Duration::from_secs(10), async || pending(&gateway).await.is_empty().then_some(())).await;
}

#[tokio::test]
async fn the_page_takes_no_endpoint_or_token_from_its_address() {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let Some(chromium) = Chromium::start(skip).await else { return };
    let console = gateway.console.clone().unwrap();
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_at = trap.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while trap.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let page = chromium.open(&login_url(&gateway.operator().await).await).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    let lure = format!(
        "{console}/?gatewayUrl=ws://{trap_at}&url=http://{trap_at}&token=abc&endpoint=http://{trap_at}#gatewayUrl=ws://{trap_at}"
    );
    page.goto(lure).await.unwrap();
    until(&page, "document.body.dataset.ready === 'true'").await;
    until(&page, "document.getElementById('live').textContent === 'live'").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the page talked to the address in its URL");
}

/// `lanyard up` restarts while a tab is open: within seconds the tab says the restart ended its session and
/// how to get back in, instead of "reconnecting…"; while nothing answers, it says so.
#[tokio::test]
async fn after_a_restart_the_page_says_the_session_ended_and_how_to_log_in_again() {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let Some(chromium) = Chromium::start(skip).await else { return };
    let console = gateway.console.clone().unwrap();
    let console_port: u16 = console.rsplit(':').next().unwrap().parse().unwrap();
    let page = chromium.open(&login_url(&gateway.operator().await).await).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    until(&page, "document.getElementById('live').textContent === 'live'").await;

    let addr = gateway.addr;
    let home = gateway.stop_keeping_home().await;
    until(&page, "document.getElementById('live').textContent.includes('not running on this computer')").await;
    let _restarted = TestGateway::start_at(home, addr, |config| config.console_port = Some(console_port)).await;
    let restarted = Instant::now();
    until(&page, "!document.getElementById('ended').hidden").await;
    let told_after = restarted.elapsed();
    assert!(told_after < Duration::from_secs(10), "told after {told_after:?}");
    let shown: String = eval(&page, "document.body.innerText").await;
    assert!(shown.contains("Lanyard restarted") && shown.contains("lanyard open"), "{shown}");
    assert!(!shown.contains("reconnecting") && !shown.contains("Paired devices"), "{shown}");
    eprintln!("console: a restart was shown {told_after:?} after the gateway came back");
}
