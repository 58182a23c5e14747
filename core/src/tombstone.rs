//! Tombstones: the versions at which recently removed names went away, so that a late
//! copy of an older state cannot bring a removed service back. Names are kept as 64-bit
//! FNV-1a hashes: a bounded ring of a few bytes per removal.

use crate::service::Version;

/// The FNV-1a offset basis.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64 bits, continuing from `h`.
pub(crate) fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The last `N` removals; the oldest is forgotten first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tombstones<const N: usize> {
    ring: heapless::Deque<(u64, Version), N>,
}

impl<const N: usize> Tombstones<N> {
    /// An empty ring.
    pub(crate) fn new() -> Self {
        Tombstones {
            ring: heapless::Deque::new(),
        }
    }

    /// The newest version at which `name` was removed, if that is still remembered.
    pub(crate) fn get(&self, name: &str) -> Option<Version> {
        let h = fnv1a(FNV_OFFSET, name.as_bytes());
        self.ring
            .iter()
            .filter(|(n, _)| *n == h)
            .map(|(_, v)| *v)
            .max()
    }

    /// Remembers that `name` was removed at `version`.
    pub(crate) fn bury(&mut self, name: &str, version: Version) {
        if self.ring.is_full() {
            self.ring.pop_front();
        }
        let _ = self
            .ring
            .push_back((fnv1a(FNV_OFFSET, name.as_bytes()), version));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_newest_removal_of_the_last_n() {
        let mut t = Tombstones::<2>::new();
        t.bury("a", Version(5));
        t.bury("a", Version(3));
        assert_eq!(t.get("a"), Some(Version(5)));
        assert_eq!(t.get("b"), None);
        t.bury("b", Version(1));
        assert_eq!(t.get("a"), Some(Version(3)), "the oldest went first");
        t.bury("c", Version(1));
        assert_eq!(t.get("a"), None);
    }
}
