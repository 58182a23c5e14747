//! Directories sharing their registry in a real etcd (`/usr/bin/etcd` on free loopback
//! ports, in a temporary data directory): a registration through one reaches the other
//! and is announced by the publisher alone, one publisher at a time, a killed publisher
//! replaced, and an etcd outage ridden out and caught up. Skipped, with the reason
//! printed, when etcd is not installed.

#![cfg(feature = "etcd")]

mod common;

use common::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";
/// The publisher lease of every directory here: etcd's shortest (it grants at least 2 s
/// with its default timing).
const LEASE_MS: u64 = 2_000;

/// An etcd server on loopback ports, killed on drop; restarting keeps its data.
struct Etcd {
    child: Option<Child>,
    data: tempfile::TempDir,
    client: u16,
    peer: u16,
}

impl Etcd {
    /// Starts etcd, or says why not (printed by the caller, which then skips).
    fn start() -> Option<Etcd> {
        if !Path::new(ETCD).exists() {
            println!("SKIPPED: {ETCD} is not installed (Debian: etcd-server)");
            return None;
        }
        let mut etcd = Etcd {
            child: None,
            data: tempfile::tempdir().unwrap(),
            client: free_port_tcp(),
            peer: free_port_tcp(),
        };
        etcd.run();
        Some(etcd)
    }

    /// Starts the server (again) on the same ports and data, and waits until it answers.
    fn run(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new(ETCD)
            .args(["--name", "default", "--data-dir"])
            .arg(self.data.path().join("etcd"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.client)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = write!(
                    s,
                    "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.contains("\"health\":\"true\"") {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not become healthy on port {}", self.client);
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("etcd runs").id();
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} etcd");
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Puts `value` at `key` through etcd's JSON gateway.
    fn put(&self, key: &[u8], value: &[u8]) {
        use base64::Engine;
        use std::io::{Read, Write};
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.client)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The `--store` value.
    fn store(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy to etcd that can be cut (every connection closed, new ones refused)
/// and restored: one directory's link to etcd, while the others keep theirs.
struct Link {
    port: u16,
    open: Arc<AtomicBool>,
    cuts: Arc<AtomicU64>,
}

impl Link {
    fn to(etcd: &Etcd) -> Link {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicU64::new(0));
        let target = etcd.client;
        let (o, c) = (open.clone(), cuts.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !o.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let generation = c.load(Ordering::SeqCst);
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (o, c) = (o.clone(), c.clone());
                    thread::spawn(move || pump(from, to, &o, &c, generation));
                }
            }
        });
        Link { port, open, cuts }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    fn store(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }
}

/// Copies `from` to `to` until either closes or the link is cut.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    open: &AtomicBool,
    cuts: &AtomicU64,
    generation: u64,
) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if !open.load(Ordering::SeqCst) || cuts.load(Ordering::SeqCst) != generation {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// One directory of the cluster: its network (request address, shared group), its
/// metrics endpoint and its process.
struct Node {
    net: Net,
    metrics: String,
    proc: Proc,
    _data: tempfile::TempDir,
}

impl Node {
    fn start(etcd: &Etcd, group: SocketAddr) -> Node {
        Node::start_with(&etcd.store(), group)
    }

    fn start_with(store: &str, group: SocketAddr) -> Node {
        let net = Net {
            directory: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            group,
        };
        let metrics = format!("127.0.0.1:{}", free_port_tcp());
        let data = tempfile::tempdir().unwrap();
        let lease = LEASE_MS.to_string();
        let proc = directory(
            &net,
            data.path(),
            &[
                "--store",
                store,
                "--publisher-lease-ms",
                &lease,
                "--metrics",
                &metrics,
            ],
        );
        Node {
            net,
            metrics,
            proc,
            _data: data,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        metric(&http_get(&self.metrics, "/metrics"), name)
    }

    fn list(&self) -> String {
        ok(&self.net, &["list"])
    }
}

/// Waits (bounded) until `check` holds; how long it took.
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{what}: not within {timeout:?}");
}

/// Waits until exactly one of `nodes` publishes; its index.
fn publisher(nodes: &[&Node], timeout: Duration) -> usize {
    let mut found = 0;
    wait_for("exactly one publisher", timeout, || {
        let publishing: Vec<usize> = (0..nodes.len())
            .filter(|&i| nodes[i].metric("herald_publishing") == 1.0)
            .collect();
        found = publishing.first().copied().unwrap_or(0);
        publishing.len() == 1
    });
    found
}

fn group() -> SocketAddr {
    format!("{GROUP_IP}:{}", free_port()).parse().unwrap()
}

/// Kinds of the frames each sender put on the group while listening for `period`.
fn group_traffic(group: SocketAddr, period: Duration) -> Vec<(SocketAddr, u8)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&group.into()).unwrap();
    let SocketAddr::V4(v4) = group else {
        unreachable!()
    };
    socket
        .join_multicast_v4(v4.ip(), &Ipv4Addr::LOCALHOST)
        .unwrap();
    let socket: UdpSocket = socket.into();
    let deadline = Instant::now() + period;
    let mut seen = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            // Magic "HR", version, then the message kind.
            if len > 3 && &buf[..2] == b"HR" {
                seen.push((from, buf[3]));
            }
        }
    }
    seen
}

const ANNOUNCE: u8 = 0x21;
const SYNC_PAGE: u8 = 0x22;

#[test]
fn a_registration_through_a_replica_is_listed_everywhere_and_announced_by_the_publisher() {
    let Some(etcd) = Etcd::start() else { return };
    let group = group();
    let a = Node::start(&etcd, group);
    let b = Node::start(&etcd, group);
    let nodes = [&a, &b];
    let p = publisher(&nodes, Duration::from_secs(10));
    let (publisher, replica) = (nodes[p], nodes[1 - p]);
    let watch = watcher(&publisher.net, "watcher", &[]);
    // Listen to the group while registering through the replica.
    let listen = thread::spawn(move || group_traffic(group, Duration::from_millis(2_500)));
    thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    ok(
        &replica.net,
        &[
            "register",
            "billing",
            "127.0.0.1:8080",
            "--once",
            "--lease",
            "60",
        ],
    );
    let (_, at) = watch.expect_line("\"discovered\"", Duration::from_secs(5));
    println!(
        "discovered {:?} after the registration through the replica",
        at - start
    );
    assert!(publisher.list().contains("billing 127.0.0.1:8080"));
    assert!(replica.list().contains("billing 127.0.0.1:8080"));
    let traffic = listen.join().unwrap();
    let from = |node: &Node, kind: u8| {
        traffic
            .iter()
            .filter(|(f, k)| *f == node.net.directory && *k == kind)
            .count()
    };
    assert!(from(publisher, ANNOUNCE) >= 1, "{traffic:?}");
    assert_eq!(
        from(replica, ANNOUNCE),
        0,
        "the replica announced: {traffic:?}"
    );
    assert_eq!(
        from(replica, SYNC_PAGE),
        0,
        "the replica swept: {traffic:?}"
    );
    // Exactly one discovery, nothing else, over repeats and a sweep.
    let later = watch.lines_for(Duration::from_millis(1_500));
    assert!(later.is_empty(), "{later:#?}");
    assert_eq!(publisher.metric("herald_store_reachable"), 1.0);
    assert_eq!(replica.metric("herald_publishing"), 0.0);
}

#[test]
fn one_publisher_at_a_time_and_a_killed_one_is_replaced() {
    let Some(etcd) = Etcd::start() else { return };
    let group = group();
    let a = Node::start(&etcd, group);
    let b = Node::start(&etcd, group);
    let mut nodes = [a, b];
    let p = publisher(&[&nodes[0], &nodes[1]], Duration::from_secs(10));
    // It stays that way.
    for _ in 0..10 {
        assert_eq!(nodes[p].metric("herald_publishing"), 1.0);
        assert_eq!(nodes[1 - p].metric("herald_publishing"), 0.0);
        thread::sleep(Duration::from_millis(100));
    }
    let survivor = 1 - p;
    let changes = nodes[survivor].metric("herald_publisher_changes_total");
    nodes[p].proc.kill();
    let start = Instant::now();
    let bound = Duration::from_millis(LEASE_MS + 1_500);
    let took = wait_for("the survivor publishes", bound, || {
        nodes[survivor].metric("herald_publishing") == 1.0
    });
    println!("handover after SIGKILL of the publisher: {took:?} (publisher lease {LEASE_MS} ms)");
    assert!(start.elapsed() <= bound);
    assert_eq!(
        nodes[survivor].metric("herald_publisher_changes_total"),
        changes + 1.0
    );
    // The new publisher announces: a watcher on it discovers a new registration.
    let watch = watcher(&nodes[survivor].net, "watcher", &[]);
    ok(
        &nodes[survivor].net,
        &[
            "register",
            "after",
            "127.0.0.1:8081",
            "--once",
            "--lease",
            "60",
        ],
    );
    watch.expect_line("\"name\":\"after\"", Duration::from_secs(5));
}

#[test]
fn a_stopped_publisher_hands_over_at_once() {
    let Some(etcd) = Etcd::start() else { return };
    let group = group();
    let mut nodes = [Node::start(&etcd, group), Node::start(&etcd, group)];
    let p = publisher(&[&nodes[0], &nodes[1]], Duration::from_secs(10));
    nodes[p].proc.signal("TERM");
    let start = Instant::now();
    let took = wait_for("the other publishes", Duration::from_millis(1_000), || {
        nodes[1 - p].metric("herald_publishing") == 1.0
    });
    println!("handover after SIGTERM of the publisher: {took:?}");
    assert!(start.elapsed() < Duration::from_millis(LEASE_MS));
    assert_eq!(nodes[p].proc.wait(Duration::from_secs(5)), Some(0));
    nodes[p]
        .proc
        .expect_log("publisher lease revoked", Duration::from_secs(1));
}

#[test]
fn an_etcd_outage_keeps_both_answering_and_is_caught_up() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let group = group();
    let a = Node::start(&etcd, group);
    let b = Node::start(&etcd, group);
    let nodes = [&a, &b];
    let p = publisher(&nodes, Duration::from_secs(10));
    let (publisher, replica) = (nodes[p], nodes[1 - p]);
    let watch = watcher(&publisher.net, "watcher", &[]);
    ok(
        &publisher.net,
        &[
            "register",
            "before",
            "127.0.0.1:7001",
            "--once",
            "--lease",
            "60",
        ],
    );
    // Renewed through the replica every ~0.7 s: longer than its lease, the outage must
    // not expire it.
    let _steady = registrant(&replica.net, "steady", &["127.0.0.1:7003", "--lease", "2"]);
    wait_for("the replica lists before", Duration::from_secs(5), || {
        replica.list().contains("before")
    });

    etcd.kill();
    let killed = Instant::now();
    for node in nodes {
        wait_for("etcd unreachable", Duration::from_secs(5), || {
            node.metric("herald_store_reachable") == 0.0
        });
        node.proc.expect_log(
            "etcd unreachable: serving from memory",
            Duration::from_secs(1),
        );
        assert_eq!(node.metric("herald_store_outages_total"), 1.0);
    }
    // Both still answer, from memory, and one still publishes.
    for node in nodes {
        assert!(node.list().contains("before 127.0.0.1:7001"));
    }
    assert_eq!(publisher.metric("herald_publishing"), 1.0);
    assert_eq!(replica.metric("herald_publishing"), 0.0);
    // A registration during the outage is acknowledged and queued.
    ok(
        &publisher.net,
        &[
            "register",
            "during",
            "127.0.0.1:7002",
            "--once",
            "--lease",
            "60",
        ],
    );
    assert!(publisher.list().contains("during"));
    assert!(publisher.metric("herald_store_queued_writes") >= 1.0);
    assert!(!replica.list().contains("during"));
    // Longer than steady's lease.
    thread::sleep(Duration::from_millis(3_000).saturating_sub(killed.elapsed()));

    etcd.run();
    let start = Instant::now();
    let took = wait_for("the replica lists during", Duration::from_secs(10), || {
        replica.list().contains("during 127.0.0.1:7002")
    });
    println!("a registration made during the outage reached the other directory {took:?} after etcd was healthy again");
    for node in nodes {
        wait_for("etcd reachable", Duration::from_secs(5), || {
            node.metric("herald_store_reachable") == 1.0
        });
        node.proc
            .expect_log("etcd reachable again after", Duration::from_secs(1));
        // Renewals are queued for up to 200 ms even while etcd answers.
        wait_for("queue written", Duration::from_secs(2), || {
            node.metric("herald_store_queued_writes") == 0.0
        });
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(publisher.metric("herald_publishing"), 1.0);
    assert_eq!(replica.metric("herald_publishing"), 0.0);
    // Past the expiry grace and steady's lease: the renewals the replica queued kept it.
    let lines = watch.lines_for(Duration::from_secs(6));
    assert_eq!(count(&lines, "unregistered", "steady"), 0, "{lines:#?}");
    assert_eq!(count(&lines, "discovered", "during"), 1, "{lines:#?}");
    assert!(publisher.list().contains("steady 127.0.0.1:7003"));
}

#[test]
fn a_frozen_etcd_does_not_stall_the_directories() {
    let Some(etcd) = Etcd::start() else { return };
    let group = group();
    let a = Node::start(&etcd, group);
    let b = Node::start(&etcd, group);
    let nodes = [&a, &b];
    publisher(&nodes, Duration::from_secs(10));
    // SIGSTOP: connections stay open, requests get no answer.
    etcd.signal("STOP");
    let start = Instant::now();
    ok(
        &a.net,
        &[
            "register",
            "frozen",
            "127.0.0.1:7004",
            "--once",
            "--lease",
            "60",
        ],
    );
    println!(
        "a registration acknowledged {:?} after etcd froze",
        start.elapsed()
    );
    wait_for("a finds etcd unreachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 0.0
    });
    // Retries against the frozen server run in the background: every answer stays fast.
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for node in nodes {
            let asked = Instant::now();
            let _ = node.metric("herald_store_reachable");
            let list = node.list();
            slowest = slowest.max(asked.elapsed());
            if std::ptr::eq(node, &a) {
                assert!(list.contains("frozen"), "{list}");
            }
        }
    }
    println!("slowest list while etcd was frozen: {slowest:?}");
    assert!(slowest < Duration::from_millis(900), "{slowest:?}");
    etcd.signal("CONT");
    wait_for("b lists frozen", Duration::from_secs(20), || {
        b.list().contains("frozen")
    });
    for node in nodes {
        wait_for("etcd reachable", Duration::from_secs(20), || {
            node.metric("herald_store_reachable") == 1.0
        });
    }
}

#[test]
fn a_publisher_cut_off_from_etcd_steps_down_when_it_returns() {
    let Some(etcd) = Etcd::start() else { return };
    let link = Link::to(&etcd);
    let group = group();
    let a = Node::start_with(&link.store(), group);
    wait_for("a publishes", Duration::from_secs(10), || {
        a.metric("herald_publishing") == 1.0
    });
    let b = Node::start(&etcd, group);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(b.metric("herald_publishing"), 0.0);

    link.cut();
    wait_for("a finds etcd unreachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 0.0
    });
    // a's lease runs out in etcd: b takes over, while a, cut off, keeps publishing.
    let took = wait_for(
        "b publishes",
        Duration::from_millis(LEASE_MS + 2_000),
        || b.metric("herald_publishing") == 1.0,
    );
    println!("b publishes {took:?} after a was cut off from etcd");
    assert_eq!(a.metric("herald_publishing"), 1.0);
    // A registration through b reaches a once its link is back.
    ok(
        &b.net,
        &[
            "register",
            "meanwhile",
            "127.0.0.1:7005",
            "--once",
            "--lease",
            "60",
        ],
    );

    link.restore();
    let start = Instant::now();
    let stepped = wait_for("a steps down", Duration::from_secs(5), || {
        a.metric("herald_publishing") == 0.0
    });
    println!("a stepped down {stepped:?} after its link to etcd was restored");
    wait_for("a lists meanwhile", Duration::from_secs(5), || {
        a.list().contains("meanwhile")
    });
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(b.metric("herald_publishing"), 1.0);
    assert_eq!(a.metric("herald_store_reachable"), 1.0);
    assert_eq!(a.metric("herald_publisher_changes_total"), 2.0);
}

/// A directory cut off from etcd while a service was unregistered, and its removal
/// finished and deleted, no longer lists the service once its link is back: the reload
/// discards what etcd no longer holds.
#[test]
fn a_removal_finished_while_cut_off_is_not_listed_afterwards() {
    let Some(etcd) = Etcd::start() else { return };
    let link = Link::to(&etcd);
    let group = group();
    let b = Node::start(&etcd, group);
    wait_for("b publishes", Duration::from_secs(10), || {
        b.metric("herald_publishing") == 1.0
    });
    let a = Node::start_with(&link.store(), group);
    ok(
        &b.net,
        &[
            "register",
            "brief",
            "127.0.0.1:7006",
            "--once",
            "--lease",
            "60",
        ],
    );
    wait_for("a lists brief", Duration::from_secs(5), || {
        a.list().contains("brief")
    });
    link.cut();
    wait_for("a finds etcd unreachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 0.0
    });
    ok(&b.net, &["unregister", "brief"]);
    // All 20 notifications (1 s), then the record is deleted from etcd.
    thread::sleep(Duration::from_secs(2));
    link.restore();
    wait_for("a reachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 1.0
    });
    thread::sleep(Duration::from_millis(500));
    let list = a.list();
    assert!(!list.contains("brief"), "a still lists: {list}");
}

#[test]
fn corrupt_records_in_etcd_are_skipped() {
    let Some(etcd) = Etcd::start() else { return };
    let services = b"/herald/default/services/";
    let garbage: &[(&[u8], &[u8])] = &[
        (b"junk", &[0xff, 0xff, 0xff]),
        (b"empty", b""),
        (b"\xff\xfe", b"not utf-8 in the key"),
        (b"", b"no name"),
    ];
    for (name, value) in garbage {
        etcd.put(&[&services[..], name].concat(), value);
    }
    let group = group();
    let a = Node::start(&etcd, group);
    let log = a.proc.stderr();
    assert_eq!(
        log.matches("etcd: skipped a corrupt record").count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("etcd: skipped a key that names no service"),
        "{log}"
    );
    assert!(log.contains("restored=0"), "{log}");
    // While it runs: more garbage, and a record under another name's key.
    ok(
        &a.net,
        &[
            "register",
            "real",
            "127.0.0.1:7001",
            "--once",
            "--lease",
            "60",
        ],
    );
    etcd.put(b"/herald/default/services/junk2", &[0x01, 0x80]);
    a.proc
        .expect_log("etcd: skipped a corrupt record", Duration::from_secs(5));
    let b = Node::start(&etcd, group);
    assert_eq!(b.list().trim(), "real 127.0.0.1:7001");
    assert_eq!(a.list().trim(), "real 127.0.0.1:7001");
}

#[test]
fn an_unreachable_etcd_at_start_up_is_an_error() {
    let port = free_port_tcp();
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let store = format!("etcd://127.0.0.1:{port}");
    let args = serve_args(&net, data.path(), &["--store", &store]);
    let out = run(&args, Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot use the etcd store"), "{err}");
}
