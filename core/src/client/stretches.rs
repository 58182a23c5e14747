//! How far a subscriber has taken a delivery: the stretches of names its pages cover.
//!
//! A delivery's pages each cover the names after one (`after`) up to the last they list
//! (or to the end, for the last page). They may come in any order, from different
//! attempts, written as of different versions, and overlapping (an attempt resumes where
//! the subscriber said it was, which may be behind by then). The subscriber keeps a few
//! stretches of names covered, joins them as the gaps between them fill, and holds the
//! delivery once one stretch runs from the start to the end: every change up to the
//! oldest `as_of` among the pages is then held (the pages of different versions add up
//! as the windows of a snapshot or repair do). The stretch from the start is what it
//! acknowledges as `taken`, where the directory's next attempt resumes.
//!
//! The stretches are bounded: a page that would need one more is not counted (its
//! contents are still taken, through the usual checks), and a later attempt sends it
//! again. Correctness never depends on that room: only a stretch from the start to the
//! end completes a delivery.

use super::*;

/// How many separate stretches are kept, the one from the start included (one in a
/// build without subscription mode, which never subscribes).
const STRETCHES: usize = if SUBSCRIBE { 4 } else { 1 };

/// The names after `from` (from the start when `None`) up to `to`, or to the end.
#[derive(Clone, Debug)]
struct Stretch {
    from: Option<ServiceName>,
    to: Option<ServiceName>,
    end: bool,
}

impl Stretch {
    /// True when `other` starts within this stretch, or right where it ends.
    fn reaches(&self, other: &Stretch) -> bool {
        self.from <= other.from && (self.end || other.from <= self.to)
    }

    /// The stretch covering both (which reach each other).
    fn join(self, other: Stretch) -> Stretch {
        Stretch {
            from: self.from.min(other.from),
            to: self.to.max(other.to),
            end: self.end || other.end,
        }
    }
}

/// The pages of one delivery taken so far.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    /// Its pages are snapshot pages (otherwise changes).
    pub(super) snapshot: bool,
    /// The oldest `as_of` among the pages counted.
    as_of: Version,
    /// Sorted by where they start; no two reach each other.
    stretches: heapless::Vec<Stretch, STRETCHES>,
}

impl Progress {
    /// Nothing taken yet of a delivery of this kind.
    pub(super) fn new(snapshot: bool) -> Self {
        Progress {
            snapshot,
            as_of: Version(u64::MAX),
            stretches: heapless::Vec::new(),
        }
    }

    /// Counts a page written as of `as_of` that covers the names after `after` up to
    /// `last` (or up to the end when `complete`); false when there is no room for it.
    pub(super) fn take(
        &mut self,
        after: Option<ServiceName>,
        last: Option<ServiceName>,
        complete: bool,
        as_of: Version,
    ) -> bool {
        let mut page = Stretch {
            to: last.or_else(|| after.clone()),
            from: after,
            end: complete,
        };
        let joins = |s: &Stretch, page: &Stretch| s.reaches(page) || page.reaches(s);
        if self.stretches.is_full() && !self.stretches.iter().any(|s| joins(s, &page)) {
            return false;
        }
        let mut i = 0;
        while i < self.stretches.len() {
            if joins(&self.stretches[i], &page) {
                page = self.stretches.remove(i).join(page);
            } else {
                i += 1;
            }
        }
        let at = self
            .stretches
            .iter()
            .position(|s| s.from > page.from)
            .unwrap_or(self.stretches.len());
        // At least one stretch was joined into the page when the room was full.
        let _ = self.stretches.insert(at, page);
        self.as_of = self.as_of.min(as_of);
        true
    }

    /// The last name of the stretch from the start: every name up to it is taken
    /// (`None`: none).
    pub(super) fn taken(&self) -> Option<ServiceName> {
        self.stretches
            .first()
            .filter(|s| s.from.is_none())
            .and_then(|s| s.to.clone())
    }

    /// When the pages taken cover every name: the oldest `as_of` among them.
    pub(super) fn complete(&self) -> Option<Version> {
        self.stretches
            .first()
            .is_some_and(|s| s.from.is_none() && s.end)
            .then_some(self.as_of)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;

    fn name(s: &str) -> Option<ServiceName> {
        Some(ServiceName::new(s).unwrap())
    }

    /// Counts the page covering the names after `after` up to `last`.
    fn page(p: &mut Progress, after: &str, last: &str, complete: bool, as_of: u64) -> bool {
        let after = (!after.is_empty()).then(|| name(after)).flatten();
        p.take(after, name(last), complete, Version(as_of))
    }

    #[test]
    fn progress_is_small() {
        let size = core::mem::size_of::<Progress>();
        std::eprintln!("a delivery's progress: {size} bytes");
        // Two names a stretch: 4 × 2 × 80 bytes, and a version (on a 64-bit host).
        assert!(size <= 720, "{size} bytes");
    }

    #[test]
    fn pages_in_any_order_complete_at_the_oldest_as_of() {
        let mut p = Progress::new(true);
        assert!(page(&mut p, "c", "e", true, 30));
        assert!(page(&mut p, "b", "c", false, 20));
        assert_eq!(p.taken(), None);
        assert_eq!(p.complete(), None);
        assert!(page(&mut p, "", "b", false, 40));
        assert_eq!(p.taken(), name("e"));
        assert_eq!(p.complete(), Some(Version(20)));
    }

    #[test]
    fn an_overlapping_page_extends_what_was_taken() {
        let mut p = Progress::new(false);
        assert!(page(&mut p, "", "c", false, 10));
        // An attempt that resumed behind the subscriber.
        assert!(page(&mut p, "a", "d", false, 12));
        assert_eq!(p.taken(), name("d"));
        assert!(page(&mut p, "b", "c", false, 5));
        assert_eq!(p.taken(), name("d"));
        assert!(page(&mut p, "d", "d", true, 15));
        assert_eq!(p.complete(), Some(Version(5)));
    }

    #[test]
    fn a_page_beyond_the_room_is_not_counted() {
        // Stretches (s0a, s0b], (s1a, s1b], … with gaps between them: the room is full.
        let name = |i: usize, end: char| format!("s{i}{end}");
        let mut p = Progress::new(true);
        for i in 0..STRETCHES {
            assert!(page(&mut p, &name(i, 'a'), &name(i, 'b'), false, 10));
        }
        assert!(!page(&mut p, "x", "y", true, 1));
        assert_eq!(p.complete(), None);
        // A page that joins a stretch still fits, and the gaps fill.
        assert!(page(&mut p, "", &name(0, 'a'), false, 10));
        for i in (0..STRETCHES).skip(1) {
            assert!(page(&mut p, &name(i - 1, 'b'), &name(i, 'a'), false, 10));
        }
        assert!(page(&mut p, &name(STRETCHES - 1, 'b'), "z", true, 10));
        assert_eq!(p.complete(), Some(Version(10)));
    }
}
