//! What counts as an error line in the logs of the processes under soak.
//!
//! `lanyard up` logs with `tracing` (`TIMESTAMP  LEVEL target: message fields`). Every line at ERROR or
//! WARN is an error line, and so is a panic message. Nothing is excused: the soak does nothing a working
//! system should warn about (no bad input, no revoked device, no limit reached on purpose), so a warning
//! there is a finding. The devices' own refusals (a node away when invoked, an answer to a prompt that is
//! already closed) are answers on the wire, not log lines.
//!
//! `wrangler dev` prints its own problems as `✘ [ERROR]` and `▲ [WARNING]`, the Worker's uncaught
//! exceptions as `Uncaught …`, and the relay object's JSON events one a line. Those are error lines, and
//! so are the object's `bridge_dropped` and `bridge_closed` events: the bridge's link to its relay must
//! stay up all along (the soak never cuts it). One line is excused: workerd's note that wrangler's own
//! log stream lost a call whose client left ([`WRANGLER_TAIL_CANCELLED`]), which is not the relay's doing.
//! Only what wrangler wrote before `lanyard up` was stopped counts: the bridge's link ends with it.

use std::io::BufRead;
use std::path::Path;

/// Error lines found in one log: how many, and the first few.
#[derive(Debug, Default)]
pub struct Findings {
    pub lines_read: u64,
    pub count: u64,
    pub first: Vec<String>,
}

const KEEP: usize = 20;

/// Removes ANSI colour sequences (`ESC [ … letter`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a line of `lanyard up`'s log is an error line.
pub fn lanyard_error(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let timestamped = words.next().is_some_and(|w| w.len() >= 20 && w.as_bytes()[4] == b'-' && w.contains('T'));
    let level = words.next().unwrap_or_default();
    (timestamped && matches!(level, "ERROR" | "WARN")) || line.contains("panicked at")
}

/// What workerd says when wrangler's own log stream (a tail session that carries the Worker's logs to
/// wrangler) loses a call whose client went away: the local tool's plumbing, not the relay's code.
const WRANGLER_TAIL_CANCELLED: &str = "trace-stream.c++:841: disconnected: jsg.Error: The destination execution \
                                       context for this tail session was canceled";

/// Whether a line of `wrangler dev`'s log is an error line.
pub fn wrangler_error(line: &str) -> bool {
    ["[ERROR]", "[WARNING]", "Uncaught", "panicked", "\"event\":\"bridge_dropped\"", "\"event\":\"bridge_closed\""]
        .iter()
        .any(|marker| line.contains(marker))
        && !line.contains(WRANGLER_TAIL_CANCELLED)
}

/// The error lines in the first `bytes` of the log at `path` (all of it with `u64::MAX`).
pub fn scan(path: &Path, bytes: u64, is_error: impl Fn(&str) -> bool) -> std::io::Result<Findings> {
    use std::io::Read;
    let mut findings = Findings::default();
    let file = std::io::BufReader::new(std::fs::File::open(path)?.take(bytes));
    for line in file.split(b'\n') {
        let line = plain(&String::from_utf8_lossy(&line?));
        findings.lines_read += 1;
        if is_error(&line) {
            findings.count += 1;
            if findings.first.len() < KEEP {
                findings.first.push(line.chars().take(400).collect());
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_errors_and_panics_count_in_lanyards_log() {
        let at = "2026-12-07T22:50:38.123456Z";
        assert!(lanyard_error(&format!("{at}  WARN bridge::relay: lost the gateway link node=ab")));
        assert!(lanyard_error(&format!("{at} ERROR gateway::agent::book: cannot write the conversation index")));
        assert!(lanyard_error("thread 'tokio-runtime-worker' panicked at bridge/src/relay.rs:10:5:"));
        assert!(!lanyard_error(&format!("{at}  INFO bridge::session: node connected node=ab")));
        assert!(!lanyard_error("  Bridge:       127.0.0.1:18790 (WARN is only a word here)"));
        assert!(lanyard_error(&plain(&format!("\u{1b}[2m{at}\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x: y"))));
    }

    #[test]
    fn wrangler_problems_and_a_dropped_bridge_count() {
        assert!(wrangler_error("✘ [ERROR] Uncaught TypeError: x is undefined"));
        assert!(wrangler_error("▲ [WARNING] something is off"));
        assert!(wrangler_error(r#"{"event":"bridge_dropped","code":1006}"#));
        assert!(!wrangler_error(r#"{"event":"stream_open","streams":3}"#));
        assert!(!wrangler_error("[wrangler:info] Ready on http://127.0.0.1:8787"));
        assert!(!wrangler_error(
            "✘ [ERROR] exception = workerd/io/trace-stream.c++:841: disconnected: jsg.Error: The destination \
             execution context for this tail session was canceled while the call was still running."
        ));
        assert!(wrangler_error("✘ [ERROR] exception = workerd/io/trace-stream.c++:841: something else"));
    }
}
