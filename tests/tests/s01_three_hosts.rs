//! Scenario 1: three hosts. A service registered on host B is discovered by listeners on
//! hosts A and C; its locations change and both see exactly one `changed`; it
//! unregisters and both see exactly one `unregistered`.

use herald_tests::harness::herald::{count, register};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Watcher};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

#[test]
fn three_hosts_discover_change_and_unregister_exactly_once() {
    let Some(lab) = lab_or_skip("s01", 3) else {
        return;
    };
    let (a, b, c) = (lab.host(0), lab.host(1), lab.host(2));
    let directory = Directory::start(a, "directory", DirectoryOptions::new("s01"));
    let conn = directory.connect();
    let watchers = [
        Watcher::start(a, "watch A", &conn, &[]),
        Watcher::start(c, "watch C", &conn, &[]),
    ];
    for w in &watchers {
        w.wait_ready(T);
    }

    let first = [b.addr(8080)];
    let started = Instant::now();
    let mut r1 = register(b, &conn, "billing", &first, &["--registrant", "7"]);
    for w in &watchers {
        w.wait(T, "billing discovered", |e| {
            count(e, "discovered", "billing") == 1
        });
    }
    eprintln!("[s01] discovered on A and C after {:?}", started.elapsed());
    let found = watchers[1].events();
    assert_eq!(found[0].locations, [first[0].to_string()], "{found:?}");

    // Same registrant, new locations: the first process is gone without unregistering.
    r1.kill();
    let second = [b.addr(8080), b.addr(8443)];
    let r2 = register(b, &conn, "billing", &second, &["--registrant", "7"]);
    for w in &watchers {
        w.wait(T, "billing changed", |e| {
            count(e, "changed", "billing") == 1
        });
        let changed = w
            .events()
            .into_iter()
            .find(|e| e.event == "changed")
            .expect("changed");
        let want: Vec<String> = second.iter().map(|s| s.to_string()).collect();
        assert_eq!(changed.locations, want);
    }

    // SIGTERM: the registrant unregisters, and every notification is repeated 20 times.
    r2.signal("TERM");
    r2.wait_for_line(T, "unregistered billing");
    for w in &watchers {
        w.wait(T, "billing unregistered", |e| {
            count(e, "unregistered", "billing") == 1
        });
    }
    // Let all 20 repeats (50 ms apart) and a sweep page go by, then count again.
    std::thread::sleep(Duration::from_secs(3));
    for w in &watchers {
        let e = w.events();
        assert_eq!(
            [
                count(&e, "discovered", "billing"),
                count(&e, "changed", "billing"),
                count(&e, "unregistered", "billing")
            ],
            [1, 1, 1],
            "{}: {e:?}",
            w.process().name()
        );
        assert_eq!(e.len(), 3, "no other event: {e:?}");
    }
}
