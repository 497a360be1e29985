//! Latency histograms, progress bars and printing results.

use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

/// A latency histogram in microseconds (1 µs to 1 h, 3 significant digits).
#[derive(Debug, Clone)]
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    /// An empty histogram from 1 µs to 1 h (longer latencies are recorded as 1 h).
    ///
    /// # Errors
    /// Never in practice (the bounds and 3 significant figures are within the library's range).
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self(Histogram::new_with_bounds(1, 3_600_000_000, 3)?))
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let h = &self.0;
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: round2(h.mean()),
        }
    }
}

/// Percentiles of a latency histogram.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) min_us: u64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    pub(crate) mean_us: f64,
}

/// `x` rounded to two decimals, for readable reports.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Events per second.
pub(crate) fn per_second(events: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 {
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let events = events as f64;
        round2(events / secs)
    } else {
        0.0
    }
}

/// `part` as a percentage of `whole`.
pub(crate) fn percent(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| round2(100.0 * part / whole))
}

/// A progress bar on standard error (drawn only on a terminal), or a hidden one.
pub(crate) fn progress(visible: bool, total: u64, what: &str) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Prints a report as `key: value` lines, nested keys joined with dots.
pub(crate) fn print_human(report: &Value) {
    let mut lines = Vec::new();
    flatten("", report, &mut lines);
    for line in lines {
        println!("{line}");
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        Value::Null => {}
        other => out.push(format!("{prefix}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_flattening() {
        let mut l = Latencies::new().unwrap();
        for us in 1..=1000 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!(s.p999_us >= 998);
        let mut lines = Vec::new();
        flatten(
            "",
            &serde_json::json!({"a": {"b": 1}, "c": "x", "d": null}),
            &mut lines,
        );
        assert_eq!(lines, ["a.b: 1", "c: \"x\""]);
        assert_eq!(percent(1.0, 4.0), Some(25.0));
        assert_eq!(percent(1.0, 0.0), None);
    }
}
