//! A fixed-capacity table of named entries in caller-owned storage, with a name-sorted
//! index: O(log n) look-up, ordered iteration from any name, and no allocation.
//!
//! Entries are kept dense in `slots[..len]`; `index[..len]` holds slot numbers sorted
//! by name. Removing an entry moves the last slot into the hole, so slot numbers are
//! only stable until the next removal.

use core::cmp::Ordering;

/// An entry that has a name to be sorted by.
pub trait Named {
    /// The name the table is sorted by.
    fn name(&self) -> &str;
}

/// The table over borrowed storage.
#[derive(Debug)]
pub struct Table<'a, T> {
    slots: &'a mut [Option<T>],
    index: &'a mut [u32],
    len: usize,
}

impl<'a, T: Named> Table<'a, T> {
    /// A table over `slots` and `index`; its capacity is the smaller of the two (and at
    /// most `u32::MAX`). Existing contents of the storage are discarded.
    pub fn new(slots: &'a mut [Option<T>], index: &'a mut [u32]) -> Self {
        for s in slots.iter_mut() {
            *s = None;
        }
        Table {
            slots,
            index,
            len: 0,
        }
    }

    /// Ends the table and hands back its storage (its contents are discarded by the
    /// next [`Table::new`] over it).
    pub fn into_parts(self) -> (&'a mut [Option<T>], &'a mut [u32]) {
        (self.slots, self.index)
    }

    /// How many entries the table can hold.
    pub fn capacity(&self) -> usize {
        self.slots
            .len()
            .min(self.index.len())
            .min(u32::MAX as usize)
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when no entry can be added.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity()
    }

    fn slot_at(&self, pos: usize) -> usize {
        self.index[pos] as usize
    }

    fn name_at(&self, pos: usize) -> &str {
        self.slots[self.slot_at(pos)]
            .as_ref()
            .map_or("", |e| e.name())
    }

    /// Binary search: `Ok(position)` of `name` in the index, or `Err(position)` where it
    /// would be inserted.
    pub fn search(&self, name: &str) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.name_at(mid).cmp(name) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The slot holding `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.search(name).ok().map(|pos| self.slot_at(pos))
    }

    /// The entry in `slot`. Out of line: tables are read in many places, and one copy
    /// per table in a firmware is smaller than one at each.
    #[inline(never)]
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// The entry in `slot`, mutably (out of line, as [`get`](Table::get)). The caller
    /// must not change its name.
    #[inline(never)]
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    /// Inserts an entry whose name is not present; returns its slot, or gives the entry
    /// back when the table is full or the name is already present.
    pub fn insert(&mut self, entry: T) -> Result<usize, T> {
        if self.is_full() {
            return Err(entry);
        }
        let pos = match self.search(entry.name()) {
            Ok(_) => return Err(entry),
            Err(pos) => pos,
        };
        let slot = self.len;
        self.slots[slot] = Some(entry);
        self.index.copy_within(pos..self.len, pos + 1);
        // slot < capacity <= u32::MAX
        self.index[pos] = slot as u32;
        self.len += 1;
        Ok(slot)
    }

    /// Removes and returns the entry in `slot`. The entry that was in the last slot moves
    /// into `slot`.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let pos = self.search(self.get(slot)?.name()).ok()?;
        self.index.copy_within(pos + 1..self.len, pos);
        let last = self.len - 1;
        self.len -= 1;
        if slot != last {
            // The index still points at `last`, whose entry is still in place.
            if let Ok(moved) = self.search(self.name_at_slot(last)) {
                self.index[moved] = slot as u32;
            }
            self.slots.swap(slot, last);
        }
        self.slots[last].take()
    }

    fn name_at_slot(&self, slot: usize) -> &str {
        self.slots[slot].as_ref().map_or("", |e| e.name())
    }

    /// The position in name order of the first entry whose name is after `after`
    /// (`None`: the first entry).
    pub fn position_after(&self, after: Option<&str>) -> usize {
        match after {
            None => 0,
            Some(name) => match self.search(name) {
                Ok(pos) => pos + 1,
                Err(pos) => pos,
            },
        }
    }

    /// The slot of the entry at `position` in name order.
    pub fn slot_at_position(&self, position: usize) -> Option<usize> {
        (position < self.len).then(|| self.slot_at(position))
    }

    /// All entries, in slot order (not name order), with their slots.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots[..self.len]
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (i, e)))
    }

    /// All entries, mutably, in slot order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.slots[..self.len]
            .iter_mut()
            .enumerate()
            .filter_map(|(i, e)| e.as_mut().map(|e| (i, e)))
    }

    /// All entries in name order.
    pub fn ordered(&self) -> impl Iterator<Item = &T> {
        self.index[..self.len]
            .iter()
            .filter_map(|&s| self.slots[s as usize].as_ref())
    }
}

/// Fixed storage for a table of `N` entries, for places without a heap.
pub struct TableStorage<T, const N: usize> {
    slots: [Option<T>; N],
    index: [u32; N],
}

impl<T, const N: usize> TableStorage<T, N> {
    /// Empty storage.
    pub const fn new() -> Self {
        TableStorage {
            slots: [const { None }; N],
            index: [0; N],
        }
    }

    /// The two parts a state machine takes: the slots and the index.
    pub fn parts(&mut self) -> (&mut [Option<T>], &mut [u32]) {
        (&mut self.slots, &mut self.index)
    }
}

impl<T, const N: usize> Default for TableStorage<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(&'static str);
    impl Named for E {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn insert_find_remove_keep_order() {
        let mut slots: [Option<E>; 5] = Default::default();
        let mut index = [0u32; 5];
        let mut t = Table::new(&mut slots, &mut index);
        for n in ["d", "b", "e", "a", "c"] {
            t.insert(E(n)).unwrap();
        }
        assert!(t.insert(E("f")).is_err());
        let names: heapless::Vec<&str, 5> = t.ordered().map(|e| e.0).collect();
        assert_eq!(&names[..], &["a", "b", "c", "d", "e"]);
        let b = t.find("b").unwrap();
        assert_eq!(t.remove(b), Some(E("b")));
        assert_eq!(t.find("b"), None);
        for n in ["a", "c", "d", "e"] {
            assert_eq!(t.get(t.find(n).unwrap()).unwrap().0, n);
        }
        assert_eq!(t.position_after(Some("b")), 1);
        assert_eq!(t.position_after(Some("c")), 2);
        assert!(t.insert(E("c")).is_err());
        t.insert(E("bb")).unwrap();
        let names: heapless::Vec<&str, 5> = t.ordered().map(|e| e.0).collect();
        assert_eq!(&names[..], &["a", "bb", "c", "d", "e"]);
    }
}
