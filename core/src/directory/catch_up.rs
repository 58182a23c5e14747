//! A new publisher catching up with the replicated store. Changes reach each directory
//! some time after they are written: a directory that becomes the publisher may hold
//! states older than those its predecessor announced (a registration whose removal has
//! not reached it yet, say). Until its shell says it holds everything written before
//! the takeover ([`Directory::caught_up`]), or the replication bound has passed, it
//! announces nothing, sweeps nothing, answers no snapshot with pages and expires no
//! lease; it beacons (as publishing) and answers requests meanwhile.

use super::*;

impl Directory<'_> {
    /// True while this directory publishes but may still be behind the replicated
    /// store (see [`caught_up`](Self::caught_up)).
    pub fn is_catching_up(&self) -> bool {
        self.catch_up_until.is_some()
    }

    /// The shell knows that this directory holds every change written to the
    /// replicated store before it became the publisher (with etcd: it read the store,
    /// or its watch passed the revision current when it was elected). A new publisher
    /// holds its announcements, sweeps, snapshot pages and expiries until then, or
    /// until the replication bound has passed since it took over (see
    /// [`set_publishing`](Self::set_publishing)); then it sends what is owed, starts
    /// a sweep and expires what ran out. Does nothing otherwise.
    pub fn caught_up(&mut self, now: Instant) {
        self.observe(now);
        self.end_catch_up();
    }

    /// True when this directory announces, sweeps, answers snapshots with pages and
    /// may expire: it publishes and is not catching up.
    pub(super) fn announces(&self) -> bool {
        self.publishing && self.catch_up_until.is_none()
    }

    /// Starts the catch-up of a directory that has just become the publisher.
    pub(super) fn start_catch_up(&mut self) {
        self.catch_up_until = Some(self.now + self.config.replication_bound);
    }

    /// Ends the catch-up (if one is under way): publishing starts from what is held.
    pub(super) fn end_catch_up(&mut self) {
        if self.catch_up_until.take().is_none() {
            return;
        }
        self.sweep_due = false;
        self.sweep_cursor = None;
        self.next_sweep = self.now;
        self.next_expiry = Some(self.now);
        self.schedule_tick();
        self.continue_cursors();
    }
}
