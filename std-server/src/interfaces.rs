//! Interfaces by name or index, and the scope ids of link-local IPv6 addresses.
//!
//! A link-local IPv6 address (`fe80::/10`) exists on every link at once: only its scope
//! id, the interface of this host that reaches it, says which one is meant. So every
//! `IP:PORT` the command line and the config file take (directories, `--bind`,
//! `--advertise`, locations) is read by [`socket_addr`]: a link-local address needs a
//! scope id (`[fe80::1%2]:80` or `[fe80::1%eth0]:80`), the scope id must name an
//! interface of this host, and other addresses take none.

use serde::{Deserialize, Deserializer};
use std::net::{SocketAddr, SocketAddrV6};

/// The index of the interface of this host (in this network namespace) that `pick`
/// accepts, given its index and name.
fn find(pick: impl Fn(u32, &[u8]) -> bool) -> Option<u32> {
    let list = nix::net::if_::if_nameindex().ok()?;
    list.iter()
        .find(|i| pick(i.index(), i.name().to_bytes()))
        .map(|i| i.index())
}

/// True when interface `index` exists on this host.
pub fn exists(index: u32) -> bool {
    index != 0 && find(|i, _| i == index).is_some()
}

/// The index of the interface `text` names: its index (checked) or its name.
pub fn index(text: &str) -> Result<u32, String> {
    let found = match text.parse::<u32>() {
        Ok(index) => find(|i, _| i == index),
        Err(_) => find(|_, name| name == text.as_bytes()),
    };
    found
        .filter(|&i| i != 0)
        .ok_or_else(|| format!("{text:?} names no interface of this host (see `ip link`)"))
}

/// Checks the scope id of `addr`: a link-local IPv6 address needs one that names an
/// interface of this host; any other address takes none.
pub fn check_scope(addr: SocketAddr) -> Result<SocketAddr, String> {
    let SocketAddr::V6(a) = addr else {
        return Ok(addr);
    };
    let (ip, scope) = (a.ip(), a.scope_id());
    match (ip.is_unicast_link_local(), scope) {
        (true, 0) => Err(format!(
            "the link-local address {ip} needs a scope id, the interface that reaches it: \
             e.g. [{ip}%eth0]:{} or [{ip}%2]:{}",
            a.port(),
            a.port()
        )),
        (true, _) if !exists(scope) => Err(format!(
            "scope id {scope} of {addr} names no interface of this host (see `ip link`)"
        )),
        (false, s) if s != 0 => Err(format!(
            "{addr}: a scope id belongs only to a link-local address (fe80::/10)"
        )),
        _ => Ok(addr),
    }
}

/// Reads `IP:PORT`, `[IPv6]:PORT` or `[IPv6%SCOPE]:PORT` (SCOPE an interface index or
/// name), with the scope checked as [`check_scope`] does.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let scoped = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(inside, port)| inside.split_once('%').map(|(ip, zone)| (ip, zone, port)));
    let addr = match scoped {
        Some((ip, zone, port)) => {
            let ip = ip.parse().map_err(|e| format!("{text:?}: {e}"))?;
            let port = port
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("{text:?}: expected [IPv6%SCOPE]:PORT"))?;
            let scope = index(zone).map_err(|e| format!("scope id of {text}: {e}"))?;
            SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))
        }
        None => text
            .parse()
            .map_err(|e| format!("{text:?} is not IP:PORT ({e})"))?,
    };
    check_scope(addr)
}

/// Deserializes an optional `IP:PORT` of the config file with [`socket_addr`].
pub fn optional_socket_addr<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| socket_addr(&s).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_by_name_and_index() {
        let lo = index("lo").expect("every Linux host has lo");
        assert_eq!(index(&lo.to_string()), Ok(lo));
        assert!(index("0").is_err());
        assert!(index("no-such-if")
            .unwrap_err()
            .contains("names no interface"));
    }

    #[test]
    fn link_local_addresses_need_a_scope_that_exists() {
        let lo = index("lo").unwrap();
        assert_eq!(
            socket_addr("[fe80::1%lo]:80"),
            Ok(SocketAddr::V6(SocketAddrV6::new(
                "fe80::1".parse().unwrap(),
                80,
                0,
                lo
            )))
        );
        assert_eq!(
            socket_addr(&format!("[fe80::1%{lo}]:80")),
            socket_addr("[fe80::1%lo]:80")
        );
        let err = |text: &str| socket_addr(text).unwrap_err();
        assert!(err("[fe80::1]:80").contains("needs a scope id"));
        assert!(err("[fe80::1%4000000]:80").contains("names no interface"));
        assert!(err("[fe80::1%no-such-if]:80").contains("names no interface"));
        assert!(err("[fd00::1%lo]:80").contains("only to a link-local"));
        assert!(err("[fe80::1%lo]").contains("expected"));
        assert!(err("fe80::1:80").contains("is not IP:PORT"));
        assert_eq!(socket_addr("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            socket_addr("10.0.0.1:80"),
            Ok("10.0.0.1:80".parse().unwrap())
        );
    }
}
