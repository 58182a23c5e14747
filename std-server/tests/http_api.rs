//! `herald serve --http`: the JSON API (list, get, PUT/DELETE with ownership, bad input),
//! the bearer token, and the Server-Sent Events watch and subscriber feed resumed with
//! `Last-Event-ID` after a dropped connection, against the real binary over loopback.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A directory with the HTTP API on; its HTTP address.
fn start(extra: &[&str]) -> (Proc, String, tempfile::TempDir) {
    let (p, http, data, _) = start_on(extra);
    (p, http, data)
}

/// The same, with its network.
fn start_on(extra: &[&str]) -> (Proc, String, tempfile::TempDir, Net) {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let mut args = vec!["--http", &http];
    args.extend_from_slice(extra);
    let p = directory(&net, data.path(), &args);
    (p, http, data, net)
}

fn put(addr: &str, name: &str, registrant: &str, body: &str) -> (u16, String) {
    request(
        addr,
        "PUT",
        &format!("/v1/services/{name}"),
        &[
            ("Herald-Registrant", registrant),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Every error is JSON with its reason, whatever is wrong with the URL: a path or query
/// that is not UTF-8 once percent-decoded, an unknown or repeated query parameter, an
/// unknown route, a method a route does not take. Before, a bad path or an unknown
/// route or method got plain text or an empty body, and a query that was not UTF-8
/// was read approximately (each bad byte as U+FFFD) and answered 200.
#[test]
fn every_error_is_json_with_its_reason() {
    let (_p, http, _data) = start(&[]);
    let alice = [("Herald-Registrant", ALICE)];
    const NO_QUERY: &str = "takes no query parameter";
    const ONE_PARAMETER: &str = "only query parameter";
    for (method, path, status, reason) in [
        ("GET", "/v1/services/a%FFb", 400, "not UTF-8"),
        ("PUT", "/v1/services/a%FFb", 400, "not UTF-8"),
        ("DELETE", "/v1/services/a%FFb", 400, "not UTF-8"),
        ("GET", "/v1/services?interest=%FF", 400, "not UTF-8"),
        ("GET", "/v1/watch?interest=%FF", 400, "not UTF-8"),
        ("GET", "/v1/subscribers?name=%FF", 400, "not UTF-8"),
        (
            "GET",
            "/v1/services?interest=a&interest=b",
            400,
            ONE_PARAMETER,
        ),
        ("GET", "/v1/watch?since=1", 400, ONE_PARAMETER),
        ("GET", "/v1/subscribers?interest=a", 400, ONE_PARAMETER),
        ("GET", "/v1/leases?name=a", 400, NO_QUERY),
        ("GET", "/v1/services/a?x", 400, NO_QUERY),
        ("PUT", "/v1/services/a?lease=5", 400, NO_QUERY),
        ("DELETE", "/v1/services/a?x=1", 400, NO_QUERY),
        ("GET", "/v1/subscribers/watch?x", 400, NO_QUERY),
        ("GET", "/healthz?verbose", 400, NO_QUERY),
        ("GET", "/metrics?x", 400, NO_QUERY),
        ("GET", "/?x", 400, NO_QUERY),
        ("GET", "/nope", 404, "no route /nope"),
        ("POST", "/v1/services/a", 405, "does not take POST"),
    ] {
        let (got, body) = request(&http, method, path, &alice, "");
        assert_eq!(got, status, "{method} {path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(reason), "{method} {path}: {error}");
    }
    // An empty query is no parameter.
    let (status, _) = request(&http, "GET", "/v1/leases?", &[], "");
    assert_eq!(status, 200);
    // Percent-encoded and `+` spaces are read as such.
    let (status, _) = put(&http, "a/b%20c", ALICE, r#"{"locations":["127.0.0.1:80"]}"#);
    assert_eq!(status, 200);
    let (status, body) = request(&http, "GET", "/v1/services?interest=a/b+c", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains(r#""name":"a/b c""#), "{body}");
}

/// A directory started with a low soft limit of open files (1,024 is a common default)
/// raises it to the hard limit, so that interfaces' connections, each bounded in time,
/// cannot use it up.
#[test]
fn the_directory_raises_its_soft_open_file_limit() {
    let limits = |pid: u32| -> (String, String) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let mut fields = line.split_whitespace().skip(3);
        (fields.next().unwrap().into(), fields.next().unwrap().into())
    };
    let (_, hard) = limits(std::process::id());
    if hard == "256" {
        println!("SKIPPED: the hard limit of open files is already 256");
        return;
    }
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    // `ulimit -Sn` in a shell that then becomes the directory.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_herald"))
        .args(serve_args(&net, data.path(), &[]));
    let p = Proc::spawn_command("directory", cmd);
    p.expect_log("herald directory serving", Duration::from_secs(10));
    assert_eq!(limits(p.pid()), (hard.clone(), hard));
}

const ALICE: &str = "00000000000a11ce";
const MALLORY: &str = "000000000000bad0";

#[test]
fn list_get_put_delete_with_ownership_and_bad_input() {
    let (_dir, http, _data, net) = start_on(&[]);
    let (status, body) = request(&http, "GET", "/v1/services", &[], "");
    assert_eq!((status, body.as_str()), (200, "[]"));

    let (status, body) = put(
        &http,
        "billing/host-1",
        ALICE,
        r#"{"locations":["127.0.0.1:8080"],"meta":{"zone":"eu"},"lease_secs":30}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""lease_secs":30"#), "{body}");
    put(
        &http,
        "billing/host-2",
        ALICE,
        r#"{"locations":["127.0.0.2:8080"]}"#,
    );
    put(
        &http,
        "search",
        ALICE,
        r#"{"locations":["127.0.0.3:9000"]}"#,
    );
    // An instance registered with the command line, as `billing/$(hostname)`.
    ok(
        &net,
        &[
            "register",
            "billing/cli-host",
            "127.0.0.4:8080",
            "--once",
            "--registrant",
            "7",
        ],
    );

    // The same shapes as `herald list --json`.
    let (status, body) = request(&http, "GET", "/v1/services/billing/host-1", &[], "");
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"name":"billing/host-1","locations":["127.0.0.1:8080"],"meta":{"zone":"eu"}}"#
    );
    let (_, body) = request(&http, "GET", "/v1/services?interest=billing/*", &[], "");
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&body)
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["billing/cli-host", "billing/host-1", "billing/host-2"]
    );
    let (status, _) = request(&http, "GET", "/v1/services/nothing", &[], "");
    assert_eq!(status, 404);

    // Another registrant may neither take nor remove the name.
    let (status, body) = put(
        &http,
        "billing/host-1",
        MALLORY,
        r#"{"locations":["127.0.0.9:1"]}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("name_held"), "{body}");
    let (status, body) = request(
        &http,
        "DELETE",
        "/v1/services/billing/host-1",
        &[("Herald-Registrant", MALLORY)],
        "",
    );
    assert_eq!(status, 409, "{body}");
    // Renewal and change by the owner: PUT again.
    let (status, body) = put(
        &http,
        "billing/host-1",
        ALICE,
        r#"{"locations":["127.0.0.1:8081"]}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = request(&http, "GET", "/v1/services/billing/host-1", &[], "");
    assert!(body.contains("127.0.0.1:8081"), "{body}");

    // Bad input: 4xx with a reason.
    for (name, registrant, body, want) in [
        (
            "x",
            ALICE,
            r#"{"locations":["127.0.0.1:1"],"color":"red"}"#,
            "unknown field",
        ),
        ("x", ALICE, r#"{"locations":["#, "invalid body"),
        (
            "x",
            ALICE,
            r#"{"locations":["not an address"]}"#,
            "invalid body",
        ),
        ("x", ALICE, r#"{"locations":[]}"#, "at least one"),
        (
            "x",
            "xyz",
            r#"{"locations":["127.0.0.1:1"]}"#,
            "Herald-Registrant",
        ),
        (
            " padded",
            ALICE,
            r#"{"locations":["127.0.0.1:1"]}"#,
            "invalid service name",
        ),
        (
            "x",
            ALICE,
            r#"{"locations":["[fe80::1]:80"]}"#,
            "needs a scope id",
        ),
    ] {
        let (status, text) = put(&http, &name.replace(' ', "%20"), registrant, body);
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(want), "{body}: {text}");
    }
    let big = format!(
        r#"{{"locations":["127.0.0.1:1"],"meta":{{"k":"{}"}}}}"#,
        "v".repeat(20_000)
    );
    let (status, _) = put(&http, "x", ALICE, &big);
    assert_eq!(status, 413, "an oversized body is refused");
    let (status, text) = request(&http, "GET", "/v1/services?color=red", &[], "");
    assert_eq!(status, 400, "{text}");

    // The owner removes it; removing again is a success too.
    for _ in 0..2 {
        let (status, body) = request(
            &http,
            "DELETE",
            "/v1/services/billing/host-1",
            &[("Herald-Registrant", ALICE)],
            "",
        );
        assert_eq!(status, 204, "{body}");
    }
    let (status, _) = request(&http, "GET", "/v1/services/billing/host-1", &[], "");
    assert_eq!(status, 404);

    let (status, body) = request(&http, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(&http, "GET", "/metrics", &[], "");
    assert_eq!(status, 200);
    assert!(body.contains("herald_health 1"), "{body}");
}

#[test]
fn bad_http_and_dns_settings_are_refused_with_the_reason() {
    let data = tempfile::tempdir().unwrap();
    let net = Net::new();
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let short = data.path().join("short-token");
    std::fs::write(&short, "abc").unwrap();
    let short = short.display().to_string();
    for (extra, want) in [
        (
            vec!["--http", &http, "--http-token-reads"],
            "needs --http-token-file",
        ),
        (
            vec!["--http", &http, "--http-token-file", "/nonexistent/token"],
            "cannot read",
        ),
        (
            vec!["--http", &http, "--http-token-file", &short],
            "at least 16",
        ),
        (vec!["--http-token-file", &short], "set --http too"),
        (
            vec!["--dns", "127.0.0.1:0", "--dns-ttl", "86400"],
            "dns-ttl",
        ),
        (vec!["--dns", "127.0.0.1:0", "--dns-domain", "."], "root"),
    ] {
        let out = run(
            &serve_args(&net, data.path(), &extra),
            Duration::from_secs(10),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}

#[test]
fn a_token_file_guards_writes_and_optionally_reads() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    let token = token_file.display().to_string();
    let (_dir, http, _data) = start(&["--http-token-file", &token, "--http-token-reads"]);
    let body = r#"{"locations":["127.0.0.1:8080"]}"#;
    let (status, text) = put(&http, "guarded", ALICE, body);
    assert_eq!(status, 401, "{text}");
    let (status, _) = request(&http, "GET", "/v1/services", &[], "");
    assert_eq!(status, 401);
    let bearer = [("Authorization", "Bearer s3cret-token-0123456789")];
    let (status, _) = request(&http, "GET", "/v1/services", &bearer, "");
    assert_eq!(status, 200);
    let (status, _) = request(&http, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "the health check stays open");
    let headers = [
        ("Authorization", "Bearer s3cret-token-0123456789"),
        ("Herald-Registrant", ALICE),
    ];
    let (status, text) = request(&http, "PUT", "/v1/services/guarded", &headers, body);
    assert_eq!(status, 200, "{text}");
    let wrong = [
        ("Authorization", "Bearer s3cret-token-0123456788"),
        ("Herald-Registrant", ALICE),
    ];
    let (status, _) = request(&http, "DELETE", "/v1/services/guarded", &wrong, "");
    assert_eq!(status, 401);
}

#[test]
fn in_an_authenticated_environment_writes_need_the_token_file() {
    use herald_server::keys;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("herald.key");
    std::fs::write(&key, keys::format(1, &[7u8; 32]).unwrap()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let key = key.display().to_string();
    let body = r#"{"locations":["127.0.0.1:8080"]}"#;
    {
        let (_dir, http, _data) = start(&["--key-file", &key]);
        let (status, text) = put(&http, "signed", ALICE, body);
        assert_eq!(status, 403, "{text}");
        assert!(text.contains("--http-token-file"), "{text}");
    }
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    let token = token_file.display().to_string();
    let (_dir, http, _data, net) = start_on(&["--key-file", &key, "--http-token-file", &token]);
    let headers = [
        ("Authorization", "Bearer s3cret-token-0123456789"),
        ("Herald-Registrant", ALICE),
    ];
    let (status, text) = request(&http, "PUT", "/v1/services/signed", &headers, body);
    assert_eq!(
        status, 200,
        "the directory signs it with the environment's key: {text}"
    );
    // A client of the environment sees it.
    let listed = ok(&net, &["list", "--key-file", &key]);
    assert!(listed.contains("signed 127.0.0.1:8080"), "{listed}");
}

/// One Server-Sent Event.
#[derive(Debug, PartialEq)]
struct Event {
    id: u64,
    kind: String,
    data: serde_json::Value,
}

/// An open `/v1/watch` stream.
struct Stream(BufReader<TcpStream>);

impl Stream {
    fn open(addr: &str, last_event_id: Option<u64>) -> Stream {
        Stream::open_path(addr, "/v1/watch", last_event_id)
    }

    fn open_path(addr: &str, path: &str, last_event_id: Option<u64>) -> Stream {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        Stream(reader)
    }

    /// The next event (keep-alive comments skipped; the chunked framing's size lines
    /// too, which hold only hex digits).
    fn next(&mut self) -> Event {
        let (mut id, mut kind, mut data) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no event");
            let mut line = String::new();
            let n = self.0.read_line(&mut line).unwrap();
            assert!(n > 0, "stream closed");
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(v).unwrap());
            } else if line.is_empty() {
                if let (Some(id), Some(kind), Some(data)) = (id, kind.take(), data.take()) {
                    return Event { id, kind, data };
                }
            }
        }
    }
}

fn change(e: &Event) -> (String, String) {
    assert_eq!(e.kind, "change", "{e:?}");
    (
        e.data["event"].as_str().unwrap().to_owned(),
        e.data["name"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_watch_resumes_after_a_dropped_connection_without_loss_or_repetition() {
    let (_dir, http, _data) = start(&[]);
    put(&http, "before", ALICE, r#"{"locations":["127.0.0.1:1"]}"#);
    let mut stream = Stream::open(&http, None);
    let first = stream.next();
    assert_eq!(first.kind, "snapshot");
    let names: Vec<&str> = first.data["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["before"]);
    put(&http, "a", ALICE, r#"{"locations":["127.0.0.1:2"]}"#);
    let a = stream.next();
    assert_eq!(change(&a), ("discovered".into(), "a".into()));
    assert!(a.id > first.id);
    drop(stream);

    // Changes while the client is away.
    put(&http, "b", ALICE, r#"{"locations":["127.0.0.1:3"]}"#);
    put(&http, "a", ALICE, r#"{"locations":["127.0.0.1:4"]}"#);
    request(
        &http,
        "DELETE",
        "/v1/services/before",
        &[("Herald-Registrant", ALICE)],
        "",
    );

    let mut stream = Stream::open(&http, Some(a.id));
    let missed: Vec<Event> = (0..3).map(|_| stream.next()).collect();
    let seen: Vec<(String, String)> = missed.iter().map(change).collect();
    assert_eq!(
        seen,
        [
            ("discovered".into(), "b".into()),
            ("changed".into(), "a".into()),
            ("unregistered".into(), "before".into()),
        ]
    );
    assert!(missed.windows(2).all(|w| w[0].id < w[1].id));
    assert!(missed[0].id > a.id);
    // Live again: the next change, and nothing repeated before it.
    put(&http, "c", ALICE, r#"{"locations":["127.0.0.1:5"]}"#);
    let c = stream.next();
    assert_eq!(change(&c), ("discovered".into(), "c".into()));
    assert!(c.id > missed[2].id);
    drop(stream);

    // Too far behind (a version older than any kept change): a full resynchronisation.
    let mut stream = Stream::open(&http, Some(1));
    let snapshot = stream.next();
    assert_eq!(snapshot.kind, "snapshot");
    // As of the directory's newest version: the last change's, or the announcement
    // that carried it (an announcement chain link takes a version of its own).
    assert!(snapshot.id >= c.id, "{} < {}", snapshot.id, c.id);
    assert_eq!(snapshot.data["services"].as_array().unwrap().len(), 3);
}

#[test]
fn a_watch_with_an_interest_sees_only_those_names() {
    let (_dir, http, _data) = start(&[]);
    put(
        &http,
        "billing/a",
        ALICE,
        r#"{"locations":["127.0.0.1:1"]}"#,
    );
    put(&http, "search", ALICE, r#"{"locations":["127.0.0.1:2"]}"#);
    let mut stream = Stream::open_path(&http, "/v1/watch?interest=billing/*", None);
    let first = stream.next();
    assert_eq!(first.kind, "snapshot");
    assert_eq!(first.data["services"].as_array().unwrap().len(), 1);
    put(&http, "search", ALICE, r#"{"locations":["127.0.0.1:3"]}"#);
    put(
        &http,
        "billing/b",
        ALICE,
        r#"{"locations":["127.0.0.1:4"]}"#,
    );
    assert_eq!(
        change(&stream.next()),
        ("discovered".into(), "billing/b".into())
    );
    let (status, _) = request(&http, "GET", "/v1/watch?interest=", &[], "");
    assert_eq!(status, 400);
}

/// `herald watch --json --subscribe` on `net`: a unicast subscriber.
fn subscriber(net: &Net, label: &str) -> Proc {
    let mut args: Vec<String> = ["watch", "--json", "--subscribe"]
        .map(String::from)
        .to_vec();
    args.extend(net.client_args());
    Proc::spawn(label, &args, &[])
}

/// Polls `/v1/subscribers` (bounded) until it lists `n` subscribers.
fn wait_subscribers(http: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = request(http, "GET", "/v1/subscribers", &[], "");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if rows.len() == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} subscribers never listed: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a subscriber feed's `change` event says: came/changed/went, and the id.
fn subscriber_change(e: &Event) -> (String, String) {
    assert_eq!(e.kind, "change", "{e:?}");
    (
        e.data["event"].as_str().unwrap().to_owned(),
        e.data["id"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn the_subscriber_feed_resumes_after_a_dropped_connection() {
    const FEED: &str = "/v1/subscribers/watch";
    let (_dir, http, _data, net) = start_on(&[]);
    let mut stream = Stream::open_path(&http, FEED, None);
    let table = stream.next();
    assert_eq!(table.kind, "table");
    assert_eq!(table.data["subscribers"], serde_json::json!([]));
    let first = subscriber(&net, "first subscriber");
    let came = stream.next();
    let (kind, first_id) = subscriber_change(&came);
    assert_eq!(kind, "came");
    assert!(came.id > table.id);
    drop(stream);

    // While the watcher is away: another subscriber comes, the first goes.
    let second = subscriber(&net, "second subscriber");
    wait_subscribers(&http, 2);
    first.signal("INT");
    wait_subscribers(&http, 1);

    let mut stream = Stream::open_path(&http, FEED, Some(came.id));
    let missed = [stream.next(), stream.next()];
    let seen: Vec<(String, String)> = missed.iter().map(subscriber_change).collect();
    assert_eq!(seen[0].0, "came");
    assert_ne!(seen[0].1, first_id);
    assert_eq!(seen[1], ("went".to_owned(), first_id.clone()));
    assert!(missed[0].id > came.id && missed[1].id > missed[0].id);
    // Live again: the next change, and nothing repeated before it.
    let third = subscriber(&net, "third subscriber");
    let next = stream.next();
    let (kind, third_id) = subscriber_change(&next);
    assert_eq!(kind, "came");
    assert_ne!(third_id, seen[0].1);
    assert!(next.id > missed[1].id);
    drop(stream);

    // A resume point never handed out (beyond the newest change), or one of an earlier
    // run of the directory (before its first): the table again, as of now.
    for unknown in [next.id + 1_000, 1] {
        let mut stream = Stream::open_path(&http, FEED, Some(unknown));
        let table = stream.next();
        assert_eq!(table.kind, "table", "after {unknown}");
        assert_eq!(table.id, next.id);
        assert_eq!(table.data["subscribers"].as_array().unwrap().len(), 2);
    }
    drop((second, third));
}
