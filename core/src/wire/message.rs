//! Message payloads: the validated types a caller sees, and their `postcard` layouts.
//!
//! Each message has a private `*Wire` struct that fixes its field order on the wire and
//! borrows strings from the datagram; decoding validates it into the public type, so an
//! invalid name or address is refused with a precise error.

use super::error::{DecodeError, EncodeError};
use super::fields::{Fields, Out};
use super::fixed;
use super::items::Items;
use super::keep_alive::{KeepAliveAck, KeepAliveRequest};
use super::subscription::{DeliveryAck, SubscribeAck, SubscribeRequest, UnsubscribeRequest};
use crate::interest::{Interest, Pattern};
use crate::location::{check_locations, Location, Locations, MAX_LOCATIONS};
use crate::metadata::Metadata;
use crate::name::{Environment, ServiceName};
use crate::service::{Registration, Service, Version};
use crate::time::Duration;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use serde::{Deserialize, Serialize};

/// A decoded message.
#[derive(Clone, Debug)]
pub enum Message<'a> {
    /// Register or renew.
    Register(RegisterRequest),
    /// Remove a registration.
    Unregister(UnregisterRequest),
    /// Ask for the registry.
    SnapshotRequest(SnapshotRequest),
    /// A directory's return-routability cookie, answering a [`SnapshotRequest`] that
    /// carried none (or a stale one).
    Cookie(CookieReply),
    /// A request was accepted.
    Ack(Ack),
    /// A request was refused.
    Reject(Reject),
    /// One page of a snapshot, answering a [`SnapshotRequest`].
    SnapshotPage(PageHeader, Items<'a, Service>),
    /// One page of the multicast anti-entropy sweep.
    SyncPage(PageHeader, Items<'a, Service>),
    /// Changes, announced on the group.
    Announce(AnnounceHeader, Items<'a, Change>),
    /// A directory says it is available.
    Beacon(Beacon),
    /// One page of the changes after a version, answering a [`SnapshotRequest`] with
    /// `since`: the page states the changes (new states and removals) made after
    /// `since` to the services in its name range, as of its `as_of`.
    ChangesPage(PageHeader, Items<'a, Change>),
    /// One page of a snapshot delivered to a subscription: the subscriber's id (its
    /// registrant id), the page (its `request` is the delivery id) and the services.
    DeliveredSnapshot(u64, PageHeader, Items<'a, Service>),
    /// One page of changes delivered to a subscription: the subscriber's id, the page
    /// (its `request` is the delivery id) and the changes after the subscriber's cursor.
    DeliveredChanges(u64, PageHeader, Items<'a, Change>),
    /// Renew every registration of a registrant.
    KeepAlive(KeepAliveRequest),
    /// A keep-alive was accepted: what the directory holds for the registrant.
    KeepAliveAck(KeepAliveAck),
    /// Subscribe to unicast deliveries, or renew the subscription.
    Subscribe(SubscribeRequest),
    /// A subscription was taken, renewed or ended.
    SubscribeAck(SubscribeAck),
    /// End a subscription.
    Unsubscribe(UnsubscribeRequest),
    /// A subscriber holds every matching change up to a version.
    DeliveryAck(DeliveryAck),
}

/// Register a service, or renew its lease (the "pulse").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRequest {
    /// Chosen by the client to match the answer to the request.
    pub request: u32,
    /// Identifies the registrant; only it may renew, change or remove the registration.
    pub registrant: u64,
    /// Orders the registrant's requests: larger than every sequence it sent before
    /// (clients use their counter clock, microseconds of the wall clock where they know
    /// it). The directory stores the highest it applied with the record and refuses an
    /// older request (`stale`, with that floor), so a late request never undoes a newer
    /// one, whichever directory of the environment it reaches.
    pub sequence: u64,
    /// The lease the client asks for (the directory clamps it to its limits).
    pub lease: Duration,
    /// What to publish.
    pub registration: Registration,
}

/// Remove a registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnregisterRequest {
    /// Chosen by the client to match the answer to the request.
    pub request: u32,
    /// Must be the registrant that holds the name.
    pub registrant: u64,
    /// Orders the registrant's requests, as in [`RegisterRequest::sequence`].
    pub sequence: u64,
    /// The service to remove.
    pub name: ServiceName,
}

/// Ask for the registry, or the part of it after a name, filtered by an interest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRequest {
    /// Chosen by the client to match the pages to the request.
    pub request: u32,
    /// Most pages to send in answer (1 to 255); the client asks again after the last.
    pub max_pages: u8,
    /// Start after this name (exclusive); `None` starts at the beginning.
    pub after: Option<ServiceName>,
    /// Only services matching this interest.
    pub interest: Interest,
    /// The cookie the directory last gave this client's address ([`CookieReply`]);
    /// `None` at first. Without a valid one the directory answers with a cookie only.
    pub cookie: Option<[u8; COOKIE_LEN]>,
    /// A repair: only what changed after the announcement stamped this `as_of` (the
    /// listener heard every announcement up to it), answered with
    /// [`Message::ChangesPage`]s. A directory that no longer holds every removal that
    /// recent answers with a full snapshot instead. `None`: the whole registry.
    pub since: Option<Version>,
}

/// Length of a return-routability cookie.
pub const COOKIE_LEN: usize = 16;

/// The directory's answer to a snapshot request without a valid cookie: the client
/// sends the request again with this cookie, which proves it receives what is sent to
/// its address (as QUIC's Retry and DNS cookies do). A cookie is bound to the client's
/// address and port and stays valid for one to two minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieReply {
    /// The request this answers.
    pub request: u32,
    /// The cookie to echo in [`SnapshotRequest::cookie`].
    pub cookie: [u8; COOKIE_LEN],
}

/// A request was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The request this answers.
    pub request: u32,
    /// The lease granted (zero for an unregistration).
    pub lease: Duration,
    /// The version the service now has.
    pub version: Version,
}

/// Why a directory refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RejectReason {
    /// The request names another environment than the directory's.
    WrongEnvironment = 1,
    /// The service name is invalid.
    InvalidName = 2,
    /// A location is invalid.
    InvalidLocation = 3,
    /// The metadata is invalid.
    InvalidMetadata = 4,
    /// The registry is at capacity.
    RegistryFull = 5,
    /// The name is live and held by another registrant.
    NameHeld = 6,
    /// The request's protocol version is not supported.
    UnsupportedVersion = 7,
    /// The request could not be decoded.
    Malformed = 8,
    /// The request is older than what the directory holds: with keys, its counter is
    /// outside the directory's time window or below what this registrant already used
    /// (a replay of old traffic, or a client whose clock is off); with or without keys,
    /// its sequence is below the one stored with the record (a late request, or a
    /// registrant restarted without the wall clock). The answer's own counter and its
    /// [`floor`](Reject::floor) tell the client where to resume; it resynchronises and
    /// retries.
    Stale = 9,
    /// The directory could not make the change durable (its storage is failing):
    /// nothing was acknowledged or changed for good. The client keeps its registration
    /// and retries with back-off.
    StorageUnavailable = 10,
    /// The sender's address (or its /24 or /64 network) holds as many registrations as
    /// the directory allows one source: a final refusal for this registration.
    SourceBudget = 11,
    /// The directory's subscriber table is full: no new subscription is taken (a
    /// subscriber already held renews). The client listens on the group meanwhile and
    /// tries again later.
    SubscribersFull = 12,
}

impl RejectReason {
    /// All reasons, in code order.
    pub const ALL: [RejectReason; 12] = [
        RejectReason::WrongEnvironment,
        RejectReason::InvalidName,
        RejectReason::InvalidLocation,
        RejectReason::InvalidMetadata,
        RejectReason::RegistryFull,
        RejectReason::NameHeld,
        RejectReason::UnsupportedVersion,
        RejectReason::Malformed,
        RejectReason::Stale,
        RejectReason::StorageUnavailable,
        RejectReason::SourceBudget,
        RejectReason::SubscribersFull,
    ];

    /// This reason's place in [`RejectReason::ALL`] (counters indexed by reason use it;
    /// codes need not be contiguous).
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }

    /// The reason for a code, if defined.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == code)
    }

    /// A short, stable, machine-friendly label (`wrong_environment`, …).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::WrongEnvironment => "wrong_environment",
            RejectReason::InvalidName => "invalid_name",
            RejectReason::InvalidLocation => "invalid_location",
            RejectReason::InvalidMetadata => "invalid_metadata",
            RejectReason::RegistryFull => "registry_full",
            RejectReason::NameHeld => "name_held",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::Malformed => "malformed",
            RejectReason::Stale => "stale",
            RejectReason::StorageUnavailable => "storage_unavailable",
            RejectReason::SourceBudget => "source_budget",
            RejectReason::SubscribersFull => "subscribers_full",
        }
    }

    /// The reason for a decoding failure of a request.
    pub fn for_decode_error(e: DecodeError) -> Self {
        match e {
            DecodeError::InvalidName(_) => RejectReason::InvalidName,
            DecodeError::InvalidLocation(_) => RejectReason::InvalidLocation,
            DecodeError::InvalidMetadata(_) => RejectReason::InvalidMetadata,
            DecodeError::UnsupportedVersion(_) | DecodeError::UnknownFlags(_) => {
                RejectReason::UnsupportedVersion
            }
            _ => RejectReason::Malformed,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::WrongEnvironment => "the directory serves another environment",
            RejectReason::InvalidName => "the service name is invalid",
            RejectReason::InvalidLocation => "a location is invalid",
            RejectReason::InvalidMetadata => "the metadata is invalid",
            RejectReason::RegistryFull => "the directory's registry is full",
            RejectReason::NameHeld => "the name is held by another registrant",
            RejectReason::UnsupportedVersion => {
                "the directory does not support this protocol version"
            }
            RejectReason::Malformed => "the directory could not decode the request",
            RejectReason::Stale => "the request is older than what the directory holds",
            RejectReason::StorageUnavailable => {
                "the directory could not store the change (its storage is failing); retry later"
            }
            RejectReason::SourceBudget => {
                "the sender's address or network holds as many registrations as allowed"
            }
            RejectReason::SubscribersFull => "the directory's subscriber table is full",
        })
    }
}

/// A request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// The request this answers (0 when the request could not be read at all).
    pub request: u32,
    /// Why.
    pub reason: RejectReason,
    /// The environment the directory serves, so a mismatch can be named.
    pub directory_environment: Environment,
    /// For [`RejectReason::Stale`]: the counter and sequence the client's next request
    /// must exceed (0: only the answer's own counter matters). Sent only with `stale`;
    /// 0 for every other reason.
    pub floor: u64,
}

/// A directory says it is available at `directory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beacon {
    /// Where the directory takes requests: a real address, never `0.0.0.0`.
    pub directory: Location,
    /// The newest version in its registry: a listener that has seen less has missed
    /// something and asks for a snapshot.
    pub as_of: Version,
    /// How many services are live.
    pub services: u32,
    /// True when this directory announces changes and sweeps its registry (a single
    /// directory always does; of directories sharing a store, only the elected
    /// publisher). Listeners follow a publishing directory.
    pub publishing: bool,
    /// The XOR over the live services of a 64-bit hash of (name, version) (0: none);
    /// a listener of everything compares it with the same over what it holds.
    pub digest: u64,
}

/// The fixed part of a page (snapshot or sweep).
///
/// A page states: "among the services that match the request, those with names after
/// `after` and up to the last name in this page (or to the end if `complete`) are
/// exactly these, as of `as_of`". A receiver drops what it holds in that range that is
/// not in the page, unless it is newer than `as_of`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageHeader {
    /// The request this answers; 0 for the multicast sweep.
    pub request: u32,
    /// The newest version in the registry when the page was written.
    pub as_of: Version,
    /// The page covers names after this one (exclusive); `None` from the beginning.
    pub after: Option<ServiceName>,
    /// True when the page reaches the end of the registry.
    pub complete: bool,
}

/// The fixed part of an announcement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceHeader {
    /// The announcing directory.
    pub directory: Location,
    /// The newest version in its registry. An announcement that carries a change for
    /// the first time is a link of the directory's chain and has a version of its own
    /// (above every change it carries); one that carries only repeats has `previous`.
    pub as_of: Version,
    /// The `as_of` of the previous link of the chain: this datagram and the links up to
    /// `previous` carry the first announcement of every change made since the
    /// listener's snapshot, so a listener that has not heard `previous` missed one.
    pub previous: Version,
}

/// One change in an announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // Decoded one at a time; without alloc, nothing to box.
pub enum Change {
    /// A service is live with this state (new, or changed).
    Registered(Service),
    /// A service was removed (unregistered or expired).
    Unregistered {
        /// The service.
        name: ServiceName,
        /// The version of the removal.
        version: Version,
    },
}

impl Change {
    /// The service this change is about.
    pub fn name(&self) -> &ServiceName {
        match self {
            Change::Registered(s) => s.name(),
            Change::Unregistered { name, .. } => name,
        }
    }

    /// The version of this change.
    pub fn version(&self) -> Version {
        match self {
            Change::Registered(s) => s.version,
            Change::Unregistered { version, .. } => *version,
        }
    }
}

// ---- wire layouts -------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
enum IpWire {
    V4(#[serde(deserialize_with = "fixed::bytes")] [u8; 4]),
    V6(#[serde(deserialize_with = "fixed::bytes")] [u8; 16]),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct LocationWire {
    ip: IpWire,
    port: u16,
}

impl LocationWire {
    pub(crate) fn from_location(l: &Location) -> Self {
        LocationWire {
            ip: match l.ip() {
                IpAddr::V4(a) => IpWire::V4(a.octets()),
                IpAddr::V6(a) => IpWire::V6(a.octets()),
            },
            port: l.port(),
        }
    }

    /// Reads the next field of `f`, a location (the bytes its `Deserialize` reads: the
    /// variant index, the address's bytes, the port).
    pub(super) fn read(f: &mut Fields<'_>) -> Result<Self, DecodeError> {
        let ip = match f.u32()? {
            0 => IpWire::V4(f.bytes()?),
            1 => IpWire::V6(f.bytes()?),
            _ => return Err(DecodeError::Malformed),
        };
        Ok(LocationWire {
            ip,
            port: f.next()?,
        })
    }

    pub(crate) fn validate(&self) -> Result<Location, DecodeError> {
        let ip = match self.ip {
            IpWire::V4(o) => IpAddr::V4(Ipv4Addr::from(o)),
            IpWire::V6(o) => IpAddr::V6(Ipv6Addr::from(o)),
        };
        Location::new(ip, self.port).map_err(DecodeError::InvalidLocation)
    }
}

pub(crate) type LocationsWire = heapless::Vec<LocationWire, MAX_LOCATIONS>;

pub(crate) fn locations_to_wire(list: &Locations) -> LocationsWire {
    list.iter().map(LocationWire::from_location).collect()
}

/// Locations as an encoder writes them: straight from the [`Locations`], the same bytes
/// as the [`LocationsWire`] a decoder reads, without copying them into one first.
pub(crate) struct LocationsOut<'a>(pub(crate) &'a Locations);

impl Serialize for LocationsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(LocationWire::from_location))
    }
}

/// Writes an interest's patterns: the same bytes as the vector of [`PatternWire`] a
/// decoder reads.
pub(super) fn write_interest(out: &mut Out<'_>, interest: &Interest) -> Result<(), EncodeError> {
    let patterns = interest.patterns();
    out.int(patterns.len() as u64)?;
    for p in patterns {
        out.str(p.text().as_bytes())?;
        out.raw(&[p.is_prefix().into()])?;
    }
    Ok(())
}

pub(super) fn validate_locations(wire: &LocationsWire) -> Result<Locations, DecodeError> {
    let mut list = Locations::new();
    for l in wire {
        // Cannot overflow: both hold at most MAX_LOCATIONS.
        let _ = list.push(l.validate()?);
    }
    check_locations(&list).map_err(DecodeError::InvalidLocation)?;
    Ok(list)
}

pub(crate) fn validate_name(name: &str) -> Result<ServiceName, DecodeError> {
    ServiceName::new(name).map_err(DecodeError::InvalidName)
}

pub(crate) fn validate_registration(
    name: &str,
    locations: &LocationsWire,
    metadata: &[u8],
) -> Result<Registration, DecodeError> {
    Ok(Registration {
        name: validate_name(name)?,
        locations: validate_locations(locations)?,
        metadata: Metadata::from_encoded(metadata).map_err(DecodeError::InvalidMetadata)?,
    })
}

/// The layout of a Register payload, as a directory decodes it. An encoder writes its
/// four integers, then [`write_registration`].
#[derive(Deserialize)]
pub(super) struct RegisterWire<'a> {
    pub request: u32,
    pub registrant: u64,
    pub sequence: u64,
    pub lease_ms: u32,
    pub name: &'a str,
    pub locations: LocationsWire,
    pub metadata: &'a [u8],
}

/// Writes a registration as it ends a Register payload (name, locations, metadata): the
/// same bytes a [`RegisterWire`] decoder reads after the integers. The locations go
/// through their one encoder, [`LocationsOut`].
pub(super) fn write_registration(out: &mut Out<'_>, r: &Registration) -> Result<(), EncodeError> {
    out.str(r.name.as_str().as_bytes())?;
    out.ser(&LocationsOut(&r.locations))?;
    out.str(r.metadata.encoded())
}

/// The layout of an Unregister payload, as a directory decodes it. An encoder writes its
/// three integers, then the name.
#[derive(Deserialize)]
pub(super) struct UnregisterWire<'a> {
    pub request: u32,
    pub registrant: u64,
    pub sequence: u64,
    pub name: &'a str,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct PatternWire<'a> {
    pub text: &'a str,
    pub prefix: bool,
}

impl PatternWire<'_> {
    pub(super) fn validate(&self) -> Result<Pattern, DecodeError> {
        if self.prefix {
            Pattern::prefix(self.text).map_err(DecodeError::InvalidName)
        } else {
            validate_name(self.text).map(|n| Pattern::exact(&n))
        }
    }
}

/// The layout of an interest: its patterns, in order.
pub(crate) type InterestWire<'a> =
    heapless::Vec<PatternWire<'a>, { crate::interest::MAX_PATTERNS }>;

pub(crate) fn interest_to_wire(interest: &Interest) -> InterestWire<'_> {
    interest
        .patterns()
        .iter()
        .map(|p| PatternWire {
            text: p.text(),
            prefix: p.is_prefix(),
        })
        .collect()
}

pub(crate) fn interest_from_wire(wire: &InterestWire<'_>) -> Result<Interest, DecodeError> {
    let mut interest = Interest::all();
    for p in wire {
        // Cannot overflow: both hold at most MAX_PATTERNS.
        let _ = interest.push(p.validate()?);
    }
    Ok(interest)
}

/// The layout of a SnapshotRequest payload (encoded field by field, see `codec`).
#[derive(Deserialize)]
pub(super) struct SnapshotRequestWire<'a> {
    pub request: u32,
    pub max_pages: u8,
    #[serde(borrow)]
    pub after: Option<&'a str>,
    pub interest: InterestWire<'a>,
    pub cookie: Option<[u8; COOKIE_LEN]>,
    pub since: Option<u64>,
}

/// The layout of a Cookie payload (decoded field by field, see `codec`).
#[derive(Serialize)]
pub(super) struct CookieWire {
    pub request: u32,
    pub cookie: [u8; COOKIE_LEN],
}

/// The layout of a Reject payload (decoded field by field, see `codec`).
#[derive(Serialize)]
pub(super) struct RejectWire<'a> {
    pub request: u32,
    pub reason: u8,
    pub environment: &'a str,
}

/// The layout of a Beacon payload (decoded field by field, see `codec`).
#[derive(Serialize)]
pub(super) struct BeaconWire {
    pub directory: LocationWire,
    pub as_of: u64,
    pub services: u32,
    pub publishing: bool,
    pub digest: [u8; 8],
}

/// The layout of a page's fixed part (decoded field by field, see `codec`).
#[derive(Serialize)]
pub(super) struct PageHeaderWire<'a> {
    pub request: u32,
    pub as_of: u64,
    pub after: Option<&'a str>,
    // Last, so that a writer can set it once it knows whether the page is complete.
    pub complete: bool,
}

/// The layout of an announcement's fixed part (decoded field by field, see `codec`).
#[derive(Serialize)]
pub(super) struct AnnounceHeaderWire {
    pub directory: LocationWire,
    pub as_of: u64,
    pub previous: u64,
}

/// `L`: [`LocationsWire`] to decode (field by field, [`ServiceWire::read`]),
/// [`LocationsOut`] to encode.
#[derive(Serialize)]
pub(super) struct ServiceWire<'a, L = LocationsWire> {
    pub name: &'a str,
    pub version: u64,
    pub locations: L,
    pub metadata: &'a [u8],
}

impl<'a> ServiceWire<'a, LocationsOut<'a>> {
    pub(super) fn from_service(s: &'a Service) -> Self {
        ServiceWire {
            name: s.registration.name.as_str(),
            version: s.version.0,
            locations: LocationsOut(&s.registration.locations),
            metadata: s.registration.metadata.encoded(),
        }
    }
}

impl<'a> ServiceWire<'a> {
    /// Reads the next field of `f`, a service (the bytes a `Deserialize` would read:
    /// name, version, the locations' count and each location, metadata).
    pub(super) fn read(f: &mut Fields<'a>) -> Result<Self, DecodeError> {
        let (name, version, count) = (f.next()?, f.u64()?, f.next::<usize>()?);
        let mut locations = LocationsWire::new();
        for _ in 0..count {
            locations
                .push(LocationWire::read(f)?)
                .map_err(|_| DecodeError::Malformed)?;
        }
        Ok(ServiceWire {
            name,
            version,
            locations,
            metadata: f.next()?,
        })
    }

    pub(super) fn validate(&self) -> Result<Service, DecodeError> {
        Ok(Service {
            registration: validate_registration(self.name, &self.locations, self.metadata)?,
            version: Version(self.version),
        })
    }
}

/// `L`: [`LocationsWire`] to decode (field by field, see `items`), [`LocationsOut`] to
/// encode.
#[derive(Serialize)]
pub(super) enum ChangeWire<'a, L = LocationsWire> {
    Registered(ServiceWire<'a, L>),
    Unregistered { name: &'a str, version: u64 },
}
