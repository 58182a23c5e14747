//! The registry's lists: what the directory looks for, found without walking the
//! registry.
//!
//! Intrusive doubly linked lists run through the registry's own slots (the links are in
//! each [`Entry`], one pair per [`Family`]); an entry is in at most one list of each
//! family, the one its state puts it in ([`place`]):
//!
//! * stamps: the entries stamped by an announcement, in stamp order, and those whose
//!   state no announcement has carried yet ([`UNANNOUNCED`]). An entry stamped 0
//!   (restored, or held from before) is in neither: no repair or delivery lists it. The
//!   states stamped after `since` are the unannounced list and the tail of the stamped
//!   list down to the first stamp at or below `since`;
//! * departures: departed entries with no notification left (tombstones) and those
//!   with notifications left, each by reap time: the oldest tombstone to reap or evict
//!   is the head;
//! * evictions: entries that carry the name of an evicted one not yet reported;
//! * stored: entries whose stored form changed and the shell has not been told;
//! * announcements: entries with something to announce now, in the order they came
//!   to have it;
//! * holders: live entries by registrant, in [`HOLDER_LISTS`] lists by a hash of the
//!   registrant id: a keep-alive walks its registrant's list, not the registry.
//!
//! The lists follow every change, because every mutable access to an entry goes
//! through [`EntryMut`](super::EntryMut), which moves the entry to its new places when
//! the access ends; an insertion or removal in the table relinks what moved. Entries
//! mostly join a list in its order (stamps and reap times grow), so joining is one
//! step at the tail; one out of order is placed by walking back from the tail, so the
//! order holds whatever the caller does.

use super::{Entry, Registry, UNANNOUNCED};
use crate::registry::RecordState;
use crate::service::Version;
use crate::table::Table;

/// No slot.
const NIL: u32 = u32::MAX;

/// An entry's place in one list of a family (in the entry itself, so in the registry's
/// storage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Links {
    prev: u32,
    next: u32,
}

impl Links {
    /// In no list.
    pub(crate) const NONE: Links = Links {
        prev: NIL,
        next: NIL,
    };
}

/// A family of lists: an entry is in at most one list of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    Stamps,
    Departures,
    Evictions,
    Stored,
    Announcements,
    Holders,
}

/// How many families there are.
pub(crate) const FAMILIES: usize = 6;

/// Every family.
pub(crate) const ALL: [Family; FAMILIES] = [
    Family::Stamps,
    Family::Departures,
    Family::Evictions,
    Family::Stored,
    Family::Announcements,
    Family::Holders,
];

/// One list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    /// Stamped by an announcement, by stamp.
    Stamped,
    /// Not carried by any announcement yet.
    Unannounced,
    /// Departed, every notification sent (tombstones), by reap time.
    Finished,
    /// Departed, notifications left, by reap time.
    Notifying,
    /// Carrying an eviction not yet reported.
    Evicting,
    /// Stored form changed, not yet taken by the shell.
    Dirty,
    /// Something to announce now.
    Pending,
    /// Live, registered by a registrant whose id hashes to this list.
    Holders(u8),
}

/// How many lists hold the live entries by registrant.
pub(crate) const HOLDER_LISTS: usize = 256;

/// How many lists there are.
const LISTS: usize = 7 + HOLDER_LISTS;

impl List {
    /// Its place among the lists' ends.
    fn index(self) -> usize {
        match self {
            List::Stamped => 0,
            List::Unannounced => 1,
            List::Finished => 2,
            List::Notifying => 3,
            List::Evicting => 4,
            List::Dirty => 5,
            List::Pending => 6,
            List::Holders(bucket) => 7 + usize::from(bucket),
        }
    }

    /// The family it belongs to.
    fn family(self) -> Family {
        match self {
            List::Stamped | List::Unannounced => Family::Stamps,
            List::Finished | List::Notifying => Family::Departures,
            List::Evicting => Family::Evictions,
            List::Dirty => Family::Stored,
            List::Pending => Family::Announcements,
            List::Holders(_) => Family::Holders,
        }
    }

    /// The list of the live entries registered by `registrant` (and by others whose
    /// ids hash alike).
    pub(crate) fn holders(registrant: u64) -> List {
        // Fibonacci hashing: the top byte of the id times 2^64 / φ.
        List::Holders((registrant.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
    }
}

/// Where an entry belongs in one family: its list, and its order there (ascending).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    list: List,
    key: u64,
}

/// The place of `entry` in `family`, if it is in a list of it.
pub(crate) fn place(entry: &Entry, family: Family) -> Option<Place> {
    let (list, key) = match family {
        Family::Stamps => match entry.stamp {
            Version(0) => return None,
            UNANNOUNCED => (List::Unannounced, 0),
            Version(stamp) => (List::Stamped, stamp),
        },
        Family::Departures => match entry.record.state {
            RecordState::Live { .. } => return None,
            RecordState::Departed { remaining: 0 } => (List::Finished, entry.reap_at.as_micros()),
            RecordState::Departed { .. } => (List::Notifying, entry.reap_at.as_micros()),
        },
        Family::Evictions if entry.evicted.is_some() => (List::Evicting, 0),
        Family::Stored if entry.dirty => (List::Dirty, 0),
        Family::Announcements if crate::notify::is_pending(entry) => (List::Pending, 0),
        Family::Holders if entry.record.is_live() => (List::holders(entry.record.registrant), 0),
        Family::Evictions | Family::Stored | Family::Announcements | Family::Holders => {
            return None
        }
    };
    Some(Place { list, key })
}

/// The places of `entry` in every family.
pub(crate) fn places(entry: &Entry) -> [Option<Place>; FAMILIES] {
    ALL.map(|family| place(entry, family))
}

/// The first and last slot of one list.
#[derive(Clone, Copy, Debug)]
struct Ends {
    head: u32,
    tail: u32,
}

impl Ends {
    const EMPTY: Ends = Ends {
        head: NIL,
        tail: NIL,
    };
}

/// The ends of every list.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lists([Ends; LISTS]);

impl Lists {
    pub(crate) const EMPTY: Lists = Lists([Ends::EMPTY; LISTS]);

    fn ends(&mut self, list: List) -> &mut Ends {
        &mut self.0[list.index()]
    }
}

fn links(table: &Table<'_, Entry>, slot: u32, family: Family) -> Links {
    table
        .get(slot as usize)
        .map_or(Links::NONE, |e| e.links[family as usize])
}

fn key(table: &Table<'_, Entry>, slot: u32, family: Family) -> u64 {
    table
        .get(slot as usize)
        .and_then(|e| place(e, family))
        .map_or(0, |p| p.key)
}

fn set_prev(table: &mut Table<'_, Entry>, ends: &mut Ends, slot: u32, family: Family, prev: u32) {
    match table.get_mut(slot as usize) {
        Some(e) => e.links[family as usize].prev = prev,
        None => ends.tail = prev,
    }
}

fn set_next(table: &mut Table<'_, Entry>, ends: &mut Ends, slot: u32, family: Family, next: u32) {
    match table.get_mut(slot as usize) {
        Some(e) => e.links[family as usize].next = next,
        None => ends.head = next,
    }
}

/// Puts the entry in `slot` in its list of `family` (it is in none of it).
pub(super) fn link(table: &mut Table<'_, Entry>, lists: &mut Lists, slot: usize, family: Family) {
    let Some(Place { list, key: at }) = table.get(slot).and_then(|e| place(e, family)) else {
        return;
    };
    let ends = lists.ends(list);
    // After the last entry placed no later: walking back from the tail, or at once
    // before the head when it goes first (an entry placed at either end takes one step).
    let mut prev = ends.tail;
    if ends.head != NIL && at < key(table, ends.head, family) {
        prev = NIL;
    }
    while prev != NIL && key(table, prev, family) > at {
        prev = links(table, prev, family).prev;
    }
    let next = if prev == NIL {
        ends.head
    } else {
        links(table, prev, family).next
    };
    let slot = slot as u32;
    if let Some(e) = table.get_mut(slot as usize) {
        e.links[family as usize] = Links { prev, next };
    }
    set_next(table, ends, prev, family, slot);
    set_prev(table, ends, next, family, slot);
}

/// Takes the entry in `slot` out of its list of `family`, where it was linked `at`.
pub(super) fn unlink(
    table: &mut Table<'_, Entry>,
    lists: &mut Lists,
    slot: usize,
    family: Family,
    at: Place,
) {
    let Some(e) = table.get_mut(slot) else { return };
    let Links { prev, next } = core::mem::replace(&mut e.links[family as usize], Links::NONE);
    let ends = lists.ends(at.list);
    set_next(table, ends, prev, family, next);
    set_prev(table, ends, next, family, prev);
}

/// The entry linked in slot `from` is now in slot `to`: its neighbours in every family
/// (or the lists' ends) point there.
pub(super) fn moved(table: &mut Table<'_, Entry>, lists: &mut Lists, from: usize, to: usize) {
    for family in ALL {
        let Some(e) = table.get(to) else { return };
        let Some(Place { list, .. }) = place(e, family) else {
            continue;
        };
        let Links { prev, next } = e.links[family as usize];
        debug_assert!(links(table, prev, family).next == from as u32 || prev == NIL);
        let ends = lists.ends(list);
        set_next(table, ends, prev, family, to as u32);
        set_prev(table, ends, next, family, to as u32);
    }
}

/// The slots of one list, from its head.
pub(crate) struct Walk<'r, 'a> {
    table: &'r Table<'a, Entry>,
    family: Family,
    slot: u32,
}

impl Iterator for Walk<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.slot == NIL {
            return None;
        }
        let slot = self.slot;
        self.slot = links(self.table, slot, self.family).next;
        Some(slot as usize)
    }
}

impl<'a> Registry<'a> {
    /// The slots of `list`, from its head (in its order).
    pub(crate) fn walk(&self, list: List) -> Walk<'_, 'a> {
        Walk {
            table: &self.table,
            family: list.family(),
            slot: self.lists.0[list.index()].head,
        }
    }

    /// The slot after `slot` in `list` (which it is in).
    pub(crate) fn next_in(&self, slot: usize, list: List) -> Option<usize> {
        let next = links(&self.table, slot as u32, list.family()).next;
        (next != NIL).then_some(next as usize)
    }

    /// The entries of `list` with their slots, from its head.
    pub(crate) fn entries(&self, list: List) -> impl Iterator<Item = (usize, &Entry)> {
        self.walk(list)
            .filter_map(|slot| self.table.get(slot).map(|e| (slot, e)))
    }

    /// Writes into `out` the slots of every entry whose stamp may be after `since` (a
    /// superset: every entry stamped after it is there, in no particular order), and
    /// returns how many; `None` when they do not fit (walk the registry instead).
    pub(crate) fn stamped_after(&self, since: Version, out: &mut [u32]) -> Option<usize> {
        let mut n = 0;
        for slot in self.walk(List::Unannounced) {
            *out.get_mut(n)? = slot as u32;
            n += 1;
        }
        let mut slot = self.lists.0[List::Stamped.index()].tail;
        while slot != NIL && key(&self.table, slot, Family::Stamps) > since.0 {
            *out.get_mut(n)? = slot;
            n += 1;
            slot = links(&self.table, slot, Family::Stamps).prev;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::registry::Slot;

    fn entry(n: u32) -> Entry {
        let mut name = heapless::String::<16>::new();
        core::fmt::write(&mut name, format_args!("svc-{n:04}")).unwrap();
        crate::registry::live_entry(&name)
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
        }
    }

    /// Every list is well formed, in its order, and holds exactly the entries its
    /// family places in it.
    fn check_lists(registry: &Registry<'_>, seed: u64) {
        let named = [
            List::Stamped,
            List::Unannounced,
            List::Finished,
            List::Notifying,
            List::Evicting,
            List::Dirty,
            List::Pending,
        ];
        // How many entries each list should hold, from one walk of the registry.
        let mut held = [0usize; LISTS];
        for (_, e) in registry.iter() {
            for at in places(e).into_iter().flatten() {
                held[at.list.index()] += 1;
            }
        }
        let holders = (0..=u8::MAX).map(List::Holders);
        for list in named.into_iter().chain(holders) {
            let family = list.family();
            let ends = registry.lists.0[list.index()];
            let mut count = 0;
            let (mut prev, mut slot) = (NIL, ends.head);
            while slot != NIL {
                let e = registry
                    .get(slot as usize)
                    .expect("a listed slot holds an entry");
                let at = place(e, family).expect("a listed entry has a place");
                assert_eq!(at.list, list, "seed {seed}");
                assert_eq!(e.links[family as usize].prev, prev, "seed {seed}");
                if prev != NIL {
                    assert!(key(&registry.table, prev, family) <= at.key, "seed {seed}");
                }
                count += 1;
                assert!(count <= registry.len(), "seed {seed}: a cycle");
                (prev, slot) = (slot, e.links[family as usize].next);
            }
            assert_eq!(ends.tail, prev, "seed {seed}");
            assert_eq!(count, held[list.index()], "seed {seed}: {list:?}");
            assert_eq!(registry.walk(list).count(), count, "seed {seed}");
        }
    }

    /// Random churn (insertions, removals that move the last slot, stamps set to 0,
    /// unannounced, in order and out of order; departures, notifications counted down,
    /// reap times in and out of order, evictions carried and reported, stored forms
    /// changed and taken, registrants changed): the lists answer exactly what a walk of
    /// the whole registry finds, and stay well formed and in order.
    #[test]
    fn the_lists_find_what_a_full_walk_finds_under_random_churn() {
        const CAPACITY: usize = 48;
        for seed in 1..=300u64 {
            let mut slots: [Slot; CAPACITY] = [const { None }; CAPACITY];
            let mut index = [0u32; CAPACITY];
            let mut registry = Registry::new(&mut slots, &mut index);
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut clock = 1u64;
            for _ in 0..400 {
                let len = registry.len() as u64;
                match rng.below(10) {
                    0..=2 => {
                        let _ = registry.insert(entry(rng.below(200) as u32));
                    }
                    3 if len > 0 => {
                        let slot = rng.below(len) as usize;
                        assert!(registry.remove(slot).is_some());
                    }
                    4..=8 if len > 0 => {
                        let slot = rng.below(len) as usize;
                        let mut e = registry.get_mut(slot).unwrap();
                        match rng.below(6) {
                            5 => e.record.registrant = rng.below(6),
                            4 => {
                                // Replaced whole, as a restore does.
                                let mut fresh = Entry::new(e.record.clone());
                                fresh.reap_at = crate::Instant::from_micros(clock);
                                fresh.dirty = rng.below(2) == 0;
                                *e = fresh;
                            }
                            0 => {
                                e.stamp = match rng.below(8) {
                                    0 => Version(0),
                                    1 | 2 => UNANNOUNCED,
                                    // Out of order now and then.
                                    3 => Version(1 + rng.below(clock)),
                                    _ => {
                                        clock += rng.below(3);
                                        Version(clock)
                                    }
                                };
                            }
                            1 => {
                                e.record.state = match rng.below(3) {
                                    0 => RecordState::Live {
                                        expires: crate::Instant::ZERO,
                                    },
                                    n => RecordState::Departed {
                                        remaining: (n - 1) as u8,
                                    },
                                };
                                // In order mostly, now and then earlier.
                                e.reap_at = crate::Instant::from_micros(match rng.below(4) {
                                    0 => rng.below(clock + 1),
                                    _ => clock,
                                });
                            }
                            2 => {
                                e.evicted = match e.evicted {
                                    Some(_) => None,
                                    None => Some(crate::ServiceName::new("gone").unwrap()),
                                };
                            }
                            _ => e.dirty = !e.dirty,
                        }
                        // Other fields change with it, as the directory's do.
                        e.announce = !e.announce;
                    }
                    9 if len > 0 => {
                        // Take the head of a list, as the directory does.
                        let list =
                            [List::Finished, List::Evicting, List::Dirty][rng.below(3) as usize];
                        if let Some(slot) = registry.walk(list).next() {
                            match list {
                                List::Evicting => registry.get_mut(slot).unwrap().evicted = None,
                                List::Dirty => registry.get_mut(slot).unwrap().dirty = false,
                                _ => assert!(registry.remove(slot).is_some()),
                            }
                        }
                    }
                    _ => {}
                }
                check_lists(&registry, seed);
                let since = Version(rng.below(clock + 2));
                let mut out = [0u32; CAPACITY];
                let n = registry.stamped_after(since, &mut out).unwrap();
                let mut found: std::vec::Vec<u32> = out[..n]
                    .iter()
                    .copied()
                    .filter(|&s| registry.get(s as usize).is_some_and(|e| e.stamp > since))
                    .collect();
                found.sort_unstable();
                let walked: std::vec::Vec<u32> = registry
                    .iter()
                    .filter(|(_, e)| e.stamp > since)
                    .map(|(s, _)| s as u32)
                    .collect();
                assert_eq!(found, walked, "seed {seed}, since {since:?}");
                // A scratch too small for them says so rather than answer short.
                if n > 0 {
                    assert_eq!(registry.stamped_after(since, &mut out[..n - 1]), None);
                }
            }
        }
    }
}
