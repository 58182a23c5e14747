//! Departed entries: departure, reaping tombstones whose retention ran out, evicting
//! departed entries to make room (and reporting them removed), the floors of
//! dropped tombstones, and of unregistrations of names not held.

use super::*;
use crate::hash::{fnv1a, FNV_OFFSET};

/// How many unregistrations of names not held a directory remembers.
const UNREGISTERED: usize = 16;

/// The sequences of the latest unregistrations of names the directory did not hold
/// (by name and registrant), each kept for the tombstone retention time: a Register
/// sent before one of them and arriving after is stale. A ring: the oldest gives way.
#[derive(Debug)]
pub(super) struct Unregistered {
    /// (name hash, registrant, sequence, kept until); unused while `until` is zero.
    floors: [(u64, u64, u64, Instant); UNREGISTERED],
    next: usize,
}

impl Unregistered {
    pub(super) const fn new() -> Self {
        Unregistered {
            floors: [(0, 0, 0, Instant::ZERO); UNREGISTERED],
            next: 0,
        }
    }

    /// Remembers that `registrant` unregistered `name` at `sequence`, until `until`.
    pub(super) fn record(&mut self, name: &str, registrant: u64, sequence: u64, until: Instant) {
        let key = (fnv1a(FNV_OFFSET, name.as_bytes()), registrant);
        let slot = match self.floors.iter().position(|f| (f.0, f.1) == key) {
            Some(slot) => slot,
            None => {
                let slot = self.next;
                self.next = (self.next + 1) % UNREGISTERED;
                self.floors[slot].2 = 0;
                slot
            }
        };
        let floor = &mut self.floors[slot];
        *floor = (key.0, key.1, floor.2.max(sequence), until);
    }

    /// The sequence a request of `registrant` for `name` must exceed, if it unregistered
    /// the name recently (as of `now`).
    pub(super) fn floor(&self, name: &str, registrant: u64, now: Instant) -> Option<u64> {
        let key = (fnv1a(FNV_OFFSET, name.as_bytes()), registrant);
        self.floors
            .iter()
            .find(|f| (f.0, f.1) == key && f.3 > now)
            .map(|f| f.2)
    }
}

impl Directory<'_> {
    /// Inserts a new entry, evicting an old enough tombstone when the registry is full
    /// (the new entry carries the evicted name until the shell has taken its removal).
    /// `None` when there is no room.
    pub(super) fn insert(&mut self, mut entry: Entry) -> Option<usize> {
        if self.registry.is_full() {
            let evicted = self.evict()?;
            entry.evicted = Some(evicted);
            self.unreported += 1;
        }
        match self.registry.insert(entry) {
            Ok(slot) => Some(slot),
            Err(entry) => {
                // Cannot happen (room was made, the name is not held); keep the count.
                if entry.evicted.is_some() {
                    self.unreported -= 1;
                }
                None
            }
        }
    }

    /// The earliest a tombstone may be reaped is `at` (or earlier, if already known).
    pub(super) fn schedule_reap(&mut self, at: Instant) {
        self.next_reap = Some(self.next_reap.map_or(at, |t| t.min(at)));
    }

    /// Makes room for a new name in a full registry: drops the departed entry that has
    /// been departed at least the replication bound with the fewest notifications left,
    /// the oldest first (a finished removal, if there is one). Returns its name, which
    /// the shell must still be told to delete; `None` when no entry may go (every entry
    /// is live, young, or carries an eviction not yet reported).
    pub(super) fn evict(&mut self) -> Option<ServiceName> {
        let now = self.now;
        // A tombstone is reaped at `reap_at` = departure + retention; it is old enough to
        // evict from departure + replication bound on.
        let young = Duration::from_micros(
            self.config
                .tombstone_retention
                .as_micros()
                .saturating_sub(self.config.replication_bound.as_micros()),
        );
        let (_, _, slot) = self
            .registry
            .iter()
            .filter(|(_, e)| e.evicted.is_none() && now + young >= e.reap_at)
            .filter_map(|(slot, e)| match e.record.state {
                RecordState::Departed { remaining } => Some((remaining, e.reap_at, slot)),
                RecordState::Live { .. } => None,
            })
            .min()?;
        let e = self.drop_slot(slot)?;
        if let RecordState::Departed { remaining } = e.record.state {
            if remaining > 0 {
                self.stats.notifications_dropped += 1;
            } else if e.reap_at > now {
                self.stats.tombstones_evicted += 1;
            }
        }
        Some(e.record.service.registration.name)
    }

    /// Removes the entry in `slot`, keeping the counts right, and raises the floors of
    /// dropped tombstones if it is departed. Returns it.
    pub(super) fn drop_slot(&mut self, slot: usize) -> Option<Entry> {
        let e = self.registry.get(slot)?;
        if notify::is_pending(e) {
            self.pending -= 1;
        }
        if e.dirty {
            self.dirty -= 1;
        }
        if e.evicted.is_some() {
            self.unreported -= 1;
        }
        let gone = self.registry.remove(slot)?;
        self.forget_changes(&gone);
        if !gone.record.is_live() {
            self.raise_floors(&gone.record);
        }
        Some(gone)
    }

    /// A departed `record` is no longer held: nothing not newer may come back.
    pub(super) fn raise_floors(&mut self, record: &Record) {
        self.dropped_version = self.dropped_version.max(record.service.version);
        self.dropped_sequence = self.dropped_sequence.max(record.sequence);
    }

    pub(super) fn depart(&mut self, slot: usize) -> Version {
        let version = self.next_version();
        let n = self.config.notifications;
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        self.update(slot, true, |e| {
            notify::depart(e, version, n, publishing);
            e.reap_at = reap_at;
        });
        self.schedule_tick();
        version
    }

    /// Reaps the next tombstone whose retention ran out, in a pass over the registry
    /// that starts when one is due; returns its name for the shell to delete. At the
    /// end of a pass, schedules the next from what it kept.
    pub(super) fn reap_next(&mut self) -> Option<ServiceName> {
        let now = self.now;
        let mut slot = match self.reap_cursor {
            Some(slot) => slot,
            None if self.next_reap.is_some_and(|t| t <= now) => {
                self.next_reap = None;
                self.reap_pass_min = None;
                0
            }
            None => return None,
        };
        while let Some(e) = self.registry.get(slot) {
            if let RecordState::Departed { remaining: 0 } = e.record.state {
                if e.reap_at <= now && e.evicted.is_none() {
                    // The last entry moves into `slot`: the cursor stays to look at it.
                    self.reap_cursor = Some(slot);
                    return self
                        .drop_slot(slot)
                        .map(|e| e.record.service.registration.name);
                }
                let at = e.reap_at;
                self.reap_pass_min = Some(self.reap_pass_min.map_or(at, |t| t.min(at)));
            }
            slot += 1;
        }
        self.reap_cursor = None;
        if let Some(at) = self.reap_pass_min.take() {
            self.schedule_reap(at);
        }
        None
    }

    /// The next eviction not yet reported, taken from the entry that carries it.
    pub(super) fn next_unreported(&mut self) -> Option<ServiceName> {
        if self.unreported == 0 {
            return None;
        }
        let len = self.registry.len();
        for _ in 0..len {
            if self.unreported_cursor >= len {
                self.unreported_cursor = 0;
            }
            let slot = self.unreported_cursor;
            self.unreported_cursor += 1;
            if let Some(name) = self
                .registry
                .get_mut(slot)
                .and_then(|mut e| e.evicted.take())
            {
                self.unreported -= 1;
                return Some(name);
            }
        }
        self.unreported = 0;
        None
    }
}
