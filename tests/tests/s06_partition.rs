//! Scenario 6: partition. A listener cut off from the network while services come,
//! go and change converges to the directory's exact registry once the partition heals,
//! with exactly one event per change it missed.

use herald_tests::harness::herald::{count, list_view, load, register, unload};
use herald_tests::harness::load::service_name;
use herald_tests::harness::wait::{poll_until, secs};
use herald_tests::{lab_or_skip, Directory, DirectoryOptions, Watcher};
use std::time::{Duration, Instant};

const N: usize = 10;
const T: Duration = Duration::from_secs(20);
/// After healing: the failover grace (6 s), then the next beacon (1 s) shows the listener
/// behind and it repairs (a round trip), with slack.
const CONVERGE: Duration = Duration::from_secs(25);

#[test]
fn partitioned_listener_converges_after_healing() {
    let Some(lab) = lab_or_skip("s06", 3) else {
        return;
    };
    let (d, r, l) = (lab.host(0), lab.host(1), lab.host(2));
    let directory = Directory::start(d, "directory", DirectoryOptions::new("s06"));
    let conn = directory.connect();
    let watcher = Watcher::start(l, "listener", &conn, &[]);
    watcher.wait_ready(T);
    let _stay = load(r, &conn, "stay-", N, 15, T);
    let mut gone = load(r, &conn, "gone-", N, 15, T);
    let mut moving = register(r, &conn, "moving", &[r.addr(9000)], &["--registrant", "5"]);
    watcher.wait(T, "all discovered", |e| {
        e.iter().filter(|e| e.event == "discovered").count() == 2 * N + 1
    });

    lab.partition(2);
    let cut = Instant::now();
    unload(&mut gone, T);
    let _new = load(r, &conn, "new-", N, 15, T);
    moving.kill();
    let _moved = register(r, &conn, "moving", &[r.addr(9001)], &["--registrant", "5"]);
    // Every notification of the removals is sent while the listener is away, and its
    // directory's beacons are silent for longer than the listener's 3 s timeout.
    std::thread::sleep(Duration::from_secs(4));
    let truth = list_view(r, &conn).expect("list");
    assert_eq!(truth.len(), 2 * N + 1);
    assert!(
        watcher.events().len() == 2 * N + 1,
        "the partition let nothing through"
    );
    lab.heal(2);
    let healed = Instant::now();
    eprintln!("[s06] partition lasted {}", secs(healed - cut));

    let converged = poll_until(CONVERGE, || (watcher.view() == truth).then_some(()));
    let took = healed.elapsed();
    assert!(
        converged.is_some(),
        "listener view {:?}\n!= directory {:?}",
        watcher.view(),
        truth
    );
    eprintln!(
        "[s06] converged {} after healing (bound {})",
        secs(took),
        secs(CONVERGE)
    );
    std::thread::sleep(Duration::from_secs(2));
    let e = watcher.events();
    for i in 0..N {
        assert_eq!(count(&e, "unregistered", &service_name("gone-", i)), 1);
        assert_eq!(count(&e, "discovered", &service_name("new-", i)), 1);
        assert_eq!(count(&e, "unregistered", &service_name("stay-", i)), 0);
    }
    assert_eq!(count(&e, "changed", "moving"), 1, "{e:?}");
    assert_eq!(
        e.len(),
        2 * N + 1 + 2 * N + 1,
        "one event per change: {e:?}"
    );
    assert_eq!(watcher.view(), list_view(r, &conn).expect("list"));
}
