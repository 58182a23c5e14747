//! The removals a listener remembers, and a floor for those it has forgotten.
//!
//! A late copy of an announcement must not bring back a service removed since. The
//! listener keeps the last [`REMEMBERED`] removals by name, each with the `as_of` stamp
//! of the datagram that told it; when one is forgotten to make room, the *forgotten
//! floor* rises to its version and its stamp. An item for a name the listener does not
//! hold, at a version at or below the floor, might be older than a forgotten removal:
//! it is taken only from a datagram written after every forgotten removal was told,
//! that is stamped above the floor's stamp (a directory's stamp never goes down). A
//! datagram stamped exactly at the floor's stamp was written at the same registry state
//! as the newest of those announcements: after the removal only if the removal itself
//! set that stamp (its version is the stamp), or — with a replicated store, where a
//! removal made through another directory arrives late at an older version and sets
//! no stamp — if it arrives at least the directory timeout after the removal was
//! forgotten (a page written before it is no longer in flight; an idle directory's
//! stamp never rises). Otherwise it is refused, and a later sweep or snapshot brings the
//! service if it is really live: overflowing the ring costs a delay, never a
//! resurrection.
//!
//! A listener that moves to another directory keeps what it remembered as *inherited*
//! removals until the failover grace ends: the directory it moves to may share the
//! store of the one it left (one version space) and not have caught up yet, or the one
//! it left may still deliver late copies of its announcements. Inherited removals are
//! then forgotten at once (no floor): the new directory may be an independent one,
//! whose versions are not comparable, and its word must win.

use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Version;
use crate::time::{Duration, Instant};

/// Removals remembered by name.
pub(super) const REMEMBERED: usize = 16;

/// A removal remembered: the name's hash, its version, and the `as_of` stamp of the
/// datagram that told it.
#[derive(Clone, Copy, Debug)]
struct Removal {
    name: u64,
    version: Version,
    stamp: Version,
}

/// What the removals forgotten still refuse.
#[derive(Clone, Copy, Debug, Default)]
struct Floor {
    /// The newest version of any removal forgotten.
    version: Version,
    /// The newest stamp of the datagrams that told them.
    stamp: Version,
    /// Every forgotten removal told at `stamp` has that stamp as its version (it was
    /// the newest change of the directory when told).
    exact: bool,
    /// When `stamp` was last reached; `None` while nothing was forgotten.
    since: Option<Instant>,
}

impl Floor {
    /// Raises the floor to a removal forgotten at `now`.
    fn raise(&mut self, forgotten: Removal, now: Instant) {
        self.merge(Floor {
            version: forgotten.version,
            stamp: forgotten.stamp,
            exact: forgotten.version == forgotten.stamp,
            since: Some(now),
        });
    }

    /// The floor of the removals forgotten here and in `other`.
    fn merge(&mut self, other: Floor) {
        let Some(since) = other.since else { return };
        self.version = self.version.max(other.version);
        match self.since {
            Some(mine) if other.stamp == self.stamp => {
                self.exact &= other.exact;
                self.since = Some(mine.max(since));
            }
            Some(_) if other.stamp < self.stamp => {}
            _ => {
                self.stamp = other.stamp;
                self.exact = other.exact;
                self.since = Some(since);
            }
        }
    }

    /// True when a state at `version`, from a datagram stamped `as_of` and received at
    /// `now`, may predate a forgotten removal (see the module docs).
    fn refuses(&self, version: Version, as_of: Version, now: Instant, patience: Duration) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        if version > self.version || as_of > self.stamp {
            return false;
        }
        if as_of < self.stamp {
            return true;
        }
        !self.exact && now.saturating_since(since) < patience
    }
}

/// The recent removals of the directory followed, and the forgotten floor.
#[derive(Clone, Debug, Default)]
pub(super) struct Removals {
    ring: heapless::Deque<Removal, REMEMBERED>,
    floor: Floor,
    /// How many removals at the front of the ring were remembered before the last move
    /// to another directory.
    inherited: usize,
    /// The forgotten floor as it stood before the last move, raised by inherited
    /// removals forgotten since.
    inherited_floor: Floor,
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
            .filter(|r| r.name == h)
            .map(|r| r.version)
            .max()
    }

    /// Remembers that `name` was removed at `version`, as told at `now` by a datagram
    /// stamped `stamp`, forgetting the oldest removal (and raising the floor to it)
    /// when full.
    pub(super) fn bury(&mut self, name: &str, version: Version, stamp: Version, now: Instant) {
        if self.ring.is_full() {
            if let Some(forgotten) = self.ring.pop_front() {
                if self.inherited > 0 {
                    self.inherited -= 1;
                    self.inherited_floor.raise(forgotten, now);
                } else {
                    self.floor.raise(forgotten, now);
                }
            }
        }
        let _ = self.ring.push_back(Removal {
            name: fnv1a(FNV_OFFSET, name.as_bytes()),
            version,
            stamp: stamp.max(version),
        });
    }

    /// True when a state of `name` at `version`, from a datagram stamped `as_of` and
    /// received at `now`, may be older than a removal of it: a remembered removal at or
    /// after `version`, or a forgotten one the datagram may predate (`patience`: the
    /// directory timeout).
    pub(super) fn refuses(
        &self,
        name: &str,
        version: Version,
        as_of: Version,
        now: Instant,
        patience: Duration,
    ) -> bool {
        if self.get(name).is_some_and(|v| v >= version) {
            return true;
        }
        self.floor.refuses(version, as_of, now, patience)
            || self.inherited_floor.refuses(version, as_of, now, patience)
    }

    /// The listener moves to another directory: everything remembered so far becomes
    /// inherited (kept until [`Removals::forget_inherited`]).
    pub(super) fn inherit(&mut self) {
        self.inherited = self.ring.len();
        self.inherited_floor.merge(self.floor);
        self.floor = Floor::default();
    }

    /// The failover grace is over: forgets the inherited removals and their floor.
    /// True when there were any (a state they refused may be live at the new directory).
    pub(super) fn forget_inherited(&mut self) -> bool {
        let any = self.inherited > 0 || self.inherited_floor.since.is_some();
        for _ in 0..self.inherited {
            self.ring.pop_front();
        }
        self.inherited = 0;
        self.inherited_floor = Floor::default();
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;
    const PATIENCE: Duration = Duration::from_secs(3);

    #[test]
    fn a_forgotten_removal_refuses_only_datagrams_that_predate_it() {
        let mut r = Removals::new();
        for k in 0..REMEMBERED as u64 + 1 {
            let name = if k == 0 { "old" } else { "other" };
            r.bury(name, Version(10 + k), Version(10 + k), T0);
        }
        assert_eq!(r.get("old"), None, "forgotten");
        // A late copy of "old" at version 5, from a datagram written at 9: refused.
        assert!(r.refuses("old", Version(5), Version(9), T0, PATIENCE));
        // The same state in a page written after the removal: taken.
        assert!(!r.refuses("old", Version(5), Version(10), T0, PATIENCE));
        // A newer registration is never refused.
        assert!(!r.refuses("old", Version(11), Version(11), T0, PATIENCE));
        assert!(
            r.refuses("other", Version(12), Version(30), T0, PATIENCE),
            "remembered"
        );
    }

    /// A removal made through another directory of a replicated store reaches the
    /// publisher late, at a version below its stamp: a page at that very stamp may have
    /// been written before it arrived.
    #[test]
    fn a_page_at_the_stamp_of_a_late_removal_waits_for_the_directory_timeout() {
        let mut r = Removals::new();
        r.bury("late", Version(10), Version(50), T0);
        for k in 0..REMEMBERED as u64 {
            r.bury("more", Version(20 + k), Version(50), T0);
        }
        assert_eq!(r.get("late"), None, "forgotten");
        let now = T0 + Duration::from_secs(1);
        assert!(r.refuses("late", Version(5), Version(49), now, PATIENCE));
        assert!(r.refuses("late", Version(5), Version(50), now, PATIENCE));
        assert!(!r.refuses("late", Version(5), Version(51), now, PATIENCE));
        let later = T0 + PATIENCE;
        assert!(!r.refuses("late", Version(5), Version(50), later, PATIENCE));
    }

    #[test]
    fn inherited_removals_refuse_until_forgotten() {
        let mut r = Removals::new();
        for k in 0..REMEMBERED as u64 {
            r.bury("before", Version(10 + k), Version(10 + k), T0);
        }
        r.inherit();
        r.bury("after", Version(100), Version(100), T0);
        assert_eq!(r.get("after"), Some(Version(100)));
        // The first inherited removal made room: it raised the inherited floor.
        assert!(r.refuses("gone", Version(10), Version(9), T0, PATIENCE));
        assert!(r.refuses("before", Version(20), Version(200), T0, PATIENCE));
        assert!(r.forget_inherited());
        assert_eq!(r.get("before"), None);
        assert!(!r.refuses("gone", Version(10), Version(9), T0, PATIENCE));
        assert!(
            r.refuses("after", Version(99), Version(200), T0, PATIENCE),
            "kept"
        );
        assert!(!r.forget_inherited(), "nothing left to forget");
    }
}
