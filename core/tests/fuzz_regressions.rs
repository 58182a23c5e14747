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
