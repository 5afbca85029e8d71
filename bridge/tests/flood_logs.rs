//! A connect flood costs a bounded number of log lines (security.md 3.30): each refused connection is a
//! DEBUG line, and INFO gets one summary per interval that says what happened. Its own test binary,
//! because it installs the process's log subscriber.

mod support;

use std::time::Duration;
use support::gw::{LogCapture, TestGateway, eventually};
use support::{TestBridge, tcp_from};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_connect_flood_writes_a_summary_not_a_line_per_connection() {
    const FLOOD: usize = 400;
    let logs = LogCapture::install();
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |config| config.refusal_summary_every = Duration::from_millis(500)).await;
    let before = logs.text().lines().count();

    // One address connects and hangs up, over and over: past the handshake burst the connections are
    // refused before TLS; the ones let in fail TLS.
    for _ in 0..FLOOD {
        let mut tcp = tcp_from("127.0.0.9".parse().unwrap(), bridge.addr).await.unwrap();
        let _ = tcp.shutdown().await;
    }

    let summary = eventually(Duration::from_secs(10), async || {
        let text = logs.text();
        let refused: usize = summaries(&text).map(|s| s.0).sum();
        (refused == FLOOD).then_some(text)
    })
    .await;
    let new_lines: Vec<&str> = summary.lines().skip(before).collect();
    let loud: Vec<&&str> = new_lines.iter().filter(|l| !l.contains("DEBUG") && !l.contains("TRACE")).collect();
    // Before the summary, every one of these connections wrote an INFO line.
    assert!(loud.len() <= 6, "{} INFO+ lines for {FLOOD} refused connections:\n{loud:#?}", loud.len());
    let (_, line) = summaries(&summary).next().unwrap();
    assert!(line.contains("from 1 addresses"), "{line}");
    assert!(line.contains("rate-limited="), "{line}");
    let debug = new_lines.iter().filter(|l| l.contains("DEBUG") && l.contains("refused")).count();
    assert_eq!(debug, FLOOD, "each refusal is one DEBUG line");
    drop(bridge);
}

/// The summary lines in `text`, with the number of connections each reports.
fn summaries(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().filter(|l| l.contains(" INFO ") && l.contains("refused ") && l.contains(" connections from ")).map(
        |line| {
            let count = line.split("refused ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap();
            (count.parse().unwrap(), line)
        },
    )
}
