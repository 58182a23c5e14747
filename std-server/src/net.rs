//! The UDP sockets: the directory's request socket (which also sends to the group), a
//! client's request socket and a listener on the multicast group.
//!
//! Multicast is always sent out of the configured interface (loopback by default), with
//! the configured TTL (1 by default: it never leaves the link) and loopback delivery on,
//! so that listeners on the same host hear it.

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use tokio::net::UdpSocket;

/// Receive buffer asked of the kernel for sockets that take bursts (it may grant less).
const RECV_BUFFER: usize = 4 << 20;

/// The interface multicast goes out of and is joined on: an IPv4 address of the
/// interface, or (for an IPv6 group) an interface index.
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
        s.parse::<u32>().map(Interface::Index).map_err(|_| {
            format!("interface {s:?} is neither an IPv4 address nor an interface index")
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
    socket.bind(&group.into())?;
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
        assert!("eth0".parse::<Interface>().is_err());
        assert_eq!(Interface::Index(3).to_string(), "3");
    }

    #[tokio::test]
    async fn mismatched_family_is_refused() {
        let group: SocketAddr = "[ff02::1:3]:37371".parse().unwrap();
        let err = group_listener(group, Interface::default()).unwrap_err();
        assert!(err.to_string().contains("interface index"), "{err}");
    }
}
