//! Leases: how long one is granted, and their expiry.

use super::*;

impl Directory<'_> {
    /// True when this directory expires leases: it publishes, has caught up with the
    /// replicated store, and expiry is not held.
    pub(super) fn expires(&self) -> bool {
        self.announces() && self.expiring && self.storage.allows_expiry(self.now)
    }

    pub(super) fn schedule_expiry(&mut self, at: Instant) {
        self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
    }

    pub(super) fn lease_for(&self, asked: Duration) -> Duration {
        if asked == Duration::ZERO {
            self.config.default_lease
        } else {
            asked.max(self.config.min_lease).min(self.config.max_lease)
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut slot = 0;
        while slot < self.registry.len() {
            if let Some(RecordState::Live { expires }) =
                self.registry.get(slot).map(|e| e.record.state)
            {
                if expires <= now {
                    self.stats.expiries += 1;
                    self.depart(slot);
                } else {
                    next = Some(next.map_or(expires, |t: Instant| t.min(expires)));
                }
            }
            slot += 1;
        }
        self.next_expiry = next;
    }
}
