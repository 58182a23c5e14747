//! Scenario 11: redundant directories on etcd. One etcd and three `herald serve` nodes
//! of one group, each on its own host of a private network; registrants and listeners
//! are configured with all three. Exactly one node publishes (announces, repeats,
//! sweeps, expires); the others are replicas that answer requests and store to etcd.
//!
//! - a registration made through any node is discovered exactly once and listed by
//!   every node;
//! - a registrant whose node is killed moves to another, and no listener hears a
//!   spurious `unregistered`;
//! - a killed publisher hands publishing over to another node, which then announces
//!   new registrations and unregistrations (each exactly once);
//! - while etcd is down the nodes keep answering and report the outage; once it is
//!   back they catch up.
//!
//! Topology: hosts 0 to 2 run the nodes, host 3 etcd, host 4 the registrants, host 5
//! the listeners. Skips with a printed reason when not root (namespaces), when etcd is
//! not installed, or when herald was built without etcd support (no protoc).

use herald_tests::harness::binary;
use herald_tests::harness::etcd::{etcd_or_skip, Etcd, Stop};
use herald_tests::harness::herald::{count, list_view, register, Connect, WatchEvent};
use herald_tests::harness::metrics::Metrics;
use herald_tests::harness::ports;
use herald_tests::harness::wait::{poll_until, secs};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Host, Lab, Proc, Watcher};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NODES: usize = 3;
const ETCD_HOST: usize = NODES;
const REGISTRANT_HOST: usize = NODES + 1;
const LISTENER_HOST: usize = NODES + 2;
const ENVIRONMENT: &str = "s11";
/// Registrations renew at a third of this; a registrant with no directory loses its
/// registration after it.
const LEASE_SECS: u64 = 3;
/// The publisher's etcd lease: a killed publisher is replaced after about this.
const PUBLISHER_LEASE_MS: u64 = 3000;
/// A short anti-entropy sweep, so that the observation windows below see whole sweeps.
const SWEEP_PERIOD_MS: u64 = 3000;
/// Bound of every ordinary wait.
const T: Duration = Duration::from_secs(20);
/// Generous bound of a publisher handover (the lease is 3 s).
const HANDOVER: Duration = Duration::from_secs(20);
/// Generous bound of a registrant's move to another node (s05 measures ~3 to 6 s).
const FAILOVER: Duration = Duration::from_secs(15);
/// Generous bound of noticing that etcd is gone, and that it is back.
const STORE_STATE: Duration = Duration::from_secs(30);
/// Generous bound of the catch-up after etcd returns.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How long etcd stays down at least: longer than two registration leases and the
/// publisher lease, so that expiry and election would both have had time to misfire.
const OUTAGE: Duration = Duration::from_secs(8);
/// Quiet time in which no duplicate may appear: more than a sweep, the 20 removal
/// notifications and a listener's failover grace.
const OBSERVE: Duration = Duration::from_secs(7);

/// Three nodes on etcd, etcd, and the network they share. Fields drop in order: the
/// processes before the namespaces they run in.
struct Cluster {
    test: &'static str,
    nodes: Vec<Directory>,
    alive: Vec<bool>,
    etcd: Etcd,
    lab: Lab,
}

impl Cluster {
    /// Starts etcd and the three nodes, or `None` after printing why `test` skips.
    fn start(test: &'static str) -> Option<Cluster> {
        if let Err(why) = binary::etcd_support() {
            eprintln!("[{test}] SKIPPED: herald is built without etcd support: {why}");
            return None;
        }
        let lab = lab_or_skip(test, NODES + 3)?;
        let etcd = etcd_or_skip(test, lab.host(ETCD_HOST))?;
        let group = ports::unique_group();
        let prefix = format!("/herald-{test}");
        let nodes: Vec<Directory> = (0..NODES)
            .map(|i| {
                let options = DirectoryOptions {
                    group,
                    ..DirectoryOptions::new(ENVIRONMENT)
                }
                .with_metrics()
                .with_etcd(&[etcd.endpoint()], &prefix)
                .with(&[
                    "--publisher-lease-ms",
                    &PUBLISHER_LEASE_MS.to_string(),
                    "--sweep-period-ms",
                    &SWEEP_PERIOD_MS.to_string(),
                ]);
                Directory::start(lab.host(i), &format!("node{i}"), options)
            })
            .collect();
        eprintln!(
            "[{test}] etcd at {}, nodes at {}",
            etcd.endpoint(),
            nodes
                .iter()
                .map(|n| format!("{}={}", n.label(), n.addr()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(Cluster {
            test,
            nodes,
            alive: vec![true; NODES],
            etcd,
            lab,
        })
    }

    fn registrant_host(&self) -> &Host {
        self.lab.host(REGISTRANT_HOST)
    }

    fn listener_host(&self) -> &Host {
        self.lab.host(LISTENER_HOST)
    }

    /// All three nodes, node `first` first, then the others in order.
    fn via(&self, first: usize) -> Connect {
        let mut directories = vec![self.nodes[first].addr()];
        directories.extend(
            (0..NODES)
                .filter(|&i| i != first)
                .map(|i| self.nodes[i].addr()),
        );
        Connect {
            directories,
            ..self.nodes[first].connect()
        }
    }

    /// The nodes that run.
    fn alive(&self) -> Vec<usize> {
        (0..NODES).filter(|&i| self.alive[i]).collect()
    }

    /// The node of address `addr`.
    fn node_at(&self, addr: &str) -> Option<usize> {
        (0..NODES).find(|&i| self.nodes[i].addr().to_string() == addr)
    }

    /// Kills node `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
        self.alive[i] = false;
    }

    /// The metrics of every running node.
    fn metrics(&self) -> Result<Vec<(usize, Metrics)>, String> {
        self.alive()
            .into_iter()
            .map(|i| self.nodes[i].try_metrics().map(|m| (i, m)))
            .collect()
    }

    /// `metric` of every running node, for messages.
    fn readings(&self, metric: &str) -> String {
        match self.metrics() {
            Ok(all) => all
                .iter()
                .map(|(i, m)| {
                    let value = if m.has(metric) {
                        m.sum(metric).to_string()
                    } else {
                        "absent".into()
                    };
                    format!("node{i} {metric}={value}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(e) => e,
        }
    }

    /// The log tails of the running nodes, for messages.
    fn logs(&self) -> String {
        self.alive()
            .into_iter()
            .map(|i| self.nodes[i].process().log_tail())
            .collect()
    }

    /// Waits until exactly one running node reports `herald_publishing 1` and every
    /// other running node `0`; returns it.
    fn wait_publisher(&self, timeout: Duration) -> usize {
        let found = poll_until(timeout, || {
            let all = self.metrics().ok()?;
            let publishing: Vec<usize> = all
                .iter()
                .filter(|(_, m)| m.sum("herald_publishing") == 1.0)
                .map(|(i, _)| *i)
                .collect();
            let rest_zero = all.iter().all(|(i, m)| {
                publishing.contains(i)
                    || (m.has("herald_publishing") && m.sum("herald_publishing") == 0.0)
            });
            (publishing.len() == 1 && rest_zero).then(|| publishing[0])
        });
        found.unwrap_or_else(|| {
            panic!(
                "[{}] not exactly one publishing node within {timeout:?}: {}\n{}",
                self.test,
                self.readings("herald_publishing"),
                self.logs()
            )
        })
    }

    /// Waits until every running node reports `metric` equal to `value`; returns how
    /// long that took.
    fn wait_metric_everywhere(&self, metric: &str, value: f64, timeout: Duration) -> Duration {
        let started = Instant::now();
        let done = poll_until(timeout, || {
            let all = self.metrics().ok()?;
            all.iter()
                .all(|(_, m)| m.has(metric) && m.sum(metric) == value)
                .then_some(())
        });
        if done.is_none() {
            panic!(
                "[{}] not every node reports {metric} {value} within {timeout:?}: {}\n{}",
                self.test,
                self.readings(metric),
                self.logs()
            );
        }
        started.elapsed()
    }

    /// `herald list` through node `i` alone.
    fn list(&self, i: usize) -> Result<BTreeMap<String, Vec<String>>, String> {
        list_view(self.registrant_host(), &self.nodes[i].connect())
    }

    /// Waits until every running node lists exactly `expected`; returns how long that
    /// took.
    fn wait_listed_everywhere(
        &self,
        expected: &BTreeMap<String, Vec<String>>,
        timeout: Duration,
    ) -> Duration {
        let started = Instant::now();
        let done = poll_until(timeout, || {
            self.alive()
                .into_iter()
                .all(|i| self.list(i).is_ok_and(|l| &l == expected))
                .then_some(())
        });
        if done.is_none() {
            let lists: Vec<String> = self
                .alive()
                .into_iter()
                .map(|i| format!("node{i}: {:?}", self.list(i)))
                .collect();
            panic!(
                "[{}] not every node lists {expected:?} within {timeout:?}:\n{}\n{}",
                self.test,
                lists.join("\n"),
                self.logs()
            );
        }
        started.elapsed()
    }

    /// `herald register NAME` on the registrant host through node `first` (the others
    /// as failover), with a 3 s lease; checks that node `first` acknowledged it.
    fn register(&self, first: usize, name: &str, port: u16) -> Proc {
        let host = self.registrant_host();
        let lease = LEASE_SECS.to_string();
        let p = register(
            host,
            &self.via(first),
            name,
            &[host.addr(port)],
            &["--lease", &lease],
        );
        let by = acknowledged_by(&p, name);
        assert_eq!(
            self.node_at(&by),
            Some(first),
            "{name} was acknowledged by {by}, not node{first} ({})",
            self.nodes[first].addr()
        );
        p
    }

    /// The location `register` gives `name` on `port`, as listed.
    fn location(&self, port: u16) -> Vec<String> {
        vec![self.registrant_host().addr(port).to_string()]
    }
}

/// The directory in `registered NAME with ADDR (lease …)` of `herald register`.
fn acknowledged_by(p: &Proc, name: &str) -> String {
    let prefix = format!("registered {name} with ");
    let line = p
        .stdout()
        .into_iter()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{}: no line {prefix:?}\n{}", p.name(), p.log_tail()));
    line[prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What `watcher` heard, one line per event, timed from `origin` (`what` names it).
fn timeline(watcher: &Watcher, origin: Instant, what: &str) -> String {
    let lines: Vec<String> = watcher
        .timeline(origin)
        .iter()
        .map(|(at, e)| format!("  {at:+.3} s {} {}", e.event, e.name))
        .collect();
    format!(
        "{} heard (seconds from {what}):\n{}",
        watcher.process().name(),
        lines.join("\n")
    )
}

/// Panics unless `events` hold exactly one `discovered`, no `changed` and no
/// `unregistered` for each of `names`.
fn assert_seen_once(who: &str, events: &[WatchEvent], names: &[&str]) {
    for n in names {
        assert_eq!(
            (
                count(events, "discovered", n),
                count(events, "changed", n),
                count(events, "unregistered", n)
            ),
            (1, 0, 0),
            "{who}: (discovered, changed, unregistered) of {n}; events: {events:?}"
        );
    }
}

/// (a) A registration made through any node is discovered once by every listener and
/// listed by every node.
#[test]
fn a_registration_through_any_node_is_seen_once_and_listed_everywhere() {
    let Some(cluster) = Cluster::start("s11a") else {
        return;
    };
    let l = cluster.listener_host();
    let watchers = [
        Watcher::start(l, "listener (node0 first)", &cluster.via(0), &[]),
        Watcher::start(l, "listener (node2 first)", &cluster.via(2), &[]),
    ];
    for w in &watchers {
        w.wait_ready(T);
    }
    let publisher = cluster.wait_publisher(T);
    eprintln!("[s11a] node{publisher} publishes");
    let first_registration = Instant::now();

    let names = ["alpha", "bravo", "charlie"];
    let mut expected = BTreeMap::new();
    let mut registrants = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let port = 8000 + i as u16;
        let started = Instant::now();
        registrants.push(cluster.register(i, name, port));
        for w in &watchers {
            w.wait(T, &format!("{name} discovered"), |e| {
                count(e, "discovered", name) >= 1
            });
        }
        eprintln!(
            "[s11a] {name} registered through node{i}{}: discovered by both listeners after {}",
            if i == publisher {
                " (the publisher)"
            } else {
                " (a replica)"
            },
            secs(started.elapsed())
        );
        expected.insert(name.to_string(), cluster.location(port));
    }
    let took = cluster.wait_listed_everywhere(&expected, T);
    eprintln!(
        "[s11a] every node lists all three ({} after the last registration)",
        secs(took)
    );

    // Renewals through three nodes, sweeps and beacons: still exactly once.
    std::thread::sleep(OBSERVE);
    for w in &watchers {
        eprintln!(
            "[s11a] {}",
            timeline(w, first_registration, "the first registration")
        );
        assert_seen_once(w.process().name(), &w.events(), &names);
        assert_eq!(w.view(), expected, "{}", w.process().name());
    }
    cluster.wait_listed_everywhere(&expected, T);
    assert_eq!(
        cluster.wait_publisher(T),
        publisher,
        "publishing moved without a failure"
    );
}

/// (b) Killing the node a registrant uses moves the registrant to another node; no
/// listener hears `unregistered`, and the registration stays listed.
#[test]
fn a_registrant_moves_off_a_killed_node_without_a_spurious_unregistered() {
    let Some(mut cluster) = Cluster::start("s11b") else {
        return;
    };
    let watcher = Watcher::start(cluster.listener_host(), "listener", &cluster.via(0), &[]);
    watcher.wait_ready(T);
    let publisher = cluster.wait_publisher(T);
    // A replica, so that this scenario is about the registrant (the publisher's death
    // is scenario c).
    let used = (0..NODES).find(|&i| i != publisher).expect("a replica");
    eprintln!("[s11b] node{publisher} publishes; the registrant uses node{used}");
    let registrant = cluster.register(used, "orders", 8100);
    let mut expected = BTreeMap::new();
    expected.insert("orders".to_string(), cluster.location(8100));
    watcher.wait(T, "orders discovered", |e| {
        count(e, "discovered", "orders") == 1
    });
    cluster.wait_listed_everywhere(&expected, T);

    cluster.kill(used);
    let killed = Instant::now();
    let used_addr = cluster.nodes[used].addr().to_string();
    let moved_to = registrant.wait_for(FAILOVER, "the registrant moves to another node", |lines| {
        lines
            .iter()
            .filter(|l| l.at >= killed && l.text.contains("using directory"))
            .find(|l| !l.text.contains(&used_addr))
            .map(|l| (l.text.clone(), l.at))
    });
    eprintln!(
        "[s11b] registrant moved {} after the kill: {}",
        secs(moved_to.1.saturating_duration_since(killed)),
        moved_to.0
    );
    let took = cluster.wait_listed_everywhere(&expected, T);
    eprintln!(
        "[s11b] still listed by the other nodes ({} after the kill)",
        secs(took)
    );

    // Several leases, whole sweeps and the listener's failover grace: the registrant
    // renews through its new node, so nothing expires and nothing is announced gone.
    let quiet = Instant::now();
    while quiet.elapsed() < OBSERVE {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            watcher.count("unregistered", "orders"),
            0,
            "{:?}",
            watcher.events()
        );
    }
    eprintln!("[s11b] {}", timeline(&watcher, killed, "the kill"));
    assert_seen_once("listener", &watcher.events(), &["orders"]);
    cluster.wait_listed_everywhere(&expected, T);
    assert_eq!(
        cluster.wait_publisher(T),
        publisher,
        "publishing moved without its node failing"
    );
}

/// (c) Killing the publisher hands publishing over to another node within a generous
/// bound; a registration made afterwards is discovered, and an unregistration is heard
/// exactly once.
#[test]
fn killing_the_publisher_hands_publishing_over() {
    let Some(mut cluster) = Cluster::start("s11c") else {
        return;
    };
    let watcher = Watcher::start(cluster.listener_host(), "listener", &cluster.via(0), &[]);
    watcher.wait_ready(T);
    let old = cluster.wait_publisher(T);
    let steady_node = (0..NODES).find(|&i| i != old).expect("a replica");
    let _steady = cluster.register(steady_node, "steady", 8200);
    watcher.wait(T, "steady discovered", |e| {
        count(e, "discovered", "steady") == 1
    });
    let before = cluster.metrics().expect("metrics");

    cluster.kill(old);
    let killed = Instant::now();
    let new = cluster.wait_publisher(HANDOVER);
    let handover = killed.elapsed();
    eprintln!(
        "[s11c] publisher handover took {} (node{old} killed, node{new} publishes; publisher lease {PUBLISHER_LEASE_MS} ms, bound {})",
        secs(handover),
        secs(HANDOVER)
    );
    assert_ne!(new, old);
    let changes = |ms: &[(usize, Metrics)]| -> f64 {
        ms.iter()
            .find(|(i, _)| *i == new)
            .map_or(0.0, |(_, m)| m.sum("herald_publisher_changes_total"))
    };
    let after = cluster.metrics().expect("metrics");
    eprintln!(
        "[s11c] node{new} herald_publisher_changes_total {} -> {}",
        changes(&before),
        changes(&after)
    );
    assert!(
        changes(&after) > changes(&before),
        "node{new} publishes but did not count a publisher change: {}",
        cluster.readings("herald_publisher_changes_total")
    );

    // A registration through the remaining replica after the handover: only the new
    // publisher can announce it.
    let replica = (0..NODES)
        .find(|&i| i != old && i != new)
        .expect("the remaining replica");
    let started = Instant::now();
    let late = cluster.register(replica, "late", 8201);
    watcher.wait(T, "late discovered", |e| {
        count(e, "discovered", "late") == 1
    });
    eprintln!(
        "[s11c] late (through replica node{replica}) discovered {} after its registration",
        secs(started.elapsed())
    );
    let mut expected = BTreeMap::new();
    expected.insert("steady".to_string(), cluster.location(8200));
    expected.insert("late".to_string(), cluster.location(8201));
    cluster.wait_listed_everywhere(&expected, T);

    // Ctrl-C of the registrant: it unregisters through its node.
    late.signal("INT");
    late.wait_for_line(T, "unregistered late");
    let unregistered = Instant::now();
    watcher.wait(T, "late unregistered", |e| {
        count(e, "unregistered", "late") >= 1
    });
    eprintln!(
        "[s11c] late's unregistration heard {} after it was acknowledged",
        secs(unregistered.elapsed())
    );
    std::thread::sleep(OBSERVE);
    let events = watcher.events();
    assert_eq!(
        (
            count(&events, "discovered", "late"),
            count(&events, "unregistered", "late")
        ),
        (1, 1),
        "late: (discovered, unregistered); events: {events:?}"
    );
    eprintln!("[s11c] {}", timeline(&watcher, killed, "the kill"));
    assert_seen_once("listener", &events, &["steady"]);
    expected.remove("late");
    cluster.wait_listed_everywhere(&expected, T);
    assert_eq!(cluster.wait_publisher(T), new, "publishing moved again");
}

/// (d) With etcd down the nodes keep answering from memory (lists, a new registration)
/// and report the outage; once etcd is back they catch up: what was registered through
/// a replica during the outage is listed everywhere and discovered.
#[test]
fn an_etcd_outage_is_ridden_out_and_caught_up() {
    let Some(mut cluster) = Cluster::start("s11d") else {
        return;
    };
    let watcher = Watcher::start(cluster.listener_host(), "listener", &cluster.via(0), &[]);
    watcher.wait_ready(T);
    let publisher = cluster.wait_publisher(T);
    let replicas: Vec<usize> = (0..NODES).filter(|&i| i != publisher).collect();
    // Renewed through a replica only: while etcd is down the publisher cannot see those
    // renewals, and must not expire the registration.
    let _steady = cluster.register(replicas[0], "steady", 8300);
    watcher.wait(T, "steady discovered", |e| {
        count(e, "discovered", "steady") == 1
    });
    let mut expected = BTreeMap::new();
    expected.insert("steady".to_string(), cluster.location(8300));
    cluster.wait_listed_everywhere(&expected, T);
    assert!(
        cluster
            .metrics()
            .expect("metrics")
            .iter()
            .all(|(_, m)| m.sum("herald_store_reachable") == 1.0),
        "etcd runs but: {}",
        cluster.readings("herald_store_reachable")
    );

    cluster.etcd.stop(Stop::Kill);
    let stopped = Instant::now();
    let noticed = cluster.wait_metric_everywhere("herald_store_reachable", 0.0, STORE_STATE);
    eprintln!(
        "[s11d] every node reports herald_store_reachable 0 {} after etcd was killed",
        secs(noticed)
    );
    for i in cluster.alive() {
        let line = cluster.nodes[i]
            .process()
            .wait_for(T, "the WARN line of the outage", |lines| {
                lines
                    .iter()
                    .find(|l| l.text.contains("WARN") && l.text.contains("etcd unreachable"))
                    .map(|l| l.text.clone())
            });
        eprintln!("[s11d] node{i}: {line}");
    }

    // Still answering from memory.
    for i in cluster.alive() {
        let listed = cluster
            .list(i)
            .unwrap_or_else(|e| panic!("list through node{i} during the outage: {e}"));
        assert_eq!(listed, expected, "node{i} during the outage");
    }
    let during_node = replicas[1];
    let _during = cluster.register(during_node, "during", 8301);
    eprintln!("[s11d] during acknowledged by replica node{during_node} while etcd is down");
    // The write it could not make waits in its queue.
    let queued = poll_until(T, || {
        let q = cluster.nodes[during_node]
            .try_metrics()
            .ok()?
            .sum("herald_store_queued_writes");
        (q >= 1.0).then_some(q)
    });
    eprintln!("[s11d] node{during_node} herald_store_queued_writes {queued:?}");
    assert!(
        queued.is_some(),
        "node{during_node} queued nothing: {}",
        cluster.readings("herald_store_queued_writes")
    );

    // Down for longer than two registration leases and the publisher lease.
    if let Some(rest) = OUTAGE.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_eq!(
        watcher.count("unregistered", "steady"),
        0,
        "steady expired during the outage: {:?}",
        watcher.events()
    );
    eprintln!(
        "[s11d] during discovered before etcd returned: {} (not required)",
        watcher.count("discovered", "during") == 1
    );

    cluster.etcd.start().unwrap_or_else(|e| panic!("{e}"));
    let back = Instant::now();
    let reachable = cluster.wait_metric_everywhere("herald_store_reachable", 1.0, STORE_STATE);
    eprintln!(
        "[s11d] every node reports herald_store_reachable 1 {} after etcd was healthy again (outage {})",
        secs(reachable),
        secs(back.duration_since(stopped))
    );
    for i in cluster.alive() {
        let line = cluster.nodes[i]
            .process()
            .wait_for(T, "the log line of the return", |lines| {
                lines
                    .iter()
                    .find(|l| l.text.contains("etcd reachable again"))
                    .map(|l| l.text.clone())
            });
        eprintln!("[s11d] node{i}: {line}");
    }
    expected.insert("during".to_string(), cluster.location(8301));
    cluster.wait_listed_everywhere(&expected, CATCH_UP);
    eprintln!(
        "[s11d] every node lists during {} after etcd was healthy again",
        secs(back.elapsed())
    );
    watcher.wait(CATCH_UP, "during discovered", |e| {
        count(e, "discovered", "during") == 1
    });
    eprintln!(
        "[s11d] during discovered {} after etcd was healthy again",
        secs(back.elapsed())
    );
    cluster.wait_metric_everywhere("herald_store_queued_writes", 0.0, T);
    for (i, m) in cluster.metrics().expect("metrics") {
        assert!(
            m.sum("herald_store_outages_total") >= 1.0,
            "node{i} counted no outage: {}",
            cluster.readings("herald_store_outages_total")
        );
    }

    std::thread::sleep(OBSERVE);
    eprintln!(
        "[s11d] {} (etcd was killed at {:+.3} s)",
        timeline(&watcher, back, "etcd healthy again"),
        -back.duration_since(stopped).as_secs_f64()
    );
    assert_seen_once("listener", &watcher.events(), &["steady", "during"]);
    cluster.wait_listed_everywhere(&expected, T);
    let after = cluster.wait_publisher(T);
    eprintln!("[s11d] node{after} publishes after the outage (node{publisher} before)");
}
