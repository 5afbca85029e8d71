//! `lanyard-node` end to end with real parts: the real `claude` against the scripted Messages API, the
//! gateway, the bridge (mutual TLS), the node binary and its headless Chromium.

mod node_support;

use nix::sys::signal::Signal;
use node_kit::protocol::ErrorCode;
use node_kit::protocol::{AgentParams, AppState};
use node_support::support::gw::eventually;
use node_support::support::gw::messages_api::{ApiRequest, Reply};
use node_support::{Computer, NodeProcess, TestPage, answered_tools, lanyard_node, result_text, tool_result};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The scripted model.
/// - `TOOL <name> <id> <json input>` calls `mcp__lanyard__<name>` as tool use `<id>`.
/// - `wall display <url>` navigates the only screen there, then takes a snapshot, then answers.
/// - after any other tool result: `done`; anything else: `heard: <prompt>`.
fn script(request: &ApiRequest) -> Reply {
    let text = request.last_user_text.trim();
    if let Some(call) = text.strip_prefix("TOOL ") {
        let mut parts = call.splitn(3, ' ');
        let (name, id, input) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or("{}"));
        return Reply::ToolUse {
            id: id.into(),
            name: format!("mcp__lanyard__{name}"),
            input: serde_json::from_str(input).unwrap(),
        };
    }
    if let Some(url) = text.strip_prefix("wall display ") {
        return Reply::ToolUse {
            id: "toolu_nav".into(),
            name: "mcp__lanyard__screen_navigate".into(),
            input: json!({ "url": url }),
        };
    }
    let answered = answered_tools(request);
    if answered.iter().any(|id| id == "toolu_nav") {
        return Reply::ToolUse {
            id: "toolu_snap".into(),
            name: "mcp__lanyard__screen_snapshot".into(),
            input: json!({}),
        };
    }
    if !answered.is_empty() {
        return Reply::text(&["done"]);
    }
    Reply::text(&["heard: ", text])
}

/// The owner asks; the tool result `id` the model got.
async fn agent_tool(computer: &Computer, prompt: &str, id: &str) -> Value {
    let operator = computer.operator().await;
    let run = operator.agent(AgentParams { timeout_ms: Some(60_000), ..AgentParams::new(prompt) }).await.unwrap();
    run.outcome().await.unwrap();
    tool_result(&computer.api, id).unwrap_or_else(|| panic!("the model never got the result of {id}"))
}

/// The error object of a failed tool result.
fn tool_error(block: &Value) -> Value {
    assert_eq!(block["is_error"], true, "expected a tool error: {block}");
    serde_json::from_str::<Value>(&result_text(block)).unwrap()["error"].clone()
}

fn pixel(image: &[u8], width: u32, x: u32, y: u32, channels: usize) -> [u8; 3] {
    let at = (y as usize * width as usize + x as usize) * channels;
    [image[at], image[at + 1], image[at + 2]]
}

/// The whole loop: claude calls screen_navigate then screen_snapshot; each crosses gateway → bridge →
/// lanyard-node → Chromium; the PNG comes back to the model as image content, and the boxes the test drew
/// are where it drew them.
#[tokio::test]
async fn the_agent_navigates_a_node_screen_and_sees_it() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let page = TestPage::start().await;
    let mut node = NodeProcess::pair_and_run(&computer, "Wall display", &["--web-allow", &page.origin], &[]).await;
    let summary = computer.node_named("Wall display").await;
    assert!(summary.commands.iter().any(|c| c == "screen.snapshot"), "{summary:?}");

    let snap = agent_tool(&computer, &format!("wall display {}/", page.origin), "toolu_snap").await;
    let navigated = tool_result(&computer.api, "toolu_nav").unwrap();
    assert_ne!(navigated["is_error"], true, "{navigated}");
    let blocks = snap["content"].as_array().expect("content blocks");
    let image = blocks.iter().find(|b| b["type"] == "image").unwrap_or_else(|| panic!("no image in {snap}"));
    assert_eq!(image["source"]["media_type"], "image/png");
    let png = data_encoding::BASE64.decode(image["source"]["data"].as_str().unwrap().as_bytes()).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    assert_eq!((info.width, info.height), (1280, 720));
    assert_eq!(pixel(&pixels, info.width, 150, 150, channels), [255, 0, 0], "inside the red box");
    assert_eq!(pixel(&pixels, info.width, 650, 450, channels), [0, 0, 255], "inside the blue box");
    assert_eq!(pixel(&pixels, info.width, 50, 50, channels), [255, 255, 255], "outside the boxes");
    assert_eq!(pixel(&pixels, info.width, 310, 150, channels), [255, 255, 255], "right of the red box");

    // A clean shutdown closes Chromium.
    assert!(!node.browser_processes().is_empty(), "the node runs its browser");
    assert!(node.stop().await.success());
    eventually(Duration::from_secs(10), async || node.browser_processes().is_empty().then_some(())).await;
    computer.stop().await;
}

/// Three transcripts give three streamed replies in order; a burst beyond the voice limit is answered
/// RATE_LIMITED with retryAfterMs, and every transcript is still answered, in order.
#[tokio::test]
async fn transcripts_are_answered_in_order_and_a_burst_is_slowed_not_lost() {
    // Two at once, then one every 6 s. The node sends a transcript only once the last is answered, so the
    // seven outrun the refill, and meet the limit, as long as a turn takes under 4 s, however loaded the
    // machine.
    let limit = |config: &mut bridge::BridgeConfig| {
        config.limits.voice_per_node = bridge::ratelimit::Rate::per_minute(10, 2);
    };
    let Some(computer) = Computer::start(script, limit).await else { return };
    let mut node = NodeProcess::pair_and_run(&computer, "Kitchen", &["--voice", "on"], &["--no-screen"]).await;
    let summary = computer.node_named("Kitchen").await;
    eventually(WAIT, async || {
        let again = computer.node_named("Kitchen").await;
        (again.voice == Some(true)).then_some(())
    })
    .await;
    assert!(summary.commands.is_empty(), "a node run with --no-screen offers no commands");

    for word in ["one", "two", "three"] {
        node.type_line(word).await;
    }
    let lines = node.stdout.at_least(3, WAIT).await;
    assert_eq!(lines[..3], ["heard: one", "heard: two", "heard: three"]);

    for word in ["four", "five", "six", "seven"] {
        node.type_line(word).await;
    }
    let limited = node.stderr.find("RATE_LIMITED", WAIT).await;
    let retry: u64 = limited.split("retryAfterMs=").nth(1).unwrap().split(')').next().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 6_000, "{limited}");
    let lines = node.stdout.at_least(7, WAIT).await;
    assert_eq!(lines, ["one", "two", "three", "four", "five", "six", "seven"].map(|w| format!("heard: {w}")));
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// While the node is in the background, screen commands from the owner and from the agent fail at once with
/// NODE_BACKGROUND_UNAVAILABLE and retryAfterMs, answered by the bridge without asking the node; back in the
/// foreground they work again.
#[tokio::test]
async fn a_backgrounded_node_is_not_asked_for_its_screen() {
    // The bridge's wait differs from the node's own (5000 ms): the answer says which of them refused.
    const BRIDGE_RETRY_MS: u64 = 4_321;
    let bridge_retry =
        |config: &mut bridge::BridgeConfig| config.background_retry_after = Duration::from_millis(BRIDGE_RETRY_MS);
    let Some(computer) = Computer::start(script, bridge_retry).await else { return };
    let mut node = NodeProcess::pair_and_run(&computer, "Tablet", &[], &[]).await;
    let id = computer.node_named("Tablet").await.node_id;
    computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();

    node.signal(Signal::SIGUSR2);
    computer.node_in_state("Tablet", AppState::Background).await;
    let asked_before = node.stderr.all().iter().filter(|l| l.contains("screen command")).count();
    let started = Instant::now();
    let e = computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(e.code, ErrorCode::NodeBackgroundUnavailable);
    assert_eq!(e.retry_after_ms, Some(BRIDGE_RETRY_MS), "the bridge answered: {e:?}");
    let block =
        agent_tool(&computer, &format!(r#"TOOL screen_snapshot toolu_bg {{"nodeId":"{id}"}}"#), "toolu_bg").await;
    let error = tool_error(&block);
    assert_eq!(error["code"], "NODE_BACKGROUND_UNAVAILABLE", "{error}");
    assert_eq!(error["retryAfterMs"], BRIDGE_RETRY_MS, "the bridge answered: {error}");
    let asked_after = node.stderr.all().iter().filter(|l| l.contains("screen command")).count();
    assert_eq!(asked_before, asked_after, "the node was asked while in the background");

    node.type_line("/foreground").await;
    computer.node_in_state("Tablet", AppState::Foreground).await;
    let shot = computer.invoke(&id, "screen.snapshot", json!({ "format": "jpeg", "quality": 50 })).await.unwrap();
    assert_eq!(shot["format"], "jpeg");
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// What the node refuses, and how it answers scripts, oversized pictures and a crashed browser.
#[tokio::test]
async fn bad_input_gets_structured_errors_and_the_node_keeps_serving() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let page = TestPage::start().await;
    let settings = ["--web-allow", &page.origin, "--max-snapshot-bytes", "400000"];
    let mut node = NodeProcess::pair_and_run(&computer, "Pi", &settings, &[]).await;
    let id = computer.node_named("Pi").await.node_id;

    for url in [
        "https://example.org/",
        "http://127.0.0.1:9/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "chrome://settings",
    ] {
        let e = computer.invoke(&id, "screen.navigate", json!({ "url": url })).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::UrlNotAllowed, "{url}: {e:?}");
        assert!(e.message.contains("--web-allow"), "{url}: {}", e.message);
    }
    let shown = computer.invoke(&id, "screen.navigate", json!({ "url": format!("{}/", page.origin) })).await.unwrap();
    assert_eq!(shown["mode"], "web");

    // The allow-list holds past screen.navigate: a redirect, and a script's own navigation, are blocked.
    let e =
        computer.invoke(&id, "screen.navigate", json!({ "url": format!("{}/away", page.origin) })).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UrlNotAllowed, "{e:?}");
    computer.invoke(&id, "screen.navigate", json!({ "url": format!("{}/", page.origin) })).await.unwrap();
    let blocked = || node.stderr.all().iter().filter(|l| l.contains("blocked a page")).count();
    let blocked_before = blocked();
    let script = format!("location.href = '{}/'; 1", page.elsewhere);
    computer.invoke(&id, "screen.eval", json!({ "javaScript": script })).await.unwrap();
    eventually(WAIT, async || (blocked() > blocked_before).then_some(())).await;
    let now = computer.invoke(&id, "screen.eval", json!({ "javaScript": "location.href" })).await.unwrap();
    assert!(!now["result"].as_str().unwrap().starts_with(&page.elsewhere), "{now}");

    // An allowed https host must be that host: a certificate the browser does not trust is a failed load.
    let impostor = node_support::untrusted_https().await;
    let mut trusting = NodeProcess::pair_and_run(&computer, "Trusting", &["--web-allow", &impostor], &[]).await;
    let trusting_id = computer.node_named("Trusting").await.node_id;
    let e =
        computer.invoke(&trusting_id, "screen.navigate", json!({ "url": format!("{impostor}/") })).await.unwrap_err();
    assert!(e.message.contains("ERR_CERT"), "{e:?}");
    assert!(trusting.stop().await.success());

    let e = computer.invoke(&id, "screen.eval", json!({ "javaScript": "throw new Error('boom')" })).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ScriptError);
    assert!(e.details.unwrap()["exception"].as_str().unwrap().contains("boom"));
    let sum = computer.invoke(&id, "screen.eval", json!({ "javaScript": "Promise.resolve(40 + 2)" })).await.unwrap();
    assert_eq!(sum, json!({ "result": 42 }));

    // Canvas mode: the node's own page, drawn on by script.
    computer.invoke(&id, "screen.setMode", json!({ "mode": "canvas" })).await.unwrap();
    let drawn = computer
        .invoke(&id, "screen.eval", json!({ "javaScript": "const c = document.getElementById('canvas'); c.getContext('2d').fillRect(0, 0, 10, 10); [c.width, c.height]" }))
        .await
        .unwrap();
    assert_eq!(drawn, json!({ "result": [1280, 720] }));

    // A picture of noise is over the cap as PNG: it comes as a smaller JPEG, never whole.
    computer.invoke(&id, "screen.navigate", json!({ "url": format!("{}/noise", page.origin) })).await.unwrap();
    let shot = computer.invoke(&id, "screen.snapshot", json!({ "format": "png" })).await.unwrap();
    let bytes = data_encoding::BASE64.decode(shot["base64"].as_str().unwrap().as_bytes()).unwrap();
    assert!(bytes.len() <= 400_000, "{} bytes", bytes.len());
    assert_eq!(shot["format"], "jpeg", "{}", shot["width"]);

    // Chromium killed: a clear error, chat goes on, and the next screen command works.
    for pid in node.browser_processes() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    eventually(WAIT, async || node.browser_processes().is_empty().then_some(())).await;
    let e = computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ScreenUnavailable, "{e:?}");
    assert!(e.message.contains("Chromium"), "{}", e.message);
    node.type_line("are you there").await;
    assert_eq!(node.stdout.at_least(1, WAIT).await[0], "heard: are you there");
    computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();
    let e = computer.invoke(&id, "screen.snapshot", json!({ "maxWidth": 0 })).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// A browser that dies while a command waits on it: that command says so, the next one works.
#[tokio::test]
async fn a_browser_dying_during_a_command_is_reported_once() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let mut node = NodeProcess::pair_and_run(&computer, "Kiosk", &[], &[]).await;
    let id = computer.node_named("Kiosk").await.node_id;
    computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();
    // The script calls home once it runs in the page, then never ends.
    let started = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let home = format!("http://{}/", started.local_addr().unwrap());
    let forever = json!({ "javaScript": format!("fetch('{home}').catch(() => {{}}); new Promise(() => {{}})") });
    let waiting = tokio::spawn({
        let (gateway_url, token, id) = (computer.gateway.url.clone(), computer.gateway.token.clone(), id.clone());
        async move {
            let operator = node_kit::Client::builder(gateway_url).token(token).connect().await.unwrap();
            let request = json!({ "nodeId": id, "command": "screen.eval", "params": forever,
                "idempotencyKey": "forever", "timeoutMs": 30_000 });
            operator.request(node_kit::protocol::method::NODE_INVOKE, request).await
        }
    });
    tokio::time::timeout(WAIT, started.accept()).await.expect("the script runs in the page").unwrap();
    let killed = Instant::now();
    for pid in node.browser_processes() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    let e = node_support::support::remote(waiting.await.unwrap().unwrap_err());
    assert_eq!(e.code, ErrorCode::ScreenUnavailable, "{e:?}");
    // Well before the node's 20 s step limit: the command stopped waiting when the browser went.
    assert!(killed.elapsed() < Duration::from_secs(10), "{:?}", killed.elapsed());
    computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();
    assert!(node.stop().await.success());
    computer.stop().await;
}

/// A node's conversation may use that node's screen, and no other node's.
#[tokio::test]
async fn a_nodes_conversation_uses_its_own_screen_only() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let mut wall = NodeProcess::pair_and_run(&computer, "Wall", &[], &[]).await;
    let mut phone = NodeProcess::pair_and_run(&computer, "Phone", &[], &[]).await;
    let wall_id = computer.node_named("Wall").await.node_id;
    computer.node_named("Phone").await;

    phone.type_line(&format!(r#"TOOL screen_show toolu_other {{"nodeId":"{wall_id}"}}"#)).await;
    phone.stdout.find("done", WAIT).await;
    let error = tool_error(&tool_result(&computer.api, "toolu_other").unwrap());
    assert_eq!(error["code"], "FORBIDDEN", "{error}");
    phone.type_line("TOOL nodes_list toolu_list {}").await;
    eventually(WAIT, async || tool_result(&computer.api, "toolu_list")).await;
    let listed: Value = serde_json::from_str(&result_text(&tool_result(&computer.api, "toolu_list").unwrap())).unwrap();
    let names: Vec<&str> = listed["nodes"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Phone"]);

    wall.type_line("TOOL screen_snapshot toolu_own {}").await;
    wall.stdout.find("done", WAIT).await;
    let own = tool_result(&computer.api, "toolu_own").unwrap();
    assert_ne!(own["is_error"], true, "{own}");
    assert!(own["content"].as_array().unwrap().iter().any(|b| b["type"] == "image"), "{own}");
    assert!(wall.stop().await.success());
    assert!(phone.stop().await.success());
    computer.stop().await;
}

/// No browser at all: screen commands say what to install and the node still serves chat. The agent gets
/// a tool error with the code, never a hang, from a node that offers no screen and from one that is gone.
#[tokio::test]
async fn a_node_without_a_browser_or_a_screen_still_serves_chat() {
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let mut blind =
        NodeProcess::pair_and_run(&computer, "Old laptop", &[], &["--browser", "/nonexistent/chromium"]).await;
    let id = computer.node_named("Old laptop").await.node_id;
    blind.stderr.find("screen is unavailable", WAIT).await;
    let e = computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::ScreenUnavailable);
    assert!(e.message.contains("--browser"), "{}", e.message);
    blind.type_line("hello").await;
    assert_eq!(blind.stdout.at_least(1, WAIT).await[0], "heard: hello");

    let mut headless = NodeProcess::pair_and_run(&computer, "Speaker", &[], &["--no-screen"]).await;
    let speaker = computer.node_named("Speaker").await.node_id;
    let block = agent_tool(
        &computer,
        &format!(r#"TOOL screen_snapshot toolu_noscreen {{"nodeId":"{speaker}"}}"#),
        "toolu_noscreen",
    )
    .await;
    assert_eq!(tool_error(&block)["code"], "UNKNOWN_COMMAND");

    assert!(headless.stop().await.success());
    let started = Instant::now();
    let block =
        agent_tool(&computer, &format!(r#"TOOL screen_show toolu_gone {{"nodeId":"{speaker}"}}"#), "toolu_gone").await;
    let error = tool_error(&block);
    assert_eq!(error["code"], "NODE_NOT_CONNECTED");
    assert!(error["retryAfterMs"].as_u64().is_some(), "{error}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let status = lanyard_node(blind.dir.path(), &["status"]).await;
    assert!(status.contains("Name:      Old laptop"), "{status}");
    assert!(status.contains("Link:      connected"), "{status}");
    assert!(status.contains("Voice:     on"), "{status}");
    assert!(blind.stop().await.success());
    computer.stop().await;
}

/// Door 1 from the command line: the node finds the bridge over mDNS (on loopback, on a port of the test's
/// own), asks, prints the code, and is paired once the owner approves; `status` then shows the pairing.
/// Asking again while paired says how to pair again; a node that is not paired says how to pair.
#[tokio::test]
async fn pairing_by_approval_from_the_command_line() {
    use node_support::support::gw::TestGateway;
    use node_support::support::{TestBridge, mdns_on_loopback, mdns_port, pending_requests};
    let port = mdns_port();
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| mdns_on_loopback(config, port, "Door one test")).await;
    let dir = tempfile::tempdir().unwrap();
    let status = lanyard_node(dir.path(), &["--name", "Hall screen", "status"]).await;
    assert!(status.contains("not paired (run `lanyard-node pair`)"), "{status}");

    let pairing = tokio::process::Command::new(node_support::binary())
        .arg("--state")
        .arg(dir.path())
        .args(["pair", "--interface", "lo", "--mdns-port", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pending = eventually(WAIT, async || pending_requests(&gateway).await.into_iter().next()).await;
    assert_eq!(pending.request.device.name, "Hall screen");
    let approve = json!({ "requestId": pending.request_id });
    gateway.operator().await.request(node_kit::protocol::method::PAIR_APPROVE, approve).await.unwrap();
    let out = tokio::time::timeout(WAIT, pairing.wait_with_output()).await.unwrap().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains(&format!("Pairing code: {}", pending.request.sas)), "{printed}");
    assert!(printed.contains("Paired with bridge"), "{printed}");

    // Asking again at the address, while still paired, says what to do instead.
    let again = tokio::process::Command::new(node_support::binary())
        .arg("--state")
        .arg(dir.path())
        .args(["pair", "--address", &bridge.address()])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(said.contains("still paired with that computer") && said.contains("lanyard nodes revoke"), "{said}");

    let status = lanyard_node(dir.path(), &["status"]).await;
    assert!(status.contains(&format!("Bridge:    {} at {}", bridge.id, bridge.address())), "{status}");
    assert!(status.contains("Link:      not running"), "{status}");
    bridge.stop().await;
    gateway.stop().await;
}

/// Away from home: a `lanyard-node` that never saw the LAN pairs by PIN through the relay (the real Worker
/// under workerd), connects through it, and the agent drives and sees its screen over that path.
#[tokio::test]
async fn a_node_paired_by_pin_away_from_home_shows_the_agent_its_screen_through_the_relay() {
    use node_support::support::relay::{LocalRelay, remote_code, tunnel_on};
    let Some(computer) = Computer::start(script, |_| {}).await else { return };
    let Some(relay) = LocalRelay::start().await else { return };
    tunnel_on(&computer.gateway, &relay.url).await;
    let (invite, code) = remote_code(&computer.gateway, &computer.bridge, &relay.url, &relay.url).await;
    let page = TestPage::start().await;

    let dir = tempfile::tempdir().unwrap();
    let invite = invite.to_string();
    let args = ["--name", "Away wall", "--web-allow", &page.origin, "pair", &invite, "--pin", &code.pin];
    let printed = lanyard_node(dir.path(), &args).await;
    assert!(printed.contains("through the relay"), "{printed}");
    let mut node = NodeProcess::run(dir, "Away wall", &[]);
    node.stderr.find("through the relay", WAIT).await;
    computer.node_named("Away wall").await;

    let snap = agent_tool(&computer, &format!("wall display {}/", page.origin), "toolu_snap").await;
    let blocks = snap["content"].as_array().expect("content blocks");
    let image = blocks.iter().find(|b| b["type"] == "image").unwrap_or_else(|| panic!("no image in {snap}"));
    assert_eq!(image["source"]["media_type"], "image/png");
    assert!(node.stop().await.success());
    computer.stop().await;
}
