//! Micro-benchmarks of the core: codec, directory and client, each beside a copy of the
//! same bytes (the `memcpy` baseline), so results read as "k× a copy".
//!
//! Run with `cargo bench -p herald-core --bench core`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use herald_core::auth;
use herald_core::wire::{self, BatchWriter, Change};
use herald_core::*;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn dir_location() -> Location {
    Location::new(IP, 37399).unwrap()
}

fn group() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371)
}

fn registration(i: usize) -> Registration {
    let mut meta = Metadata::new();
    meta.insert("version", "1.4.2").unwrap();
    Registration::new(
        ServiceName::new(&format!("service-{i:05}.eu-west")).unwrap(),
        &[Location::new(IP, 10_000 + (i % 50_000) as u16).unwrap()],
    )
    .unwrap()
    .with_metadata(meta)
}

fn register_frame(i: usize, registrant: u64) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let request = wire::RegisterRequest {
        request: i as u32 + 1,
        registrant,
        sequence: 1,
        lease: Duration::from_secs(15),
        registration: registration(i),
    };
    let n = wire::encode(&Environment::default(), &request, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn announce_frame(count: usize) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let header = wire::AnnounceHeader {
        directory: dir_location(),
        as_of: Version(1_000 + count as u64),
        previous: Version(0),
    };
    let mut w = BatchWriter::announce(&Environment::default(), &header, &mut buf).unwrap();
    for i in 0..count {
        let service = Service {
            registration: registration(i),
            version: Version(1_000 + i as u64),
        };
        assert!(
            w.push(&Change::Registered(service)),
            "batch of {count} fits"
        );
    }
    let n = w.len();
    buf[..n].to_vec()
}

/// Encodes a single message into a fresh frame.
fn single<M: wire::Single>(m: &M) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), m, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// A page of `count` services (snapshot reply or sweep).
fn page_frame(count: usize) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let header = wire::PageHeader {
        request: 3,
        as_of: Version(2_000),
        after: None,
        complete: true,
    };
    let kind = wire::PageKind::Snapshot;
    let mut w = BatchWriter::page(&Environment::default(), &header, kind, &mut buf).unwrap();
    for i in 0..count {
        let service = Service {
            registration: registration(i),
            version: Version(1_000 + i as u64),
        };
        assert!(w.push(&service), "page of {count} fits");
    }
    let n = w.len();
    buf[..n].to_vec()
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let register = register_frame(1, 7);
    let announce = announce_frame(20);
    let others = [
        (
            "unregister",
            single(&wire::UnregisterRequest {
                request: 2,
                registrant: 7,
                sequence: 2,
                name: registration(1).name,
            }),
        ),
        (
            "snapshot-request",
            single(&wire::SnapshotRequest {
                request: 3,
                max_pages: 16,
                after: Some(registration(1).name),
                interest: Interest::parse_all(["service-*"]).unwrap(),
                cookie: None,
                since: None,
            }),
        ),
        (
            "ack",
            single(&wire::Ack {
                request: 1,
                lease: Duration::from_secs(15),
                version: Version(1_000),
            }),
        ),
        (
            "reject",
            single(&wire::Reject {
                request: 1,
                reason: RejectReason::NameHeld,
                directory_environment: Environment::default(),
                floor: 0,
            }),
        ),
        (
            "beacon",
            single(&wire::Beacon {
                directory: dir_location(),
                as_of: Version(1_000),
                services: 20,
                publishing: true,
                digest: 0,
            }),
        ),
        ("page-20", page_frame(20)),
    ];
    let all = [
        ("register", register.clone()),
        ("announce-20", announce.clone()),
    ];
    for (name, bytes) in all.iter().chain(others.iter()) {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("{name}/memcpy"), |b| {
            let mut out = vec![0u8; bytes.len()];
            b.iter(|| {
                out.copy_from_slice(black_box(bytes));
                black_box(&out);
            })
        });
        g.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| match wire::decode(black_box(bytes)).unwrap().message {
                wire::Message::Announce(_, items) => items.for_each(|i| {
                    black_box(i);
                }),
                wire::Message::SnapshotPage(_, items) => items.for_each(|i| {
                    black_box(i);
                }),
                other => {
                    black_box(other);
                }
            })
        });
    }
    let request = wire::RegisterRequest {
        request: 1,
        registrant: 7,
        sequence: 1,
        lease: Duration::from_secs(15),
        registration: registration(1),
    };
    g.bench_function("register/encode", |b| {
        let mut buf = [0u8; 1400];
        b.iter(|| wire::encode(&Environment::default(), black_box(&request), &mut buf).unwrap())
    });
    g.bench_function("announce-20/encode", |b| {
        b.iter(|| announce_frame(black_box(20)))
    });
    g.finish();
}

fn authentication(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    let keys = auth::Keys::new(auth::Key::new(1, b"a 32-byte benchmark key........!").unwrap());
    for (name, frame) in [
        ("register", register_frame(1, 7)),
        ("announce-20", announce_frame(20)),
    ] {
        let mut buf = vec![0u8; frame.len() + auth::TRAILER_LEN];
        buf[..frame.len()].copy_from_slice(&frame);
        g.throughput(Throughput::Bytes(frame.len() as u64));
        g.bench_function(format!("{name}/seal"), |b| {
            b.iter(|| auth::seal(&keys, black_box(9), &mut buf, frame.len()).unwrap())
        });
        let sealed = buf.clone();
        g.bench_function(format!("{name}/open"), |b| {
            b.iter(|| auth::open(&keys, black_box(&sealed)).unwrap())
        });
    }
    g.finish();
}

/// A directory holding `n` services registered by registrant 7.
fn directory_with(n: usize) -> Directory<'static> {
    let slots = Vec::leak(vec![None; n + 16]);
    let index = Vec::leak(vec![0u32; n + 16]);
    let mut d =
        Directory::new(DirectoryConfig::new(dir_location(), group()), slots, index).unwrap();
    let from = SocketAddr::new(IP, 5000);
    let mut buf = [0u8; 1400];
    for i in 0..n {
        d.handle_datagram(Instant::ZERO, from, &register_frame(i, 7));
        while d.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    }
    while d.poll_event().is_some() {}
    d
}

fn directory(c: &mut Criterion) {
    let mut g = c.benchmark_group("directory");
    let from = SocketAddr::new(IP, 5000);
    let n = 1_000;
    let renewal = register_frame(n / 2, 7);
    g.bench_function("renewal/memcpy", |b| {
        let mut out = vec![0u8; renewal.len()];
        b.iter(|| {
            out.copy_from_slice(black_box(&renewal));
            black_box(&out);
        })
    });
    let mut d = directory_with(n);
    g.bench_function("renewal-of-1000/handle+ack", |b| {
        let mut buf = [0u8; 1400];
        b.iter(|| {
            d.handle_datagram(Instant::ZERO, from, black_box(&renewal));
            black_box(d.poll_transmit(Instant::ZERO, &mut buf));
            while d.poll_event().is_some() {}
        })
    });
    let fresh = register_frame(n + 1, 7);
    g.bench_function("registration-into-1000/handle+ack+announce", |b| {
        b.iter_batched_ref(
            || directory_with(n),
            |d| {
                let mut buf = [0u8; 1400];
                d.handle_datagram(Instant::ZERO, from, black_box(&fresh));
                while d.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
            },
            BatchSize::LargeInput,
        )
    });
    let mut buf = [0u8; 1400];
    let unregister = {
        let request = wire::UnregisterRequest {
            request: 9,
            registrant: 7,
            sequence: 2,
            name: registration(n / 2).name,
        };
        let len = wire::encode(&Environment::default(), &request, &mut buf).unwrap();
        buf[..len].to_vec()
    };
    g.bench_function("unregister-of-1000/handle+ack+announce", |b| {
        b.iter_batched_ref(
            || directory_with(n),
            |d| {
                let mut buf = [0u8; 1400];
                d.handle_datagram(Instant::ZERO, from, black_box(&unregister));
                while d.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn client(c: &mut Criterion) {
    let mut g = c.benchmark_group("client");
    let announce = announce_frame(20);
    let from = dir_location().socket_addr();
    g.bench_function("announce-20/memcpy", |b| {
        let mut out = vec![0u8; announce.len()];
        b.iter(|| {
            out.copy_from_slice(black_box(&announce));
            black_box(&out);
        })
    });
    let make = || {
        let mut config = ClientConfig::new(1);
        config.interest = Some(Interest::all());
        config.directories.push(dir_location()).unwrap();
        let slots = Vec::leak(vec![None; 64]);
        let index = Vec::leak(vec![0u32; 64]);
        Client::<'static, 2>::new(config, slots, index).unwrap()
    };
    g.bench_function("announce-20/handle+events", |b| {
        b.iter_batched_ref(
            make,
            |c| {
                c.handle_datagram(Instant::ZERO, from, black_box(&announce));
                while let Some(e) = c.poll_event() {
                    black_box(e);
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut steady = make();
    steady.handle_datagram(Instant::ZERO, from, &announce);
    while steady.poll_event().is_some() {}
    g.bench_function("announce-20-repeated/handle (no events)", |b| {
        b.iter(|| {
            steady.handle_datagram(Instant::ZERO, from, black_box(&announce));
            assert!(steady.poll_event().is_none());
        })
    });
    g.finish();
}

criterion_group!(benches, codec, authentication, directory, client);
criterion_main!(benches);
