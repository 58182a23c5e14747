//! Directories that share a registry through a replicated store: publishing or not,
//! holding expiry, taking the store's records (apply, merge, forget, discard), and
//! restoring them at start-up.

use super::*;

/// How far past the newest version restored, and past its version clock, a restarted
/// directory's versions start: one second of the version clock, far more than the
/// links a run announces after the last version it stores (about one per change), and
/// soon caught up by a wall clock.
const RESTORE_MARGIN: u64 = 1_000_000;

impl Directory<'_> {
    /// Puts back a record read from storage at start-up. A live record's lease ends no
    /// sooner than `restore_grace` from `now` and no later than `max_lease` from `now`
    /// (see [`DirectoryConfig::restore_grace`]); a departed record sends the
    /// notifications it still owed, and a finished one is kept as a tombstone for the
    /// retention time from now. In a full registry, finished removals give way (and are
    /// reported removed); only live entries and removals still owing notifications can
    /// make it refuse.
    pub fn restore(
        &mut self,
        now: Instant,
        mut record: Record,
    ) -> Result<(), crate::RegistryError> {
        self.observe(now);
        // This run's versions start past every version the last run may have handed
        // out, and a repair or delivery since one of those is answered with a
        // snapshot: a restored state carries no stamp (no announcement of this run
        // carried it), so changes since then would leave it out. The version clock,
        // started from the wall clock, is past them only while no clock ran ahead of
        // it: a peer of a shared store whose clock does (or this host's clock set
        // back) leaves restored versions above it, and the last run's links (which
        // store nothing) a few versions above those. So the versions start a margin
        // past both the newest restored and the clock (past the newest restored
        // alone, a run restarted just before that stored nothing started where this
        // one would, and handed out versions past its start).
        let start = record.service.version.0.max(self.clock());
        let past = Version(start.saturating_add(RESTORE_MARGIN));
        self.last_version = self.last_version.max(past);
        self.repair_floor = self.repair_floor.max(Version(past.0.saturating_add(1)));
        // The chain starts there too: this run's first link names it as `previous`, so a
        // listener that heard less (a change written to a shared store while this
        // directory was down is restored here unannounced) sees a link missing and asks,
        // and is answered with a snapshot. From the version clock, a listener whose
        // `as_of` a faster peer's versions had taken past it took that first link as
        // following what it held, and kept the state the change replaced (history seed
        // 4372812).
        self.chain = self.chain.max(past);
        if let RecordState::Live { expires } = record.state {
            let grace = self.config.restore_grace.min(self.config.max_lease);
            let expires = expires
                .max(self.now + grace)
                .min(self.now + self.config.max_lease);
            record.state = RecordState::Live { expires };
        }
        let state = record.state;
        let mut entry = Entry::new(record);
        entry.reap_at = self.now + self.config.tombstone_retention;
        let slot = match self.registry.find(entry.record.name().as_str()) {
            Some(slot) => {
                let pending = &mut self.pending;
                let dirty = &mut self.dirty;
                Self::modify(&mut self.registry, pending, slot, |e| {
                    if e.dirty {
                        *dirty -= 1;
                    }
                    entry.evicted = e.evicted.take();
                    *e = entry;
                });
                slot
            }
            None => {
                if self.registry.is_full() && self.make_room_to_restore(&mut entry)? {
                    return Ok(());
                }
                self.registry
                    .insert(entry)
                    .map_err(|_| crate::RegistryError::Full)?
            }
        };
        match state {
            RecordState::Live { expires } => self.schedule_expiry(expires),
            RecordState::Departed { remaining } => {
                if remaining > 0 {
                    let publishing = self.publishing;
                    self.update(slot, false, |e| e.due = publishing);
                    self.schedule_tick();
                }
            }
        }
        Ok(())
    }

    /// Restoring `entry` into a full registry: at start-up nothing older is on its way,
    /// so any finished removal may go. A finished removal being restored goes itself
    /// (true: nothing to insert); otherwise the oldest held one makes room. Either way
    /// its removal is reported by an entry that carries none.
    pub(super) fn make_room_to_restore(
        &mut self,
        entry: &mut Entry,
    ) -> Result<bool, crate::RegistryError> {
        let full = crate::RegistryError::Full;
        if entry.record.state == (RecordState::Departed { remaining: 0 }) {
            let carrier = self
                .registry
                .iter()
                .find(|(_, e)| e.evicted.is_none())
                .map(|(slot, _)| slot)
                .ok_or(full)?;
            self.raise_floors(&entry.record);
            if let Some(mut e) = self.registry.get_mut(carrier) {
                e.evicted = Some(entry.record.name().clone());
                self.unreported += 1;
            }
            return Ok(true);
        }
        let (_, victim) = self
            .registry
            .iter()
            .filter(|(_, e)| e.evicted.is_none())
            .filter(|(_, e)| e.record.state == RecordState::Departed { remaining: 0 })
            .map(|(slot, e)| (e.reap_at, slot))
            .min()
            .ok_or(full)?;
        let gone = self.drop_slot(victim).ok_or(full)?;
        entry.evicted = Some(gone.record.service.registration.name);
        self.unreported += 1;
        Ok(false)
    }

    /// Makes this directory the publisher of its group, or a replica. A single directory
    /// publishes (the default). Directories that share their registry through a
    /// replicated store elect one publisher: it announces changes, repeats them, counts
    /// every removal's notifications, sweeps the registry and expires leases. A replica
    /// answers requests, stores what they change, takes other directories' changes
    /// through [`apply`](Self::apply), beacons (as not publishing) and announces
    /// nothing, so listeners get one copy of each announcement.
    ///
    /// A new publisher beacons at once (listeners that are behind ask it for a
    /// snapshot). It may be behind the store (changes reach it up to the replication
    /// bound late), so it first catches up: until its shell calls
    /// [`caught_up`](Self::caught_up), or `replication_bound` has passed, it neither
    /// announces, sweeps nor expires, and answers no snapshot with pages. Then it
    /// starts a sweep, sends the notifications its predecessor still owed (as last
    /// stored) and expires the leases that ran out meanwhile.
    pub fn set_publishing(&mut self, now: Instant, publishing: bool) {
        self.observe(now);
        if publishing == self.publishing {
            return;
        }
        self.publishing = publishing;
        // Subscribers hear no beacon on the group (that is why they subscribed): each is
        // told by one of its own, at once (and again at every beacon while it is held),
        // rather than at its next renewal.
        self.subscribers.demoted_from = (!publishing).then_some(0);
        self.beacon_due = true;
        self.next_beacon = self.now + self.config.beacon_interval;
        self.sweep_due = false;
        self.sweep_cursor = None;
        if publishing {
            self.start_catch_up();
            self.next_sweep = self.now;
            self.next_expiry = Some(self.now);
            for slot in 0..self.registry.len() {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    if let RecordState::Departed { remaining } = e.record.state {
                        e.due = remaining > 0;
                    }
                });
            }
            self.schedule_tick();
        } else {
            self.catch_up_until = None;
            for slot in 0..self.registry.len() {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.announce = false;
                    e.repeats = 0;
                    e.due = false;
                });
            }
            self.next_tick = None;
        }
    }

    /// Allows or holds lease expiry (allowed by default). A shell whose replicated store
    /// is unreachable holds it: renewals made through other directories no longer reach
    /// this one, and expiring on what it alone has seen would announce live services
    /// unregistered. Allowing it again expires at once whatever ran out meanwhile
    /// (after the shell has [applied](Self::apply) what it missed).
    pub fn set_expiring(&mut self, now: Instant, expiring: bool) {
        self.observe(now);
        if expiring && !self.expiring {
            self.next_expiry = Some(self.now);
        }
        self.expiring = expiring;
    }

    /// Takes a record from the replicated store: a change this or another directory
    /// made. A newer version replaces what is held; the same version merges (the later
    /// lease expiry, the fewer notifications still owed, the higher sequence), so a
    /// directory's own writes coming back are harmless; an older version is ignored
    /// (but an older removal of the registration whose removal is held counts the
    /// notifications it sent, as a newer one does: see `continue_removal`),
    /// and so is a record for a name not held that is not newer than a tombstone
    /// already dropped (a late copy of something removed). A publisher announces what
    /// changed (a departed record: the notifications it still owes). Nothing applied is
    /// reported through [`poll_event`](Self::poll_event): it is stored already (but a
    /// tombstone evicted to make room for it is reported removed).
    ///
    /// Between records of one registrant the later request (the higher sequence) wins
    /// whatever the versions, unless both are removals: when the versions say otherwise
    /// (a directory that had not yet seen the later request applied the earlier one), the
    /// winner is kept at a new version, newer than both, stored and announced again. A
    /// live record for a name not held, whose registrant unregistered it here since
    /// (with a higher sequence), is removed at once.
    pub fn apply(&mut self, now: Instant, mut record: Record) -> Result<(), crate::RegistryError> {
        self.observe(now);
        if record.service.version > self.last_version {
            self.last_version = record.service.version;
        }
        let name = record.name().as_str();
        let slot = match self.registry.find(name) {
            Some(slot) => {
                let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
                    return Ok(());
                };
                let later = if record.service.version == held.service.version {
                    match same_version_conflict(held, &record) {
                        Some(later) => Some(later),
                        None => {
                            self.merge(slot, &record);
                            return Ok(());
                        }
                    }
                } else {
                    later_request(held, &record)
                };
                if let Some(later) = later {
                    // The winner, if a removal, ended the live state that lost.
                    let lost = if later { held } else { &record };
                    let ended = if lost.is_live() {
                        lost.service.version
                    } else {
                        lost.ended
                    };
                    self.supersede(slot, later.then_some(record), ended);
                    return Ok(());
                }
                // Within the replication bound of the removal held, another directory
                // may not have known of it.
                let departed = self.registry.get(slot).map_or(Instant::ZERO, |e| e.reap_at);
                let recent = self.now + self.config.tombstone_retention
                    < departed + self.config.replication_bound;
                let same = same_removal(held, &record).filter(|_| recent);
                if record.service.version < held.service.version {
                    // An older removal of the same registration, made elsewhere before
                    // this one: what it already sent counts. (Not if this directory
                    // held the name live since: it removed an earlier registration.)
                    let live = self
                        .registry
                        .get(slot)
                        .map_or(Version(0), |e| e.live_version);
                    if let Some(count) = same.filter(|_| live < record.service.version) {
                        let mut newer = held.clone();
                        newer.sequence = newer.sequence.max(record.sequence);
                        self.continue_removal(slot, newer, count);
                    }
                    return Ok(());
                }
                if let Some(count) = same {
                    self.continue_removal(slot, record, count);
                    return Ok(());
                }
                record.sequence = record.sequence.max(held.sequence);
                slot
            }
            None => {
                if record.service.version <= self.dropped_version {
                    return Ok(());
                }
                let floor = self.unregistered.floor(name, record.registrant, self.now);
                if let Some(floor) = floor.filter(|&f| record.is_live() && record.sequence < f) {
                    // Its registrant unregistered it here since: that request is the
                    // later one, and removes it.
                    record.sequence = floor;
                    let slot = self
                        .insert(Entry::new(record))
                        .ok_or(crate::RegistryError::Full)?;
                    self.stats.unregisters += 1;
                    self.depart(slot);
                    return Ok(());
                }
                self.insert(Entry::new(record.clone()))
                    .ok_or(crate::RegistryError::Full)?
            }
        };
        let state = record.state;
        let announcements = self.announcements();
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
            e.record = record;
            match state {
                RecordState::Live { .. } => {
                    e.live_version = e.record.service.version;
                    notify::mark_changed(e, announcements);
                }
                RecordState::Departed { remaining } => {
                    e.announce = false;
                    e.repeats = 0;
                    e.due = publishing && remaining > 0;
                    e.reap_at = reap_at;
                    e.stamp = crate::registry::UNANNOUNCED;
                }
            }
        });
        if let RecordState::Live { expires } = state {
            self.schedule_expiry(expires);
        }
        self.schedule_tick();
        Ok(())
    }

    /// Drops the entry for `name` whatever its state, without a storage event. For a
    /// shell that reloaded the replicated store after missing some of its changes: a
    /// live entry the store no longer holds (and that this directory has not yet
    /// written) was removed meanwhile, its notifications sent by the publisher of the
    /// time. Listeners that still hold it drop it at the publisher's next sweep. (An
    /// entry that still carries the removal of a tombstone it replaced is kept as a
    /// tombstone due at once instead, so that `poll_event` reports both removals; the
    /// shell's deletion of a name the store no longer holds changes nothing.)
    pub fn discard(&mut self, now: Instant, name: &str) {
        self.observe(now);
        let Some(slot) = self.registry.find(name) else {
            return;
        };
        if self.registry.get(slot).is_some_and(|e| e.evicted.is_some()) {
            // It still carries the removal of the entry it replaced: keep it as a
            // tombstone due at once, so that both removals reach the shell.
            let now = self.now;
            let dirty = &mut self.dirty;
            Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                e.record.state = RecordState::Departed { remaining: 0 };
                e.announce = false;
                e.repeats = 0;
                e.due = false;
                e.reap_at = now;
                if core::mem::take(&mut e.dirty) {
                    *dirty -= 1;
                }
                e.durable = false;
            });
            return;
        }
        self.drop_slot(slot);
    }

    /// Merges a stored state of the version held in `slot`.
    pub(super) fn merge(&mut self, slot: usize, stored: &Record) {
        let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
            return;
        };
        let sequence = held.sequence.max(stored.sequence);
        let live_version = self
            .registry
            .get(slot)
            .map_or(Version(0), |e| e.live_version);
        let reap_at = self.now + self.config.tombstone_retention;
        match (held.state, stored.state) {
            (RecordState::Live { expires: mine }, RecordState::Live { expires })
                if expires > mine =>
            {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.record.state = RecordState::Live { expires };
                });
                self.schedule_expiry(expires);
            }
            (RecordState::Departed { remaining: mine }, RecordState::Departed { remaining })
                if remaining < mine && stored.counted_from() > live_version =>
            {
                // The stored count is taken, and with it where it was counted from. (Not
                // one counted from a version no newer than one held live here: made
                // where that version was not yet known, taken over from a removal
                // announced before it, it told that version's listeners nothing.)
                let counted_from = stored.counted_from();
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.record.state = RecordState::Departed { remaining };
                    e.record.set_counted_from(counted_from);
                    if remaining == 0 {
                        e.reap_at = e.reap_at.min(reap_at);
                    }
                });
            }
            _ => {}
        }
        if let Some(mut e) = self.registry.get_mut(slot) {
            e.record.sequence = sequence;
        }
    }

    /// The replicated store no longer holds `name` (its tombstone was reaped, or its
    /// entry was evicted): a departed entry is dropped without a storage event. A live
    /// entry is kept: it was registered again, and that change is on its way to the
    /// store (after a reload, [`discard`](Self::discard) drops live entries too).
    pub fn forget(&mut self, now: Instant, name: &str) {
        self.observe(now);
        let Some(slot) = self.registry.find(name) else {
            return;
        };
        if self.registry.get(slot).is_some_and(|e| !e.record.is_live()) {
            self.discard(now, name);
        }
    }
}

impl Directory<'_> {
    /// Settles two records of one registrant that the sequence orders against their
    /// versions (see [`later_request`]): the later request's (`record`, or what `slot`
    /// holds when `None`) is kept at a new version, newer than both, and stored, so that
    /// it wins in the store and at listeners, which may have been told of the other.
    /// A live winner is announced; a removal is owed all its notifications again, and
    /// names `ended`, the live version it ended (the loser's).
    fn supersede(&mut self, slot: usize, record: Option<Record>, ended: Version) {
        let version = self.next_version();
        let announcements = self.announcements();
        let n = self.config.notifications;
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        let mut expires = None;
        self.update(slot, true, |e| {
            if let Some(record) = record {
                e.record = record;
            }
            match e.record.state {
                RecordState::Live { expires: at } => {
                    e.record.service.version = version;
                    e.record.ended = Version(0);
                    e.record.counted_from = Version(0);
                    e.live_version = version;
                    notify::mark_changed(e, announcements);
                    expires = Some(at);
                }
                RecordState::Departed { .. } => {
                    notify::depart(e, version, n, publishing);
                    e.record.ended = ended;
                    e.reap_at = reap_at;
                }
            }
        });
        if let Some(at) = expires {
            self.schedule_expiry(at);
        }
        self.schedule_tick();
    }

    /// Takes `record`, a newer removal of the registration whose removal is held in
    /// `slot` (see [`same_removal`]): another directory removed it again before the
    /// first removal reached it through the store (a retransmitted or late
    /// unregistration, or one of a lease this directory expired). The record's version
    /// (which the store keeps, being newer), the higher sequence of the two, and the
    /// count of notifications already sent: `remaining` still owed. The removal is
    /// announced N times in all, not restarted. When what is held differs from the
    /// record, it is written back so that the store (and any later publisher) agrees.
    fn continue_removal(&mut self, slot: usize, mut record: Record, count: Count) {
        let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
            return;
        };
        let Count {
            remaining,
            counted_from,
        } = count;
        let raised = held.sequence > record.sequence;
        let behind = raised
            || record.state != (RecordState::Departed { remaining })
            || record.counted_from() != counted_from;
        record.sequence = record.sequence.max(held.sequence);
        record.state = RecordState::Departed { remaining };
        record.set_counted_from(counted_from);
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        let dirty = &mut self.dirty;
        Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
            e.record = record;
            e.announce = false;
            e.repeats = 0;
            e.due = e.due && publishing && remaining > 0;
            e.reap_at = if remaining == 0 {
                e.reap_at.min(reap_at)
            } else {
                reap_at
            };
            if behind {
                // A lower sequence in the store would let a late request in.
                touch(e, dirty, raised);
            }
        });
        if remaining > 0 {
            self.schedule_tick();
        }
    }
}

/// The count of one removal made twice: the notifications still owed, and the lowest
/// version those already sent may have been announced at ([`Record::counted_from`]),
/// both of the record whose count is taken.
#[derive(Clone, Copy, Debug)]
struct Count {
    remaining: u8,
    counted_from: Version,
}

/// When `record` and `held` are both removals of the name and no listener can have held
/// it live between them, the notifications still owed for what is one removal to
/// listeners: the fewer of the two counts, with where it was counted from. That
/// is when the newer removal ended a live version older than every version the older
/// removal's notifications may have been announced at (its own, or that of an older
/// removal whose count it took over): every listener that held that version was told of
/// the older removal, and was told of no registration since. (Not older than the older
/// removal's version alone: a count taken over from an even older removal told only the
/// listeners of versions below that one, and a registration may lie in between.)
/// Two directories removing the same registration, or one removing a registration that
/// the other never saw because it removed the one before, are one removal; a removal of
/// a registration made after the older removal is not. For a record stored before
/// removals named the version they ended, the same registration (same registrant, same
/// locations and metadata) stands for it. The caller checks that the held removal is
/// recent (within the replication bound): later, any other directory knew of it, and a
/// new removal follows a registration in between.
fn same_removal(held: &Record, record: &Record) -> Option<Count> {
    let (RecordState::Departed { remaining: mine }, RecordState::Departed { remaining }) =
        (held.state, record.state)
    else {
        return None;
    };
    let (older, newer) = if record.service.version < held.service.version {
        (record, held)
    } else {
        (held, record)
    };
    let one = if newer.ended != Version(0) {
        newer.ended < older.counted_from()
    } else {
        held.registrant == record.registrant
            && held
                .service
                .registration
                .same_content(&record.service.registration)
    };
    // The fewer owed is taken, and with it where its notifications were counted from
    // (of two equal counts, either is true: the one counted from the higher version).
    let (remaining, counted_from) = match mine.cmp(&remaining) {
        core::cmp::Ordering::Less => (mine, held.counted_from()),
        core::cmp::Ordering::Greater => (remaining, record.counted_from()),
        core::cmp::Ordering::Equal => (mine, held.counted_from().max(record.counted_from())),
    };
    one.then_some(Count {
        remaining,
        counted_from,
    })
}

/// Two states of one name that two directories gave the same version (their version
/// clocks both following a peer's newer versions, one past the newest they held): when
/// they are not copies of one state, true when `record` wins (false: `held`), and the
/// winner is kept at a new version, as for [`later_request`]. Of one registrant's two
/// requests that differ in what they hold, the later (higher sequence) wins; of two
/// registrants' records, at least one live, the higher sequence and then the higher
/// registrant, so that every directory keeps the same owner. Otherwise `None`: they
/// merge. Without this, a listener could hold either state at that version for good,
/// since receivers take nothing that is not newer, and two directories either owner.
fn same_version_conflict(held: &Record, record: &Record) -> Option<bool> {
    let differ = if held.registrant != record.registrant {
        held.is_live() || record.is_live()
    } else {
        held.is_live() != record.is_live()
            || !held
                .service
                .registration
                .same_content(&record.service.registration)
    };
    let (mine, theirs) = (
        (held.sequence, held.registrant),
        (record.sequence, record.registrant),
    );
    (differ && mine != theirs).then_some(theirs > mine)
}

/// Whether `record`, of the same registrant as `held`, comes from its later request
/// (`Some(true)`) or its earlier one (`Some(false)`) when the two versions say the
/// opposite: the directory that applied the earlier request gave it a newer version (it
/// had not yet seen the later one through the store). Between a registrant's records the
/// higher sequence wins whatever the versions. `None` when the versions agree with the
/// sequences, the sequences are equal, the registrants differ, or both are removals
/// (see [`same_removal`]).
fn later_request(held: &Record, record: &Record) -> Option<bool> {
    let both_departed = !held.is_live() && !record.is_live();
    if held.registrant != record.registrant || both_departed {
        return None;
    }
    let later = record.sequence > held.sequence;
    let newer = record.service.version > held.service.version;
    (record.sequence != held.sequence && later != newer).then_some(later)
}
