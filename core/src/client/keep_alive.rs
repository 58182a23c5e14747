//! The registrant's keep-alive: once its registrations are confirmed at the current
//! directory, they are renewed together by one KeepAlive per renewal period instead of
//! one Register each.
//!
//! A registration confirmed at the current directory (acknowledged there, and not
//! changed since) is *kept*. When the first kept registration's renewal falls due (a
//! third of its lease after the attempt that was acknowledged) and no other request of
//! the registrant is in flight, one KeepAlive goes out for all of them (with one in
//! flight, the registrations due renew one Register each, as without keep-alives; a
//! keep-alive in flight when another request starts is given up for them the same
//! way), carrying what the client believes the directory holds for it
//! ([`Holdings`]). It is retried, backed off and failed over exactly as a renewal
//! (every attempt has a fresh request id, and every attempt of a series claims the
//! same registrations: when those kept change, a new series starts). A client has one
//! lease, so one keep-alive serves all its registrations.
//!
//! When the answer holds what the attempt claimed, every kept registration is renewed.
//! When it does not (the directory restarted empty, lost a registration, or holds one
//! the client has given up), or the directory refuses the keep-alive for any reason but
//! `stale` or `storage_unavailable`, every kept registration is sent again as a full
//! Register, which renews or restores it: no other mechanism is needed.

use super::*;
use crate::wire::{Holdings, KeepAliveAck, KeepAliveRequest};

/// The keep-alive in flight, if any.
#[derive(Clone, Debug)]
pub(super) struct KeepAlive {
    /// A keep-alive is in flight (due, or waiting for an answer).
    active: bool,
    /// The attempts sent.
    sent: Attempts,
    /// What they claimed (a change of claim starts a new series of attempts).
    claimed: Holdings,
    attempts: u8,
    send: bool,
    deadline: Instant,
}

impl KeepAlive {
    /// None in flight.
    pub(super) const fn new() -> Self {
        KeepAlive {
            active: false,
            sent: Attempts::NONE,
            claimed: Holdings {
                count: 0,
                digest: 0,
            },
            attempts: 0,
            send: false,
            deadline: Instant::ZERO,
        }
    }

    /// If `request` sent to `from` is one of this keep-alive's attempts: a time no later
    /// than it was sent (see [`Attempts::answered`]) and what the attempts claimed.
    fn attempt(&self, request: u32, from: Senders) -> Option<(Instant, Holdings)> {
        let at = self.sent.answered(request, from)?;
        Some((at, self.claimed))
    }
}

impl<const R: usize> Client<'_, R> {
    /// The registrations kept alive by the keep-alive: confirmed at the current
    /// directory.
    fn kept(&self) -> impl Iterator<Item = &Registration> {
        self.own
            .iter()
            .filter(|o| o.state == OwnState::Active)
            .filter_map(Own::registration)
    }

    /// When the keep-alive next needs `handle_timeout`: its retry, or the first
    /// renewal due among the kept registrations.
    pub(super) fn keep_alive_timeout(&self, can_send: bool) -> Option<Instant> {
        let k = &self.keep_alive;
        if k.active {
            if k.send && can_send {
                return Some(self.now);
            }
            return (!k.send).then_some(k.deadline);
        }
        self.own
            .iter()
            .filter(|o| o.state == OwnState::Active)
            .map(|o| o.deadline)
            .min()
    }

    /// Time has reached `now`: starts the keep-alive when a kept registration's renewal
    /// is due, or counts an unanswered attempt. True when the current directory, never
    /// having answered, has had `max_attempts` of them.
    ///
    /// While another request of the registrant is in flight (a registration, a change,
    /// an unregistration), the directory may already hold what the client does not
    /// count yet: a keep-alive would not match, and renews nothing. The registrations
    /// due then renew one Register each, as without keep-alives; a keep-alive already
    /// in flight when such a request starts is given up for them (its answers may
    /// never come back in time, and a Register renews whether or not its answer does).
    pub(super) fn keep_alive_tick(&mut self, fresh: bool, max_attempts: u8) -> bool {
        let now = self.now;
        let due = |o: &Own| o.state == OwnState::Active && o.deadline <= now;
        let in_flight = self.own.iter().any(Own::waiting);
        if self.keep_alive.active && in_flight {
            self.drop_keep_alive();
        }
        if !self.keep_alive.active {
            if !self.own.iter().any(due) {
                return false;
            }
            if in_flight {
                for own in self.own.iter_mut().filter(|o| due(o)) {
                    own.state = OwnState::Registering;
                    own.sent.clear();
                    own.send = true;
                }
                return false;
            }
            let k = &mut self.keep_alive;
            *k = KeepAlive::new();
            k.active = true;
            k.send = true;
            return false;
        }
        let k = &mut self.keep_alive;
        if k.send || k.deadline > now {
            return false;
        }
        k.attempts = k.attempts.saturating_add(1);
        k.send = true;
        fresh && k.attempts >= max_attempts
    }

    /// Forgets the keep-alive in flight (the client moved: its registrations register
    /// again in full).
    pub(super) fn drop_keep_alive(&mut self) {
        self.keep_alive = KeepAlive::new();
    }

    /// Writes the keep-alive, if due, with `sequence`, to `destination` (the known
    /// directory `directory`).
    pub(super) fn write_keep_alive(
        &mut self,
        sequence: u64,
        directory: u8,
        destination: SocketAddr,
        buf: &mut [u8],
    ) -> Option<Transmit> {
        if !(self.keep_alive.active && self.keep_alive.send) {
            return None;
        }
        let mut held = Holdings::default();
        for registration in self.kept() {
            held.add(registration);
        }
        if held.count == 0 {
            // Nothing left to keep alive.
            self.drop_keep_alive();
            return None;
        }
        let lease = self
            .own
            .iter()
            .filter(|o| o.state == OwnState::Active)
            .map(|o| o.granted)
            .min()
            .unwrap_or(self.config.lease);
        let interval = self.retry_interval(self.keep_alive.attempts, lease);
        let now = self.now;
        let k = &mut self.keep_alive;
        if k.claimed != held {
            // Every attempt of a series claims the same.
            k.sent.clear();
            k.claimed = held;
        }
        let request = k.sent.send(&mut self.next_request, directory, now);
        k.send = false;
        k.deadline = now + interval;
        let message = KeepAliveRequest {
            request,
            registrant: self.config.registrant,
            sequence,
            lease: self.config.lease,
            held,
        };
        let len = wire::encode(&self.config.environment, &message, buf).ok()?;
        self.silent_since.get_or_insert(now);
        self.note_sent(request, sequence);
        Some(Transmit { destination, len })
    }

    /// An answer to the keep-alive: renews every kept registration when the directory
    /// holds what the attempt claimed, registers them all again otherwise.
    pub(super) fn handle_keep_alive_ack(&mut self, ack: KeepAliveAck, from: SocketAddr) {
        if !self.keep_alive.active {
            return;
        }
        let senders = self.senders(from);
        let Some((attempt, claimed)) = self.keep_alive.attempt(ack.request, senders) else {
            return;
        };
        if self.heard_from_current(from) {
            self.answered();
        }
        self.drop_keep_alive();
        if ack.held != claimed {
            return self.register_kept_again();
        }
        let now = self.now;
        // The leases run from when the directory received the attempt, after it was
        // sent: renew a third of the lease after sending (never sooner than a
        // registration's own acknowledgement asked for).
        let next = (attempt + ack.lease.div(3)).max(now + Duration::from_millis(1));
        for own in self.own.iter_mut().filter(|o| o.state == OwnState::Active) {
            own.granted = ack.lease;
            own.deadline = own.deadline.max(next);
        }
    }

    /// True when `reject` answers an attempt of the keep-alive in flight (request 0
    /// from the current directory answers every request in flight there).
    pub(super) fn refuses_keep_alive(&self, reject: &Reject, from: SocketAddr) -> bool {
        let k = &self.keep_alive;
        let all = reject.request == 0 && self.heard_from_current(from);
        let senders = self.senders(from);
        k.active && (all || (reject.request != 0 && k.attempt(reject.request, senders).is_some()))
    }

    /// The directory refused the keep-alive for `reason` (the counter was already
    /// resynchronised from a `stale` answer).
    pub(super) fn keep_alive_refused(&mut self, reason: RejectReason) {
        match reason {
            RejectReason::Stale => self.keep_alive.send = true,
            RejectReason::StorageUnavailable => {
                let wait = self.backoff(u8::MAX);
                let k = &mut self.keep_alive;
                k.attempts = 0;
                k.send = false;
                k.deadline = self.now + wait;
            }
            // Whatever else the directory says, full Registers will tell.
            _ => {
                self.drop_keep_alive();
                self.register_kept_again();
            }
        }
    }

    /// Sends every kept registration again as a full Register.
    fn register_kept_again(&mut self) {
        let now = self.now;
        for own in self.own.iter_mut().filter(|o| o.state == OwnState::Active) {
            own.state = OwnState::Registering;
            own.sent.clear();
            own.attempts = 0;
            own.send = true;
            own.deadline = now;
        }
    }
}
