//! Summaries the benchmarks print: median, p90, mean of a set of timings. Shared by `#[path]` between the
//! gateway's and the bridge's benchmarks.
#![allow(dead_code)] // each benchmark uses a different part

use std::time::Duration;

pub struct Stats {
    pub median: Duration,
    pub p90: Duration,
    pub mean: Duration,
}

impl Stats {
    pub fn of(samples: &mut [Duration]) -> Stats {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        Stats { median: at(0.5), p90: at(0.9), mean }
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Median of per-pair differences `b - a`, in milliseconds: each pair ran back to back, so slow drift of
/// the machine cancels out.
pub fn paired_median_ms(a: &[Duration], b: &[Duration]) -> f64 {
    let mut diffs: Vec<f64> = a.iter().zip(b).map(|(a, b)| b.as_secs_f64() - a.as_secs_f64()).collect();
    diffs.sort_by(f64::total_cmp);
    diffs[diffs.len() / 2] * 1000.0
}

/// Prints a Markdown table of timings, one row per `(what, samples)`, as docs/benchmarks.md quotes them.
pub fn print_table(count: &str, rows: &mut [(&str, &mut Vec<Duration>)]) {
    println!("| what | {count} | median | p90 | mean |");
    println!("| --- | --- | --- | --- | --- |");
    for (what, samples) in rows.iter_mut() {
        let s = Stats::of(samples);
        println!("| {what} | {} | {} | {} | {} |", samples.len(), ms(s.median), ms(s.p90), ms(s.mean));
    }
}
