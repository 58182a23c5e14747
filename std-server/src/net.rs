//! The UDP sockets: the directory's request socket (which also sends to the group), a
//! client's request socket and a listener on the multicast group.
//!
//! Multicast is always sent out of the configured interface (loopback by default), with
//! the configured TTL (1 by default: it never leaves the link) and loopback delivery on,
//! so that listeners on the same host hear it.

use herald_core::Location;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::str::FromStr;
use tokio::net::UdpSocket;

/// Receive buffer asked of the kernel for sockets that take bursts (it may grant less).
const RECV_BUFFER: usize = 4 << 20;

/// The interface multicast goes out of and is joined on: an IPv4 address of the
/// interface, or (for an IPv6 group) an interface index (given as an index or a name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Interface {
    /// The interface with this IPv4 address (default `127.0.0.1`, loopback).
    V4(Ipv4Addr),
    /// The interface with this index (IPv6 groups; see `ip link`).
    Index(u32),
}

impl Default for Interface {
    fn default() -> Self {
        Interface::V4(Ipv4Addr::LOCALHOST)
    }
}

impl FromStr for Interface {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(Interface::V4(ip));
        }
        if let Ok(index) = s.parse::<u32>() {
            // Whether it exists is checked with the group (`check_multicast`).
            return Ok(Interface::Index(index));
        }
        crate::interfaces::index(s)
            .map(Interface::Index)
            .map_err(|_| {
                format!(
                    "interface {s:?} is not an IPv4 address, an interface index, or the name of \
                 an interface of this host: it names no interface (see `ip link`)"
                )
            })
    }
}

impl TryFrom<String> for Interface {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Interface> for String {
    fn from(i: Interface) -> String {
        i.to_string()
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interface::V4(ip) => ip.fmt(f),
            Interface::Index(i) => i.fmt(f),
        }
    }
}

fn mismatch(group: SocketAddr, interface: Interface) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "group {group} needs {} as interface, not {interface}",
            if group.is_ipv4() {
                "an IPv4 address"
            } else {
                "an interface index"
            }
        ),
    )
}

/// The zone where a host places the link-local locations it hears, which carry none on
/// the wire: the interface of an IPv6 `group`, else the zone of `directory` (the one a
/// client follows, or a directory's own address), else 0 (none).
pub fn link_zone(group: SocketAddr, interface: Interface, directory: Option<Location>) -> u32 {
    match (group, interface) {
        (SocketAddr::V6(_), Interface::Index(i)) if i != 0 => i,
        _ => directory.map_or(0, |d| d.zone()),
    }
}

/// True for an IPv6 group of interface-local or link-local scope (`ff01::/16`,
/// `ff02::/16`, …): it exists on one link, so it needs the interface to use.
fn is_link_scoped(group: SocketAddr) -> bool {
    matches!(group, SocketAddr::V6(g) if g.ip().segments()[0] & 0x000f <= 2)
}

/// Checks that `interface` can carry `group`: the right kind for the group's family,
/// an IPv4 address this host has, an interface index that exists (0, the kernel's
/// choice by route, only for groups wider than a link).
pub fn check_multicast(group: SocketAddr, interface: Interface) -> Result<(), String> {
    match (group, interface) {
        (SocketAddr::V4(_), Interface::V4(ip)) => match std::net::UdpSocket::bind((ip, 0)) {
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Err(format!(
                "{ip} is not an address of this host: give the IPv4 address of the \
                 interface multicast should go out of"
            )),
            _ => Ok(()),
        },
        (SocketAddr::V6(_), Interface::Index(0)) if is_link_scoped(group) => Err(format!(
            "the link-local group {group} exists on one link only: give the interface \
             (--interface INDEX or NAME, see `ip link`)"
        )),
        (SocketAddr::V6(_), Interface::Index(0)) => Ok(()),
        (SocketAddr::V6(_), Interface::Index(i)) if !crate::interfaces::exists(i) => Err(format!(
            "interface index {i} names no interface of this host (see `ip link`)"
        )),
        (SocketAddr::V6(_), Interface::Index(_)) => Ok(()),
        (SocketAddr::V4(_), Interface::Index(i)) => Err(format!(
            "the IPv4 group {group} needs an IPv4 address as interface, not index {i}"
        )),
        (SocketAddr::V6(_), Interface::V4(ip)) => Err(format!(
            "the IPv6 group {group} needs an interface index or name (--interface, see \
             `ip link`), not {ip}"
        )),
    }
}

fn udp(family: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(family),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_nonblocking(true)?;
    if let SocketAddr::V6(_) = family {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

fn into_tokio(socket: Socket) -> io::Result<UdpSocket> {
    UdpSocket::from_std(socket.into())
}

/// Sets where multicast sent on `socket` goes: out of `interface`, `ttl` hops, looped
/// back to this host.
fn send_multicast_from(
    socket: &Socket,
    group: SocketAddr,
    interface: Interface,
    ttl: u32,
) -> io::Result<()> {
    match (group, interface) {
        (SocketAddr::V4(_), Interface::V4(ip)) => {
            socket.set_multicast_if_v4(&ip)?;
            socket.set_multicast_ttl_v4(ttl)?;
            socket.set_multicast_loop_v4(true)
        }
        (SocketAddr::V6(_), Interface::Index(index)) => {
            socket.set_multicast_if_v6(index)?;
            socket.set_multicast_hops_v6(ttl)?;
            socket.set_multicast_loop_v6(true)
        }
        _ => Err(mismatch(group, interface)),
    }
}

/// The directory's socket: bound to `bind`, taking requests and sending replies and
/// multicast announcements (so that every datagram the directory sends comes from its
/// advertised address).
pub fn directory_socket(
    bind: SocketAddr,
    group: SocketAddr,
    interface: Interface,
    ttl: u32,
) -> io::Result<UdpSocket> {
    let socket = udp(bind)?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    socket.bind(&bind.into())?;
    send_multicast_from(&socket, group, interface, ttl)?;
    into_tokio(socket)
}

/// A client's socket for requests to `directory` (an ephemeral port on the wildcard
/// address of the same family; the kernel picks the source address per destination).
pub fn request_socket(directory: SocketAddr) -> io::Result<UdpSocket> {
    let any = match directory {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let bind = SocketAddr::new(any, 0);
    let socket = udp(bind)?;
    socket.bind(&bind.into())?;
    into_tokio(socket)
}

/// A client's socket for requests to `directories` and to directories it learns from
/// beacons on `group`: IPv4 when all of these are IPv4, else IPv6 that also reaches
/// IPv4 addresses (so that a list of both families, or an IPv6 directory found on an
/// IPv6 group, can be reached). Give what it receives to [`unmapped`] and what it
/// sends to [`mapped_for`].
pub fn client_socket(group: SocketAddr, directories: &[SocketAddr]) -> io::Result<UdpSocket> {
    if group.is_ipv4() && directories.iter().all(SocketAddr::is_ipv4) {
        return request_socket(group);
    }
    let bind = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0);
    let socket = udp(bind)?;
    socket.set_only_v6(false)?;
    socket.bind(&bind.into())?;
    into_tokio(socket)
}

/// `addr` as a socket bound to `local` sends to it: an IPv4 address as IPv4-mapped
/// IPv6 on an IPv6 socket.
pub fn mapped_for(local: SocketAddr, addr: SocketAddr) -> SocketAddr {
    match (local, addr) {
        (SocketAddr::V6(_), SocketAddr::V4(a)) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        _ => addr,
    }
}

/// A source address as received: an IPv4-mapped IPv6 address (from an IPv6 socket
/// that also reaches IPv4) as the IPv4 address it is.
pub fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(ip) => SocketAddr::new(IpAddr::V4(ip), a.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// A listener on `group`, joined on `interface`. Several listeners on one host share
/// the port; each hears only this group.
pub fn group_listener(group: SocketAddr, interface: Interface) -> io::Result<UdpSocket> {
    if group.is_ipv4() != matches!(interface, Interface::V4(_)) {
        return Err(mismatch(group, interface));
    }
    let socket = udp(group)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    // A link-local group is bound on its link: the kernel refuses it without one.
    let bind = match (group, interface) {
        (SocketAddr::V6(g), Interface::Index(index)) if is_link_scoped(group) => {
            SocketAddr::V6(SocketAddrV6::new(*g.ip(), g.port(), 0, index))
        }
        _ => group,
    };
    socket.bind(&bind.into())?;
    match (group.ip(), interface) {
        (IpAddr::V4(ip), Interface::V4(iface)) => {
            socket.join_multicast_v4(&ip, &iface)?;
            socket.set_multicast_all_v4(false)?;
        }
        (IpAddr::V6(ip), Interface::Index(index)) => {
            socket.join_multicast_v6(&ip, index)?;
            socket.set_multicast_all_v6(false)?;
        }
        _ => return Err(mismatch(group, interface)),
    }
    into_tokio(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_forms() {
        assert_eq!(
            "127.0.0.1".parse::<Interface>(),
            Ok(Interface::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!("3".parse::<Interface>(), Ok(Interface::Index(3)));
        let lo = crate::interfaces::index("lo").unwrap();
        assert_eq!("lo".parse::<Interface>(), Ok(Interface::Index(lo)));
        let err = "no-such-if".parse::<Interface>().unwrap_err();
        assert!(err.contains("names no interface"), "{err}");
        assert_eq!(Interface::Index(3).to_string(), "3");
    }

    #[test]
    fn multicast_interfaces_that_cannot_work_are_refused() {
        let site: SocketAddr = "[ff15::3737]:37371".parse().unwrap();
        let link: SocketAddr = "[ff02::3737]:37371".parse().unwrap();
        let lo = crate::interfaces::index("lo").unwrap();
        assert_eq!(check_multicast(site, Interface::Index(lo)), Ok(()));
        assert_eq!(check_multicast(link, Interface::Index(lo)), Ok(()));
        assert_eq!(check_multicast(site, Interface::Index(0)), Ok(()));
        let err = |g, i| check_multicast(g, i).unwrap_err();
        assert!(err(link, Interface::Index(0)).contains("link-local group"));
        assert!(err(site, Interface::Index(4_000_000)).contains("names no interface"));
        assert!(err(site, Interface::default()).contains("interface index or name"));
        let v4: SocketAddr = "237.37.37.1:37371".parse().unwrap();
        assert!(err(v4, Interface::Index(lo)).contains("IPv4 address"));
        assert_eq!(check_multicast(v4, Interface::default()), Ok(()));
    }

    #[test]
    fn link_local_locations_go_to_the_groups_interface_else_the_directorys_zone() {
        let site: SocketAddr = "[ff15::3737]:37371".parse().unwrap();
        let v4: SocketAddr = "237.37.37.1:37371".parse().unwrap();
        let at = |text: &str| Location::from_socket_addr(text.parse().unwrap()).ok();
        let directory = at("[fe80::a%7]:37399");
        assert_eq!(link_zone(site, Interface::Index(3), directory), 3);
        assert_eq!(link_zone(site, Interface::Index(0), directory), 7);
        assert_eq!(link_zone(v4, Interface::default(), directory), 7);
        assert_eq!(
            link_zone(v4, Interface::default(), at("[fd00::a]:37399")),
            0
        );
        assert_eq!(link_zone(v4, Interface::default(), None), 0);
    }

    #[tokio::test]
    async fn one_client_socket_reaches_both_families() {
        let v4: SocketAddr = "237.37.37.1:37371".parse().unwrap();
        let v6: SocketAddr = "[ff15::3737]:37371".parse().unwrap();
        let only_v4 = client_socket(v4, &["127.0.0.1:1".parse().unwrap()]).unwrap();
        assert!(only_v4.local_addr().unwrap().is_ipv4());
        let both = client_socket(v6, &["127.0.0.1:1".parse().unwrap()]).unwrap();
        let local = both.local_addr().unwrap();
        assert!(local.is_ipv6());
        // An IPv4 directory answers the IPv6 socket: sent mapped, heard unmapped.
        let directory = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = directory.local_addr().unwrap();
        both.send_to(b"ping", mapped_for(local, at)).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = directory.recv_from(&mut buf).unwrap();
        directory.send_to(&buf[..n], from).unwrap();
        let (_, heard) = both.recv_from(&mut buf).await.unwrap();
        assert_eq!(unmapped(heard), at);
        assert_eq!(mapped_for(at, at), at);
    }

    #[tokio::test]
    async fn a_link_local_group_is_joined_on_its_link() {
        // Loopback carries no IPv6 multicast out of the host: nothing is sent here.
        let lo = crate::interfaces::index("lo").unwrap();
        let group: SocketAddr = "[ff02::3737]:0".parse().unwrap();
        let listener = group_listener(group, Interface::Index(lo)).expect("joined");
        let SocketAddr::V6(bound) = listener.local_addr().unwrap() else {
            panic!("not IPv6")
        };
        assert_eq!(bound.scope_id(), lo);
    }

    #[tokio::test]
    async fn mismatched_family_is_refused() {
        let group: SocketAddr = "[ff02::1:3]:37371".parse().unwrap();
        let err = group_listener(group, Interface::default()).unwrap_err();
        assert!(err.to_string().contains("interface index"), "{err}");
    }
}
