//! Test vectors: one frame per message kind, built from known values, encoded, and
//! compared byte for byte with the hex in `docs/PROTOCOL.md`. Decoding the hex must give
//! the same message back. Run with `HERALD_PRINT_VECTORS=1` to print the vectors.

use herald_core::auth;
use herald_core::wire::{self, BatchWriter, Change, Frame, Message, PageKind};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

fn env() -> Environment {
    Environment::new("prod").unwrap()
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> Location {
    Location::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port).unwrap()
}

fn registration() -> Registration {
    let v6 = Location::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8443).unwrap();
    let mut meta = Metadata::new();
    meta.insert("v", "2").unwrap();
    Registration::new(
        ServiceName::new("billing").unwrap(),
        &[v4(127, 0, 0, 1, 8080), v6],
    )
    .unwrap()
    .with_metadata(meta)
}

/// What the keep-alive examples claim: the example registration alone.
fn held() -> wire::Holdings {
    let mut held = wire::Holdings::default();
    held.add(&registration());
    held
}

/// The digest of the example registration, as PROTOCOL.md gives it.
const DIGEST: u64 = 0x8359_078c_e0d8_5558;

fn directory() -> Location {
    v4(127, 0, 0, 1, 37399)
}

/// Services whose names begin with `bill`.
fn bill() -> Interest {
    let mut interest = Interest::all();
    interest.push(Pattern::prefix("bill").unwrap()).unwrap();
    interest
}

/// The example cookie: bytes 0 to 15.
fn cookie() -> [u8; wire::COOKIE_LEN] {
    core::array::from_fn(|i| i as u8)
}

fn single<M: wire::Single>(m: &M) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let n = wire::encode(&env(), m, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Every vector: (name in PROTOCOL.md, bytes).
fn vectors() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![
        (
            "register",
            single(&wire::RegisterRequest {
                request: 1,
                registrant: 0x2a,
                sequence: 0x0102_0304,
                lease: Duration::from_secs(15),
                registration: registration(),
            }),
        ),
        (
            "unregister",
            single(&wire::UnregisterRequest {
                request: 2,
                registrant: 0x2a,
                sequence: 0x0102_0305,
                name: ServiceName::new("billing").unwrap(),
            }),
        ),
        (
            "snapshot-request",
            single(&wire::SnapshotRequest {
                request: 3,
                max_pages: 16,
                after: None,
                interest: Interest::parse_all(["bill*"]).unwrap(),
                cookie: None,
                since: None,
            }),
        ),
        (
            "snapshot-request-with-cookie",
            single(&wire::SnapshotRequest {
                request: 4,
                max_pages: 16,
                after: None,
                interest: Interest::all(),
                cookie: Some(cookie()),
                since: None,
            }),
        ),
        (
            "repair-request",
            single(&wire::SnapshotRequest {
                request: 5,
                max_pages: 16,
                after: None,
                interest: Interest::all(),
                cookie: Some(cookie()),
                since: Some(Version(1001)),
            }),
        ),
        (
            "cookie",
            single(&wire::CookieReply {
                request: 3,
                cookie: cookie(),
            }),
        ),
        (
            "ack",
            single(&wire::Ack {
                request: 1,
                lease: Duration::from_secs(15),
                version: Version(1000),
            }),
        ),
        (
            "reject",
            single(&wire::Reject {
                request: 1,
                reason: RejectReason::WrongEnvironment,
                directory_environment: Environment::new("dev").unwrap(),
                floor: 0,
            }),
        ),
        (
            "reject-stale",
            single(&wire::Reject {
                request: 2,
                reason: RejectReason::Stale,
                directory_environment: env(),
                floor: 0x0102_0306,
            }),
        ),
        (
            "keep-alive",
            single(&wire::KeepAliveRequest {
                request: 5,
                registrant: 0x2a,
                sequence: 0x0102_0307,
                lease: Duration::from_secs(15),
                held: held(),
            }),
        ),
        (
            "keep-alive-ack",
            single(&wire::KeepAliveAck {
                request: 5,
                lease: Duration::from_secs(15),
                held: held(),
            }),
        ),
        (
            "subscribe",
            single(&wire::SubscribeRequest {
                request: 6,
                subscriber: 0x2a,
                delivery: 7,
                lease: Duration::from_secs(15),
                interest: bill(),
                since: Some(Version(1001)),
                cookie: Some(cookie()),
            }),
        ),
        (
            "subscribe-ack",
            single(&wire::SubscribeAck {
                request: 6,
                lease: Duration::from_secs(15),
                delivering: true,
            }),
        ),
        (
            "reject-subscribers-full",
            single(&wire::Reject {
                request: 6,
                reason: RejectReason::SubscribersFull,
                directory_environment: env(),
                floor: 0,
            }),
        ),
        (
            "unsubscribe",
            single(&wire::UnsubscribeRequest {
                request: 8,
                subscriber: 0x2a,
            }),
        ),
        (
            "delivery-ack",
            single(&wire::DeliveryAck {
                subscriber: 0x2a,
                delivery: 7,
                as_of: Version(1001),
                taken: Some(ServiceName::new("billing").unwrap()),
            }),
        ),
    ];
    let service = Service {
        registration: registration(),
        version: Version(1000),
    };
    let mut buf = [0u8; 1400];
    let page = wire::PageHeader {
        request: 3,
        as_of: Version(1001),
        after: None,
        complete: false,
    };
    let mut w = BatchWriter::page(&env(), &page, PageKind::Snapshot, &mut buf).unwrap();
    assert!(w.push(&service));
    w.set_complete(true);
    let n = w.len();
    out.push(("snapshot-page", buf[..n].to_vec()));
    let delivered = wire::PageHeader {
        request: 7,
        ..page.clone()
    };
    let kind = PageKind::DeliveredSnapshot(0x2a);
    let mut w = BatchWriter::page(&env(), &delivered, kind, &mut buf).unwrap();
    assert!(w.push(&service));
    w.set_complete(true);
    let n = w.len();
    out.push(("delivered-snapshot", buf[..n].to_vec()));
    let sync = wire::PageHeader {
        request: 0,
        ..page.clone()
    };
    let mut w = BatchWriter::page(&env(), &sync, PageKind::Sync, &mut buf).unwrap();
    w.set_complete(true);
    let n = w.len();
    out.push(("sync-page", buf[..n].to_vec()));
    let changes = wire::PageHeader {
        request: 5,
        ..page.clone()
    };
    // A complete page of changes: `cache` unregistered at version 1001.
    let mut changes_page = |header: &wire::PageHeader, kind| {
        let mut w = BatchWriter::page(&env(), header, kind, &mut buf).unwrap();
        assert!(w.push(&Change::Unregistered {
            name: ServiceName::new("cache").unwrap(),
            version: Version(1001),
        }));
        w.set_complete(true);
        let n = w.len();
        buf[..n].to_vec()
    };
    out.push(("changes-page", changes_page(&changes, PageKind::Changes)));
    let kind = PageKind::DeliveredChanges(0x2a);
    out.push(("delivered-changes", changes_page(&delivered, kind)));
    let header = wire::AnnounceHeader {
        directory: directory(),
        as_of: Version(1001),
        previous: Version(1000),
    };
    let mut w = BatchWriter::announce(&env(), &header, &mut buf).unwrap();
    assert!(w.push(&Change::Registered(service.clone())));
    assert!(w.push(&Change::Unregistered {
        name: ServiceName::new("cache").unwrap(),
        version: Version(1001),
    }));
    let n = w.len();
    out.push(("announce", buf[..n].to_vec()));
    let beacon = single(&wire::Beacon {
        directory: directory(),
        as_of: Version(1001),
        services: 1,
        publishing: true,
        digest: 0x1122_3344_5566_7788,
    });
    out.push(("beacon", beacon.clone()));
    let mut sealed = beacon.clone();
    sealed.resize(beacon.len() + auth::TRAILER_LEN, 0);
    let n = auth::seal(
        &test_keys(),
        0x0102_0304_0506_0708,
        &mut sealed,
        beacon.len(),
    )
    .unwrap();
    assert_eq!(n, sealed.len());
    out.push(("authenticated-beacon", sealed));
    out
}

/// The key of the authenticated example: id 1, the 32 ASCII bytes below.
fn test_keys() -> auth::Keys {
    auth::Keys::new(auth::Key::new(1, b"an example key, 32 bytes long!!!").unwrap())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hex of the fenced block that follows `<!-- vector: NAME -->` in PROTOCOL.md.
fn documented(name: &str) -> Vec<u8> {
    let marker = format!("<!-- vector: {name} -->");
    let start = PROTOCOL
        .find(&marker)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no vector {name}"));
    let rest = &PROTOCOL[start + marker.len()..];
    let open = rest.find("```").unwrap() + 3;
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let close = body.find("```").unwrap();
    body[..close]
        .split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

#[test]
fn documented_vectors_match_the_encoder() {
    let print = std::env::var_os("HERALD_PRINT_VECTORS").is_some();
    for (name, bytes) in vectors() {
        if print {
            println!("<!-- vector: {name} -->\n```text\n{}\n```\n", hex(&bytes));
            continue;
        }
        assert_eq!(hex(&documented(name)), hex(&bytes), "vector {name}");
    }
}

#[test]
fn documented_vectors_decode_to_their_messages() {
    for (name, _) in vectors() {
        let documented_bytes = documented(name);
        let bytes = if name.starts_with("authenticated-") {
            let (inner, counter) = auth::open(&test_keys(), &documented_bytes).unwrap();
            assert_eq!(counter, 0x0102_0304_0506_0708);
            assert!(wire::decode(&documented_bytes).is_err(), "needs the key");
            inner.to_vec()
        } else {
            documented_bytes
        };
        let decode = if name.starts_with("authenticated-") {
            wire::decode_authenticated
        } else {
            wire::decode
        };
        let Frame {
            environment,
            message,
        } = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(environment, env());
        match (name, message) {
            ("register", Message::Register(r)) => {
                assert_eq!(r.registration, registration());
                assert_eq!(r.lease, Duration::from_secs(15));
                assert_eq!(r.registrant, 0x2a);
                assert_eq!(r.sequence, 0x0102_0304);
            }
            ("unregister", Message::Unregister(u)) => {
                assert_eq!(u.name.as_str(), "billing");
                assert_eq!(u.sequence, 0x0102_0305);
            }
            ("snapshot-request", Message::SnapshotRequest(s)) => {
                assert_eq!(s.max_pages, 16);
                assert!(s.interest.matches("billing") && !s.interest.matches("cache"));
                assert_eq!(s.cookie, None);
            }
            ("snapshot-request-with-cookie", Message::SnapshotRequest(s)) => {
                assert_eq!(s.cookie, Some(cookie()));
                assert!(s.interest.matches("cache"));
                assert_eq!(s.since, None);
            }
            ("repair-request", Message::SnapshotRequest(s)) => {
                assert_eq!(s.cookie, Some(cookie()));
                assert_eq!(s.since, Some(Version(1001)));
            }
            ("changes-page", Message::ChangesPage(h, items)) => {
                assert!(h.complete && h.request == 5);
                let changes: Vec<Change> = items.collect();
                assert_eq!(changes.len(), 1);
                assert!(
                    matches!(&changes[0], Change::Unregistered { name, version } if name.as_str() == "cache" && *version == Version(1001))
                );
            }
            ("delivered-changes", Message::DeliveredChanges(subscriber, h, items)) => {
                assert_eq!((subscriber, h.request), (0x2a, 7));
                assert!(h.complete);
                let changes: Vec<Change> = items.collect();
                assert!(
                    matches!(&changes[..], [Change::Unregistered { name, .. }] if name.as_str() == "cache")
                );
            }
            ("delivered-snapshot", Message::DeliveredSnapshot(subscriber, h, items)) => {
                assert_eq!((subscriber, h.request), (0x2a, 7));
                let services: Vec<Service> = items.collect();
                assert_eq!(services.len(), 1);
                assert_eq!(services[0].registration, registration());
            }
            ("cookie", Message::Cookie(c)) => {
                assert_eq!(c.request, 3);
                assert_eq!(c.cookie, cookie());
            }
            ("ack", Message::Ack(a)) => assert_eq!(a.version, Version(1000)),
            ("reject", Message::Reject(r)) => {
                assert_eq!(r.reason, RejectReason::WrongEnvironment);
                assert_eq!(r.directory_environment.as_str(), "dev");
                assert_eq!(r.floor, 0);
            }
            ("reject-stale", Message::Reject(r)) => {
                assert_eq!(r.reason, RejectReason::Stale);
                assert_eq!(r.floor, 0x0102_0306);
            }
            ("snapshot-page", Message::SnapshotPage(h, items)) => {
                assert!(h.complete);
                let services: Vec<Service> = items.collect();
                assert_eq!(services.len(), 1);
                assert_eq!(services[0].registration, registration());
            }
            ("sync-page", Message::SyncPage(h, items)) => {
                assert!(h.complete && h.request == 0);
                assert_eq!(items.count(), 0);
            }
            ("announce", Message::Announce(h, items)) => {
                assert_eq!(h.directory, directory());
                assert_eq!((h.previous, h.as_of), (Version(1000), Version(1001)));
                let changes: Vec<Change> = items.collect();
                assert_eq!(changes.len(), 2);
                assert!(
                    matches!(&changes[1], Change::Unregistered { name, .. } if name.as_str() == "cache")
                );
            }
            ("beacon" | "authenticated-beacon", Message::Beacon(b)) => {
                assert_eq!(b.directory, directory());
                assert_eq!(b.services, 1);
                assert_eq!(b.digest, 0x1122_3344_5566_7788);
            }
            ("keep-alive", Message::KeepAlive(k)) => {
                assert_eq!(k.registrant, 0x2a);
                assert_eq!(k.sequence, 0x0102_0307);
                assert_eq!(k.lease, Duration::from_secs(15));
                assert_eq!(k.held, held());
            }
            ("keep-alive-ack", Message::KeepAliveAck(a)) => {
                assert_eq!(a.lease, Duration::from_secs(15));
                assert_eq!(a.held, held());
            }
            ("subscribe", Message::Subscribe(s)) => {
                assert_eq!((s.request, s.subscriber, s.delivery), (6, 0x2a, 7));
                assert_eq!(s.lease, Duration::from_secs(15));
                assert_eq!(s.interest, bill());
                assert_eq!(s.since, Some(Version(1001)));
                assert_eq!(s.cookie, Some(cookie()));
            }
            ("subscribe-ack", Message::SubscribeAck(a)) => {
                assert_eq!(a.request, 6);
                assert_eq!(a.lease, Duration::from_secs(15));
                assert!(a.delivering);
            }
            ("reject-subscribers-full", Message::Reject(r)) => {
                assert_eq!(r.reason, RejectReason::SubscribersFull);
            }
            ("unsubscribe", Message::Unsubscribe(u)) => {
                assert_eq!((u.request, u.subscriber), (8, 0x2a));
            }
            ("delivery-ack", Message::DeliveryAck(a)) => {
                assert_eq!((a.subscriber, a.delivery), (0x2a, 7));
                assert_eq!(a.as_of, Version(1001));
                assert_eq!(a.taken.as_ref().map(|n| n.as_str()), Some("billing"));
            }
            (name, other) => panic!("{name} decoded as {other:?}"),
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for (name, bytes) in vectors() {
        for cut in 0..bytes.len() {
            assert!(wire::decode(&bytes[..cut]).is_err(), "{name} cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            wire::decode(&longer).is_err(),
            "{name} with a trailing byte"
        );
    }
}

#[test]
fn header_errors_are_precise() {
    let (_, good) = vectors().remove(0);
    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(wire::decode(&b).unwrap_err(), DecodeError::BadMagic);
    let mut b = good.clone();
    b[2] = 2;
    assert_eq!(
        wire::decode(&b).unwrap_err(),
        DecodeError::UnsupportedVersion(2)
    );
    let mut b = good.clone();
    b[3] = 0x7f;
    assert_eq!(
        wire::decode(&b).unwrap_err(),
        DecodeError::UnknownKind(0x7f)
    );
    let mut b = good.clone();
    b[4] = 1;
    assert_eq!(wire::decode(&b).unwrap_err(), DecodeError::UnknownFlags(1));
    let mut b = good;
    b[6] = b' ';
    assert!(matches!(
        wire::decode(&b).unwrap_err(),
        DecodeError::InvalidEnvironment(_)
    ));
}

#[test]
fn an_environment_outside_its_ascii_set_is_refused_as_such() {
    // In the header and in a rejection (which names the directory's environment), a
    // byte that is not an allowed ASCII character is refused with that reason, whether
    // or not the bytes are valid UTF-8.
    let reject = |environment: &str| {
        single(&wire::Reject {
            request: 1,
            reason: RejectReason::WrongEnvironment,
            directory_environment: Environment::new(environment).unwrap(),
            floor: 0,
        })
    };
    let (mut header, mut payload) = (reject("prod"), reject("dev"));
    // "prod" starts the header at byte 6; "dev" ends the payload.
    let end = payload.len();
    for byte in [b' ', 0xc3, 0xff] {
        header[6] = byte;
        payload[end - 2] = byte;
        for bytes in [&header, &payload] {
            assert_eq!(
                wire::decode(bytes).unwrap_err(),
                DecodeError::InvalidEnvironment(NameError::InvalidEnvironmentCharacter),
                "byte {byte:#x}"
            );
        }
    }
}

#[test]
fn a_foreign_version_request_gets_a_readable_rejection() {
    let (_, mut bytes) = vectors().remove(0);
    bytes[2] = 9;
    let mut storage = herald_core::directory::DirectoryStorage::<4>::new();
    let (slots, index) = storage.parts();
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let mut config = DirectoryConfig::new(directory(), group);
    config.environment = env();
    let mut d = Directory::new(config, slots, index).unwrap();
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
    d.handle_datagram(Instant::ZERO, from, &bytes);
    let mut buf = [0u8; 1400];
    let t = d.poll_transmit(Instant::ZERO, &mut buf).unwrap();
    assert_eq!(t.destination, from);
    match wire::decode(&buf[..t.len]).unwrap().message {
        Message::Reject(r) => assert_eq!(r.reason, RejectReason::UnsupportedVersion),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.stats().malformed, 1);
}

#[test]
fn a_lease_under_a_millisecond_is_sent_as_one_not_as_the_default() {
    // lease_ms 0 means "the directory's default": a short lease must not become it.
    for (lease, ms) in [
        (Duration::from_micros(1), 1),
        (Duration::from_micros(500), 1),
        (Duration::from_micros(1_500), 1),
        (Duration::ZERO, 0),
    ] {
        let request = wire::RegisterRequest {
            request: 1,
            registrant: 2,
            sequence: 3,
            lease,
            registration: registration(),
        };
        match wire::decode(&single(&request)).unwrap().message {
            Message::Register(r) => assert_eq!(r.lease, Duration::from_millis(ms), "{lease}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn only_a_stale_rejection_carries_a_floor() {
    let reject = |reason, floor| {
        single(&wire::Reject {
            request: 1,
            reason,
            directory_environment: env(),
            floor,
        })
    };
    let stale = reject(RejectReason::Stale, 0);
    let held = reject(RejectReason::NameHeld, 0);
    assert_eq!(
        stale.len(),
        held.len() + 1,
        "a stale rejection always carries one"
    );
    let mut other = held.clone();
    other.push(5);
    assert_eq!(
        wire::decode(&other).unwrap_err(),
        DecodeError::TrailingBytes,
        "a floor on another reason"
    );
    let mut without = stale.clone();
    without.pop();
    assert!(
        wire::decode(&without).is_err(),
        "a stale rejection without one"
    );
}

/// FNV-1a 64, as PROTOCOL.md specifies it.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn the_registration_digest_hashes_the_end_of_a_register_payload() {
    // The Register vector: a 10-byte header, then request, registrant, sequence and
    // lease (1 + 1 + 4 + 2 bytes), then name, locations and metadata.
    let register = documented("register");
    let tail = &register[10 + 8..];
    assert_eq!(fnv1a_64(tail), wire::registration_digest(&registration()));
    assert_eq!(
        wire::registration_digest(&registration()),
        DIGEST,
        "{:#018x}",
        wire::registration_digest(&registration())
    );
    // Order-independent: the XOR of the digests, whatever the order added.
    let other = Registration::new(ServiceName::new("cache").unwrap(), &[directory()]).unwrap();
    let (mut ab, mut ba) = (wire::Holdings::default(), wire::Holdings::default());
    ab.add(&registration());
    ab.add(&other);
    ba.add(&other);
    ba.add(&registration());
    assert_eq!(ab, ba);
    assert_eq!(ab.count, 2);
    assert_eq!(
        ab.digest,
        fnv1a_64(tail) ^ wire::registration_digest(&other)
    );
}

/// Subscription mode is built in (herald-core's `subscribe` feature).
const SUBSCRIBE: bool = cfg!(feature = "subscribe");
/// Discovery is built in (herald-core's `listen` feature).
const LISTEN: bool = cfg!(feature = "listen");

#[test]
fn a_client_decoder_refuses_what_only_a_directory_takes_undecoded_and_decodes_the_rest_alike() {
    for (name, sealed) in vectors() {
        let kind = wire::Kind::from_code(sealed[3]).unwrap();
        let authenticated = sealed[4] != 0;
        let (bytes, full) = if authenticated {
            let (inner, _) = auth::open(&test_keys(), &sealed).unwrap();
            (inner.to_vec(), wire::decode_authenticated(inner).unwrap())
        } else {
            (sealed.clone(), wire::decode(&sealed).unwrap())
        };
        // Nor does a client decode what its build never acts on: deliveries and
        // subscription acknowledgements without subscription mode, pages, announcements
        // and snapshot cookies without discovery (its probe is a keep-alive).
        let subscription = kind.is_delivery() || kind == wire::Kind::SubscribeAck;
        let discovery = kind.is_page() || matches!(kind, wire::Kind::Announce | wire::Kind::Cookie);
        let unused = (subscription && !SUBSCRIBE) || (discovery && !LISTEN);
        let undecoded = kind.is_for_directory() || unused;
        match wire::decode_reply(&bytes, authenticated) {
            Ok(reply) => {
                assert!(!undecoded, "{name}");
                assert_eq!(format!("{reply:?}"), format!("{full:?}"), "{name}");
            }
            Err(e) => {
                assert!(undecoded, "{name}: {e}");
                let refused = if unused {
                    DecodeError::Unused(kind as u8)
                } else {
                    DecodeError::Request(kind as u8)
                };
                assert_eq!(e, refused, "{name}");
            }
        }
        // A truncated request is refused as a request too: it is not read at all.
        if kind.is_for_directory() {
            let cut = &bytes[..bytes.len() - 1];
            assert_eq!(
                wire::decode_reply(cut, authenticated).unwrap_err(),
                DecodeError::Request(kind as u8)
            );
        }
    }
}
