//! The registry digest in the beacon: a listener of everything compares it with the
//! same digest over what it holds, and asks for a snapshot when they differ at two
//! beacons in a row (as the service count: one may cross an announcement in flight).
//!
//! The digest is the XOR over the live services of a 64-bit hash of (name, version),
//! so it needs no order and a listener computes it over its table as it is. It is
//! computed per beacon: at 10,000 services that is 10,000 FNV-1a hashes of ~30 bytes,
//! a fraction of a millisecond once a beacon interval (1 s), against an incremental
//! digest that every change path of the registry would have to keep right. It catches
//! what the count cannot: a listener that holds the right number of services but one
//! at the wrong version, or one gone instead of another. A digest of 0 means "none":
//! an empty registry, or a sender that does not compute it.

use super::*;
use crate::hash::{fnv1a, FNV_OFFSET};

/// The hash of one live service in the digest.
pub(crate) fn service_hash(name: &str, version: Version) -> u64 {
    let h = fnv1a(FNV_OFFSET, name.as_bytes());
    let h = fnv1a(h, &version.0.to_le_bytes());
    // A finaliser (from SplitMix64), so that the XOR of similar names mixes well.
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Directory<'_> {
    /// The digest of the live registry (see the module docs).
    pub(super) fn digest(&self) -> u64 {
        self.registry
            .iter()
            .filter(|(_, e)| e.record.is_live())
            .fold(0, |d, (_, e)| {
                d ^ service_hash(e.record.name().as_str(), e.record.service.version)
            })
    }
}
