//! The subscriber table: who listens to what by unicast, in caller-owned storage.
//!
//! A subscriber subscribes with its id, its interest and a lease
//! ([`SubscribeRequest`]), renews like a registration, and leaves by unsubscribing or
//! when its lease runs out. The table is bounded by the storage the shell gives
//! ([`Directory::with_subscribers`]); a new subscriber beyond it is refused with
//! [`RejectReason::SubscribersFull`]. A subscription starts only once its sender has
//! echoed the directory's cookie for its address (as a snapshot does), so a forged
//! source address cannot make the directory send deliveries to a victim.
//!
//! What must outlive a restart (id, address, interest, delivery id, lease, cursor) is
//! handed to the shell by [`Directory::poll_subscriber_event`] when a subscription is
//! taken, changed, renewed or ended, and put back with
//! [`Directory::restore_subscriber`]. The cursor stored is the one of that moment: a
//! restarted directory may send again what the subscriber already holds (the listener
//! takes each change once whatever it is sent), never less. Acknowledgements alone are
//! not stored, but at a replica of a shared store (see the `shared` module).

use super::*;
use crate::registry::WallClock;
use crate::wire::{SubscribeAck, SubscribeRequest, UnsubscribeRequest};
use serde::{Deserialize, Serialize};

/// One subscription, as the directory keeps (and a shell persists) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscriber {
    /// The subscriber's id.
    pub id: u64,
    /// Where deliveries go: the address its last Subscribe came from.
    pub address: SocketAddr,
    /// What it listens to.
    pub interest: Interest,
    /// The id of its deliveries (see [`SubscribeRequest::delivery`]).
    pub delivery: u32,
    /// When its lease runs out unless renewed.
    pub expires: Instant,
    /// The cursor: it holds every matching change up to this version (`None`: nothing
    /// yet, a snapshot is due).
    pub acked: Option<Version>,
    /// The delivery in flight (in memory only).
    pub(crate) window: Window,
    /// The stored form changed and the shell has not been told yet.
    pub(crate) dirty: bool,
    /// Ended (unsubscribed or expired): kept until the shell has been told to delete it.
    pub(crate) gone: bool,
    /// Its last Subscribe came to this directory (not only through a replicated store):
    /// the subscriber talks to this directory (in memory only).
    pub(crate) here: bool,
}

/// The one delivery a subscriber may have in flight: what it covers, how far it has
/// been written, and when it is sent again if unacknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// The `as_of` of the delivery in flight, at its first attempt (`None`: none).
    pub(crate) as_of: Option<Version>,
    /// It is a snapshot (the directory no longer holds every removal after the cursor).
    pub(crate) snapshot: bool,
    /// Its next page starts after this name (while writing), or the next attempt
    /// resumes after it (between attempts: what the subscriber took); `None`: from the
    /// start.
    pub(crate) after: Option<ServiceName>,
    /// Pages still to write.
    pub(crate) writing: bool,
    /// When it is sent again (what the subscriber has not taken) if not acknowledged.
    pub(crate) deadline: Instant,
    /// Sends of it so far beyond the first: the back-off doubles with each.
    pub(crate) attempts: u8,
}

impl Subscriber {
    /// The subscriber holds every matching change up to `as_of`: the cursor moves
    /// there (never back), and a delivery in flight that it covers is done.
    pub(super) fn take_ack(&mut self, as_of: Version) {
        self.acked = self.acked.max(Some(as_of));
        let w = &self.window;
        if !w.writing && w.as_of.is_some_and(|v| as_of >= v) {
            self.window = Window::default();
        }
    }

    /// A new subscription from `request`, received from `from`, until `expires`.
    fn new(from: SocketAddr, request: &SubscribeRequest, expires: Instant) -> Self {
        Subscriber {
            id: request.subscriber,
            address: from,
            interest: request.interest.clone(),
            delivery: request.delivery,
            expires,
            acked: request.since,
            window: Window::default(),
            dirty: true,
            gone: false,
            here: true,
        }
    }
}

/// One place in the subscriber table. Make storage with [`SubscriberStorage`], or with
/// `vec![None; capacity]` where there is a heap.
pub type SubscriberSlot = Option<Subscriber>;

/// Storage for a subscriber table of `N` subscribers, for places without a heap.
pub struct SubscriberStorage<const N: usize>([SubscriberSlot; N]);

impl<const N: usize> SubscriberStorage<N> {
    /// Empty storage.
    pub fn new() -> Self {
        SubscriberStorage(core::array::from_fn(|_| None))
    }

    /// The slots, to hand to [`Directory::with_subscribers`].
    pub fn slots(&mut self) -> &mut [SubscriberSlot] {
        &mut self.0
    }
}

impl<const N: usize> Default for SubscriberStorage<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What the directory tells its shell about a subscription.
#[derive(Debug)]
pub enum SubscriberEvent<'s> {
    /// Taken, changed or renewed: store it (it need not be durable before the next
    /// send: a subscription lost in a crash is taken again at its next renewal).
    Stored(&'s Subscriber),
    /// Ended: delete the subscriber with this id from storage.
    Removed(u64),
}

/// How many subscribers whose state changed are remembered for the next delivery
/// pass; beyond it, the next pass looks at every subscriber.
const KICKED: usize = 32;

/// What the last delivery pass over every subscriber found: none had a delivery due at
/// `version`, and none will before `until` (the earliest re-send).
#[derive(Clone, Copy, Debug)]
pub(super) struct Quiet {
    version: Version,
    until: Option<Instant>,
}

/// The subscriber table over caller-owned storage: dense in `slots[..len]`.
///
/// Finding the subscribers with a delivery due does not look at all of them at every
/// `poll_transmit`: a pass over all of them that finds none due leaves the table
/// [`Quiet`] until the newest version moves or the earliest re-send comes, and a
/// subscriber whose state changes meanwhile (it subscribed, renewed or acknowledged) is
/// *kicked*: looked at by itself at the next poll.
#[derive(Debug)]
pub(super) struct Subscribers<'a> {
    slots: &'a mut [SubscriberSlot],
    len: usize,
    /// Where the next delivery pass starts (round robin).
    pub(super) cursor: usize,
    /// Subscribers (slots) whose state changed since the table was quiet.
    kicked: heapless::Deque<u32, KICKED>,
    /// The last pass over every subscriber found nothing due (`None`: look again).
    quiet: Option<Quiet>,
    /// Where the subscriber of the next acknowledgement is looked for first: after the
    /// last one found (acknowledgements come back about in the order deliveries went).
    ack_hint: usize,
    /// How many times a subscriber was looked at for a delivery (for tests).
    #[cfg(test)]
    pub(super) looked: usize,
    /// Where the next event pass starts.
    event_cursor: usize,
    /// Subscribers with something to report to the shell.
    dirty: usize,
    /// The earliest lease expiry held.
    pub(super) next_expiry: Option<Instant>,
    /// This directory stopped publishing: the next subscriber (slot) to tell, by a
    /// beacon of its own, that it delivers nothing more.
    pub(super) demoted_from: Option<usize>,
}

impl<'a> Subscribers<'a> {
    /// Ends the table and hands back its slots.
    pub(super) fn into_slots(self) -> &'a mut [SubscriberSlot] {
        self.slots
    }

    pub(super) fn new(slots: &'a mut [SubscriberSlot]) -> Self {
        slots.iter_mut().for_each(|s| *s = None);
        Subscribers {
            slots,
            len: 0,
            cursor: 0,
            kicked: heapless::Deque::new(),
            quiet: None,
            ack_hint: 0,
            #[cfg(test)]
            looked: 0,
            event_cursor: 0,
            dirty: 0,
            next_expiry: None,
            demoted_from: None,
        }
    }

    /// How many subscribers are held (ended ones not yet reported included).
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn get(&self, i: usize) -> Option<&Subscriber> {
        self.slots.get(i)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Subscriber> {
        self.slots.get_mut(i)?.as_mut()
    }

    pub(super) fn find(&self, id: u64) -> Option<usize> {
        self.find_from(id, 0)
    }

    /// The slot of subscriber `id`, looked for from slot `from` on (wrapping).
    fn find_from(&self, id: u64, from: usize) -> Option<usize> {
        let from = if from < self.len { from } else { 0 };
        (from..self.len)
            .chain(0..from)
            .find(|&i| self.get(i).is_some_and(|s| s.id == id))
    }

    /// The slot of the subscriber an acknowledgement from `id` is for; the next is
    /// looked for after it.
    pub(super) fn find_acked(&mut self, id: u64) -> Option<usize> {
        let i = self.find_from(id, self.ack_hint)?;
        self.ack_hint = i + 1;
        Some(i)
    }

    /// Subscriber `i` may have a delivery due: the next poll looks at it (or, when too
    /// many are waiting, at every subscriber).
    pub(super) fn kick(&mut self, i: usize) {
        if self.kicked.push_back(i as u32).is_err() {
            self.quiet = None;
        }
    }

    /// The next kicked subscriber to look at.
    pub(super) fn next_kicked(&mut self) -> Option<usize> {
        self.kicked.pop_front().map(|i| i as usize)
    }

    /// True when the last pass over every subscriber found nothing due, and nothing
    /// has come due since: the newest version is still `version` and no re-send is due
    /// by `now` (kicked subscribers aside).
    pub(super) fn is_quiet(&self, version: Version, now: Instant) -> bool {
        self.quiet
            .is_some_and(|q| q.version == version && q.until.is_none_or(|t| now < t))
    }

    /// A pass over every subscriber found nothing due at `version`; the earliest
    /// re-send is at `until`.
    pub(super) fn set_quiet(&mut self, version: Version, until: Option<Instant>) {
        self.quiet = Some(Quiet { version, until });
    }

    /// Looks at every subscriber at the next poll.
    pub(super) fn unquiet(&mut self) {
        self.quiet = None;
    }

    /// The earliest re-send, when quiet at `version` (`None`: not known without
    /// looking at every subscriber).
    pub(super) fn quiet_until(&self, version: Version) -> Option<Option<Instant>> {
        self.quiet
            .filter(|q| q.version == version && self.kicked.is_empty())
            .map(|q| q.until)
    }

    /// A delivery was sent that is re-sent at `deadline` unless acknowledged.
    pub(super) fn resend_at(&mut self, deadline: Instant) {
        if let Some(q) = self.quiet.as_mut() {
            q.until = Some(q.until.map_or(deadline, |t| t.min(deadline)));
        }
    }

    /// Marks the stored form of subscriber `i` changed.
    pub(super) fn touch(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(i).and_then(Option::as_mut) {
            if !s.dirty {
                s.dirty = true;
                self.dirty += 1;
            }
        }
    }

    pub(super) fn schedule_expiry(&mut self, at: Instant) {
        self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
    }

    /// Ends subscriber `i` (kept until its removal is reported).
    fn end(&mut self, i: usize) {
        if let Some(s) = self.get_mut(i) {
            s.gone = true;
            s.window = Window::default();
        }
        self.touch(i);
    }

    /// Puts `subscriber` in a free slot (false: the table is full).
    pub(super) fn insert(&mut self, subscriber: Subscriber) -> bool {
        let Some(slot) = self.slots.get_mut(self.len) else {
            return false;
        };
        let dirty = subscriber.dirty;
        *slot = Some(subscriber);
        self.len += 1;
        if dirty {
            self.dirty += 1;
        }
        self.kick(self.len - 1);
        true
    }

    /// Frees slot `i` (the last one moves into it).
    pub(super) fn free(&mut self, i: usize) {
        if i >= self.len {
            return;
        }
        self.len -= 1;
        self.slots.swap(i, self.len);
        self.slots[self.len] = None;
        // Slots moved: what was kicked is found by a pass over all.
        self.kicked.clear();
        self.quiet = None;
    }
}

impl<'a> Directory<'a> {
    /// Gives the directory a subscriber table in `slots` (its capacity is their
    /// number; without one, every subscription is refused as full). Subscribers held
    /// before are dropped.
    pub fn with_subscribers(mut self, slots: &'a mut [SubscriberSlot]) -> Self {
        self.subscribers = Subscribers::new(slots);
        self
    }

    /// Ends the directory and hands back the memory it was given: the registry's slots
    /// and index and the subscriber slots, to make another directory over (a restart
    /// in place, say; the next directory discards what they hold).
    pub fn into_storage(self) -> DirectoryParts<'a> {
        let (slots, index) = self.registry.into_parts();
        DirectoryParts {
            slots,
            index,
            subscribers: self.subscribers.into_slots(),
        }
    }

    /// Subscribers held (ended ones whose removal the shell has not taken included).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// How many subscribers the table can hold.
    pub fn subscriber_capacity(&self) -> usize {
        self.subscribers.capacity()
    }

    /// Every live subscription.
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscriber> {
        (0..self.subscribers.len())
            .filter_map(|i| self.subscribers.get(i))
            .filter(|s| !s.gone)
    }

    /// How many live subscriptions match `name` (a registrant's "who listens to me").
    pub fn subscribers_of(&self, name: &str) -> usize {
        self.subscribers()
            .filter(|s| s.interest.matches(name))
            .count()
    }

    /// The next subscription change the shell should persist (take them all with the
    /// storage events, after every wake-up).
    pub fn poll_subscriber_event(&mut self) -> Option<SubscriberEvent<'_>> {
        let table = &mut self.subscribers;
        if table.dirty == 0 {
            return None;
        }
        for _ in 0..table.len {
            if table.event_cursor >= table.len {
                table.event_cursor = 0;
            }
            let i = table.event_cursor;
            let Some(s) = table.get_mut(i) else { break };
            if !s.dirty {
                table.event_cursor += 1;
                continue;
            }
            s.dirty = false;
            let (gone, id) = (s.gone, s.id);
            table.dirty -= 1;
            if gone {
                // The last subscriber moves into this slot: look at it next.
                table.free(i);
                return Some(SubscriberEvent::Removed(id));
            }
            table.event_cursor += 1;
            return table.get(i).map(SubscriberEvent::Stored);
        }
        table.dirty = 0;
        None
    }

    /// Puts back a subscription read from storage at start-up; its lease ends no sooner
    /// than `restore_grace` from `now` (as a restored registration's). Its deliveries
    /// resume from its stored cursor. `Err(Full)` when the table is full.
    pub fn restore_subscriber(
        &mut self,
        now: Instant,
        mut subscriber: Subscriber,
    ) -> Result<(), crate::RegistryError> {
        self.observe(now);
        let grace = self.config.restore_grace.min(self.config.max_lease);
        subscriber.expires = subscriber
            .expires
            .max(self.now + grace)
            .min(self.now + self.config.max_lease);
        subscriber.window = Window::default();
        subscriber.dirty = false;
        subscriber.gone = false;
        subscriber.here = true;
        let expires = subscriber.expires;
        let table = &mut self.subscribers;
        match table.find(subscriber.id) {
            Some(i) => {
                if let Some(s) = table.get_mut(i) {
                    let dirty = s.dirty;
                    *s = subscriber;
                    s.dirty = dirty;
                }
                table.kick(i);
            }
            None if table.insert(subscriber) => {}
            None => return Err(crate::RegistryError::Full),
        }
        table.schedule_expiry(expires);
        Ok(())
    }

    /// A Subscribe of `received` bytes from `from`: with a valid cookie, takes or renews
    /// the subscription and acknowledges it; without one, answers with a cookie only.
    pub(super) fn handle_subscribe(
        &mut self,
        from: SocketAddr,
        env: Environment,
        received: usize,
        s: SubscribeRequest,
    ) {
        if !self.verify_cookie(from, received, s.request, s.cookie) {
            return;
        }
        let lease = self.lease_for(s.lease);
        let expires = self.now + lease;
        let found = self.subscribers.find(s.subscriber);
        // A subscription new here, or moved from another address, counts against its
        // source's budget; a renewal does not.
        let moved = found
            .and_then(|i| self.subscribers.get(i))
            .is_none_or(|held| held.gone || held.address != from);
        if moved && self.over_subscription_budget(from) {
            return self.reject(from, env, s.request, RejectReason::SourceBudget);
        }
        let table = &mut self.subscribers;
        match found {
            Some(i) => {
                let Some(held) = table.get_mut(i) else { return };
                let afresh = moved || held.delivery != s.delivery;
                held.expires = expires;
                held.here = true;
                if afresh {
                    // A new subscription under the same id (the subscriber restarted,
                    // moved, or came back): start from what it says it holds.
                    let dirty = held.dirty;
                    *held = Subscriber::new(from, &s, expires);
                    held.dirty = dirty;
                } else {
                    held.interest = s.interest.clone();
                    if let Some(since) = s.since {
                        held.take_ack(since.min(self.last_version));
                    }
                    let w = &mut held.window;
                    if w.attempts > 0 && !w.writing && w.as_of.is_some() {
                        // It was sent again unacknowledged, yet the subscriber is
                        // there: send it again now, and back off from the start.
                        w.attempts = 0;
                        w.deadline = self.now;
                    }
                }
                table.touch(i);
                table.kick(i);
            }
            None => {
                if !table.insert(Subscriber::new(from, &s, expires)) {
                    return self.reject(from, env, s.request, RejectReason::SubscribersFull);
                }
                self.stats.subscriptions += 1;
            }
        }
        table.schedule_expiry(expires);
        let ack = SubscribeAck {
            request: s.request,
            lease,
            delivering: self.publishing,
        };
        self.reply(Reply::SubscribeAck(from, ack));
    }

    /// An Unsubscribe: ends the subscription (if it is held, and asked for from its
    /// address) and acknowledges with a zero lease either way.
    pub(super) fn handle_unsubscribe(&mut self, from: SocketAddr, u: UnsubscribeRequest) {
        let table = &mut self.subscribers;
        let held = table
            .find(u.subscriber)
            .filter(|&i| table.get(i).is_some_and(|s| s.address == from && !s.gone));
        if let Some(i) = held {
            table.end(i);
            self.stats.unsubscribes += 1;
        }
        let ack = SubscribeAck {
            request: u.request,
            lease: Duration::ZERO,
            delivering: self.publishing,
        };
        self.reply(Reply::SubscribeAck(from, ack));
    }

    /// Ends every subscription whose lease ran out by `now`.
    pub(super) fn expire_subscribers(&mut self, now: Instant) {
        let table = &mut self.subscribers;
        if table.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        for i in 0..table.len {
            let Some(s) = table.get(i) else { continue };
            if s.gone {
                continue;
            }
            if s.expires <= now {
                table.end(i);
                self.stats.subscribers_expired += 1;
            } else {
                next = Some(next.map_or(s.expires, |t| t.min(s.expires)));
            }
        }
        self.subscribers.next_expiry = next;
    }
}

/// Longest encoded [`Subscriber`] in bytes.
pub const MAX_SUBSCRIBER_LEN: usize = 360;

/// The stored layout of a subscriber.
#[derive(Serialize, Deserialize)]
struct SubscriberWire<'a> {
    id: u64,
    address: wire::message::LocationWire,
    #[serde(borrow)]
    interest: wire::message::InterestWire<'a>,
    delivery: u32,
    /// Unix milliseconds when the lease runs out.
    expires_unix_ms: u64,
    acked: Option<u64>,
}

impl Subscriber {
    /// Encodes the subscription for storage; the lease expiry is stored as wall-clock
    /// time, as a record's is.
    pub fn to_bytes<'b>(&self, clock: WallClock, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let address = Location::new(self.address.ip(), self.address.port()).ok()?;
        let wire = SubscriberWire {
            id: self.id,
            address: wire::message::LocationWire::from_location(&address),
            interest: wire::message::interest_to_wire(&self.interest),
            delivery: self.delivery,
            expires_unix_ms: clock.unix_ms_at(self.expires),
            acked: self.acked.map(|v| v.0),
        };
        postcard::to_slice(&wire, buf).ok().map(|b| &*b)
    }

    /// Decodes a stored subscription.
    pub fn from_bytes(
        bytes: &[u8],
        clock: WallClock,
    ) -> Result<Subscriber, crate::registry::CorruptRecord> {
        let corrupt = crate::registry::CorruptRecord;
        let wire = match postcard::take_from_bytes::<SubscriberWire<'_>>(bytes) {
            Ok((w, [])) => w,
            _ => return Err(corrupt),
        };
        let address = wire.address.validate().map_err(|_| corrupt)?;
        let interest = wire::message::interest_from_wire(&wire.interest).map_err(|_| corrupt)?;
        Ok(Subscriber {
            id: wire.id,
            address: address.socket_addr(),
            interest,
            delivery: wire.delivery,
            expires: clock.instant_at(wire.expires_unix_ms),
            acked: wire.acked.map(Version),
            window: Window::default(),
            dirty: false,
            gone: false,
            here: false,
        })
    }
}
