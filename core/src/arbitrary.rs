//! [`Arbitrary`] implementations for fuzzing (feature `arbitrary`, off by default).
//!
//! Every value generated is well formed: it passes the same validation as a decoded
//! one, and it survives an encode/decode round trip unchanged (leases in whole
//! milliseconds that fit the wire's `u32`, snapshot requests for at least one page).
//! Names and metadata are sanitised from arbitrary text rather than rejected, so the
//! fuzzer reaches deep states instead of failing validation.

use crate::interest::{Interest, Pattern, MAX_PATTERNS};
use crate::location::{Location, Locations, MAX_LOCATIONS};
use crate::metadata::{Metadata, MAX_KEY_LEN};
use crate::name::{Environment, ServiceName, MAX_ENVIRONMENT_LEN, MAX_NAME_LEN};
use crate::service::{Registration, Service, Version};
use crate::time::{Duration, Instant};
use crate::wire::{
    Ack, AnnounceHeader, Beacon, Change, CookieReply, DeliveryAck, Holdings, KeepAliveAck,
    KeepAliveRequest, PageHeader, RegisterRequest, Reject, RejectReason, SnapshotRequest,
    SubscribeAck, SubscribeRequest, UnregisterRequest, UnsubscribeRequest,
};
use arbitrary::{Arbitrary, Result, Unstructured};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// ASCII letters, digits, `-`, `_` and `.`: valid in environments and metadata keys.
const WORD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

/// A string of 1 to `N` characters drawn from [`WORD`].
fn word<const N: usize>(u: &mut Unstructured<'_>) -> Result<heapless::String<N>> {
    let len = u.int_in_range(1..=N)?;
    let mut s = heapless::String::new();
    for _ in 0..len {
        let c = *u.choose(WORD)?;
        // Cannot fail: at most N characters of one byte each.
        let _ = s.push(char::from(c));
    }
    Ok(s)
}

/// Arbitrary text without control characters, at most `max` bytes, trimmed of white
/// space when `trim` is set; `fallback` when nothing is left.
fn text(
    u: &mut Unstructured<'_>,
    trim: bool,
    fallback: &str,
) -> Result<heapless::String<MAX_NAME_LEN, u8>> {
    let raw: &str = u.arbitrary()?;
    let mut s = heapless::String::<MAX_NAME_LEN, u8>::new();
    for c in raw.chars().filter(|c| !c.is_control()) {
        if s.push(c).is_err() {
            break;
        }
    }
    let kept = if trim { s.trim() } else { s.as_str() };
    let kept = if kept.is_empty() { fallback } else { kept };
    let mut out = heapless::String::new();
    // Cannot fail: `kept` is no longer than `s` (or is the short fallback).
    let _ = out.push_str(kept);
    Ok(out)
}

fn lease_ms(u: &mut Unstructured<'_>) -> Result<Duration> {
    Ok(Duration::from_millis(u64::from(u32::arbitrary(u)?)))
}

impl<'a> Arbitrary<'a> for Instant {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Instant::from_micros(u.arbitrary()?))
    }
}

impl<'a> Arbitrary<'a> for Duration {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Duration::from_micros(u.arbitrary()?))
    }
}

impl<'a> Arbitrary<'a> for Version {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Version(u.arbitrary()?))
    }
}

impl<'a> Arbitrary<'a> for ServiceName {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let s = text(u, true, "x")?;
        Ok(ServiceName::new(&s).unwrap_or_else(|_| unreachable!("sanitised name {s:?}")))
    }
}

impl<'a> Arbitrary<'a> for Environment {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let s = word::<MAX_ENVIRONMENT_LEN>(u)?;
        Ok(Environment::new(&s).unwrap_or_else(|_| unreachable!("environment {s:?}")))
    }
}

impl<'a> Arbitrary<'a> for Location {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let ip = if u.arbitrary()? {
            IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?))
        };
        let ip = if ip.is_unspecified() || ip.is_multicast() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        };
        let port = u.arbitrary::<u16>()?.max(1);
        Ok(Location::new(ip, port).unwrap_or_else(|e| unreachable!("location: {e}")))
    }
}

impl<'a> Arbitrary<'a> for Metadata {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut meta = Metadata::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let key = word::<MAX_KEY_LEN>(u)?;
            let value = text(u, false, "")?;
            // Too long or a duplicate key: keep what fitted.
            let _ = meta.insert(&key, &value);
        }
        Ok(meta)
    }
}

impl<'a> Arbitrary<'a> for Registration {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let name = u.arbitrary()?;
        let mut locations = Locations::new();
        locations
            .push(u.arbitrary()?)
            .unwrap_or_else(|_| unreachable!());
        for _ in 1..u.int_in_range(1..=MAX_LOCATIONS)? {
            let l: Location = u.arbitrary()?;
            if !locations.contains(&l) {
                let _ = locations.push(l);
            }
        }
        Ok(Registration::new(name, &locations)
            .unwrap_or_else(|e| unreachable!("locations: {e}"))
            .with_metadata(u.arbitrary()?))
    }
}

impl<'a> Arbitrary<'a> for Service {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Service {
            registration: u.arbitrary()?,
            version: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Pattern {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        if u.arbitrary()? {
            let prefix = text(u, false, "x")?;
            Ok(Pattern::prefix(&prefix).unwrap_or_else(|e| unreachable!("prefix: {e}")))
        } else {
            Ok(Pattern::exact(&u.arbitrary()?))
        }
    }
}

impl<'a> Arbitrary<'a> for Interest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let mut interest = Interest::all();
        for _ in 0..u.int_in_range(0..=MAX_PATTERNS)? {
            interest
                .push(u.arbitrary()?)
                .unwrap_or_else(|_| unreachable!());
        }
        Ok(interest)
    }
}

impl<'a> Arbitrary<'a> for RejectReason {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        u.choose(&RejectReason::ALL).copied()
    }
}

impl<'a> Arbitrary<'a> for RegisterRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(RegisterRequest {
            request: u.arbitrary()?,
            registrant: u.arbitrary()?,
            sequence: u.arbitrary()?,
            lease: lease_ms(u)?,
            registration: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for UnregisterRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(UnregisterRequest {
            request: u.arbitrary()?,
            registrant: u.arbitrary()?,
            sequence: u.arbitrary()?,
            name: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for SnapshotRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(SnapshotRequest {
            request: u.arbitrary()?,
            max_pages: u.int_in_range(1..=u8::MAX)?,
            after: u.arbitrary()?,
            interest: u.arbitrary()?,
            cookie: u.arbitrary()?,
            since: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for CookieReply {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(CookieReply {
            request: u.arbitrary()?,
            cookie: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Ack {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Ack {
            request: u.arbitrary()?,
            lease: lease_ms(u)?,
            version: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Holdings {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Holdings {
            count: u.arbitrary()?,
            digest: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for KeepAliveRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(KeepAliveRequest {
            request: u.arbitrary()?,
            registrant: u.arbitrary()?,
            sequence: u.arbitrary()?,
            lease: lease_ms(u)?,
            held: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for KeepAliveAck {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(KeepAliveAck {
            request: u.arbitrary()?,
            lease: lease_ms(u)?,
            held: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for SubscribeRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(SubscribeRequest {
            request: u.arbitrary()?,
            subscriber: u.arbitrary()?,
            delivery: u.arbitrary()?,
            lease: lease_ms(u)?,
            interest: u.arbitrary()?,
            since: u.arbitrary()?,
            cookie: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for SubscribeAck {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(SubscribeAck {
            request: u.arbitrary()?,
            lease: lease_ms(u)?,
            delivering: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for UnsubscribeRequest {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(UnsubscribeRequest {
            request: u.arbitrary()?,
            subscriber: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for DeliveryAck {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(DeliveryAck {
            subscriber: u.arbitrary()?,
            delivery: u.arbitrary()?,
            as_of: u.arbitrary()?,
            taken: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Reject {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let request = u.arbitrary()?;
        let reason = u.arbitrary()?;
        Ok(Reject {
            request,
            reason,
            directory_environment: u.arbitrary()?,
            floor: if reason == RejectReason::Stale {
                u.arbitrary()?
            } else {
                0
            },
        })
    }
}

impl<'a> Arbitrary<'a> for Beacon {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Beacon {
            directory: u.arbitrary()?,
            as_of: u.arbitrary()?,
            services: u.arbitrary()?,
            publishing: u.arbitrary()?,
            digest: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for PageHeader {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(PageHeader {
            request: u.arbitrary()?,
            as_of: u.arbitrary()?,
            after: u.arbitrary()?,
            complete: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for AnnounceHeader {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(AnnounceHeader {
            directory: u.arbitrary()?,
            as_of: u.arbitrary()?,
            previous: u.arbitrary()?,
        })
    }
}

impl<'a> Arbitrary<'a> for Change {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        if u.arbitrary()? {
            Ok(Change::Registered(u.arbitrary()?))
        } else {
            Ok(Change::Unregistered {
                name: u.arbitrary()?,
                version: u.arbitrary()?,
            })
        }
    }
}
