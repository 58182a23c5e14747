//! The reversible mapping between registry names and DNS labels.
//!
//! A registry name `SERVICE/INSTANCE` (the instance is everything after the first `/`)
//! is the DNS name `INSTANCE.SERVICE.DOMAIN`; a name without `/` is `SERVICE.DOMAIN`.
//! Each part becomes one label: the ASCII lowercase letters, the digits and `-` stand
//! for themselves, and every other byte of its UTF-8 (capitals, `.`, `_`, `/`, spaces,
//! non-ASCII) is written `_xx`, its two lowercase hex digits: `billing.eu` →
//! `billing_2eeu`, `Billing` → `_42illing`. Decoding reverses it exactly (DNS matches
//! names without regard to case, so the escapes' hex digits are read in either case).
//! A part whose label would be empty or longer than 63 bytes has no DNS name.
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

/// The label of one part of a registry name, or `None` when it has none (empty or too
/// long).
pub fn encode(part: &str) -> Option<String> {
    let mut label = String::with_capacity(part.len());
    for b in part.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            label.push(char::from(b));
        } else {
            let _ = write!(label, "_{b:02x}");
        }
    }
    (!label.is_empty() && label.len() <= MAX_LABEL).then_some(label)
}

/// The registry text a label stands for, or `None` when it is not a label [`encode`]
/// makes.
pub fn decode(label: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(label.len());
    let mut i = 0;
    while i < label.len() {
        let b = label[i].to_ascii_lowercase();
        if b == b'_' {
            let hex = std::str::from_utf8(label.get(i + 1..i + 3)?).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            // Only bytes that encode() escapes: anything else has one spelling.
            if byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' {
                return None;
            }
            bytes.push(byte);
            i += 3;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            bytes.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
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
        assert_eq!(encode("billing.eu").unwrap(), "billing_2eeu");
        assert_eq!(encode("Billing").unwrap(), "_42illing");
        assert_eq!(decode(b"_61"), None, "`a` has one spelling");
        assert_eq!(decode(b"_4"), None);
        assert_eq!(decode(b"a.b"), None);
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
