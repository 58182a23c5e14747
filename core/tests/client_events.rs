//! Events as a shell that feeds several datagrams per wake-up sees them: a change and
//! back between two polls is no change.

use herald_core::client::ClientStorage;
use herald_core::wire::{self, RegisterRequest};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn register(port: u16, request: u32) -> Vec<u8> {
    let registration = Registration::new(
        ServiceName::new("flapping").unwrap(),
        &[Location::new(IP, port).unwrap()],
    )
    .unwrap();
    let r = RegisterRequest {
        request,
        registrant: 9,
        sequence: u64::from(request),
        lease: Duration::from_secs(10),
        registration,
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
    buf[..n].to_vec()
}

#[test]
fn a_change_and_back_between_two_polls_is_not_reported() {
    let dir = Location::new(IP, 37399).unwrap();
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let mut dstore = herald_core::directory::DirectoryStorage::<4>::new();
    let (slots, index) = dstore.parts();
    let mut config = DirectoryConfig::new(dir, group);
    config.registration_announcements = 1;
    let mut directory = Directory::new(config, slots, index).unwrap();
    let mut cstore = ClientStorage::<4>::new();
    let (known, known_index) = cstore.parts();
    let mut cconfig = ClientConfig::new(1);
    cconfig.directories.push(dir).unwrap();
    cconfig.interest = Some(Interest::all());
    let mut client: Client<'_, 1> = Client::new(cconfig, known, known_index).unwrap();

    let registrant = SocketAddr::new(IP, 5000);
    let now = Instant::from_millis(1);
    let mut buf = [0u8; 1400];
    // Announcements from the directory, held back until `deliver`.
    let mut announce = |directory: &mut Directory<'_>, bytes: &[u8]| {
        directory.handle_datagram(now, registrant, bytes);
        let mut out = Vec::new();
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            if t.destination == group {
                out.push(buf[..t.len].to_vec());
            }
        }
        out
    };
    let events = |client: &mut Client<'_, 1>| {
        let mut out = Vec::new();
        while let Some(e) = client.poll_event() {
            if matches!(
                e,
                ClientEvent::Discovered(_) | ClientEvent::Changed(_) | ClientEvent::Unregistered(_)
            ) {
                out.push(e);
            }
        }
        out
    };
    let from = dir.socket_addr();
    for d in announce(&mut directory, &register(1000, 1)) {
        client.handle_datagram(now, from, &d);
    }
    assert!(matches!(
        &events(&mut client)[..],
        [ClientEvent::Discovered(_)]
    ));

    // To port 2000 and back to 1000, both delivered before the next poll.
    let mut held = announce(&mut directory, &register(2000, 2));
    held.extend(announce(&mut directory, &register(1000, 3)));
    for d in &held {
        client.handle_datagram(now, from, d);
    }
    assert_eq!(
        events(&mut client),
        vec![],
        "a change and back is no change"
    );

    // A real change is still reported, once.
    for d in announce(&mut directory, &register(3000, 4)) {
        client.handle_datagram(now, from, &d);
    }
    let changed = events(&mut client);
    assert!(
        matches!(&changed[..], [ClientEvent::Changed(s)] if s.registration.locations[0].port() == 3000),
        "{changed:?}"
    );
}

/// A listener that follows a replica takes an announcement from a known directory as
/// that directory publishing: it moves there at once (and reports the change) instead of
/// waiting for its beacon.
#[test]
fn a_listener_following_a_replica_moves_to_the_directory_that_announces() {
    let replica = Location::new(IP, 37400).unwrap();
    let publisher = Location::new(IP, 37399).unwrap();
    let mut cstore = ClientStorage::<4>::new();
    let (known, known_index) = cstore.parts();
    let mut config = ClientConfig::new(1);
    config.directories.push(replica).unwrap();
    config.directories.push(publisher).unwrap();
    config.interest = Some(Interest::all());
    let mut client: Client<'_, 1> = Client::new(config, known, known_index).unwrap();
    let now = Instant::from_millis(1);
    let env = Environment::default();
    let mut buf = [0u8; 1400];

    // A stranger's announcement is ignored.
    let service = Service {
        registration: Registration::new(
            ServiceName::new("billing").unwrap(),
            &[Location::new(IP, 8080).unwrap()],
        )
        .unwrap(),
        version: Version(5),
    };
    let announce = |from: Location, buf: &mut [u8]| {
        let header = wire::AnnounceHeader {
            directory: from,
            as_of: Version(5),
            previous: Version(0),
        };
        let mut w = wire::BatchWriter::announce(&env, &header, buf).unwrap();
        assert!(w.push(&wire::Change::Registered(service.clone())));
        w.len()
    };
    let stranger = Location::new(IP, 40000).unwrap();
    let n = announce(stranger, &mut buf);
    client.handle_datagram(now, stranger.socket_addr(), &buf[..n]);
    assert_eq!(client.current_directory(), Some(replica));

    // The replica's beacon says it does not publish.
    let beacon = wire::Beacon {
        directory: replica,
        as_of: Version(5),
        services: 1,
        publishing: false,
        digest: 0,
    };
    let n = wire::encode(&env, &beacon, &mut buf).unwrap();
    client.handle_datagram(now, replica.socket_addr(), &buf[..n]);
    assert_eq!(client.current_directory(), Some(replica));

    // The publisher announces before its first beacon is heard.
    let n = announce(publisher, &mut buf);
    client.handle_datagram(now, publisher.socket_addr(), &buf[..n]);
    assert_eq!(client.current_directory(), Some(publisher));
    let mut discovered = false;
    while let Some(e) = client.poll_event() {
        discovered |= matches!(e, ClientEvent::Discovered(s) if s.name().as_str() == "billing");
    }
    assert!(discovered);
}
