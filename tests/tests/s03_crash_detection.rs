//! Scenario 3: crash detection. A registrant killed with SIGKILL is announced
//! unregistered within its lease plus one processing interval.

use herald_tests::harness::herald::{count, register};
use herald_tests::harness::host::Host;
use herald_tests::harness::wait::secs;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_millis(50);
/// Timer and scheduling slack of a loaded 2-core machine running debug builds.
const SLACK: Duration = Duration::from_millis(400);

#[test]
fn killed_registrant_expires_within_its_lease() {
    let host = Host::loopback("lo");
    let directory = Directory::start(&host, "directory", DirectoryOptions::new("s03"));
    let conn = directory.connect();
    let watcher = Watcher::start(&host, "watch", &conn, &[]);
    watcher.wait_ready(Duration::from_secs(10));

    let mut registrant = register(
        &host,
        &conn,
        "crashy",
        &[host.addr(9000)],
        &["--lease", &LEASE.as_secs().to_string()],
    );
    let alive = register(
        &host,
        &conn,
        "steady",
        &[host.addr(9001)],
        &["--lease", "2"],
    );
    watcher.wait(Duration::from_secs(10), "both discovered", |e| {
        count(e, "discovered", "crashy") == 1 && count(e, "discovered", "steady") == 1
    });
    // Renewals keep it alive past several leases.
    std::thread::sleep(LEASE * 2);
    assert_eq!(
        watcher.count("unregistered", "crashy"),
        0,
        "expired while renewed"
    );

    registrant.kill();
    let killed = Instant::now();
    watcher.wait(
        LEASE + INTERVAL + SLACK + Duration::from_secs(5),
        "crashy unregistered",
        |e| count(e, "unregistered", "crashy") == 1,
    );
    let detected = killed.elapsed();
    eprintln!(
        "[s03] SIGKILL to unregistered: {} (lease {}, bound {})",
        secs(detected),
        secs(LEASE),
        secs(LEASE + INTERVAL + SLACK)
    );
    assert!(
        detected <= LEASE + INTERVAL + SLACK,
        "detected after {detected:?}, more than lease + interval"
    );
    // Every repeat of the notification is one event only; the live one stays.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(watcher.count("unregistered", "crashy"), 1);
    assert_eq!(watcher.count("unregistered", "steady"), 0);
    drop(alive);
}
