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
//!   the listener asks for a snapshot. Only a state of the same name as such a removal
//!   waits: the names of those forgotten lately are kept in a filter ([`LateNames`]).
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

impl Removal {
    /// Told by a datagram stamped above its version: it may have reached its directory
    /// late (see the module docs).
    fn late(&self) -> bool {
        self.stamp > self.version
    }
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

/// A filter of the names of forgotten removals that may have reached their directory
/// late, by when they were heard: one 256-bit Bloom filter for each of the last two
/// periods of [`IN_FLIGHT`]. A name not in it is the name of no such removal heard less
/// than [`IN_FLIGHT`] ago (a name in it may be: the filter errs only that way). Without
/// it, under a steady stream of removals, a state perhaps older than a forgotten one was
/// refused until a second after the last removal forgotten, whatever its name, for as
/// long as the stream lasted.
#[derive(Clone, Copy, Debug, Default)]
struct LateNames {
    /// When the current period began (`None`: nothing recorded yet).
    since: Option<Instant>,
    /// Names heard in `[since, since + IN_FLIGHT)`.
    current: [u32; LATE_WORDS],
    /// Names heard in `[since - IN_FLIGHT, since)`.
    previous: [u32; LATE_WORDS],
}

/// Words of each filter (none in a register-only build, which forgets no removal).
const LATE_WORDS: usize = if LISTEN { 8 } else { 0 };

impl LateNames {
    /// The two filter bits of the name whose hash is `name`, as (word, bit) pairs.
    fn bits(name: u64) -> [(usize, u32); 2] {
        let bit = |i: u64| ((i as usize >> 5) & 7, 1u32 << (i & 31));
        [bit(name), bit(name >> 8)]
    }

    /// Records a removal of `name` heard at `heard`, forgotten at `now`.
    fn add(&mut self, name: u64, heard: Instant, now: Instant) {
        if !LISTEN {
            return;
        }
        self.roll(now);
        let Some(since) = self.since else { return };
        let filter = if heard >= since {
            &mut self.current
        } else if since.saturating_since(heard) <= IN_FLIGHT {
            &mut self.previous
        } else {
            // Heard before both periods: more than IN_FLIGHT ago, no longer in flight.
            return;
        };
        for (word, bit) in Self::bits(name) {
            filter[word] |= bit;
        }
    }

    /// Moves the periods on so that `now` falls in the current one.
    fn roll(&mut self, now: Instant) {
        match self.since {
            Some(since) if now.saturating_since(since) < IN_FLIGHT => {}
            Some(since) if now.saturating_since(since) < IN_FLIGHT + IN_FLIGHT => {
                self.previous = self.current;
                self.current = [0; LATE_WORDS];
                self.since = Some(since + IN_FLIGHT);
            }
            _ => {
                *self = LateNames {
                    since: Some(now),
                    ..LateNames::default()
                }
            }
        }
    }

    /// Whether a removal of `name` heard less than [`IN_FLIGHT`] before `now` may have
    /// been recorded.
    fn may_hold(&self, name: u64, now: Instant) -> bool {
        let Some(since) = self.since.filter(|_| LISTEN) else {
            return false;
        };
        let elapsed = now.saturating_since(since);
        let current = elapsed < IN_FLIGHT + IN_FLIGHT;
        let previous = elapsed < IN_FLIGHT;
        Self::bits(name).iter().all(|&(word, bit)| {
            (current && self.current[word] & bit != 0)
                || (previous && self.previous[word] & bit != 0)
        })
    }
}

impl Floor {
    /// Raises the floor to a removal forgotten.
    fn raise(&mut self, forgotten: Removal) {
        self.merge(Floor {
            raised: true,
            version: forgotten.version,
            stamp: forgotten.stamp,
            inexact: forgotten.late().then_some(forgotten.heard),
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
    /// `now`, may predate a forgotten removal (see the module docs); `late` says whether
    /// a removal of its name that may have reached its directory late may be in flight.
    fn judge(&self, version: Version, as_of: Version, now: Instant, late: bool) -> Verdict {
        if !self.raised || version > self.version || as_of > self.stamp {
            return Verdict::Taken;
        }
        if as_of < self.version {
            return Verdict::Unsure;
        }
        // Stamped at or after every removal forgotten: after each one that reached its
        // directory at its own version, and after the others unless still in flight.
        match self.inexact {
            Some(heard) if late && now.saturating_since(heard) < IN_FLIGHT => {
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
    /// The names of the removals forgotten into `floor` that may have reached their
    /// directory late and may still be in flight.
    late: LateNames,
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

    /// Remembers `removal` (heard now), forgetting the oldest (and raising the floor to
    /// it) when full.
    fn push(&mut self, removal: Removal) {
        if self.ring.is_full() {
            if let Some(forgotten) = self.ring.pop_front() {
                if self.inherited > 0 {
                    self.inherited -= 1;
                    self.inherited_floor.raise(forgotten);
                } else {
                    self.floor.raise(forgotten);
                    if forgotten.late() {
                        self.late
                            .add(forgotten.name, forgotten.heard, removal.heard);
                    }
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
        let late = self.late.may_hold(h, now);
        self.floor.judge(version, as_of, now, late)
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
        self.late = LateNames::default();
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

    /// Under a steady stream of removals that may have reached their directory late, a
    /// state is refused for one still in flight only if one of its own name may be.
    /// Before, every state perhaps older than one forgotten was refused until a second
    /// after the last one forgotten, whatever its name, for as long as the stream lasted
    /// (the history checker found it, seed 1144237: a listener converged 5 s late).
    #[test]
    fn a_stream_of_late_removals_refuses_only_their_own_names() {
        extern crate std;
        use std::format;
        let mut r = Removals::new();
        let mut now = T0;
        // 40 a second for 3 s, each told by a datagram stamped above its version.
        for k in 0..120u64 {
            now = T0 + Duration::from_millis(25 * k);
            r.bury(
                &format!("gone-{k}"),
                Version(100 + k),
                Version(1000 + k),
                now,
            );
        }
        // Forgotten: up to gone-103 (version 203, stamp 1103, heard at 2.575 s).
        let page = Version(1050);
        assert_eq!(r.judge("kept", Version(50), page, now), Verdict::Taken);
        // One of the names forgotten in the last second: refused until that second ends.
        assert_eq!(
            r.judge("gone-100", Version(50), page, now),
            Verdict::RefusedUntil(T0 + Duration::from_millis(2575) + IN_FLIGHT)
        );
        // One forgotten more than a second ago is no longer in flight: taken.
        let later = now + IN_FLIGHT + IN_FLIGHT;
        assert_eq!(
            r.judge("gone-100", Version(50), page, later),
            Verdict::Taken
        );
        // Stamped below a forgotten removal's version: perhaps older, whatever its name.
        assert_eq!(
            r.judge("kept", Version(50), Version(150), now),
            Verdict::Unsure
        );
    }

    /// The filter keeps every name for at least IN_FLIGHT after it was heard, across
    /// its periods, and forgets it after two.
    #[test]
    fn late_names_are_kept_while_in_flight() {
        let mut late = LateNames::default();
        let at = |ms| T0 + Duration::from_millis(ms);
        late.add(1, at(0), at(0));
        late.add(2, at(900), at(1500));
        late.add(3, at(100), at(1500));
        for ms in [0, 500, 999] {
            assert!(late.may_hold(1, at(ms)), "{ms}");
        }
        for ms in [1500, 1899] {
            assert!(late.may_hold(2, at(ms)), "{ms}");
        }
        // Heard at 0.1 s, forgotten at 1.5 s: kept until 1.1 s has passed, in the
        // period before the current one.
        assert!(late.may_hold(3, at(1099)));
        assert!(!late.may_hold(3, at(2000)));
        assert!(!late.may_hold(2, at(3000)));
        assert!(!late.may_hold(77, at(500)));
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
