//! The soak's closing report (Markdown) and its verdict: each check named, passed or failed, with the
//! figures behind it.

use crate::ledger::Book;
use crate::logs::Findings;
use crate::model::{ModelLog, TurnKind, tool_use_id};
use crate::sampler::{FD_BOUND, RSS_BOUND, Sample, Trend, trend};
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

pub struct Report<'a> {
    pub devices: usize,
    pub duration: Duration,
    pub load: Duration,
    pub seed: u64,
    pub lanyard: &'a Path,
    pub turns_in_flight: u64,
    pub book: &'a Book,
    pub model: &'a ModelLog,
    pub samples: &'a [Sample],
    pub warm_up: f64,
    pub lanyard_log: Findings,
    pub wrangler_log: Findings,
    pub lanyard_exit: Option<std::process::ExitStatus>,
    pub lanyard_stopped_cleanly: bool,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Activity each run must show, or the soak proved nothing: at least one of each.
const MUST_HAPPEN: &[&str] = &[
    "connects on the LAN",
    "connects through the relay",
    "moves between paths",
    "drops",
    "system-events answered",
    "links dropped mid-turn",
    "agent.attach catch-ups",
    "operator snapshots, the device's own picture",
];

impl Report<'_> {
    /// The report and whether every check passed.
    pub fn render(&self) -> (String, bool) {
        let mut checks: Vec<(String, bool)> = Vec::new();
        let mut out = String::new();
        let ledger = self.book.with(|l| {
            (
                l.counts.clone(),
                l.turns_ok.clone(),
                l.tool_turns_ok.clone(),
                l.connect_failures.clone(),
                l.prompts.iter().map(|(id, p)| (id.clone(), p.clone())).collect::<Vec<_>>(),
                l.failures.clone(),
                l.failure_count,
            )
        });
        let (counts, turns_ok, tool_turns, connect_failures, prompts, failures, failure_count) = ledger;
        let count = |what: &str| counts.get(what).copied().unwrap_or(0);

        let turns: u64 = turns_ok.values().sum();
        checks.push((
            format!(
                "every turn's text deltas delivered once and in order, across reconnects ({turns} turns ran to their end \
                 with every check passed, {} deltas; failures below)",
                count("text deltas delivered")
            ),
            failure_count == 0,
        ));
        let not_once: Vec<String> = prompts
            .iter()
            .filter(|(_, p)| p.accepted_answers != 1)
            .map(|(id, p)| {
                format!("prompt {id} of device {} turn {}: {} answers accepted", p.device, p.turn, p.accepted_answers)
            })
            .collect();
        checks.push((
            format!(
                "every prompt answered exactly once ({} of {} prompts)",
                prompts.len() - not_once.len(),
                prompts.len()
            ),
            not_once.is_empty(),
        ));
        let reached_once = tool_turns
            .iter()
            .filter(|turn| self.model.tool_results.get(&tool_use_id(**turn)).copied() == Some(1))
            .count();
        let repeated = self.model.tool_results.values().filter(|&&n| n > 1).count();
        checks.push((
            format!(
                "every tool result (answer, snapshot) reached the model once ({reached_once} of {} finished tool turns; \
                 {repeated} sent more than once)",
                tool_turns.len()
            ),
            reached_once == tool_turns.len() && repeated == 0,
        ));
        for kind in TurnKind::ALL {
            let n = turns_ok.get(&kind).copied().unwrap_or(0);
            checks.push((format!("{} turns ran and passed: {n}", kind.name()), n > 0));
        }
        for what in MUST_HAPPEN {
            checks.push((format!("{what}: {}", count(what)), count(what) > 0));
        }
        checks.push((
            format!(
                "no error line in lanyard's log ({} of {} lines)",
                self.lanyard_log.count, self.lanyard_log.lines_read
            ),
            self.lanyard_log.count == 0,
        ));
        checks.push((
            format!(
                "no error line in wrangler's log ({} of {} lines)",
                self.wrangler_log.count, self.wrangler_log.lines_read
            ),
            self.wrangler_log.count == 0,
        ));
        checks.push((
            format!("lanyard up stopped cleanly on SIGTERM ({:?})", self.lanyard_exit),
            self.lanyard_stopped_cleanly,
        ));
        let rss = trend("RSS", "MiB", self.samples, self.warm_up, |s| s.rss_bytes as f64 / MIB, &RSS_BOUND);
        let fds = trend("descriptors", "", self.samples, self.warm_up, |s| s.descriptors as f64, &FD_BOUND);
        for t in [&rss, &fds] {
            checks.push((
                format!(
                    "{} flat: {:+.2}{} per hour, {:+.2}{} over the {:.0} s window (bound {:.2}{})",
                    t.what, t.slope_per_hour, t.unit, t.growth, t.unit, t.window_secs, t.bound, t.unit
                ),
                t.flat(),
            ));
        }
        let passed = checks.iter().all(|(_, ok)| *ok);

        let _ = writeln!(out, "# Soak: {} devices for {:?}, seed {}\n", self.devices, self.duration, self.seed);
        let _ = writeln!(
            out,
            "**{}**. lanyard: `{}`; load ran {:.0} s; {} agent turns at most at once.\n",
            if passed { "PASSED" } else { "FAILED" },
            self.lanyard.display(),
            self.load.as_secs_f64(),
            self.turns_in_flight
        );
        let _ = writeln!(out, "## Checks\n");
        for (what, ok) in &checks {
            let _ = writeln!(out, "- [{}] {what}", if *ok { "x" } else { " " });
        }
        let _ = writeln!(out, "\n## What happened\n\n| what | count |\n| --- | --- |");
        for (what, n) in &counts {
            let _ = writeln!(out, "| {what} | {n} |");
        }
        for (kind, n) in &turns_ok {
            let _ = writeln!(out, "| {} turns passed | {n} |", kind.name());
        }
        let _ = writeln!(out, "| model requests that were no soak turn | {} |", self.model.unexpected.len());
        if !connect_failures.is_empty() {
            let _ = writeln!(out, "\n## Connects that failed\n\n| what was said | count |\n| --- | --- |");
            for (what, n) in &connect_failures {
                let _ = writeln!(out, "| {what} | {n} |");
            }
        }
        let _ = writeln!(
            out,
            "\n## Memory and descriptors of `lanyard up`\n\n{} samples every 5 s; the trend leaves out the first {:.0} s.\n",
            self.samples.len(),
            self.warm_up
        );
        let _ = writeln!(out, "| | first | last | min | median | max | slope per hour | growth over window | bound |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for t in [&rss, &fds] {
            let _ = writeln!(out, "{}", row(t));
        }
        if let Some(peak) = self.samples.iter().map(|s| s.connected).max() {
            let _ = writeln!(out, "\nDevices connected at once: at most {peak}.");
        }
        for (what, findings) in [("lanyard", &self.lanyard_log), ("wrangler", &self.wrangler_log)] {
            if !findings.first.is_empty() {
                let _ = writeln!(out, "\n## Error lines in {what}'s log (first {})\n\n```", findings.first.len());
                for line in &findings.first {
                    let _ = writeln!(out, "{line}");
                }
                let _ = writeln!(out, "```");
            }
        }
        if !failures.is_empty() {
            let _ = writeln!(out, "\n## Failures ({failure_count}; the first {} here)\n", failures.len());
            for failure in &failures {
                let _ = writeln!(out, "- {failure}");
            }
        }
        if !not_once.is_empty() {
            let _ = writeln!(out, "\n## Prompts not answered exactly once (first 10)\n");
            for prompt in not_once.iter().take(10) {
                let _ = writeln!(out, "- {prompt}");
            }
        }
        if !self.model.unexpected.is_empty() {
            let _ = writeln!(
                out,
                "\nModel requests that were no soak turn (first 5): {:?}",
                &self.model.unexpected[..self.model.unexpected.len().min(5)]
            );
        }
        (out, passed)
    }
}

fn row(t: &Trend) -> String {
    format!(
        "| {} ({}) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.2} | {:+.2} | {:.2} |",
        t.what,
        if t.unit.is_empty() { "count" } else { t.unit },
        t.first,
        t.last,
        t.min,
        t.median,
        t.max,
        t.slope_per_hour,
        t.growth,
        t.bound
    )
}
