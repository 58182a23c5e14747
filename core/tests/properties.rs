//! Property tests: encode/decode round trips, and no input ever panics a decoder or a
//! state machine.

use herald_core::wire::{self, Message};
use herald_core::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn name() -> impl Strategy<Value = ServiceName> {
    "[a-zA-Z0-9][a-zA-Z0-9 ._äß-]{0,20}[a-zA-Z0-9]"
        .prop_filter_map("valid", |s| ServiceName::new(&s).ok())
}

fn location() -> impl Strategy<Value = Location> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..).prop_filter_map("valid", |(o, p)| Location::new(
            IpAddr::V4(Ipv4Addr::from(o)),
            p
        )
        .ok()),
        (any::<[u8; 16]>(), 1u16..).prop_filter_map("valid", |(o, p)| Location::new(
            IpAddr::V6(Ipv6Addr::from(o)),
            p
        )
        .ok()),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    proptest::collection::vec(("[a-z]{1,8}", "[ -~]{0,12}"), 0..4).prop_map(|pairs| {
        let mut m = Metadata::new();
        for (k, v) in pairs {
            let _ = m.insert(&k, &v);
        }
        m
    })
}

fn registration() -> impl Strategy<Value = Registration> {
    (
        name(),
        proptest::collection::vec(location(), 1..=4),
        metadata(),
    )
        .prop_filter_map("distinct locations", |(n, l, m)| {
            Registration::new(n, &l).ok().map(|r| r.with_metadata(m))
        })
}

fn environment() -> impl Strategy<Value = Environment> {
    "[a-z0-9_.-]{1,16}".prop_map(|s| Environment::new(&s).unwrap())
}

fn roundtrip<M: wire::Single>(env: &Environment, m: &M) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let n = wire::encode(env, m, &mut buf).expect("every single message fits 1400 bytes");
    assert!(
        n <= wire::MIN_MAX_DATAGRAM,
        "a single message must fit the minimum size"
    );
    buf[..n].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn herald_like_bytes_never_panic(kind in any::<u8>(), env_len in 0u8..20,
                                     tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut bytes = vec![b'H', b'R', 1, kind, 0, env_len];
        bytes.extend(std::iter::repeat_n(b'a', usize::from(env_len)));
        bytes.extend(tail);
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn register_roundtrips(env in environment(), r in registration(), request in any::<u32>(),
                           registrant in any::<u64>(), sequence in any::<u64>(), lease in 0u64..1_000_000) {
        let m = wire::RegisterRequest { request, registrant, sequence, lease: Duration::from_millis(lease), registration: r };
        let bytes = roundtrip(&env, &m);
        let frame = wire::decode(&bytes).unwrap();
        prop_assert_eq!(frame.environment, env);
        match frame.message { Message::Register(back) => prop_assert_eq!(back, m), other => panic!("{other:?}") }
    }

    #[test]
    fn snapshot_request_roundtrips(env in environment(), after in proptest::option::of(name()),
                                   patterns in proptest::collection::vec(name(), 0..4), prefix in any::<bool>(),
                                   cookie in proptest::option::of(any::<[u8; 16]>())) {
        let mut interest = Interest::all();
        for p in &patterns {
            let pattern = if prefix { Pattern::prefix(p.as_str()).unwrap() } else { Pattern::exact(p) };
            interest.push(pattern).unwrap();
        }
        let m = wire::SnapshotRequest { request: 9, max_pages: 3, after, interest, cookie, since: None };
        let bytes = roundtrip(&env, &m);
        match wire::decode(&bytes).unwrap().message { Message::SnapshotRequest(back) => prop_assert_eq!(back, m), other => panic!("{other:?}") }
    }

    #[test]
    fn announcements_roundtrip_and_respect_the_size(regs in proptest::collection::vec(registration(), 1..40),
                                                    max in 512usize..1500) {
        let env = Environment::default();
        let changes: Vec<wire::Change> = regs.into_iter().enumerate().map(|(i, r)| {
            if i % 3 == 0 {
                wire::Change::Unregistered { name: r.name, version: Version(i as u64) }
            } else {
                wire::Change::Registered(Service { registration: r, version: Version(i as u64) })
            }
        }).collect();
        let header = wire::AnnounceHeader {
            directory: Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 37399).unwrap(),
            as_of: Version(77),
            previous: Version(0),
        };
        // Split over as many datagrams as needed; each decodes to its share, in order.
        let mut rest = &changes[..];
        while !rest.is_empty() {
            let mut buf = vec![0u8; max];
            let mut w = wire::BatchWriter::announce(&env, &header, &mut buf).unwrap();
            let mut taken = 0;
            while taken < rest.len() && w.push(&rest[taken]) { taken += 1; }
            prop_assert!(taken > 0, "one change always fits");
            let n = w.len();
            prop_assert!(n <= max);
            match wire::decode(&buf[..n]).unwrap().message {
                Message::Announce(h, items) => {
                    prop_assert_eq!(h, header);
                    let back: Vec<wire::Change> = items.collect();
                    prop_assert_eq!(&back[..], &rest[..taken]);
                }
                other => panic!("{other:?}"),
            }
            rest = &rest[taken..];
        }
    }

    #[test]
    fn flipped_bits_in_valid_frames_never_panic(r in registration(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let m = wire::RegisterRequest { request: 1, registrant: 2, sequence: 3, lease: Duration::ZERO, registration: r };
        let mut bytes = roundtrip(&Environment::default(), &m);
        for (at, mask) in flips {
            let i = at % bytes.len();
            bytes[i] ^= mask;
        }
        let _ = wire::decode(&bytes);
    }

    #[test]
    fn state_machines_survive_arbitrary_datagrams(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..30)) {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let at = Location::new(ip, 37399).unwrap();
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let mut storage = directory::DirectoryStorage::<8>::new();
        let (slots, index) = storage.parts();
        let mut d = Directory::new(DirectoryConfig::new(at, group), slots, index).unwrap();
        let mut table = client::ClientStorage::<8>::new();
        let (known, known_index) = table.parts();
        let mut config = ClientConfig::new(1);
        // A register-only build (no `listen`) takes the same datagrams without one.
        if cfg!(feature = "listen") {
            config.interest = Some(Interest::all());
        }
        config.directories.push(at).unwrap();
        let mut c: Client<'_, 2> = Client::new(config, known, known_index).unwrap();
        let from = SocketAddr::new(ip, 37399);
        let mut buf = [0u8; 1400];
        for (i, bytes) in datagrams.iter().enumerate() {
            let now = Instant::from_millis(i as u64 * 10);
            d.handle_datagram(now, from, bytes);
            c.handle_datagram(now, from, bytes);
            d.handle_timeout(now);
            c.handle_timeout(now);
            while d.poll_transmit(now, &mut buf).is_some() {}
            while c.poll_transmit(now, &mut buf).is_some() {}
            while d.poll_event().is_some() {}
            while c.poll_event().is_some() {}
        }
    }
}
