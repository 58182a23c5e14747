//! Refusals and bad input through the real binary: the wrong environment, no
//! directory at all, and a burst of random bytes at the request port.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn client(net: &Net, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(net.client_args());
    run(&all, Duration::from_secs(15))
}

#[test]
fn a_registration_in_the_wrong_environment_fails_naming_both() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &["--environment", "prod"]);
    let out = client(
        &net,
        &[
            "register",
            "billing",
            "127.0.0.1:8080",
            "--environment",
            "staging",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("environment mismatch"), "{err}");
    assert!(
        err.contains("\"staging\"") && err.contains("\"prod\""),
        "{err}"
    );
    // The same request in the right environment works.
    let out = client(
        &net,
        &[
            "register",
            "billing",
            "127.0.0.1:8080",
            "--environment",
            "prod",
            "--once",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_registration_nobody_answers_fails_within_the_timeout() {
    let net = Net::new(); // No directory on it.
    let start = Instant::now();
    let out = client(
        &net,
        &["register", "billing", "127.0.0.1:8080", "--timeout", "1"],
    );
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no directory answered"), "{err}");
    assert!(err.contains(&net.directory.to_string()), "{err}");
    // What the client sent and heard: attempts, and no answer at all.
    assert!(err.contains("datagrams sent, 0 received"), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let out = client(&net, &["list", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn invalid_input_is_refused_with_the_reason() {
    let net = Net::new();
    let cases: [(&[&str], &str); 3] = [
        (
            &["register", " padded", "127.0.0.1:1"],
            "invalid service name",
        ),
        (&["register", "x", "0.0.0.0:1"], "invalid location"),
        (
            &["register", "x", "127.0.0.1:1", "--meta", "bad key=v"],
            "invalid metadata",
        ),
    ];
    for (args, reason) in cases {
        let out = client(&net, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}

/// xorshift32: the same bytes every run.
fn noise(seed: &mut u32) -> u32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    *seed
}

#[test]
fn the_directory_still_serves_after_a_burst_of_random_bytes() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let dir = directory(&net, data.path(), &["--metrics", &metrics]);
    let _before = registrant(&net, "before", &["127.0.0.1:7001"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x1234_5678;
    let mut sent = 0;
    for i in 0..2000 {
        let len = (noise(&mut seed) % 1500) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
        // Every other datagram looks like a Herald header, to reach past the magic.
        if i % 2 == 0 && bytes.len() >= 4 {
            bytes[0] = b'H';
            bytes[1] = b'R';
            bytes[2] = 1;
        }
        if socket.send_to(&bytes, net.directory).is_ok() {
            sent += 1;
        }
    }
    assert_eq!(sent, 2000);
    let _after = registrant(&net, "after", &["127.0.0.1:7002"]);
    let list = ok(&net, &["list"]);
    assert_eq!(list, "after 127.0.0.1:7002\nbefore 127.0.0.1:7001\n");
    // It counted what it dropped (the registry size is refreshed every 250 ms, and at
    // least every beacon).
    let deadline = Instant::now() + Duration::from_secs(3);
    let text = loop {
        let text = http_get(&metrics, "/metrics");
        if metric(&text, "herald_services") == 2.0 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let malformed = metric(&text, "herald_malformed_total");
    println!("malformed datagrams counted: {malformed}");
    assert!(malformed >= 1000.0, "{text}");
    assert_eq!(metric(&text, "herald_services"), 2.0, "{text}");
    assert_eq!(metric(&text, "herald_registrations_total"), 2.0, "{text}");
    // A directory alone, on its embedded store: always reachable, always publishing.
    assert_eq!(metric(&text, "herald_store_reachable"), 1.0, "{text}");
    assert_eq!(metric(&text, "herald_publishing"), 1.0, "{text}");
    assert_eq!(metric(&text, "herald_store_queued_writes"), 0.0, "{text}");
    assert!(
        !dir.stderr().contains("panicked"),
        "directory panicked:\n{}",
        dir.stderr()
    );
}
