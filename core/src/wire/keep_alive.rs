//! Keep-alives: one request renews every registration a registrant holds at a
//! directory, and its answer says whether the directory holds exactly what the
//! registrant believes it holds (a count and an order-independent digest, [`Holdings`]).

use super::codec::{lease_from_ms, lease_to_ms, Single};
use super::error::{DecodeError, EncodeError};
use super::fields::{put, Fields, Out};
use super::header::Kind;
use super::message::write_registration;
use crate::hash::{fnv1a, FNV_OFFSET};
use crate::service::Registration;
use crate::time::Duration;

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

/// Bytes of the largest registration as it ends a Register payload: name, locations
/// and metadata.
const REGISTRATION_MAX: usize = 256;

/// FNV-1a 64 of a registration's wire form: its name, locations and metadata encoded
/// exactly as they end a Register payload (see `docs/PROTOCOL.md`, "KeepAlive").
pub fn registration_digest(registration: &Registration) -> u64 {
    let mut buf = [0u8; REGISTRATION_MAX];
    // The Register encoder's own, so no second encoder of a registration exists.
    // Cannot fail: a valid registration takes at most 1 + 64, 1 + 4 × 20 and 1 + 96 bytes.
    let mut out = Out::new(&mut buf);
    let len = match write_registration(&mut out, registration) {
        Ok(()) => out.len,
        Err(_) => 0,
    };
    fnv1a(FNV_OFFSET, buf.get(..len).unwrap_or_default())
}

// The layouts, integers only, read and written by [`Fields`] and [`put`]:
// KeepAlive: request u32, registrant u64, sequence u64, lease_ms u32, held count u32,
// held digest u64. KeepAliveAck: request u32, lease_ms u32, held count u32, held digest
// u64.

/// The next two fields, a [`Holdings`].
fn held(f: &mut Fields<'_>) -> Result<Holdings, DecodeError> {
    Ok(Holdings {
        count: f.u32()?,
        digest: f.u64()?,
    })
}

impl KeepAliveRequest {
    /// Decodes a KeepAlive payload.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields(payload);
        let k = KeepAliveRequest {
            request: f.u32()?,
            registrant: f.u64()?,
            sequence: f.u64()?,
            lease: lease_from_ms(f.u32()?),
            held: held(&mut f)?,
        };
        f.end()?;
        Ok(k)
    }
}

impl KeepAliveAck {
    /// Decodes a KeepAliveAck payload.
    pub(super) fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields(payload);
        let a = KeepAliveAck {
            request: f.u32()?,
            lease: lease_from_ms(f.u32()?),
            held: held(&mut f)?,
        };
        f.end()?;
        Ok(a)
    }
}

impl Single for KeepAliveRequest {
    const KIND: Kind = Kind::KeepAlive;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        put(
            &[
                self.request.into(),
                self.registrant,
                self.sequence,
                lease_to_ms(self.lease).into(),
                self.held.count.into(),
                self.held.digest,
            ],
            buf,
        )
    }
}

impl Single for KeepAliveAck {
    const KIND: Kind = Kind::KeepAliveAck;
    fn encode_payload(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        put(
            &[
                self.request.into(),
                lease_to_ms(self.lease).into(),
                self.held.count.into(),
                self.held.digest,
            ],
            buf,
        )
    }
}
