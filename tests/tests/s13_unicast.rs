//! Scenario 13: a network that drops multicast on the listeners' side. Directories
//! announce on the group as usual (`--delivery both`, the default), but an nftables rule
//! in each listener's namespace drops everything addressed to 224.0.0.0/4, so listeners
//! hear no announcement and no beacon. `herald watch` (with `--subscribe auto`, the
//! default) notices the silence, subscribes to unicast deliveries and reports every
//! change exactly once: discovery, unregistration, crash expiry, a directory restart
//! (its subscriber table comes back from disk), failover between two directories, and
//! 20 % loss each way on the unicast path (nftables' random numbers, so it runs where
//! tc netem is missing).

use herald_tests::harness::filter::{drop_multicast, dropped, lose_one_in_five, wait_subscribers};
use herald_tests::harness::herald::{count, register, WatchEvent};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Lab, Watcher};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A lab of `count` hosts whose last `listeners` hosts drop multicast, or `None` after
/// printing why the test is skipped.
fn lab(test: &str, count: usize, listeners: usize) -> Option<Lab> {
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("[{test}] skipped: nft (nftables) is not installed");
        return None;
    }
    let lab = lab_or_skip(test, count)?;
    for i in count - listeners..count {
        drop_multicast(lab.host(i));
    }
    Some(lab)
}

/// Every name in `events` appears with `event` exactly `times` times.
fn assert_each(events: &[WatchEvent], event: &str, names: &[&str], times: usize) {
    for n in names {
        assert_eq!(count(events, event, n), times, "{event} {n}: {events:#?}");
    }
}

#[test]
fn discovery_unregister_and_crash_expiry_reach_a_listener_without_multicast() {
    let Some(lab) = lab("s13", 3, 1) else { return };
    let (d, r, l) = (lab.host(0), lab.host(1), lab.host(2));
    let directory = Directory::start(d, "directory", DirectoryOptions::new("s13").with_metrics());
    let conn = directory.connect();
    let watcher = Watcher::start(l, "listener", &conn, &[]);
    watcher.wait_ready(T);
    // No beacon reaches the listener: it subscribes by itself.
    wait_subscribers(&directory, 1.0);

    let stays = register(r, &conn, "stays", &[r.addr(8001)], &[]);
    let leaves = register(r, &conn, "leaves", &[r.addr(8002)], &[]);
    let crashes = register(r, &conn, "crashes", &[r.addr(8003)], &["--lease", "2"]);
    watcher.wait(T, "all discovered", |e| {
        ["stays", "leaves", "crashes"]
            .iter()
            .all(|n| count(e, "discovered", n) == 1)
    });
    leaves.signal("TERM");
    crashes.signal("KILL");
    watcher.wait(T, "unregistered and expired", |e| {
        count(e, "unregistered", "leaves") == 1 && count(e, "unregistered", "crashes") == 1
    });
    // Past re-sends and a beacon period or two: nothing is reported twice.
    std::thread::sleep(Duration::from_secs(3));
    let e = watcher.events();
    assert_each(&e, "discovered", &["stays", "leaves", "crashes"], 1);
    assert_each(&e, "unregistered", &["leaves", "crashes"], 1);
    assert_each(&e, "unregistered", &["stays"], 0);
    let m = directory.metrics();
    assert!(m.get("herald_deliveries_total") > 0.0, "{m:?}");
    // The group's traffic did reach the listener's link, and was dropped there.
    assert!(dropped(l) > 0, "no multicast was dropped");
    drop(stays);
}

#[test]
fn a_restarted_directory_keeps_delivering_to_its_subscriber() {
    let Some(lab) = lab("s13", 3, 1) else { return };
    let (d, r, l) = (lab.host(0), lab.host(1), lab.host(2));
    let mut directory =
        Directory::start(d, "directory", DirectoryOptions::new("s13").with_metrics());
    let conn = directory.connect();
    let watcher = Watcher::start(l, "listener", &conn, &[]);
    watcher.wait_ready(T);
    wait_subscribers(&directory, 1.0);
    let _before = register(r, &conn, "before", &[r.addr(8001)], &["--lease", "30"]);
    watcher.wait(T, "before discovered", |e| {
        count(e, "discovered", "before") == 1
    });

    directory.restart();
    // Restored from disk, not taken again: the subscriber is there at once.
    let m = directory.metrics();
    assert_eq!(
        m.get("herald_subscribers"),
        1.0,
        "restored subscriber: {m:?}"
    );
    let _after = register(r, &conn, "after", &[r.addr(8002)], &[]);
    watcher.wait(T, "after discovered", |e| {
        count(e, "discovered", "after") == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let e = watcher.events();
    assert_each(&e, "discovered", &["before", "after"], 1);
    assert_each(&e, "unregistered", &["before", "after"], 0);
}

#[test]
fn a_listener_without_multicast_follows_the_second_directory() {
    let Some(lab) = lab("s13", 4, 1) else { return };
    let first_options = DirectoryOptions::new("s13").with_metrics();
    let second_options = DirectoryOptions {
        group: first_options.group,
        ..DirectoryOptions::new("s13").with_metrics()
    };
    let mut first = Directory::start(lab.host(0), "first directory", first_options);
    let second = Directory::start(lab.host(1), "second directory", second_options);
    let both = herald_tests::Connect {
        directories: vec![first.addr(), second.addr()],
        ..first.connect()
    };
    let (r, l) = (lab.host(2), lab.host(3));
    let watcher = Watcher::start(l, "listener", &both, &[]);
    watcher.wait_ready(T);
    wait_subscribers(&first, 1.0);
    let _kept = register(r, &both, "kept", &[r.addr(8001)], &["--lease", "3"]);
    watcher.wait(T, "kept discovered", |e| {
        count(e, "discovered", "kept") == 1
    });

    first.kill();
    wait_subscribers(&second, 1.0);
    let _late = register(r, &second.connect(), "late", &[r.addr(8002)], &[]);
    watcher.wait(T, "late discovered through the second directory", |e| {
        count(e, "discovered", "late") == 1
    });
    // Through the failover grace: nothing reported gone, nothing twice.
    std::thread::sleep(Duration::from_secs(8));
    let e = watcher.events();
    assert_each(&e, "discovered", &["kept", "late"], 1);
    assert_each(&e, "unregistered", &["kept", "late"], 0);
}

#[test]
fn every_change_arrives_once_over_a_lossy_unicast_path() {
    let Some(lab) = lab("s13", 3, 1) else { return };
    let (d, r, l) = (lab.host(0), lab.host(1), lab.host(2));
    // 20 % of the UDP datagrams the listener sends or receives are dropped (nftables'
    // random numbers, which work where tc netem is missing): its unicast path.
    lose_one_in_five(l);
    let directory = Directory::start(d, "directory", DirectoryOptions::new("s13").with_metrics());
    let conn = directory.connect();
    let watcher = Watcher::start(l, "listener", &conn, &[]);
    watcher.wait_ready(T);
    wait_subscribers(&directory, 1.0);

    let names: Vec<String> = (0..12).map(|i| format!("svc-{i:02}")).collect();
    let mut registrants: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| register(r, &conn, n, &[r.addr(8000 + i as u16)], &[]))
        .collect();
    watcher.wait(T, "all discovered", |e| {
        names.iter().all(|n| count(e, "discovered", n) == 1)
    });
    for p in registrants.drain(..6) {
        p.signal("TERM");
    }
    watcher.wait(T, "six unregistered", |e| {
        names[..6].iter().all(|n| count(e, "unregistered", n) == 1)
    });
    std::thread::sleep(Duration::from_secs(3));
    let e = watcher.events();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_each(&e, "discovered", &all, 1);
    assert_each(&e, "unregistered", &all[..6], 1);
    assert_each(&e, "unregistered", &all[6..], 0);
    let m = directory.metrics();
    eprintln!(
        "[s13] lossy path: {} deliveries, {} re-sent, {} snapshot pages",
        m.get("herald_deliveries_total"),
        m.get("herald_delivery_resends_total"),
        m.get("herald_delivery_snapshots_total")
    );
    drop(registrants);
}
