//! Hostile datagrams: random bytes, truncated and oversized frames, foreign versions
//! and flags, replayed requests and forged announcements, built with herald-core's
//! encoder so that they are exactly one defect away from valid.

use super::rng::Rng;
use herald_core::wire::{
    self, AnnounceHeader, BatchWriter, Change, Message, RegisterRequest, SnapshotRequest,
    SubscribeRequest, UnregisterRequest, COOKIE_LEN,
};
use herald_core::{Duration, Environment, Interest, Location, Registration, ServiceName, Version};
use std::net::SocketAddr;

fn env(name: &str) -> Environment {
    Environment::new(name).expect("valid environment")
}

fn name(text: &str) -> ServiceName {
    ServiceName::new(text).expect("valid name")
}

/// A valid Register frame.
pub fn register(environment: &str, registrant: u64, service: &str, at: SocketAddr) -> Vec<u8> {
    let location = Location::from_socket_addr(at).expect("valid location");
    let request = RegisterRequest {
        request: 77,
        registrant,
        // Any: these frames are refused for the registrant before their order matters.
        sequence: 1,
        lease: Duration::from_secs(15),
        registration: Registration::new(name(service), &[location]).expect("registration"),
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&env(environment), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// A valid Unregister frame.
pub fn unregister(environment: &str, registrant: u64, service: &str) -> Vec<u8> {
    let request = UnregisterRequest {
        request: 78,
        registrant,
        sequence: 2,
        name: name(service),
    };
    let mut buf = [0u8; 512];
    let n = wire::encode(&env(environment), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// A snapshot request for one page of everything, with `cookie` if given (without one,
/// a directory answers with its cookie for the sender's address).
pub fn snapshot_request(environment: &str, cookie: Option<[u8; COOKIE_LEN]>) -> Vec<u8> {
    let request = SnapshotRequest {
        request: 79,
        max_pages: 1,
        after: None,
        interest: Interest::all(),
        cookie,
        since: None,
    };
    let mut buf = [0u8; 512];
    let n = wire::encode(&env(environment), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// A Subscribe to everything for `subscriber`, its deliveries named `delivery`.
pub fn subscribe(
    environment: &str,
    subscriber: u64,
    delivery: u32,
    cookie: [u8; COOKIE_LEN],
) -> Vec<u8> {
    let request = SubscribeRequest {
        request: 80,
        subscriber,
        delivery,
        lease: Duration::from_secs(30),
        interest: Interest::all(),
        since: None,
        cookie: Some(cookie),
    };
    let mut buf = [0u8; 512];
    let n = wire::encode(&env(environment), &request, &mut buf).expect("encode");
    buf[..n].to_vec()
}

/// The message a directory sent, if it decodes (unauthenticated environments).
pub fn decode(bytes: &[u8]) -> Option<Message<'_>> {
    wire::decode(bytes).ok().map(|f| f.message)
}

/// A valid Announce frame from `directory` saying `service` was unregistered at
/// `version`.
pub fn announce_removal(
    environment: &str,
    directory: SocketAddr,
    service: &str,
    version: u64,
) -> Vec<u8> {
    let header = AnnounceHeader {
        directory: Location::from_socket_addr(directory).expect("valid location"),
        as_of: Version(version),
        previous: Version(0),
    };
    let mut buf = [0u8; 1400];
    let env = env(environment);
    let mut w = BatchWriter::announce(&env, &header, &mut buf).expect("announce");
    assert!(w.push(&Change::Unregistered {
        name: name(service),
        version: Version(version),
    }));
    let n = w.len();
    buf[..n].to_vec()
}

/// `count` datagrams of random bytes, 0 to 1500 long.
pub fn random(rng: &mut Rng, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut d = vec![0u8; rng.below(1501) as usize];
            rng.fill(&mut d);
            d
        })
        .collect()
}

/// Every strict prefix of `frame` (at least one byte long).
pub fn truncations(frame: &[u8]) -> Vec<Vec<u8>> {
    (1..frame.len()).map(|n| frame[..n].to_vec()).collect()
}

/// `frame` with protocol version 2.
pub fn foreign_version(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[2] = 2;
    f
}

/// `frame` with a flag set (version 1 defines none).
pub fn flagged(frame: &[u8]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[4] = 0x80;
    f
}

/// A valid frame followed by garbage up to the largest UDP datagram, and a largest
/// datagram of random bytes.
pub fn oversized(rng: &mut Rng, frame: &[u8]) -> Vec<Vec<u8>> {
    let mut padded = frame.to_vec();
    padded.resize(65_507, 0xa5);
    let mut noise = vec![0u8; 65_507];
    rng.fill(&mut noise);
    vec![padded, noise]
}
