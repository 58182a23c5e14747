//! What a directory asks its shell to store, and how urgently: new, changed and removed
//! services durably before the acknowledgement; renewals lazily.

use herald_core::wire::{self, RegisterRequest, UnregisterRequest};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn request(registration: &Registration, request: u32) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let r = RegisterRequest {
        request,
        registrant: 5,
        sequence: u64::from(request),
        lease: Duration::from_secs(10),
        registration: registration.clone(),
    };
    let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// The events after one datagram: (name, durable).
fn events(d: &mut Directory<'_>, bytes: &[u8], now: Instant) -> Vec<(String, Option<bool>)> {
    d.handle_datagram(now, SocketAddr::new(IP, 5000), bytes);
    let mut out = Vec::new();
    while let Some(e) = d.poll_event() {
        out.push(match e {
            DirectoryEvent::Stored(r) => (r.name().to_string(), Some(true)),
            DirectoryEvent::Renewed(r) => (r.name().to_string(), Some(false)),
            DirectoryEvent::Removed(n) => (n.to_string(), None),
        });
    }
    let mut buf = [0u8; 1400];
    while d.poll_transmit(now, &mut buf).is_some() {}
    out
}

#[test]
fn changes_are_durable_and_renewals_are_lazy() {
    let mut storage = herald_core::directory::DirectoryStorage::<4>::new();
    let (slots, index) = storage.parts();
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let config = DirectoryConfig::new(Location::new(IP, 37399).unwrap(), group);
    let mut d = Directory::new(config, slots, index).unwrap();
    let name = ServiceName::new("kept").unwrap();
    let first = Registration::new(name.clone(), &[Location::new(IP, 1).unwrap()]).unwrap();
    let moved = Registration::new(name.clone(), &[Location::new(IP, 2).unwrap()]).unwrap();
    let t = Instant::from_millis(1);
    let durable = vec![("kept".to_string(), Some(true))];
    assert_eq!(events(&mut d, &request(&first, 1), t), durable);
    assert_eq!(
        events(&mut d, &request(&first, 2), t),
        vec![("kept".to_string(), Some(false))],
        "a renewal"
    );
    assert_eq!(events(&mut d, &request(&moved, 3), t), durable, "a change");
    let mut buf = [0u8; 1400];
    let unregister = UnregisterRequest {
        request: 4,
        registrant: 5,
        sequence: 4,
        name,
    };
    let n = wire::encode(&Environment::default(), &unregister, &mut buf).unwrap();
    assert_eq!(events(&mut d, &buf[..n], t), durable, "a removal");
}
