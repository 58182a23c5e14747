//! The reversible mapping between registry names and DNS labels.
//!
//! A registry name `SERVICE/INSTANCE` (the instance is everything after the first `/`)
//! is the DNS name `INSTANCE.SERVICE.DOMAIN`; a name without `/` is `SERVICE.DOMAIN`.
//! Each part becomes one label. A part that is already a plain DNS label (1 to 63 of
//! `a-z`, `0-9` and `-`, neither first nor last a `-`, not beginning with `x-`) is its
//! own label: `billing`, `host-1`. Any other part is written `x-` followed by its UTF-8
//! bytes, `a-z` and `0-9` as themselves and every other byte as `-` and its two
//! lowercase hex digits: `billing.eu` → `x-billing-2eeu`, `Billing` → `x--42illing`,
//! `x-ray` → `x-x-2dray`. The labels use letters, digits and `-` only, so every
//! resolver takes them, and decoding reverses the rule exactly (each part has one
//! spelling; DNS matches names without regard to case, so a query's capitals are read
//! as small letters). A part that is empty, or whose label would be longer than 63
//! bytes, has no DNS name.
//!
//! A location's host is `A-B-C-D._addr.DOMAIN` for IPv4 `A.B.C.D`, and the eight
//! hexadecimal groups joined by `-` for IPv6 (`0-0-0-0-0-0-0-1._addr.DOMAIN` is `::1`);
//! its `A` or `AAAA` record is read from the name itself.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest DNS label.
pub const MAX_LABEL: usize = 63;
/// The label under which location hosts live.
pub const ADDR_LABEL: &[u8] = b"_addr";

/// The prefix of an escaped label.
const ESCAPED: &str = "x-";

/// True for a part that is its own label.
fn plain(part: &[u8]) -> bool {
    !part.is_empty()
        && part.len() <= MAX_LABEL
        && part
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && part.first() != Some(&b'-')
        && part.last() != Some(&b'-')
        && !part.starts_with(ESCAPED.as_bytes())
}

/// The label of one part of a registry name, or `None` when it has none (empty or too
/// long).
pub fn encode(part: &str) -> Option<String> {
    if plain(part.as_bytes()) {
        return Some(part.to_owned());
    }
    let mut label = String::from(ESCAPED);
    for b in part.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            label.push(char::from(b));
        } else {
            let _ = write!(label, "-{b:02x}");
        }
    }
    (!part.is_empty() && label.len() <= MAX_LABEL).then_some(label)
}

/// The registry text a label stands for (read without regard to case), or `None` when
/// it is not a label [`encode`] makes.
pub fn decode(label: &[u8]) -> Option<String> {
    let label = label.to_ascii_lowercase();
    let Some(escaped) = label.strip_prefix(ESCAPED.as_bytes()) else {
        return plain(&label).then(|| String::from_utf8(label).ok())?;
    };
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut i = 0;
    while i < escaped.len() {
        let b = escaped[i];
        if b == b'-' {
            let hex = std::str::from_utf8(escaped.get(i + 1..i + 3)?).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            // Only bytes that encode() escapes: anything else has one spelling.
            if byte.is_ascii_lowercase() || byte.is_ascii_digit() {
                return None;
            }
            bytes.push(byte);
            i += 3;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() {
            bytes.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    if bytes.is_empty() || plain(&bytes) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// A registry name's service and instance parts (`billing/eu-1` → `billing`, `eu-1`).
pub fn split(name: &str) -> (&str, Option<&str>) {
    match name.split_once('/') {
        Some((service, instance)) => (service, Some(instance)),
        None => (name, None),
    }
}

/// The host label of an address.
pub fn host_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}-{}-{}-{}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(v6) => {
            let groups: Vec<String> = v6.segments().iter().map(|g| format!("{g:x}")).collect();
            groups.join("-")
        }
    }
}

/// The address a host label stands for.
pub fn parse_host(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?;
    let parts: Vec<&str> = text.split('-').collect();
    match parts.len() {
        4 => {
            let mut o = [0u8; 4];
            for (slot, p) in o.iter_mut().zip(&parts) {
                if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
                    return None;
                }
                *slot = p.parse().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        8 => {
            let mut g = [0u16; 8];
            for (slot, p) in g.iter_mut().zip(&parts) {
                if p.is_empty() || p.len() > 4 {
                    return None;
                }
                *slot = u16::from_str_radix(p, 16).ok()?;
            }
            Some(IpAddr::V6(Ipv6Addr::from(g)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_have_one_spelling() {
        for name in [
            "billing",
            "billing.eu-1",
            "Billing",
            "my service",
            "ünï",
            "a_b",
            "x/y",
        ] {
            let label = encode(name).unwrap();
            assert!(label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
            assert_eq!(decode(label.as_bytes()).as_deref(), Some(name), "{label}");
            assert_eq!(
                decode(label.to_uppercase().as_bytes()).as_deref(),
                Some(name)
            );
        }
        assert_eq!(encode("host-1").unwrap(), "host-1");
        assert_eq!(encode("billing.eu").unwrap(), "x-billing-2eeu");
        assert_eq!(encode("Billing").unwrap(), "x--42illing");
        assert_eq!(encode("x-ray").unwrap(), "x-x-2dray");
        assert_eq!(decode(b"x--61"), None, "`a` has one spelling");
        assert_eq!(decode(b"x-abc"), None, "`abc` has one spelling");
        assert_eq!(decode(b"x--4"), None);
        assert_eq!(decode(b"a_b"), None);
        assert_eq!(decode(b"-a"), None);
        assert_eq!(encode(""), None);
        assert_eq!(encode(&"Z".repeat(22)), None, "66 bytes do not fit a label");
    }

    #[test]
    fn hosts_round_trip() {
        for ip in ["127.0.0.1", "10.20.30.40", "::1", "2001:db8::5:6"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_host(host_label(ip).as_bytes()), Some(ip));
        }
        assert_eq!(host_label("::1".parse().unwrap()), "0-0-0-0-0-0-0-1");
        assert_eq!(parse_host(b"127-0-0-01"), None);
        assert_eq!(parse_host(b"1-2-3"), None);
    }
}
