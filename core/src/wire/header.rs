//! The fixed frame header.

use super::error::{DecodeError, EncodeError};
use crate::name::Environment;

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"HR";
/// The protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Header flag: the frame ends with an authentication trailer (key id, counter and tag;
/// see [`auth`](crate::auth)). Only a receiver configured with a key accepts it; any
/// other flag is refused as [`DecodeError::UnknownFlags`] rather than misread.
pub const FLAG_AUTHENTICATED: u8 = 0x01;
/// Bytes before the environment: magic, version, kind, flags, environment length.
pub const FIXED_LEN: usize = 6;

/// The kind of message a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Client → directory: register or renew (the "pulse").
    Register = 0x01,
    /// Client → directory: remove a registration.
    Unregister = 0x02,
    /// Client → directory: send me the registry.
    SnapshotRequest = 0x03,
    /// Directory → client: request accepted.
    Ack = 0x11,
    /// Directory → client: request refused, with a reason.
    Reject = 0x12,
    /// Directory → client: one page of a snapshot.
    SnapshotPage = 0x13,
    /// Directory → client: a return-routability cookie to echo in the snapshot request.
    Cookie = 0x14,
    /// Directory → group: changes, sent the moment they happen.
    Announce = 0x21,
    /// Directory → group: one page of the paced anti-entropy sweep.
    SyncPage = 0x22,
    /// Directory → group: "directory available here", with the registry version.
    Beacon = 0x23,
    /// Directory → client: one page of the changes after a version, answering a
    /// snapshot request that names one (`since`).
    ChangesPage = 0x18,
    /// Directory → subscriber: one page of a snapshot delivered to a subscription,
    /// naming its subscriber.
    DeliveredSnapshot = 0x19,
    /// Directory → subscriber: one page of changes delivered to a subscription, naming
    /// its subscriber.
    DeliveredChanges = 0x1a,
    /// Client → directory: renew every registration of a registrant.
    KeepAlive = 0x04,
    /// Directory → client: keep-alive accepted, with what the directory holds.
    KeepAliveAck = 0x15,
    /// Client → directory: subscribe to unicast deliveries, or renew.
    Subscribe = 0x05,
    /// Directory → client: subscription taken, renewed or ended.
    SubscribeAck = 0x16,
    /// Client → directory: end a subscription.
    Unsubscribe = 0x06,
    /// Client → directory: every matching change up to a version is held (never
    /// answered).
    DeliveryAck = 0x07,
}

impl Kind {
    /// The kind for a code, if defined.
    pub fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0x01 => Kind::Register,
            0x02 => Kind::Unregister,
            0x03 => Kind::SnapshotRequest,
            0x11 => Kind::Ack,
            0x12 => Kind::Reject,
            0x13 => Kind::SnapshotPage,
            0x14 => Kind::Cookie,
            0x21 => Kind::Announce,
            0x22 => Kind::SyncPage,
            0x23 => Kind::Beacon,
            0x18 => Kind::ChangesPage,
            0x19 => Kind::DeliveredSnapshot,
            0x1a => Kind::DeliveredChanges,
            0x04 => Kind::KeepAlive,
            0x15 => Kind::KeepAliveAck,
            0x05 => Kind::Subscribe,
            0x16 => Kind::SubscribeAck,
            0x06 => Kind::Unsubscribe,
            0x07 => Kind::DeliveryAck,
            _ => return None,
        })
    }

    /// True for the kinds a client sends to a directory, which a directory answers.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Kind::Register
                | Kind::Unregister
                | Kind::SnapshotRequest
                | Kind::KeepAlive
                | Kind::Subscribe
                | Kind::Unsubscribe
        )
    }

    /// True for the pages: of services (sweep, snapshot, delivered snapshot) and of
    /// changes (answer or delivery), each ending with its `complete` flag and count.
    pub fn is_page(self) -> bool {
        matches!(
            self,
            Kind::SyncPage | Kind::SnapshotPage | Kind::ChangesPage
        ) || self.is_delivery()
    }

    /// True for the pages delivered to a subscriber.
    pub fn is_delivery(self) -> bool {
        matches!(self, Kind::DeliveredSnapshot | Kind::DeliveredChanges)
    }

    /// True for every kind only a directory takes: the requests and the
    /// acknowledgements of deliveries (which are never answered).
    pub fn is_for_directory(self) -> bool {
        self.is_request() || self == Kind::DeliveryAck
    }
}

/// A parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The message kind.
    pub kind: Kind,
    /// The environment the frame belongs to.
    pub environment: Environment,
}

impl Header {
    /// Parses the header and returns it with the payload that follows.
    pub fn parse(bytes: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
        Self::parse_with_flags(bytes, 0)
    }

    /// Parses the header, accepting the flag bits in `allowed` (the authentication flag,
    /// once the trailer has been checked and removed).
    pub fn parse_with_flags(bytes: &[u8], allowed: u8) -> Result<(Header, &[u8]), DecodeError> {
        if bytes.len() > super::MAX_DATAGRAM {
            return Err(DecodeError::Oversized);
        }
        if bytes.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        if bytes[..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let fixed = bytes.get(..FIXED_LEN).ok_or(DecodeError::Truncated)?;
        if fixed[2] != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(fixed[2]));
        }
        let kind = Kind::from_code(fixed[3]).ok_or(DecodeError::UnknownKind(fixed[3]))?;
        if fixed[4] & !allowed != 0 {
            return Err(DecodeError::UnknownFlags(fixed[4]));
        }
        let env_len = usize::from(fixed[5]);
        let env = bytes
            .get(FIXED_LEN..FIXED_LEN + env_len)
            .ok_or(DecodeError::Truncated)?;
        let environment = Environment::from_bytes(env).map_err(DecodeError::InvalidEnvironment)?;
        Ok((Header { kind, environment }, &bytes[FIXED_LEN + env_len..]))
    }

    /// Reads only what every version keeps in place: magic and version. Lets a directory
    /// answer a frame of a newer version with a rejection it can understand.
    pub fn peek_version(bytes: &[u8]) -> Option<u8> {
        (bytes.len() >= 3 && bytes[..2] == MAGIC).then(|| bytes[2])
    }

    /// Writes the header into `buf`; returns its length.
    pub fn emit(
        kind: Kind,
        environment: &Environment,
        buf: &mut [u8],
    ) -> Result<usize, EncodeError> {
        let env = environment.as_str().as_bytes();
        let len = FIXED_LEN + env.len();
        let out = buf.get_mut(..len).ok_or(EncodeError::BufferTooSmall)?;
        out[..2].copy_from_slice(&MAGIC);
        out[2] = PROTOCOL_VERSION;
        out[3] = kind as u8;
        out[4] = 0;
        // An environment is at most 16 bytes.
        out[5] = env.len() as u8;
        out[FIXED_LEN..].copy_from_slice(env);
        Ok(len)
    }
}
