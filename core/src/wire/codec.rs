//! Decoding whole frames, encoding single messages, and writing batches.

use super::error::{DecodeError, EncodeError};
use super::fields::{put, Fields, Out};
use super::header::{Header, Kind};
use super::items::{Item, Items};
use super::keep_alive::{KeepAliveAck, KeepAliveRequest};
use super::message::*;
use super::subscription::{DeliveryAck, SubscribeAck, SubscribeRequest, UnsubscribeRequest};
use crate::name::{Environment, ServiceName};
use crate::service::Version;
use crate::time::Duration;
use serde::Deserialize;

/// A decoded frame: the environment from its header and its message.
#[derive(Clone, Debug)]
pub struct Frame<'a> {
    /// The environment the sender belongs to.
    pub environment: Environment,
    /// The message.
    pub message: Message<'a>,
}

/// The whole payload as one `T`: no byte may be left.
pub(super) fn take_all<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    let (value, rest) = take(payload)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError::TrailingBytes)
    }
}

pub(super) fn take<'a, T: Deserialize<'a>>(
    payload: &'a [u8],
) -> Result<(T, &'a [u8]), DecodeError> {
    postcard::take_from_bytes(payload).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => DecodeError::Truncated,
        _ => DecodeError::Malformed,
    })
}

pub(super) fn lease_from_ms(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// A lease in whole milliseconds; any non-zero lease is at least 1 ms (0 means "the
/// directory's default").
pub(super) fn lease_to_ms(lease: Duration) -> u32 {
    if lease == Duration::ZERO {
        return 0;
    }
    u32::try_from(lease.as_millis()).map_or(u32::MAX, |ms| ms.max(1))
}

/// A page of services: its header, then its items, validated.
fn page(payload: &[u8]) -> Result<(PageHeader, Items<'_, crate::Service>), DecodeError> {
    let (header, rest) = page_header(payload)?;
    Ok((header, Items::validate(rest)?))
}

/// A page's fixed part ([`PageHeaderWire`]), then what follows it.
fn page_header(payload: &[u8]) -> Result<(PageHeader, &[u8]), DecodeError> {
    let mut f = Fields(payload);
    let (request, as_of, after, complete) = (f.u32()?, f.u64()?, f.option_str()?, f.next()?);
    let header = PageHeader {
        request,
        as_of: Version(as_of),
        after: after.map(validate_name).transpose()?,
        complete,
    };
    Ok((header, f.0))
}

/// A delivered page's subscriber id and the page that follows it; none, and the whole
/// payload, for a page of another kind (or for every page, without `SUBSCRIBE`).
fn subscriber<const SUBSCRIBE: bool>(
    kind: Kind,
    payload: &[u8],
) -> Result<(Option<u64>, &[u8]), DecodeError> {
    if !SUBSCRIBE || !kind.is_delivery() {
        return Ok((None, payload));
    }
    let mut f = Fields(payload);
    let subscriber = f.u64()?;
    Ok((Some(subscriber), f.0))
}

/// Decodes and validates one datagram. Never panics, never reads past `bytes`, and
/// refuses trailing bytes; the environment is returned, not checked.
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    decode_with_flags::<true, true, true>(bytes, 0)
}

/// Decodes a frame whose authentication trailer [`auth::open`](crate::auth::open) has
/// checked and removed: the same as [`decode`], but the authentication flag is accepted.
pub fn decode_authenticated(bytes: &[u8]) -> Result<Frame<'_>, DecodeError> {
    decode_with_flags::<true, true, true>(bytes, super::header::FLAG_AUTHENTICATED)
}

/// A client's decoder: the same as [`decode`] (or, when `authenticated`, as
/// [`decode_authenticated`]) for the kinds a directory sends, but a kind only a
/// directory takes (the requests: register, unregister, snapshot request, keep-alive,
/// subscribe, unsubscribe; and delivery acknowledgements) is refused undecoded with
/// [`DecodeError::Request`]. A client never acts on those, and its firmware then
/// links none of their decoders. The kinds a client of this build never acts on are
/// refused undecoded too, with [`DecodeError::Unused`]: without the `subscribe` feature
/// delivered pages and subscription acknowledgements; without the `listen` feature (a
/// client that only registers, whose failover probe is a keep-alive) every page,
/// announcement and snapshot cookie.
pub fn decode_reply(bytes: &[u8], authenticated: bool) -> Result<Frame<'_>, DecodeError> {
    let allowed = if authenticated {
        super::header::FLAG_AUTHENTICATED
    } else {
        0
    };
    decode_with_flags::<false, { cfg!(feature = "subscribe") }, { cfg!(feature = "listen") }>(
        bytes, allowed,
    )
}

/// Decodes a frame; with `REQUESTS` false (a client's decoder), the kinds only a
/// directory takes are refused undecoded, with `SUBSCRIBE` false also the kinds of
/// subscription mode, and with `LISTEN` false also every page, announcement and cookie.
fn decode_with_flags<const REQUESTS: bool, const SUBSCRIBE: bool, const LISTEN: bool>(
    bytes: &[u8],
    allowed: u8,
) -> Result<Frame<'_>, DecodeError> {
    let (header, payload) = Header::parse_with_flags(bytes, allowed)?;
    if !REQUESTS && header.kind.is_for_directory() {
        return Err(DecodeError::Request(header.kind as u8));
    }
    let message = match header.kind {
        Kind::Register => {
            let w = take_all::<RegisterWire<'_>>(payload)?;
            Message::Register(RegisterRequest {
                request: w.request,
                registrant: w.registrant,
                sequence: w.sequence,
                lease: lease_from_ms(w.lease_ms),
                registration: validate_registration(w.name, &w.locations, w.metadata)?,
            })
        }
        Kind::Unregister => {
            let w = take_all::<UnregisterWire<'_>>(payload)?;
            Message::Unregister(UnregisterRequest {
                request: w.request,
                registrant: w.registrant,
                sequence: w.sequence,
                name: validate_name(w.name)?,
            })
        }
        Kind::SnapshotRequest => {
            let w = take_all::<SnapshotRequestWire<'_>>(payload)?;
            Message::SnapshotRequest(SnapshotRequest {
                request: w.request,
                max_pages: w.max_pages.max(1),
                after: w.after.map(validate_name).transpose()?,
                interest: interest_from_wire(&w.interest)?,
                cookie: w.cookie,
                since: w.since.map(Version),
            })
        }
        Kind::Cookie if !LISTEN => return Err(DecodeError::Unused(header.kind as u8)),
        Kind::Cookie => {
            let mut f = Fields(payload);
            let cookie = CookieReply {
                request: f.u32()?,
                cookie: f.bytes()?,
            };
            f.end()?;
            Message::Cookie(cookie)
        }
        Kind::Ack => {
            // Integers only: request u32, lease_ms u32, version u64.
            let mut f = Fields(payload);
            let ack = Ack {
                request: f.u32()?,
                lease: lease_from_ms(f.u32()?),
                version: Version(f.u64()?),
            };
            f.end()?;
            Message::Ack(ack)
        }
        Kind::Reject => {
            let mut f = Fields(payload);
            // The environment is read as bytes: it is ASCII, and a client that reads
            // no service name then links no UTF-8 validation.
            let (request, code, environment) = (f.u32()?, f.next::<u8>()?, f.next::<&[u8]>()?);
            let rest = f.0;
            let reason = RejectReason::from_code(code).ok_or(DecodeError::UnknownReason(code))?;
            // `stale` carries a floor; no other reason does.
            let floor = match reason {
                RejectReason::Stale => take_all::<u64>(rest)?,
                _ if rest.is_empty() => 0,
                _ => return Err(DecodeError::TrailingBytes),
            };
            Message::Reject(Reject {
                request,
                reason,
                directory_environment: Environment::from_bytes(environment)
                    .map_err(DecodeError::InvalidEnvironment)?,
                floor,
            })
        }
        Kind::Beacon => {
            let mut f = Fields(payload);
            let directory = LocationWire::read(&mut f)?;
            let (as_of, services, publishing, digest) = (f.u64()?, f.u32()?, f.next()?, f.bytes()?);
            f.end()?;
            Message::Beacon(Beacon {
                directory: directory.validate()?,
                as_of: Version(as_of),
                services,
                publishing,
                digest: u64::from_le_bytes(digest),
            })
        }
        // A client links no decoder of what its build never acts on.
        Kind::DeliveredSnapshot | Kind::DeliveredChanges | Kind::SubscribeAck if !SUBSCRIBE => {
            return Err(DecodeError::Unused(header.kind as u8));
        }
        // Without discovery a client sends no snapshot request (its probe is a
        // keep-alive): no page is for it (nor a cookie, refused above).
        Kind::Announce | Kind::SyncPage | Kind::SnapshotPage | Kind::ChangesPage if !LISTEN => {
            return Err(DecodeError::Unused(header.kind as u8));
        }
        // Pages of services, and pages of changes: a delivered one starts with its
        // subscriber, then is read as the others are.
        Kind::SnapshotPage | Kind::SyncPage | Kind::DeliveredSnapshot => {
            let (subscriber, payload) = subscriber::<SUBSCRIBE>(header.kind, payload)?;
            let (h, items) = page(payload)?;
            match subscriber {
                Some(subscriber) => Message::DeliveredSnapshot(subscriber, h, items),
                None if header.kind == Kind::SyncPage => Message::SyncPage(h, items),
                None => Message::SnapshotPage(h, items),
            }
        }
        Kind::ChangesPage | Kind::DeliveredChanges => {
            let (subscriber, payload) = subscriber::<SUBSCRIBE>(header.kind, payload)?;
            let (h, rest) = page_header(payload)?;
            let items = Items::validate(rest)?;
            match subscriber {
                Some(subscriber) => Message::DeliveredChanges(subscriber, h, items),
                None => Message::ChangesPage(h, items),
            }
        }
        Kind::Announce => {
            let mut f = Fields(payload);
            let directory = LocationWire::read(&mut f)?;
            let (as_of, previous) = (f.u64()?, f.u64()?);
            let header = AnnounceHeader {
                directory: directory.validate()?,
                as_of: Version(as_of),
                previous: Version(previous),
            };
            Message::Announce(header, Items::validate(f.0)?)
        }
        Kind::KeepAlive => Message::KeepAlive(KeepAliveRequest::decode(payload)?),
        Kind::KeepAliveAck => Message::KeepAliveAck(KeepAliveAck::decode(payload)?),
        Kind::Subscribe => Message::Subscribe(SubscribeRequest::decode(payload)?),
        Kind::SubscribeAck => Message::SubscribeAck(SubscribeAck::decode(payload)?),
        Kind::Unsubscribe => Message::Unsubscribe(UnsubscribeRequest::decode(payload)?),
        Kind::DeliveryAck => Message::DeliveryAck(DeliveryAck::decode(payload)?),
    };
    Ok(Frame {
        environment: header.environment,
        message,
    })
}

/// A message that travels alone in a frame (not batched).
pub trait Single {
    /// The frame kind.
    const KIND: Kind;
    /// Writes the payload at the front of `buf`; returns its length.
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError>;
}

/// Serializes `value` at the front of `buf`; returns its length.
pub(super) fn ser<T: serde::Serialize>(value: &T, buf: &mut [u8]) -> Result<usize, EncodeError> {
    postcard::to_slice(value, buf)
        .map(|out| out.len())
        .map_err(|_| EncodeError::BufferTooSmall)
}

impl Single for RegisterRequest {
    const KIND: Kind = Kind::Register;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut out = Out::new(buf);
        out.ints(&[
            self.request.into(),
            self.registrant,
            self.sequence,
            lease_to_ms(self.lease).into(),
        ])?;
        write_registration(&mut out, &self.registration)?;
        Ok(out.len)
    }
}

impl Single for UnregisterRequest {
    const KIND: Kind = Kind::Unregister;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut out = Out::new(buf);
        out.ints(&[self.request.into(), self.registrant, self.sequence])?;
        out.str(self.name.as_str().as_bytes())?;
        Ok(out.len)
    }
}

impl Single for SnapshotRequest {
    const KIND: Kind = Kind::SnapshotRequest;
    // The layout `SnapshotRequestWire` reads, field by field.
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut out = Out::new(buf);
        out.int(self.request.into())?;
        out.raw(&[self.max_pages])?;
        out.opt_str(self.after.as_ref().map(ServiceName::as_str))?;
        write_interest(&mut out, &self.interest)?;
        out.opt_raw(self.cookie.as_ref().map(|c| &c[..]))?;
        out.opt_int(self.since.map(|v| v.0))?;
        Ok(out.len)
    }
}

impl Single for CookieReply {
    const KIND: Kind = Kind::Cookie;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(
            &CookieWire {
                request: self.request,
                cookie: self.cookie,
            },
            buf,
        )
    }
}

impl Single for Ack {
    const KIND: Kind = Kind::Ack;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        put(
            &[
                self.request.into(),
                lease_to_ms(self.lease).into(),
                self.version.0,
            ],
            buf,
        )
    }
}

impl Single for Reject {
    const KIND: Kind = Kind::Reject;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let len = ser(
            &RejectWire {
                request: self.request,
                reason: self.reason as u8,
                environment: self.directory_environment.as_str(),
            },
            buf,
        )?;
        if self.reason != RejectReason::Stale {
            return Ok(len);
        }
        let rest = buf.get_mut(len..).ok_or(EncodeError::BufferTooSmall)?;
        Ok(len + ser(&self.floor, rest)?)
    }
}

impl Single for Beacon {
    const KIND: Kind = Kind::Beacon;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(
            &BeaconWire {
                directory: LocationWire::from_location(&self.directory),
                as_of: self.as_of.0,
                services: self.services,
                publishing: self.publishing,
                digest: self.digest.to_le_bytes(),
            },
            buf,
        )
    }
}

/// Encodes a single message into `buf` as one frame; returns the frame length.
pub fn encode<M: Single>(
    environment: &Environment,
    message: &M,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    let head = Header::emit(M::KIND, environment, buf)?;
    let body = message.encode_payload(&mut buf[head..])?;
    Ok(head + body)
}

/// Writes a batch frame (announcement or page): the fixed part, then as many items as
/// fit in the buffer (at most 255).
pub struct BatchWriter<'b> {
    buf: &'b mut [u8],
    count_at: usize,
    len: usize,
    count: u8,
    is_page: bool,
}

/// Which page a [`BatchWriter`] starts (the items are services in a snapshot or sweep
/// page, changes in a page of changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageKind {
    /// A page of the multicast anti-entropy sweep ([`Message::SyncPage`]).
    Sync,
    /// A snapshot page answering a request ([`Message::SnapshotPage`]).
    Snapshot,
    /// A page of changes answering a request ([`Message::ChangesPage`]).
    Changes,
    /// A snapshot page delivered to the subscription of this subscriber id
    /// ([`Message::DeliveredSnapshot`]).
    DeliveredSnapshot(u64),
    /// A page of changes delivered to the subscription of this subscriber id
    /// ([`Message::DeliveredChanges`]).
    DeliveredChanges(u64),
}

impl<'b> BatchWriter<'b> {
    fn start(
        kind: Kind,
        environment: &Environment,
        buf: &'b mut [u8],
        fixed: impl FnOnce(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<Self, EncodeError> {
        let head = Header::emit(kind, environment, buf)?;
        let body = fixed(&mut buf[head..])?;
        let count_at = head + body;
        *buf.get_mut(count_at).ok_or(EncodeError::BufferTooSmall)? = 0;
        Ok(BatchWriter {
            buf,
            count_at,
            len: count_at + 1,
            count: 0,
            is_page: kind.is_page(),
        })
    }

    /// Starts an announcement.
    pub fn announce(
        environment: &Environment,
        header: &AnnounceHeader,
        buf: &'b mut [u8],
    ) -> Result<Self, EncodeError> {
        Self::start(Kind::Announce, environment, buf, |b| {
            ser(
                &AnnounceHeaderWire {
                    directory: LocationWire::from_location(&header.directory),
                    as_of: header.as_of.0,
                    previous: header.previous.0,
                },
                b,
            )
        })
    }

    /// Starts a page of the kind `page` says, marked incomplete until
    /// [`BatchWriter::set_complete`] says otherwise.
    pub fn page(
        environment: &Environment,
        header: &PageHeader,
        page: PageKind,
        buf: &'b mut [u8],
    ) -> Result<Self, EncodeError> {
        let (kind, subscriber) = match page {
            PageKind::Sync => (Kind::SyncPage, None),
            PageKind::Snapshot => (Kind::SnapshotPage, None),
            PageKind::Changes => (Kind::ChangesPage, None),
            PageKind::DeliveredSnapshot(s) => (Kind::DeliveredSnapshot, Some(s)),
            PageKind::DeliveredChanges(s) => (Kind::DeliveredChanges, Some(s)),
        };
        Self::start(kind, environment, buf, |b| {
            let page = PageHeaderWire {
                request: header.request,
                as_of: header.as_of.0,
                after: header.after.as_ref().map(|n| n.as_str()),
                complete: header.complete,
            };
            match subscriber {
                Some(subscriber) => ser(&(subscriber, page), b),
                None => ser(&page, b),
            }
        })
    }

    /// Appends an item; returns false (and writes nothing) if it does not fit.
    pub fn push<T: Item>(&mut self, item: &T) -> bool {
        if self.count == u8::MAX {
            return false;
        }
        match item.encode(&mut self.buf[self.len..]) {
            Ok(n) => {
                self.len += n;
                self.count += 1;
                self.buf[self.count_at] = self.count;
                true
            }
            Err(_) => false,
        }
    }

    /// Sets a page's `complete` flag (the byte just before the count).
    pub fn set_complete(&mut self, complete: bool) {
        if !self.is_page {
            return;
        }
        if let Some(i) = self.count_at.checked_sub(1) {
            self.buf[i] = u8::from(complete);
        }
    }

    /// How many items were written.
    pub fn count(&self) -> usize {
        usize::from(self.count)
    }

    /// The frame length so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no item was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}
