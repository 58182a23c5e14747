//! Registration, discovery and removal through the real binary over loopback.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_registration_is_seen_by_a_watcher_well_within_a_second() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let watch = watcher(&net, "watcher", &[]);
    let start = Instant::now();
    let _reg = registrant(&net, "billing", &["127.0.0.1:8080", "--meta", "zone=a"]);
    let (line, at) = watch.expect_line("\"discovered\"", Duration::from_secs(5));
    let latency = at - start;
    println!("discovered {latency:?} after starting `herald register`");
    assert_eq!(
        line,
        r#"{"event":"discovered","name":"billing","locations":["127.0.0.1:8080"],"meta":{"zone":"a"}}"#
    );
    assert!(latency < Duration::from_millis(500), "took {latency:?}");
    let list = ok(&net, &["list", "--json"]);
    assert_eq!(
        list.trim(),
        r#"[{"name":"billing","locations":["127.0.0.1:8080"],"meta":{"zone":"a"}}]"#
    );
}

#[test]
fn each_watcher_sees_exactly_one_unregistered() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let watchers = [
        watcher(&net, "watcher 1", &[]),
        watcher(&net, "watcher 2", &[]),
    ];
    let mut reg = registrant(&net, "billing", &["127.0.0.1:8080"]);
    for w in &watchers {
        w.expect_line("\"discovered\"", Duration::from_secs(5));
    }
    // Ctrl-C: the registrant unregisters and exits cleanly.
    reg.signal("INT");
    assert_eq!(
        reg.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        reg.stderr()
    );
    for w in &watchers {
        w.expect_line("\"unregistered\"", Duration::from_secs(5));
    }
    // The directory repeats the removal 20 times over about a second: no duplicates.
    for w in &watchers {
        let later = w.lines_for(Duration::from_millis(1500));
        assert_eq!(count(&later, "unregistered", "billing"), 0, "{later:?}");
    }
    assert_eq!(ok(&net, &["list", "--json"]).trim(), "[]");
}

#[test]
fn register_once_then_unregister_by_name_from_another_process() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let watch = watcher(&net, "watcher", &["--interest", "db*"]);
    let out = ok(&net, &["register", "db.main", "127.0.0.1:5432", "--once"]);
    assert!(out.starts_with("registered db.main"), "{out}");
    // Not of interest to the watcher.
    ok(&net, &["register", "web", "127.0.0.1:80", "--once"]);
    watch.expect_line("\"name\":\"db.main\"", Duration::from_secs(5));
    // Same host, same name: the same registrant id, so it may remove it.
    let out = ok(&net, &["unregister", "db.main"]);
    assert_eq!(out.trim(), "unregistered db.main");
    let (line, _) = watch.expect_line("\"unregistered\"", Duration::from_secs(5));
    assert!(line.contains("db.main"), "{line}");
    // Another registrant id may not.
    let mut args: Vec<String> = ["unregister", "web", "--registrant", "12345"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(net.client_args());
    let out = run(&args, Duration::from_secs(10));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held by another registrant"), "{err}");
    let list = ok(&net, &["list"]);
    assert_eq!(list, "web 127.0.0.1:80\n");
}

#[test]
fn a_killed_registrant_is_unregistered_within_about_one_lease() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let watch = watcher(&net, "watcher", &[]);
    let mut reg = registrant(&net, "worker", &["127.0.0.1:9000", "--lease", "2"]);
    watch.expect_line("\"discovered\"", Duration::from_secs(5));
    let killed = Instant::now();
    reg.kill();
    let (line, at) = watch.expect_line("\"unregistered\"", Duration::from_secs(6));
    let after = at - killed;
    println!("unregistered {after:?} after SIGKILL (lease 2 s)");
    assert!(line.contains("worker"), "{line}");
    assert!(after <= Duration::from_millis(3000), "took {after:?}");
}

#[test]
fn ctrl_c_while_registering_stops_cleanly_with_status_130() {
    // No directory answers: `herald register` is still waiting for one when Ctrl-C comes.
    // Its handler is installed before the registration is sent, so it stops cleanly
    // (the default action would kill it with the service perhaps registered).
    let net = Net::new();
    let mut args: Vec<String> = vec!["register".into(), "billing".into(), "127.0.0.1:8080".into()];
    args.extend(net.client_args());
    let mut reg = Proc::spawn("registrant billing", &args, &[]);
    std::thread::sleep(Duration::from_millis(400));
    reg.signal("INT");
    assert_eq!(
        reg.wait(Duration::from_secs(10)),
        Some(130),
        "{}",
        reg.stderr()
    );
    assert!(
        reg.stderr()
            .contains("interrupted before the registration was confirmed"),
        "{}",
        reg.stderr()
    );
}

/// `herald watch` says when the current registry is all in: after its `discovered`
/// lines, and also when the registry is empty (as the first line), in both formats.
#[test]
fn watch_says_when_it_is_ready() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let _dir = directory(&net, data.path(), &[]);
    let watch = |label: &str, json: bool| {
        let mut args: Vec<String> = vec!["watch".into()];
        if json {
            args.push("--json".into());
        }
        args.extend(net.client_args());
        Proc::spawn(label, &args, &[])
    };
    let empty = watch("watcher of an empty registry", true);
    assert_eq!(
        empty.line(Duration::from_secs(10)).as_deref(),
        Some(r#"{"event":"ready","services":0}"#),
        "{}",
        empty.stderr()
    );

    let _reg = registrant(&net, "billing", &["127.0.0.1:8080"]);
    let human = watch("watcher", false);
    let first = human.line(Duration::from_secs(10));
    let second = human.line(Duration::from_secs(10));
    assert_eq!(
        (first.as_deref(), second.as_deref()),
        (
            Some("discovered billing 127.0.0.1:8080"),
            Some("ready: 1 service")
        ),
        "{}",
        human.stderr()
    );
    // Changes come after it as before.
    let _other = registrant(&net, "ledger", &["127.0.0.1:8081"]);
    human.expect_line("discovered ledger 127.0.0.1:8081", Duration::from_secs(5));
    assert_eq!(
        empty.line(Duration::from_secs(5)).as_deref(),
        Some(r#"{"event":"discovered","name":"billing","locations":["127.0.0.1:8080"],"meta":{}}"#)
    );
}
