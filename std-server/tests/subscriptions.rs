//! Unicast subscribers through the real binary over loopback, with `--group none`
//! (nothing is sent to a multicast address): a watch subscribes and sees every change
//! once, `herald list --subscribers` shows it, a SIGKILLed directory restarts with its
//! subscriber table, the watch unsubscribes when stopped, and bad flags are refused.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// `herald serve` with `--group none` and the HTTP API at `http`.
fn directory_without_group(net: &Net, data: &Path, http: &str) -> Proc {
    let args: Vec<String> = [
        "serve",
        "--bind",
        &net.directory.to_string(),
        "--group",
        "none",
        "--data-dir",
        &data.display().to_string(),
        "--http",
        http,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = Proc::spawn("directory", &args, &[]);
    p.expect_log("herald directory serving", Duration::from_secs(10));
    p
}

/// A client command against `net`'s directory, without a group.
fn client(net: &Net, args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--directory".into(), net.directory.to_string()]);
    all.extend(["--group".into(), "none".into()]);
    all
}

fn ok_without_group(net: &Net, args: &[&str]) -> String {
    let all = client(net, args);
    let out = run(&all, Duration::from_secs(15));
    assert!(
        out.status.success(),
        "herald {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The subscriber rows of `herald list --subscribers --json`.
fn subscribers(net: &Net, http: &str) -> Vec<serde_json::Value> {
    let text = ok_without_group(net, &["list", "--subscribers", "--json", "--http", http]);
    serde_json::from_str(text.trim()).expect("a JSON array")
}

/// Polls (bounded) until `check` holds for the subscriber rows; returns them.
fn wait_subscribers(
    net: &Net,
    http: &str,
    check: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = subscribers(net, http);
        if check(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watch_without_multicast_subscribes_and_survives_a_directory_restart() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let mut dir = directory_without_group(&net, data.path(), &http);
    let watch = Proc::spawn(
        "watcher",
        &client(&net, &["watch", "--json", "--interest", "svc/*"]),
        &[],
    );
    watch.expect_line("\"ready\"", Duration::from_secs(10));
    let rows = wait_subscribers(&net, &http, |r| r.len() == 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["interests"], serde_json::json!(["svc/*"]));

    ok_without_group(&net, &["register", "svc/a", "127.0.0.1:7001", "--once"]);
    ok_without_group(&net, &["register", "other", "127.0.0.1:7009", "--once"]);
    watch.expect_line("svc/a", Duration::from_secs(5));
    let rows = wait_subscribers(&net, &http, |r| r[0]["acked"].is_u64());
    assert!(rows[0]["lag"].is_u64(), "{rows:?}");

    // A directory killed at once comes back with its subscriber, and delivers to it
    // long before the watch would renew its 15 s subscription.
    dir.kill();
    let _dir = directory_without_group(&net, data.path(), &http);
    let rows = subscribers(&net, &http);
    assert_eq!(rows.len(), 1, "the subscriber is restored: {rows:?}");
    ok_without_group(&net, &["register", "svc/b", "127.0.0.1:7002", "--once"]);
    watch.expect_line("svc/b", Duration::from_secs(5));
    ok_without_group(&net, &["unregister", "svc/a"]);
    watch.expect_line("unregistered", Duration::from_secs(5));

    // Every change once, nothing of what the watch did not ask for.
    let lines = watch.lines_for(Duration::from_secs(2));
    assert_eq!(count(&lines, "discovered", "svc/a"), 0, "{lines:?}");
    assert_eq!(count(&lines, "discovered", "svc/b"), 0, "{lines:?}");
    assert_eq!(count(&lines, "unregistered", "svc/a"), 0, "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("other")), "{lines:?}");

    // Stopped in order, the watch unsubscribes: the directory forgets it at once.
    watch.signal("INT");
    let rows = wait_subscribers(&net, &http, |r| r.is_empty());
    assert!(rows.is_empty(), "unsubscribed on stop: {rows:?}");
}

#[test]
fn delivery_flags_that_cannot_work_are_refused_with_a_reason() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    for (extra, needle) in [
        (&["--delivery", "both"][..], "--group is none"),
        (
            &["--subscribers", "0", "--delivery", "unicast"][..],
            "subscribers",
        ),
        (&["--delivery", "sometimes"][..], "sometimes"),
    ] {
        let mut args = serve_args(&net, data.path(), extra);
        if extra[1] == "both" {
            args.extend(["--group".into(), "none".into()]);
            // The group of serve_args is replaced: keep only the last --group.
            let first = args.iter().position(|a| a == "--group").unwrap();
            args.drain(first..first + 2);
        }
        let out = run(&args, Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = run(
        &["watch".into(), "--group".into(), "nowhere".into()],
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("none"), "{err}");
}
