//! Fixed-size byte arrays in the message layouts, decoded in one loop: serde's own array
//! implementation takes one unrolled step per byte, in every layout that holds an
//! array. The bytes on the wire are the same (postcard: the N bytes, in order).

use core::fmt;
use serde::de::{Deserializer, Error, SeqAccess, Visitor};

/// Decodes `[u8; N]` (use with `#[serde(deserialize_with = "fixed::bytes")]`).
pub(super) fn bytes<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    d.deserialize_tuple(N, Bytes::<N>)
}

struct Bytes<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for Bytes<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a fixed number of bytes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}
