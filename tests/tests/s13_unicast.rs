//! Scenario 13: a network that drops multicast on the listeners' side, over IPv4 and
//! over IPv6. Directories announce on the group as usual (`--delivery both`, the
//! default), but an nftables rule in the listener's namespace drops the group's traffic
//! (IPv4: everything to 224.0.0.0/4; IPv6: UDP to ff00::/8, so that neighbour discovery
//! still works), so the listener hears no announcement and no beacon. `herald watch`
//! (with `--subscribe auto`, the default) notices the silence, subscribes to unicast
//! deliveries and reports every change exactly once: discovery, unregistration, crash
//! expiry, a directory restart (its subscriber table comes back from disk), failover
//! between two directories, and 20 % loss each way on the unicast path (nftables'
//! random numbers, so it runs where tc netem is missing).
//!
//! Each scenario runs once per family ([`Family`]): on IPv4 hosts of a lab bridge, and
//! on the IPv6 veth pair of `harness::veth6` with a site-local group (`ff15::…`),
//! the directories and the registrant on one end and the listener on the other.

use herald_tests::harness::family::{hosts_or_skip, Family, Hosts, Side};
use herald_tests::harness::filter::{drop_multicast, dropped, lose_one_in_five, wait_subscribers};
use herald_tests::harness::herald::{count, register, WatchEvent};
use herald_tests::{Directory, DirectoryOptions, Host, Watcher};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// The hosts of a scenario; the namespaces live as long as it does.
struct Net {
    /// Where the first and the second directory run.
    directories: [Host; 2],
    /// Where registrants run.
    registrant: Host,
    /// The listener, whose namespace drops multicast.
    listener: Host,
    /// The group of every directory.
    group: SocketAddr,
    /// Keeps the namespaces (deleted on drop).
    _hosts: Hosts,
}

impl Net {
    /// The hosts for `test` on `family`, the listener's multicast dropped; `None` after
    /// printing why the test is skipped.
    fn new(test: &str, family: Family) -> Option<Net> {
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!("[{test}] skipped: nft (nftables) is not installed");
            return None;
        }
        let sides = [Side::Serving, Side::Serving, Side::Serving, Side::Listening];
        let hosts = hosts_or_skip(test, family, &sides)?;
        let h = |i| hosts.host(i).clone();
        let net = Net {
            directories: [h(0), h(1)],
            registrant: h(2),
            listener: h(3),
            group: hosts.group,
            _hosts: hosts,
        };
        drop_multicast(&net.listener);
        Some(net)
    }

    /// Options of a directory on the scenario's group, with metrics.
    fn options(&self) -> DirectoryOptions {
        DirectoryOptions {
            group: self.group,
            ..DirectoryOptions::new("s13").with_metrics()
        }
    }

    /// Starts directory `i` (0: the first, 1: the second).
    fn directory(&self, i: usize, label: &str) -> Directory {
        Directory::start(&self.directories[i], label, self.options())
    }
}

/// Every name in `events` appears with `event` exactly `times` times.
fn assert_each(events: &[WatchEvent], event: &str, names: &[&str], times: usize) {
    for n in names {
        assert_eq!(count(events, event, n), times, "{event} {n}: {events:#?}");
    }
}

/// The group's traffic did reach the listener's link, and was dropped there.
fn assert_multicast_dropped(net: &Net) {
    assert!(dropped(&net.listener) > 0, "no multicast was dropped");
}

fn discovery_unregister_and_crash_expiry(family: Family) {
    let Some(net) = Net::new("s13 discovery", family) else {
        return;
    };
    let (r, l) = (&net.registrant, &net.listener);
    let directory = net.directory(0, "directory");
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
    assert_multicast_dropped(&net);
    drop(stays);
}

#[test]
fn discovery_unregister_and_crash_expiry_reach_a_listener_without_multicast() {
    discovery_unregister_and_crash_expiry(Family::V4);
}

#[test]
fn discovery_unregister_and_crash_expiry_reach_a_listener_without_multicast_ipv6() {
    discovery_unregister_and_crash_expiry(Family::V6);
}

fn restarted_directory_keeps_delivering(family: Family) {
    let Some(net) = Net::new("s13 restart", family) else {
        return;
    };
    let (r, l) = (&net.registrant, &net.listener);
    let mut directory = net.directory(0, "directory");
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
    assert_multicast_dropped(&net);
}

#[test]
fn a_restarted_directory_keeps_delivering_to_its_subscriber() {
    restarted_directory_keeps_delivering(Family::V4);
}

#[test]
fn a_restarted_directory_keeps_delivering_to_its_subscriber_ipv6() {
    restarted_directory_keeps_delivering(Family::V6);
}

fn listener_follows_the_second_directory(family: Family) {
    let Some(net) = Net::new("s13 failover", family) else {
        return;
    };
    let mut first = net.directory(0, "first directory");
    let second = net.directory(1, "second directory");
    let both = herald_tests::Connect {
        directories: vec![first.addr(), second.addr()],
        ..first.connect()
    };
    let (r, l) = (&net.registrant, &net.listener);
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
    assert_multicast_dropped(&net);
}

#[test]
fn a_listener_without_multicast_follows_the_second_directory() {
    listener_follows_the_second_directory(Family::V4);
}

#[test]
fn a_listener_without_multicast_follows_the_second_directory_ipv6() {
    listener_follows_the_second_directory(Family::V6);
}

fn every_change_arrives_once_over_a_lossy_path(family: Family) {
    let Some(net) = Net::new("s13 loss", family) else {
        return;
    };
    let (r, l) = (&net.registrant, &net.listener);
    // 20 % of the UDP datagrams the listener sends or receives are dropped (nftables'
    // random numbers, which work where tc netem is missing): its unicast path.
    lose_one_in_five(l);
    let directory = net.directory(0, "directory");
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
    assert_multicast_dropped(&net);
    let m = directory.metrics();
    eprintln!(
        "[s13 {family:?}] lossy path: {} deliveries, {} re-sent, {} snapshot pages",
        m.get("herald_deliveries_total"),
        m.get("herald_delivery_resends_total"),
        m.get("herald_delivery_snapshots_total")
    );
    drop(registrants);
}

#[test]
fn every_change_arrives_once_over_a_lossy_unicast_path() {
    every_change_arrives_once_over_a_lossy_path(Family::V4);
}

#[test]
fn every_change_arrives_once_over_a_lossy_unicast_path_ipv6() {
    every_change_arrives_once_over_a_lossy_path(Family::V6);
}
