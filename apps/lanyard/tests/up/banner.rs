//! Reading `lanyard up`'s banner from its stdout, for the test files that start one (included with
//! `#[path]`).

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Reads `up`'s stdout until its banner is complete (within `within`), and returns the banner.
pub async fn read(stdout: tokio::process::ChildStdout, within: Duration) -> String {
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.contains("Stop with Ctrl-C") {
                return;
            }
        }
        panic!("lanyard up ended before its banner was complete:\n{banner}");
    };
    tokio::time::timeout(within, read).await.expect("lanyard up prints its banner");
    banner
}

/// The first word after `label` on the banner's line that starts with it.
pub fn after(banner: &str, label: &str) -> String {
    let line = banner.lines().find_map(|l| l.trim_start().strip_prefix(label)).expect(label);
    line.split_whitespace().next().unwrap().to_string()
}
