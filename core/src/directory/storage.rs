//! What a directory does while its shell cannot store its changes.
//!
//! A directory acknowledges a change only once its shell has made it durable (the poll
//! order in the [crate docs](crate)). When a write fails, the shell calls
//! [`Directory::storage_failed`] before it sends anything: every acknowledgement still
//! queued becomes a `storage_unavailable` refusal (the client keeps its registration and
//! retries), every entry is handed out again by `poll_event` and every held subscriber
//! by `poll_subscriber_event` so that the next write puts the whole registry and the
//! whole subscriber table on disk (memory and disk agree again once one write
//! succeeds), registrations and unregistrations are refused, and no lease expires.
//!
//! Removals are the exception: the directory forgets a name or a subscriber once it has
//! reported its removal, so a failed write's removals are the shell's to keep. For names
//! the shell keeps the deletions it could not write; for subscribers it need keep
//! nothing: the table is bounded, so the write after a failure replaces the stored table
//! with the subscribers handed out (every one held), which deletes every subscriber
//! whose removal a failed write carried. The shell keeps
//! retrying; when a write succeeds it calls [`Directory::storage_recovered`]. Expiry
//! resumes one default lease later, so that registrants refused meanwhile renew first.
//!
//! A shell that writes while it keeps handling requests (group commit) holds what
//! `poll_transmit` gives until the write it waits for is durable. When that write fails,
//! it hands every held datagram back with [`Directory::unsent`]: an acknowledgement
//! becomes the same `storage_unavailable` refusal it would have become in the queue.

use super::{touch, Directory, Reply};
use crate::auth;
use crate::time::Instant;
use crate::wire::{Message, Reject, RejectReason};
use core::net::SocketAddr;

/// Whether the shell can store the directory's changes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Storage {
    /// The last write succeeded.
    available: bool,
    /// After a recovery: no lease expires before this.
    hold_expiry_until: Option<Instant>,
}

impl Storage {
    /// Storage that works (the start).
    pub(super) const fn new() -> Self {
        Storage {
            available: true,
            hold_expiry_until: None,
        }
    }

    /// True when leases may expire at `now`.
    pub(super) fn allows_expiry(&self, now: Instant) -> bool {
        self.available && self.hold_expiry_until.is_none_or(|t| t <= now)
    }

    /// When expiry resumes after a recovery, if it is held until after `now`.
    pub(super) fn resumes_expiry(&self, now: Instant) -> Option<Instant> {
        self.hold_expiry_until
            .filter(|&t| self.available && t > now)
    }
}

impl Directory<'_> {
    /// The shell could not store this wake-up's changes: nothing queued is acknowledged
    /// (each acknowledgement becomes a `storage_unavailable` refusal), every entry is
    /// handed out again by [`poll_event`](Self::poll_event) and every held subscriber by
    /// [`poll_subscriber_event`](Self::poll_subscriber_event) (as
    /// [`SubscriberEvent::Stored`](crate::SubscriberEvent::Stored), or `Removed` if it
    /// ended) for the next attempt, which may replace the stored subscriber table with
    /// them (deleting every subscriber whose removal a failed write carried), and until
    /// [`storage_recovered`](Self::storage_recovered) registrations and unregistrations
    /// are refused and no lease expires. Call it before `poll_transmit`.
    pub fn storage_failed(&mut self, now: Instant) {
        self.observe(now);
        self.storage.available = false;
        self.storage.hold_expiry_until = None;
        for _ in 0..self.replies.len() {
            let Some(reply) = self.replies.pop_front() else {
                break;
            };
            let reply = match reply {
                Reply::Ack(to, ack) => self.unstored(to, ack.request),
                Reply::KeepAliveAck(to, ack) => self.unstored(to, ack.request),
                other => other,
            };
            // Cannot fail: one was taken out for each put back.
            let _ = self.replies.push_back(reply);
        }
        for slot in 0..self.registry.len() {
            if let Some(mut e) = self.registry.get_mut(slot) {
                touch(&mut e, &mut self.dirty, true);
            }
        }
        for i in 0..self.subscribers.len() {
            self.subscribers.touch(i);
        }
    }

    /// A datagram `poll_transmit` gave to `to` was never sent: the write it waited for
    /// failed ([`storage_failed`](Self::storage_failed) was called). An acknowledgement
    /// is answered instead with a `storage_unavailable` refusal of the same request
    /// (queued like any reply: hand back at most [`REPLY_QUEUE`](super::REPLY_QUEUE)
    /// between two drains of `poll_transmit`); anything else is forgotten (the sweep
    /// and the clients' retries make up for it).
    pub fn unsent(&mut self, to: SocketAddr, datagram: &[u8]) {
        let Ok((_, _, Ok(frame))) = auth::receive(self.config.keys.as_ref(), datagram) else {
            return;
        };
        let request = match frame.message {
            Message::Ack(ack) => ack.request,
            Message::KeepAliveAck(ack) => ack.request,
            _ => return,
        };
        let refusal = self.unstored(to, request);
        self.reply(refusal);
    }

    /// The `storage_unavailable` refusal that replaces the acknowledgement of
    /// `request`, counted.
    fn unstored(&mut self, to: SocketAddr, request: u32) -> Reply {
        self.stats.rejections[RejectReason::StorageUnavailable.index()] += 1;
        let reject = Reject {
            request,
            reason: RejectReason::StorageUnavailable,
            directory_environment: self.config.environment.clone(),
            floor: 0,
        };
        Reply::Reject(to, self.config.environment.clone(), reject)
    }

    /// A write succeeded after [`storage_failed`](Self::storage_failed): requests are
    /// taken again, and leases expire again one default lease from `now` (registrants
    /// whose renewals were refused renew first).
    pub fn storage_recovered(&mut self, now: Instant) {
        self.observe(now);
        if self.storage.available {
            return;
        }
        self.storage.available = true;
        self.storage.hold_expiry_until = Some(self.now + self.config.default_lease);
    }

    /// False between [`storage_failed`](Self::storage_failed) and
    /// [`storage_recovered`](Self::storage_recovered).
    pub fn storage_available(&self) -> bool {
        self.storage.available
    }

    /// While storage is unavailable, refuses a request that would change the registry
    /// (true: it was answered).
    pub(super) fn refuse_unstorable(
        &mut self,
        from: SocketAddr,
        env: &crate::name::Environment,
        request: u32,
        message: &Message<'_>,
    ) -> bool {
        let changes = matches!(
            message,
            Message::Register(_) | Message::Unregister(_) | Message::KeepAlive(_)
        );
        if self.storage.available || !changes {
            return false;
        }
        self.reject(from, env.clone(), request, RejectReason::StorageUnavailable);
        true
    }
}
