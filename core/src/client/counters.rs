//! With keys: the client's counter clock and the directories' replay windows.

use super::*;

/// A beacon whose counter is this much older than the client's counter clock is refused
/// (directories' clocks agree within their 30 s skew; a recording is older).
pub(super) const BEACON_MAX_AGE: Duration = Duration::from_secs(60);

impl<const R: usize> Client<'_, R> {
    /// Checks an authenticated directory frame's counter against the replay window of
    /// the directory that sent it, and lets the client's own counter follow the
    /// directory's clock.
    ///
    /// The sender is the directory a beacon or announcement names inside the
    /// authenticated frame, which must also be its source address; a reply or a page
    /// must come from a known directory. Anything else is refused: a frame replayed
    /// from another address meets the window of the directory that first sent it. A
    /// beacon more than [`BEACON_MAX_AGE`] older than the counter clock is a recording,
    /// not a live directory.
    pub(super) fn accept_counter(
        &mut self,
        from: SocketAddr,
        counter: u64,
        message: &Message<'_>,
    ) -> bool {
        let claimed = match message {
            Message::Beacon(b) => Some(b.directory),
            Message::Announce(h, _) => Some(h.directory),
            _ => None,
        };
        if claimed.is_some_and(|d| !d.is(from)) {
            return false;
        }
        let beacon = matches!(message, Message::Beacon(_));
        if beacon && counter.saturating_add(BEACON_MAX_AGE.as_micros()) < self.clock() {
            return false;
        }
        let known = self.directories.iter().position(|d| d.location.is(from));
        let index = match (known, claimed) {
            (Some(i), _) => i,
            (None, Some(location)) if beacon => {
                // A beacon from a directory not known yet: it is added with this counter.
                if self
                    .directories
                    .push(KnownDirectory::new(location))
                    .is_err()
                {
                    return false;
                }
                self.directories.len() - 1
            }
            _ => return false,
        };
        if !self.directories[index].window.accept(counter) {
            return false;
        }
        // Refused as ahead of the directory's clock (outside its time window: floor 0)
        // for a request sent above this answer's own counter: our clock runs ahead, so
        // follow the directory's back. Any other answer, late ones included, never takes
        // the counter below one already used: a request sent after it would be older
        // than those before it.
        let ahead = matches!(message, Message::Reject(r) if r.reason == RejectReason::Stale
            && r.floor == 0
            && self.sent_counter(r.request).is_some_and(|sent| sent > counter));
        if ahead || counter > self.clock() {
            // The directory's clock is ahead of ours (or behind ours, past its window).
            self.counter_base = counter;
            self.counter_epoch = Some(self.now);
            self.counter = if ahead {
                counter
            } else {
                self.counter.max(counter)
            };
        }
        true
    }

    /// The counter a recent frame of request `request` was sent with (the newest).
    fn sent_counter(&self, request: u32) -> Option<u64> {
        self.sent_counters
            .iter()
            .rev()
            .find(|(r, _)| *r == request)
            .map(|(_, c)| *c)
    }

    /// Frame `request` goes out with `counter`.
    pub(super) fn note_sent(&mut self, request: u32, counter: u64) {
        push_newest(&mut self.sent_counters, (request, counter));
    }

    /// The counter clock: the base, advanced by time since it was set.
    pub(super) fn clock(&self) -> u64 {
        let elapsed = self
            .counter_epoch
            .map_or(0, |e| self.now.saturating_since(e).as_micros());
        self.counter_base.saturating_add(elapsed)
    }

    /// The counter (and request sequence) of the next frame sent: above every one used,
    /// and following the clock.
    pub(super) fn upcoming_counter(&self) -> u64 {
        self.counter.saturating_add(1).max(self.clock())
    }
}
