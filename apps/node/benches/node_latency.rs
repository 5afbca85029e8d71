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
use node_support::{Computer, NodeProcess};
use serde_json::json;
use std::time::{Duration, Instant};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let Some(computer) = Computer::start(|_| Reply::text(&["ok", " then"]), |_| {}).await else {
        eprintln!("needs claude (LANYARD_TEST_CLAUDE) and chromium");
        return;
    };
    let mut node = NodeProcess::pair_and_run(&computer, "Bench display", &[], &[]).await;
    let id = computer.node_named("Bench display").await.node_id;
    let operator = computer.operator().await;

    // Snapshots through the whole path.
    computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();
    let mut through_bridge = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let shot = computer.invoke(&id, "screen.snapshot", json!({})).await.unwrap();
        through_bridge.push(started.elapsed());
        bytes = shot["base64"].as_str().unwrap().len();
    }

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
    let page = browser.new_page("about:blank").await.unwrap();
    page.set_content("<canvas id=canvas></canvas><div id=root></div>").await.unwrap();
    let mut direct = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let started = Instant::now();
        page.screenshot(ScreenshotParams::builder().format(CaptureScreenshotFormat::Png).build()).await.unwrap();
        direct.push(started.elapsed());
    }
    direct.remove(0);
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
    println!(
        "snapshot round trip through the bridge: median {} (PNG {} KB base64); Chromium's own screenshot: median {}; ratio {:.2}",
        ms(median(through_bridge.clone())),
        bytes / 1024,
        ms(median(direct.clone())),
        median(through_bridge).as_secs_f64() / median(direct).as_secs_f64()
    );
    println!(
        "first streamed delta: transcript typed into lanyard-node median {}; typed agent call median {}; difference {}",
        ms(median(transcript.clone())),
        ms(median(typed.clone())),
        ms(median(transcript).saturating_sub(median(typed)))
    );
    assert!(node.stop().await.success());
    computer.stop().await;
}
