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
//!
//! A listener that moves to another directory keeps what it remembered as *inherited*
//! removals until the failover grace ends: the directory it moves to may share the
//! store of the one it left (one version space) and not have caught up yet, or the one
//! it left may still deliver late copies of its announcements. Inherited removals are
//! then forgotten at once (no floor): the new directory may be an independent one,
//! whose versions are not comparable, and its word must win.
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
    /// How many removals at the front of the ring were remembered before the last move
    /// to another directory.
    inherited: usize,
    /// The forgotten floor as it stood before the last move, raised by inherited
    /// removals forgotten since.
    inherited_floor: Version,
}

impl Removals {
    /// Nothing remembered, nothing forgotten.
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
                if self.inherited > 0 {
                    self.inherited -= 1;
                    self.inherited_floor = self.inherited_floor.max(forgotten);
                } else {
                    self.floor = self.floor.max(forgotten);
                }
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
        let floor = self.floor.max(self.inherited_floor);
        version <= floor && as_of < floor
    }

    /// The listener moves to another directory: everything remembered so far becomes
    /// inherited (kept until [`Removals::forget_inherited`]).
    pub(super) fn inherit(&mut self) {
        self.inherited = self.ring.len();
        self.inherited_floor = self.inherited_floor.max(self.floor);
        self.floor = Version(0);
    }

    /// The failover grace is over: forgets the inherited removals and their floor.
    /// True when there were any (a state they refused may be live at the new directory).
    pub(super) fn forget_inherited(&mut self) -> bool {
        let any = self.inherited > 0 || self.inherited_floor > Version(0);
        for _ in 0..self.inherited {
            self.ring.pop_front();
        }
        self.inherited = 0;
        self.inherited_floor = Version(0);
        any
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

    #[test]
    fn inherited_removals_refuse_until_forgotten() {
        let mut r = Removals::new();
        for k in 0..REMEMBERED as u64 {
            r.bury("before", Version(10 + k));
        }
        r.inherit();
        r.bury("after", Version(100));
        assert_eq!(r.get("after"), Some(Version(100)));
        // The first inherited removal made room: it raised the inherited floor.
        assert!(r.refuses("gone", Version(10), Version(9)));
        assert!(r.refuses("before", Version(20), Version(200)));
        assert!(r.forget_inherited());
        assert_eq!(r.get("before"), None);
        assert!(!r.refuses("gone", Version(10), Version(9)));
        assert!(r.refuses("after", Version(99), Version(200)), "kept");
        assert!(!r.forget_inherited(), "nothing left to forget");
    }
}
