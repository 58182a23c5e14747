//! Time conversion between the process clocks and the core's [`Instant`].
//!
//! The core counts microseconds from an arbitrary origin; here that origin is the moment
//! the [`Clock`] was made. The wall clock is only read to persist leases
//! ([`WallClock`]) and to seed versions.

use herald_core::registry::WallClock;
use herald_core::Instant;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The process's monotonic clock, as the core sees it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The core's `now`.
    pub fn now(&self) -> Instant {
        self.core(std::time::Instant::now())
    }

    /// A std instant as a core instant (instants before the origin become the origin).
    pub fn core(&self, at: std::time::Instant) -> Instant {
        let micros = at.saturating_duration_since(self.origin).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// A core instant as a std instant (far-future instants are capped at one day ahead).
    pub fn std(&self, at: Instant) -> std::time::Instant {
        let cap = std::time::Instant::now() + Duration::from_secs(86_400);
        self.origin
            .checked_add(Duration::from_micros(at.as_micros()))
            .map_or(cap, |t| t.min(cap))
    }

    /// The core's `now` paired with the wall clock, for persisted records.
    pub fn wall(&self) -> WallClock {
        WallClock {
            now: self.now(),
            unix_ms: unix_micros() / 1_000,
        }
    }
}

/// Microseconds since the Unix epoch by the wall clock (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_between_clocks() {
        let clock = Clock::new();
        let later = std::time::Instant::now() + Duration::from_millis(1500);
        let core = clock.core(later);
        let back = clock.std(core);
        let diff = if back > later {
            back - later
        } else {
            later - back
        };
        assert!(diff < Duration::from_micros(2), "{diff:?}");
        assert!(clock.std(Instant::from_micros(u64::MAX)) > later);
        assert!(unix_micros() > 1_600_000_000_000_000);
    }
}
