//! A real headless Chromium for the console's tests, and the few steps they take in it. Included with
//! `#[path]` by the test files that drive a browser (the others need no Chromium crate).
#![allow(dead_code)] // each user takes the steps it needs

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use node_kit::protocol::{ConsoleLogin, method};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A headless Chromium with a profile of its own, closed when dropped.
pub struct Chromium {
    browser: Browser,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// `None` when no Chromium is installed; `skip` is told why.
    pub async fn start(skip: impl Fn(&str)) -> Option<Chromium> {
        let Some(path) = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| which::which(b).ok())
        else {
            skip("no Chromium on PATH: run ./test.sh as root, which installs Debian's chromium");
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        // A first navigation on a loaded 2-core machine can outlast chromiumoxide's 30 s default.
        let mut config = BrowserConfig::builder()
            .chrome_executable(path)
            .user_data_dir(profile.path())
            .window_size(1100, 900)
            .request_timeout(std::time::Duration::from_secs(90))
            .args(["--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]);
        if nix::unistd::geteuid().is_root() {
            config = config.no_sandbox();
        }
        let (browser, mut handler) = Browser::launch(config.build().unwrap()).await.expect("Chromium starts");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        Some(Chromium { browser, _profile: profile })
    }

    /// The browser's DevTools WebSocket, for a connection of a test's own.
    pub fn websocket_address(&self) -> &str {
        self.browser.websocket_address()
    }

    pub async fn open(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.expect("a page opens");
        page.wait_for_navigation().await.unwrap();
        page
    }
}

pub async fn eval<T: serde::de::DeserializeOwned>(page: &Page, script: &str) -> T {
    page.evaluate(script).await.unwrap_or_else(|e| panic!("{script}: {e}")).into_value().unwrap()
}

/// Waits until `script` is true in the page, checking every 10 ms.
pub async fn until(page: &Page, script: &str) {
    let started = Instant::now();
    while !eval::<bool>(page, script).await {
        if started.elapsed() > Duration::from_secs(20) {
            let shown: String = eval(page, "document.body.innerText.slice(0, 4000)").await;
            panic!("the page never showed: {script}\nit shows:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Clicks the element now in the page (lists are redrawn on every event, so a handle found earlier may be
/// gone by the time a mouse would reach it).
pub async fn click(page: &Page, selector: &str) {
    let script =
        format!("(() => {{ const e = document.querySelector({selector:?}); if (e) e.click(); return !!e; }})()");
    assert!(eval::<bool>(page, &script).await, "nothing to click at {selector}");
}

/// Saves a full-page screenshot as `NAME.png` in the console's folder (see [`screenshot_path`]).
pub async fn screenshot(page: &Page, name: &str) {
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), screenshot_path("console", name))
        .await
        .unwrap();
}

/// Where a screenshot `NAME.png` goes: under the target directory, or in `docs/FOLDER/` (the README's
/// pictures) when `LANYARD_UPDATE_SCREENSHOTS` is set, so a test run leaves the tree clean.
pub fn screenshot_path(folder: &str, name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().find(|d| d.join("Cargo.lock").is_file());
    let dir = match (std::env::var_os("LANYARD_UPDATE_SCREENSHOTS"), workspace) {
        (Some(_), Some(workspace)) => workspace.join("docs").join(folder),
        _ => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(folder),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

/// A one-time login link, as `lanyard open` asks `operator`'s gateway for it.
pub async fn login_url(operator: &node_kit::Client) -> String {
    let login = operator.request(method::CONSOLE_LOGIN, Value::Null).await.unwrap();
    serde_json::from_value::<ConsoleLogin>(login).unwrap().url
}
