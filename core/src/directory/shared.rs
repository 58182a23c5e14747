//! Subscriptions shared through a replicated store (the etcd cluster): every directory
//! holds every subscription, the publisher delivers, and a new publisher continues
//! from the cursors its predecessor left.
//!
//! A directory stores what its own subscribers do (see [`Directory::poll_subscriber_event`])
//! and takes what the others stored with [`Directory::apply_subscriber`] and
//! [`Directory::forget_subscriber`]. Only the publisher delivers; a replica holds the
//! table, answers its own subscribers' Subscribes (with `delivering` false) and tells
//! only them, by unicast beacons, that it does not publish. A replica that takes a
//! [`DeliveryAck`](crate::wire::DeliveryAck) (its subscriber heard the publisher's
//! delivery) hands the cursor to the shell, so that it reaches the publisher through the
//! store.
//!
//! **Cursors across a publisher change.** A cursor is the `as_of` of a delivery: its
//! publisher's newest version then. Versions follow each directory's version clock
//! (wall-clock microseconds), and every directory's versions rise above every version
//! it takes from the store, so the versions of a store's directories are comparable as
//! far as their clocks agree. The states a directory took as a replica carry no stamp
//! of its own (it announced none): a directory elected publisher, once caught up with
//! the store, takes a new version (above every stored one, and its clock, which has
//! moved on by the takeover's time: the publisher lease) and stamps them all with it.
//! A delivery from any cursor its predecessor handed out then carries every state the
//! predecessor had not delivered (and perhaps some the subscriber holds: it takes each
//! once, by version), later deliveries only what changed since, and the new publisher's
//! `as_of` is above the old cursors, as long as the directories' clocks agree within
//! the takeover's time (seconds; NTP keeps them within milliseconds). A cursor older
//! than a removal the new publisher no longer holds gets a snapshot, as at any
//! publisher.

use super::subscribers::Window;
use super::*;
use crate::registry::UNANNOUNCED;

impl Directory<'_> {
    /// Takes a subscription from the replicated store: one another directory stored (a
    /// new subscription, a renewal, a cursor its subscriber acknowledged there). The
    /// lease is the stored one (no longer than `max_lease` from now). The same
    /// subscription (same delivery id and address) keeps its delivery in flight and the
    /// further of the two cursors; another one under the id replaces it, unless one
    /// taken here and not yet stored runs out later (the later Subscribe wins). Nothing is
    /// reported through [`poll_subscriber_event`](Self::poll_subscriber_event) (it is
    /// stored already), but a change made here and not yet reported still is. `Err(Full)`
    /// when the table is full.
    pub fn apply_subscriber(
        &mut self,
        now: Instant,
        mut subscriber: Subscriber,
    ) -> Result<(), crate::RegistryError> {
        self.observe(now);
        let newest = self.last_version;
        subscriber.expires = subscriber.expires.min(self.now + self.config.max_lease);
        subscriber.window = Window::default();
        subscriber.dirty = false;
        subscriber.gone = false;
        subscriber.here = false;
        let expires = subscriber.expires;
        let table = &mut self.subscribers;
        match table.find(subscriber.id) {
            Some(i) => {
                let Some(held) = table.get_mut(i) else {
                    return Ok(());
                };
                let same = !held.gone
                    && held.delivery == subscriber.delivery
                    && held.address == subscriber.address;
                if same {
                    // Renewed or acknowledged at another directory since: it talks
                    // there (this directory's own writes, read again, change nothing).
                    if subscriber.expires > held.expires || subscriber.acked > held.acked {
                        held.here = false;
                    }
                    held.expires = held.expires.max(subscriber.expires);
                    held.interest = subscriber.interest;
                    if let Some(acked) = subscriber.acked {
                        held.take_ack(acked.min(newest));
                    }
                } else if !(held.dirty && !held.gone && held.expires > subscriber.expires) {
                    let dirty = held.dirty;
                    *held = subscriber;
                    held.dirty = dirty;
                }
                // A new subscription in its place (or a cursor moved) may have a delivery
                // due: the next poll looks at it, quiet as the table may be.
                table.kick(i);
            }
            None if table.insert(subscriber) => {}
            None => return Err(crate::RegistryError::Full),
        }
        table.schedule_expiry(expires);
        Ok(())
    }

    /// The replicated store no longer holds subscriber `id` (it unsubscribed, or its
    /// lease ran out, at another directory): it is dropped without a storage event,
    /// unless it changed here since (a renewal on its way to the store is kept).
    pub fn forget_subscriber(&mut self, now: Instant, id: u64) {
        self.observe(now);
        let table = &mut self.subscribers;
        let Some(i) = table.find(id) else { return };
        if table.get(i).is_some_and(|s| !s.dirty) {
            table.free(i);
        }
    }

    /// Newly elected publisher, caught up with the store: takes a new version and stamps
    /// with it every state taken as a replica and never announced, so that deliveries
    /// continue from the cursors the previous publisher handed out (see the module
    /// docs).
    pub(super) fn continue_cursors(&mut self) {
        let link = self.next_version();
        for slot in 0..self.registry.len() {
            if let Some(mut e) = self.registry.get_mut(slot) {
                if e.stamp == UNANNOUNCED && !notify::is_pending(&e) {
                    e.stamp = link;
                }
            }
        }
    }
}
