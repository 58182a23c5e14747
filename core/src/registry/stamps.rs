//! The index of the registry's stamps: which entries carry a state stamped after a
//! version, found without walking the registry.
//!
//! Two intrusive doubly linked lists run through the registry's own slots (the links
//! are in each [`Entry`]): the entries stamped by an announcement, in stamp order, and
//! the entries whose state no announcement has carried yet ([`UNANNOUNCED`]). An entry
//! stamped 0 (restored, or held from before) is in neither: no repair or delivery ever
//! lists it. The lists follow every change of a stamp, because every mutable access to
//! an entry goes through [`EntryMut`], which moves the entry to its new place when the
//! access ends; an insertion or removal in the table relinks what moved.
//!
//! Announcements stamp in version order, so a newly stamped entry goes at the tail in
//! one step; a stamp out of order is placed by walking back from the tail, so the order
//! holds whatever the caller does. The states stamped after `since` are then the
//! unannounced list and the tail of the stamped list down to the first stamp at or
//! below `since`.

use super::{Entry, Registry, UNANNOUNCED};
use crate::service::Version;
use crate::table::Table;

/// No slot.
const NIL: u32 = u32::MAX;

/// An entry's place in its list (in the entry itself, so in the registry's storage).
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

/// Which list an entry with a given stamp belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    Stamped,
    Unannounced,
}

fn list_of(stamp: Version) -> Option<List> {
    match stamp {
        Version(0) => None,
        UNANNOUNCED => Some(List::Unannounced),
        _ => Some(List::Stamped),
    }
}

/// The ends of both lists.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lists {
    stamped: Ends,
    unannounced: Ends,
}

impl Lists {
    pub(crate) const EMPTY: Lists = Lists {
        stamped: Ends::EMPTY,
        unannounced: Ends::EMPTY,
    };

    fn ends(&mut self, list: List) -> &mut Ends {
        match list {
            List::Stamped => &mut self.stamped,
            List::Unannounced => &mut self.unannounced,
        }
    }
}

fn links(table: &Table<'_, Entry>, slot: u32) -> Links {
    table.get(slot as usize).map_or(Links::NONE, |e| e.links)
}

fn stamp(table: &Table<'_, Entry>, slot: u32) -> Version {
    table.get(slot as usize).map_or(Version(0), |e| e.stamp)
}

fn set_prev(table: &mut Table<'_, Entry>, ends: &mut Ends, slot: u32, prev: u32) {
    match table.get_mut(slot as usize) {
        Some(e) => e.links.prev = prev,
        None => ends.tail = prev,
    }
}

fn set_next(table: &mut Table<'_, Entry>, ends: &mut Ends, slot: u32, next: u32) {
    match table.get_mut(slot as usize) {
        Some(e) => e.links.next = next,
        None => ends.head = next,
    }
}

/// Puts the entry in `slot` in the list of its stamp (it is in none).
pub(super) fn link(table: &mut Table<'_, Entry>, lists: &mut Lists, slot: usize) {
    let Some(e) = table.get(slot) else { return };
    let Some(list) = list_of(e.stamp) else {
        return;
    };
    let at = e.stamp;
    let ends = lists.ends(list);
    // After the last entry stamped no later (any place in the unannounced list will do).
    let mut prev = ends.tail;
    if list == List::Stamped {
        while prev != NIL && stamp(table, prev) > at {
            prev = links(table, prev).prev;
        }
    }
    let next = if prev == NIL {
        ends.head
    } else {
        links(table, prev).next
    };
    let slot = slot as u32;
    if let Some(e) = table.get_mut(slot as usize) {
        e.links = Links { prev, next };
    }
    set_next(table, ends, prev, slot);
    set_prev(table, ends, next, slot);
}

/// Takes the entry in `slot` out of the list of `stamp` (the stamp it was linked with).
pub(super) fn unlink(table: &mut Table<'_, Entry>, lists: &mut Lists, slot: usize, stamp: Version) {
    let Some(list) = list_of(stamp) else { return };
    let Some(e) = table.get_mut(slot) else { return };
    let Links { prev, next } = core::mem::replace(&mut e.links, Links::NONE);
    let ends = lists.ends(list);
    set_next(table, ends, prev, next);
    set_prev(table, ends, next, prev);
}

/// The entry linked in slot `from` is now in slot `to`: its neighbours (or the list's
/// ends) point there.
pub(super) fn moved(table: &mut Table<'_, Entry>, lists: &mut Lists, from: usize, to: usize) {
    let Some(e) = table.get(to) else { return };
    let Some(list) = list_of(e.stamp) else { return };
    let Links { prev, next } = e.links;
    debug_assert!(links(table, prev).next == from as u32 || prev == NIL);
    let ends = lists.ends(list);
    set_next(table, ends, prev, to as u32);
    set_prev(table, ends, next, to as u32);
}

impl Registry<'_> {
    /// Writes into `out` the slots of every entry whose stamp may be after `since` (a
    /// superset: every entry stamped after it is there, in no particular order), and
    /// returns how many; `None` when they do not fit (walk the registry instead).
    pub(crate) fn stamped_after(&self, since: Version, out: &mut [u32]) -> Option<usize> {
        let mut n = 0;
        let mut push = |slot: u32| -> Option<()> {
            *out.get_mut(n)? = slot;
            n += 1;
            Some(())
        };
        let mut slot = self.lists.unannounced.head;
        while slot != NIL {
            push(slot)?;
            slot = links(&self.table, slot).next;
        }
        let mut slot = self.lists.stamped.tail;
        while slot != NIL && stamp(&self.table, slot) > since {
            push(slot)?;
            slot = links(&self.table, slot).prev;
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

    /// Every list is well formed and holds exactly the entries of its stamp, the
    /// stamped one in stamp order.
    fn check_lists(registry: &Registry<'_>, seed: u64) {
        for (list, ends) in [
            (List::Stamped, registry.lists.stamped),
            (List::Unannounced, registry.lists.unannounced),
        ] {
            let mut count = 0;
            let (mut prev, mut slot) = (NIL, ends.head);
            while slot != NIL {
                let e = registry
                    .get(slot as usize)
                    .expect("a listed slot holds an entry");
                assert_eq!(list_of(e.stamp), Some(list), "seed {seed}");
                assert_eq!(e.links.prev, prev, "seed {seed}");
                if list == List::Stamped && prev != NIL {
                    assert!(stamp(&registry.table, prev) <= e.stamp, "seed {seed}");
                }
                count += 1;
                assert!(count <= registry.len(), "seed {seed}: a cycle");
                (prev, slot) = (slot, e.links.next);
            }
            assert_eq!(ends.tail, prev, "seed {seed}");
            let held = registry
                .iter()
                .filter(|(_, e)| list_of(e.stamp) == Some(list))
                .count();
            assert_eq!(count, held, "seed {seed}");
        }
    }

    /// Random churn (insertions, removals that move the last slot, stamps set to 0,
    /// unannounced, in order and out of order): the index answers exactly what a walk
    /// of the whole registry finds, and its lists stay well formed.
    #[test]
    fn the_index_finds_what_a_full_walk_finds_under_random_churn() {
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
                        // Other fields change with it, as the directory's do.
                        e.announce = !e.announce;
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
                    .filter(|&s| stamp(&registry.table, s) > since)
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
