//! Keep-alives: one request renews every live registration a registrant holds here.
//!
//! A keep-alive renews each of the registrant's live records as a Register of the same
//! content would: the same lease clamping, the same `Renewed` event (a lease change
//! need not be durable before the answer), and the same ordering by the registrant's
//! sequence (the stored sequence only grows). It is answered with what the directory
//! then holds for the registrant ([`Holdings`]): a client that believes otherwise (the
//! directory restarted empty, or it failed over here) registers everything again.
//!
//! The registrant's records are found by a scan of the registry: O(capacity) per
//! keep-alive, no table per registrant (a directory of 10,000 entries scans them in
//! tens of microseconds, and a keep-alive replaces one Register per registration).

use super::*;
use crate::wire::{Holdings, KeepAliveAck, KeepAliveRequest};

impl Directory<'_> {
    pub(super) fn handle_keep_alive(
        &mut self,
        from: SocketAddr,
        env: Environment,
        k: KeepAliveRequest,
    ) {
        let held_by = |e: &Entry| e.record.is_live() && e.record.registrant == k.registrant;
        // A newer request of the registrant was applied to one of its records: this one
        // is late (or replayed) and changes nothing.
        let newest = self
            .registry
            .iter()
            .filter(|(_, e)| held_by(e))
            .map(|(_, e)| e.record.sequence)
            .max();
        if let Some(stored) = newest.filter(|&s| s > k.sequence) {
            return self.refuse_stale(from, env, k.request, stored);
        }
        let lease = self.lease_for(k.lease);
        let expires = self.now + lease;
        let mut held = Holdings::default();
        let mut renewed = false;
        for slot in 0..self.registry.len() {
            let Some(e) = self.registry.get(slot).filter(|e| held_by(e)) else {
                continue;
            };
            held.add(&e.record.service.registration);
            // A copy of this very keep-alive (same sequence) was applied already.
            if e.record.sequence == k.sequence {
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
        let ack = KeepAliveAck {
            request: k.request,
            lease,
            held,
        };
        self.reply(Reply::KeepAliveAck(from, ack));
    }
}
