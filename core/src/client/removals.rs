//! The removals a listener remembers, and a floor for those it has forgotten.
//!
//! A late copy of an announcement must not bring back a service removed since. The
//! listener keeps the last [`REMEMBERED`] removals by name; when one is forgotten to make
//! room, the *forgotten floor* rises to its version. An item for a name the listener
//! does not hold, at a version at or below the floor, might be older than a forgotten
//! removal: it is taken only from a datagram whose `as_of` stamp is at or above the
//! floor (written after every forgotten removal, so it reflects them). Otherwise it is
//! refused, and the next sweep or snapshot brings the service if it is really live:
//! overflowing the ring costs a delay, never a resurrection.

use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Version;

/// Removals remembered by name.
pub(super) const REMEMBERED: usize = 16;

/// The recent removals of the directory followed, and the forgotten floor.
#[derive(Clone, Debug, Default)]
pub(super) struct Removals {
    ring: heapless::Deque<(u64, Version), REMEMBERED>,
    /// The newest version of any removal forgotten.
    floor: Version,
}

impl Removals {
    /// Nothing remembered, nothing forgotten: for a directory followed afresh.
    pub(super) fn new() -> Self {
        Removals::default()
    }

    /// The newest version at which `name` was removed, if remembered.
    pub(super) fn get(&self, name: &str) -> Option<Version> {
        let h = fnv1a(FNV_OFFSET, name.as_bytes());
        self.ring
            .iter()
            .filter(|(n, _)| *n == h)
            .map(|(_, v)| *v)
            .max()
    }

    /// Remembers that `name` was removed at `version`, forgetting the oldest removal
    /// (and raising the floor to it) when full.
    pub(super) fn bury(&mut self, name: &str, version: Version) {
        if self.ring.is_full() {
            if let Some((_, forgotten)) = self.ring.pop_front() {
                self.floor = self.floor.max(forgotten);
            }
        }
        let _ = self
            .ring
            .push_back((fnv1a(FNV_OFFSET, name.as_bytes()), version));
    }

    /// True when a state of `name` at `version`, from a datagram stamped `as_of`, may be
    /// older than a removal of it: a remembered removal at or after `version`, or a
    /// forgotten one the datagram may predate.
    pub(super) fn refuses(&self, name: &str, version: Version, as_of: Version) -> bool {
        if self.get(name).is_some_and(|v| v >= version) {
            return true;
        }
        version <= self.floor && as_of < self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_removal_refuses_only_datagrams_that_predate_it() {
        let mut r = Removals::new();
        for k in 0..REMEMBERED as u64 + 1 {
            r.bury(if k == 0 { "old" } else { "other" }, Version(10 + k));
        }
        assert_eq!(r.get("old"), None, "forgotten");
        // A late copy of "old" at version 5, from a datagram written at 9: refused.
        assert!(r.refuses("old", Version(5), Version(9)));
        // The same state in a page written after the removal: taken.
        assert!(!r.refuses("old", Version(5), Version(10)));
        // A newer registration is never refused.
        assert!(!r.refuses("old", Version(11), Version(11)));
        assert!(r.refuses("other", Version(12), Version(30)), "remembered");
    }
}
