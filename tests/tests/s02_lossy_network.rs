//! Scenario 2: lossy network. With 20 % loss, 5 % duplication, 25 % reordering and
//! 10 ms delay on every link, 200 services registered from two hosts are all discovered
//! by the listeners on two other hosts, and all 200 unregisters are seen exactly once,
//! within a bounded time. Faults come from `tc netem` where the kernel has it, else
//! from the herald-testkit proxy (each listener with its own independent faults).

use herald_tests::harness::faults::Faults;
use herald_tests::harness::herald::{count, load, unload, Connect};
use herald_tests::harness::load::service_name;
use herald_tests::harness::ports::{free_udp_port, unique_group};
use herald_tests::harness::rng::Rng;
use herald_tests::harness::wait::secs;
use herald_tests::harness::{binary, netem};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Proc, Watcher};
use std::time::{Duration, Instant};

const PER_HOST: usize = 100;
const LEASE_SECS: u64 = 10;
/// Time allowed for every listener to discover (or see the removal of) all 200.
const CONVERGE: Duration = Duration::from_secs(90);

#[test]
fn lossy_links_converge_with_exactly_one_event_per_change() {
    let Some(lab) = lab_or_skip("s02", 5) else {
        return;
    };
    let d = lab.host(0);
    let (registrant_hosts, listener_hosts) =
        ([lab.host(1), lab.host(2)], [lab.host(3), lab.host(4)]);
    let faults = Faults::LOSSY;
    let mut proxy: Option<Proc> = None;
    let (directory, registrants, listeners): (Directory, Connect, Vec<Connect>) =
        match netem::available() {
            Ok(()) => {
                eprintln!(
                    "[s02] fault injector: tc netem {} on both ends of every link",
                    faults.netem_args().join(" ")
                );
                netem::apply(&lab, &faults).expect("netem");
                let directory = Directory::start(d, "directory", DirectoryOptions::new("s02"));
                let c = directory.connect();
                (directory, c.clone(), vec![c.clone(), c])
            }
            Err(why) => {
                let seed = Rng::fresh_seed();
                eprintln!(
                    "[s02] fault injector: herald-testkit proxy (netem unavailable: {why}); \
                     {faults:?}, seed {seed}"
                );
                let front = d.addr(free_udp_port());
                let options = DirectoryOptions {
                    advertise: Some(front),
                    ..DirectoryOptions::new("s02")
                };
                let directory = Directory::start(d, "directory", options);
                let outs = [unique_group(), unique_group()];
                let mut cmd = d.command(binary::testkit());
                cmd.args(["proxy", "--listen", &front.to_string()])
                    .args(["--upstream", &directory.bind_addr().to_string()])
                    .args(["--group-in", &directory.group().to_string()])
                    .args(["--interface", &d.ip().to_string()])
                    .args(["--seed", &seed.to_string()])
                    .args(["--lifetime-secs", "300"]);
                for g in outs {
                    cmd.args(["--group-out", &g.to_string()]);
                }
                let p = Proc::spawn("fault proxy", cmd);
                p.wait_for_line(Duration::from_secs(10), "proxy ready");
                proxy = Some(p);
                let c = directory.connect();
                let listeners = outs
                    .iter()
                    .map(|&group| Connect { group, ..c.clone() })
                    .collect();
                (directory, c, listeners)
            }
        };
    let watchers: Vec<Watcher> = listener_hosts
        .iter()
        .zip(&listeners)
        .enumerate()
        .map(|(i, (h, c))| Watcher::start(h, &format!("listener {i}"), c, &[]))
        .collect();
    for w in &watchers {
        w.wait_ready(Duration::from_secs(30));
    }

    let started = Instant::now();
    let prefixes = ["east-", "west-"];
    let mut loads: Vec<Proc> = registrant_hosts
        .iter()
        .zip(prefixes)
        .map(|(h, p)| load(h, &registrants, p, PER_HOST, LEASE_SECS, CONVERGE))
        .collect();
    let names: Vec<String> = prefixes
        .iter()
        .flat_map(|p| (0..PER_HOST).map(move |i| service_name(p, i)))
        .collect();
    for w in &watchers {
        w.wait(CONVERGE, "all 200 discovered", |e| {
            e.iter().filter(|e| e.event == "discovered").count() >= names.len()
        });
    }
    eprintln!(
        "[s02] 200 registered and discovered by both listeners in {}",
        secs(started.elapsed())
    );

    let started = Instant::now();
    for l in &mut loads {
        let line = unload(l, CONVERGE);
        eprintln!("[s02] {}: {line}", l.name());
    }
    for w in &watchers {
        w.wait(CONVERGE, "all 200 unregistered", |e| {
            e.iter().filter(|e| e.event == "unregistered").count() >= names.len()
        });
    }
    eprintln!(
        "[s02] 200 unregistered, seen by both listeners in {}",
        secs(started.elapsed())
    );

    // Let repeats, duplicates and late reordered datagrams arrive, then count.
    std::thread::sleep(Duration::from_secs(3));
    for w in &watchers {
        let e = w.events();
        for n in &names {
            assert_eq!(
                (count(&e, "discovered", n), count(&e, "unregistered", n)),
                (1, 1),
                "{}: {n}",
                w.process().name()
            );
        }
        assert_eq!(
            e.len(),
            2 * names.len(),
            "{}: no other event",
            w.process().name()
        );
    }
    if let Some(p) = &proxy {
        let stats = p
            .stdout()
            .into_iter()
            .rev()
            .find(|l| l.starts_with("proxy stats"));
        eprintln!("[s02] {}", stats.unwrap_or_default());
    }
    drop(directory);
}
