//! With nobody at a terminal (`lanyard up` as a login service), a pairing request raises a desktop
//! notification where the desktop has a notifier, pointing the owner to the console. The device's name is
//! passed as an argument, never through a shell.

use crate::commands::connect;
use node_kit::protocol::{PendingPairing, event};
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The notifier of this desktop, if it has one.
fn notifier() -> Option<(&'static str, std::path::PathBuf)> {
    if cfg!(target_os = "macos") {
        return which::which("osascript").ok().map(|p| ("osascript", p));
    }
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !desktop {
        return None;
    }
    which::which("notify-send").ok().map(|p| ("notify-send", p))
}

/// Notifies of each pairing request until `stop`; silent where there is no notifier.
pub(super) async fn pairing_requests(url: &str, home: &Path, console: Option<String>, stop: &CancellationToken) {
    let Some((kind, program)) = notifier() else { return };
    let Ok(client) = connect(url, home).await else { return };
    let mut events = client.subscribe();
    let body = match console {
        Some(console) => format!("Compare the code and approve it in the console ({console}; `lanyard open` logs in)."),
        None => "Approve it with `lanyard nodes pending` and `lanyard nodes approve`.".to_string(),
    };
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => return,
            received = events.recv() => match received {
                Ok(frame) => frame,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        if frame.event != event::PAIR_REQUESTED {
            continue;
        }
        let Ok(request) = serde_json::from_value::<PendingPairing>(frame.payload) else { continue };
        let title = format!("{} asks to pair with Lanyard", request.request.device.name);
        let mut command = tokio::process::Command::new(&program);
        match kind {
            // The text goes to AppleScript as arguments of `on run`, not spliced into the script.
            "osascript" => command.args([
                "-e",
                "on run argv\ndisplay notification (item 2 of argv) with title (item 1 of argv)\nend run",
                &title,
                &body,
            ]),
            _ => command.args(["--app-name=Lanyard", &title, &body]),
        };
        if let Err(e) = command.status().await {
            tracing::debug!(error = %e, "the desktop notification failed");
        }
    }
}
