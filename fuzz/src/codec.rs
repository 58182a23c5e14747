//! The `decode` and `roundtrip` targets' checks.

use crate::message::{decode_owned, OwnedFrame};
use crate::world::keys;
use arbitrary::Arbitrary;
use herald_core::auth;
use herald_core::wire::{self, Header, MAX_DATAGRAM, MIN_MAX_DATAGRAM};

/// Arbitrary bytes into the decoder: never panics; whatever decodes re-encodes
/// canonically, never longer, to bytes that decode to the same value.
///
/// An authenticated frame is opened with the small world's keys first (under
/// `cfg(fuzzing)` any tag passes, so the fuzzer reaches the decoder behind it).
pub fn decode(data: &[u8]) {
    let _ = Header::peek_version(data);
    if let Ok(frame) = decode_owned(data) {
        check_reencodes(&frame, data.len());
    }
    if let Ok((inner, _)) = auth::open(&keys(), data) {
        if let Ok(frame) = wire::decode_authenticated(inner) {
            check_reencodes(&OwnedFrame::from_frame(frame), inner.len());
        }
    }
}

/// `frame`, decoded from `original` bytes, re-encodes canonically, never longer, to
/// bytes that decode to the same value.
fn check_reencodes(frame: &OwnedFrame, original: usize) {
    let mut buf = vec![0; MAX_DATAGRAM];
    let (len, items) = frame.encode(&mut buf).expect("a decoded frame re-encodes");
    assert_eq!(
        items,
        frame.items(),
        "every item of a decoded batch re-encodes"
    );
    assert!(
        len <= original,
        "re-encoding grew the frame: {len} > {original}"
    );
    let again = decode_owned(&buf[..len]).expect("a re-encoded frame decodes");
    assert_eq!(
        &again, frame,
        "decode(encode(decode(bytes))) != decode(bytes)"
    );
    let canonical = again.to_vec(MAX_DATAGRAM).expect("re-encodes");
    assert_eq!(canonical, &buf[..len], "encoding is not canonical");
}

/// The `roundtrip` target's input.
#[derive(Debug, Arbitrary)]
pub struct RoundtripInput {
    /// A well-formed frame.
    pub frame: OwnedFrame,
    /// The maximum datagram size, above `MIN_MAX_DATAGRAM`.
    pub max: u16,
}

/// A well-formed frame encodes within the maximum size (every single message, and at
/// least the first item of a batch, fit even the smallest maximum) and decodes back
/// equal (a batch: the items that fitted).
pub fn roundtrip(input: &RoundtripInput) {
    let max = (MIN_MAX_DATAGRAM + usize::from(input.max)).min(MAX_DATAGRAM);
    let mut buf = vec![0; max];
    let (len, written) = input
        .frame
        .encode(&mut buf)
        .unwrap_or_else(|e| panic!("a well-formed frame does not fit {max} bytes: {e}"));
    assert!(len <= max);
    if input.frame.items() > 0 {
        assert!(written >= 1, "not even one item fits {max} bytes");
    }
    let expected = input.frame.truncated(written);
    let back = decode_owned(&buf[..len]).unwrap_or_else(|e| panic!("does not decode: {e:?}"));
    assert_eq!(back, expected);
    let again = back.to_vec(MAX_DATAGRAM).expect("re-encodes");
    assert_eq!(again, &buf[..len], "encoding is not canonical");
}
