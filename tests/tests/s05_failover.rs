//! Scenario 5: directory failover. Two directories on two hosts share the group;
//! registrants and a listener are configured with both. The first is killed: the
//! registrations move to the second within the failover time, and the listener keeps
//! its view (no `unregistered`) and follows the second directory.

use herald_tests::harness::herald::{count, list_view, register, Connect};
use herald_tests::harness::wait::{poll_until, secs};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Watcher};
use std::time::{Duration, Instant};

const LEASE_SECS: u64 = 3;
/// A renewal is due at a third of the lease; three unanswered attempts (backoff from
/// 250 ms, capped at an eighth of the lease) and the client moves and re-registers.
const FAILOVER: Duration = Duration::from_secs(LEASE_SECS + 3);
const T: Duration = Duration::from_secs(15);

#[test]
fn registrations_and_listeners_move_to_the_second_directory() {
    let Some(lab) = lab_or_skip("s05", 4) else {
        return;
    };
    let first_options = DirectoryOptions::new("s05");
    let second_options = DirectoryOptions {
        group: first_options.group,
        ..DirectoryOptions::new("s05")
    };
    let mut first = Directory::start(lab.host(0), "first directory", first_options);
    let second = Directory::start(lab.host(1), "second directory", second_options);
    let both = Connect {
        directories: vec![first.addr(), second.addr()],
        ..first.connect()
    };
    let (r, l) = (lab.host(2), lab.host(3));
    let watcher = Watcher::start(l, "listener", &both, &[]);
    watcher.wait_ready(T);
    let names = ["orders", "payments", "search"];
    let lease = LEASE_SECS.to_string();
    let _registrants: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            register(
                r,
                &both,
                n,
                &[r.addr(8000 + i as u16)],
                &["--lease", &lease],
            )
        })
        .collect();
    watcher.wait(T, "all discovered", |e| {
        names.iter().all(|n| count(e, "discovered", n) == 1)
    });
    let view = watcher.view();

    first.kill();
    let killed = Instant::now();
    let moved = poll_until(T, || {
        list_view(r, &second.connect())
            .ok()
            .filter(|v| v.len() == names.len())
    })
    .expect("registrations moved to the second directory");
    let took = killed.elapsed();
    eprintln!(
        "[s05] registrations on the second directory {} after the kill (bound {})",
        secs(took),
        secs(FAILOVER)
    );
    assert_eq!(moved, view, "same registrations");
    assert!(took <= FAILOVER, "failover took {took:?}");

    // The listener follows the second directory: a new service there is discovered.
    let _late = register(r, &second.connect(), "late", &[r.addr(8100)], &[]);
    watcher.wait(T, "late discovered through the second directory", |e| {
        count(e, "discovered", "late") == 1
    });
    eprintln!(
        "[s05] listener follows the second directory {} after the kill",
        secs(killed.elapsed())
    );

    // Through the failover grace and a whole sweep of the second directory: no
    // service is ever reported gone.
    std::thread::sleep(Duration::from_secs(12));
    let e = watcher.events();
    for n in names {
        assert_eq!(count(&e, "unregistered", n), 0, "{n} reported gone: {e:?}");
        assert_eq!(count(&e, "discovered", n), 1, "{n}: {e:?}");
    }
    let mut expected = view;
    expected.insert("late".into(), vec![r.addr(8100).to_string()]);
    assert_eq!(watcher.view(), expected);
}
