//! Unique loopback ports and multicast groups, so that tests running in parallel (in
//! one process or several) never hear each other.

use std::collections::HashSet;
use std::net::{
    Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static GROUPS: AtomicU32 = AtomicU32::new(0);

/// A UDP port that was free a moment ago (the kernel chose it) and that this process
/// has not handed out before.
pub fn free_udp_port() -> u16 {
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local address").port();
        if seen.insert(port) {
            return port;
        }
    }
    panic!("no free UDP port after 1000 tries");
}

/// A TCP port of 127.0.0.1 that was free a moment ago (the kernel chose it) and that
/// this process has not handed out before (as a UDP or a TCP port).
pub fn free_tcp_port() -> u16 {
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        if seen.insert(port) {
            return port;
        }
    }
    panic!("no free TCP port after 1000 tries");
}

/// A loopback address with a fresh port.
pub fn loopback_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_udp_port()))
}

/// A multicast group of the administratively scoped range 239.255.0.0/16, unique to
/// this process and call, with a fresh port.
pub fn unique_group() -> SocketAddr {
    let n = GROUPS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ip = Ipv4Addr::new(239, 255, (pid % 251) as u8, (n % 250 + 1) as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, free_udp_port()))
}

/// An IPv6 multicast group of site-local scope (ff15::/16), unique to this process and
/// call, with a fresh port: for the hosts of [`veth6`](super::veth6).
pub fn unique_group_v6() -> SocketAddr {
    let n = GROUPS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let ip = Ipv6Addr::new(
        0xff15,
        0,
        0,
        0,
        0,
        0x3737,
        (pid & 0xffff) as u16,
        n as u16 + 1,
    );
    SocketAddr::V6(SocketAddrV6::new(ip, free_udp_port(), 0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..50).map(|_| free_udp_port()).collect();
        assert_eq!(ports.len(), 50);
        let both: HashSet<u16> = (0..20)
            .map(|_| free_udp_port())
            .chain((0..20).map(|_| free_tcp_port()))
            .collect();
        assert_eq!(both.len(), 40);
    }

    #[test]
    fn groups_are_multicast_and_distinct() {
        let (a, b) = (unique_group(), unique_group());
        assert!(a.ip().is_multicast() && b.ip().is_multicast());
        assert_ne!(a, b);
        let (c, d) = (unique_group_v6(), unique_group_v6());
        assert!(c.is_ipv6() && c.ip().is_multicast() && d.ip().is_multicast());
        assert_ne!(c, d);
    }
}
