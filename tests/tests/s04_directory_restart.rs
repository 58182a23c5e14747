//! Scenario 4: directory restart. The directory is killed with SIGKILL while services
//! are registered and unregister notifications are still pending; it restarts on the
//! same data directory; nothing is lost (every service is listed again, the pending
//! notifications are all sent) and no listener sees a spurious `unregistered`.

use herald_tests::harness::herald::{count, list_view, register};
use herald_tests::harness::host::Host;
use herald_tests::harness::tap::Tap;
use herald_tests::harness::wait::poll_until;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use std::net::SocketAddr;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
/// A slow processing interval, so that 20 notifications take 5 s: the kill lands while
/// most are pending.
const INTERVAL_MS: u64 = 250;
const NOTIFICATIONS: usize = 20;

#[test]
fn restart_after_sigkill_loses_nothing() {
    let host = Host::loopback("lo");
    let mut directory = Directory::start(
        &host,
        "directory",
        DirectoryOptions::new("s04").with(&["--interval-ms", &INTERVAL_MS.to_string()]),
    );
    let conn = directory.connect();
    let SocketAddr::V4(group) = directory.group() else {
        panic!("IPv4 group")
    };
    let tap = Tap::start(group);
    let watcher = Watcher::start(&host, "watch", &conn, &[]);
    watcher.wait_ready(T);

    let names = ["alpha", "bravo", "charlie"];
    let _kept: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            register(
                &host,
                &conn,
                n,
                &[host.addr(7100 + i as u16)],
                &["--lease", "6"],
            )
        })
        .collect();
    let leaving = register(&host, &conn, "leaving", &[host.addr(7199)], &[]);
    watcher.wait(T, "all discovered", |e| {
        names.iter().all(|n| count(e, "discovered", n) == 1)
            && count(e, "discovered", "leaving") == 1
    });
    let before = list_view(&host, &conn).expect("list before");

    // Unregister, and kill the directory as soon as the first notification is on the
    // wire: the removal it announced (and acknowledged) must already be stored.
    leaving.signal("TERM");
    leaving.wait_for_line(T, "unregistered leaving");
    poll_until(T, || {
        (!tap.unregistered("leaving").is_empty()).then_some(())
    })
    .expect("the first notification is sent at once");
    directory.kill();
    let sent_before = tap.unregistered("leaving").len();
    eprintln!("[s04] killed with {sent_before} of {NOTIFICATIONS} notifications sent");
    assert!(
        sent_before < NOTIFICATIONS,
        "the kill came too late to test anything"
    );

    directory.restart();
    let mut last = None;
    let after = poll_until(T, || {
        last = Some(list_view(&host, &conn));
        last.clone()?.ok().filter(|v| v.len() == names.len())
    })
    .unwrap_or_else(|| panic!("the restarted directory lists the live services: {last:?}"));
    let mut expected = before.clone();
    expected.remove("leaving");
    assert_eq!(after, expected, "same registry after the restart");

    // The pending notifications are sent after the restart.
    let total = poll_until(Duration::from_secs(15), || {
        let n = tap.unregistered("leaving").len();
        (n >= NOTIFICATIONS).then_some(n)
    });
    eprintln!(
        "[s04] notifications for `leaving` on the wire: {} before the kill, {} in all",
        sent_before,
        tap.unregistered("leaving").len()
    );
    assert!(total.is_some(), "pending notifications were lost");

    // Renewals go on across the restart (leases of 6 s, two of them): no spurious
    // unregistered, no second discovery.
    std::thread::sleep(Duration::from_secs(12));
    let e = watcher.events();
    for n in names {
        assert_eq!(
            count(&e, "unregistered", n),
            0,
            "spurious unregistered {n}: {e:?}"
        );
        assert_eq!(count(&e, "discovered", n), 1, "{n}: {e:?}");
    }
    assert_eq!(count(&e, "unregistered", "leaving"), 1, "{e:?}");
    assert_eq!(e.len(), names.len() + 2, "nothing else: {e:?}");
}
