//! Requests received since start, by method: one counter per known name and one for unknown names, so the
//! table stays bounded and counting takes no lock on the request path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct RequestCounts {
    names: &'static [&'static str],
    /// `names.len()` counters, then the one for unknown names.
    counts: Vec<AtomicU64>,
}

impl RequestCounts {
    pub(crate) fn new(names: &'static [&'static str]) -> RequestCounts {
        RequestCounts { names, counts: (0..=names.len()).map(|_| AtomicU64::new(0)).collect() }
    }

    pub(crate) fn count(&self, method: &str) {
        let slot = self.names.iter().position(|m| *m == method).unwrap_or(self.names.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// The methods called at least once, with their counts; unknown names as `(unknown)`.
    pub(crate) fn by_method(&self) -> BTreeMap<String, u64> {
        let names = self.names.iter().copied().chain(["(unknown)"]);
        names
            .zip(&self.counts)
            .map(|(name, count)| (name, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| (name.to_string(), count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_counted_apart_and_the_rest_together() {
        let counts = RequestCounts::new(&["health", "agent"]);
        counts.count("health");
        counts.count("health");
        counts.count("nope");
        counts.count("also-nope");
        let seen = counts.by_method();
        assert_eq!(seen.get("health"), Some(&2));
        assert_eq!(seen.get("(unknown)"), Some(&2));
        assert_eq!(seen.get("agent"), None, "never called, left out");
    }
}
