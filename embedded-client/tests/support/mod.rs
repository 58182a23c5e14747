//! What the loopback tests share: one smoltcp interface on the in-memory loopback
//! device, and herald-core directories on their own sockets of it.

#![allow(dead_code)]

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use herald_core::{Directory, DirectoryEvent, Record};
use herald_embedded::{Location, Registration, ServiceName};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

/// The address everything in these tests uses.
pub const HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// The loopback device and an interface on it holding [`HOST`].
pub fn loopback(seed: u64) -> (Loopback, Interface) {
    let mut device = Loopback::new(Medium::Ethernet);
    let mut config = IfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs.push(IpCidr::new(IpAddress::Ipv4(HOST), 8)).unwrap();
    });
    (device, iface)
}

/// A location on [`HOST`].
pub fn local(port: u16) -> Location {
    Location::new(IpAddr::V4(HOST), port).unwrap()
}

/// The service the tests register: `sensor` at port 9000.
pub fn sensor() -> (ServiceName, Location, Registration) {
    let name = ServiceName::new("sensor").unwrap();
    let here = local(9000);
    let registration = Registration::new(name.clone(), &[here]).unwrap();
    (name, here, registration)
}

/// Buffers of one directory's UDP socket.
pub struct SocketBuffers {
    rx_meta: [udp::PacketMetadata; 16],
    rx: [u8; 8192],
    tx_meta: [udp::PacketMetadata; 16],
    tx: [u8; 8192],
}

impl SocketBuffers {
    /// Empty buffers.
    pub fn new() -> Self {
        SocketBuffers {
            rx_meta: [udp::PacketMetadata::EMPTY; 16],
            rx: [0; 8192],
            tx_meta: [udp::PacketMetadata::EMPTY; 16],
            tx: [0; 8192],
        }
    }

    /// A socket over these buffers, bound to `port`.
    pub fn socket(&mut self, port: u16) -> udp::Socket<'_> {
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut self.rx_meta[..], &mut self.rx[..]),
            udp::PacketBuffer::new(&mut self.tx_meta[..], &mut self.tx[..]),
        );
        socket.bind(port).unwrap();
        socket
    }
}

/// A core directory on its own socket; `running: false` stops it (a crash).
pub struct DirectoryNode<'a> {
    pub directory: Directory<'a>,
    pub handle: SocketHandle,
    pub running: bool,
}

impl<'a> DirectoryNode<'a> {
    /// `directory` on a socket bound to `port` in `sockets`.
    pub fn new(
        directory: Directory<'a>,
        port: u16,
        buffers: &'a mut SocketBuffers,
        sockets: &mut SocketSet<'a>,
    ) -> Self {
        DirectoryNode {
            directory,
            handle: sockets.add(buffers.socket(port)),
            running: true,
        }
    }

    /// One wake-up in the core's poll order; returns what it stored (for a shared
    /// store).
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> Vec<Record> {
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.handle);
        if !self.running {
            while socket.recv().is_ok() {}
            return Vec::new();
        }
        let now = herald_embedded::time::from_smoltcp(now);
        while let Ok((bytes, meta)) = socket.recv() {
            self.directory
                .handle_datagram(now, meta.endpoint.into(), bytes);
        }
        if self.directory.poll_timeout().is_some_and(|t| t <= now) {
            self.directory.handle_timeout(now);
        }
        let mut stored = Vec::new();
        while let Some(event) = self.directory.poll_event() {
            if let DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r) = event {
                stored.push(r.clone());
            }
        }
        let mut buf = [0u8; 1400];
        while let Some(t) = self.directory.poll_transmit(now, &mut buf) {
            let SocketAddr::V4(to) = t.destination else {
                panic!("IPv6 destination")
            };
            socket
                .send_slice(&buf[..t.len], IpEndpoint::from(to))
                .unwrap();
        }
        stored
    }
}
