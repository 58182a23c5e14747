//! Unicast delivery to subscribers: reliable, not repeated.
//!
//! Per subscriber the directory keeps a cursor (the version up to which the subscriber
//! acknowledged every matching change) and one delivery in flight, never a queue of
//! copies: what to send is computed from the registry when it is sent, as a repair is
//! (see the `changes` module). A delivery is the changes stamped after the cursor that
//! match the subscriber's interest, in [`DeliveredChanges`] pages that name the
//! subscriber and have the subscription's delivery id as their `request`, written as
//! of the newest version; when the directory no longer holds every removal after the
//! cursor (or the subscriber holds nothing yet), it is a snapshot of the matching
//! services in [`DeliveredSnapshot`] pages instead. Once its last page is sent the
//! delivery waits for a [`DeliveryAck`] at or above its (first attempt's) `as_of`;
//! unacknowledged, it is sent again, from the cursor and as of the newest version then,
//! after a timeout that doubles with each attempt
//! ([`DirectoryConfig::delivery_timeout`], up to 8 times), until the subscription's
//! lease runs out. A re-send starts after the last name the
//! subscriber said it took of the delivery without a gap (the ack's `taken`; the
//! start when none, or when the delivery turned from changes to a snapshot or back),
//! so each attempt that gets a page through makes progress, and a long delivery
//! completes under any loss that lets some pages and acks through. Changes made while
//! a delivery is in flight go in the next one. A removal is thus delivered until
//! acknowledged (or, once its tombstone is reaped, the snapshot that replaces it shows
//! it), and a silent subscriber costs a few re-sends per lease.
//!
//! Bulk is budgeted: a page of a snapshot delivery, and every page after the first of a
//! delivery of changes, is charged to the snapshot byte budgets of the subscriber's
//! address and of all sources (see the `admission` module) and waits while they are
//! spent, so a subscriber that starts afresh again and again pulls no more than a
//! snapshot requester may. A one-page delivery of changes, what one real change costs,
//! is not held back.
//!
//! Work is bounded: each `poll_transmit` writes at most one page, and the subscribers
//! take turns. A delivery that would be empty (nothing matching changed) is not sent:
//! the cursor moves on by itself. A poll with nothing to send costs no pass over every
//! subscriber: after a pass that found nothing due, only a new version, a re-send
//! coming due or a subscriber whose state changed (kicked, see the subscribers module)
//! makes one look again.
//!
//! [`DeliveredChanges`]: crate::wire::Message::DeliveredChanges
//! [`DeliveredSnapshot`]: crate::wire::Message::DeliveredSnapshot
//! [`DeliveryAck`]: crate::wire::DeliveryAck

use super::admission::source_of;
use super::subscribers::Window;
use super::*;
use crate::wire::DeliveryAck;

/// The back-off of an unacknowledged delivery doubles at most this many times (to 2 s
/// with the default timeout): a subscriber that comes back after a loss burst hears
/// within that, and a silent one costs one re-send per 2 s of its lease at most.
const MAX_BACKOFF_DOUBLINGS: u8 = 3;
/// A delivery held back by the byte budgets is tried again after this long.
const BUDGET_WAIT: Duration = Duration::from_millis(10);

impl Directory<'_> {
    /// The next delivery datagram (body only: `buf` leaves room for the trailer).
    pub(super) fn transmit_delivery(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.announces() {
            self.subscribers.unquiet();
            return None;
        }
        while let Some(i) = self.subscribers.next_kicked() {
            if let Some(t) = self.deliver_to(i, buf) {
                if self.subscribers.get(i).is_some_and(|s| s.window.writing) {
                    // Its next pages take their turns with the others' (round robin).
                    self.subscribers.unquiet();
                }
                return Some(t);
            }
        }
        let (version, now) = (self.last_version, self.now);
        if self.subscribers.is_quiet(version, now) {
            return None;
        }
        let n = self.subscribers.len();
        let mut until: Option<Instant> = None;
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
            if let Some(at) = self.subscribers.get(i).and_then(resend_at) {
                until = Some(until.map_or(at, |t| t.min(at)));
            }
        }
        self.subscribers.set_quiet(version, until);
        None
    }

    /// Writes the next page for subscriber `i`, if it has one due.
    fn deliver_to(&mut self, i: usize, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        let as_of = self.last_version;
        let floor = self.repair_floor;
        #[cfg(test)]
        {
            self.subscribers.looked += 1;
        }
        let s = self.subscribers.get_mut(i)?;
        if s.gone || (s.window.writing && now < s.window.deadline) {
            // Ended, or held back by the byte budgets until its deadline.
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
            let snapshot = s.acked.is_none_or(|a| a < floor);
            let w = &mut s.window;
            if w.as_of.is_none() || w.snapshot != snapshot {
                // A new delivery (or one of another kind now): from the start.
                w.after = None;
            }
            // A re-send keeps the first attempt's `as_of`: the subscriber holds the
            // pages taken as of it at least.
            w.as_of = w.as_of.or(Some(as_of));
            w.snapshot = snapshot;
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
        let to = s.address;
        if snapshot || header.after.is_some() {
            let ip = source_of(to);
            if !self.admission.may_send(&self.config.admission, ip, now) {
                self.stats.deliveries_throttled += 1;
                let s = self.subscribers.get_mut(i)?;
                s.window.deadline = now + BUDGET_WAIT;
                // The next poll looks at every subscriber again, and so learns when
                // this one is due.
                self.subscribers.unquiet();
                return None;
            }
        }
        let s = self.subscribers.get(i)?;
        // A delivered page names its subscriber: only that subscriber takes it.
        let written = if snapshot {
            let kind = PageKind::DeliveredSnapshot(s.id);
            self.write_page(&header, &s.interest, kind, buf)
        } else {
            let since = s.acked.unwrap_or_default();
            let kind = PageKind::DeliveredChanges(s.id);
            self.write_changes(&header, &s.interest, since, kind, buf)
        };
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
            // subscriber holds everything up to the page's `as_of`.
            s.acked = Some(as_of);
            s.window = Window::default();
            return None;
        }
        if complete {
            w.writing = false;
            w.after = None;
            let doublings = w.attempts.min(MAX_BACKOFF_DOUBLINGS);
            w.deadline = now + timeout.mul(1 << doublings);
            let deadline = w.deadline;
            self.subscribers.resend_at(deadline);
        } else {
            w.after = last;
        }
        if snapshot || header.after.is_some() {
            let sent = len + self.config.trailer_len();
            self.admission.spent(source_of(to), sent);
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

    /// A subscriber acknowledged every matching change up to `ack.as_of` (0: none
    /// yet) and the delivery in flight up to `ack.taken`: its cursor moves there, a
    /// delivery in flight that it covers is done, and one it does not resumes after
    /// `taken` at its next attempt. Taken only from the subscriber's address and for
    /// its current delivery id; never answered.
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
            .find_acked(ack.subscriber)
            .and_then(|i| Some((i, table.get_mut(i)?)))
        else {
            self.stats.ignored += 1;
            return;
        };
        if s.gone || s.address != from || s.delivery != ack.delivery {
            self.stats.ignored += 1;
            return;
        }
        // An ack older than the cursor is a late copy: it says nothing of the delivery
        // in flight.
        let current = Some(ack.as_of) >= s.acked;
        let held_nothing = s.acked.is_none();
        if ack.as_of > Version(0) {
            // Nothing beyond what this directory has handed out can be held; at a
            // replica, what the publisher handed out, which may be above the replica's
            // newest version (the links of its chain) but not beyond the clocks'
            // agreement.
            s.take_ack(ack.as_of.min(bound));
        }
        let w = &mut s.window;
        if current && !w.writing && w.as_of.is_some() {
            // The next attempt resumes after what the subscriber took of this one (an
            // ack that comes while an attempt is written moves the cursor only: that
            // attempt's pages start over, and the subscriber takes them as overlap).
            w.after = ack.taken;
        }
        if !self.publishing || (held_nothing && s.acked.is_some()) {
            // At a replica, the publisher delivered it: the cursor reaches it through
            // the store. At the publisher, the first cursor is stored (once per
            // subscription; later ones go with its renewals), so that a publisher
            // taking over before a renewal continues with changes, not a snapshot.
            table.touch(i);
        }
        // Changes made while its delivery was in flight may now be due.
        table.kick(i);
    }

    /// The earliest re-send or subscription expiry due.
    pub(super) fn delivery_timeout(&self) -> Option<Instant> {
        let table = &self.subscribers;
        let resend = if !self.announces() {
            None
        } else if let Some(until) = table.quiet_until(self.last_version) {
            // No earlier than any re-send held (perhaps earlier: a wake-up for nothing).
            until
        } else {
            (0..table.len())
                .filter_map(|i| table.get(i))
                .filter_map(resend_at)
                .min()
        };
        resend.into_iter().chain(table.next_expiry).min()
    }
}

/// When the delivery `s` has in flight is sent again unless acknowledged (`None`: none
/// waits for an acknowledgement).
fn resend_at(s: &super::subscribers::Subscriber) -> Option<Instant> {
    let w = &s.window;
    // A delivery being written has its deadline in the future only while the byte
    // budgets hold it back: due then; otherwise its pages are due at once.
    (!s.gone && w.as_of.is_some()).then_some(w.deadline)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::directory::subscribers::{Subscriber, SubscriberSlot};
    use core::net::{IpAddr, Ipv4Addr};
    use std::vec;

    fn subscriber(id: u64, now: Instant, acked: Option<Version>) -> Subscriber {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Subscriber {
            id,
            address: SocketAddr::new(ip, 40_000 + id as u16),
            interest: Interest::all(),
            delivery: 7,
            expires: now + Duration::from_secs(60),
            acked,
            window: Window::default(),
            dirty: false,
            gone: false,
            here: true,
        }
    }

    /// With many subscribers and nothing due, polling cost a pass over all of them each
    /// time (200 looks per poll before the table learnt to stay quiet); a subscriber
    /// that acknowledges is looked at alone.
    #[test]
    fn a_poll_with_nothing_due_looks_at_no_subscriber() {
        const SUBSCRIBERS: usize = 200;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let config = DirectoryConfig::new(Location::new(ip, 37399).unwrap(), group);
        let (mut slots, mut index) = (vec![None; 16], vec![0u32; 16]);
        let mut table: vec::Vec<SubscriberSlot> = vec![None; SUBSCRIBERS];
        let mut d = Directory::new(config, &mut slots, &mut index)
            .unwrap()
            .with_subscribers(&mut table);
        let now = Instant::from_millis(1_000);
        for id in 0..SUBSCRIBERS as u64 {
            let subscriber = subscriber(id, now, Some(Version(0)));
            d.restore_subscriber(now, subscriber).unwrap();
        }
        let mut buf = [0u8; 1500];
        while d.poll_transmit(now, &mut buf).is_some() {}
        let first = d.subscribers.looked;
        assert!(first >= SUBSCRIBERS, "each was looked at once at least");
        for _ in 0..100 {
            assert!(d.poll_transmit(now, &mut buf).is_none());
            assert!(d.poll_timeout().is_some());
        }
        assert_eq!(d.subscribers.looked, first, "nothing due: nobody looked at");
        // An acknowledgement (of nothing new) makes its subscriber alone looked at.
        let from = SocketAddr::new(ip, 40_005);
        let acked = d.last_version;
        let ack = DeliveryAck {
            subscriber: 5,
            delivery: 7,
            as_of: acked,
            taken: None,
        };
        d.handle_delivery_ack(from, ack);
        assert!(d.poll_transmit(now, &mut buf).is_none());
        assert_eq!(d.subscribers.looked, first + 1);
    }

    /// A subscriber that comes while the table is quiet, with a snapshot of many pages
    /// due, gets every page (its later pages are found though nothing else is due).
    #[test]
    fn a_snapshot_of_many_pages_to_a_newcomer_is_sent_whole_while_the_rest_are_quiet() {
        const SERVICES: usize = 200;
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let config = DirectoryConfig::new(Location::new(ip, 37399).unwrap(), group);
        let (mut slots, mut index) = (vec![None; SERVICES], vec![0u32; SERVICES]);
        let mut table: vec::Vec<SubscriberSlot> = vec![None; 8];
        let mut d = Directory::new(config, &mut slots, &mut index)
            .unwrap()
            .with_subscribers(&mut table);
        let now = Instant::from_millis(1_000);
        for i in 0..SERVICES {
            let name = std::format!("svc-{i:04}");
            let expires = now + Duration::from_secs(60);
            let state = RecordState::Live { expires };
            let record = crate::registry::test_record(&name, Version(1 + i as u64), state);
            d.restore(now, record).unwrap();
        }
        let mut buf = [0u8; 1500];
        while d.poll_transmit(now, &mut buf).is_some() {}
        let newest = d.last_version;
        for id in 0..4 {
            d.restore_subscriber(now, subscriber(id, now, Some(newest)))
                .unwrap();
        }
        while d.poll_transmit(now, &mut buf).is_some() {}
        assert!(d.subscribers.is_quiet(newest, now));
        d.restore_subscriber(now, subscriber(9, now, None)).unwrap();
        let newcomer = SocketAddr::new(ip, 40_009);
        let mut pages = 0;
        while let Some(t) = d.poll_transmit(now, &mut buf) {
            assert_eq!(t.destination, newcomer);
            pages += 1;
            assert!(pages < 1_000);
        }
        assert!(pages > 2, "{pages} pages: the snapshot takes several");
        let s = d.subscribers().find(|s| s.id == 9).unwrap();
        assert!(!s.window.writing && s.window.as_of.is_some(), "sent whole");
    }
}
