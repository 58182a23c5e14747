//! With keys: the client's counter clock and the directories' replay windows.

use super::*;

impl<const R: usize> Client<'_, R> {
    /// Checks an authenticated directory frame's counter against that directory's replay
    /// window, and lets the client's own counter follow the directory's clock.
    pub(super) fn accept_counter(
        &mut self,
        from: SocketAddr,
        counter: u64,
        message: &Message<'_>,
    ) -> bool {
        let known = self
            .directories
            .iter_mut()
            .find(|d| d.location.socket_addr() == from);
        match known {
            Some(d) => {
                if !d.window.accept(counter) {
                    return false;
                }
            }
            None => {
                // A beacon from a directory not known yet: it is added with this counter.
                if let Message::Beacon(b) = message {
                    let learned = KnownDirectory::new(b.directory);
                    if b.directory.socket_addr() == from && self.directories.push(learned).is_ok() {
                        if let Some(d) = self.directories.last_mut() {
                            d.window.accept(counter);
                        }
                    }
                }
            }
        }
        let stale = matches!(message, Message::Reject(r) if r.reason == RejectReason::Stale);
        if stale || counter > self.clock() {
            // The directory's clock is ahead of ours (or it refused ours): follow it, but
            // never back below a counter already used unless it refused ours.
            self.counter_base = counter;
            self.counter_epoch = Some(self.now);
            self.counter = if stale {
                counter
            } else {
                self.counter.max(counter)
            };
        }
        true
    }

    /// The counter clock: the base, advanced by time since it was set.
    pub(super) fn clock(&self) -> u64 {
        let elapsed = self
            .counter_epoch
            .map_or(0, |e| self.now.saturating_since(e).as_micros());
        self.counter_base.saturating_add(elapsed)
    }

    pub(super) fn next_counter(&mut self) -> u64 {
        self.counter = self.counter.saturating_add(1).max(self.clock());
        self.counter
    }
}
