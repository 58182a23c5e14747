//! Which directory the client talks to: beacons, answers, switching and failing over.
//!
//! A directory that has never answered is left after `max_attempts` unanswered
//! attempts. One that has answered is a directory that works: it is left only when it
//! has been silent for `failover_after` while another directory answers a probe, or
//! for twice that long whatever happens. Until then the client keeps renewing there, so
//! transient loss never moves a registration.
//!
//! A listener whose directory's beacons go quiet (for the directory timeout, or for half
//! of it while another publishing directory beacons) first checks it with a one-page
//! snapshot request, and leaves only if [`CHECK_ATTEMPTS`] attempts, one request timeout
//! apart, go unanswered: beacons lost to loss look the same as a dead directory until it
//! is asked.

use super::*;

/// Attempts of a listener's check of its quiet directory before it leaves: at 10 % loss
/// each way, all five round trips are lost with probability 0.19^5 = 2.5 × 10^-4.
pub(super) const CHECK_ATTEMPTS: u8 = 5;

impl<const R: usize> Client<'_, R> {
    /// True when `from` is a known directory.
    pub(super) fn is_directory(&self, from: SocketAddr) -> bool {
        self.directories.iter().any(|d| d.location.is(from))
    }

    /// True when `from` is the current directory.
    pub(super) fn heard_from_current(&self, from: SocketAddr) -> bool {
        match self.current_directory() {
            Some(d) => d.is(from),
            None => false,
        }
    }

    /// The current directory answered: it is alive and works.
    pub(super) fn answered(&mut self) {
        self.switches = 0;
        self.unreachable_told = false;
        self.silent_since = None;
        self.probe = None;
        if let Some(i) = self.current {
            self.directories[i].last_heard = Some(self.now);
            self.directories[i].answered = true;
        }
    }

    /// How the current directory stands: `Some(true)` when it is gone (leave it now),
    /// `Some(false)` when it is silent long enough to probe the others.
    pub(super) fn silence(&self) -> Option<bool> {
        let since = self.silent_since?;
        let current = &self.directories[self.current?];
        if !current.answered {
            return None;
        }
        let silence = self.now.saturating_since(since);
        let limit = self.failover_limit();
        if silence >= limit.mul(2) {
            Some(true)
        } else if silence >= limit {
            Some(false)
        } else {
            None
        }
    }

    /// How long the current directory may stay silent before the client probes others:
    /// `failover_after`, but at most a quarter of the shortest lease it holds, so that a
    /// registrant whose directory died renews elsewhere (after at most twice this)
    /// before its lease runs out where the registry is shared; never less than the
    /// request timeout (a lease granted absurdly short must not make the client fail
    /// over at every wake-up).
    pub(super) fn failover_limit(&self) -> Duration {
        let lease = self
            .own
            .iter()
            .filter(|o| o.waiting() || o.state == OwnState::Active)
            .map(|o| o.granted)
            .min()
            .unwrap_or(self.config.lease);
        self.config
            .failover_after
            .min(lease.div(4))
            .max(self.config.request_timeout)
    }

    /// When the silence of the current directory next changes what the client does.
    pub(super) fn silence_deadline(&self) -> Option<Instant> {
        let since = self.silent_since?;
        if !self.directories[self.current?].answered {
            return None;
        }
        let limit = self.failover_limit();
        [since + limit, since + limit.mul(2)]
            .into_iter()
            .find(|&t| t > self.now)
    }

    /// The current directory is silent: probe the next other directory (one probe at a
    /// time, each to the next one in turn).
    pub(super) fn probe_others(&mut self) {
        let now = self.now;
        if self
            .probe
            .as_ref()
            .is_some_and(|p| p.deadline > now || p.send)
        {
            return;
        }
        let n = self.directories.len();
        let Some(current) = self.current else { return };
        let after = self.probe.map_or(current, |p| p.target);
        let Some(target) = (1..=n).map(|k| (after + k) % n).find(|&i| i != current) else {
            return;
        };
        let request = self.request_id();
        self.probe = Some(Probe {
            target,
            request,
            attempts: 0,
            send: true,
            deadline: now + self.backoff(0),
        });
    }

    /// A listener's directory is quiet: ask it (a one-page snapshot request) whether it
    /// is alive. It is left only if `max_attempts` attempts go unanswered.
    pub(super) fn check_current(&mut self) {
        let Some(target) = self.current else { return };
        if self.check.is_some() {
            return;
        }
        let request = self.request_id();
        self.check = Some(Probe {
            target,
            request,
            attempts: 0,
            send: true,
            deadline: self.now,
        });
    }

    /// Retransmits the check of the current directory, or gives it up: true when the
    /// current directory left all [`CHECK_ATTEMPTS`] attempts unanswered. They go one
    /// request timeout apart, so a dead publisher is left within the directory timeout
    /// while a few lost round trips at a lossy directory that works do not move a
    /// listener away from what it registers.
    pub(super) fn check_timeout(&mut self) -> bool {
        let now = self.now;
        let backoff = self.config.request_timeout;
        let Some(c) = self.check.as_mut() else {
            return false;
        };
        if c.send || c.deadline > now {
            return false;
        }
        c.attempts = c.attempts.saturating_add(1);
        if c.attempts >= CHECK_ATTEMPTS.max(self.config.max_attempts) {
            self.check = None;
            return true;
        }
        c.send = true;
        c.deadline = now + backoff;
        false
    }

    /// Writes the probe or the check, if one is due, with counter `sequence`.
    pub(super) fn write_probe(&mut self, sequence: u64, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        let check_wait = self.config.request_timeout;
        let p = match self.check.as_mut().filter(|c| c.send) {
            Some(c) => {
                c.deadline = now + check_wait;
                c
            }
            None => self.probe.as_mut().filter(|p| p.send)?,
        };
        p.send = false;
        let request = p.request;
        let destination = self.directories.get(p.target)?.location.socket_addr();
        let environment = &self.config.environment;
        let len = if LISTEN {
            let probe = SnapshotRequest {
                request,
                max_pages: 1,
                after: None,
                interest: self.config.interest_or_all(),
                cookie: self.cookie_for(destination),
                since: None,
            };
            wire::encode(environment, &probe, buf)
        } else {
            // A registrant's probe is a keep-alive that claims nothing: it renews nothing
            // (the probed directory holds nothing for it, or holds more than nothing),
            // any answer shows the directory alive, and a client without discovery
            // then decodes no page and keeps no cookie.
            let probe = wire::KeepAliveRequest {
                request,
                registrant: self.config.registrant,
                sequence,
                lease: self.config.lease,
                held: wire::Holdings::default(),
            };
            wire::encode(environment, &probe, buf)
        }
        .ok()?;
        self.note_sent(request, sequence);
        Some(Transmit { destination, len })
    }

    /// An answer to a probe: the probed directory is alive while the current one is
    /// silent, so the client moves there. True when it was one.
    pub(super) fn probe_answered(&mut self, from: SocketAddr, request: u32) -> bool {
        if let Some(c) = self.check {
            let target = self
                .directories
                .get(c.target)
                .map(|d| d.location.socket_addr());
            if c.request == request && target == Some(from) {
                self.check = None;
                if self.current == Some(c.target) {
                    self.answered();
                }
                return true;
            }
        }
        let Some(p) = self.probe else { return false };
        let target = self
            .directories
            .get(p.target)
            .map(|d| d.location.socket_addr());
        if p.request != request || target != Some(from) {
            return false;
        }
        self.probe = None;
        if self.silence().is_some() {
            self.switch_to(p.target);
            self.answered();
        }
        true
    }

    pub(super) fn handle_beacon(&mut self, from: SocketAddr, beacon: Beacon) {
        let now = self.now;
        if !beacon.directory.is(from) {
            // Not sent by the directory it names.
            self.stats.foreign_directory += 1;
            return;
        }
        let index = match self
            .directories
            .iter()
            .position(|d| d.location == beacon.directory)
        {
            Some(i) => i,
            None => {
                let learned = KnownDirectory::new(beacon.directory);
                if self.directories.push(learned).is_err() {
                    return;
                }
                self.directories.len() - 1
            }
        };
        self.directories[index].last_heard = Some(now);
        self.directories[index].publishing = beacon.publishing;
        self.last_beacon = Some(now);
        if SUBSCRIBE && !beacon.publishing && self.current == Some(index) && self.is_subscribed() {
            // The directory delivering to this subscriber stopped publishing (it says so
            // by unicast to subscribers, who hear no group): follow another at once, if
            // one is known (otherwise stay: the publisher of a shared table delivers).
            if self.directories.len() > 1 {
                self.fail_over();
            }
            return;
        }
        if self.current.is_none() {
            self.switch_to(index);
        }
        // Only a publishing directory announces: a listener following a replica (or a
        // directory silent for half the directory timeout, a publisher that died and
        // was replaced) moves to the publisher as soon as it hears it.
        // A publisher's beacons that merely went missing (loss) are told from a dead
        // publisher by asking it: the listener leaves only if that check goes unanswered.
        let quiet = self.config.directory_timeout.div(2);
        let (replica, silent) = self.current.map_or((false, false), |c| {
            let d = &self.directories[c];
            let other = c != index;
            let silent = d
                .last_heard
                .is_some_and(|t| now.saturating_since(t) > quiet);
            (other && !d.publishing, other && silent)
        });
        if self.listening() && beacon.publishing {
            if replica {
                self.switch_to(index);
                return;
            }
            if silent {
                self.check_current();
            }
        }
        if self.current != Some(index) || !self.listening() || self.snapshot.is_some() {
            return;
        }
        // Missed a change: the directory has handed out a version not heard here.
        let behind = beacon.as_of > self.chain.heard();
        // Missed a registration (a listener of everything can count, and digest): the
        // count or the digest differs at two beacons in a row (one may cross an
        // announcement in flight).
        let everything = self
            .config
            .interest
            .as_ref()
            .is_some_and(|i| i.patterns().is_empty());
        let fits = beacon.services as usize <= self.table.capacity();
        let miscounted = everything
            && fits
            && (self.live_count() != beacon.services as usize
                || (beacon.digest != 0 && self.digest() != beacon.digest));
        let confirmed = miscounted && self.miscounted;
        self.miscounted = miscounted && !confirmed;
        if confirmed {
            self.request_snapshot(now);
        } else if behind {
            self.request_repair();
        }
    }

    /// Makes directory `index` the current one and starts over there.
    pub(super) fn switch_to(&mut self, index: usize) {
        let now = self.now;
        self.current = Some(index);
        let location = self.directories[index].location;
        self.directory_changed = Some(location);
        self.silent_since = None;
        self.probe = None;
        self.check = None;
        self.drop_keep_alive();
        for own in self.own.iter_mut() {
            match own.state {
                OwnState::Registering | OwnState::Active => {
                    // Registered at the old directory is not registered here.
                    own.sent.clear();
                    own.state = OwnState::Registering;
                    own.send = true;
                    own.attempts = 0;
                    own.deadline = now;
                }
                OwnState::Unregistering => {
                    // Released at the old directory is released: a late answer to an
                    // attempt sent there still counts.
                    own.send = true;
                    own.attempts = 0;
                    own.deadline = now;
                }
                OwnState::Done => {}
            }
        }
        if self.listening() {
            self.grace_until = now + self.config.failover_grace;
            self.follow_afresh();
        }
        // A subscriber's first delivery at the new directory is a snapshot.
        if SUBSCRIBE {
            self.subscribe_afresh();
        }
        if (self.listening() && !self.is_subscribed()) || self.snapshot.is_some() {
            self.request_snapshot(now);
        }
    }

    /// The current directory did not answer: move to the next one.
    pub(super) fn fail_over(&mut self) {
        if self.directories.is_empty() {
            return;
        }
        self.switches += 1;
        if self.switches >= self.directories.len() && !self.unreachable_told {
            self.unreachable_told = true;
            self.unreachable_pending = true;
        }
        let next = self
            .publisher_heard()
            .unwrap_or_else(|| self.current.map_or(0, |i| (i + 1) % self.directories.len()));
        if Some(next) == self.current {
            // The only directory: keep trying it.
            return;
        }
        self.switch_to(next);
    }

    /// For a listener: another directory whose beacons say it publishes, heard within
    /// the directory timeout.
    pub(super) fn publisher_heard(&self) -> Option<usize> {
        if !self.listening() {
            return None;
        }
        let timeout = self.config.directory_timeout;
        self.directories.iter().position(|d| {
            Some(d.location) != self.current_directory()
                && d.publishing
                && d.last_heard
                    .is_some_and(|t| self.now.saturating_since(t) <= timeout)
        })
    }
}
