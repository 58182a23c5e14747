//! Requests: register and unregister (each ordered by its registrant's sequence),
//! undecodable requests, and the replies and rejections queued for `poll_transmit`.

use super::*;

impl Directory<'_> {
    pub(super) fn reply(&mut self, reply: Reply) {
        if self.replies.push_back(reply).is_err() {
            self.stats.replies_dropped += 1;
        }
    }

    pub(super) fn reject(
        &mut self,
        to: SocketAddr,
        env: Environment,
        request: u32,
        reason: RejectReason,
    ) {
        self.send_reject(to, env, request, reason, 0);
    }

    /// Refuses a request older than what the directory holds, with the floor its
    /// sender's next request must exceed.
    pub(super) fn refuse_stale(
        &mut self,
        to: SocketAddr,
        env: Environment,
        request: u32,
        floor: u64,
    ) {
        self.stats.out_of_order += 1;
        self.send_reject(to, env, request, RejectReason::Stale, floor);
    }

    pub(super) fn send_reject(
        &mut self,
        to: SocketAddr,
        env: Environment,
        request: u32,
        reason: RejectReason,
        floor: u64,
    ) {
        self.stats.rejections[reason.index()] += 1;
        let reject = Reject {
            request,
            reason,
            directory_environment: self.config.environment.clone(),
            floor,
        };
        self.reply(Reply::Reject(to, env, reject));
    }

    /// Answers a request that could not be decoded, when the sender can use the answer.
    pub(super) fn handle_undecodable(&mut self, from: SocketAddr, bytes: &[u8], e: DecodeError) {
        self.stats.malformed += 1;
        let reason = RejectReason::for_decode_error(e);
        if let DecodeError::UnsupportedVersion(_) = e {
            if Header::peek_version(bytes).is_some() {
                let env = self.config.environment.clone();
                return self.reject_within_bound(bytes.len(), from, env, 0, reason);
            }
        }
        // A request whose header can be read (whatever its flags) but that is not
        // acceptable gets an answer it can use.
        if let Ok((header, payload)) = Header::parse_with_flags(bytes, u8::MAX) {
            if header.kind.is_request() {
                let request = postcard::take_from_bytes::<u32>(payload).map_or(0, |(r, _)| r);
                let env = header.environment;
                self.reject_within_bound(bytes.len(), from, env, request, reason);
            }
        }
    }

    /// The sequence stored with a Register that makes a name live or changes it: its
    /// own, and with keys at least the directory's clock. Its sender's counter follows
    /// the answer's (never below that clock), so its next requests stay above it; a
    /// request sent before by another process of the registrant that followed this
    /// directory's clock (a predecessor's Unregister still in flight when a restarted
    /// process registers again, say) carries less and is refused `stale`.
    fn sequence_applied(&self, sequence: u64) -> u64 {
        if self.config.keys.is_some() {
            sequence.max(self.clock())
        } else {
            sequence
        }
    }

    pub(super) fn handle_register(
        &mut self,
        from: SocketAddr,
        env: Environment,
        r: RegisterRequest,
    ) {
        let announcements = self.announcements();
        let lease = self.lease_for(r.lease);
        let expires = self.now + lease;
        let name = r.registration.name.clone();
        let found = self.registry.find(name.as_str());
        let held = found.and_then(|s| self.registry.get(s));
        if !held.is_some_and(|e| e.record.is_live())
            && self.over_registration_budget(from, &env, r.request)
        {
            return;
        }
        let source = Some(admission::source_of(from));
        let version = match found {
            Some(slot) => {
                let Some(e) = self.registry.get(slot) else {
                    return;
                };
                let live = e.record.is_live();
                if live && e.record.registrant != r.registrant {
                    return self.reject(from, env, r.request, RejectReason::NameHeld);
                }
                let stored = e.record.sequence;
                let copy = r.sequence == stored && e.record.registrant == r.registrant;
                if copy && live {
                    // A copy of the request applied last: acknowledge it again, change
                    // nothing.
                    let ack = Ack {
                        request: r.request,
                        lease,
                        version: e.record.service.version,
                    };
                    return self.reply(Reply::Ack(from, ack));
                }
                if r.sequence <= stored {
                    // Older than what was applied (a removal, or a newer request).
                    return self.refuse_stale(from, env, r.request, stored);
                }
                let same = live && e.record.service.registration.same_content(&r.registration);
                let sequence = if same {
                    r.sequence
                } else {
                    self.sequence_applied(r.sequence)
                };
                let version = if same {
                    self.stats.renewals += 1;
                    e.record.service.version
                } else {
                    if live {
                        self.stats.changes += 1;
                    } else {
                        self.stats.registrations += 1;
                    }
                    self.next_version()
                };
                self.update(slot, !same, |e| {
                    if !live {
                        e.source = source;
                    }
                    e.record.registrant = r.registrant;
                    e.record.sequence = sequence;
                    e.record.state = RecordState::Live { expires };
                    e.record.ended = Version(0);
                    e.record.counted_from = Version(0);
                    if !same {
                        e.record.service = Service {
                            registration: r.registration,
                            version,
                        };
                        notify::mark_changed(e, announcements);
                    }
                    e.live_version = e.record.service.version;
                });
                if !same {
                    self.schedule_tick();
                }
                version
            }
            None => {
                let unregistered = self
                    .unregistered
                    .floor(name.as_str(), r.registrant, self.now);
                if let Some(floor) = unregistered.filter(|&f| r.sequence <= f) {
                    // Sent before an unregistration of the name that arrived first.
                    return self.refuse_stale(from, env, r.request, floor);
                }
                if self.config.keys.is_some() && r.sequence <= self.dropped_sequence {
                    // Perhaps a replay of a request whose removal was dropped.
                    return self.refuse_stale(from, env, r.request, self.dropped_sequence);
                }
                let version = self.next_version();
                let entry = Entry::new(Record {
                    service: Service {
                        registration: r.registration,
                        version,
                    },
                    registrant: r.registrant,
                    sequence: self.sequence_applied(r.sequence),
                    state: RecordState::Live { expires },
                    ended: Version(0),
                    counted_from: Version(0),
                });
                let Some(slot) = self.insert(entry) else {
                    return self.reject(from, env, r.request, RejectReason::RegistryFull);
                };
                self.stats.registrations += 1;
                self.update(slot, true, |e| {
                    e.source = source;
                    notify::mark_changed(e, announcements);
                });
                self.schedule_tick();
                version
            }
        };
        self.schedule_expiry(expires);
        let ack = Ack {
            request: r.request,
            lease,
            version,
        };
        self.reply(Reply::Ack(from, ack));
    }

    pub(super) fn handle_unregister(
        &mut self,
        from: SocketAddr,
        env: Environment,
        u: UnregisterRequest,
    ) {
        let found = self.registry.find(u.name.as_str());
        let slot = match found.and_then(|s| self.registry.get(s).map(|e| (s, e))) {
            Some((slot, e)) if e.record.is_live() => {
                if e.record.registrant != u.registrant {
                    return self.reject(from, env, u.request, RejectReason::NameHeld);
                }
                if u.sequence <= e.record.sequence {
                    // Older than the registration held: a late request must not undo it.
                    let stored = e.record.sequence;
                    return self.refuse_stale(from, env, u.request, stored);
                }
                slot
            }
            // Already gone: unregistering is idempotent, but its sequence is kept
            // (stored), so that a Register sent before it and arriving after is stale.
            Some((slot, e)) => {
                let version = e.record.service.version;
                let finished = e.record.state == (RecordState::Departed { remaining: 0 });
                let mine = e.record.registrant == u.registrant;
                if u.sequence > e.record.sequence && (mine || finished) {
                    self.update(slot, true, |e| {
                        e.record.registrant = u.registrant;
                        e.record.sequence = u.sequence;
                    });
                }
                let ack = Ack {
                    request: u.request,
                    lease: Duration::ZERO,
                    version,
                };
                return self.reply(Reply::Ack(from, ack));
            }
            None => {
                let until = self.now + self.config.tombstone_retention;
                let name = u.name.as_str();
                self.unregistered
                    .record(name, u.registrant, u.sequence, until);
                let ack = Ack {
                    request: u.request,
                    lease: Duration::ZERO,
                    version: Version(0),
                };
                return self.reply(Reply::Ack(from, ack));
            }
        };
        self.stats.unregisters += 1;
        if let Some(mut e) = self.registry.get_mut(slot) {
            e.record.sequence = u.sequence;
        }
        let version = self.depart(slot);
        let ack = Ack {
            request: u.request,
            lease: Duration::ZERO,
            version,
        };
        self.reply(Reply::Ack(from, ack));
    }

    pub(super) fn transmit_reply(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let reply = self.replies.pop_front()?;
            let env = &self.config.environment;
            let (to, sent) = match &reply {
                Reply::Ack(to, ack) => (*to, wire::encode(env, ack, buf)),
                Reply::KeepAliveAck(to, ack) => (*to, wire::encode(env, ack, buf)),
                Reply::SubscribeAck(to, ack) => (*to, wire::encode(env, ack, buf)),
                Reply::Reject(to, env, reject) => (*to, wire::encode(env, reject, buf)),
            };
            if let Ok(len) = sent {
                return Some(Transmit {
                    destination: to,
                    len,
                });
            }
        }
    }
}
