//! Unicast subscribers through the real binary over loopback, with `--group none`
//! (nothing is sent to a multicast address): a watch subscribes and sees every change
//! once, `herald list --subscribers` shows it, a SIGKILLed directory restarts with its
//! subscriber table, the watch unsubscribes when stopped, and bad flags are refused.
//! Who listens to what: `herald watch --subscribers` reports subscribers that come and
//! go (unsubscribed or expired), and `herald list --subscribers --interested-in NAME`
//! counts the ones a name reaches.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// `herald serve` with `--group none`, the HTTP API at `http` and `extra` flags.
fn directory_without_group(net: &Net, data: &Path, http: &str, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
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
    args.extend(extra.iter().map(|s| s.to_string()));
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
    let mut dir = directory_without_group(&net, data.path(), &http, &[]);
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
    let _dir = directory_without_group(&net, data.path(), &http, &[]);
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

/// `herald ARGS…` that must fail with exit status `status`; its error output.
fn refused(args: &[&str], status: i32) -> String {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = run(&args, Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(status), "herald {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn watch_subscribers_reports_who_came_and_went_and_why() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    // Subscription leases of 2 s at most: a listener killed expires soon.
    let _dir = directory_without_group(
        &net,
        data.path(),
        &http,
        &["--max-lease-secs", "2", "--default-lease-secs", "2"],
    );
    let before = Proc::spawn(
        "watcher before",
        &client(&net, &["watch", "--json", "--interest", "svc/*"]),
        &[],
    );
    before.expect_line("\"ready\"", Duration::from_secs(10));
    wait_subscribers(&net, &http, |r| r.len() == 1);

    let mut feed = Proc::spawn(
        "subscriber feed",
        &["watch", "--subscribers", "--json", "--http", http.as_str()].map(String::from),
        &[],
    );
    // The table it opens with: the watcher already there, then ready.
    let (line, _) = feed.expect_line("\"came\"", Duration::from_secs(10));
    assert!(line.contains("\"interests\":[\"svc/*\"]"), "{line}");
    feed.expect_line(
        "{\"event\":\"ready\",\"subscribers\":1}",
        Duration::from_secs(5),
    );

    // One that comes and unsubscribes (Ctrl-C), one that comes and is killed.
    let leaves = Proc::spawn(
        "watcher that leaves",
        &client(&net, &["watch", "--json", "--interest", "other"]),
        &[],
    );
    let (line, _) = feed.expect_line("\"came\"", Duration::from_secs(10));
    assert!(line.contains("\"interests\":[\"other\"]"), "{line}");
    leaves.expect_line("\"ready\"", Duration::from_secs(10));
    leaves.signal("INT");
    let (line, _) = feed.expect_line("\"went\"", Duration::from_secs(10));
    assert!(line.contains("\"interests\":[\"other\"]"), "{line}");
    assert!(line.contains("\"ended\":\"unsubscribed\""), "{line}");

    let mut crashes = Proc::spawn(
        "watcher that crashes",
        &client(&net, &["watch", "--json", "--interest", "cache"]),
        &[],
    );
    feed.expect_line("\"came\"", Duration::from_secs(10));
    crashes.kill();
    let (line, _) = feed.expect_line("\"went\"", Duration::from_secs(15));
    assert!(line.contains("\"interests\":[\"cache\"]"), "{line}");
    assert!(line.contains("\"ended\":\"expired\""), "{line}");

    // The directory's counters agree.
    let (_, metrics) = request(&http, "GET", "/metrics", &[], "");
    assert_eq!(
        metric(&metrics, "herald_subscriptions_total"),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "herald_unsubscribes_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "herald_subscribers_expired_total"),
        1.0,
        "{metrics}"
    );

    // Nothing about the watcher that stayed.
    let lines = feed.lines_for(Duration::from_millis(500));
    assert!(!lines.iter().any(|l| l.contains("svc/*")), "{lines:?}");
    // Ctrl-C ends the feed cleanly.
    feed.signal("INT");
    assert_eq!(feed.wait(Duration::from_secs(5)), Some(0));
    drop(before);
}

/// `herald watch --subscribers` outlives a directory restart: it opens the feed again
/// by itself and reports what changed meanwhile once (a subscriber restored from disk
/// is not reported again, one that came while the feed was away is).
#[test]
fn the_subscriber_feed_outlives_a_directory_restart() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let mut dir = directory_without_group(&net, data.path(), &http, &[]);
    let stays = Proc::spawn(
        "watcher that stays",
        &client(&net, &["watch", "--json", "--interest", "svc/*"]),
        &[],
    );
    stays.expect_line("\"ready\"", Duration::from_secs(10));
    wait_subscribers(&net, &http, |r| r.len() == 1);
    let mut feed = Proc::spawn(
        "subscriber feed",
        &["watch", "--subscribers", "--json", "--http", http.as_str()].map(String::from),
        &[],
    );
    feed.expect_line(
        "{\"event\":\"ready\",\"subscribers\":1}",
        Duration::from_secs(10),
    );

    dir.kill();
    let _dir = directory_without_group(&net, data.path(), &http, &[]);
    let comes = Proc::spawn(
        "watcher that comes",
        &client(&net, &["watch", "--json", "--interest", "cache"]),
        &[],
    );
    let (line, _) = feed.expect_line("\"came\"", Duration::from_secs(15));
    assert!(line.contains("\"interests\":[\"cache\"]"), "{line}");
    comes.signal("INT");
    let (line, _) = feed.expect_line("\"went\"", Duration::from_secs(10));
    assert!(line.contains("\"interests\":[\"cache\"]"), "{line}");

    // The one restored from disk was never reported again, nor a second ready.
    let lines = feed.lines_for(Duration::from_millis(500));
    assert!(!lines.iter().any(|l| l.contains("svc/*")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("ready")), "{lines:?}");
    // Still running (it exits 0 on Ctrl-C; an ended feed would have failed).
    feed.signal("INT");
    assert_eq!(feed.wait(Duration::from_secs(5)), Some(0));
    drop(stays);
}

#[test]
fn a_registrant_learns_how_many_subscribers_listen_to_its_name() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let _dir = directory_without_group(&net, data.path(), &http, &[]);
    let _prefix = Proc::spawn(
        "prefix watcher",
        &client(&net, &["watch", "--json", "--interest", "svc/*"]),
        &[],
    );
    let _exact = Proc::spawn(
        "exact watcher",
        &client(&net, &["watch", "--json", "--interest", "svc/a"]),
        &[],
    );
    let _all = Proc::spawn("watcher of all", &client(&net, &["watch", "--json"]), &[]);
    wait_subscribers(&net, &http, |r| r.len() == 3);

    let ask = |name: &str| {
        let text = ok_without_group(
            &net,
            &[
                "list",
                "--subscribers",
                "--interested-in",
                name,
                "--json",
                "--http",
                http.as_str(),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
        assert_eq!(v["name"], name);
        assert_eq!(v["count"], v["subscribers"].as_array().unwrap().len());
        v
    };
    let a = ask("svc/a");
    assert_eq!(a["count"], 3, "{a}");
    let b = ask("svc/b");
    assert_eq!(b["count"], 2, "{b}");
    let interests: Vec<&serde_json::Value> = b["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["interests"])
        .collect();
    assert!(interests.contains(&&serde_json::json!(["svc/*"])), "{b}");
    assert!(interests.contains(&&serde_json::json!([])), "{b}");
    assert_eq!(ask("billing")["count"], 1);

    // As text: the count first, then one line per subscriber.
    let text = ok_without_group(
        &net,
        &[
            "list",
            "--subscribers",
            "--interested-in",
            "svc/b",
            "--http",
            http.as_str(),
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2 subscribers interested in svc/b", "{text}");
    assert_eq!(lines.len(), 3, "{text}");

    // A name that cannot be one is refused by the directory, with its reason.
    let bad = "x".repeat(65);
    let mut args = client(&net, &["list", "--subscribers", "--http", http.as_str()]);
    args.extend(["--interested-in".into(), bad]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = refused(&args, 1);
    assert!(
        err.contains("400") && err.contains("invalid service name"),
        "{err}"
    );
}

#[test]
fn subscriber_commands_say_what_is_missing() {
    // No --http: refused by the command line.
    let err = refused(&["watch", "--subscribers"], 2);
    assert!(err.contains("--http"), "{err}");
    let err = refused(&["list", "--subscribers", "--interested-in", "svc"], 2);
    assert!(err.contains("--http"), "{err}");
    // Nothing listening there (no directory, or one without --http).
    let http = format!("127.0.0.1:{}", free_port_tcp());
    for args in [
        &["watch", "--subscribers", "--http", http.as_str()][..],
        &[
            "list",
            "--subscribers",
            "--interested-in",
            "svc",
            "--http",
            http.as_str(),
        ][..],
    ] {
        let err = refused(args, 1);
        assert!(err.contains("cannot reach a directory's HTTP API"), "{err}");
        assert!(err.contains("herald serve --http"), "{err}");
    }
}

#[test]
fn the_subscriber_feed_needs_the_token_when_reads_do() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let token = data.path().join("token");
    std::fs::write(&token, "s3cret-s3cret-s3cret\n").unwrap();
    let token = token.display().to_string();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let _dir = directory_without_group(
        &net,
        data.path(),
        &http,
        &["--http-token-file", &token, "--http-token-reads", "true"],
    );
    let err = refused(&["watch", "--subscribers", "--http", http.as_str()], 1);
    assert!(err.contains("401"), "{err}");
    let feed = Proc::spawn(
        "subscriber feed",
        &[
            "watch",
            "--subscribers",
            "--http",
            http.as_str(),
            "--http-token-file",
            token.as_str(),
        ]
        .map(String::from),
        &[],
    );
    feed.expect_line("ready: 0 subscribers", Duration::from_secs(10));
}
