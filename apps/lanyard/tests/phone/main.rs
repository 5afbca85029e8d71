//! The phone web app end to end, with every part real except the model: `lanyard up` (gateway and bridge)
//! with the real claude against the scripted Messages API, its tunnel on to the relay Worker under
//! `wrangler dev` (which also serves the app), and a headless Chromium with a phone's screen and touch,
//! driven by accessible names as a person uses it. One computer, relay and browser are shared by the
//! checks of a test where they do not depend on each other, to keep the suite's time small.
//! Screenshots go to `docs/phone/` when `LANYARD_UPDATE_SCREENSHOTS` is set.

#[path = "../up/banner.rs"]
mod banner;
#[path = "../../../../gateway/tests/support/chromium.rs"]
mod chromium;
mod computer;
mod handset;
mod push;
#[path = "../../../../bridge/tests/support/mod.rs"]
mod support;

use chromium::{eval, until};
use computer::Computer;
use handset::{Phone, Tab};
use push::{BrowserKeys, PushService};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::gw::messages_api::{ApiRequest, COLOR_QUESTION, Gate, MessagesApi, Reply, color_question};
use support::gw::{awaited, claude_binary, skip};
use support::relay::{LocalRelay, contains, files_under};

/// What the scripted model streams for `STREAM-ME`, piece by piece (a reply canary in the middle).
const STREAM: [&str; 5] = ["Tides ", "turn ", "CANARY-REPLY-6d1e ", "twice ", "daily."];
/// What it streams for `SLEEP-ME` before asking to run a tool; the phone sleeps after the second piece.
const SLEEP: [&str; 6] = ["One ", "two ", "three ", "four ", "five ", "six."];

/// A Bash call that writes `text` to `file` in claude's working directory.
fn write_file(id: &str, text: &str, file: &str) -> Reply {
    Reply::tool(id, "Bash", json!({ "command": format!("echo {text} > {file}"), "description": "Write a file" }))
}

/// The scripted model: a marker in the prompt picks the reply; a tool's result (or its refusal) is
/// answered with text.
fn script(stream: Gate, sleep: Gate) -> impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static {
    move |r| {
        let asked = r.last_user_text.as_str();
        if r.tool_result("toolu_plan").is_some() {
            Reply::text(&["plan approved"])
        } else if r.tool_result("toolu_ask").is_some() {
            Reply::text(&["blue it is"])
        } else if r.has_tool_result {
            Reply::text(&["done"])
        } else if asked.contains("STREAM-ME") {
            Reply::Gated { pieces: STREAM.map(String::from).to_vec(), gate: stream.clone() }
        } else if asked.contains("CODE-ME") {
            Reply::text(&["Run this:\n\n```sh\necho CODE-BLOCK-8\n```\n"])
        } else if asked.contains("ALLOW-ME") {
            write_file("toolu_allow", "CANARY-ALLOW-51", "allowed.txt")
        } else if asked.contains("DENY-ME") {
            write_file("toolu_deny", "CANARY-DENY-52", "denied.txt")
        } else if asked.contains("PUSH-ME") {
            write_file("toolu_push", "CANARY-PUSH-53", "pushed.txt")
        } else if asked.contains("ASK-ME") {
            color_question()
        } else if asked.contains("PLAN-ME") {
            Reply::tool("toolu_plan", "ExitPlanMode", json!({ "plan": "# Plan\n1. Alpha\n2. Beta\n" }))
        } else if asked.contains("STOP-ME") {
            let pieces = (0..400).map(|i| format!("w{i} ")).collect();
            Reply::Text { pieces, gap: Duration::from_millis(100) }
        } else if asked.contains("SLEEP-ME") {
            Reply::GatedThenTool {
                pieces: SLEEP.map(String::from).to_vec(),
                gate: sleep.clone(),
                id: "toolu_sleep".into(),
                name: "Bash".into(),
                input: json!({ "command": "echo SLEPT-54 > slept.txt", "description": "Write a file" }),
            }
        } else {
            Reply::text(&["still here"])
        }
    }
}

/// One test at a time: each runs a relay, one or two computers with claude and a browser, and on two
/// cores two such tests at once slow each other past the bounds they check (Stop within a second).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The relay, a browser and claude, or `None` when one is missing (a skip, which fails under CI).
async fn parts() -> Option<(LocalRelay, Phone, std::path::PathBuf)> {
    let claude = claude_binary()?;
    if !push::decryptor_installed() {
        skip("Node 22 and http_ece are not installed: run ./test.sh");
        return None;
    }
    let relay = LocalRelay::start().await?;
    let phone = Phone::start().await?;
    Some((relay, phone, claude))
}

/// The app's origin: the relay's.
fn origin(relay: &LocalRelay) -> String {
    relay.url.trim_end_matches('/').to_string()
}

async fn ready(tab: &Tab) {
    until(&tab.page, "document.body && document.body.dataset.ready === 'true'").await;
}

/// The text of the `role=alert` element, once one says something.
async fn alert(tab: &Tab) -> String {
    until(&tab.page, "[...document.querySelectorAll('[role=alert]')].some(e => e.textContent.trim() !== '')").await;
    eval(&tab.page, "[...document.querySelectorAll('[role=alert]')].map(e => e.textContent).join(' ')").await
}

async fn link_state(tab: &Tab, state: &str) {
    until(&tab.page, &format!("!!document.querySelector('[data-link-state={state:?}]')")).await;
}

/// The text of the newest assistant message in the conversation's log.
const LAST_REPLY: &str = "(() => { const all = document.querySelectorAll('[role=log] [data-role=assistant]'); \
                          return all.length ? all[all.length - 1].textContent : ''; })()";

async fn last_reply(tab: &Tab) -> String {
    eval(&tab.page, LAST_REPLY).await
}

async fn reply_is(tab: &Tab, text: &str) {
    until(&tab.page, &format!("{LAST_REPLY}.trim() === {:?}", text.trim())).await;
}

/// Types `text` into the message box and taps Send.
async fn send(phone: &Phone, tab: &Tab, text: &str) {
    phone.type_into(tab, "Message", text).await;
    phone.tap(tab, "Send").await;
}

/// Waits until the Stop button is gone: the turn is over as far as the app knows.
async fn stop_gone(phone: &Phone, tab: &Tab) {
    let started = Instant::now();
    while phone.find(tab, "Stop", &["button"]).await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(60), "Stop stayed on after the turn");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for one open prompt in the approvals inbox; its request ID and its text.
async fn open_prompt(tab: &Tab) -> (String, String) {
    until(&tab.page, "!!document.querySelector('[data-prompt]')").await;
    eval(
        &tab.page,
        "(() => { const p = document.querySelector('[data-prompt]'); return [p.dataset.prompt, p.textContent]; })()",
    )
    .await
}

async fn no_open_prompt(tab: &Tab) {
    until(&tab.page, "!document.querySelector('[data-prompt]')").await;
}

/// Scan (open the invite URL), type the PIN, tap Pair: paired once the link says connected.
async fn pair(phone: &Phone, computer: &Computer) -> Tab {
    let (url, pin) = computer.invite().await;
    let tab = phone.open(&url).await;
    ready(&tab).await;
    phone.type_into(&tab, "PIN", &pin).await;
    phone.tap(&tab, "Pair").await;
    link_state(&tab, "connected").await;
    tab
}

/// The paired device the phone became on `computer` (the one `lanyard nodes list` shows).
async fn the_phone_on(computer: &Computer) -> String {
    let nodes = computer.nodes().await;
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    nodes[0]["nodeId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_phone_pairs_by_scan_and_pin_chats_answers_every_prompt_sleeps_gets_pushes_and_is_revoked() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some((relay, phone, claude)) = parts().await else { return };
    let (stream, sleep) = (Gate::closed(), Gate::closed());
    let api = MessagesApi::start(script(stream.clone(), sleep.clone())).await;
    let computer = Computer::start(&claude, &api, &relay.url, true).await;

    let tab = pairing(&phone, &computer).await;
    chat(&phone, &tab, &stream, &api).await;
    prompts(&phone, &tab, &computer, &api).await;
    stop(&phone, &tab).await;
    sleeping(&phone, &tab, &computer, &sleep).await;
    let keys = secrets_in_the_app(&tab).await;
    push(&phone, &tab, &computer, &relay).await;
    revoked(&phone, &tab, &computer, &relay, &keys).await;
}

/// A wrong PIN, then an invite retired by a newer one, each say so; then the new invite pairs, the address
/// bar loses the invite, and `lanyard nodes list` lists the phone.
async fn pairing(phone: &Phone, computer: &Computer) -> Tab {
    let (first, pin) = computer.invite().await;
    let old = phone.open(&first).await;
    ready(&old).await;
    phone.screenshot(&old, "phone-pair").await;
    let wrong = format!("{}{}", &pin[..5], (pin.as_bytes()[5] - b'0' + 1) % 10);
    phone.type_into(&old, "PIN", &wrong).await;
    phone.tap(&old, "Pair").await;
    let said = alert(&old).await;
    assert!(said.contains("Wrong PIN") && said.contains('4'), "a wrong PIN says so and the tries left: {said}");

    let (second, pin_two) = computer.invite().await;
    phone.type_into(&old, "PIN", &pin).await;
    phone.tap(&old, "Pair").await;
    until(&old.page, "[...document.querySelectorAll('[role=alert]')].some(e => /expired/i.test(e.textContent))").await;
    let said = alert(&old).await;
    assert!(said.contains("lanyard pair --remote"), "an expired invite says what to run: {said}");
    assert!(computer.nodes().await.is_empty());
    old.page.close().await.unwrap();

    let started = Instant::now();
    let tab = phone.open(&second).await;
    ready(&tab).await;
    assert!(eval::<String>(&tab.page, "location.href").await.split('#').nth(1).unwrap_or("").is_empty());
    phone.type_into(&tab, "PIN", &pin_two).await;
    phone.tap(&tab, "Pair").await;
    link_state(&tab, "connected").await;
    eprintln!("phone: scan to paired in {:?}", started.elapsed());
    let node_id = the_phone_on(computer).await;
    let listed = computer.lanyard_ok(&["nodes", "list"]).await;
    assert!(listed.contains(&node_id), "{listed}");
    let entry = format!("!!document.querySelector('[data-computer={:?}]')", computer.bridge_id());
    until(&tab.page, &entry).await;
    tab
}

/// The reply streams: each piece shows as the model writes it, before the next; Stop shows while the turn
/// runs; code comes out as a code block.
async fn chat(phone: &Phone, tab: &Tab, stream: &Gate, api: &MessagesApi) {
    send(phone, tab, "STREAM-ME CANARY-PROMPT-4417").await;
    let mut shown = String::new();
    for piece in STREAM {
        stream.release_one();
        shown.push_str(piece);
        reply_is(tab, &shown).await;
        if shown.len() < STREAM.concat().len() {
            assert!(phone.find(tab, "Stop", &["button"]).await.is_some(), "Stop shows while the turn runs");
        }
    }
    stop_gone(phone, tab).await;
    assert_eq!(api.requests_with("CANARY-PROMPT-4417").len(), 1, "the message reached the model once");
    phone.screenshot(tab, "phone-chat").await;

    send(phone, tab, "CODE-ME").await;
    until(&tab.page, &format!("{LAST_REPLY}.includes('CODE-BLOCK-8')")).await;
    let code: String = eval(
        &tab.page,
        "(() => { const all = document.querySelectorAll('[role=log] [data-role=assistant]'); \
         const c = all[all.length - 1].querySelector('pre code'); return c ? c.textContent : ''; })()",
    )
    .await;
    assert_eq!(code.trim(), "echo CODE-BLOCK-8", "code is shown as a code block");
}

/// A permission allowed runs the tool; one denied does not, and the model reads the denial; a question is
/// answered with the option tapped; a plan is approved.
async fn prompts(phone: &Phone, tab: &Tab, computer: &Computer, api: &MessagesApi) {
    send(phone, tab, "ALLOW-ME CANARY-PROMPT-4418").await;
    let (_, shown) = open_prompt(tab).await;
    assert!(shown.contains("Bash") && shown.contains("echo CANARY-ALLOW-51 > allowed.txt"), "{shown}");
    phone.screenshot(tab, "phone-approval").await;
    phone.tap(tab, "Allow").await;
    // `echo … >` creates the file before it writes to it: wait for what it wrote.
    let written = awaited("the allowed tool wrote allowed.txt", Duration::from_secs(60), async || {
        computer.written("allowed.txt").filter(|text| !text.is_empty())
    })
    .await;
    assert_eq!(written, "CANARY-ALLOW-51");
    let (output, is_error) = awaited("the model got the allowed tool's result", Duration::from_secs(60), async || {
        api.tool_result_text("toolu_allow")
    })
    .await;
    assert!(!is_error, "{output}");
    no_open_prompt(tab).await;
    reply_is(tab, "done").await;

    send(phone, tab, "DENY-ME").await;
    open_prompt(tab).await;
    phone.tap(tab, "Deny").await;
    let (output, is_error) =
        awaited("the model got the denial", Duration::from_secs(60), async || api.tool_result_text("toolu_deny")).await;
    assert!(is_error, "the model reads that it was refused: {output}");
    no_open_prompt(tab).await;
    assert!(computer.written("denied.txt").is_none(), "a denied tool must not run");

    send(phone, tab, "ASK-ME").await;
    let (_, shown) = open_prompt(tab).await;
    assert!(shown.contains(COLOR_QUESTION), "{shown}");
    phone.tap(tab, "Blue").await;
    let (answer, _) = awaited("the model got the answer to its question", Duration::from_secs(60), async || {
        api.tool_result_text("toolu_ask")
    })
    .await;
    assert!(answer.contains(&format!("\"{COLOR_QUESTION}\"=\"Blue\"")), "{answer}");
    reply_is(tab, "blue it is").await;

    let node_id = the_phone_on(computer).await;
    computer.lanyard_ok(&["nodes", "policy", &node_id, "--mode", "plan"]).await;
    send(phone, tab, "PLAN-ME").await;
    open_prompt(tab).await;
    phone.tap(tab, "Approve").await;
    let (approved, is_error) = awaited("the model got the plan's approval", Duration::from_secs(60), async || {
        api.tool_result_text("toolu_plan")
    })
    .await;
    assert!(!is_error && approved.contains("approved"), "{approved}");
    reply_is(tab, "plan approved").await;
    computer.lanyard_ok(&["nodes", "policy", &node_id, "--mode", "default"]).await;
}

/// Stop ends a streaming turn within a second of the tap, and the conversation goes on.
async fn stop(phone: &Phone, tab: &Tab) {
    send(phone, tab, "STOP-ME").await;
    until(&tab.page, &format!("{LAST_REPLY}.includes('w2 ')")).await;
    let tapped = Instant::now();
    phone.tap(tab, "Stop").await;
    stop_gone(phone, tab).await;
    let took = tapped.elapsed();
    eprintln!("phone: Stop took effect {took:?} after the tap");
    assert!(took < Duration::from_secs(1), "Stop took {took:?}");
    let cut = last_reply(tab).await;
    assert!(!cut.contains("w399"), "the turn was stopped, not finished: {cut}");
    send(phone, tab, "AGAIN").await;
    reply_is(tab, "still here").await;
}

/// The page frozen and offline mid-turn, while the rest of the reply and a permission prompt come: back
/// awake and online, it shows every piece once, in order, and the prompt, which can be answered.
async fn sleeping(phone: &Phone, tab: &Tab, computer: &Computer, sleep: &Gate) {
    send(phone, tab, "SLEEP-ME").await;
    sleep.release_one();
    sleep.release_one();
    reply_is(tab, &SLEEP[..2].concat()).await;
    phone.lifecycle(tab, "frozen").await;
    phone.offline(tab, true).await;
    for _ in 2..SLEEP.len() {
        sleep.release_one();
    }
    let operator = computer.operator().await;
    awaited("the sleeping page's prompt opened on the computer", Duration::from_secs(60), async || {
        (!operator.pending().await.unwrap().prompts.is_empty()).then_some(())
    })
    .await;
    phone.offline(tab, false).await;
    phone.lifecycle(tab, "active").await;
    reply_is(tab, &SLEEP.concat()).await;
    let (_, shown) = open_prompt(tab).await;
    assert!(shown.contains("SLEPT-54"), "{shown}");
    phone.tap(tab, "Allow").await;
    awaited("the prompt answered after waking ran its tool", Duration::from_secs(60), async || {
        computer.written("slept.txt")
    })
    .await;
    reply_is(tab, "done").await;
}

/// Every secret the app keeps for its computers (tokens and keys, in every encoding the relay might show
/// them in), read from its IndexedDB.
async fn secrets_in_the_app(tab: &Tab) -> Vec<String> {
    let found: Vec<String> = eval(
        &tab.page,
        r#"(async () => {
  const out = [];
  const enc = b => { const s = btoa(String.fromCharCode(...b));
    return [s, s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''),
            [...b].map(x => x.toString(16).padStart(2, '0')).join('')]; };
  const walk = (value, name) => {
    if (value instanceof ArrayBuffer) value = new Uint8Array(value);
    if (ArrayBuffer.isView(value)) { if (/token|seal|secret|key/i.test(name) && !/public/i.test(name)) out.push(...enc(new Uint8Array(value.buffer, value.byteOffset, value.byteLength))); return; }
    if (typeof value === 'string') { if (/token|seal|secret/i.test(name) || (/key/i.test(name) && !/public|id/i.test(name))) out.push(value); return; }
    if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, k);
  };
  for (const { name } of await indexedDB.databases()) {
    const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = no; });
    for (const store of db.objectStoreNames) {
      const all = await new Promise(ok => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => ok(r.result); });
      walk(all, store);
    }
    db.close();
  }
  return out.filter(s => s.length >= 16);
})()"#,
    )
    .await;
    assert!(!found.is_empty(), "the app keeps its token and seal key in IndexedDB");
    found
}

/// Where turning notifications on stands: the switch, the link, the subscribe calls the page made, the
/// relay calls that ended, and every service-worker registration with its workers' states.
const SWITCH_STATE: &str = "(async () => { const box = document.getElementById('notify'); \
    const worker = w => w && w.state; \
    return { checked: box.checked, disabled: box.disabled, link: document.querySelector('[data-link-state]')?.textContent, \
      subscribes: (window.__pushSubscribes || []).length, \
      relayCalls: performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length, \
      registrations: (await navigator.serviceWorker.getRegistrations()).map(r => ({ scope: r.scope, \
        installing: worker(r.installing), waiting: worker(r.waiting), active: worker(r.active) })) }; })()";

/// Taps the Notifications switch; waits until the app has subscribed or said why not (what it said).
async fn turn_notifications_on(phone: &Phone, tab: &Tab) -> String {
    phone.tap_matching(tab, &["button", "switch", "checkbox"], "notifications").await;
    // Done when the switch is usable again: on (subscribed, and the computer told) or back off (refused).
    let settled = "(() => { const box = document.getElementById('notify'); \
                   return !!document.getElementById('chat-error').textContent || (box.checked && !box.disabled); })()";
    let started = Instant::now();
    while !eval::<bool>(&tab.page, settled).await {
        if started.elapsed() > Duration::from_secs(20) {
            let state: Value = eval(&tab.page, SWITCH_STATE).await;
            let targets = phone.devtools.call(None, "Target.getTargets", json!({})).await;
            let workers: Vec<&Value> =
                targets["targetInfos"].as_array().unwrap().iter().filter(|t| t["type"] == "service_worker").collect();
            panic!(
                "the Notifications switch never settled: {state:#}\nservice-worker targets: {workers:#?}\nconsole: {:#?}",
                phone.console(tab)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eval(&tab.page, "document.getElementById('chat-error').textContent").await
}

/// Push: the app subscribes (through its own code, to a local endpoint: see `push.rs`); a prompt makes the
/// computer send a request that an independent implementation opens to the expected padded payload; the
/// service worker, given that payload, shows a notification whose Allow answers the prompt, once.
async fn push(phone: &Phone, tab: &Tab, computer: &Computer, relay: &LocalRelay) {
    let service = PushService::start().await;
    let keys = BrowserKeys::generate();
    let bridge_id = computer.bridge_id();
    phone.allow_notifications(&origin(relay)).await;
    tab.page.evaluate(keys.page_script(&format!("{}/push", service.url))).await.unwrap();
    let refused = turn_notifications_on(phone, tab).await;
    assert!(refused.is_empty(), "turning notifications on failed: {refused}");
    let vapid: String = eval(&tab.page, "window.__pushSubscribes[0].key").await;

    send(phone, tab, "PUSH-ME").await;
    let (request_id, _) = open_prompt(tab).await;
    let delivery = awaited("the prompt's push reached the push service", Duration::from_secs(30), async || {
        service.deliveries().into_iter().next()
    })
    .await;
    let opened = keys.open(&delivery);
    let payload: Value = serde_json::from_str(opened["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(payload["v"], 1, "{payload}");
    assert_eq!(payload["kind"], "permission", "{payload}");
    assert_eq!(payload["requestId"], request_id.as_str(), "{payload}");
    assert_eq!(payload["tool"], "Bash", "{payload}");
    assert!(payload["runId"].is_string() && payload["sessionKey"].is_string(), "{payload}");
    assert!(!opened["plaintext"].as_str().unwrap().contains("CANARY"), "nothing of the input: {payload}");
    let header = |name: &str| delivery.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert_eq!(header("content-encoding"), "aes128gcm");
    assert_eq!(header("urgency"), "high");
    assert!(header("ttl").parse::<u64>().is_ok(), "TTL: {:?}", header("ttl"));
    let signed = &opened["vapid"];
    assert_eq!(signed["verified"], true, "the VAPID JWT verifies under its key: {signed}");
    assert_eq!(signed["header"]["alg"], "ES256", "{signed}");
    assert_eq!(signed["claims"]["aud"], service.url.as_str(), "{signed}");
    let standard = |b64url: &str| data_encoding::BASE64URL_NOPAD.decode(b64url.trim_end_matches('=').as_bytes());
    assert_eq!(
        standard(signed["key"].as_str().unwrap()).unwrap(),
        data_encoding::BASE64.decode(vapid.as_bytes()).unwrap(),
        "the key the app subscribed with signs the push"
    );

    // The service worker of this computer's registration gets the payload and shows the notification.
    let scope = format!("/push/{bridge_id}/");
    phone.devtools.call(Some(&tab.session), "ServiceWorker.enable", json!({})).await;
    let registration =
        awaited("DevTools listed the computer's push registration", Duration::from_secs(10), async || {
            phone.devtools.events("ServiceWorker.workerRegistrationUpdated").iter().find_map(|e| {
                e["params"]["registrations"].as_array()?.iter().find_map(|r| {
                    (r["scopeURL"].as_str()?.ends_with(&scope) && r["isDeleted"] != true)
                        .then(|| r["registrationId"].as_str().map(String::from))?
                })
            })
        })
        .await;
    let deliver = json!({ "origin": origin(relay), "registrationId": registration,
        "data": opened["plaintext"].as_str().unwrap() });
    phone.devtools.call(Some(&tab.session), "ServiceWorker.deliverPushMessage", deliver).await;
    let notifications = format!(
        "navigator.serviceWorker.getRegistration({scope:?}).then(r => r.getNotifications()).then(ns => \
         ns.map(n => ({{ title: n.title, body: n.body, actions: n.actions.map(a => a.action + ':' + a.title) }})))"
    );
    until(&tab.page, &format!("{notifications}.then(ns => ns.length > 0)")).await;
    let shown: Vec<Value> = eval(&tab.page, &notifications).await;
    let actions = shown[0]["actions"].to_string();
    assert!(actions.contains("allow:Allow") && actions.contains("deny:Deny"), "{shown:?}");

    // Its Allow action, tapped twice: the prompt is answered once. DevTools cannot tap a notification,
    // so the click is dispatched in the service worker as the browser would (a NotificationEvent with
    // action 'allow'); its requests are counted by DevTools' network events in that worker.
    let worker = awaited("the push registration's worker ran", Duration::from_secs(10), async || {
        phone.service_workers(&scope).await.pop()
    })
    .await;
    phone.devtools.call(Some(&worker), "Network.enable", json!({})).await;
    let click = "(async () => { self.__clicked = self.__clicked || (await self.registration.getNotifications())[0]; \
                 self.dispatchEvent(new NotificationEvent('notificationclick', \
                 { notification: self.__clicked, action: 'allow' })); return true; })()";
    phone.devtools.eval(&worker, click).await;
    awaited("the notification's Allow ran the tool", Duration::from_secs(60), async || computer.written("pushed.txt"))
        .await;
    let answers = || {
        phone
            .devtools
            .events("Network.requestWillBeSent")
            .iter()
            .filter(|e| {
                e["sessionId"] == worker.as_str()
                    && e["params"]["request"]["url"].as_str().is_some_and(|u| u.contains("/v1/chat"))
            })
            .count()
    };
    let first = answers();
    assert!(first >= 1, "the service worker answered over the relay");
    phone.devtools.eval(&worker, click).await;
    // The turn's end is pushed too, as a body of the same length: what a push says is not in its size.
    let done =
        awaited("the turn's end was pushed", Duration::from_secs(60), async || service.deliveries().get(1).cloned())
            .await;
    assert_eq!(done.body.len(), delivery.body.len(), "every push body has one length");
    let done: Value = serde_json::from_str(keys.open(&done)["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(done["kind"], "done", "{done}");
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        assert_eq!(answers(), first, "a second tap on Allow must not answer again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    no_open_prompt(tab).await;
}

/// Revoked on the computer: the app says so and stops calling; nothing in the relay's storage or logs holds
/// a prompt, a reply, the token or the seal key.
async fn revoked(phone: &Phone, tab: &Tab, computer: &Computer, relay: &LocalRelay, secrets: &[String]) {
    let node_id = the_phone_on(computer).await;
    computer.lanyard_ok(&["nodes", "revoke", &node_id]).await;
    send(phone, tab, "AFTER-REVOKE").await;
    link_state(tab, "unpaired").await;
    let said: String = eval(&tab.page, "document.querySelector('[data-link-state]').textContent").await;
    assert!(said.to_lowercase().contains("unpaired"), "{said}");
    let calls = "performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length";
    let before: usize = eval(&tab.page, calls).await;
    tab.page
        .evaluate("window.dispatchEvent(new Event('online')); document.dispatchEvent(new Event('visibilitychange'))")
        .await
        .unwrap();
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        assert_eq!(eval::<usize>(&tab.page, calls).await, before, "an unpaired app stops calling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stored = files_under(relay.state.path());
    let logs = relay.logs();
    let canaries = ["CANARY-PROMPT-4417", "CANARY-PROMPT-4418", "CANARY-REPLY-6d1e", "CANARY-ALLOW-51"];
    for canary in canaries.iter().copied().chain(secrets.iter().map(String::as_str)) {
        for (path, bytes) in &stored {
            assert!(!contains(bytes, canary), "the relay stored {canary:?} in {}", path.display());
        }
        assert!(!contains(&logs, canary), "the relay logged {canary:?}");
    }
    assert!(!stored.is_empty() && !logs.is_empty(), "the relay kept state and logs to search");
}

#[tokio::test]
async fn one_phone_talks_to_two_computers_and_is_told_when_one_is_offline() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some((relay, phone, claude)) = parts().await else { return };
    let api_a = MessagesApi::start(|_| Reply::text(&["from A"])).await;
    let api_b = MessagesApi::start(|r| {
        if r.has_tool_result {
            Reply::text(&["done"])
        } else if r.last_user_text.contains("PUSH-ME") {
            write_file("toolu_push_b", "PUSHED-B", "pushed.txt")
        } else {
            Reply::text(&["from B"])
        }
    })
    .await;
    let (a, mut b) = tokio::join!(
        Computer::start(&claude, &api_a, &relay.url, false),
        Computer::start(&claude, &api_b, &relay.url, false)
    );
    let tab_a = pair(&phone, &a).await;
    tab_a.page.close().await.unwrap();

    // B is offline when the phone tries to pair: the app says so. Back on, it pairs.
    let (url, pin) = b.invite().await;
    b.stop().await;
    let tab = phone.open(&url).await;
    ready(&tab).await;
    phone.type_into(&tab, "PIN", &pin).await;
    phone.tap(&tab, "Pair").await;
    until(&tab.page, "[...document.querySelectorAll('[role=alert]')].some(e => /offline/i.test(e.textContent))").await;
    tab.page.close().await.unwrap();
    b.restart().await;
    let tab = pair(&phone, &b).await;

    // Both are listed; each is talked to when chosen.
    for (computer, api, other, marker, answer) in
        [(&a, &api_a, &api_b, "HELLO-A", "from A"), (&b, &api_b, &api_a, "HELLO-B", "from B")]
    {
        phone.tap_selector(&tab, &format!("[data-computer={:?}]", computer.bridge_id())).await;
        link_state(&tab, "connected").await;
        send(&phone, &tab, marker).await;
        reply_is(&tab, answer).await;
        assert_eq!(api.requests_with(marker).len(), 1);
        assert!(other.requests_with(marker).is_empty());
    }

    // Without the test switch, B refuses a push endpoint on loopback: it never even connects to it.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}/push", probe.local_addr().unwrap());
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while probe.accept().await.is_ok() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let keys = BrowserKeys::generate();
    phone.allow_notifications(&origin(&relay)).await;
    tab.page.evaluate(keys.page_script(&endpoint)).await.unwrap();
    let refused = turn_notifications_on(&phone, &tab).await;
    assert!(refused.contains("not a public address"), "the app says why: {refused:?}");
    send(&phone, &tab, "PUSH-ME").await;
    open_prompt(&tab).await;
    phone.tap(&tab, "Allow").await;
    awaited("the prompt allowed on B ran its tool", Duration::from_secs(60), async || b.written("pushed.txt")).await;
    reply_is(&tab, "done").await;
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "a loopback endpoint was contacted");
}

/// The median of `runs` (sorted in place).
fn median(runs: &mut [Duration]) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn report(what: &str, runs: &mut [Duration]) {
    eprintln!("MEASURED {what}: median {:?} of {} runs {runs:?}", median(runs), runs.len());
}

/// The figures of docs/benchmarks.md, "Phone web app", in one run, medians of 5:
/// `cargo test -p lanyard --test phone -- --ignored --nocapture measure`.
#[tokio::test]
#[ignore = "a measurement, run by hand for docs/benchmarks.md"]
async fn measure_the_phone_app() {
    const RUNS: usize = 5;
    let _alone = ONE_AT_A_TIME.lock().await;
    let Some((relay, first_phone, claude)) = parts().await else { return };
    drop(first_phone);
    let api = MessagesApi::start(|r| {
        if r.has_tool_result {
            Reply::text(&["done"])
        } else if r.last_user_text.contains("PUSH-ME") {
            write_file("toolu_measure", "MEASURED", "measured.txt")
        } else {
            Reply::Text { pieces: vec!["Quick".into(), " reply".into()], gap: Duration::from_millis(50) }
        }
    })
    .await;
    let computer = Computer::start(&claude, &api, &relay.url, true).await;

    // Scan to paired, each on a phone that has never seen the app (a fresh browser profile).
    let mut paired = Vec::new();
    let mut phone = None;
    for _ in 0..RUNS {
        let fresh = Phone::start().await.unwrap();
        let (url, pin) = computer.invite().await;
        let started = Instant::now();
        let tab = fresh.open(&url).await;
        ready(&tab).await;
        fresh.type_into(&tab, "PIN", &pin).await;
        fresh.tap(&tab, "Pair").await;
        link_state(&tab, "connected").await;
        paired.push(started.elapsed());
        phone = Some((fresh, tab));
    }
    report("scan (invite URL opened) to paired", &mut paired);
    let (phone, tab) = phone.unwrap();

    // First usable render (the shell ready and the link connected) of the paired app, CPU throttled 4x.
    let mut usable = Vec::new();
    for _ in 0..RUNS {
        let throttled = phone.blank().await;
        let session = Some(throttled.session.as_str());
        phone.devtools.call(session, "Emulation.setCPUThrottlingRate", json!({ "rate": 4 })).await;
        let watch = "new MutationObserver(() => { if (!window.__usable && document.body && \
                     document.body.dataset.ready === 'true' && document.querySelector('[data-link-state=connected]')) \
                     window.__usable = performance.now(); }).observe(document, \
                     { subtree: true, childList: true, attributes: true });";
        phone.devtools.call(session, "Page.enable", json!({})).await;
        phone.devtools.call(session, "Page.addScriptToEvaluateOnNewDocument", json!({ "source": watch })).await;
        throttled.page.goto(format!("{}/", origin(&relay))).await.unwrap();
        until(&throttled.page, "typeof window.__usable === 'number'").await;
        usable.push(Duration::from_secs_f64(eval::<f64>(&throttled.page, "window.__usable").await / 1000.0));
        throttled.page.close().await.unwrap();
    }
    report("first usable render, 4x CPU throttling (from navigation start)", &mut usable);

    // The page weight of a first visit: every resource the page loaded, as sent and gzipped.
    let fresh = Phone::start().await.unwrap();
    let (url, _) = computer.invite().await;
    let first_visit = fresh.open(&url).await;
    ready(&first_visit).await;
    let loaded: Vec<(String, f64, f64)> = eval(
        &first_visit.page,
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
         .filter(e => !e.name.includes('/v1/')).map(e => [e.name.split('#')[0], e.transferSize, e.decodedBodySize])",
    )
    .await;
    // A request with no body (the app's HEAD to learn whether the relay answers) weighs only its headers.
    let with_body: Vec<String> =
        loaded.iter().filter(|(_, _, body)| *body > 0.0).map(|(url, ..)| url.clone()).collect();
    let mut gzipped_bodies = push::gzipped_sizes(&with_body).into_iter();
    let gzipped: Vec<u64> =
        loaded.iter().map(|(_, _, body)| if *body > 0.0 { gzipped_bodies.next().unwrap() } else { 0 }).collect();
    for ((url, sent, body), gz) in loaded.iter().zip(&gzipped) {
        eprintln!("MEASURED page weight: {url}: {sent} bytes sent, {body} decoded, {gz} gzipped");
    }
    let sent: f64 = loaded.iter().map(|(_, sent, _)| sent).sum();
    eprintln!("MEASURED page weight: {sent} bytes sent, {} bytes gzipped in all", gzipped.iter().sum::<u64>());
    // Send to first delta: in the app through the relay, and the same turn from a node on the LAN.
    let mut app = Vec::new();
    for n in 0..=RUNS {
        phone.type_into(&tab, "Message", &format!("hello {n}")).await;
        let shown =
            eval::<usize>(&tab.page, "document.querySelectorAll('[role=log] [data-role=assistant]').length").await;
        let started = Instant::now();
        phone.tap(&tab, "Send").await;
        let first = format!(
            "(() => {{ const all = document.querySelectorAll('[role=log] [data-role=assistant]'); \
             return all.length > {shown} && all[all.length - 1].textContent.includes('Quick'); }})()"
        );
        until(&tab.page, &first).await;
        // The first turn starts the conversation's claude: not counted, on either side.
        if n > 0 {
            app.push(started.elapsed());
        }
        reply_is(&tab, "Quick reply").await;
    }
    report("send to first delta, phone app via the relay", &mut app);
    let string: node_kit::connection_string::ConnectionString =
        computer.lanyard_ok(&["pair", "--string"]).await.trim().parse().unwrap();
    let identity = std::sync::Arc::new(certs::Identity::generate());
    let request = node_kit::pairing::PairingRequest::new("LAN node", "linux");
    let lan = node_kit::pairing::redeem(&string, &identity, request).await.unwrap();
    let node = node_kit::node::Node::builder(identity, lan).connect().await.unwrap();
    let mut local = Vec::new();
    for n in 0..=RUNS {
        let started = Instant::now();
        let params = node_kit::protocol::AgentParams::new(format!("hello {n}")).session("measure");
        let mut run = node.agent(params).await.unwrap();
        while !matches!(run.next_event().await, Some(node_kit::protocol::AgentEventKind::TextDelta { .. })) {}
        if n > 0 {
            local.push(started.elapsed());
        }
        run.outcome().await.unwrap();
    }
    report("send to first delta, node-kit node on the LAN", &mut local);

    // Prompt raised (the gateway's event to an operator) to the push request reaching the push service.
    let service = PushService::start().await;
    let keys = BrowserKeys::generate();
    phone.allow_notifications(&origin(&relay)).await;
    tab.page.evaluate(keys.page_script(&format!("{}/push", service.url))).await.unwrap();
    assert_eq!(turn_notifications_on(&phone, &tab).await, "");
    let operator = computer.operator().await;
    let mut events = operator.subscribe();
    let mut pushed = Vec::new();
    for n in 0..RUNS {
        let before = service.deliveries().len();
        send(&phone, &tab, &format!("PUSH-ME {n}")).await;
        let raised = loop {
            let event = events.recv().await.unwrap();
            if event.event == "agent" && event.payload["kind"] == "permission" {
                break Instant::now();
            }
        };
        let delivery = awaited("the measured prompt was pushed", Duration::from_secs(30), async || {
            service.deliveries().get(before).cloned()
        })
        .await;
        pushed.push(delivery.at.saturating_duration_since(raised));
        phone.tap(&tab, "Allow").await;
        no_open_prompt(&tab).await;
        stop_gone(&phone, &tab).await;
    }
    report("prompt raised to push request at the push service", &mut pushed);
}
