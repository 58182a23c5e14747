//! The client's own registrations: request ids, retries, renewals and their answers.
//!
//! Every attempt (first sending, retry, renewal) carries a fresh request id, and an
//! answer counts only if it comes from the directory that attempt went to. Retries are
//! paced by the lease: at most a fortieth of it apart, so that a renewal started at a
//! third of the lease has about 26 attempts before the lease can run out (see
//! "Guarantees" in docs/PROTOCOL.md for what that gives under loss).

use super::*;

/// Retries of a request are at most the lease divided by this apart.
pub(super) const RETRIES_PER_LEASE: u64 = 40;
/// Retries are never closer than this.
const MIN_RETRY: Duration = Duration::from_millis(10);

impl Own {
    /// Waiting for an answer.
    pub(super) fn waiting(&self) -> bool {
        matches!(self.state, OwnState::Registering | OwnState::Unregistering)
    }
}

impl<const R: usize> Client<'_, R> {
    /// A request id for a request sent once (not a series of attempts).
    pub(super) fn request_id(&mut self) -> u32 {
        take_ids(&mut self.next_request, 1)
    }

    /// The wait before the next attempt of a snapshot or probe: doubling from the
    /// request timeout, but short enough that several fit in a lease.
    pub(super) fn backoff(&self, attempts: u8) -> Duration {
        let doubled = self.config.request_timeout.mul(1 << attempts.min(3));
        doubled
            .min(self.config.lease.div(8))
            .max(self.config.request_timeout)
    }

    /// The wait before the next attempt of a registration, renewal or unregistration
    /// whose lease is `lease`: doubling from the request timeout, at most a fortieth of
    /// the lease.
    pub(super) fn retry_interval(&self, attempts: u8, lease: Duration) -> Duration {
        let doubled = self.config.request_timeout.mul(1 << attempts.min(3));
        doubled.min(lease.div(RETRIES_PER_LEASE)).max(MIN_RETRY)
    }

    pub(super) fn handle_ack(&mut self, ack: Ack, from: SocketAddr) {
        let now = self.now;
        let senders = self.senders(from);
        // A registration is answered with the lease granted, an unregistration with
        // none: an answer of the other kind (a late one to an earlier process's request
        // of the same id, or a forged one) is not this request's. Taken, a zero lease
        // would have the client renew, and fail over, at once and for ever.
        let Some((i, sent_at)) = self
            .own
            .iter()
            .enumerate()
            .filter(|(_, o)| o.waiting())
            .filter(|(_, o)| (o.state == OwnState::Registering) == (ack.lease > Duration::ZERO))
            .find_map(|(i, o)| o.sent.answered(ack.request, senders).map(|at| (i, at)))
        else {
            return;
        };
        if self.heard_from_current(from) {
            self.answered();
        }
        let directory = self.current_directory();
        let own = &mut self.own[i];
        match own.state {
            OwnState::Registering => {
                own.state = OwnState::Active;
                own.attempts = 0;
                own.send = false;
                own.sent.clear();
                own.granted = ack.lease;
                // The lease runs from when the directory received the attempt, which is
                // after it was sent: renew a third of the lease after sending.
                own.deadline = (sent_at + ack.lease.div(3)).max(now + Duration::from_millis(1));
                if !own.confirmed {
                    own.confirmed = true;
                    if let Some(directory) = directory {
                        own.outcome = Some(Outcome::Registered {
                            lease: ack.lease,
                            directory,
                        });
                    }
                }
            }
            OwnState::Unregistering => {
                own.state = OwnState::Done;
                own.send = false;
                own.sent.clear();
                own.outcome = Some(Outcome::Released { confirmed: true });
            }
            OwnState::Active | OwnState::Done => {}
        }
    }

    pub(super) fn handle_reject(&mut self, reject: Reject, from: SocketAddr) {
        // Request 0: the directory could not read the request at all; it concerns every
        // request in flight to it (the current directory).
        let all = reject.request == 0 && self.heard_from_current(from);
        let senders = self.senders(from);
        let mine = |o: &Own| {
            o.waiting()
                && (all
                    || (reject.request != 0 && o.sent.answered(reject.request, senders).is_some()))
        };
        let snapshot = self
            .snapshot
            .as_ref()
            .is_some_and(|s| self.heard_from_current(from) && (all || s.request == reject.request));
        let keep_alive = self.refuses_keep_alive(&reject, from);
        if !self.own.iter().any(mine) && !snapshot && !keep_alive {
            return;
        }
        if self.heard_from_current(from) {
            // (An unregistration's attempts outlive a move: the answer may come from
            // the directory left, which says nothing of the current one.)
            self.answered();
        }
        if reject.reason == RejectReason::Stale {
            // The counter clock was resynchronised from this answer, and the next
            // counter and sequence go above its floor (a floor of absurd size, which
            // only a forgery carries, is capped so the counter never saturates and
            // repeats itself): send again at once.
            self.counter = self.counter.max(reject.floor.min(u64::MAX / 2));
            for own in self.own.iter_mut().filter(|o| mine(o)) {
                own.send = true;
            }
            if let Some(s) = self.snapshot.as_mut().filter(|_| snapshot) {
                s.send = true;
            }
            if keep_alive {
                self.keep_alive_refused(reject.reason);
            }
            return;
        }
        if reject.reason == RejectReason::StorageUnavailable {
            // Nothing was granted or released: keep the request and send it again after
            // the longest back-off (the directory answered: this is no silence).
            self.stats.storage_unavailable += 1;
            let wait = self.backoff(u8::MAX);
            let now = self.now;
            for own in self.own.iter_mut().filter(|o| mine(o)) {
                own.attempts = 0;
                own.send = false;
                own.deadline = now + wait;
            }
            if keep_alive {
                self.keep_alive_refused(reject.reason);
            }
            return;
        }
        let outcome = || Outcome::Rejected {
            reason: reject.reason,
            directory_environment: reject.directory_environment.clone(),
        };
        for own in self.own.iter_mut().filter(|o| mine(o)) {
            own.state = OwnState::Done;
            own.send = false;
            own.sent.clear();
            own.outcome = Some(outcome());
        }
        if snapshot {
            self.snapshot.clear();
            self.snapshot_rejection = Some((reject.reason, reject.directory_environment.clone()));
        }
        // After the requests in flight are settled: the kept registrations it sends
        // again are not among them.
        if keep_alive {
            self.keep_alive_refused(reject.reason);
        }
    }

    /// Writes the next request due, if any, into `buf`, with `sequence`.
    pub(super) fn write_request(&mut self, sequence: u64, buf: &mut [u8]) -> Option<Transmit> {
        if let Some(t) = self.write_probe(sequence, buf) {
            return Some(t);
        }
        let now = self.now;
        let current = self.current?;
        let destination = self.directories[current].location.socket_addr();
        // The known directories are at most MAX_DIRECTORIES (checked with `Senders`).
        let directory = current as u8;
        for i in 0..self.own.len() {
            if !self.own[i].send || !self.own[i].waiting() {
                continue;
            }
            if self.own[i].state == OwnState::Registering && self.own[i].registration().is_none() {
                continue;
            }
            let interval = self.retry_interval(self.own[i].attempts, self.own[i].granted);
            let env = &self.config.environment;
            let own = &mut self.own[i];
            let request = own.sent.send(&mut self.next_request, directory, now);
            own.send = false;
            own.deadline = now + interval;
            let len = match (own.registration(), own.state) {
                (Some(registration), OwnState::Registering) => {
                    let request = RegisterRequest {
                        request,
                        registrant: self.config.registrant,
                        sequence,
                        lease: self.config.lease,
                        registration: registration.clone(),
                    };
                    wire::encode(env, &request, buf)
                }
                _ => {
                    let request = UnregisterRequest {
                        request,
                        registrant: self.config.registrant,
                        sequence,
                        name: own.name().clone(),
                    };
                    wire::encode(env, &request, buf)
                }
            };
            if let Ok(len) = len {
                self.silent_since.get_or_insert(now);
                self.note_sent(request, sequence);
                return Some(Transmit { destination, len });
            }
        }
        if let Some(t) = self.write_keep_alive(sequence, directory, destination, buf) {
            return Some(t);
        }
        if let Some(t) = self.write_subscription(sequence, directory, destination, buf) {
            return Some(t);
        }
        let backoff = self.backoff(self.snapshot.as_ref().map_or(0, |s| s.attempts));
        let interest = self.config.interest_or_all();
        let pages = self.config.snapshot_pages.max(1);
        let cookie = self.cookie_for(destination);
        if let Some(s) = self.snapshot.as_mut().filter(|s| s.send) {
            s.send = false;
            s.overtaken = false;
            s.deadline = now + backoff;
            s.pages_left = pages;
            let request = SnapshotRequest {
                request: s.request,
                max_pages: pages,
                after: s.after.clone(),
                interest,
                cookie,
                since: s.since,
            };
            if let Ok(len) = wire::encode(&self.config.environment, &request, buf) {
                self.silent_since.get_or_insert(now);
                self.note_sent(request.request, sequence);
                return Some(Transmit { destination, len });
            }
        }
        None
    }
}
