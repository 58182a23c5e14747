//! Owned messages: generate, encode with the real encoder, rebuild from a frame.

use arbitrary::Arbitrary;
use herald_core::auth::{self, Keys, TRAILER_LEN};
use herald_core::wire::{
    self, Ack, AnnounceHeader, BatchWriter, Beacon, Change, CookieReply, DeliveryAck, EncodeError,
    Frame, Item, KeepAliveAck, KeepAliveRequest, Message, PageHeader, PageKind, RegisterRequest,
    Reject, SnapshotRequest, SubscribeAck, SubscribeRequest, UnregisterRequest, UnsubscribeRequest,
};
use herald_core::{Environment, Service};

/// Every message, with a batch's items in a `Vec` (a decoded [`Message`] borrows them).
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub enum OwnedMessage {
    /// [`Message::Register`].
    Register(RegisterRequest),
    /// [`Message::Unregister`].
    Unregister(UnregisterRequest),
    /// [`Message::SnapshotRequest`].
    SnapshotRequest(SnapshotRequest),
    /// [`Message::Cookie`].
    Cookie(CookieReply),
    /// [`Message::Ack`].
    Ack(Ack),
    /// [`Message::Reject`].
    Reject(Reject),
    /// [`Message::Beacon`].
    Beacon(Beacon),
    /// [`Message::SnapshotPage`].
    SnapshotPage(PageHeader, Vec<Service>),
    /// [`Message::SyncPage`].
    SyncPage(PageHeader, Vec<Service>),
    /// [`Message::Announce`].
    Announce(AnnounceHeader, Vec<Change>),
    /// [`Message::ChangesPage`].
    ChangesPage(PageHeader, Vec<Change>),
    /// [`Message::DeliveredSnapshot`].
    DeliveredSnapshot(u64, PageHeader, Vec<Service>),
    /// [`Message::DeliveredChanges`].
    DeliveredChanges(u64, PageHeader, Vec<Change>),
    /// [`Message::KeepAlive`].
    KeepAlive(KeepAliveRequest),
    /// [`Message::KeepAliveAck`].
    KeepAliveAck(KeepAliveAck),
    /// [`Message::Subscribe`].
    Subscribe(SubscribeRequest),
    /// [`Message::SubscribeAck`].
    SubscribeAck(SubscribeAck),
    /// [`Message::Unsubscribe`].
    Unsubscribe(UnsubscribeRequest),
    /// [`Message::DeliveryAck`].
    DeliveryAck(DeliveryAck),
}

/// A frame with its environment, owned.
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub struct OwnedFrame {
    /// The header's environment.
    pub environment: Environment,
    /// The message.
    pub message: OwnedMessage,
}

impl OwnedFrame {
    /// Copies a decoded frame (every item of a batch).
    pub fn from_frame(frame: Frame<'_>) -> Self {
        let message = match frame.message {
            Message::Register(m) => OwnedMessage::Register(m),
            Message::Unregister(m) => OwnedMessage::Unregister(m),
            Message::SnapshotRequest(m) => OwnedMessage::SnapshotRequest(m),
            Message::Cookie(m) => OwnedMessage::Cookie(m),
            Message::Ack(m) => OwnedMessage::Ack(m),
            Message::Reject(m) => OwnedMessage::Reject(m),
            Message::Beacon(m) => OwnedMessage::Beacon(m),
            Message::SnapshotPage(h, items) => OwnedMessage::SnapshotPage(h, items.collect()),
            Message::SyncPage(h, items) => OwnedMessage::SyncPage(h, items.collect()),
            Message::Announce(h, items) => OwnedMessage::Announce(h, items.collect()),
            Message::ChangesPage(h, items) => OwnedMessage::ChangesPage(h, items.collect()),
            Message::DeliveredSnapshot(s, h, items) => {
                OwnedMessage::DeliveredSnapshot(s, h, items.collect())
            }
            Message::DeliveredChanges(s, h, items) => {
                OwnedMessage::DeliveredChanges(s, h, items.collect())
            }
            Message::KeepAlive(m) => OwnedMessage::KeepAlive(m),
            Message::KeepAliveAck(m) => OwnedMessage::KeepAliveAck(m),
            Message::Subscribe(m) => OwnedMessage::Subscribe(m),
            Message::SubscribeAck(m) => OwnedMessage::SubscribeAck(m),
            Message::Unsubscribe(m) => OwnedMessage::Unsubscribe(m),
            Message::DeliveryAck(m) => OwnedMessage::DeliveryAck(m),
        };
        OwnedFrame {
            environment: frame.environment,
            message,
        }
    }

    /// Encodes the frame into `buf` with the real encoder. A batch takes as many items as
    /// fit, in order. Returns the frame length and how many items were written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<(usize, usize), EncodeError> {
        let env = &self.environment;
        let single = |len| (len, 0);
        match &self.message {
            OwnedMessage::Register(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Unregister(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::SnapshotRequest(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Cookie(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Ack(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Reject(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Beacon(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::KeepAlive(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::KeepAliveAck(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Subscribe(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::SubscribeAck(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::Unsubscribe(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::DeliveryAck(m) => wire::encode(env, m, buf).map(single),
            OwnedMessage::SnapshotPage(h, items) => Ok(fill(
                BatchWriter::page(env, h, PageKind::Snapshot, buf)?,
                items,
            )),
            OwnedMessage::SyncPage(h, items) => {
                Ok(fill(BatchWriter::page(env, h, PageKind::Sync, buf)?, items))
            }
            OwnedMessage::DeliveredSnapshot(s, h, items) => {
                let kind = PageKind::DeliveredSnapshot(*s);
                Ok(fill(BatchWriter::page(env, h, kind, buf)?, items))
            }
            OwnedMessage::DeliveredChanges(s, h, items) => {
                let kind = PageKind::DeliveredChanges(*s);
                Ok(fill(BatchWriter::page(env, h, kind, buf)?, items))
            }
            OwnedMessage::Announce(h, items) => {
                Ok(fill(BatchWriter::announce(env, h, buf)?, items))
            }
            OwnedMessage::ChangesPage(h, items) => Ok(fill(
                BatchWriter::page(env, h, PageKind::Changes, buf)?,
                items,
            )),
        }
    }

    /// The same frame with only the first `n` items of a batch: what [`encode`]
    /// (Self::encode) writes when only `n` fit.
    pub fn truncated(&self, n: usize) -> Self {
        let mut out = self.clone();
        match &mut out.message {
            OwnedMessage::SnapshotPage(_, items)
            | OwnedMessage::SyncPage(_, items)
            | OwnedMessage::DeliveredSnapshot(_, _, items) => items.truncate(n),
            OwnedMessage::Announce(_, items)
            | OwnedMessage::ChangesPage(_, items)
            | OwnedMessage::DeliveredChanges(_, _, items) => items.truncate(n),
            _ => {}
        }
        out
    }

    /// How many items a batch holds (0 for a single message).
    pub fn items(&self) -> usize {
        match &self.message {
            OwnedMessage::SnapshotPage(_, items)
            | OwnedMessage::SyncPage(_, items)
            | OwnedMessage::DeliveredSnapshot(_, _, items) => items.len(),
            OwnedMessage::Announce(_, items)
            | OwnedMessage::ChangesPage(_, items)
            | OwnedMessage::DeliveredChanges(_, _, items) => items.len(),
            _ => 0,
        }
    }

    /// Encodes into a fresh buffer of `max` bytes and returns the bytes.
    pub fn to_vec(&self, max: usize) -> Result<Vec<u8>, EncodeError> {
        let mut buf = vec![0; max];
        let (len, _) = self.encode(&mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }
}

fn fill<T: Item>(mut writer: BatchWriter<'_>, items: &[T]) -> (usize, usize) {
    for item in items {
        if !writer.push(item) {
            break;
        }
    }
    (writer.len(), writer.count())
}

/// Decodes `bytes` and copies the frame.
pub fn decode_owned(bytes: &[u8]) -> Result<OwnedFrame, wire::DecodeError> {
    wire::decode(bytes).map(OwnedFrame::from_frame)
}

/// Seals an encoded frame with `keys` and `counter` (sets the flag, appends the trailer).
pub fn seal(frame: &[u8], keys: &Keys, counter: u64) -> Vec<u8> {
    let mut buf = frame.to_vec();
    buf.resize(frame.len() + TRAILER_LEN, 0);
    let len = auth::seal(keys, counter, &mut buf, frame.len()).expect("room for the trailer");
    buf.truncate(len);
    buf
}

/// Decodes what a state machine sent: opened with `keys` first when it has keys.
/// Returns the frame and the counter of an authenticated one.
pub fn decode_sent(bytes: &[u8], keys: Option<&Keys>) -> Result<(OwnedFrame, Option<u64>), String> {
    match keys {
        None => decode_owned(bytes)
            .map(|f| (f, None))
            .map_err(|e| format!("{e:?}")),
        Some(keys) => {
            let (inner, counter) = auth::open(keys, bytes).map_err(|e| format!("{e:?}"))?;
            let frame = wire::decode_authenticated(inner).map_err(|e| format!("{e:?}"))?;
            Ok((OwnedFrame::from_frame(frame), Some(counter)))
        }
    }
}
