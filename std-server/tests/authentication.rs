//! Authenticated environments through the real binary over loopback: with a key on the
//! directory and the clients, legitimate traffic works (also during a key rotation),
//! while forged, altered, replayed and takeover frames are refused and counted; a client
//! without the key gets no service; bad key files stop a command with exit status 2.
//!
//! The hostile frames are built and sealed here with `herald_core`, and sent from a
//! plain UDP socket (to the request port, or to the group out of loopback).

mod common;

use common::*;
use herald_core::auth::{self, Key, Keys};
use herald_core::wire::{
    self, AnnounceHeader, BatchWriter, Change, RegisterRequest, Single, UnregisterRequest,
};
use herald_core::{Environment, Location, Registration, ServiceName, Version};
use herald_server::clock::unix_micros;
use herald_server::keys;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A 32-byte secret, different for every `seed`.
fn secret(seed: u8) -> Vec<u8> {
    (0..32u8)
        .map(|i| i.wrapping_mul(31) ^ seed.wrapping_mul(97))
        .collect()
}

/// Writes a key file (mode 600) for key `id` with the secret of `seed`.
fn key_file(dir: &Path, name: &str, id: u8, seed: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, keys::format(id, &secret(seed)).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// The keys a key file of `key_file(_, _, id, seed)` holds.
fn keys_of(id: u8, seed: u8) -> Keys {
    Keys::new(Key::new(id, &secret(seed)).unwrap())
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `message` in environment `default`, sealed with `keys` and the wall clock as counter.
fn sealed<M: Single>(keys: &Keys, message: &M) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), message, &mut buf).unwrap();
    let n = auth::seal(keys, unix_micros(), &mut buf, n).unwrap();
    buf[..n].to_vec()
}

fn unregister_request(registrant: u64, name: &str) -> UnregisterRequest {
    UnregisterRequest {
        request: 7,
        registrant,
        sequence: unix_micros(),
        name: ServiceName::new(name).unwrap(),
    }
}

fn register_request(registrant: u64, name: &str, at: SocketAddr) -> RegisterRequest {
    let location = Location::from_socket_addr(at).unwrap();
    RegisterRequest {
        request: 8,
        registrant,
        sequence: unix_micros(),
        lease: herald_core::Duration::from_secs(10),
        registration: Registration::new(ServiceName::new(name).unwrap(), &[location]).unwrap(),
    }
}

/// An announcement "from" `directory` that `name` is gone, with a version far ahead.
fn forged_announcement(keys: &Keys, directory: SocketAddr, name: &str) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let header = AnnounceHeader {
        directory: Location::from_socket_addr(directory).unwrap(),
        as_of: Version(u64::MAX / 2),
        previous: Version(0),
    };
    let mut w = BatchWriter::announce(&Environment::default(), &header, &mut buf).unwrap();
    assert!(w.push(&Change::Unregistered {
        name: ServiceName::new(name).unwrap(),
        version: Version(u64::MAX / 2),
    }));
    let n = w.len();
    let n = auth::seal(keys, unix_micros(), &mut buf, n).unwrap();
    buf[..n].to_vec()
}

/// A socket that sends multicast out of loopback only.
fn loopback_multicast_sender() -> UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    socket.set_multicast_ttl_v4(0).unwrap();
    socket.set_multicast_loop_v4(true).unwrap();
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&bind.into()).unwrap();
    socket.into()
}

/// Polls the metrics endpoint (bounded) until `done` holds; the last text.
fn metrics_when(addr: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = http_get(addr, "/metrics");
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `herald ARGS… <net>` to completion with extra environment variables.
fn client(net: &Net, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(net.client_args());
    command(&all, env)
}

/// Runs `herald ARGS…` to completion (killed after 15 s) with extra environment
/// variables.
fn command(args: &[impl AsRef<std::ffi::OsStr>], env: &[(&str, &str)]) -> std::process::Output {
    let mut child = herald()
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start herald");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && child.try_wait().expect("wait").is_none() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn forged_altered_replayed_and_takeover_frames_are_refused_and_counted() {
    let net = Net::new();
    let tmp = tempfile::tempdir().unwrap();
    let good = key_file(tmp.path(), "good.key", 1, 1);
    let (keys, wrong) = (keys_of(1, 1), keys_of(1, 2));
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let dir = directory(
        &net,
        &tmp.path().join("data"),
        &["--key-file", s(&good), "--metrics", &metrics],
    );
    let watch = watcher(&net, "watcher", &["--key-file", s(&good)]);
    let _owner = registrant(
        &net,
        "billing",
        &[
            "127.0.0.1:8080",
            "--registrant",
            "42",
            "--lease",
            "2",
            "--key-file",
            s(&good),
        ],
    );
    watch.expect_line("\"name\":\"billing\"", Duration::from_secs(5));
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();

    // 1. A forged announcement on the group: the watcher drops it and says so.
    let forged = forged_announcement(&wrong, net.directory, "billing");
    loopback_multicast_sender()
        .send_to(&forged, net.group)
        .unwrap();
    watch.expect_log(
        "dropped frames that failed authentication",
        Duration::from_secs(5),
    );
    // 2. A forged unregister (the owner's registrant id, the wrong key).
    let forged = sealed(&wrong, &unregister_request(42, "billing"));
    attacker.send_to(&forged, net.directory).unwrap();
    // 3. A valid registration with one bit flipped in its payload.
    let mut flipped = sealed(&keys, &register_request(66, "intruder", net.directory));
    flipped[14] ^= 0x04;
    attacker.send_to(&flipped, net.directory).unwrap();
    let m = metrics_when(&metrics, |t| {
        metric(t, "herald_unauthenticated_total") >= 2.0
    });
    assert_eq!(metric(&m, "herald_unauthenticated_total"), 2.0, "{m}");
    assert_eq!(metric(&m, "herald_unregisters_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "herald_registrations_total"), 1.0, "{m}");

    // 4. A real authenticated unregister (it holds the owner's id and the key) is
    // acted on once; the owner's next renewal registers the name again; the same
    // frame sent again is a replay: dropped by the registrant's replay window (its
    // counter is still remembered there) or, once forgotten, refused by the sequence the
    // renewal stored.
    let unregister = sealed(&keys, &unregister_request(42, "billing"));
    attacker.send_to(&unregister, net.directory).unwrap();
    watch.expect_line("\"event\":\"unregistered\"", Duration::from_secs(5));
    watch.expect_line("\"event\":\"discovered\"", Duration::from_secs(5));
    attacker.send_to(&unregister, net.directory).unwrap();
    // And from another port: the sequence is the registrant's, whatever the address.
    let elsewhere = UdpSocket::bind("127.0.0.1:0").unwrap();
    elsewhere.send_to(&unregister, net.directory).unwrap();
    let refused =
        |t: &str| metric(t, "herald_out_of_order_total") + metric(t, "herald_replayed_total");
    let m = metrics_when(&metrics, |t| refused(t) >= 2.0);
    assert_eq!(refused(&m), 2.0, "{m}");
    assert_eq!(metric(&m, "herald_unregisters_total"), 1.0, "{m}");

    // 5. A takeover by another registrant with a valid key: refused, name_held.
    let key_args = ["--key-file", s(&good)];
    let takeover = [
        &["register", "billing", "127.0.0.1:9999", "--once"][..],
        &["unregister", "billing"][..],
    ];
    for args in takeover {
        let args = [args, &["--registrant", "43"], &key_args].concat();
        let out = client(&net, &args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("name_held"), "{args:?}: {err}");
    }

    // Legitimate traffic goes on: the owner's registration is intact and a new one works.
    let events = watch.lines_for(Duration::from_millis(1500));
    assert_eq!(count(&events, "unregistered", "billing"), 0, "{events:#?}");
    let _other = registrant(&net, "ledger", &["127.0.0.1:8081", "--key-file", s(&good)]);
    let list = ok(&net, &["list", "--key-file", s(&good)]);
    assert_eq!(list, "billing 127.0.0.1:8080\nledger 127.0.0.1:8081\n");
    let m = metrics_when(&metrics, |_| true);
    let name_held = "herald_rejections_total{reason=\"name_held\"}";
    assert_eq!(metric(&m, name_held), 2.0, "{m}");
    assert_eq!(metric(&m, "herald_unauthenticated_total"), 2.0, "{m}");
    assert_eq!(refused(&m), 2.0, "{m}");
    // Std clients start their counters at the wall clock: nothing was stale.
    assert_eq!(metric(&m, "herald_stale_total"), 0.0, "{m}");
    assert!(!dir.stderr().contains("panicked"), "{}", dir.stderr());
}

#[test]
fn a_key_rotation_in_progress_keeps_working() {
    let net = Net::new();
    let tmp = tempfile::tempdir().unwrap();
    let a = key_file(tmp.path(), "a.key", 1, 1);
    let b = key_file(tmp.path(), "b.key", 2, 2);
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    // The directory already signs with B and still accepts A, from its config file.
    let config = tmp.path().join("herald.toml");
    std::fs::write(
        &config,
        format!("key_file = {:?}\naccept_key_file = {:?}\n", s(&b), s(&a)),
    )
    .unwrap();
    let _dir = directory(
        &net,
        &tmp.path().join("data"),
        &["--config", s(&config), "--metrics", &metrics],
    );
    // One client signs with B only; another still signs with A and accepts B (from
    // HERALD_* variables).
    let watch = watcher(&net, "watcher signing B", &["--key-file", s(&b)]);
    let mut args: Vec<String> = [
        "register",
        "rotating",
        "127.0.0.1:7000",
        "--registrant",
        "5",
    ]
    .map(String::from)
    .to_vec();
    args.extend(net.client_args());
    let env = [
        ("HERALD_KEY_FILE", s(&a)),
        ("HERALD_ACCEPT_KEY_FILE", s(&b)),
    ];
    let owner = Proc::spawn("registrant signing A", &args, &env);
    owner.expect_line("registered rotating", Duration::from_secs(10));
    watch.expect_line("\"name\":\"rotating\"", Duration::from_secs(5));
    for (signing, accepting) in [(&b, None), (&a, Some(&b))] {
        let mut args = vec!["list", "--key-file", s(signing)];
        if let Some(accepting) = accepting {
            args.extend(["--accept-key-file", s(accepting)]);
        }
        assert_eq!(ok(&net, &args), "rotating 127.0.0.1:7000\n", "{args:?}");
    }
    let out = client(&net, &["unregister", "rotating", "--registrant", "5"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    watch.expect_line("\"event\":\"unregistered\"", Duration::from_secs(5));
    let m = metrics_when(&metrics, |t| metric(t, "herald_unregisters_total") >= 1.0);
    assert_eq!(metric(&m, "herald_unregisters_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "herald_unauthenticated_total"), 0.0, "{m}");
    assert_eq!(metric(&m, "herald_stale_total"), 0.0, "{m}");
}

#[test]
fn a_client_without_the_key_gets_no_service() {
    let net = Net::new();
    let tmp = tempfile::tempdir().unwrap();
    let good = key_file(tmp.path(), "good.key", 1, 1);
    let other = key_file(tmp.path(), "other.key", 9, 3);
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let _dir = directory(
        &net,
        &tmp.path().join("data"),
        &["--key-file", s(&good), "--metrics", &metrics],
    );
    let start = Instant::now();
    let out = client(&net, &["list", "--timeout", "1"], &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no directory answered"), "{err}");
    assert!(err.contains("--key-file"), "{err}");
    let out = client(
        &net,
        &[
            "register",
            "intruder",
            "127.0.0.1:6666",
            "--timeout",
            "1",
            "--key-file",
            s(&other),
        ],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("key id 9"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(8));
    let m = metrics_when(&metrics, |t| {
        metric(t, "herald_unauthenticated_total") >= 2.0
    });
    assert!(metric(&m, "herald_unauthenticated_total") >= 2.0, "{m}");
    assert_eq!(metric(&m, "herald_registrations_total"), 0.0, "{m}");
    // With the key, the same directory answers.
    assert_eq!(ok(&net, &["list", "--key-file", s(&good)]), "");
}

#[test]
fn bad_key_files_stop_every_command_with_status_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let path = tmp.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let good = key_file(tmp.path(), "good.key", 1, 1);
    let world = write("world.key", &std::fs::read_to_string(&good).unwrap(), 0o644);
    let short = write("short.key", "id = 1\nkey = 00112233\n", 0o600);
    let garbled = write("garbled.key", "id = 1\nsecret: 00\n", 0o600);
    let missing = tmp.path().join("missing.key");
    let data = tmp.path().join("data");
    let cases: [(&[&str], &Path, &str); 5] = [
        (&["serve", "--data-dir", s(&data)], &missing, "cannot read"),
        (&["list"], &world, "chmod 600"),
        (
            &["register", "x", "127.0.0.1:1"],
            &short,
            "at least 16 bytes",
        ),
        (&["watch"], &garbled, "line 2"),
        (&["unregister", "x"], &missing, "cannot read"),
    ];
    for (args, file, problem) in cases {
        let args = [args, &["--key-file", s(file)]].concat();
        let out = command(&args, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(s(file)) && err.contains(problem),
            "{args:?}: {err}"
        );
    }
    // An accepted key alone is refused too.
    let out = command(&["list", "--accept-key-file", s(&good)], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // The resolved configuration names the key file, never the key.
    let out = command(&["serve", "--print-config", "--key-file", s(&good)], &[]);
    let printed = text(&out.stdout);
    let hex: String = secret(1).iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        printed.contains(s(&good)) && !printed.contains(&hex),
        "{printed}"
    );
    // `herald keygen` writes a key file that loads.
    let out = command(&["keygen", "--id", "5"], &[]);
    let generated = keys::parse(&text(&out.stdout)).expect("a key file");
    assert_eq!(generated.id(), 5);
}
