//! The client's own registrations: request ids, retries, renewals and their answers.

use super::*;

impl<const R: usize> Client<'_, R> {
    pub(super) fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// The wait before the next attempt: doubling from the request timeout, but short
    /// enough that several renewals fit in what is left of a lease.
    pub(super) fn backoff(&self, attempts: u8) -> Duration {
        let doubled = self.config.request_timeout.mul(1 << attempts.min(3));
        doubled
            .min(self.config.lease.div(8))
            .max(self.config.request_timeout)
    }

    pub(super) fn handle_ack(&mut self, ack: Ack) {
        let now = self.now;
        let Some(i) = self.own.iter().position(|o| o.request == ack.request) else {
            return;
        };
        self.answered();
        let directory = self.current_directory();
        let own = &mut self.own[i];
        match own.state {
            OwnState::Registering => {
                own.state = OwnState::Active;
                own.attempts = 0;
                own.send = false;
                own.deadline = now + ack.lease.div(3).max(Duration::from_millis(1));
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
                own.outcome = Some(Outcome::Released { confirmed: true });
            }
            OwnState::Active | OwnState::Done => {}
        }
    }

    pub(super) fn handle_reject(&mut self, reject: Reject) {
        self.answered();
        if reject.reason == RejectReason::Stale {
            // The counter clock was resynchronised from this answer: send again at once.
            for own in self.own.iter_mut() {
                if own.request == reject.request && own.state != OwnState::Done {
                    own.send = true;
                }
            }
            if let Some(s) = self.snapshot.as_mut() {
                if s.request == reject.request {
                    s.send = true;
                }
            }
            return;
        }
        let outcome = || Outcome::Rejected {
            reason: reject.reason,
            directory_environment: reject.directory_environment.clone(),
        };
        // Request 0: the directory could not read the request at all; it concerns every
        // request in flight.
        let all = reject.request == 0;
        for own in self.own.iter_mut() {
            let waiting = matches!(own.state, OwnState::Registering | OwnState::Unregistering);
            if waiting && (all || own.request == reject.request) {
                own.state = OwnState::Done;
                own.send = false;
                own.outcome = Some(outcome());
            }
        }
        if let Some(s) = &self.snapshot {
            if all || s.request == reject.request {
                self.snapshot = None;
                self.snapshot_rejection =
                    Some((reject.reason, reject.directory_environment.clone()));
            }
        }
    }

    /// Writes the next request due, if any, into `buf`.
    pub(super) fn write_request(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        let destination = self.current_directory()?.socket_addr();
        let env = &self.config.environment;
        for i in 0..self.own.len() {
            if !self.own[i].send {
                continue;
            }
            let backoff = self.backoff(self.own[i].attempts);
            let own = &mut self.own[i];
            own.send = false;
            own.deadline = now + backoff;
            let len = match own.state {
                OwnState::Registering => {
                    let Some(registration) = own.registration.clone() else {
                        continue;
                    };
                    let request = RegisterRequest {
                        request: own.request,
                        registrant: self.config.registrant,
                        lease: self.config.lease,
                        registration,
                    };
                    wire::encode(env, &request, buf)
                }
                OwnState::Unregistering => {
                    let request = UnregisterRequest {
                        request: own.request,
                        registrant: self.config.registrant,
                        name: own.name.clone(),
                    };
                    wire::encode(env, &request, buf)
                }
                OwnState::Active | OwnState::Done => continue,
            };
            if let Ok(len) = len {
                return Some(Transmit { destination, len });
            }
        }
        let backoff = self.backoff(self.snapshot.as_ref().map_or(0, |s| s.attempts));
        let interest = self.config.interest.clone().unwrap_or_default();
        let pages = self.config.snapshot_pages.max(1);
        if let Some(s) = self.snapshot.as_mut().filter(|s| s.send) {
            s.send = false;
            s.deadline = now + backoff;
            s.pages_left = pages;
            let request = SnapshotRequest {
                request: s.request,
                max_pages: pages,
                after: s.after.clone(),
                interest,
            };
            if let Ok(len) = wire::encode(env, &request, buf) {
                return Some(Transmit { destination, len });
            }
        }
        None
    }
}
