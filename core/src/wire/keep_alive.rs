//! Keep-alives: one request renews every registration a registrant holds at a
//! directory, and its answer says whether the directory holds exactly what the
//! registrant believes it holds (a count and an order-independent digest, [`Holdings`]).

use super::codec::{lease_from_ms, lease_to_ms, ser, take, Single};
use super::error::{DecodeError, EncodeError};
use super::header::Kind;
use super::message::{LocationsOut, RegisterWire};
use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Registration;
use crate::time::Duration;
use serde::Serialize;

/// Renew every live registration `registrant` holds at the directory, as a Register of
/// the same content would (same lease clamping, same ordering by `sequence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAliveRequest {
    /// Chosen by the client to match the answer to the request.
    pub request: u32,
    /// The registrant whose registrations are renewed.
    pub registrant: u64,
    /// Orders the registrant's requests, as in
    /// [`RegisterRequest::sequence`](super::RegisterRequest::sequence).
    pub sequence: u64,
    /// The lease the client asks for (the directory clamps it to its limits).
    pub lease: Duration,
    /// What the client believes the directory holds for it.
    pub held: Holdings,
}

/// The answer to a [`KeepAliveRequest`]: the lease granted, and what the directory
/// holds for the registrant once it renewed them. When `held` differs from the
/// request's, the client registers everything again in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAliveAck {
    /// The request this answers.
    pub request: u32,
    /// The lease granted to every registration renewed.
    pub lease: Duration,
    /// The registrant's live registrations at the directory.
    pub held: Holdings,
}

/// A set of registrations summed up: how many, and the XOR of their
/// [`registration_digest`]s (so the order they are added in does not matter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// How many registrations.
    pub count: u32,
    /// The XOR of their digests.
    pub digest: u64,
}

impl Holdings {
    /// Adds one registration.
    pub fn add(&mut self, registration: &Registration) {
        self.count = self.count.saturating_add(1);
        self.digest ^= registration_digest(registration);
    }
}

/// Bytes of the largest Register payload with zero request, registrant, sequence and
/// lease (one byte each), then name, locations and metadata.
const REGISTER_PAYLOAD_MAX: usize = 4 + 256;

/// FNV-1a 64 of a registration's wire form: its name, locations and metadata encoded
/// exactly as they end a Register payload (see `docs/PROTOCOL.md`, "KeepAlive").
pub fn registration_digest(registration: &Registration) -> u64 {
    let mut buf = [0u8; REGISTER_PAYLOAD_MAX];
    // The Register layout itself, so no second encoder of a registration exists: its
    // four leading integers, zero, take one byte each.
    let wire = RegisterWire {
        request: 0,
        registrant: 0,
        sequence: 0,
        lease_ms: 0,
        name: registration.name.as_str(),
        locations: LocationsOut(&registration.locations),
        metadata: registration.metadata.encoded(),
    };
    // Cannot fail: a valid registration takes at most 1 + 64, 1 + 4 × 20 and 1 + 96 bytes.
    let len = ser(&wire, &mut buf).unwrap_or(0);
    fnv1a(FNV_OFFSET, buf.get(4..len).unwrap_or_default())
}

/// The layout of a KeepAlive payload (decoded field by field, see [`Fields`]).
#[derive(Serialize)]
pub(super) struct KeepAliveWire {
    pub request: u32,
    pub registrant: u64,
    pub sequence: u64,
    pub lease_ms: u32,
    pub held: u32,
    pub digest: u64,
}

/// The layout of a KeepAliveAck payload.
#[derive(Serialize)]
pub(super) struct KeepAliveAckWire {
    pub request: u32,
    pub lease_ms: u32,
    pub held: u32,
    pub digest: u64,
}

/// The integer fields of a payload, read in order: one small reader for both layouts
/// (it keeps a client's firmware small), the same bytes as `postcard` reads.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let (value, rest) = take::<u32>(self.0)?;
        self.0 = rest;
        Ok(value)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let (value, rest) = take::<u64>(self.0)?;
        self.0 = rest;
        Ok(value)
    }

    fn held(&mut self) -> Result<Holdings, DecodeError> {
        Ok(Holdings {
            count: self.u32()?,
            digest: self.u64()?,
        })
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

impl KeepAliveRequest {
    /// Decodes a KeepAlive payload ([`KeepAliveWire`]).
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields(payload);
        let k = KeepAliveRequest {
            request: f.u32()?,
            registrant: f.u64()?,
            sequence: f.u64()?,
            lease: lease_from_ms(f.u32()?),
            held: f.held()?,
        };
        f.end()?;
        Ok(k)
    }
}

impl KeepAliveAck {
    /// Decodes a KeepAliveAck payload ([`KeepAliveAckWire`]).
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields(payload);
        let a = KeepAliveAck {
            request: f.u32()?,
            lease: lease_from_ms(f.u32()?),
            held: f.held()?,
        };
        f.end()?;
        Ok(a)
    }
}

impl Single for KeepAliveRequest {
    const KIND: Kind = Kind::KeepAlive;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(
            &KeepAliveWire {
                request: self.request,
                registrant: self.registrant,
                sequence: self.sequence,
                lease_ms: lease_to_ms(self.lease),
                held: self.held.count,
                digest: self.held.digest,
            },
            buf,
        )
    }
}

impl Single for KeepAliveAck {
    const KIND: Kind = Kind::KeepAliveAck;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        ser(
            &KeepAliveAckWire {
                request: self.request,
                lease_ms: lease_to_ms(self.lease),
                held: self.held.count,
                digest: self.held.digest,
            },
            buf,
        )
    }
}
