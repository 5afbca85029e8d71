//! How long a pairing request takes to show on the owner's console, against the baseline of the same
//! event reaching an operator's WebSocket (what `lanyard up`'s terminal prompt waits for). The console's
//! share is its SSE stream, the page's refresh (`pair.pending` and the other lists through `/api/call`)
//! and the drawing, in real headless Chromium. Also the page's weight as the browser received it.
//! Prints a Markdown table for docs/benchmarks.md.
//!
//!   cargo bench -p gateway --bench console_latency
//!   BENCH_REQUESTS=30 to change the number of requests (default 30).

#[path = "../tests/support/chromium.rs"]
mod chromium;
#[path = "stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use chromium::{Chromium, eval, login_url, until};
use node_kit::protocol::{event, method};
use serde_json::json;
use stats::{paired_median_ms, print_table};
use std::time::{Duration, Instant};
use support::TestGateway;

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let Some(chromium) = Chromium::start(|why| eprintln!("{why}")).await else { std::process::exit(2) };
    let operator = gateway.operator().await;
    let page = chromium.open(&login_url(&operator).await).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    until(&page, "document.getElementById('live').textContent === 'live'").await;
    let bridge = gateway.bridge_client().await;

    let (mut to_operator, mut to_page) = (Vec::new(), Vec::new());
    for i in 0..requests + 3 {
        let mut events = operator.subscribe();
        let asked = Instant::now();
        let request_id = gateway.submit_pairing(&bridge, certs::Identity::generate().id(), &format!("Phone {i}")).await;
        let heard = async {
            loop {
                let frame = events.recv().await.expect("events");
                if frame.event == event::PAIR_REQUESTED && frame.payload["requestId"] == request_id {
                    return asked.elapsed();
                }
            }
        };
        let shown = async {
            let card = format!("!!document.querySelector('#pending li[data-request=\"{request_id}\"]')");
            while !eval::<bool>(&page, &card).await {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            asked.elapsed()
        };
        let (heard, shown) = tokio::time::timeout(Duration::from_secs(20), async { tokio::join!(heard, shown) })
            .await
            .expect("the request shows within 20 s");
        if i >= 3 {
            to_operator.push(heard);
            to_page.push(shown);
        }
        operator.request(method::PAIR_REJECT, json!({ "requestId": request_id })).await.expect("pair.reject");
        until(&page, "!document.querySelector('#pending li[data-request]')").await;
    }
    let weight: f64 = eval(
        &page,
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))\
         .filter(e => !e.name.includes('/api/')).reduce((n, e) => n + e.transferSize, 0)",
    )
    .await;
    let extra = paired_median_ms(&to_operator, &to_page);
    print_table(
        "requests",
        &mut [
            ("`pair.submit` → `pair.requested` at an operator's WebSocket", &mut to_operator),
            ("`pair.submit` → its card in the console's page (headless Chromium)", &mut to_page),
        ],
    );
    println!("\nMedian of paired differences (page − WebSocket): {extra:+.3} ms");
    println!("Page weight as received (document, script, style, headers included): {weight} bytes");
}
