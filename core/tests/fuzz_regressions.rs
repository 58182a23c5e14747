//! Inputs the fuzz targets (`fuzz/`) found crashing, kept as regression tests. Each test
//! names the target, feeds the crashing datagram (as found, in hex) through the public
//! API and checks the invariant that failed.

use herald_core::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

fn bytes(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
        .collect()
}

fn directory() -> Location {
    Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 37399).unwrap()
}

/// `client` target: a sync page whose items are out of order and repeated (as a
/// hostile or broken sender may send) made the client drop three services it had not
/// reported yet. Removing them moved other entries into the freed slot, and the event
/// scan counted each removal as a slot passed over, so it stopped early, reset its
/// pending count and never reported `größe` although `services()` held it.
#[test]
fn client_reports_every_service_after_removals_in_one_scan() {
    let page = bytes(
        "48 52 01 22 00 07 64 65 66 61 75 6c 74 00 d8 01 00 01 0a 0a 62 69 6c 6c 69 6e 67 2e \
         65 75 47 02 00 0a 00 00 07 90 3f 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 \
         91 3f 13 7a 6f 6e 65 3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 01 62 66 02 00 7f \
         00 00 01 91 3f 00 0a 00 00 07 90 3f 09 76 65 72 73 69 6f 6e 3d 31 07 67 72 c3 b6 c3 \
         9f 65 47 01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 91 3f 13 7a 6f 6e 65 \
         3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 07 67 72 c3 b6 c3 9f 65 d7 01 03 01 00 \
         00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 91 3f 00 0a 00 00 07 90 3f 00 7f 00 00 \
         01 90 3f 13 7a 6f 6e 65 3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 07 67 72 c3 b6 \
         c3 9f 65 d7 01 01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 91 3f 13 7a 6f \
         6e 65 3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 07 67 72 c3 b6 c3 9f 65 d7 01 01 \
         01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 91 3f 13 7a 6f 6e 65 3d 65 75 2d \
         31 00 77 65 69 67 68 74 3d 31 30 01 62 d7 01 01 01 00 00 00 00 00 00 00 00 00 00 00 \
         00 00 00 00 01 91 3f 13 7a 6f 6e 65 3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 07 \
         67 72 c3 b6 c3 9f 65 d7 01 01 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 91 \
         3f 13 7a 6f 6e 65 3d 65 75 2d 31 00 77 65 69 67 68 74 3d 31 30 01 61 6e 02 01 00 00 \
         00 00 00 00 00 00 00 00 00 00 00 00 00 01 90 3f 00 7f 00 00 01 90 3f 09 76 65 72 73 \
         69 6f 6e 3d 31 0a 64 62 2e 70 72 69 6d 61 72 79 00 02 01 00 00 00 00 00 00 00 00 00 \
         00 00 00 00 00 00 01 91 3f 00 7f 00 00 01 91 3f 00",
    );
    let mut storage = ClientStorage::<5>::new();
    let (slots, index) = storage.parts();
    let mut config = ClientConfig::new(7);
    config.interest = Some(Interest::all());
    config.directories.push(directory()).unwrap();
    let mut client: Client<'_, 2> = Client::new(config, slots, index).unwrap();
    let now = Instant::from_millis(60_848);
    client.handle_datagram(now, directory().socket_addr(), &page);

    let mut discovered = BTreeSet::new();
    while let Some(event) = client.poll_event() {
        match event {
            ClientEvent::Discovered(s) => assert!(discovered.insert(s.name().to_string())),
            ClientEvent::Unregistered(s) => assert!(discovered.remove(s.name().as_str())),
            _ => {}
        }
    }
    let held: BTreeSet<String> = client.services().map(|s| s.name().to_string()).collect();
    assert_eq!(held, discovered, "services() holds what no event reported");
    assert!(held.contains("größe"));
}

/// Found while triaging the `client` target's check that the counters of a client's
/// authenticated frames grow: an answer whose counter was ahead of the client's clock
/// (a directory whose clock runs a little ahead) set the client's counter to it, even
/// below counters the client had already used in a burst. The client's next request
/// reused a counter the directory had seen, and the directory dropped it as a replay.
#[test]
fn client_counter_never_goes_back_after_an_answer() {
    use herald_core::auth::{Key, Keys};
    use std::net::SocketAddr;

    let keys = Keys::new(Key::new(1, b"regression test key").unwrap());
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let mut dir_config = DirectoryConfig::new(directory(), group);
    dir_config.keys = Some(keys.clone());
    dir_config.version_floor = Version(1_000_000);
    let mut storage = DirectoryStorage::<4>::new();
    let (slots, index) = storage.parts();
    let mut dir = Directory::new(dir_config, slots, index).unwrap();
    let mut buf = [0u8; 1400];
    dir.handle_timeout(Instant::ZERO);
    while dir.poll_transmit(Instant::ZERO, &mut buf).is_some() {}

    // One second later the directory's clock reads 2_000_000; the client's starts one
    // microsecond behind it.
    let now = Instant::from_millis(1_000);
    let mut table = ClientStorage::<4>::new();
    let (known, known_index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.keys = Some(keys);
    config.clock_floor = 1_999_999;
    config.directories.push(directory()).unwrap();
    let mut client: Client<'_, 2> = Client::new(config, known, known_index).unwrap();
    let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
    let service = |name: &str| {
        let at = Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080).unwrap();
        Registration::new(ServiceName::new(name).unwrap(), &[at]).unwrap()
    };
    client.register(now, service("a")).unwrap();
    client.register(now, service("b")).unwrap();
    client.request_snapshot(now);
    // A burst in one microsecond: the client's counters run ahead of its clock.
    let mut sent = 0;
    while let Some(t) = client.poll_transmit(now, &mut buf) {
        dir.handle_datagram(now, me, &buf[..t.len]);
        sent += 1;
    }
    assert_eq!(sent, 3);
    assert_eq!(dir.stats().stale + dir.stats().replayed, 0);
    // The first answer carries the directory's counter, ahead of the client's clock.
    let t = dir.poll_transmit(now, &mut buf).unwrap();
    assert_eq!(t.destination, me);
    client.handle_datagram(now, directory().socket_addr(), &buf[..t.len]);
    while dir.poll_transmit(now, &mut buf).is_some() {}
    // The next request must not reuse a counter the directory has seen.
    client
        .unregister(now, &ServiceName::new("a").unwrap())
        .unwrap();
    let t = client.poll_transmit(now, &mut buf).unwrap();
    dir.handle_datagram(now, me, &buf[..t.len]);
    assert_eq!(dir.stats().replayed, 0, "request dropped as a replay");
    assert!(dir.poll_transmit(now, &mut buf).is_some(), "no answer");
}
