//! The checked-in seed corpora (`corpus/<target>/seed-*`), generated from the protocol
//! test vectors in `docs/PROTOCOL.md` and from short scenarios encoded with the real
//! encoder. The test fails when the files differ from what this generates, or when a
//! seed fails its target. Regenerate with:
//!
//! ```text
//! HERALD_WRITE_SEEDS=1 cargo test --test seeds
//! ```

use arbitrary::{Arbitrary, Unstructured};
use herald_core::auth::TRAILER_LEN;
use herald_core::wire::{AnnounceHeader, Change, PageHeader, RegisterRequest, UnregisterRequest};
use herald_core::wire::{Beacon, SnapshotRequest};
use herald_core::{Duration, Environment, Interest, Service, ServiceName, Version};
use herald_fuzz::codec::{self, RoundtripInput};
use herald_fuzz::input::{InputWriter, Op};
use herald_fuzz::message::{seal, OwnedFrame, OwnedMessage};
use herald_fuzz::world::{
    directory, keys, SmallLocation, SmallMetadata, SmallName, SmallRegistration,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const PROTOCOL: &str = include_str!("../../docs/PROTOCOL.md");

/// Every `<!-- vector: NAME -->` of PROTOCOL.md with the bytes of the hex block after it.
fn vectors() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, _) in PROTOCOL.match_indices("<!-- vector: ") {
        let rest = &PROTOCOL[i + "<!-- vector: ".len()..];
        let name = &rest[..rest.find(" -->").expect("marker closes")];
        let block = &rest[rest.find("```text").expect("hex block") + "```text".len()..];
        let hex = &block[..block.find("```").expect("hex block closes")];
        let bytes = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect();
        out.push((name.to_string(), bytes));
    }
    assert!(out.len() >= 9, "PROTOCOL.md lost its vectors");
    out
}

/// The same frame in the `default` environment (the state-machine targets' own).
fn in_default_environment(frame: &[u8]) -> Vec<u8> {
    let env_len = usize::from(frame[5]);
    let mut out = frame[..5].to_vec();
    out.push(7);
    out.extend_from_slice(b"default");
    out.extend_from_slice(&frame[6 + env_len..]);
    out
}

fn encode(message: OwnedMessage) -> Vec<u8> {
    OwnedFrame {
        environment: Environment::default(),
        message,
    }
    .to_vec(1400)
    .expect("fits")
}

fn name(s: &str) -> ServiceName {
    ServiceName::new(s).expect("valid")
}

fn small(n: u8, location: u8, metadata: u8) -> SmallRegistration {
    SmallRegistration {
        name: SmallName(n),
        first: SmallLocation(location),
        more: [Some(SmallLocation(location + 1)), None, None],
        metadata: SmallMetadata(metadata),
    }
}

fn register(request: u32, registrant: u64, r: SmallRegistration) -> Vec<u8> {
    encode(OwnedMessage::Register(RegisterRequest {
        request,
        registrant,
        sequence: u64::from(request),
        lease: Duration::from_millis(400),
        registration: r.registration(),
    }))
}

/// The seeds of a state-machine target: the vectors, a lifecycle of `steps`, and the
/// same lifecycle in an authenticated environment.
fn seed_set(
    config: [u8; 8],
    vectors: Vec<u8>,
    steps: &[(Op, u8, u16, Vec<u8>)],
) -> Vec<(String, Vec<u8>)> {
    let lifecycle = write(config, steps, false);
    let mut auth = config;
    auth[6] = 209;
    let authenticated = write(auth, steps, true);
    vec![
        ("vectors".into(), vectors),
        ("lifecycle".into(), lifecycle),
        ("authenticated".into(), authenticated),
    ]
}

/// A seed for a state-machine target: `config`, every protocol vector as a raw
/// datagram, then a deadline.
fn vector_seed(config: [u8; 8]) -> Vec<u8> {
    let mut w = InputWriter::new(config);
    for (_, frame) in vectors() {
        w = w.step(Op::Raw, 0, 10, &in_default_environment(&frame));
    }
    w.step(Op::Deadline, 0, 0, &[]).finish()
}

fn directory_seeds() -> Vec<(String, Vec<u8>)> {
    // N = 3, capacity 4, 512-byte datagrams, 50 ms interval, 1 s beacons and sweeps,
    // leases 200 ms to 600 ms.
    let config = [2, 3, 0, 0, 49, 9, 9, 8];
    let vectors = vector_seed(config);

    let snapshot = encode(OwnedMessage::SnapshotRequest(SnapshotRequest {
        request: 9,
        max_pages: 2,
        after: None,
        interest: Interest::all(),
        cookie: None,
        since: None,
    }));
    let unregister = encode(OwnedMessage::Unregister(UnregisterRequest {
        request: 10,
        registrant: 1,
        sequence: 10,
        name: name("billing"),
    }));
    let mut steps = vec![
        (Op::Raw, 0, 0, register(1, 1, small(2, 0, 1))),
        (Op::Raw, 1, 5, register(2, 2, small(4, 2, 3))),
        (Op::Raw, 1, 5, register(3, 2, small(2, 1, 0))),
        (Op::Raw, 2, 5, snapshot),
        (Op::Deadline, 0, 0, vec![]),
        (Op::Raw, 0, 5, unregister),
    ];
    steps.extend((0..6).map(|_| (Op::Deadline, 0, 0, vec![])));
    steps.push((Op::Raw, 1, 5, register(4, 2, small(2, 1, 2))));
    steps.push((Op::Timeout, 0, 5000, vec![]));
    seed_set(config, vectors, &steps)
}

/// Writes `steps`; with `sealed`, every frame is sealed with the small world's keys and
/// a counter that follows the clock, as the harnesses expect.
fn write(config: [u8; 8], steps: &[(Op, u8, u16, Vec<u8>)], sealed: bool) -> Vec<u8> {
    let mut w = InputWriter::new(config);
    let mut now_ms = 0u64;
    for (i, (op, sender, dt, payload)) in steps.iter().enumerate() {
        now_ms += u64::from(*dt);
        let payload = if sealed && !payload.is_empty() {
            seal(payload, &keys(), now_ms * 1000 + i as u64 + 1)
        } else {
            payload.clone()
        };
        w = w.step(*op, *sender, *dt, &payload);
    }
    w.finish()
}

fn client_seeds() -> Vec<(String, Vec<u8>)> {
    // Interest in everything, one directory, a table of 4.
    let config = [1, 1, 3, 24, 3, 29, 10, 16];
    let vectors = vector_seed(config);

    let service = |n: u8, location: u8, metadata: u8, version: u64| Service {
        registration: small(n, location, metadata).registration(),
        version: Version(version),
    };
    let header = AnnounceHeader {
        directory: directory(0),
        as_of: Version(5),
        previous: Version(0),
    };
    let beacon = encode(OwnedMessage::Beacon(Beacon {
        directory: directory(0),
        as_of: Version(5),
        services: 2,
        publishing: true,
        digest: 0,
    }));
    let announce = |changes| encode(OwnedMessage::Announce(header, changes));
    let sync = encode(OwnedMessage::SyncPage(
        PageHeader {
            request: 0,
            as_of: Version(9),
            after: None,
            complete: true,
        },
        vec![service(4, 0, 0, 8)],
    ));
    let removal = announce(vec![Change::Unregistered {
        name: name("billing"),
        version: Version(7),
    }]);
    let steps = vec![
        (Op::Raw, 0, 0, beacon),
        (
            Op::Raw,
            0,
            5,
            announce(vec![Change::Registered(service(2, 0, 1, 3))]),
        ),
        (
            Op::Raw,
            0,
            5,
            announce(vec![Change::Registered(service(4, 1, 0, 4))]),
        ),
        (
            Op::Raw,
            0,
            5,
            announce(vec![Change::Registered(service(2, 1, 2, 6))]),
        ),
        (Op::Raw, 0, 5, removal),
        (Op::Raw, 0, 5, sync),
        (Op::Deadline, 0, 0, vec![]),
        (Op::Timeout, 0, 4000, vec![]),
    ];
    seed_set(config, vectors, &steps)
}

/// The history target's seeds: a fault mask (two bytes), then the schedule's choices
/// (two bytes each). Quiet schedules only, so the seeds pass on any correct core; the
/// fuzzer switches the faults on.
fn history_seeds() -> Vec<(String, Vec<u8>)> {
    // Two steps, each a registration of one name, on one directory.
    let quiet = vec![0u8; 2];
    // No fault class; a pseudo-random stream of choices (a longer schedule of bursts).
    let mut busy = vec![0u8; 2];
    let mut x: u32 = 0x1234_5678;
    for _ in 0..96 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        busy.push(x as u8);
    }
    vec![("quiet".into(), quiet), ("busy".into(), busy)]
}

/// Every seed: (target, seed name) → bytes.
fn seeds() -> BTreeMap<(&'static str, String), Vec<u8>> {
    let mut out = BTreeMap::new();
    for (name, bytes) in vectors() {
        out.insert(("decode", name.clone()), bytes.clone());
        out.insert(("roundtrip", name), bytes);
    }
    for (name, bytes) in directory_seeds() {
        out.insert(("directory", name), bytes);
    }
    for (name, bytes) in client_seeds() {
        out.insert(("client", name), bytes);
    }
    for (name, bytes) in history_seeds() {
        out.insert(("history", name), bytes);
    }
    out
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

fn run(target: &str, bytes: &[u8]) {
    match target {
        "decode" => codec::decode(bytes),
        "roundtrip" => {
            if let Ok(input) = RoundtripInput::arbitrary_take_rest(Unstructured::new(bytes)) {
                codec::roundtrip(&input);
            }
        }
        "directory" => herald_fuzz::directory::run(bytes),
        "client" => herald_fuzz::client::run(bytes),
        "history" => herald_fuzz::history::run(bytes),
        _ => unreachable!(),
    }
}

#[test]
fn seeds_pass_their_targets() {
    for ((target, name), bytes) in seeds() {
        eprintln!("{target}/seed-{name}");
        run(target, &bytes);
    }
}

/// Inputs the fuzzers found failing, kept in `regressions/TARGET/` and replayed.
#[test]
fn regressions_pass_their_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    for target in ["decode", "roundtrip", "directory", "client", "history"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            eprintln!("{}", path.display());
            run(target, &std::fs::read(&path).expect("regression input"));
        }
    }
}

#[test]
fn every_vector_decodes() {
    for (name, bytes) in vectors() {
        let flagged = bytes[4] & herald_core::wire::header::FLAG_AUTHENTICATED != 0;
        let body = &bytes[..bytes.len() - if flagged { TRAILER_LEN } else { 0 }];
        let decoded = if flagged {
            herald_core::wire::decode_authenticated(body).map(|_| ())
        } else {
            herald_core::wire::decode(body).map(|_| ())
        };
        assert!(decoded.is_ok(), "{name} does not decode");
        if flagged {
            continue;
        }
        let default = in_default_environment(&bytes);
        assert!(herald_fuzz::message::decode_owned(&default).is_ok());
    }
}

#[test]
fn checked_in_seeds_are_current() {
    let seeds = seeds();
    let write = std::env::var_os("HERALD_WRITE_SEEDS").is_some();
    for target in ["decode", "roundtrip", "directory", "client", "history"] {
        let dir = corpus().join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = entry.expect("entry").path();
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            if let Some(name) = file.strip_prefix("seed-") {
                let known = seeds.contains_key(&(target, name.to_string()));
                if write && !known {
                    std::fs::remove_file(&path).expect("remove stale seed");
                } else {
                    assert!(known, "stale seed {}", path.display());
                }
            }
        }
    }
    for ((target, name), bytes) in &seeds {
        let path = corpus().join(target).join(format!("seed-{name}"));
        if write {
            std::fs::write(&path, bytes).expect("write seed");
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == *bytes,
                "{} is out of date: run HERALD_WRITE_SEEDS=1 cargo test --test seeds",
                path.display()
            );
        }
    }
}
