//! Scenario 7: late joiner. A listener started after 1,000 registrations has the full
//! registry within two round trips of its snapshot request (the directory's cookie,
//! then snapshot pages that follow one another without waiting; on loopback a round
//! trip is well under a millisecond, so the bound here is dominated by process
//! start-up).

use herald_tests::harness::herald::{count, list, load};
use herald_tests::harness::host::Host;
use herald_tests::harness::load::service_name;
use herald_tests::harness::wait::secs;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use std::time::{Duration, Instant};

const SERVICES: usize = 1_000;
/// From `herald watch` start to the whole registry, process start-up included.
const BOUND: Duration = Duration::from_secs(3);

#[test]
fn late_listener_gets_the_full_registry_at_once() {
    let host = Host::loopback("lo");
    let directory = Directory::start(&host, "directory", DirectoryOptions::new("s07"));
    let conn = directory.connect();
    let _load = load(&host, &conn, "late-", SERVICES, 60, Duration::from_secs(60));

    let started = Instant::now();
    let watcher = Watcher::start(&host, "late watcher", &conn, &[]);
    watcher.wait(BOUND + Duration::from_secs(10), "1000 discovered", |e| {
        e.iter().filter(|e| e.event == "discovered").count() >= SERVICES
    });
    let full = started.elapsed();
    let lines = watcher.process().lines();
    let first = lines.iter().find(|l| l.text.starts_with('{')).map(|l| l.at);
    let last = lines
        .iter()
        .rev()
        .find(|l| l.text.starts_with('{'))
        .map(|l| l.at);
    let spread = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => Duration::ZERO,
    };
    eprintln!(
        "[s07] late joiner: full registry of {SERVICES} {} after `herald watch` started \
         (first to last event {})",
        secs(full),
        secs(spread)
    );
    let events = watcher.events();
    for i in 0..SERVICES {
        assert_eq!(count(&events, "discovered", &service_name("late-", i)), 1);
    }
    assert_eq!(events.len(), SERVICES, "nothing but discoveries");
    assert!(
        full <= BOUND,
        "full registry after {full:?}, bound {BOUND:?}"
    );

    let started = Instant::now();
    let listed = list(&host, &conn).expect("herald list");
    eprintln!(
        "[s07] herald list of {} services: {}",
        listed.len(),
        secs(started.elapsed())
    );
    assert_eq!(listed.len(), SERVICES);
}
