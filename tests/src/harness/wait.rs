//! Bounded waiting: every wait in the suites has a deadline and a step count.

use std::time::{Duration, Instant};

/// How often [`poll_until`] looks again.
pub const POLL_STEP: Duration = Duration::from_millis(20);

/// Calls `check` every [`POLL_STEP`] until it returns `Some` or `timeout` passes;
/// returns `None` on timeout. The loop is bounded in time and in iterations.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let max_steps = timeout.as_millis() / POLL_STEP.as_millis() + 2;
    for _ in 0..max_steps {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_STEP);
    }
    check()
}

/// Seconds with millisecond precision, for printed measurements.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_the_timeout() {
        let start = Instant::now();
        let r: Option<()> = poll_until(Duration::from_millis(100), || None);
        assert!(r.is_none());
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn returns_the_first_value() {
        let mut n = 0;
        let r = poll_until(Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(r, Some(3));
    }
}
