//! The Canvas: one page in a Chromium the node starts itself (headless by default), driven over the
//! DevTools protocol with chromiumoxide. It answers the `screen.*` commands. The browser is never
//! downloaded: it is found on PATH or given with `--browser`. When it is missing or has crashed, screen
//! commands get `SCREEN_UNAVAILABLE` saying what to do, and the rest of the node carries on; a browser that
//! crashed is started again.

mod browser;
mod page;

use crate::allow::{self, WebAllow};
use browser::Running;
use data_encoding::BASE64;
use node_kit::protocol::{
    ErrorCode, ErrorShape, EvalParams, ImageFormat, NavigateParams, NodeCommand, ScreenMode, SnapshotParams,
    SnapshotResult,
};
use page::CanvasPage;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// How long one browser operation may take before the command fails with `TIMEOUT`.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// JPEG quality used when a PNG would be over the size cap and the caller did not choose one.
const FALLBACK_QUALITY: u8 = 80;

#[derive(Debug, Clone)]
pub struct CanvasOptions {
    /// The browser binary; found on PATH when not given.
    pub browser: Option<PathBuf>,
    /// A visible window (where there is a display) instead of headless.
    pub headed: bool,
    pub width: u32,
    pub height: u32,
}

/// What the owner's settings allow the Canvas to do.
#[derive(Debug, Clone)]
pub struct CanvasLimits {
    pub web_allow: WebAllow,
    pub max_snapshot_bytes: usize,
}

pub struct Canvas {
    options: CanvasOptions,
    limits: CanvasLimits,
    page: CanvasPage,
    /// The browser, when running. Commands take turns on it.
    running: tokio::sync::Mutex<Option<Running>>,
}

impl Canvas {
    pub async fn new(options: CanvasOptions, limits: CanvasLimits) -> std::io::Result<Canvas> {
        Ok(Canvas { options, limits, page: CanvasPage::serve().await?, running: tokio::sync::Mutex::new(None) })
    }

    /// Starts the browser on the canvas page now, so the first command does not wait for it.
    pub async fn start(&self) -> Result<(), ErrorShape> {
        let mut running = self.running.lock().await;
        self.ensure(&mut running).await.map(drop)
    }

    /// Whether the browser is up (for `status`).
    pub fn describe(&self) -> String {
        match self.running.try_lock() {
            Ok(mut running) => {
                if running.as_mut().is_some_and(Running::alive) { "running" } else { "not running" }.into()
            }
            Err(_) => "busy".into(),
        }
    }

    /// Runs one `screen.*` command.
    pub async fn run(&self, command: NodeCommand) -> Result<Value, ErrorShape> {
        tracing::info!(command = command.name(), "screen command");
        let mut running = self.running.lock().await;
        let browser = self.ensure(&mut running).await?;
        let gone = browser.gone();
        let command = async {
            match command {
                NodeCommand::ScreenShow(_) => self.set_visible(browser, true).await,
                NodeCommand::ScreenHide(_) => self.set_visible(browser, false).await,
                NodeCommand::ScreenNavigate(params) => self.navigate(browser, params).await,
                NodeCommand::ScreenEval(params) => eval(browser, params).await,
                NodeCommand::ScreenSnapshot(params) => self.snapshot(browser, params).await,
                NodeCommand::ScreenSetMode(params) => self.set_mode(browser, params.mode).await,
            }
        };
        // A browser that dies mid-command may leave its answer pending for ever: stop at once.
        let outcome = tokio::select! {
            outcome = command => outcome,
            () = gone.cancelled() => Err(crashed_error()),
        };
        if !browser.alive() {
            // It died during the command: this command says so, the next one starts it again.
            if let Some(gone) = running.take() {
                gone.close().await;
            }
            return Err(crashed_error());
        }
        outcome
    }

    /// Closes the browser and waits for it to exit.
    pub async fn close(&self) {
        if let Some(running) = self.running.lock().await.take() {
            running.close().await;
        }
    }

    /// The running browser, started on the canvas page if it is not. A browser found dead (crashed or
    /// killed) is started again, but the command that found it fails: what was on the screen is gone, and
    /// the caller should know before it acts on a page that is no longer there.
    async fn ensure<'a>(&self, running: &'a mut Option<Running>) -> Result<&'a mut Running, ErrorShape> {
        let crashed = running.as_mut().is_some_and(|r| !r.alive());
        if crashed {
            tracing::warn!("Chromium exited; starting it again");
            if let Some(gone) = running.take() {
                gone.close().await;
            }
        }
        if running.is_none() {
            let started = Running::launch(&self.options, &self.page.url, &self.limits.web_allow).await?;
            *running = Some(started);
        }
        if crashed {
            return Err(crashed_error());
        }
        Ok(running.as_mut().expect("started above"))
    }

    async fn set_visible(&self, browser: &Running, visible: bool) -> Result<Value, ErrorShape> {
        // Headless, there is no window to show or hide: the page stays as it is.
        if self.options.headed {
            step(browser.set_window_visible(visible)).await?;
        }
        Ok(json!({ "visible": visible, "headed": self.options.headed }))
    }

    async fn navigate(&self, browser: &Running, params: NavigateParams) -> Result<Value, ErrorShape> {
        let url = allow::check(&params.url, &self.limits.web_allow.current())?;
        step(browser.goto(url.as_str())).await.map_err(|e| load_failed(url.as_str(), e))?;
        Ok(json!({ "url": browser.url().await, "mode": ScreenMode::Web }))
    }

    async fn set_mode(&self, browser: &Running, mode: ScreenMode) -> Result<Value, ErrorShape> {
        let target = match mode {
            ScreenMode::Canvas => self.page.url.as_str(),
            ScreenMode::Web => "about:blank",
        };
        step(browser.goto(target)).await?;
        Ok(json!({ "mode": mode }))
    }

    /// A picture of the page, at most `maxWidth` wide and `max_snapshot_bytes` long: a picture over the cap
    /// is taken again as JPEG, then smaller, and refused (`PAYLOAD_TOO_LARGE`) if it still does not fit.
    /// Never sent whole when it is over the cap.
    async fn snapshot(&self, browser: &Running, params: SnapshotParams) -> Result<Value, ErrorShape> {
        if params.max_width == Some(0) {
            return Err(ErrorShape::invalid_request("maxWidth must be at least 1"));
        }
        if params.quality.is_some_and(|q| !(1..=100).contains(&q)) {
            return Err(ErrorShape::invalid_request("quality must be between 1 and 100"));
        }
        let cap = self.limits.max_snapshot_bytes;
        let (width, height) = step(browser.viewport()).await?;
        let mut scale = params.max_width.map_or(1.0, |max| (f64::from(max) / f64::from(width)).min(1.0));
        let mut format = params.format.unwrap_or(ImageFormat::Png);
        let mut quality = params.quality;
        let mut smallest = usize::MAX;
        for _ in 0..4 {
            let image = step(browser.screenshot(format, quality, f64::from(width), f64::from(height), scale)).await?;
            if image.len() <= cap {
                let result = SnapshotResult {
                    format,
                    width: (f64::from(width) * scale).round() as u32,
                    height: (f64::from(height) * scale).round() as u32,
                    base64: BASE64.encode(&image),
                };
                return Ok(serde_json::to_value(result).expect("snapshots serialise"));
            }
            smallest = smallest.min(image.len());
            tracing::debug!(bytes = image.len(), cap, ?format, scale, "snapshot over the cap; taking a smaller one");
            if format == ImageFormat::Png {
                format = ImageFormat::Jpeg;
                quality = Some(quality.unwrap_or(FALLBACK_QUALITY));
            } else {
                scale /= 2.0;
            }
        }
        Err(ErrorShape::new(
            ErrorCode::PayloadTooLarge,
            format!("the snapshot is {smallest} bytes even as a smaller JPEG; this node sends at most {cap}"),
        )
        .with_details(json!({ "maxBytes": cap, "smallestBytes": smallest })))
    }
}

/// A page that did not load. A document the guard blocked (a redirect off the allow-list) is the
/// allow-list's refusal; anything else (no such host, connection refused) says what the browser saw.
fn load_failed(url: &str, e: ErrorShape) -> ErrorShape {
    if e.message.contains("ERR_BLOCKED_BY_CLIENT") {
        return ErrorShape::new(
            ErrorCode::UrlNotAllowed,
            format!("{url} led to a page the {} setting does not admit (a redirect?)", allow::SETTING),
        )
        .with_details(json!({ "setting": allow::SETTING, "url": url }));
    }
    ErrorShape { message: format!("could not open {url}: {}", e.message), ..e }
}

async fn eval(browser: &Running, params: EvalParams) -> Result<Value, ErrorShape> {
    let result = step(browser.evaluate(&params.java_script)).await?;
    Ok(json!({ "result": result }))
}

/// One browser step, bounded in time.
async fn step<T>(future: impl std::future::Future<Output = Result<T, ErrorShape>>) -> Result<T, ErrorShape> {
    tokio::time::timeout(STEP_TIMEOUT, future).await.unwrap_or_else(|_| {
        Err(ErrorShape::retryable(
            ErrorCode::Timeout,
            format!("the browser did not answer within {} s", STEP_TIMEOUT.as_secs()),
            Some(1000),
        ))
    })
}

fn crashed_error() -> ErrorShape {
    ErrorShape::retryable(
        ErrorCode::ScreenUnavailable,
        "the node's browser (Chromium) had exited; it is started again on a blank canvas page, so what the \
         screen showed is gone. Try again",
        Some(1000),
    )
}
