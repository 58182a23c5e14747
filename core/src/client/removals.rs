//! The removals a listener remembers, and a floor for those it has forgotten.
//!
//! A late copy of an announcement must not bring back a service removed since. The
//! listener keeps the last [`REMEMBERED`] removals by name, each with the `as_of` stamp
//! of the datagram that told it and when it came; when one is forgotten to make room,
//! the *forgotten floor* rises to its version. An item for a name the listener does not
//! hold, at a version at or below the floor, might be older than a forgotten removal:
//!
//! * from a datagram stamped below the floor, it is refused;
//! * from one stamped at or above the floor, it is taken (the datagram was written after
//!   every forgotten removal, so it reflects them) — unless a forgotten removal was told
//!   by a datagram stamped above its version, heard less than [`IN_FLIGHT`] ago, and the
//!   item's datagram is stamped no later than that. With a replicated store, a removal
//!   made through another directory reaches the publisher late, at a version below its
//!   newest: a page the publisher wrote just before it arrived carries a stamp above the
//!   removal's version, and may be overtaken in the network by the announcement. (The
//!   listener cannot tell this from a repeat of an older removal, which it may hear
//!   first; it keeps the stamp only of a removal that takes down a live state it holds,
//!   and the removal's version as stamp for any other, so that repeats of removals it
//!   already applied keep nobody waiting.) Once no such page can still be on its way,
//!   the listener asks for a snapshot.
//!
//! Whatever is refused, a later sweep, snapshot or repair brings if it is really live
//! (a state refused for a forgotten removal holds the announcement chain below it, so
//! the listener asks for it again: see the `repair` module): overflowing the ring costs
//! a delay, never a resurrection.
//!
//! A listener that moves to another directory keeps what it remembered as *inherited*
//! removals until the failover grace ends: the directory it moves to may share the
//! store of the one it left (one version space) and not have caught up yet, or the one
//! it left may still deliver late copies of its announcements. Inherited removals are
//! then forgotten at once (no floor): the new directory may be an independent one,
//! whose versions are not comparable, and its word must win. Until then, the floor of
//! the removals forgotten before the move refuses every state at or below it, whatever
//! the stamp: the new directory's stamps do not show that it has applied them.

use super::LISTEN;
use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Version;
use crate::time::{Duration, Instant};

/// Removals remembered by name (one in a register-only build, which never hears one:
/// the ring is a listener's, and its 16 entries would be 0.6 KB of RAM for nothing).
pub(super) const REMEMBERED: usize = if LISTEN { 16 } else { 1 };

/// How long a datagram may trail another that its directory sent after it (a page
/// overtaken by an announcement written later).
pub(super) const IN_FLIGHT: Duration = Duration::from_secs(1);

/// A removal remembered: the name's hash, its version, the `as_of` stamp of the
/// datagram that told it, and when that came.
#[derive(Clone, Copy, Debug)]
struct Removal {
    name: u64,
    version: Version,
    stamp: Version,
    heard: Instant,
    /// States up to this version are refused whatever their datagram's stamp; those
    /// above it, up to `version`, only from a datagram stamped before `version`. Below
    /// `version` only for a removal inferred from a page stamped `version` that did not
    /// list the state held at `held` (a registration made through another directory of
    /// a replicated store may reach the publisher after the page, at a version below its
    /// stamp: its announcement, stamped at or after the page, is taken).
    held: Version,
}

/// Whether a state may be older than a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not older than any removal known, remembered or forgotten.
    Taken,
    /// Older than a removal remembered (or, within the failover grace, perhaps older
    /// than one forgotten before the move).
    Refused,
    /// Perhaps older than a removal forgotten: refused, but perhaps live (asked for
    /// again, see the `repair` module).
    Unsure,
    /// Perhaps from a page written before a forgotten removal reached its directory,
    /// still on its way until then; a datagram like it is taken after.
    RefusedUntil(Instant),
}

/// What the removals forgotten still refuse.
#[derive(Clone, Copy, Debug, Default)]
struct Floor {
    /// Something was forgotten.
    raised: bool,
    /// The newest version of any removal forgotten.
    version: Version,
    /// The newest stamp of the datagrams that told them.
    stamp: Version,
    /// When the last removal forgotten that was told by a datagram stamped above its
    /// version was heard (one that may have reached its directory late).
    inexact: Option<Instant>,
}

impl Floor {
    /// Raises the floor to a removal forgotten.
    fn raise(&mut self, forgotten: Removal) {
        self.merge(Floor {
            raised: true,
            version: forgotten.version,
            stamp: forgotten.stamp,
            inexact: (forgotten.stamp > forgotten.version).then_some(forgotten.heard),
        });
    }

    /// The floor of the removals forgotten here and in `other`.
    fn merge(&mut self, other: Floor) {
        self.raised |= other.raised;
        self.version = self.version.max(other.version);
        self.stamp = self.stamp.max(other.stamp);
        self.inexact = self.inexact.max(other.inexact);
    }

    /// Whether a state at `version`, from a datagram stamped `as_of` and received at
    /// `now`, may predate a forgotten removal (see the module docs).
    fn judge(&self, version: Version, as_of: Version, now: Instant) -> Verdict {
        if !self.raised || version > self.version || as_of > self.stamp {
            return Verdict::Taken;
        }
        if as_of < self.version {
            return Verdict::Unsure;
        }
        // Stamped at or after every removal forgotten: after each one that reached its
        // directory at its own version, and after the others unless still in flight.
        match self.inexact {
            Some(heard) if now.saturating_since(heard) < IN_FLIGHT => {
                Verdict::RefusedUntil(heard + IN_FLIGHT)
            }
            _ => Verdict::Taken,
        }
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
        self.push(Removal {
            name: fnv1a(FNV_OFFSET, name.as_bytes()),
            version,
            stamp: stamp.max(version),
            heard: now,
            held: version,
        });
    }

    /// Remembers that a page stamped `as_of`, received at `now`, did not list `name`,
    /// held at `held` (see [`Removal::held`]).
    pub(super) fn bury_unlisted(
        &mut self,
        name: &str,
        held: Version,
        as_of: Version,
        now: Instant,
    ) {
        self.push(Removal {
            name: fnv1a(FNV_OFFSET, name.as_bytes()),
            version: as_of,
            stamp: as_of,
            heard: now,
            held: held.min(as_of),
        });
    }

    /// Remembers `removal`, forgetting the oldest (and raising the floor to it) when full.
    fn push(&mut self, removal: Removal) {
        if self.ring.is_full() {
            if let Some(forgotten) = self.ring.pop_front() {
                if self.inherited > 0 {
                    self.inherited -= 1;
                    self.inherited_floor.raise(forgotten);
                } else {
                    self.floor.raise(forgotten);
                }
            }
        }
        let _ = self.ring.push_back(removal);
    }

    /// Whether a state of `name` at `version`, from a datagram stamped `as_of` and
    /// received at `now`, may be older than a removal of it: a remembered removal at or
    /// after `version`, or a forgotten one the datagram may predate.
    pub(super) fn judge(
        &self,
        name: &str,
        version: Version,
        as_of: Version,
        now: Instant,
    ) -> Verdict {
        // A directory moved to within the failover grace may be one of the same store
        // that is behind: its stamps do not show that it has applied the removals
        // forgotten before the move, so nothing at or below their floor is taken.
        let inherited = self.inherited_floor.raised && version <= self.inherited_floor.version;
        let h = fnv1a(FNV_OFFSET, name.as_bytes());
        let remembered = self
            .ring
            .iter()
            .filter(|r| r.name == h)
            .any(|r| version <= r.held || (version <= r.version && as_of < r.version));
        if inherited || remembered {
            return Verdict::Refused;
        }
        self.floor.judge(version, as_of, now)
    }

    /// True when [`Removals::judge`] does not take the state.
    #[cfg(all(test, feature = "listen"))]
    fn refuses(&self, name: &str, version: Version, as_of: Version, now: Instant) -> bool {
        self.judge(name, version, as_of, now) != Verdict::Taken
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
        let any = self.inherited > 0 || self.inherited_floor.raised;
        for _ in 0..self.inherited {
            self.ring.pop_front();
        }
        self.inherited = 0;
        self.inherited_floor = Floor::default();
        any
    }
}

#[cfg(all(test, feature = "listen"))]
mod tests {
    use super::*;

    const T0: Instant = Instant::ZERO;

    #[test]
    fn a_forgotten_removal_refuses_only_datagrams_that_predate_it() {
        let mut r = Removals::new();
        for k in 0..REMEMBERED as u64 + 1 {
            let name = if k == 0 { "old" } else { "other" };
            r.bury(name, Version(10 + k), Version(10 + k), T0);
        }
        assert_eq!(r.get("old"), None, "forgotten");
        // A late copy of "old" at version 5, from a datagram written at 9: refused.
        assert!(r.refuses("old", Version(5), Version(9), T0));
        // The same state in a page written after the removal: taken.
        assert!(!r.refuses("old", Version(5), Version(10), T0));
        // A newer registration is never refused.
        assert!(!r.refuses("old", Version(11), Version(11), T0));
        assert!(
            r.refuses("other", Version(12), Version(30), T0),
            "remembered"
        );
    }

    /// A removal made through another directory of a replicated store reaches the
    /// publisher late, at a version below its stamp: a page at that very stamp may have
    /// been written before it arrived.
    #[test]
    fn a_page_at_the_stamp_of_a_late_removal_waits_while_one_may_be_in_flight() {
        let mut r = Removals::new();
        r.bury("late", Version(10), Version(50), T0);
        for k in 0..REMEMBERED as u64 {
            r.bury("more", Version(20 + k), Version(50), T0);
        }
        assert_eq!(r.get("late"), None, "forgotten");
        let now = T0 + Duration::from_millis(900);
        assert_eq!(
            r.judge("late", Version(5), Version(9), now),
            Verdict::Unsure
        );
        assert!(r.refuses("late", Version(5), Version(49), now));
        assert_eq!(
            r.judge("late", Version(5), Version(50), now),
            Verdict::RefusedUntil(T0 + IN_FLIGHT)
        );
        assert!(!r.refuses("late", Version(5), Version(51), now));
        let later = T0 + IN_FLIGHT;
        assert!(!r.refuses("late", Version(5), Version(50), later));
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
        assert!(r.refuses("gone", Version(10), Version(9), T0));
        assert!(
            r.refuses("gone", Version(10), Version(200), T0),
            "whatever the stamp"
        );
        assert!(r.refuses("before", Version(20), Version(200), T0));
        assert!(r.forget_inherited());
        assert_eq!(r.get("before"), None);
        assert!(!r.refuses("gone", Version(10), Version(9), T0));
        assert!(r.refuses("after", Version(99), Version(200), T0), "kept");
        assert!(!r.forget_inherited(), "nothing left to forget");
    }
}
