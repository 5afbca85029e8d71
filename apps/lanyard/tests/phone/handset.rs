//! The phone: a real headless Chromium (one profile, so one phone however many tabs it opens) with a
//! phone's screen and touch, driven the way a person uses it: controls found by their accessible name in
//! the browser's accessibility tree and tapped with a touch gesture, text typed into the focused field.
//! A second DevTools connection of our own reaches what chromiumoxide leaves alone: service-worker targets
//! (it detaches from them), push delivery and the page's lifecycle.

use super::chromium::{Chromium, screenshot_path};
use super::support::gw::skip;
use chromiumoxide::page::Page;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// The phone's screen: an iPhone-sized viewport (CSS pixels), drawn at twice the density.
pub const WIDTH: u32 = 390;
pub const HEIGHT: u32 = 844;

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Message,
>;

/// A raw DevTools Protocol connection to the browser, with flat sessions for targets.
pub struct Devtools {
    sink: Arc<tokio::sync::Mutex<Sink>>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

/// chromiumoxide auto-attaches to every page's workers with `waitForDebuggerOnStart` and resumes them itself,
/// but on a loaded machine it sometimes leaves a service worker paused before its script runs: its
/// registration then never gets a worker and `register()` never settles. Every service worker is resumed
/// from this connection too (harmless when it is running).
fn resume_service_worker(event: &Value, next_id: &AtomicU64) -> Option<Value> {
    let params = &event["params"];
    let id = next_id.fetch_add(1, Ordering::Relaxed);
    match event["method"].as_str()? {
        "Target.targetCreated" if params["targetInfo"]["type"] == "service_worker" => Some(json!({ "id": id,
            "method": "Target.attachToTarget", "params": { "targetId": params["targetInfo"]["targetId"], "flatten": true } })),
        "Target.attachedToTarget" if params["targetInfo"]["type"] == "service_worker" => Some(json!({ "id": id,
            "method": "Runtime.runIfWaitingForDebugger", "params": {}, "sessionId": params["sessionId"] })),
        _ => None,
    }
}

impl Devtools {
    async fn connect(url: &str) -> Devtools {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("DevTools answers");
        let (sink, mut stream) = socket.split();
        let sink = Arc::new(tokio::sync::Mutex::new(sink));
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let next_id = Arc::new(AtomicU64::new(1));
        let (answers, heard, resumer, ids) = (waiting.clone(), events.clone(), sink.clone(), next_id.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                match value["id"].as_u64() {
                    Some(id) => {
                        if let Some(answer) = answers.lock().unwrap().remove(&id) {
                            let _ = answer.send(value);
                        }
                    }
                    None => {
                        if let Some(resume) = resume_service_worker(&value, &ids) {
                            let _ = resumer.lock().await.send(Message::Text(resume.to_string().into())).await;
                        }
                        heard.lock().unwrap().push(value);
                    }
                }
            }
        });
        Devtools { sink, waiting, events, next_id, reader }
    }

    /// Calls `method` (on `session`'s target, or the browser's); its result, or the error DevTools gave.
    pub async fn try_call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, answer);
        let mut call = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            call["sessionId"] = session.into();
        }
        self.sink.lock().await.send(Message::Text(call.to_string().into())).await.expect("DevTools is connected");
        let mut reply = tokio::time::timeout(Duration::from_secs(30), answered)
            .await
            .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
            .unwrap();
        match reply.get_mut("error") {
            Some(error) => Err(error.take()),
            None => Ok(reply["result"].take()),
        }
    }

    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.try_call(session, method, params).await.unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// A flat session on the target `target_id`.
    pub async fn attach(&self, target_id: &str) -> String {
        let attached =
            self.call(None, "Target.attachToTarget", json!({ "targetId": target_id, "flatten": true })).await;
        attached["sessionId"].as_str().unwrap().to_string()
    }

    /// The events heard so far with this method name.
    pub fn events(&self, method: &str) -> Vec<Value> {
        self.events.lock().unwrap().iter().filter(|e| e["method"] == method).cloned().collect()
    }

    /// Evaluates `expression` (awaited) in `session`'s target; its value.
    pub async fn eval(&self, session: &str, expression: &str) -> Value {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.call(Some(session), "Runtime.evaluate", params).await;
        if let Some(thrown) = result.get("exceptionDetails") {
            panic!("{expression} threw: {thrown}");
        }
        result["result"]["value"].clone()
    }
}

impl Drop for Devtools {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The phone: the browser and our own DevTools connection to it.
pub struct Phone {
    pub chromium: Chromium,
    pub devtools: Devtools,
}

/// One tab of the phone, with its DevTools session (where its screen and touch are emulated).
pub struct Tab {
    pub page: Page,
    pub session: String,
}

impl Phone {
    /// `None` (a skip, which fails under CI) when no Chromium is installed.
    pub async fn start() -> Option<Phone> {
        let chromium = Chromium::start(skip).await?;
        let devtools = Devtools::connect(chromium.websocket_address()).await;
        devtools.call(None, "Target.setDiscoverTargets", json!({ "discover": true })).await;
        Some(Phone { chromium, devtools })
    }

    /// Opens `url` in a new tab with a phone's screen and touch, as a tap on a link or a scanned code does.
    pub async fn open(&self, url: &str) -> Tab {
        let tab = self.blank().await;
        tab.page.goto(url).await.unwrap_or_else(|e| panic!("{url}: {e}"));
        tab
    }

    /// A new empty tab with a phone's screen and touch, to set up before it goes anywhere.
    pub async fn blank(&self) -> Tab {
        let page = self.chromium.open("about:blank").await;
        let session = self.devtools.attach(page.target_id().inner()).await;
        let metrics = json!({ "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 2, "mobile": true,
            "screenWidth": WIDTH, "screenHeight": HEIGHT });
        self.devtools.call(Some(&session), "Emulation.setDeviceMetricsOverride", metrics).await;
        let touch = json!({ "enabled": true, "maxTouchPoints": 5 });
        self.devtools.call(Some(&session), "Emulation.setTouchEmulationEnabled", touch).await;
        self.devtools.call(Some(&session), "Emulation.setEmitTouchEventsForMouse", json!({ "enabled": true })).await;
        // The page's console and uncaught errors, for a failure to show.
        self.devtools.call(Some(&session), "Runtime.enable", json!({})).await;
        Tab { page, session }
    }

    /// Lets the app's origin show notifications, as a person does when the browser asks.
    pub async fn allow_notifications(&self, origin: &str) {
        let grant = json!({ "permissions": ["notifications"], "origin": origin });
        self.devtools.call(None, "Browser.grantPermissions", grant).await;
    }

    /// Page lifecycle: `frozen` as a phone's browser freezes a tab in the background, or `active`.
    pub async fn lifecycle(&self, tab: &Tab, state: &str) {
        self.devtools.call(Some(&tab.session), "Page.setWebLifecycleState", json!({ "state": state })).await;
        if state == "active" {
            // Freezing hid the page too, and waking leaves it hidden (no frames, so no input or accessibility
            // answers): the window is minimized and restored, as a phone's screen goes off and on.
            let target = json!({ "targetId": tab.page.target_id().inner() });
            let window = self.devtools.call(None, "Browser.getWindowForTarget", target).await["windowId"].clone();
            for state in ["minimized", "normal"] {
                let bounds = json!({ "windowId": window, "bounds": { "windowState": state } });
                self.devtools.call(None, "Browser.setWindowBounds", bounds).await;
            }
        }
    }

    /// Takes the tab's network away (`offline`) or gives it back.
    pub async fn offline(&self, tab: &Tab, offline: bool) {
        self.devtools.call(Some(&tab.session), "Network.enable", json!({})).await;
        let conditions = json!({ "offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 });
        self.devtools.call(Some(&tab.session), "Network.emulateNetworkConditions", conditions).await;
    }

    /// The backend DOM node of the first element the accessibility tree names `name` with one of `roles`.
    pub async fn find(&self, tab: &Tab, name: &str, roles: &[&str]) -> Option<u64> {
        let document =
            self.devtools.call(Some(&tab.session), "Runtime.evaluate", json!({ "expression": "document" })).await;
        let object_id = document["result"]["objectId"].as_str()?.to_string();
        let query = json!({ "objectId": object_id, "accessibleName": name });
        let found = self.devtools.try_call(Some(&tab.session), "Accessibility.queryAXTree", query).await.ok()?;
        found["nodes"].as_array()?.iter().find_map(|node| {
            let role = node["role"]["value"].as_str().unwrap_or_default();
            (!node["ignored"].as_bool().unwrap_or(false) && roles.contains(&role))
                .then(|| node["backendDOMNodeId"].as_u64())
                .flatten()
        })
    }

    /// Waits for the control `name` with one of `roles` to be on screen, and taps it.
    pub async fn tap_named(&self, tab: &Tab, name: &str, roles: &[&str]) {
        self.tap_when(tab, &format!("{roles:?} named {name:?}"), async || self.find(tab, name, roles).await).await;
    }

    /// Waits for a control with one of `roles` whose accessible name contains `part` (any case), and taps it.
    pub async fn tap_matching(&self, tab: &Tab, roles: &[&str], part: &str) {
        let what = format!("{roles:?} whose name has {part:?}");
        self.tap_when(tab, &what, async || {
            let tree =
                self.devtools.try_call(Some(&tab.session), "Accessibility.getFullAXTree", json!({})).await.ok()?;
            tree["nodes"].as_array()?.iter().find_map(|node| {
                let role = node["role"]["value"].as_str().unwrap_or_default();
                let name = node["name"]["value"].as_str().unwrap_or_default().to_lowercase();
                (!node["ignored"].as_bool().unwrap_or(false)
                    && roles.contains(&role)
                    && name.contains(&part.to_lowercase()))
                .then(|| node["backendDOMNodeId"].as_u64())
                .flatten()
            })
        })
        .await;
    }

    /// Waits for the element `selector` (for what has no name of its own to find it by), and taps it.
    pub async fn tap_selector(&self, tab: &Tab, selector: &str) {
        self.tap_when(tab, selector, async || {
            let expression = format!("document.querySelector({selector:?})");
            let found =
                self.devtools.call(Some(&tab.session), "Runtime.evaluate", json!({ "expression": expression })).await;
            let object_id = found["result"]["objectId"].as_str()?.to_string();
            let node =
                self.devtools.call(Some(&tab.session), "DOM.describeNode", json!({ "objectId": object_id })).await;
            node["node"]["backendNodeId"].as_u64()
        })
        .await;
    }

    /// Taps the node `locate` finds once it is on screen, with a touch, as a finger does.
    async fn tap_when(&self, tab: &Tab, what: &str, locate: impl AsyncFn() -> Option<u64>) {
        let started = Instant::now();
        loop {
            if let Some(node) = locate().await
                && let Some((x, y)) = self.centre(tab, node).await
            {
                // A finger down and up: the browser makes the tap (and its click) as on a touch screen.
                let down = json!({ "type": "touchStart", "touchPoints": [{ "x": x, "y": y }] });
                self.devtools.call(Some(&tab.session), "Input.dispatchTouchEvent", down).await;
                let up = json!({ "type": "touchEnd", "touchPoints": [] });
                self.devtools.call(Some(&tab.session), "Input.dispatchTouchEvent", up).await;
                return;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let shown = self.devtools.eval(&tab.session, "document.body.innerText.slice(0, 3000)").await;
                panic!("nothing to tap: {what}; the page shows:\n{}", shown.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Taps the button named `name` (a toggle button is one too).
    pub async fn tap(&self, tab: &Tab, name: &str) {
        self.tap_named(tab, name, &["button", "ToggleButton", "toggleButton"]).await;
    }

    /// Taps the text field named `name` and types `text` into it.
    pub async fn type_into(&self, tab: &Tab, name: &str, text: &str) {
        self.tap_named(tab, name, &["textbox", "spinbutton", "searchbox"]).await;
        let node = self.find(tab, name, &["textbox", "spinbutton", "searchbox"]).await.unwrap();
        self.devtools.call(Some(&tab.session), "DOM.focus", json!({ "backendNodeId": node })).await;
        // What was typed before (a wrong PIN) is selected, so the new text replaces it.
        self.devtools.eval(&tab.session, "document.activeElement.select && document.activeElement.select()").await;
        self.devtools.call(Some(&tab.session), "Input.insertText", json!({ "text": text })).await;
    }

    /// The centre of a node on screen (scrolled into view first), or `None` while it has no box.
    async fn centre(&self, tab: &Tab, node: u64) -> Option<(f64, f64)> {
        let devtools = &self.devtools;
        let _ =
            devtools.try_call(Some(&tab.session), "DOM.scrollIntoViewIfNeeded", json!({ "backendNodeId": node })).await;
        let model =
            devtools.try_call(Some(&tab.session), "DOM.getBoxModel", json!({ "backendNodeId": node })).await.ok()?;
        let quad: Vec<f64> = model["model"]["border"].as_array()?.iter().filter_map(Value::as_f64).collect();
        if quad.len() != 8 || (quad[0] - quad[2]).abs() < 1.0 {
            return None;
        }
        Some(((quad[0] + quad[4]) / 2.0, (quad[1] + quad[5]) / 2.0))
    }

    /// Saves what the phone's screen shows as `docs/phone/NAME.png` when `LANYARD_UPDATE_SCREENSHOTS` is
    /// set (else under the target directory).
    pub async fn screenshot(&self, tab: &Tab, name: &str) {
        let shot = self.devtools.call(Some(&tab.session), "Page.captureScreenshot", json!({ "format": "png" })).await;
        let png = data_encoding::BASE64.decode(shot["data"].as_str().unwrap().as_bytes()).unwrap();
        std::fs::write(screenshot_path("phone", name), png).unwrap();
    }

    /// What the tab's page wrote to its console, and the errors it did not catch, oldest first.
    pub fn console(&self, tab: &Tab) -> Vec<String> {
        let events = self.devtools.events.lock().unwrap();
        let of_tab = events.iter().filter(|e| e["sessionId"] == tab.session.as_str());
        of_tab
            .filter_map(|e| match e["method"].as_str()? {
                "Runtime.consoleAPICalled" => Some(format!(
                    "{}: {}",
                    e["params"]["type"].as_str().unwrap_or(""),
                    e["params"]["args"]
                        .as_array()?
                        .iter()
                        .map(|a| a["value"].to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )),
                "Runtime.exceptionThrown" => Some(format!("uncaught: {}", e["params"]["exceptionDetails"])),
                _ => None,
            })
            .collect()
    }

    /// Sessions on the service workers now running whose registration's scope ends with `scope_end`.
    pub async fn service_workers(&self, scope_end: &str) -> Vec<String> {
        let targets = self.devtools.call(None, "Target.getTargets", json!({})).await;
        let mut sessions = Vec::new();
        for target in targets["targetInfos"].as_array().unwrap() {
            if target["type"] != "service_worker" {
                continue;
            }
            let session = self.devtools.attach(target["targetId"].as_str().unwrap()).await;
            let scope = self.devtools.eval(&session, "self.registration && self.registration.scope").await;
            if scope.as_str().is_some_and(|s| s.ends_with(scope_end)) {
                sessions.push(session);
            }
        }
        sessions
    }
}
