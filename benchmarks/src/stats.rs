//! Summaries of repeated measurements: percentiles and rates.

use std::time::Duration;

/// p50, p90, p99 and max of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// Median, ms.
    pub p50: f64,
    /// 90th percentile (nearest rank), ms.
    pub p90: f64,
    /// 99th percentile (nearest rank), ms.
    pub p99: f64,
    /// Largest, ms.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples` (an empty set gives zeros).
    pub fn of(samples: &[Duration]) -> Summary {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            if ms.is_empty() {
                0.0
            } else {
                let i = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
                ms[i]
            }
        };
        Summary {
            count: ms.len(),
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }

    /// As JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"count": self.count, "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99, "max_ms": self.max})
    }
}

/// `count` events over `elapsed`, per second.
pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Milliseconds of a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples);
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        assert_eq!(s.p90, 90.0);
        assert_eq!(Summary::of(&[]).count, 0);
    }
}
