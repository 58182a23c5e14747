//! The wire format: a fixed [`header`] followed by a `postcard` payload.
//!
//! Every datagram is one frame:
//!
//! ```text
//! +--------+--------+---------+-------+---------+-------------+-----------------+
//! | 'H' 'R'| version|  kind   | flags | env len | environment | payload         |
//! | 2 bytes| 1 byte | 1 byte  | 1 byte| 1 byte  | 1..=16 bytes| postcard        |
//! +--------+--------+---------+-------+---------+-------------+-----------------+
//! ```
//!
//! Batched messages (announcements and pages) carry a fixed part, a one-byte item count
//! and that many items. Decoding checks the whole frame (every item, and that no byte is
//! left over) before it hands anything out, so a caller never acts on half a datagram.
//! `docs/PROTOCOL.md` describes every message byte by byte.

mod codec;
mod error;
mod fields;
mod fixed;
pub mod header;
mod items;
mod keep_alive;
pub mod message;
mod subscription;

pub use codec::{
    decode, decode_authenticated, decode_reply, encode, BatchWriter, Frame, PageKind, Single,
};
pub use error::{DecodeError, EncodeError};
pub use header::{Header, Kind, MAGIC, PROTOCOL_VERSION};
pub use items::{Item, Items};
pub use keep_alive::{registration_digest, Holdings, KeepAliveAck, KeepAliveRequest};
pub use message::{
    Ack, AnnounceHeader, Beacon, Change, CookieReply, Message, PageHeader, RegisterRequest, Reject,
    RejectReason, SnapshotRequest, UnregisterRequest, COOKIE_LEN,
};
pub use subscription::{DeliveryAck, SubscribeAck, SubscribeRequest, UnsubscribeRequest};

/// Default largest datagram: fits one Ethernet frame (1500 bytes) under IPv6 and UDP
/// headers with room to spare, so no IP fragmentation.
pub const DEFAULT_MAX_DATAGRAM: usize = 1400;
/// The smallest maximum datagram size a configuration may choose: every single message
/// with the largest name, locations and metadata fits in it.
pub const MIN_MAX_DATAGRAM: usize = 512;
/// Largest datagram the codec accepts at all.
pub const MAX_DATAGRAM: usize = 65_507;
