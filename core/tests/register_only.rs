//! A register-only build (herald-core without `listen`): the client registers as
//! always, refuses an interest with a clear error, and takes the directory's
//! announcements and pages without discovering anything.
#![cfg(not(feature = "listen"))]

use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn an_interest_is_refused_with_a_clear_error() {
    let mut table = ClientStorage::<0>::new();
    let (known, index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.interest = Some(Interest::all());
    let refused = Client::<'_, 1>::new(config, known, index).err();
    assert_eq!(refused, Some(ClientError::NoDiscovery));
    assert!(ClientError::NoDiscovery.to_string().contains("`listen`"));
}

#[test]
fn registers_and_discovers_nothing_from_announcements_and_pages() {
    let dir_addr = Location::new(IP, 37399).unwrap();
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut directory =
        Directory::new(DirectoryConfig::new(dir_addr, group), slots, index).unwrap();

    let mut table = ClientStorage::<0>::new();
    let (known, known_index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.directories.push(dir_addr).unwrap();
    let mut client: Client<'_, 1> = Client::new(config, known, known_index).unwrap();
    let mut other_table = ClientStorage::<0>::new();
    let (other_known, other_index) = other_table.parts();
    let mut config = ClientConfig::new(8);
    config.directories.push(dir_addr).unwrap();
    let mut other: Client<'_, 1> = Client::new(config, other_known, other_index).unwrap();

    let reg = |name: &str, port: u16| {
        let name = ServiceName::new(name).unwrap();
        Registration::new(name, &[Location::new(IP, port).unwrap()]).unwrap()
    };
    let now = Instant::ZERO;
    client.register(now, reg("billing", 8080)).unwrap();
    other.register(now, reg("ledger", 8081)).unwrap();
    // A snapshot request does nothing in this build.
    client.request_snapshot(now);

    let (me, them) = (SocketAddr::new(IP, 5000), SocketAddr::new(IP, 5001));
    let mut buf = [0u8; 1400];
    let mut events = Vec::new();
    for _ in 0..4 {
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            directory.handle_datagram(now, me, &buf[..t.len]);
        }
        while let Some(t) = other.poll_transmit(now, &mut buf) {
            directory.handle_datagram(now, them, &buf[..t.len]);
        }
        directory.handle_timeout(now);
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            // Replies to their addressee, the group's datagrams (announcements,
            // beacons) to both.
            if t.destination != them {
                client.handle_datagram(now, dir_addr.socket_addr(), &buf[..t.len]);
            }
            if t.destination != me {
                other.handle_datagram(now, dir_addr.socket_addr(), &buf[..t.len]);
            }
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        while other.poll_event().is_some() {}
    }
    assert!(
        events.iter().any(
            |e| matches!(e, ClientEvent::Registered { name, .. } if name.as_str() == "billing")
        ),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| !matches!(
            e,
            ClientEvent::Discovered(_) | ClientEvent::SnapshotComplete { .. }
        )),
        "{events:?}"
    );
    assert_eq!(client.services().count(), 0);
    assert_eq!(client.stats().malformed, 0);
}
