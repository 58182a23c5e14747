//! The directory's storage through the real binary: SIGKILL and restart, and a data
//! directory it cannot read.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn a_directory_killed_and_restarted_keeps_its_registry() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let mut dir = directory(&net, data.path(), &[]);
    let watch = watcher(&net, "watcher", &[]);
    let _alpha = registrant(&net, "alpha", &["127.0.0.1:7001", "--meta", "k=v"]);
    let _beta = registrant(&net, "beta", &["127.0.0.1:7002", "127.0.0.2:7002"]);
    ok(
        &net,
        &[
            "register",
            "gamma",
            "127.0.0.1:7003",
            "--once",
            "--lease",
            "60",
        ],
    );
    ok(&net, &["register", "gone", "127.0.0.1:7004", "--once"]);
    for _ in 0..4 {
        watch.expect_line("\"discovered\"", Duration::from_secs(5));
    }
    // Unregister one, and kill the directory while its notifications are still due.
    ok(&net, &["unregister", "gone"]);
    dir.kill();
    let before = watch.lines_for(Duration::from_millis(200));
    let data_file = data.path().join("registry.redb");
    assert!(data_file.exists());

    let _dir = directory(&net, data.path(), &[]);
    let list = ok(&net, &["list", "--json"]);
    assert_eq!(
        list.trim(),
        concat!(
            r#"[{"name":"alpha","locations":["127.0.0.1:7001"],"meta":{"k":"v"}},"#,
            r#"{"name":"beta","locations":["127.0.0.1:7002","127.0.0.2:7002"],"meta":{}},"#,
            r#"{"name":"gamma","locations":["127.0.0.1:7003"],"meta":{}}]"#
        )
    );
    // The watcher saw the removal once (before the kill or from the restarted
    // directory's remaining notifications) and nothing spurious: past its 3 s directory
    // timeout and a sweep.
    let after = watch.lines_for(Duration::from_secs(4));
    let all: Vec<String> = before.into_iter().chain(after).collect();
    assert_eq!(count(&all, "unregistered", "gone"), 1, "{all:#?}");
    for name in ["alpha", "beta", "gamma"] {
        assert_eq!(count(&all, "unregistered", name), 0, "{all:#?}");
    }
    // Leases continued: the registrants still renew with the restarted directory.
    assert_eq!(ok(&net, &["list", "--json"]), list);
}

#[test]
fn a_corrupt_data_directory_is_reported_and_left_alone() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    {
        // A real registry first, so that the damage is past a valid header.
        let _dir = directory(&net, data.path(), &[]);
        ok(&net, &["register", "alpha", "127.0.0.1:7001", "--once"]);
    }
    let file = data.path().join("registry.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(512) {
        *b = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let args = serve_args(&net, data.path(), &[]);
    let out = run(&args, Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("corrupt data directory"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "the file was changed");
}

#[test]
fn a_restart_after_a_downtime_longer_than_the_leases_does_not_flap() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let mut dir = directory(&net, data.path(), &[]);
    let watch = watcher(&net, "watcher", &[]);
    let names = ["one", "two", "three"];
    let _registrants: Vec<Proc> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let port = format!("127.0.0.1:{}", 7101 + i);
            registrant(&net, name, &[port.as_str(), "--lease", "1"])
        })
        .collect();
    for _ in names {
        watch.expect_line("\"discovered\"", Duration::from_secs(5));
    }
    // Down for three times the leases, then back: the registrants renew within the
    // grace period, and nobody is announced gone.
    dir.kill();
    std::thread::sleep(Duration::from_secs(3));
    let _dir = directory(&net, data.path(), &[]);
    let lines = watch.lines_for(Duration::from_secs(5));
    for name in names {
        assert_eq!(count(&lines, "unregistered", name), 0, "{lines:#?}");
    }
    assert_eq!(
        ok(&net, &["list", "--json"]).matches("\"name\"").count(),
        3,
        "all three live"
    );
}
