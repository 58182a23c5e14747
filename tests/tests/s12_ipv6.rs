//! Scenario 12: IPv6 end to end. Two namespaces on a veth pair (harness::veth6) with
//! unique local (fd00:37::a, fd00:37::b) and link-local (fe80::a, fe80::b) addresses;
//! the directory runs on host A, registrants and `herald watch` on host B (and a second
//! watch on A). Discovery over a site-local group and over a link-local group joined by
//! interface index, a directory at a link-local address, link-local locations with a
//! scope id (each host sees them in its own zone), unregister, crash expiry, failover
//! between two IPv6 directories, and clear errors for IPv6 input that cannot work.

use herald_tests::harness::herald::{count, list_view, register, run, Connect};
use herald_tests::harness::http::get_on;
use herald_tests::harness::veth6::{pair_or_skip, End, IFACE};
use herald_tests::harness::wait::{poll_until, secs};
use herald_tests::{Directory, DirectoryOptions, Host, Watcher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(15);
/// A site-local group: routed by the namespace's ff00::/8 route out of the veth.
const SITE_GROUP: &str = "[ff15::3737]:37371";
/// A link-local group: only meaningful with an interface index.
const LINK_GROUP: &str = "[ff02::3737]:37371";

fn options(group: &str) -> DirectoryOptions {
    DirectoryOptions {
        group: group.parse().unwrap(),
        ..DirectoryOptions::new("s12")
    }
}

/// The locations of the last event for `name` a watcher printed.
fn locations_of(w: &Watcher, name: &str) -> Vec<String> {
    w.events()
        .into_iter()
        .rev()
        .find(|e| e.name == name)
        .map(|e| e.locations)
        .unwrap_or_default()
}

fn strings(addrs: &[SocketAddr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

/// What host `on` should print for B's service at its unique local address, port 8080,
/// and its link-local one, port 80: the link-local one in `on`'s own zone.
fn seen_from(b: &End, on: &End) -> Vec<String> {
    strings(&[b.ula_addr(8080), b.link_local_addr(80, on)])
}

#[test]
fn site_local_group_discovery_scope_ids_unregister_and_crash_expiry() {
    let Some(pair) = pair_or_skip("s12 site-local") else {
        return;
    };
    let (a, b) = (pair.end(0), pair.end(1));
    let directory = Directory::start(&a.host, "directory", options(SITE_GROUP));
    let conn = directory.connect();
    let watch_b = Watcher::start(&b.host, "watch B", &conn, &[]);
    let watch_a = Watcher::start(&a.host, "watch A", &conn, &[]);
    for w in [&watch_b, &watch_a] {
        w.wait_ready(T);
    }

    // B registers its unique local address and its link-local one, in its own zone.
    let started = Instant::now();
    let locations = [b.ula_addr(8080), b.link_local_addr(80, b)];
    let r = register(
        &b.host,
        &conn,
        "billing",
        &locations,
        &["--registrant", "7"],
    );
    for w in [&watch_b, &watch_a] {
        w.wait(T, "billing discovered", |e| {
            count(e, "discovered", "billing") == 1
        });
    }
    eprintln!(
        "[s12] discovered over {SITE_GROUP} on A and B after {}",
        secs(started.elapsed())
    );
    assert_eq!(locations_of(&watch_b, "billing"), seen_from(b, b));
    assert_eq!(locations_of(&watch_a, "billing"), seen_from(b, a));
    let listed = list_view(&a.host, &conn).expect("list on A");
    assert_eq!(listed["billing"], seen_from(b, a));

    // SIGTERM: it unregisters; both listeners hear it once.
    r.signal("TERM");
    r.wait_for_line(T, "unregistered billing");
    for w in [&watch_b, &watch_a] {
        w.wait(T, "billing unregistered", |e| {
            count(e, "unregistered", "billing") == 1
        });
    }

    // A registrant that crashes: its lease runs out and the service expires.
    let mut crashing = register(
        &b.host,
        &conn,
        "cache",
        &[b.ula_addr(6379)],
        &["--lease", "2"],
    );
    watch_b.wait(T, "cache discovered", |e| {
        count(e, "discovered", "cache") == 1
    });
    crashing.kill();
    let killed = Instant::now();
    for w in [&watch_b, &watch_a] {
        w.wait(T, "cache expired", |e| {
            count(e, "unregistered", "cache") == 1
        });
    }
    eprintln!(
        "[s12] crashed registrant's service expired after {}",
        secs(killed.elapsed())
    );
    std::thread::sleep(Duration::from_secs(2));
    for w in [&watch_b, &watch_a] {
        let e = w.events();
        for name in ["billing", "cache"] {
            assert_eq!(
                [
                    count(&e, "discovered", name),
                    count(&e, "unregistered", name)
                ],
                [1, 1],
                "{}: {e:?}",
                w.process().name()
            );
        }
        assert_eq!(e.len(), 4, "no other event: {e:?}");
    }
}

#[test]
fn link_local_group_and_link_local_directory() {
    let Some(pair) = pair_or_skip("s12 link-local") else {
        return;
    };
    let (a, b) = (pair.end(0), pair.end(1));
    // The directory binds its link-local address in A's zone; B reaches it in B's.
    let port = 37399;
    let http = a.ula_addr(37380);
    let directory = Directory::start_on(
        &a.host,
        "directory",
        a.link_local_addr(port, a),
        options(LINK_GROUP).with(&["--http", &http.to_string()]),
    );
    let conn_b = Connect {
        directories: vec![a.link_local_addr(port, b)],
        ..directory.connect()
    };
    let watch_b = Watcher::start(&b.host, "watch B", &conn_b, &[]);
    watch_b.wait_ready(T);
    // A listener that is given no directory finds it from its beacons on the group.
    let find = Connect {
        directories: Vec::new(),
        ..conn_b.clone()
    };
    let watch_found = Watcher::start(&b.host, "watch B (beacons)", &find, &[]);
    watch_found.wait_ready(T);

    let locations = [b.ula_addr(8080), b.link_local_addr(80, b)];
    let _r = register(
        &b.host,
        &conn_b,
        "billing",
        &locations,
        &["--registrant", "9"],
    );
    for w in [&watch_b, &watch_found] {
        w.wait(T, "billing discovered", |e| {
            count(e, "discovered", "billing") == 1
        });
        assert_eq!(locations_of(w, "billing"), seen_from(b, b));
    }
    // The directory's own view, from A: the link-local location in A's zone.
    let conn_a = directory.connect();
    let listed = list_view(&a.host, &conn_a).expect("list on A");
    assert_eq!(listed["billing"], seen_from(b, a));
    // Its HTTP API shows the same.
    let body = get_on(&a.host, http, "/v1/services").expect("GET /v1/services");
    let want = serde_json::to_string(&seen_from(b, a)).unwrap();
    assert!(body.contains(&want), "want {want} in {body}");

    // `herald unregister` from B, through the link-local directory.
    let mut args = vec![
        "unregister".to_string(),
        "billing".into(),
        "--registrant".into(),
        "9".into(),
    ];
    args.extend(conn_b.args(&b.host));
    let out = run(&b.host, "herald unregister", &args).expect("unregister");
    assert!(out.contains("unregistered billing"), "{out}");
    for w in [&watch_b, &watch_found] {
        w.wait(T, "billing unregistered", |e| {
            count(e, "unregistered", "billing") == 1
        });
    }
}

const LEASE_SECS: u64 = 3;
/// As in s05: a renewal is due at a third of the lease; three unanswered attempts and
/// the client moves and registers again.
const FAILOVER: Duration = Duration::from_secs(LEASE_SECS + 3);

#[test]
fn failover_between_two_ipv6_directories() {
    let Some(pair) = pair_or_skip("s12 failover") else {
        return;
    };
    let (a, b) = (pair.end(0), pair.end(1));
    let mut first = Directory::start(&a.host, "first directory", options(SITE_GROUP));
    let second = Directory::start(&a.host, "second directory", options(SITE_GROUP));
    let both = Connect {
        directories: vec![first.addr(), second.addr()],
        ..first.connect()
    };
    let watcher = Watcher::start(&b.host, "listener", &both, &[]);
    watcher.wait_ready(T);
    let names = ["orders", "payments"];
    let lease = LEASE_SECS.to_string();
    let _registrants: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let at = [b.ula_addr(8000 + i as u16), b.link_local_addr(9000, b)];
            register(&b.host, &both, n, &at, &["--lease", &lease])
        })
        .collect();
    watcher.wait(T, "all discovered", |e| {
        names.iter().all(|n| count(e, "discovered", n) == 1)
    });
    let view = watcher.view();

    first.kill();
    let killed = Instant::now();
    let moved = poll_until(T, || {
        list_view(&b.host, &second.connect())
            .ok()
            .filter(|v| v.len() == names.len())
    })
    .expect("registrations moved to the second directory");
    let took = killed.elapsed();
    eprintln!(
        "[s12] registrations on the second IPv6 directory {} after the kill (bound {})",
        secs(took),
        secs(FAILOVER)
    );
    assert_eq!(moved, view, "same registrations");
    assert!(took <= FAILOVER, "failover took {took:?}");

    let _late = register(&b.host, &second.connect(), "late", &[b.ula_addr(8100)], &[]);
    watcher.wait(T, "late discovered through the second directory", |e| {
        count(e, "discovered", "late") == 1
    });
    let e = watcher.events();
    for n in names {
        assert_eq!(count(&e, "unregistered", n), 0, "{n} reported gone: {e:?}");
        assert_eq!(count(&e, "discovered", n), 1, "{n}: {e:?}");
    }
}

/// Runs `herald ARGS` on `host`, expecting it to refuse with exit status 2 and a
/// message that contains `needle`.
fn refused(host: &Host, args: &[&str], needle: &str) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let err =
        run(host, &format!("herald {}", args.join(" ")), &args).expect_err("refused, not run");
    assert!(err.contains("exit status: 2"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: want {needle:?} in\n{err}");
}

#[test]
fn ipv6_input_that_cannot_work_is_refused_with_a_reason() {
    // Inside the namespaces, so that nothing could leave if a refusal were missing.
    let Some(pair) = pair_or_skip("s12 bad input") else {
        return;
    };
    let a = pair.end(0);
    let h = &a.host;
    let index = a.index.to_string();
    let bind = a.ula_addr(37399).to_string();
    let bind = bind.as_str();
    // A directory that started anyway would keep its data here, not in ~/.local/state.
    let data = tempfile::tempdir().expect("temporary data directory");
    let data = data.path().to_str().expect("UTF-8 path");
    let serve_args = |more: &[&str]| {
        let mut args = vec!["serve", "--data-dir", data, "--bind", bind];
        args.extend_from_slice(more);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let serve = |more: &[&str], needle: &str| {
        let args = serve_args(more);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(h, &args, needle)
    };
    // A link-local group needs an interface index (not the IPv4 default, not 0).
    serve(&["--group", LINK_GROUP], "interface index or name");
    serve(
        &["--group", LINK_GROUP, "--interface", "0"],
        "link-local group",
    );
    refused(
        h,
        &["watch", "--group", LINK_GROUP, "--directory", bind],
        "interface index or name",
    );
    // Announcements leave from the request socket: one family for both.
    serve(&["--group", "237.37.37.1:37371"], "different IP families");
    // An index or name that names no interface here.
    serve(
        &["--group", SITE_GROUP, "--interface", "97"],
        "no interface",
    );
    refused(
        h,
        &[
            "watch",
            "--group",
            SITE_GROUP,
            "--interface",
            "nosuch0",
            "--directory",
            bind,
        ],
        "no interface",
    );
    // A scope id that names no interface, in a location or a directory address.
    refused(
        h,
        &["register", "x", "[fe80::1%97]:80", "--directory", bind],
        "no interface",
    );
    refused(
        h,
        &["list", "--directory", "[fe80::1%97]:37399"],
        "no interface",
    );
    // A link-local address without a scope id cannot be reached.
    refused(h, &["list", "--directory", "[fe80::a]:37399"], "scope id");
    refused(
        h,
        &["serve", "--data-dir", data, "--bind", "[fe80::a]:37399"],
        "scope id",
    );
    // Names work where indexes do.
    let named = format!("[fe80::a%{IFACE}]:37399");
    let out = run(
        h,
        "herald serve --print-config",
        &[
            "serve".into(),
            "--print-config".into(),
            "--bind".into(),
            named,
            "--group".into(),
            LINK_GROUP.into(),
            "--interface".into(),
            IFACE.into(),
        ],
    )
    .expect("names are accepted");
    assert!(
        out.contains(&format!("bind = \"[fe80::a%{index}]:37399\"")),
        "{out}"
    );
    assert!(out.contains(&format!("interface = \"{index}\"")), "{out}");
}
