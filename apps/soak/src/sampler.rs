//! Memory and descriptors of the process under soak, sampled over time, and whether they stay flat.
//!
//! Flat means: the least-squares line through the samples taken after the warm-up predicts less growth
//! over that window than the bound, which is the larger of an absolute floor and a share of the median (the
//! allocator and the connection table breathe with the load; a leak grows without end). The slope per hour
//! is reported either way.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the load started.
    pub at: f64,
    pub rss_bytes: u64,
    pub descriptors: u64,
    /// Devices connected when the sample was taken.
    pub connected: u64,
}

/// The RSS (bytes) and open descriptors of process `pid`, from /proc.
pub fn measure(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    let rss = kb.parse::<u64>().ok()? * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

/// Samples `pid` every `every` until `until` (the end of the load: the devices leave after it).
pub async fn sample(
    pid: u32,
    started: tokio::time::Instant,
    every: Duration,
    until: tokio::time::Instant,
    connected: impl Fn() -> u64,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if tokio::time::Instant::now() >= until {
            return samples;
        }
        if let Some((rss_bytes, descriptors)) = measure(pid) {
            let at = started.elapsed().as_secs_f64();
            samples.push(Sample { at, rss_bytes, descriptors, connected: connected() });
        }
    }
}

/// Least-squares slope of `ys` over `xs` (per unit of x), or `None` with fewer than two distinct xs.
pub fn slope(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return None;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One quantity's trend after the warm-up.
#[derive(Debug, Clone)]
pub struct Trend {
    pub what: &'static str,
    pub unit: &'static str,
    pub samples: usize,
    pub window_secs: f64,
    pub first: f64,
    pub last: f64,
    pub min: f64,
    pub max: f64,
    pub median: f64,
    pub slope_per_hour: f64,
    /// Growth the line predicts over the window.
    pub growth: f64,
    pub bound: f64,
}

impl Trend {
    pub fn flat(&self) -> bool {
        self.samples >= 3 && self.growth <= self.bound
    }
}

/// The absolute floor and the share of the median that a quantity may grow by over the window and still
/// be flat.
pub struct Bound {
    pub floor: f64,
    pub share: f64,
}

/// RSS (in MiB) may drift 8 MiB or 10 % (the allocator keeps freed pages for a while); descriptors 8 or 10 %
/// (each connected device holds some, and how many are connected moves with the random drops, as do the
/// pipes of the claude processes at work).
pub const RSS_BOUND: Bound = Bound { floor: 8.0, share: 0.10 };
pub const FD_BOUND: Bound = Bound { floor: 8.0, share: 0.10 };

pub fn trend(
    what: &'static str,
    unit: &'static str,
    samples: &[Sample],
    warm_up: f64,
    value: impl Fn(&Sample) -> f64,
    bound: &Bound,
) -> Trend {
    let kept: Vec<&Sample> = samples.iter().filter(|s| s.at >= warm_up).collect();
    let xs: Vec<f64> = kept.iter().map(|s| s.at).collect();
    let ys: Vec<f64> = kept.iter().map(|s| value(s)).collect();
    let per_second = slope(&xs, &ys).unwrap_or(0.0);
    let window_secs = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let median = median(&mut ys.clone());
    Trend {
        what,
        unit,
        samples: ys.len(),
        window_secs,
        first: ys.first().copied().unwrap_or(0.0),
        last: ys.last().copied().unwrap_or(0.0),
        min: ys.iter().copied().fold(f64::INFINITY, f64::min),
        max: ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        median,
        slope_per_hour: per_second * 3600.0,
        growth: per_second * window_secs,
        bound: bound.floor.max(bound.share * median),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_is_its_gradient() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys = [1.0, 3.0, 5.0, 7.0];
        assert!((slope(&xs, &ys).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(slope(&[1.0], &[1.0]), None);
    }

    #[test]
    fn a_steady_climb_is_not_flat_and_noise_is() {
        let climb: Vec<Sample> = (0..100)
            .map(|i| Sample {
                at: i as f64 * 10.0,
                rss_bytes: 50_000_000 + i * 400_000,
                descriptors: 400,
                connected: 0,
            })
            .collect();
        let mib = |s: &Sample| s.rss_bytes as f64 / 1048576.0;
        let rss = trend("RSS", "MiB", &climb, 100.0, mib, &RSS_BOUND);
        assert!(!rss.flat(), "{rss:?}");
        let fds = trend("descriptors", "", &climb, 100.0, |s| s.descriptors as f64, &FD_BOUND);
        assert!(fds.flat(), "{fds:?}");
        let noisy: Vec<Sample> = (0..100)
            .map(|i| Sample {
                at: i as f64 * 10.0,
                rss_bytes: 50_000_000 + (i % 7) * 300_000,
                descriptors: 400 + i % 5,
                connected: 0,
            })
            .collect();
        assert!(trend("RSS", "MiB", &noisy, 100.0, mib, &RSS_BOUND).flat());
    }
}
