//! Logging of the frames an authenticated environment drops: each one at `debug` level
//! (with its sender), and a `warn` summary at most every [`REPORT_INTERVAL`], so that a
//! flood of forged frames cannot flood the log too.

use herald_core::{ClientStats, DirectoryStats};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Shortest time between two warnings about dropped frames.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The core's counts of frames dropped by authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// No valid tag: forged, altered, unsigned, or signed with a key not held here.
    pub unauthenticated: u64,
    /// Seen before: a replay.
    pub replayed: u64,
    /// Outside the time window (a directory's `stale` refusals).
    pub stale: u64,
}

impl From<&DirectoryStats> for Dropped {
    fn from(s: &DirectoryStats) -> Self {
        Dropped {
            unauthenticated: s.unauthenticated,
            replayed: s.replayed,
            stale: s.stale,
        }
    }
}

impl From<&ClientStats> for Dropped {
    /// A client has no time window (its `stale` counts old announcements, which is
    /// not an authentication matter).
    fn from(s: &ClientStats) -> Self {
        Dropped {
            unauthenticated: s.unauthenticated,
            replayed: s.replayed,
            stale: 0,
        }
    }
}

impl Dropped {
    fn since(self, earlier: Dropped) -> Dropped {
        Dropped {
            unauthenticated: self.unauthenticated.saturating_sub(earlier.unauthenticated),
            replayed: self.replayed.saturating_sub(earlier.replayed),
            stale: self.stale.saturating_sub(earlier.stale),
        }
    }

    fn any(self) -> bool {
        self != Dropped::default()
    }
}

/// Follows the counts after every datagram and logs what changed.
#[derive(Debug, Default)]
pub struct DropLog {
    seen: Dropped,
    reported: Dropped,
    last_report: Option<Instant>,
    last_sender: Option<SocketAddr>,
}

impl DropLog {
    /// After a datagram from `from` was handled: logs it at `debug` if it was dropped.
    pub fn observe(&mut self, counts: Dropped, from: SocketAddr) {
        let new = counts.since(self.seen);
        if !new.any() {
            return;
        }
        self.seen = counts;
        self.last_sender = Some(from);
        let why = if new.unauthenticated > 0 {
            "no valid authentication tag"
        } else if new.replayed > 0 {
            "replayed"
        } else {
            "stale counter"
        };
        tracing::debug!(%from, why, "dropped a frame");
    }

    /// Once per wake-up: a warning with what was dropped since the last one, unless one
    /// was logged less than [`REPORT_INTERVAL`] ago. Returns whether it logged.
    pub fn report(&mut self, now: Instant) -> bool {
        let new = self.seen.since(self.reported);
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= REPORT_INTERVAL);
        if !new.any() || !due {
            return false;
        }
        self.reported = self.seen;
        self.last_report = Some(now);
        tracing::warn!(
            unauthenticated = new.unauthenticated,
            replayed = new.replayed,
            stale = new.stale,
            last_from = ?self.last_sender,
            "dropped frames that failed authentication (forged, altered, replayed, or \
             signed with another key: check that every member has the environment's key)"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_rate_limited_and_cover_everything() {
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut log = DropLog::default();
        let start = Instant::now();
        assert!(!log.report(start), "nothing dropped yet");
        let mut counts = Dropped {
            unauthenticated: 1,
            ..Dropped::default()
        };
        log.observe(counts, from);
        assert!(log.report(start));
        counts.replayed = 5;
        log.observe(counts, from);
        assert!(!log.report(start + Duration::from_secs(1)), "too soon");
        assert!(log.report(start + REPORT_INTERVAL));
        assert_eq!(log.reported, counts);
        assert!(!log.report(start + 3 * REPORT_INTERVAL), "nothing new");
    }
}
