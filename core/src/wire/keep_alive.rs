//! Keep-alives: one request renews every registration a registrant holds at a
//! directory, and its answer says whether the directory holds exactly what the
//! registrant believes it holds (a count and an order-independent digest, [`Holdings`]).

use super::codec::{lease_to_ms, ser, Single};
use super::error::EncodeError;
use super::header::Kind;
use super::message::{locations_to_wire, LocationsWire};
use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Registration;
use crate::time::Duration;
use serde::{Deserialize, Serialize};

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

/// Bytes of the largest registration in its wire form (name, locations, metadata).
const REGISTRATION_WIRE_MAX: usize = 256;

#[derive(Serialize)]
struct RegistrationWire<'a> {
    name: &'a str,
    locations: LocationsWire,
    metadata: &'a [u8],
}

/// FNV-1a 64 of a registration's wire form: its name, locations and metadata encoded
/// exactly as they end a Register payload (see `docs/PROTOCOL.md`, "KeepAlive").
pub fn registration_digest(registration: &Registration) -> u64 {
    let mut buf = [0u8; REGISTRATION_WIRE_MAX];
    let wire = RegistrationWire {
        name: registration.name.as_str(),
        locations: locations_to_wire(&registration.locations),
        metadata: registration.metadata.encoded(),
    };
    // Cannot fail: a valid registration takes at most 1 + 64, 1 + 4 × 20 and 1 + 96 bytes.
    let len = ser(&wire, &mut buf).unwrap_or(0);
    fnv1a(FNV_OFFSET, &buf[..len])
}

#[derive(Serialize, Deserialize)]
pub(super) struct KeepAliveWire {
    pub request: u32,
    pub registrant: u64,
    pub sequence: u64,
    pub lease_ms: u32,
    pub held: u32,
    pub digest: u64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct KeepAliveAckWire {
    pub request: u32,
    pub lease_ms: u32,
    pub held: u32,
    pub digest: u64,
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
