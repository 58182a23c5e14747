//! Authenticated environments: an optional pre-shared key per environment.
//!
//! With [`Keys`] configured, every frame carries a trailer after its payload and has the
//! header flag [`FLAG_AUTHENTICATED`](crate::wire::header::FLAG_AUTHENTICATED) set:
//!
//! ```text
//! +--------+---------------------+--------------------------------------------+
//! | key id | counter (u64, LE)   | tag: HMAC-SHA-256(key, frame ‖ id ‖ counter) |
//! | 1 byte | 8 bytes             | first 16 bytes                               |
//! +--------+---------------------+--------------------------------------------+
//! ```
//!
//! The tag covers the header (environment included), the payload, the key id and the
//! counter. A frame without a valid tag is dropped and counted, never acted on. Two keys
//! may be accepted at once (the one a sender signs with, and one more) so that keys can
//! be rotated without downtime.
//!
//! The counter is the sender's clock in microseconds (it always grows by at least one
//! per frame). Receivers keep a [`ReplayWindow`] per sender and refuse a counter they
//! have seen, or one older than the oldest they forgot; a directory also refuses counters far from
//! its own clock and, after a restart, counters from before it started. Under
//! `cfg(fuzzing)` the tag is not checked, so fuzzers reach the decoder.
//!
//! All of this is the `auth` cargo feature (on by default). Without it no key can be
//! made ([`Key::new`] refuses with [`KeyError::NoAuthentication`], and [`Keys`] has no
//! value), so `keys` is always `None`: a machine sends unauthenticated frames only and
//! refuses an authenticated one as a machine without keys does
//! ([`DecodeError::UnknownFlags`], counted as malformed). Its client then links no
//! HMAC-SHA-256 and keeps no replay windows.

use crate::wire::{self, DecodeError, EncodeError, Frame};
use core::fmt;

#[cfg(feature = "auth")]
mod keyed;
#[cfg(not(feature = "auth"))]
mod keyless;
#[cfg(feature = "auth")]
pub use keyed::{open, seal, Key, Keys, ReplayWindow};
#[cfg(not(feature = "auth"))]
pub use keyless::{open, seal, Key, Keys, ReplayWindow};

/// Bytes of the truncated tag.
pub const TAG_LEN: usize = 16;
/// Bytes of the trailer: key id, counter and tag.
pub const TRAILER_LEN: usize = 1 + 8 + TAG_LEN;
/// Shortest key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// Why a key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`] bytes.
    TooShort,
    /// Longer than [`MAX_KEY_LEN`] bytes.
    TooLong,
    /// The two keys have the same id.
    SameId,
    /// This build of herald-core has no authentication (its `auth` feature is off).
    NoAuthentication,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::TooShort => "a key must be at least 16 bytes",
            KeyError::TooLong => "a key must be at most 64 bytes",
            KeyError::SameId => "the two keys must have different ids",
            KeyError::NoAuthentication => {
                "this build has no authentication (herald-core's `auth` feature is off)"
            }
        })
    }
}

impl core::error::Error for KeyError {}

/// Why an authenticated frame was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No trailer (the authentication flag is not set) or too short to hold one.
    Unauthenticated,
    /// The key id is not one of ours.
    UnknownKey(u8),
    /// The tag does not match: forged or altered.
    BadTag,
    /// The counter was seen before: a replay.
    Replayed,
    /// The counter is outside the receiver's time window.
    Stale,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Unauthenticated => f.write_str("frame is not authenticated"),
            AuthError::UnknownKey(id) => write!(f, "frame is signed with unknown key {id}"),
            AuthError::BadTag => f.write_str("authentication tag does not match"),
            AuthError::Replayed => f.write_str("frame was seen before (replay)"),
            AuthError::Stale => f.write_str("frame counter is outside the time window"),
        }
    }
}

impl core::error::Error for AuthError {}

/// Compares without an early exit, so timing does not reveal how much of a tag matched.
pub(crate) fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A received datagram as its receiver sees it: the frame bytes without any trailer,
/// the sender's counter (with keys), and the decoded frame or why it did not decode.
pub type Received<'a> = (&'a [u8], Option<u64>, Result<Frame<'a>, DecodeError>);

/// Opens a datagram as a receiver configured with `keys` must: without keys it is
/// decoded as it is; with keys its trailer is checked first (an error here means: drop
/// it and count it, never answer it) and the frame decoded with the authentication flag
/// allowed. Replay windows are the caller's to check with the counter.
pub fn receive<'a>(keys: Option<&Keys>, bytes: &'a [u8]) -> Result<Received<'a>, AuthError> {
    receive_with(keys, bytes, |frame, authenticated| {
        if authenticated {
            wire::decode_authenticated(frame)
        } else {
            wire::decode(frame)
        }
    })
}

/// [`receive`] for a client: the frame is decoded with [`wire::decode_reply`], which
/// refuses request kinds undecoded.
pub fn receive_reply<'a>(keys: Option<&Keys>, bytes: &'a [u8]) -> Result<Received<'a>, AuthError> {
    receive_with(keys, bytes, wire::decode_reply)
}

fn receive_with<'a>(
    keys: Option<&Keys>,
    bytes: &'a [u8],
    decode: impl FnOnce(&'a [u8], bool) -> Result<Frame<'a>, DecodeError>,
) -> Result<Received<'a>, AuthError> {
    Ok(match keys {
        None => (bytes, None, decode(bytes, false)),
        Some(keys) => {
            let (inner, counter) = open(keys, bytes)?;
            (inner, Some(counter), decode(inner, true))
        }
    })
}

/// How many accepted counters above its floor a [`ReplayWindow`] remembers.
pub const REPLAY_RECENT: usize = 32;
/// How far (in counter microseconds) a frame may trail the newest one accepted from its
/// sender: reordering up to 2 s is tolerated; an older frame is refused as a recording.
pub const REPLAY_SPAN: u64 = 2_000_000;
