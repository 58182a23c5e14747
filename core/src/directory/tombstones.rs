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

    /// When the oldest tombstone's retention runs out (the head of the finished
    /// removals, by reap time), if one is held.
    pub(super) fn next_reap(&self) -> Option<Instant> {
        self.registry
            .entries(List::Finished)
            .next()
            .map(|(_, e)| e.reap_at)
    }

    /// Makes room for a new name in a full registry: drops the departed entry that has
    /// been departed at least the replication bound with the fewest notifications left,
    /// the oldest first (a finished removal, if there is one). Returns its name, which
    /// the shell must still be told to delete; `None` when no entry may go (every entry
    /// is live, young, or carries an eviction not yet reported).
    pub(super) fn evict(&mut self) -> Option<ServiceName> {
        // A tombstone is reaped at `reap_at` = departure + retention; it is old enough to
        // evict from departure + replication bound on. Both lists of departed entries
        // are in reap-time order: only their old enough heads are looked at.
        let young = Duration::from_micros(
            self.config
                .tombstone_retention
                .as_micros()
                .saturating_sub(self.config.replication_bound.as_micros()),
        );
        let old_enough = self.now + young;
        let registry = &self.registry;
        let candidates = |list| {
            registry
                .entries(list)
                .take_while(move |(_, e)| e.reap_at <= old_enough)
                .filter(|(_, e)| e.evicted.is_none())
        };
        // A finished removal, the oldest; else the one with the fewest notifications
        // left, the oldest first.
        let slot = candidates(List::Finished)
            .next()
            .or_else(|| {
                candidates(List::Notifying).min_by_key(|(_, e)| match e.record.state {
                    RecordState::Departed { remaining } => remaining,
                    RecordState::Live { .. } => u8::MAX,
                })
            })
            .map(|(slot, _)| slot)?;
        let now = self.now;
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

    /// Reaps the next tombstone whose retention ran out (from the head of the finished
    /// removals, oldest first); returns its name for the shell to delete.
    pub(super) fn reap_next(&mut self) -> Option<ServiceName> {
        let now = self.now;
        let slot = self
            .registry
            .entries(List::Finished)
            .take_while(|(_, e)| e.reap_at <= now)
            .find(|(_, e)| e.evicted.is_none())
            .map(|(slot, _)| slot)?;
        self.drop_slot(slot)
            .map(|e| e.record.service.registration.name)
    }

    /// The next eviction not yet reported, taken from the entry that carries it.
    pub(super) fn next_unreported(&mut self) -> Option<ServiceName> {
        if self.unreported == 0 {
            return None;
        }
        let Some(slot) = self.registry.walk(List::Evicting).next() else {
            self.unreported = 0;
            return None;
        };
        let name = self.registry.get_mut(slot)?.evicted.take();
        self.unreported -= 1;
        name
    }
}
