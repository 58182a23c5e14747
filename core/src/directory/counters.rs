//! The version clock, and with keys the counters of frames sent and the replay
//! windows of senders.

use super::*;

/// With keys: how many senders' replay windows are kept (registrants, and addresses that
/// ask for snapshots). When a sender is forgotten,
/// counters up to its highest are refused from every sender not in the table, so a
/// forgotten sender's frames cannot be replayed; a sender refused that way resynchronises
/// from the `stale` answer.
pub(super) const SENDERS: usize = 128;

/// Whose counters a replay window holds: a registrant's (its requests about its
/// registrations, whatever address and port they come from), or an address's
/// (snapshot requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SenderId {
    Registrant(u64),
    Address(SocketAddr),
}

/// Why an authenticated request's counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CounterRefusal {
    /// Seen before from this sender: a copy, dropped without an answer.
    Replayed,
    /// A snapshot request too old for its address's replay window: a replay, or a
    /// sender whose clock was ahead before. Counted as a replay, and answered `stale`
    /// with the highest counter as the floor to resume above.
    Behind { floor: u64 },
    /// Outside the time window, or below what the sender already used: answered
    /// `stale` with the floor its next counter must exceed (0: follow the answer's
    /// own counter).
    Stale { floor: u64 },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Sender {
    id: SenderId,
    window: ReplayWindow,
    last_used: Instant,
}

impl Directory<'_> {
    pub(super) fn observe(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
    }

    /// The version clock: `version_floor` at the first `now`, advanced by time since.
    pub(super) fn clock(&self) -> u64 {
        let elapsed = self
            .epoch
            .map_or(0, |e| self.now.saturating_since(e).as_micros());
        self.config.version_floor.0.saturating_add(elapsed)
    }

    /// A version larger than any before, following the version clock.
    pub(super) fn next_version(&mut self) -> Version {
        let clock = self.clock();
        self.last_version = Version(self.last_version.0.saturating_add(1).max(clock));
        self.last_version
    }

    /// The counter for the next authenticated frame sent: follows the clock, always
    /// grows, and stays above every forgotten sender's counter so that a client that
    /// resynchronises from it is accepted.
    pub(super) fn next_counter(&mut self) -> u64 {
        self.counter = self
            .counter
            .saturating_add(1)
            .max(self.clock())
            .max(self.forgotten_floor.saturating_add(1));
        self.counter
    }

    /// Checks an authenticated request's counter: within the time window, after the
    /// directory started, and not seen before from this sender. A counter below what
    /// the sender already used (a registrant id used before from a clock that was
    /// ahead, say) is answered `stale` with that floor, so the sender resumes above it.
    pub(super) fn check_counter(
        &mut self,
        id: SenderId,
        counter: u64,
    ) -> Result<(), CounterRefusal> {
        let clock = self.clock();
        let skew = self.config.max_clock_skew.as_micros();
        let low = clock.saturating_sub(skew).max(self.config.version_floor.0);
        if counter <= low || counter > clock.saturating_add(skew) {
            return Err(CounterRefusal::Stale { floor: 0 });
        }
        // A registrant's Register and Unregister carry their counter as the sequence,
        // which the record of the name refuses when late or replayed (see
        // `handle_register`, `handle_unregister`, the dropped-sequence floor): its
        // window only drops exact copies cheaply. A counter too old for the window is a
        // request overtaken on the way by newer ones of the same registrant (for other
        // names, say), and goes on to meet the record's sequence; refusing it here would
        // refuse every attempt of a registrant whose requests are reordered.
        let registrant = matches!(id, SenderId::Registrant(_));
        let index = match self.senders.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                if counter <= self.forgotten_floor && !registrant {
                    return Err(CounterRefusal::Stale {
                        floor: self.forgotten_floor,
                    });
                }
                if self.senders.is_full() {
                    let oldest = (0..self.senders.len())
                        .min_by_key(|&i| self.senders[i].last_used)
                        .unwrap_or(0);
                    let gone = self.senders.swap_remove(oldest);
                    self.forgotten_floor = self.forgotten_floor.max(gone.window.top());
                }
                let sender = Sender {
                    id,
                    window: ReplayWindow::default(),
                    last_used: self.now,
                };
                // Cannot fail: room was made above.
                let _ = self.senders.push(sender);
                self.senders.len() - 1
            }
        };
        let sender = &mut self.senders[index];
        sender.last_used = self.now;
        let top = sender.window.top();
        if sender.window.accept(counter) {
            Ok(())
        } else if sender.window.too_old(counter) {
            if registrant {
                return Ok(());
            }
            // Older than anything the window still tells apart: a client whose clock
            // was behind resumes above the highest counter from the answer.
            Err(CounterRefusal::Behind { floor: top })
        } else {
            Err(CounterRefusal::Replayed)
        }
    }
}
