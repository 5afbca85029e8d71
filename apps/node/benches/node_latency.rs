//! What the node path costs, each figure side by side with its baseline, in one run:
//!
//! - a `screen.snapshot` round trip (operator → gateway → bridge over mutual TLS → `lanyard-node` →
//!   Chromium → back, PNG of the 1280×720 canvas) against Chromium's own screenshot of the same page size
//!   taken directly over DevTools in this process;
//! - the time from a transcript line typed into `lanyard-node` to the first streamed character of the
//!   reply on its stdout, against the time from a typed `agent` call by an operator to its first delta,
//!   both answered by the real `claude` against the same scripted Messages API.
//!
//! Needs `LANYARD_TEST_CLAUDE` (./test.sh installs claude into .tools/) and chromium on PATH; run inside a
//! network namespace: `unshare --net -- sh -c 'ip link set lo up && cargo bench -p lanyard-node'`.
//! BENCH_ROUNDS sets the number of samples per figure (default 30).

#[path = "../tests/node_support/mod.rs"]
mod node_support;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt;
use node_kit::protocol::{AgentEventKind, AgentParams};
use node_support::support::gw::messages_api::Reply;
use node_support::{Computer, NodeProcess, TestPage};
use serde_json::json;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// `rounds` timed snapshots with `params` (after one untimed), and the size of the last one's base64.
async fn snapshots(computer: &Computer, id: &str, params: serde_json::Value, rounds: usize) -> (Vec<Duration>, usize) {
    computer.invoke(id, "screen.snapshot", params.clone()).await.unwrap();
    let (mut samples, mut size) = (Vec::with_capacity(rounds), 0);
    for _ in 0..rounds {
        let started = Instant::now();
        let shot = computer.invoke(id, "screen.snapshot", params.clone()).await.unwrap();
        samples.push(started.elapsed());
        size = shot["base64"].as_str().unwrap().len();
    }
    (samples, size)
}

/// One snapshot figure beside its baseline: medians and their ratio.
fn compare(page: &str, (through_bridge, size): (Vec<Duration>, usize), direct: Vec<Duration>) {
    let (ours, theirs) = (median(through_bridge), median(direct));
    println!(
        "{page}: snapshot through the bridge median {} ({} KB base64); Chromium's own screenshot median {}; ratio {:.2}",
        ms(ours),
        size / 1024,
        ms(theirs),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    // The bridge's snapshot rate limit would pace the loop: lift it, the path is what is measured.
    let unlimited = |config: &mut bridge::BridgeConfig| {
        config.limits.snapshots_per_node = bridge::ratelimit::Rate::per_second(1000, 1000);
        config.limits.voice_per_node = bridge::ratelimit::Rate::per_second(1000, 1000);
    };
    let Some(computer) = Computer::start(|_| Reply::text(&["ok", " then"]), unlimited).await else {
        eprintln!("needs claude (LANYARD_TEST_CLAUDE) and chromium");
        return;
    };
    let page = TestPage::start().await;
    let mut node = NodeProcess::pair_and_run(&computer, "Bench display", &["--web-allow", &page.origin], &[]).await;
    let id = computer.node_named("Bench display").await.node_id;
    let operator = computer.operator().await;

    // Snapshots through the whole path: the blank canvas as PNG, then a page of noise as JPEG (quality 80).
    let (through_bridge, bytes) = snapshots(&computer, &id, json!({}), rounds).await;
    let url = format!("{}/noise", page.origin);
    computer.invoke(&id, "screen.navigate", json!({ "url": url })).await.unwrap();
    let jpeg = json!({ "format": "jpeg", "quality": 80 });
    let (noise_through_bridge, noise_bytes) = snapshots(&computer, &id, jpeg, rounds).await;

    // Chromium's own screenshot of a page the same size, in this process.
    let profile = tempfile::tempdir().unwrap();
    let chromium = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|n| which::which(n).ok()).unwrap();
    let mut config = BrowserConfig::builder()
        .chrome_executable(chromium)
        .disable_default_args()
        .user_data_dir(profile.path())
        .window_size(1280, 720)
        .viewport(chromiumoxide::handler::viewport::Viewport {
            width: 1280,
            height: 720,
            device_scale_factor: Some(1.0),
            ..Default::default()
        })
        .args(["--disable-gpu", "--no-first-run", "--hide-scrollbars", "--mute-audio"]);
    if nix::unistd::geteuid().is_root() {
        config = config.no_sandbox();
    }
    let (mut browser, mut handler) = Browser::launch(config.build().unwrap()).await.unwrap();
    tokio::spawn(async move { while handler.next().await.is_some() {} });
    let tab = browser.new_page("about:blank").await.unwrap();
    tab.set_content("<canvas id=canvas></canvas><div id=root></div>").await.unwrap();
    let mut direct = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let started = Instant::now();
        tab.screenshot(ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build()).await.unwrap();
        direct.push(started.elapsed());
    }
    direct.remove(0);
    tab.set_content(node_support::NOISE_HTML).await.unwrap();
    let mut noise_direct = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let started = Instant::now();
        let jpeg = ScreenshotParams::builder().format(CaptureScreenshotFormat::Jpeg).quality(80).build();
        tab.screenshot(jpeg).await.unwrap();
        noise_direct.push(started.elapsed());
    }
    noise_direct.remove(0);
    browser.close().await.unwrap();
    let _ = browser.wait().await;

    // First delta: a transcript typed into the node, against a typed agent call.
    let mut transcript = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (lines, bytes) = (node.stdout.all().len(), node.stdout.bytes());
        let started = Instant::now();
        node.type_line(&format!("voice round {round}")).await;
        // The node prints the first delta before the line ends: watch the bytes, not the lines.
        while node.stdout.bytes() == bytes {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        transcript.push(started.elapsed());
        node.stdout.at_least(lines + 1, Duration::from_secs(30)).await;
    }
    let mut typed = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let started = Instant::now();
        let mut run = operator.agent(AgentParams::new(format!("typed round {round}"))).await.unwrap();
        let mut first = None;
        while let Some(event) = run.next_event().await {
            if first.is_none() && matches!(event, AgentEventKind::TextDelta { .. }) {
                first = Some(started.elapsed());
            }
        }
        run.outcome().await.unwrap();
        typed.push(first.expect("a delta"));
    }

    println!("rounds per figure: {rounds}");
    compare("blank canvas as PNG", (through_bridge, bytes), direct);
    compare("noise page as JPEG (quality 80)", (noise_through_bridge, noise_bytes), noise_direct);
    println!(
        "first streamed delta: transcript typed into lanyard-node median {}; typed agent call median {}; difference {}",
        ms(median(transcript.clone())),
        ms(median(typed.clone())),
        ms(median(transcript).saturating_sub(median(typed)))
    );
    assert!(node.stop().await.success());
    computer.stop().await;
}
