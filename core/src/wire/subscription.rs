//! Subscriptions: a listener that multicast does not reach asks a directory to send it
//! every matching change by unicast ([`SubscribeRequest`]), renews that like a
//! registration, acknowledges what it received cumulatively ([`DeliveryAck`]) and
//! ends it on an orderly stop ([`UnsubscribeRequest`]).
//!
//! Deliveries themselves are the pages a repair or a snapshot is answered with,
//! preceded by the subscriber's id and sent to the subscriber's address with the
//! subscription's `delivery` id as their `request`: a
//! [`DeliveredChanges`](super::Message::DeliveredChanges) page of the changes after the
//! subscriber's cursor, or a [`DeliveredSnapshot`](super::Message::DeliveredSnapshot)
//! page when the directory no longer holds every removal since it (see
//! `docs/PROTOCOL.md`, "Subscriptions").

use super::codec::{lease_from_ms, lease_to_ms, ser, take_all, Single};
use super::error::{DecodeError, EncodeError};
use super::fields::{put, Fields, Out};
use super::header::Kind;
use super::message::{interest_from_wire, validate_name, write_interest, InterestWire, COOKIE_LEN};
use crate::interest::Interest;
use crate::name::ServiceName;
use crate::service::Version;
use crate::time::Duration;
use serde::{Deserialize, Serialize};

/// Subscribe (or renew a subscription) to the changes that match an interest, sent to
/// the sender's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeRequest {
    /// Chosen by the client to match the answer to the request.
    pub request: u32,
    /// Identifies the subscriber: one subscription per subscriber id at a directory.
    pub subscriber: u64,
    /// The id the directory puts in the `request` field of every delivery of this
    /// subscription. A subscriber picks a fresh one each time it starts a subscription
    /// (at start, after a failover, after the directory forgot it), and keeps it across
    /// renewals: a renewal with another id starts the subscription afresh from `since`.
    pub delivery: u32,
    /// The lease asked for (the directory clamps it to its limits; 0: its default).
    pub lease: Duration,
    /// Which services.
    pub interest: Interest,
    /// The subscriber holds every matching change of this directory up to this version
    /// (the `as_of` of a delivery or snapshot it received in full): deliveries start
    /// after it. `None`: nothing; the first delivery is a snapshot. On a renewal it also
    /// acknowledges, as a [`DeliveryAck`] does.
    pub since: Option<Version>,
    /// The directory's return-routability cookie for this address (see
    /// [`CookieReply`](super::CookieReply)); without a valid one the directory answers
    /// with a cookie only and subscribes nothing.
    pub cookie: Option<[u8; COOKIE_LEN]>,
}

/// A subscription was taken, renewed, or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscribeAck {
    /// The request this answers.
    pub request: u32,
    /// The lease granted; zero answers an [`UnsubscribeRequest`].
    pub lease: Duration,
    /// This directory delivers (it publishes): a directory that does not (a replica of
    /// a shared store) keeps the subscription but sends nothing, and the subscriber
    /// moves to another directory.
    pub delivering: bool,
}

/// End a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnsubscribeRequest {
    /// Chosen by the client to match the answer to the request.
    pub request: u32,
    /// The subscriber whose subscription ends.
    pub subscriber: u64,
}

/// The subscriber holds every matching change up to `as_of`, and the pages of the
/// delivery in flight up to `taken`: a cumulative acknowledgement of deliveries. Never
/// answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAck {
    /// The subscriber.
    pub subscriber: u64,
    /// The subscription's delivery id (see [`SubscribeRequest::delivery`]); an ack of
    /// another is ignored.
    pub delivery: u32,
    /// The `as_of` of the last delivery (or snapshot delivery) received in full (0:
    /// none yet at this subscription).
    pub as_of: Version,
    /// How far the delivery in flight has come without a gap: its pages from the start
    /// to this name are taken, and the directory's next attempt resumes after it.
    /// `None`: none of it (or none in flight).
    pub taken: Option<ServiceName>,
}

/// The layout of a Subscribe payload, as a directory decodes it (encoded field by field).
#[derive(Deserialize)]
struct SubscribeWire<'a> {
    request: u32,
    subscriber: u64,
    delivery: u32,
    lease_ms: u32,
    #[serde(borrow)]
    interest: InterestWire<'a>,
    since: Option<u64>,
    cookie: Option<[u8; COOKIE_LEN]>,
}

/// The layout of a SubscribeAck payload, as a directory encodes it (decoded field by
/// field).
#[derive(Serialize)]
struct SubscribeAckWire {
    request: u32,
    lease_ms: u32,
    delivering: bool,
}

/// The layout of an Unsubscribe payload, as a directory decodes it (two integers,
/// encoded with `put`).
#[derive(Deserialize)]
struct UnsubscribeWire {
    request: u32,
    subscriber: u64,
}

/// The layout of a DeliveryAck payload, as a directory decodes it (encoded field by
/// field).
#[derive(Deserialize)]
struct DeliveryAckWire<'a> {
    subscriber: u64,
    delivery: u32,
    as_of: u64,
    #[serde(borrow)]
    taken: Option<&'a str>,
}

impl SubscribeRequest {
    /// Decodes a Subscribe payload.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let w = take_all::<SubscribeWire<'_>>(payload)?;
        Ok(SubscribeRequest {
            request: w.request,
            subscriber: w.subscriber,
            delivery: w.delivery,
            lease: lease_from_ms(w.lease_ms),
            interest: interest_from_wire(&w.interest)?,
            since: w.since.map(Version),
            cookie: w.cookie,
        })
    }
}

impl SubscribeAck {
    /// Decodes a SubscribeAck payload (the layout [`SubscribeAckWire`] writes), field by
    /// field.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields(payload);
        let (request, lease_ms, delivering) = (f.u32()?, f.u32()?, f.next()?);
        f.end()?;
        Ok(SubscribeAck {
            request,
            lease: lease_from_ms(lease_ms),
            delivering,
        })
    }
}

impl UnsubscribeRequest {
    /// Decodes an Unsubscribe payload.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let w = take_all::<UnsubscribeWire>(payload)?;
        Ok(UnsubscribeRequest {
            request: w.request,
            subscriber: w.subscriber,
        })
    }
}

impl DeliveryAck {
    /// Decodes a DeliveryAck payload.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let w = take_all::<DeliveryAckWire<'_>>(payload)?;
        Ok(DeliveryAck {
            subscriber: w.subscriber,
            delivery: w.delivery,
            as_of: Version(w.as_of),
            taken: w.taken.map(validate_name).transpose()?,
        })
    }
}

impl Single for SubscribeRequest {
    const KIND: Kind = Kind::Subscribe;
    // The layout `SubscribeWire` reads, field by field.
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut out = Out::new(buf);
        out.ints(&[
            self.request.into(),
            self.subscriber,
            self.delivery.into(),
            lease_to_ms(self.lease).into(),
        ])?;
        write_interest(&mut out, &self.interest)?;
        out.opt_int(self.since.map(|v| v.0))?;
        out.opt_raw(self.cookie.as_ref().map(|c| &c[..]))?;
        Ok(out.len)
    }
}

impl Single for SubscribeAck {
    const KIND: Kind = Kind::SubscribeAck;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(
            &SubscribeAckWire {
                request: self.request,
                lease_ms: lease_to_ms(self.lease),
                delivering: self.delivering,
            },
            buf,
        )
    }
}

impl Single for UnsubscribeRequest {
    const KIND: Kind = Kind::Unsubscribe;
    // The layout `UnsubscribeWire` reads.
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        put(&[self.request.into(), self.subscriber], buf)
    }
}

impl Single for DeliveryAck {
    const KIND: Kind = Kind::DeliveryAck;
    // The layout `DeliveryAckWire` reads, field by field.
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let mut out = Out::new(buf);
        out.ints(&[self.subscriber, self.delivery.into(), self.as_of.0])?;
        out.opt_str(self.taken.as_ref().map(ServiceName::as_str))?;
        Ok(out.len)
    }
}
