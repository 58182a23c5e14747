//! Scenario 14: the etcd cluster delivering by unicast to listeners that multicast does
//! not reach. Two `herald serve` nodes share their registry and their subscriber table
//! in etcd; the listeners' namespaces drop everything addressed to 224.0.0.0/4, so
//! `herald watch` subscribes by itself. One listener knows both nodes, the other only
//! the node that is a replica when the test starts.
//!
//! - the subscriber table is shared: either node lists both subscriptions;
//! - the publisher delivers to both listeners (to the second one although it talks to
//!   the replica);
//! - registrations and unregistrations made before and after the publisher is killed
//!   (SIGKILL) reach each listener exactly once, nothing missed: the surviving node,
//!   elected, continues from the stored subscriptions and cursors (the listener that
//!   knows only it needs no new subscription; the other fails over to it).
//!
//! Topology: hosts 0 and 1 run the nodes, host 2 etcd, host 3 the registrants, hosts 4
//! and 5 the listeners (multicast dropped). It runs once per family: on IPv4 each host
//! is a namespace of a lab bridge; on IPv6 (an `ff15::` group, etcd and every node on
//! unique local addresses) the serving hosts share one end of a veth pair and the
//! listeners the other, whose namespace drops UDP to ff00::/8. Skips with a printed
//! reason when not root (namespaces), when nftables, etcd or herald's etcd support is
//! missing.

use herald_tests::harness::binary;
use herald_tests::harness::etcd::etcd_or_skip;
use herald_tests::harness::family::{hosts_or_skip, Family, Side};
use herald_tests::harness::filter::{drop_multicast, dropped};
use herald_tests::harness::herald::{count, register, Connect, WatchEvent};
use herald_tests::harness::http::get_on;
use herald_tests::harness::ports;
use herald_tests::harness::wait::poll_until;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use std::process::Command;
use std::time::{Duration, Instant};

const ENVIRONMENT: &str = "s14";
/// The publisher's etcd lease: a killed publisher is replaced after about this.
const PUBLISHER_LEASE_MS: u64 = 3000;
/// Bound of every ordinary wait.
const T: Duration = Duration::from_secs(30);
/// Quiet time in which no duplicate may appear: past re-sends, a listener's failover
/// and its grace.
const OBSERVE: Duration = Duration::from_secs(8);
const ETCD_HOST: usize = 2;
const REGISTRANT_HOST: usize = 3;
const BOTH_HOST: usize = 4;
const REPLICA_ONLY_HOST: usize = 5;

/// Waits until exactly one of `nodes` (those in `alive`) reports `herald_publishing 1`.
fn wait_publisher(nodes: &[Directory], alive: &[usize]) -> usize {
    poll_until(T, || {
        let publishing: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&i| {
                nodes[i]
                    .try_metrics()
                    .is_ok_and(|m| m.get("herald_publishing") == 1.0)
            })
            .collect();
        (publishing.len() == 1).then(|| publishing[0])
    })
    .unwrap_or_else(|| panic!("not exactly one publisher among {alive:?} within {T:?}"))
}

/// The subscriber ids `GET /v1/subscribers` of a node lists.
fn listed_subscribers(node: &Directory, http: std::net::SocketAddr) -> Result<Vec<String>, String> {
    let body = get_on(node.host(), http, "/v1/subscribers")?;
    let body = body
        .split_once("\r\n\r\n")
        .map_or(body.as_str(), |(_, b)| b);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(body.trim()).map_err(|e| format!("{e}: {body}"))?;
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.get("id")?.as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

/// Panics unless each name in `once` was discovered exactly once, each in `gone`
/// unregistered exactly once, and nothing else was reported.
fn assert_once(who: &str, events: &[WatchEvent], once: &[&str], gone: &[&str]) {
    for n in once {
        assert_eq!(
            count(events, "discovered", n),
            1,
            "{who}: discovered {n}: {events:#?}"
        );
        assert_eq!(
            count(events, "changed", n),
            0,
            "{who}: changed {n}: {events:#?}"
        );
        let expected = usize::from(gone.contains(n));
        assert_eq!(
            count(events, "unregistered", n),
            expected,
            "{who}: unregistered {n}: {events:#?}"
        );
    }
}

#[test]
fn listeners_without_multicast_get_every_change_once_across_a_publisher_kill() {
    across_a_publisher_kill("s14", Family::V4);
}

#[test]
fn listeners_without_multicast_get_every_change_once_across_a_publisher_kill_ipv6() {
    across_a_publisher_kill("s14-v6", Family::V6);
}

fn across_a_publisher_kill(test: &str, family: Family) {
    if let Err(why) = binary::etcd_support() {
        eprintln!("[{test}] SKIPPED: herald is built without etcd support: {why}");
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("[{test}] SKIPPED: nft (nftables) is not installed");
        return;
    }
    let sides = [
        Side::Serving,
        Side::Serving,
        Side::Serving,
        Side::Serving,
        Side::Listening,
        Side::Listening,
    ];
    let Some(lab) = hosts_or_skip(test, family, &sides) else {
        return;
    };
    let Some(etcd) = etcd_or_skip(test, lab.host(ETCD_HOST)) else {
        return;
    };
    drop_multicast(lab.host(BOTH_HOST));
    if lab.host(REPLICA_ONLY_HOST).name() != lab.host(BOTH_HOST).name() {
        drop_multicast(lab.host(REPLICA_ONLY_HOST));
    }
    let group = lab.group;
    let prefix = format!("/herald-{test}");
    let mut http = Vec::new();
    let mut nodes: Vec<Directory> = (0..2)
        .map(|i| {
            let host = lab.host(i);
            let api = host.addr(ports::free_tcp_port());
            http.push(api);
            let options = DirectoryOptions {
                group,
                ..DirectoryOptions::new(ENVIRONMENT)
            }
            .with_metrics()
            .with_etcd(&[etcd.endpoint()], &prefix)
            .with(&[
                "--publisher-lease-ms",
                &PUBLISHER_LEASE_MS.to_string(),
                "--http",
                &api.to_string(),
            ]);
            Directory::start(host, &format!("node{i}"), options)
        })
        .collect();
    let publisher = wait_publisher(&nodes, &[0, 1]);
    let replica = 1 - publisher;
    eprintln!("[{test}] node{publisher} publishes, node{replica} is a replica");
    let both = Connect {
        directories: vec![nodes[publisher].addr(), nodes[replica].addr()],
        ..nodes[publisher].connect()
    };
    let through_replica = Connect {
        directories: vec![nodes[replica].addr(), nodes[publisher].addr()],
        ..nodes[replica].connect()
    };
    let replica_only = nodes[replica].connect();

    let watch_both = Watcher::start(lab.host(BOTH_HOST), "listener (both)", &both, &[]);
    let watch_replica = Watcher::start(
        lab.host(REPLICA_ONLY_HOST),
        "listener (replica only)",
        &replica_only,
        &[],
    );
    watch_both.wait_ready(T);
    watch_replica.wait_ready(T);
    // Neither hears a beacon: both subscribe by themselves, and both nodes hold both
    // subscriptions (one taken at each node).
    let shared = poll_until(T, || {
        let lists: Vec<Vec<String>> = (0..2)
            .map(|i| listed_subscribers(&nodes[i], http[i]).ok())
            .collect::<Option<_>>()?;
        (lists[0].len() == 2 && lists[0] == lists[1]).then_some(lists)
    });
    assert!(
        shared.is_some(),
        "the subscriber table is not shared: node0 {:?}, node1 {:?}",
        listed_subscribers(&nodes[0], http[0]),
        listed_subscribers(&nodes[1], http[1])
    );
    for node in &nodes {
        assert_eq!(node.metrics().get("herald_subscribers"), 2.0);
    }

    let r = lab.host(REGISTRANT_HOST);
    let before = register(r, &through_replica, "before", &[r.addr(8001)], &[]);
    let flash = register(r, &through_replica, "flash", &[r.addr(8002)], &[]);
    for w in [&watch_both, &watch_replica] {
        w.wait(T, "before and flash discovered", |e| {
            count(e, "discovered", "before") == 1 && count(e, "discovered", "flash") == 1
        });
    }
    flash.signal("TERM");
    for w in [&watch_both, &watch_replica] {
        w.wait(T, "flash unregistered", |e| {
            count(e, "unregistered", "flash") == 1
        });
    }
    let delivered = nodes[publisher].metrics().get("herald_deliveries_total");
    assert!(delivered > 0.0, "the publisher delivered nothing");
    let replica_delivered = nodes[replica].metrics().get("herald_deliveries_total");
    assert_eq!(replica_delivered, 0.0, "a replica delivered");

    let killed = Instant::now();
    nodes[publisher].kill();
    assert_eq!(wait_publisher(&nodes, &[replica]), replica);
    let elected = killed.elapsed();
    let _after = register(r, &through_replica, "after", &[r.addr(8003)], &[]);
    before.signal("TERM");
    let mut reached = Vec::new();
    for w in [&watch_both, &watch_replica] {
        w.wait(T, "after discovered and before unregistered", |e| {
            count(e, "discovered", "after") == 1 && count(e, "unregistered", "before") == 1
        });
        reached.push(killed.elapsed());
    }
    std::thread::sleep(OBSERVE);
    let all = ["before", "flash", "after"];
    let gone = ["flash", "before"];
    assert_once("listener (both)", &watch_both.events(), &all, &gone);
    assert_once(
        "listener (replica only)",
        &watch_replica.events(),
        &all,
        &gone,
    );
    // Told by the replica that it does not deliver, with no other directory to go to,
    // the second listener stayed, and was never cut off.
    let cut_off = watch_replica
        .process()
        .lines()
        .into_iter()
        .filter(|l| l.text.contains("no directory answers"))
        .count();
    assert_eq!(cut_off, 0, "{}", watch_replica.process().log_tail());
    // How each listener took the changes after the kill: snapshots (after moving, for
    // the first; the second needs none unless a removal was reaped under its cursor).
    let snapshots_since_kill = |w: &Watcher| {
        w.process()
            .lines()
            .into_iter()
            .filter(|l| l.at >= killed && l.text.contains("snapshot complete"))
            .count()
    };
    eprintln!(
        "[{test}] snapshots taken after the kill: {} by the listener that knows both, {} by \
         the one that knows only node{replica}",
        snapshots_since_kill(&watch_both),
        snapshots_since_kill(&watch_replica)
    );
    let m = nodes[replica].metrics();
    eprintln!(
        "[{test}] publisher killed: node{replica} elected after {:.1} s; the changes made \
         then reached the listener that knows both after {:.1} s, the one that knows only \
         node{replica} after {:.1} s; node{replica} sent {} delivery pages ({} re-sent, {} \
         snapshot pages)",
        elected.as_secs_f64(),
        reached[0].as_secs_f64(),
        reached[1].as_secs_f64(),
        m.get("herald_deliveries_total"),
        m.get("herald_delivery_resends_total"),
        m.get("herald_delivery_snapshots_total"),
    );
    assert!(dropped(lab.host(BOTH_HOST)) > 0 || dropped(lab.host(REPLICA_ONLY_HOST)) > 0);
}
