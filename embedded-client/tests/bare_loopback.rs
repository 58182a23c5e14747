//! The bare smoltcp driver against a herald-core directory, both on one smoltcp
//! interface over smoltcp's in-memory loopback device: register, discover through the
//! group (or, from a directory that sends nothing to the group, through unicast
//! deliveries to a subscriber), unregister. No traffic leaves the process.

mod support;

use core::net::{IpAddr, SocketAddr};
use herald_core::{Directory, DirectoryConfig, DirectoryStorage, SubscriberStorage};
use herald_embedded::{bare, Buffers, ClientEvent, Config, Interest, Location, Subscribe};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Loopback, Medium};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::EthernetAddress;
use support::{local, loopback, sensor, DirectoryNode, SocketBuffers, HOST};

#[test]
fn registers_discovers_and_unregisters_through_the_group() {
    run(None, false);
}

#[test]
fn a_subscriber_discovers_and_sees_removals_without_multicast() {
    let stats = run(None, true);
    assert!(stats.deliveries > 0, "{stats:?}");
}

#[test]
fn works_the_same_in_an_authenticated_environment() {
    let key = herald_core::auth::Key::new(3, b"embedded loopback test key, 32 b").unwrap();
    let stats = run(Some(herald_core::auth::Keys::new(key)), false);
    assert_eq!(stats.unauthenticated, 0);
    assert_eq!(stats.replayed, 0);
}

/// Registers, discovers and unregisters; returns the directory's counters. With
/// `unicast`, the directory sends nothing to the group and the client subscribes to
/// unicast deliveries instead.
fn run(keys: Option<herald_core::auth::Keys>, unicast: bool) -> herald_core::DirectoryStats {
    let (mut device, mut iface) = loopback(7);
    let mut socket_storage: [SocketStorage<'_>; 2] = Default::default();
    let mut sockets = SocketSet::new(&mut socket_storage[..]);

    // The directory: requests on 37399, announcements to the default group.
    let dir_location = local(37399);
    let mut dir_buffers = SocketBuffers::new();
    let mut dir_storage = DirectoryStorage::<8>::new();
    let (slots, index) = dir_storage.parts();
    let mut dir_config = DirectoryConfig::new(dir_location, herald_embedded::DEFAULT_GROUP);
    dir_config.keys = keys.clone();
    dir_config.multicast = !unicast;
    let mut subscribers = SubscriberStorage::<2>::new();
    let mut directory = DirectoryNode::new(
        Directory::new(dir_config, slots, index)
            .unwrap()
            .with_subscribers(subscribers.slots()),
        37399,
        &mut dir_buffers,
        &mut sockets,
    );

    // The embedded client, listening for everything.
    let mut config = Config::new(0x5eed);
    config.client.directories.push(dir_location).unwrap();
    config.client.interest = Some(Interest::all());
    // No real-time clock here: with a key, request counters follow the directory's.
    config.client.keys = keys;
    if unicast {
        config.client.subscribe = Subscribe::Always;
    }
    let mut buffers: Buffers<8> = Buffers::new();
    let mut herald =
        bare::Herald::<2>::new(config, &mut buffers, &mut iface, &mut sockets).unwrap();
    let (name, here, registration) = sensor();
    herald.register(Instant::ZERO, registration).unwrap();

    let mut now = Instant::ZERO;
    let mut seen = Vec::new();
    let mut unregistered_at = None;
    // 20 simulated seconds at most, in 5 ms steps.
    for _ in 0..4000 {
        iface.poll(now, &mut device, &mut sockets);
        directory.poll(now, &mut sockets);
        iface.poll(now, &mut device, &mut sockets);
        herald.poll(now, &mut sockets);
        while let Some(event) = herald.poll_event() {
            seen.push(event);
        }
        let discovered = seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Discovered(s) if s.name() == &name));
        if discovered && unregistered_at.is_none() {
            assert_eq!(
                herald
                    .client()
                    .service("sensor")
                    .unwrap()
                    .registration
                    .locations[0],
                here
            );
            herald.unregister(now, &name).unwrap();
            unregistered_at = Some(now);
        }
        if seen
            .iter()
            .any(|e| matches!(e, ClientEvent::Unregistered(s) if s.name() == &name))
        {
            break;
        }
        now += Duration::from_millis(5);
    }
    let registered = seen
        .iter()
        .any(|e| matches!(e, ClientEvent::Registered { name: n, .. } if n == &name));
    assert!(registered, "no Registered event: {seen:?}");
    assert!(unregistered_at.is_some(), "never discovered: {seen:?}");
    assert!(
        seen.iter().any(|e| matches!(
            e,
            ClientEvent::Released {
                confirmed: true,
                ..
            }
        )),
        "unregistration not confirmed: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|e| matches!(e, ClientEvent::Unregistered(s) if s.name() == &name)),
        "never saw it go away: {seen:?}"
    );
    assert!(herald.client().service("sensor").is_none());
    // It all happened in well under a second of simulated time.
    assert!(now < Instant::from_secs(1), "took until {now}");
    *directory.directory.stats()
}

#[test]
fn refuses_a_group_that_is_not_multicast() {
    let mut device = Loopback::new(Medium::Ethernet);
    let mut iface = Interface::new(
        IfaceConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]).into()),
        &mut device,
        Instant::ZERO,
    );
    let mut socket_storage: [SocketStorage<'_>; 1] = Default::default();
    let mut sockets = SocketSet::new(&mut socket_storage[..]);
    let dir = Location::new(IpAddr::V4(HOST), 37399).unwrap();
    let mut config = Config::new(1);
    config.client.directories.push(dir).unwrap();
    config.group = SocketAddr::new(IpAddr::V4(HOST), 37371);
    let mut buffers: Buffers<2, 2, 1024> = Buffers::new();
    let result = bare::Herald::<1>::new(config, &mut buffers, &mut iface, &mut sockets);
    assert_eq!(
        result.err(),
        Some(herald_embedded::Error::GroupNotMulticast)
    );

    let mut config = Config::new(1);
    config.client.directories.push(dir).unwrap();
    config.client.max_datagram = 2000;
    let mut buffers: Buffers<2, 2, 1024> = Buffers::new();
    let result = bare::Herald::<1>::new(config, &mut buffers, &mut iface, &mut sockets);
    assert_eq!(result.err(), Some(herald_embedded::Error::DatagramBuffer));
}
