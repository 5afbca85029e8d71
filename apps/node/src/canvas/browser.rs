//! The browser process and its one page, as chromiumoxide drives it. Launch flags follow TOOLING.md: no
//! default flags, a fresh profile in a temporary directory, nothing that phones home.

use super::CanvasOptions;
use crate::allow::{self, AllowEntry, WebAllow};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::browser::{
    Bounds, GetWindowForTargetParams, SetWindowBoundsParams, WindowState,
};
use chromiumoxide::cdp::browser_protocol::fetch::{ContinueRequestParams, EventRequestPaused, FailRequestParams};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotFormat, Viewport};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::error::CdpError;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use node_kit::protocol::{ErrorCode, ErrorShape, ImageFormat};
use serde_json::{Value, json};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Browsers looked for on PATH, in order.
const BROWSER_NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];
/// Where macOS keeps them.
const MAC_BROWSERS: &[&str] = &[
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
];
/// Flags that keep the browser quiet on the network and quick to start.
const FLAGS: &[&str] = &[
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
];

pub(super) struct Running {
    browser: Browser,
    page: Page,
    /// Cancelled when the DevTools connection ends: the browser exited or crashed.
    gone: CancellationToken,
    /// Kills the browser if the node dies without closing it.
    watchdog: Option<Watchdog>,
    _profile: tempfile::TempDir,
}

/// Kills the browser when the node dies without closing it (SIGKILL, a crash, an OOM kill): a `sh` that
/// waits on a pipe only the node holds, and kills the browser once the pipe closes, which the kernel does
/// when the node's process ends however it ends.
///
/// Not a parent-death signal: `prctl(PR_SET_PDEATHSIG)` must run in the child between fork and exec, which
/// takes `unsafe` (`CommandExt::pre_exec`) in a process chromiumoxide spawns itself; `setpriv --pdeathsig`
/// would have to wrap chromiumoxide's command line, exists only on Linux, and fires when the spawning
/// *thread* ends, not the process. The pipe needs only `sh`, on Linux and macOS alike.
struct Watchdog(tokio::process::Child);

/// The watchdog's script: wait for the end of stdin, then kill the browser (`$0`).
const WATCHDOG_SCRIPT: &str = r#"read -r line; kill -KILL "$0" 2>/dev/null"#;

impl Watchdog {
    fn start(browser_pid: u32) -> std::io::Result<Watchdog> {
        tokio::process::Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, &browser_pid.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a Ctrl-C in the terminal reaches the node, which closes the browser
            // itself, and not the watchdog, which must outlive that close.
            .process_group(0)
            .spawn()
            .map(Watchdog)
    }

    /// Ends the watchdog without it acting: SIGKILL goes out before its pipe can close, so it never kills a
    /// process ID that the browser, once reaped, may have passed on.
    fn stand_down(&mut self) {
        let _ = self.0.start_kill();
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Runs before the fields drop, so before the pipe (the child's stdin) closes.
        self.stand_down();
    }
}

/// The browser binary: the one given, else the first found on PATH (or in /Applications on macOS).
fn find_browser(given: Option<&PathBuf>) -> Result<PathBuf, ErrorShape> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.clone())
        } else {
            Err(unavailable(format!(
                "the browser {} (from --browser or LANYARD_NODE_BROWSER) does not exist",
                path.display()
            )))
        };
    }
    BROWSER_NAMES
        .iter()
        .find_map(|name| which::which(name).ok())
        .or_else(|| MAC_BROWSERS.iter().map(PathBuf::from).find(|p| p.is_file()))
        .ok_or_else(|| {
            unavailable(
                "no Chromium or Chrome found on PATH; install one (`apt install chromium`, or Google Chrome on \
                 macOS) or give its path with --browser"
                    .into(),
            )
        })
}

fn unavailable(message: String) -> ErrorShape {
    ErrorShape::new(ErrorCode::ScreenUnavailable, message)
}

/// A DevTools error as the caller sees it: the script's exception, or the browser being unusable.
fn browser_error(e: CdpError) -> ErrorShape {
    match e {
        CdpError::JavascriptException(details) => {
            let description =
                details.exception.as_ref().and_then(|e| e.description.clone()).unwrap_or_else(|| details.text.clone());
            ErrorShape::new(ErrorCode::ScriptError, format!("the script threw: {description}")).with_details(json!({
                "exception": description,
                "lineNumber": details.line_number,
                "columnNumber": details.column_number,
            }))
        }
        CdpError::Timeout => {
            ErrorShape::retryable(ErrorCode::Timeout, "the browser did not answer in time", Some(1000))
        }
        other => {
            ErrorShape::retryable(ErrorCode::ScreenUnavailable, format!("the browser failed: {other}"), Some(1000))
        }
    }
}

/// Whether a page (a document: top-level or frame) at `url` may load: the node's own canvas page, or a URL
/// the allow-list admits. Every document request passes here, so a redirect, a link or a script's
/// `location = …` cannot take the screen where `screen.navigate` could not.
fn document_allowed(url: &str, canvas_page: &str, allowed: &[AllowEntry]) -> bool {
    url.starts_with(canvas_page) || url == "about:blank" || allow::check(url, allowed).is_ok()
}

/// Answers every request `page` pauses on: documents the allow-list does not admit fail (the page shows
/// Chromium's "blocked" error), everything else goes on.
async fn guard_documents(
    page: Page,
    mut paused: chromiumoxide::listeners::EventStream<EventRequestPaused>,
    canvas_page: String,
    allowed: WebAllow,
) {
    while let Some(event) = paused.next().await {
        let blocked = event.resource_type == ResourceType::Document
            && !document_allowed(&event.request.url, &canvas_page, &allowed.current());
        let answered = if blocked {
            tracing::info!(url = %event.request.url, "blocked a page the web allow-list does not admit");
            page.execute(FailRequestParams::new(event.request_id.clone(), ErrorReason::BlockedByClient)).await.map(drop)
        } else {
            page.execute(ContinueRequestParams::new(event.request_id.clone())).await.map(drop)
        };
        if answered.is_err() {
            tracing::debug!(url = %event.request.url, "a paused request could not be answered");
        }
    }
}

impl Running {
    /// Starts the browser on `canvas_page`; documents `allowed` does not admit (as it is when they load)
    /// are refused for the browser's life.
    pub(super) async fn launch(
        options: &CanvasOptions,
        canvas_page: &str,
        allowed: &WebAllow,
    ) -> Result<Running, ErrorShape> {
        let path = find_browser(options.browser.as_ref())?;
        let profile = tempfile::Builder::new()
            .prefix("lanyard-node-browser-")
            .tempdir()
            .map_err(|e| unavailable(format!("cannot make a browser profile directory: {e}")))?;
        let mut config = BrowserConfig::builder()
            .chrome_executable(&path)
            .disable_default_args()
            .user_data_dir(profile.path())
            .window_size(options.width, options.height)
            // The page gets exactly this size, whatever the window's own frame takes.
            // A certificate error is a failed load, never a page shown anyway: an https allow-list entry
            // must mean that host.
            .respect_https_errors()
            .enable_request_intercept()
            .viewport(chromiumoxide::handler::viewport::Viewport {
                width: options.width,
                height: options.height,
                device_scale_factor: Some(1.0),
                ..Default::default()
            })
            .args(FLAGS.iter().copied());
        if options.headed {
            config = config.with_head();
        }
        // Chromium refuses to run as root with its sandbox on.
        if nix::unistd::geteuid().is_root() {
            config = config.no_sandbox();
        }
        let config = config.build().map_err(unavailable)?;
        let (mut browser, mut handler) = Browser::launch(config)
            .await
            .map_err(|e| unavailable(format!("cannot start the browser {}: {e}", path.display())))?;
        let pid = browser.get_mut_child().and_then(|child| child.as_mut_inner().id());
        let watchdog = match pid.map(Watchdog::start) {
            Some(Ok(watchdog)) => Some(watchdog),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "no watchdog for the browser: it outlives this node if the node is killed");
                None
            }
            None => None,
        };
        let gone = CancellationToken::new();
        let flag = gone.clone();
        tokio::spawn(async move {
            // The stream goes on after most errors; a broken connection means the browser is gone.
            while let Some(event) = handler.next().await {
                if let Err(CdpError::Ws(e)) = event {
                    tracing::debug!(error = %e, "the DevTools connection broke");
                    break;
                }
            }
            flag.cancel();
        });
        // A blank page first (no request to pause), so the guard is in place before anything loads.
        let opened = async {
            let page = browser.new_page("about:blank").await?;
            let paused = page.event_listener::<EventRequestPaused>().await?;
            tokio::spawn(guard_documents(page.clone(), paused, canvas_page.to_string(), allowed.clone()));
            page.goto(canvas_page).await?;
            Ok::<_, CdpError>(page)
        };
        let page = match opened.await {
            Ok(page) => page,
            Err(e) => {
                let mut running_browser = browser;
                let _ = running_browser.kill().await;
                return Err(browser_error(e));
            }
        };
        tracing::info!(browser = %path.display(), headed = options.headed, "Canvas browser started");
        Ok(Running { browser, page, gone, watchdog, _profile: profile })
    }

    /// Whether the browser still runs: its process has not exited and its DevTools connection is open.
    pub(super) fn alive(&mut self) -> bool {
        let alive = !self.gone.is_cancelled() && matches!(self.browser.try_wait(), Ok(None));
        if !alive && let Some(watchdog) = &mut self.watchdog {
            // The browser may be reaped already: its process ID is no longer its own.
            watchdog.stand_down();
        }
        alive
    }

    /// Cancelled once the browser is gone, so a command waiting on it can stop waiting.
    pub(super) fn gone(&self) -> CancellationToken {
        self.gone.clone()
    }

    /// Closes the browser politely, then makes sure the process is gone.
    pub(super) async fn close(mut self) {
        if self.alive() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), self.browser.close()).await;
        }
        if tokio::time::timeout(std::time::Duration::from_secs(3), self.browser.wait()).await.is_err() {
            let _ = self.browser.kill().await;
        }
    }

    pub(super) async fn goto(&self, url: &str) -> Result<(), ErrorShape> {
        self.page.goto(url).await.map(drop).map_err(browser_error)
    }

    pub(super) async fn url(&self) -> Option<String> {
        self.page.url().await.ok().flatten()
    }

    /// Evaluates `script`, awaiting a promise, and returns its value as JSON (`null` for values JSON cannot
    /// carry, such as functions).
    pub(super) async fn evaluate(&self, script: &str) -> Result<Value, ErrorShape> {
        let params = EvaluateParams::builder()
            .expression(script)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(ErrorShape::invalid_request)?;
        let result = self.page.evaluate_expression(params).await.map_err(browser_error)?;
        Ok(result.value().cloned().unwrap_or(Value::Null))
    }

    /// The page's size in CSS pixels.
    pub(super) async fn viewport(&self) -> Result<(u32, u32), ErrorShape> {
        let size = self.evaluate("[window.innerWidth, window.innerHeight]").await?;
        let dimension = |i: usize| size[i].as_u64().filter(|v| *v > 0).map(|v| v as u32);
        match (dimension(0), dimension(1)) {
            (Some(w), Some(h)) => Ok((w, h)),
            _ => Err(ErrorShape::new(ErrorCode::ScreenUnavailable, format!("the page reports no size ({size})"))),
        }
    }

    pub(super) async fn screenshot(
        &self,
        format: ImageFormat,
        quality: Option<u8>,
        width: f64,
        height: f64,
        scale: f64,
    ) -> Result<Vec<u8>, ErrorShape> {
        let clip = Viewport { x: 0.0, y: 0.0, width, height, scale };
        let mut params = ScreenshotParams::builder().clip(clip);
        params = match format {
            ImageFormat::Png => params.format(CaptureScreenshotFormat::Png),
            ImageFormat::Jpeg => params.format(CaptureScreenshotFormat::Jpeg),
        };
        if let (ImageFormat::Jpeg, Some(quality)) = (format, quality) {
            params = params.quality(i64::from(quality.clamp(1, 100)));
        }
        self.page.screenshot(params.build()).await.map_err(browser_error)
    }

    /// Shows or minimises the browser window (headed mode).
    pub(super) async fn set_window_visible(&self, visible: bool) -> Result<(), ErrorShape> {
        let window = self.page.execute(GetWindowForTargetParams::default()).await.map_err(browser_error)?;
        let state = if visible { WindowState::Normal } else { WindowState::Minimized };
        let bounds = Bounds { window_state: Some(state), ..Default::default() };
        self.page.execute(SetWindowBoundsParams::new(window.window_id, bounds)).await.map_err(browser_error)?;
        if visible {
            self.page.bring_to_front().await.map_err(browser_error)?;
        }
        Ok(())
    }
}
