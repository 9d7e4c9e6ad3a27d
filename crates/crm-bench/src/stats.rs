//! Latency samples and their summaries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A summary of latency samples, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub(crate) n: usize,
    pub(crate) mean_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) total_s: f64,
}

impl Latency {
    pub(crate) fn of(samples: &[Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let total: f64 = ms.iter().sum();
        Self {
            n: ms.len(),
            mean_ms: total / ms.len() as f64,
            p50_ms: percentile(&ms, 0.50),
            p99_ms: percentile(&ms, 0.99),
            max_ms: ms[ms.len() - 1],
            total_s: total / 1e3,
        }
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `f` `runs` times and returns each run's duration.
pub(crate) fn time_runs<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<Duration>, T)> {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = std::time::Instant::now();
        let out = f()?;
        samples.push(start.elapsed());
        last = Some(out);
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
    Ok((samples, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(&samples);
        assert_eq!(l.n, 100);
        assert!((l.p50_ms - 50.0).abs() < 1e-9);
        assert!((l.p99_ms - 99.0).abs() < 1e-9);
        assert!((l.max_ms - 100.0).abs() < 1e-9);
        let one = Latency::of(&[Duration::from_millis(3)]);
        assert!((one.p99_ms - 3.0).abs() < 1e-9);
        assert_eq!(Latency::of(&[]).n, 0);
    }
}
