//! Codec errors: small `Copy` enums that say what was wrong.

use crate::location::LocationError;
use crate::metadata::MetadataError;
use crate::name::NameError;
use core::fmt;

/// Why a datagram could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than a header, or a field runs past the end.
    Truncated,
    /// Larger than [`MAX_DATAGRAM`](super::MAX_DATAGRAM).
    Oversized,
    /// Does not start with the magic bytes `HR`: not a Herald frame.
    BadMagic,
    /// A protocol version this implementation does not speak.
    UnsupportedVersion(u8),
    /// A message kind this version does not define.
    UnknownKind(u8),
    /// Flag bits this version does not define (or does not support).
    UnknownFlags(u8),
    /// The environment in the header is invalid.
    InvalidEnvironment(NameError),
    /// The payload does not follow the message layout.
    Malformed,
    /// Bytes are left over after the message.
    TrailingBytes,
    /// A service name in the payload is invalid.
    InvalidName(NameError),
    /// A location in the payload is invalid.
    InvalidLocation(LocationError),
    /// Metadata in the payload is invalid.
    InvalidMetadata(MetadataError),
    /// A reason code this version does not define.
    UnknownReason(u8),
    /// A kind only a directory takes (this code: a request or a delivery
    /// acknowledgement) given to a client's decoder
    /// ([`decode_reply`](super::decode_reply)), refused undecoded.
    Request(u8),
    /// A kind (this code) that a client of this build never acts on, given to its
    /// decoder ([`decode_reply`](super::decode_reply)) and refused undecoded: deliveries
    /// and subscription acknowledgements without herald-core's `subscribe` feature,
    /// pages, announcements and snapshot cookies without `listen`.
    Unused(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("datagram is truncated"),
            DecodeError::Oversized => f.write_str("datagram is larger than any frame"),
            DecodeError::BadMagic => f.write_str("not a Herald frame (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported protocol version {v}")
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k:#04x}"),
            DecodeError::UnknownFlags(super::header::FLAG_AUTHENTICATED) => {
                f.write_str("an authenticated frame, and this receiver has no keys")
            }
            DecodeError::UnknownFlags(x) => write!(f, "unknown header flags {x:#04x}"),
            DecodeError::InvalidEnvironment(e) => write!(f, "invalid environment: {e}"),
            DecodeError::Malformed => f.write_str("malformed payload"),
            DecodeError::TrailingBytes => f.write_str("trailing bytes after the message"),
            DecodeError::InvalidName(e) => write!(f, "invalid service name: {e}"),
            DecodeError::InvalidLocation(e) => write!(f, "invalid location: {e}"),
            DecodeError::InvalidMetadata(e) => write!(f, "invalid metadata: {e}"),
            DecodeError::UnknownReason(r) => write!(f, "unknown rejection reason {r}"),
            DecodeError::Request(k) => write!(f, "kind {k:#04x} is for directories, not clients"),
            DecodeError::Unused(k) => write!(f, "kind {k:#04x} is not used by this client"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a frame could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The buffer (or the configured maximum datagram size) is too small for the frame.
    BufferTooSmall,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("buffer too small for the frame")
    }
}

impl core::error::Error for EncodeError {}
