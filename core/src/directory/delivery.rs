//! Unicast delivery to subscribers: reliable, not repeated.
//!
//! Per subscriber the directory keeps a cursor (the version up to which the subscriber
//! acknowledged every matching change) and one delivery in flight, never a queue of
//! copies: what to send is computed from the registry when it is sent, as a repair is
//! (see the `changes` module). A delivery is the changes stamped after the cursor that
//! match the subscriber's interest, in [`ChangesPage`]s with the subscription's
//! delivery id as their `request`, written as of the newest version; when the
//! directory no longer holds every removal after the cursor (or the subscriber holds
//! nothing yet), it is a snapshot of the matching services in [`SnapshotPage`]s
//! instead. Once its last page is sent the delivery waits for a [`DeliveryAck`] at or
//! above its `as_of`; unacknowledged, it is sent again in full, from the cursor and as
//! of the newest version then, after a timeout that doubles with each attempt
//! ([`DirectoryConfig::delivery_timeout`], up to 8 times), until the subscription's
//! lease runs out. Changes made while a delivery is in flight go in the next one. A
//! removal is thus delivered until acknowledged (or, once its tombstone is reaped, the
//! snapshot that replaces it shows it), and a silent subscriber costs a few re-sends
//! per lease.
//!
//! Work is bounded: each `poll_transmit` writes at most one page, and the subscribers
//! take turns. A delivery that would be empty (nothing matching changed) is not sent:
//! the cursor moves on by itself.
//!
//! [`ChangesPage`]: crate::wire::Message::ChangesPage
//! [`SnapshotPage`]: crate::wire::Message::SnapshotPage
//! [`DeliveryAck`]: crate::wire::DeliveryAck

use super::subscribers::Window;
use super::*;
use crate::wire::DeliveryAck;

/// The back-off of an unacknowledged delivery doubles at most this many times (to 2 s
/// with the default timeout): a subscriber that comes back after a loss burst hears
/// within that, and a silent one costs one re-send per 2 s of its lease at most.
const MAX_BACKOFF_DOUBLINGS: u8 = 3;

impl Directory<'_> {
    /// The next delivery datagram (body only: `buf` leaves room for the trailer).
    pub(super) fn transmit_delivery(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.announces() {
            return None;
        }
        let n = self.subscribers.len();
        for _ in 0..n {
            if self.subscribers.cursor >= n {
                self.subscribers.cursor = 0;
            }
            let i = self.subscribers.cursor;
            // Next time, the next subscriber goes first.
            self.subscribers.cursor += 1;
            if let Some(t) = self.deliver_to(i, buf) {
                return Some(t);
            }
        }
        None
    }

    /// Writes the next page for subscriber `i`, if it has one due.
    fn deliver_to(&mut self, i: usize, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        let as_of = self.last_version;
        let floor = self.repair_floor;
        let s = self.subscribers.get_mut(i)?;
        if s.gone {
            return None;
        }
        if !s.window.writing {
            match s.window.as_of {
                Some(_) if now < s.window.deadline => return None,
                Some(_) => {
                    s.window.attempts = s.window.attempts.saturating_add(1);
                    self.stats.delivery_resends += 1;
                }
                None if s.acked.is_some_and(|a| a >= as_of) => return None,
                None => {}
            }
            let w = &mut s.window;
            w.as_of = Some(as_of);
            w.snapshot = s.acked.is_none_or(|a| a < floor);
            w.after = None;
            w.writing = true;
        }
        let s = self.subscribers.get(i)?;
        let header = PageHeader {
            request: s.delivery,
            as_of,
            after: s.window.after.clone(),
            complete: false,
        };
        let snapshot = s.window.snapshot;
        let written = if snapshot {
            self.write_page(&header, &s.interest, false, buf)
        } else {
            let since = s.acked.unwrap_or_default();
            self.write_changes(&header, &s.interest, since, buf)
        };
        let to = s.address;
        let timeout = self.config.delivery_timeout;
        let s = self.subscribers.get_mut(i)?;
        let Some((len, last, complete)) = written else {
            // Cannot happen with a valid maximum size: give the delivery up.
            s.window = Window::default();
            return None;
        };
        let w = &mut s.window;
        if !snapshot && complete && header.after.is_none() && last.is_none() {
            // Nothing matching changed after the cursor: nothing to send, and the
            // subscriber holds everything up to the delivery's `as_of`.
            s.acked = w.as_of;
            s.window = Window::default();
            return None;
        }
        if complete {
            w.writing = false;
            w.after = None;
            let doublings = w.attempts.min(MAX_BACKOFF_DOUBLINGS);
            w.deadline = now + timeout.mul(1 << doublings);
        } else {
            w.after = last;
        }
        self.stats.deliveries += 1;
        if snapshot {
            self.stats.delivery_snapshots += 1;
        }
        Some(Transmit {
            destination: to,
            len,
        })
    }

    /// A subscriber acknowledged every matching change up to `ack.as_of`: its cursor
    /// moves there, and a delivery in flight that it covers is done. Taken only from
    /// the subscriber's address and for its current delivery id; never answered.
    pub(super) fn handle_delivery_ack(&mut self, from: SocketAddr, ack: DeliveryAck) {
        let bound = if self.publishing {
            self.last_version
        } else {
            let skew = self.config.max_clock_skew.as_micros();
            self.last_version
                .max(Version(self.clock().saturating_add(skew)))
        };
        let table = &mut self.subscribers;
        let Some((i, s)) = table
            .find(ack.subscriber)
            .and_then(|i| Some((i, table.get_mut(i)?)))
        else {
            self.stats.ignored += 1;
            return;
        };
        if s.gone || s.address != from || s.delivery != ack.delivery {
            self.stats.ignored += 1;
            return;
        }
        // Nothing beyond what this directory has handed out can be held; at a replica,
        // what the publisher handed out, which may be above the replica's newest
        // version (the links of its chain) but not beyond the clocks' agreement.
        s.take_ack(ack.as_of.min(bound));
        if !self.publishing {
            // The publisher delivered it: the cursor reaches it through the store.
            table.touch(i);
        }
    }

    /// The earliest re-send or subscription expiry due.
    pub(super) fn delivery_timeout(&self) -> Option<Instant> {
        let table = &self.subscribers;
        let resend = (0..table.len())
            .filter_map(|i| table.get(i))
            .filter(|s| !s.gone && !s.window.writing && s.window.as_of.is_some())
            .map(|s| s.window.deadline)
            .min()
            .filter(|_| self.announces());
        resend.into_iter().chain(table.next_expiry).min()
    }
}
