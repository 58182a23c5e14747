//! A directory whose shell cannot store its changes acknowledges nothing, keeps every
//! change for the next write, and takes requests again once a write succeeds; a client
//! refused that way keeps its registration and retries. Restored leases are capped and
//! given a grace period after a restart.

use herald_core::wire::{self, Message, RegisterRequest, UnregisterRequest};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const CLIENT: SocketAddr = SocketAddr::new(IP, 5000);

fn config() -> DirectoryConfig {
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    DirectoryConfig::new(Location::new(IP, 37399).unwrap(), group)
}

fn registration(name: &str) -> Registration {
    Registration::new(
        ServiceName::new(name).unwrap(),
        &[Location::new(IP, 8080).unwrap()],
    )
    .unwrap()
}

fn register(name: &str, request: u32) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let r = RegisterRequest {
        request,
        registrant: 5,
        sequence: u64::from(request),
        lease: Duration::from_secs(10),
        registration: registration(name),
    };
    let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn unregister(name: &str, request: u32) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let u = UnregisterRequest {
        request,
        registrant: 5,
        sequence: u64::from(request),
        name: ServiceName::new(name).unwrap(),
    };
    let n = wire::encode(&Environment::default(), &u, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// The names `poll_event` hands out (stored or removed).
fn events(d: &mut Directory<'_>) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = d.poll_event() {
        out.push(match e {
            DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r) => r.name().to_string(),
            DirectoryEvent::Removed(n) => n.to_string(),
        });
    }
    out.sort();
    out
}

/// The replies to the client: `Ok(request)` for an acknowledgement, `Err(reason)`.
fn replies(d: &mut Directory<'_>, now: Instant) -> Vec<Result<u32, RejectReason>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1400];
    while let Some(t) = d.poll_transmit(now, &mut buf) {
        if t.destination != CLIENT {
            continue;
        }
        match wire::decode(&buf[..t.len]).unwrap().message {
            Message::Ack(a) => out.push(Ok(a.request)),
            Message::Reject(r) => out.push(Err(r.reason)),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

#[test]
fn a_failed_write_acknowledges_nothing_and_is_retried() {
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut d = Directory::new(config(), slots, index).unwrap();
    let t = Instant::from_millis(1);
    d.handle_datagram(t, CLIENT, &register("kept", 1));
    assert_eq!(events(&mut d), ["kept"]);
    assert_eq!(replies(&mut d, t), [Ok(1)]);

    // The next wake-up's write fails: its acknowledgements become refusals.
    d.handle_datagram(t, CLIENT, &register("lost", 2));
    d.handle_datagram(t, CLIENT, &unregister("kept", 3));
    assert_eq!(events(&mut d), ["kept", "lost"]);
    d.storage_failed(t);
    assert!(!d.storage_available());
    let refused = Err(RejectReason::StorageUnavailable);
    assert_eq!(replies(&mut d, t), [refused, refused]);
    assert_eq!(d.stats().rejected(RejectReason::StorageUnavailable), 2);
    // Every entry is handed out again for the retry.
    assert_eq!(events(&mut d), ["kept", "lost"]);
    d.storage_failed(t);

    // While storage fails: changes are refused, nothing expires.
    d.handle_datagram(t, CLIENT, &register("third", 4));
    d.handle_datagram(t, CLIENT, &unregister("lost", 5));
    assert_eq!(replies(&mut d, t), [refused, refused]);
    assert!(d.record("third").is_none());
    let late = Instant::from_millis(60_000);
    d.handle_timeout(late);
    assert!(d.record("lost").is_some_and(|r| r.is_live()), "expiry held");
    assert_eq!(events(&mut d), ["kept", "lost"], "still to write");

    // A write succeeded: requests are taken again; expiry resumes a default lease later.
    d.storage_recovered(late);
    assert!(d.storage_available());
    d.handle_datagram(late, CLIENT, &register("third", 6));
    assert_eq!(events(&mut d), ["third"]);
    assert_eq!(replies(&mut d, late), [Ok(6)]);
    let held = late + Duration::from_secs(14);
    d.handle_timeout(held);
    assert!(d.record("lost").is_some_and(|r| r.is_live()), "grace");
    assert!(d
        .poll_timeout()
        .is_some_and(|t| t <= late + Duration::from_secs(15)));
    d.handle_timeout(late + Duration::from_secs(15));
    assert!(d.record("lost").is_some_and(|r| !r.is_live()), "expired");
}

#[test]
fn a_client_refused_for_storage_keeps_its_registration_and_retries() {
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut d = Directory::new(config(), slots, index).unwrap();
    let dir = d.config().address;
    let mut table = ClientStorage::<4>::new();
    let (known, known_index) = table.parts();
    let mut cc = ClientConfig::new(7);
    cc.directories.push(dir).unwrap();
    let mut c: Client<'_, 2> = Client::new(cc, known, known_index).unwrap();
    let mut now = Instant::ZERO;
    c.register(now, registration("retried")).unwrap();
    let mut buf = [0u8; 1400];
    let mut registered = false;
    // 40 rounds of 500 ms: storage fails for the first 10 s.
    for round in 0..40 {
        now = Instant::from_millis(round * 500);
        c.handle_timeout(now);
        while let Some(t) = c.poll_transmit(now, &mut buf) {
            d.handle_datagram(now, CLIENT, &buf[..t.len]);
        }
        d.handle_timeout(now);
        while d.poll_event().is_some() {}
        if round < 20 {
            d.storage_failed(now);
        } else {
            d.storage_recovered(now);
        }
        while let Some(t) = d.poll_transmit(now, &mut buf) {
            c.handle_datagram(now, dir.socket_addr(), &buf[..t.len]);
        }
        while let Some(e) = c.poll_event() {
            match e {
                ClientEvent::Registered { .. } => {
                    assert!(round >= 20, "registered while storage failed");
                    registered = true;
                }
                ClientEvent::Rejected { reason, .. } => panic!("gave up: {reason}"),
                _ => {}
            }
        }
    }
    assert!(c.stats().storage_unavailable > 0);
    assert!(registered, "registered once storage recovered");
}

fn live(name: &str, expires: Instant) -> Record {
    Record {
        service: Service {
            registration: registration(name),
            version: Version(9),
        },
        registrant: 5,
        sequence: 0,
        state: RecordState::Live { expires },
        ended: Version(0),
        counted_from: Version(0),
    }
}

fn expiry(d: &Directory<'_>, name: &str) -> Instant {
    match d.record(name).unwrap().state {
        RecordState::Live { expires } => expires,
        other => panic!("{other:?}"),
    }
}

#[test]
fn restored_leases_are_capped_and_get_a_grace_period() {
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut d = Directory::new(config(), slots, index).unwrap();
    let now = Instant::from_millis(3_600_000);
    // Stored before a wall-clock step forward: an hour too long.
    d.restore(now, live("ahead", now + Duration::from_secs(3615)))
        .unwrap();
    // Stored before a step back, or long before the restart: ran out "long ago".
    d.restore(now, live("behind", Instant::from_millis(1000)))
        .unwrap();
    d.restore(now, live("normal", now + Duration::from_secs(20)))
        .unwrap();
    assert_eq!(expiry(&d, "ahead"), now + Duration::from_secs(300));
    assert_eq!(expiry(&d, "behind"), now + Duration::from_secs(15));
    assert_eq!(expiry(&d, "normal"), now + Duration::from_secs(20));
    d.handle_timeout(now + Duration::from_secs(14));
    assert_eq!(d.live(), 3, "nothing expires at restart");
    d.handle_timeout(now + Duration::from_secs(15));
    assert!(!d.record("behind").unwrap().is_live());
    assert_eq!(d.live(), 2);
}

/// A shell that keeps handling requests while a write runs holds what `poll_transmit`
/// gives until the write is durable. When the write fails it hands the held datagrams
/// back: each acknowledgement becomes a `storage_unavailable` refusal of the same
/// request, with or without keys (the directory opens its own sealed frames); the rest
/// is forgotten.
#[test]
fn held_acknowledgements_of_a_failed_write_become_refusals() {
    for keys in [
        None,
        Some(auth::Keys::new(auth::Key::new(1, &[7; 32]).unwrap())),
    ] {
        let mut storage = DirectoryStorage::<8>::new();
        let (slots, index) = storage.parts();
        let mut config = config();
        config.keys = keys.clone();
        let mut d = Directory::new(config, slots, index).unwrap();
        let t = Instant::from_millis(1);
        let seal = |request: u32, bytes: Vec<u8>| match &keys {
            None => bytes,
            Some(k) => {
                let mut buf = [0u8; 1400];
                buf[..bytes.len()].copy_from_slice(&bytes);
                let n = auth::seal(k, u64::from(request) + 1_000, &mut buf, bytes.len()).unwrap();
                buf[..n].to_vec()
            }
        };
        d.handle_datagram(t, CLIENT, &seal(1, register("a", 1)));
        d.handle_datagram(t, CLIENT, &seal(2, register("b", 2)));
        assert_eq!(events(&mut d), ["a", "b"]);
        // Held: everything the directory gives (acknowledgements, announcements).
        let mut held = Vec::new();
        let mut buf = [0u8; 1400];
        while let Some(tx) = d.poll_transmit(t, &mut buf) {
            held.push((tx.destination, buf[..tx.len].to_vec()));
        }
        assert!(held.len() > 2, "acknowledgements and announcements held");
        d.storage_failed(t);
        for (to, datagram) in &held {
            d.unsent(*to, datagram);
        }
        let mut answers = Vec::new();
        while let Some(tx) = d.poll_transmit(t, &mut buf) {
            if tx.destination != CLIENT {
                continue;
            }
            let (_, _, frame) = auth::receive(keys.as_ref(), &buf[..tx.len]).unwrap();
            match frame.unwrap().message {
                Message::Reject(r) => answers.push((r.request, r.reason)),
                other => panic!("unexpected {other:?}"),
            }
        }
        let refused = RejectReason::StorageUnavailable;
        assert_eq!(
            answers,
            [(1, refused), (2, refused)],
            "keys: {}",
            keys.is_some()
        );
        assert_eq!(d.stats().rejected(refused), 2);
    }
}
