//! The bare smoltcp driver with two herald-core directories that share their registry
//! (a publisher and a replica, as `herald serve` runs them on etcd), all on smoltcp's
//! in-memory loopback device. The client is configured with no directory: it learns
//! both from their beacons, follows the publisher, and when the publisher stops and the
//! replica takes over publishing, it moves there without reporting its service gone.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use herald_core::{Directory, DirectoryConfig, DirectoryEvent, DirectoryStorage, Record};
use herald_embedded::{
    bare, Buffers, ClientEvent, Config, Interest, Location, Registration, ServiceName,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint};

const HOST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A core directory on its own socket; `running: false` stops it (a crash).
struct DirectoryNode<'a> {
    directory: Directory<'a>,
    handle: SocketHandle,
    running: bool,
}

impl DirectoryNode<'_> {
    /// One wake-up; returns what it stored, for the shared store.
    fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'_>) -> Vec<Record> {
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

fn directory_socket<'s>(
    port: u16,
    rx_meta: &'s mut [udp::PacketMetadata],
    rx: &'s mut [u8],
    tx_meta: &'s mut [udp::PacketMetadata],
    tx: &'s mut [u8],
) -> udp::Socket<'s> {
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(rx_meta, rx),
        udp::PacketBuffer::new(tx_meta, tx),
    );
    socket.bind(port).unwrap();
    socket
}

#[test]
fn learns_both_directories_and_follows_the_publisher_through_a_takeover() {
    let mut device = Loopback::new(Medium::Ethernet);
    let mut iface_config = IfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into());
    iface_config.random_seed = 11;
    let mut iface = Interface::new(iface_config, &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs.push(IpCidr::new(IpAddress::Ipv4(HOST), 8)).unwrap();
    });
    let mut socket_storage: [SocketStorage<'_>; 3] = Default::default();
    let mut sockets = SocketSet::new(&mut socket_storage[..]);

    let (mut m1, mut m2, mut m3, mut m4) = (
        [udp::PacketMetadata::EMPTY; 16],
        [udp::PacketMetadata::EMPTY; 16],
        [udp::PacketMetadata::EMPTY; 16],
        [udp::PacketMetadata::EMPTY; 16],
    );
    let (mut b1, mut b2, mut b3, mut b4) = ([0u8; 8192], [0u8; 8192], [0u8; 8192], [0u8; 8192]);
    let first = Location::new(IpAddr::V4(HOST), 37399).unwrap();
    let second = Location::new(IpAddr::V4(HOST), 37400).unwrap();
    let mut storage_a = DirectoryStorage::<8>::new();
    let mut storage_b = DirectoryStorage::<8>::new();
    let (slots_a, index_a) = storage_a.parts();
    let (slots_b, index_b) = storage_b.parts();
    let group = herald_embedded::DEFAULT_GROUP;
    let mut nodes = [
        DirectoryNode {
            directory: Directory::new(DirectoryConfig::new(first, group), slots_a, index_a)
                .unwrap(),
            handle: sockets.add(directory_socket(37399, &mut m1, &mut b1, &mut m2, &mut b2)),
            running: true,
        },
        DirectoryNode {
            directory: Directory::new(DirectoryConfig::new(second, group), slots_b, index_b)
                .unwrap(),
            handle: sockets.add(directory_socket(37400, &mut m3, &mut b3, &mut m4, &mut b4)),
            running: true,
        },
    ];
    nodes[1]
        .directory
        .set_publishing(herald_core::Instant::ZERO, false);

    // No directory configured: both are learned from their beacons.
    let mut config = Config::new(0xfeed);
    config.client.interest = Some(Interest::all());
    let mut buffers: Buffers<8> = Buffers::new();
    let mut herald =
        bare::Herald::<2>::new(config, &mut buffers, &mut iface, &mut sockets).unwrap();
    let name = ServiceName::new("sensor").unwrap();
    let here = Location::new(IpAddr::V4(HOST), 9000).unwrap();
    herald
        .register(
            Instant::ZERO,
            Registration::new(name.clone(), &[here]).unwrap(),
        )
        .unwrap();

    let mut now = Instant::ZERO;
    let mut seen = Vec::new();
    let mut stopped_at = None;
    let mut promoted = false;
    // 30 simulated seconds at most, in 5 ms steps.
    for _ in 0..6000 {
        iface.poll(now, &mut device, &mut sockets);
        let mut stored = Vec::new();
        for node in &mut nodes {
            stored.extend(node.poll(now, &mut sockets));
        }
        // The shared store: every change reaches every running directory.
        let core_now = herald_embedded::time::from_smoltcp(now);
        for record in stored {
            for node in nodes.iter_mut().filter(|n| n.running) {
                node.directory.apply(core_now, record.clone()).unwrap();
            }
        }
        iface.poll(now, &mut device, &mut sockets);
        herald.poll(now, &mut sockets);
        while let Some(event) = herald.poll_event() {
            seen.push(event);
        }
        let known = herald.client().directories().count();
        let discovered = seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Discovered(s) if s.name() == &name));
        if stopped_at.is_none() && discovered && known == 2 {
            assert_eq!(herald.client().current_directory(), Some(first));
            assert!(nodes[1]
                .directory
                .record("sensor")
                .is_some_and(Record::is_live));
            nodes[0].running = false;
            stopped_at = Some(now);
        }
        // An election takes a second.
        if let Some(t) = stopped_at {
            if !promoted && now - t >= Duration::from_secs(1) {
                nodes[1].directory.set_publishing(core_now, true);
                promoted = true;
            }
            if now - t >= Duration::from_secs(12) {
                break;
            }
        }
        now += Duration::from_millis(5);
    }
    assert!(
        stopped_at.is_some(),
        "never learned both directories: {seen:?}"
    );
    assert_eq!(herald.client().current_directory(), Some(second));
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Unregistered(_))),
        "spurious unregistered: {seen:?}"
    );
    // The registration lives on, renewed through the second directory.
    let record = nodes[1].directory.record("sensor").unwrap();
    assert!(record.is_live());
    assert!(nodes[1].directory.stats().renewals > 0);
    assert!(herald.client().service("sensor").is_some());
}
