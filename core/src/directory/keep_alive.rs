//! Keep-alives: one request renews every live registration a registrant holds here.
//!
//! When the registrant's live records here are exactly what the keep-alive claims (the
//! same count and digest, [`Holdings`]), each is renewed as a Register of the same
//! content would: the same lease clamping, the same `Renewed` event (a lease change
//! need not be durable before the answer), and the same ordering by the registrant's
//! sequence: a record whose stored sequence is not below the keep-alive's was renewed
//! by a newer request (or by this one: a copy) and is left as it is, so the stored
//! sequence only grows. A keep-alive is never refused as late: a newer request for one
//! name says nothing about the others (see "Request ordering" in docs/PROTOCOL.md). Otherwise nothing is renewed: the answer
//! says what the directory holds, and the client registers everything again in full
//! (the directory restarted empty, the client failed over here), while a record the
//! registrant no longer holds (left by an earlier process with the same registrant id)
//! runs out a lease later, exactly as without keep-alives.
//!
//! The registrant's records are found in the registry's list of its live entries (one
//! of 256, by a hash of the registrant id),
//! not by passes over the registry: a keep-alive costs the same among 16,384 services
//! of other registrants as among a few. (Two passes made a thousand keep-alives take 40
//! times as long there, so that small datagrams could spend the directory's CPU.)

use super::*;
use crate::wire::{Holdings, KeepAliveAck, KeepAliveRequest};

impl Directory<'_> {
    pub(super) fn handle_keep_alive(&mut self, from: SocketAddr, k: KeepAliveRequest) {
        let held_by = |e: &Entry| e.record.is_live() && e.record.registrant == k.registrant;
        let list = List::holders(k.registrant);
        let mut held = Holdings::default();
        for (_, e) in self.registry.entries(list).filter(|(_, e)| held_by(e)) {
            held.add(&e.record.service.registration);
        }
        let lease = self.lease_for(k.lease);
        // Renewed only when the registrant holds here exactly what it claims: a record
        // it no longer holds (an earlier process of the same registrant registered it)
        // must run out, and the client registers again in full what it does hold.
        if held == k.held {
            let expires = self.now + lease;
            let mut renewed = false;
            let mut next = self.registry.walk(list).next();
            while let Some(slot) = next {
                // A renewal leaves the entry in the list, where it was.
                next = self.registry.next_in(slot, list);
                // A record a newer request of the registrant renewed (or this very
                // keep-alive: a copy) is left as it is.
                let due = self
                    .registry
                    .get(slot)
                    .is_some_and(|e| held_by(e) && e.record.sequence < k.sequence);
                if !due {
                    continue;
                }
                self.stats.renewals += 1;
                renewed = true;
                self.update(slot, false, |e| {
                    e.record.sequence = k.sequence;
                    e.record.state = RecordState::Live { expires };
                });
            }
            if renewed {
                self.schedule_expiry(expires);
            }
        }
        let ack = KeepAliveAck {
            request: k.request,
            lease,
            held,
        };
        self.reply(Reply::KeepAliveAck(from, ack));
    }
}
