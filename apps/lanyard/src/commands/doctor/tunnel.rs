//! The tunnel's relay: reachable, and this computer's clock against the relay's.

use super::Finding;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How far this computer's clock may be off the relay's before it is worth a warning.
const SKEW_ALLOWED: Duration = Duration::from_secs(30);
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub(super) async fn reachable(home: &Path) -> Finding {
    let relay = match ::gateway::tunnel::load_url(home) {
        Ok(Some(relay)) => relay,
        Ok(None) => return Finding::ok("off (`lanyard tunnel enable …` reaches this computer from away)"),
        Err(e) => {
            return Finding::fail(
                format!("cannot read the tunnel settings: {e}"),
                "set them again: `lanyard tunnel disable`, then `lanyard tunnel enable …`",
            );
        }
    };
    let fix = "check the URL (`lanyard tunnel status`) and that the relay Worker is deployed \
               (apps/relay-worker/README.md), or turn the tunnel off: `lanyard tunnel disable`";
    let url = format!("{}/v1/health", relay.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .use_preconfigured_tls(node_kit::relay::web_tls_config())
        .timeout(ANSWER_WITHIN)
        .build()
    {
        Ok(client) => client,
        Err(e) => return Finding::fail(format!("cannot make an HTTPS client: {}", causes(&e)), fix),
    };
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(e) => return Finding::fail(format!("the relay does not answer at {url}: {}", causes(&e)), fix),
    };
    let status = response.status();
    if !status.is_success() {
        return Finding::fail(format!("the relay answered {status} at {url}"), fix);
    }
    let date = response.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok());
    let Some(theirs) = date.and_then(|d| httpdate::parse_http_date(d).ok()) else {
        return Finding::ok(format!("the relay answers at {url} (it sent no Date, so the clock is not checked)"));
    };
    let now = SystemTime::now();
    let (skew, ahead) = match now.duration_since(theirs) {
        Ok(behind) => (behind, "ahead of"),
        Err(e) => (e.duration(), "behind"),
    };
    if skew > SKEW_ALLOWED {
        return Finding::warn(
            format!(
                "the relay answers at {url}, but this computer's clock is {} s {ahead} the relay's",
                skew.as_secs()
            ),
            "turn on network time: `sudo timedatectl set-ntp true` (Linux) or System Settings › General › Date & \
             Time › Set time automatically (macOS)",
        );
    }
    Finding::ok(format!("the relay answers at {url}; the clocks agree within {} s", SKEW_ALLOWED.as_secs()))
}

/// An error with its causes, which is where reqwest says what went wrong.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
