//! Directories sharing their registry in a real etcd (`/usr/bin/etcd` on free loopback
//! ports, in a temporary data directory): a registration through one reaches the other
//! and is announced by the publisher alone, one publisher at a time, a killed publisher
//! replaced, and an etcd outage ridden out and caught up (subscriber changes made
//! meanwhile included). Skipped, with the reason printed, when etcd is not installed.

#![cfg(feature = "etcd")]

mod common;

use common::*;
use herald_core::auth::{Key, Keys};
use herald_server::clock::unix_micros;
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

/// Whether etcd is installed; says so when it is not (the caller then skips).
fn etcd_installed() -> bool {
    let installed = Path::new(ETCD).exists();
    if !installed {
        println!("SKIPPED: {ETCD} is not installed (Debian: etcd-server)");
    }
    installed
}

/// One etcd member on loopback ports, killed on drop; restarting keeps its data. Alone
/// ([`Etcd::start`]) it is a cluster of one; [`EtcdCluster`] starts several.
struct Etcd {
    child: Option<Child>,
    data: tempfile::TempDir,
    name: String,
    client: u16,
    peer: u16,
    /// `--initial-cluster`: every member's name and peer URL.
    initial_cluster: String,
    /// `--initial-cluster-token`: unique, so that no two test clusters ever merge.
    token: String,
}

impl Etcd {
    /// Starts a single etcd, or says why not (printed by the caller, which then skips).
    fn start() -> Option<Etcd> {
        if !etcd_installed() {
            return None;
        }
        let mut etcd = Etcd::member("default");
        etcd.initial_cluster = etcd.cluster_entry();
        etcd.token = format!("herald-test-{}", etcd.client);
        etcd.run();
        Some(etcd)
    }

    /// A member named `name` on fresh ports, not started yet.
    fn member(name: &str) -> Etcd {
        Etcd {
            child: None,
            data: tempfile::tempdir().unwrap(),
            name: name.to_owned(),
            client: free_port_tcp(),
            peer: free_port_tcp(),
            initial_cluster: String::new(),
            token: String::new(),
        }
    }

    /// This member in `--initial-cluster`: `NAME=PEER_URL`.
    fn cluster_entry(&self) -> String {
        format!("{}=http://127.0.0.1:{}", self.name, self.peer)
    }

    /// Starts the server (again) on the same ports and data, and waits until it answers.
    fn run(&mut self) {
        self.spawn();
        self.wait_healthy(Duration::from_secs(20));
    }

    /// Starts the server process (a member of a new cluster answers once a quorum of
    /// its peers runs: see [`wait_healthy`](Self::wait_healthy)).
    fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let child = Command::new(ETCD)
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data.path().join("etcd"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    /// Waits (bounded) until `GET /health` says healthy.
    fn wait_healthy(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let answer = self.http("GET", "/health", None).unwrap_or_default();
            if answer.contains("\"health\":\"true\"") {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd member {} did not become healthy on port {} within {timeout:?}",
            self.name, self.client
        );
    }

    /// One HTTP/1.1 request to the member's client port (see [`etcd_http`]).
    fn http(&self, method: &str, path: &str, json: Option<&str>) -> Option<String> {
        etcd_http(self.client, method, path, json)
    }

    /// The member's own id and the id of the leader it knows (see [`member_status`]).
    fn status(&self) -> Option<(String, String)> {
        member_status(self.client)
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
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let body = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(key), b64(value));
        let answer = self.http("POST", "/v3/kv/put", Some(&body)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The client address, as listed in `--store`.
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }

    /// The `--store` value.
    fn store(&self) -> String {
        format!("etcd://{}", self.endpoint())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 request to the etcd member whose client port is `port` (its JSON
/// gateway), bounded by a 2 s connect and 5 s read timeout; the whole answer, or `None`
/// if it does not answer.
fn etcd_http(port: u16, method: &str, path: &str, json: Option<&str>) -> Option<String> {
    use std::io::{Read, Write};
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = json.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    Some(answer)
}

/// The member's own id and the id of the leader it knows, from
/// `/v3/maintenance/status` (`None` while it does not answer or knows no leader).
fn member_status(port: u16) -> Option<(String, String)> {
    let answer = etcd_http(port, "POST", "/v3/maintenance/status", Some("{}"))?;
    let me = json_string(&answer, "member_id")?;
    let leader = json_string(&answer, "leader").filter(|l| l != "0")?;
    Some((me, leader))
}

/// The string value of `"key":"…"` in a JSON text (etcd's gateway writes 64-bit
/// integers as strings).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = json[start..].find('"')?;
    Some(json[start..start + len].to_owned())
}

/// Several etcd members forming one cluster on loopback, each killed on drop.
struct EtcdCluster {
    members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Starts `size` members, and waits until each is healthy; `None` (and says why)
    /// when etcd is not installed.
    fn start(size: usize) -> Option<EtcdCluster> {
        if !etcd_installed() {
            return None;
        }
        let mut members: Vec<Etcd> = (1..=size).map(|i| Etcd::member(&format!("m{i}"))).collect();
        let initial: Vec<String> = members.iter().map(Etcd::cluster_entry).collect();
        let token = format!("herald-test-{}", members[0].client);
        for member in &mut members {
            member.initial_cluster = initial.join(",");
            member.token = token.clone();
            member.spawn();
        }
        let start = Instant::now();
        for member in &members {
            member.wait_healthy(Duration::from_secs(30));
        }
        println!("etcd cluster of {size} healthy after {:?}", start.elapsed());
        Some(EtcdCluster { members })
    }

    /// The `--store` value listing every member's client address.
    fn store(&self) -> String {
        let endpoints: Vec<String> = self.members.iter().map(Etcd::endpoint).collect();
        format!("etcd://{}", endpoints.join(","))
    }

    /// The index of the leader, once every running member names the same one and it is
    /// among them (bounded wait).
    fn leader(&self, timeout: Duration) -> usize {
        let mut leader = None;
        wait_for("one etcd leader", timeout, || {
            let statuses: Vec<Option<(String, String)>> = self
                .members
                .iter()
                .filter(|m| m.child.is_some())
                .map(Etcd::status)
                .collect();
            let Some(Some((_, named))) = statuses.first() else {
                return false;
            };
            if !statuses
                .iter()
                .all(|s| s.as_ref().is_some_and(|(_, l)| l == named))
            {
                return false;
            }
            leader = self
                .members
                .iter()
                .position(|m| m.child.is_some() && m.status().is_some_and(|(me, _)| &me == named));
            leader.is_some()
        });
        leader.expect("found above")
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

    /// Two directories on a new group, sharing `store`.
    fn pair(store: &str) -> [Node; 2] {
        let group = group();
        [
            Node::start_with(store, group),
            Node::start_with(store, group),
        ]
    }

    fn start_with(store: &str, group: SocketAddr) -> Node {
        Node::start_with_args(store, group, &[])
    }

    /// Two directories on a new group, sharing `store`, that log at debug level: a test
    /// that fails shows what each was doing.
    fn pair_logging(store: &str) -> [Node; 2] {
        let group = group();
        let env = [("RUST_LOG", "herald_server=debug")];
        [
            Node::start_with_env(store, group, &[], &env),
            Node::start_with_env(store, group, &[], &env),
        ]
    }

    /// A directory with more `herald serve` arguments.
    fn start_with_args(store: &str, group: SocketAddr, extra: &[&str]) -> Node {
        Node::start_with_env(store, group, extra, &[])
    }

    /// A directory with more `herald serve` arguments and environment variables.
    fn start_with_env(
        store: &str,
        group: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let net = Net {
            directory: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            group,
        };
        let metrics = format!("127.0.0.1:{}", free_port_tcp());
        let data = tempfile::tempdir().unwrap();
        let lease = LEASE_MS.to_string();
        let args = [
            &[
                "--store",
                store,
                "--publisher-lease-ms",
                &lease,
                "--metrics",
                &metrics,
            ][..],
            extra,
        ]
        .concat();
        let proc = Proc::spawn("directory", &serve_args(&net, data.path(), &args), env);
        proc.expect_log("herald directory serving", Duration::from_secs(10));
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

    /// `herald list` at this directory: its output, or why it failed.
    fn try_list(&self) -> Result<String, String> {
        let mut args = vec!["list".to_string()];
        args.extend(self.net.client_args());
        let out = run(&args, Duration::from_secs(15));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{}\nstdout: {stdout}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
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
    let [a, b] = Node::pair(&etcd.store());
    let nodes = [&a, &b];
    let p = publisher(&nodes, Duration::from_secs(10));
    let (publisher, replica) = (nodes[p], nodes[1 - p]);
    let watch = watcher(&publisher.net, "watcher", &[]);
    // Listen to the group while registering through the replica.
    let listen = thread::spawn(move || group_traffic(a.net.group, Duration::from_millis(2_500)));
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
    let [a, b] = Node::pair(&etcd.store());
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
    // It read the registry before publishing from it (its shell says so well within
    // the replication bound, 5 s, after which it would publish without the word).
    let caught_up = nodes[survivor]
        .proc
        .expect_log("caught up with etcd", Duration::from_secs(2));
    println!("new publisher: {caught_up}");
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
    let mut nodes = Node::pair(&etcd.store());
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
    let [a, b] = Node::pair(&etcd.store());
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
    let [a, b] = Node::pair_logging(&etcd.store());
    let nodes = [&a, &b];
    publisher(&nodes, Duration::from_secs(10));
    let logs = || format!("a:\n{}\nb:\n{}", a.proc.stderr(), b.proc.stderr());
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
        for (label, node) in ["a", "b"].into_iter().zip(nodes) {
            let asked = Instant::now();
            let _ = node.metric("herald_store_reachable");
            let list = node.try_list().unwrap_or_else(|e| {
                panic!(
                    "herald list at {label} failed {:?} after etcd froze: {e}\n{}",
                    start.elapsed(),
                    logs()
                )
            });
            slowest = slowest.max(asked.elapsed());
            if label == "a" {
                assert!(list.contains("frozen"), "{list}");
            }
        }
    }
    println!("slowest list while etcd was frozen: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(900),
        "{slowest:?}\n{}",
        logs()
    );
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
    // All 20 notifications (1 s); the record stays in etcd as a tombstone (departed).
    thread::sleep(Duration::from_secs(2));
    link.restore();
    wait_for("a reachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 1.0
    });
    thread::sleep(Duration::from_millis(500));
    let list = a.list();
    assert!(!list.contains("brief"), "a still lists: {list}");
}

/// A request in environment `default`, sealed with `keys` and `counter` (which is also
/// its sequence, as a client sends it).
fn sealed<M: herald_core::wire::Single>(keys: &Keys, counter: u64, message: &M) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let env = herald_core::Environment::default();
    let n = herald_core::wire::encode(&env, message, &mut buf).unwrap();
    let n = herald_core::auth::seal(keys, counter, &mut buf, n).unwrap();
    buf[..n].to_vec()
}

/// Issue 15, finding 3: with keys, a captured Register replayed to the other directory
/// after its owner unregistered, or a captured Unregister replayed after the owner
/// registered again, changes nothing: the sequence stored with the record (and the
/// finished removal kept as a tombstone) travels through etcd to both directories.
#[test]
fn a_request_replayed_to_the_other_directory_changes_nothing() {
    use herald_core::wire::{RegisterRequest, UnregisterRequest};
    use herald_core::{Duration as Lease, Location, Registration, ServiceName};
    let Some(etcd) = Etcd::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(29) ^ 0x5a).collect();
    let key_path = tmp.path().join("env.key");
    std::fs::write(&key_path, herald_server::keys::format(1, &secret).unwrap()).unwrap();
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let key_file = key_path.to_str().unwrap();
    let keys = Keys::new(Key::new(1, &secret).unwrap());
    let group = group();
    let with_key = ["--key-file", key_file];
    let a = Node::start_with_args(&etcd.store(), group, &with_key);
    let b = Node::start_with_args(&etcd.store(), group, &with_key);
    publisher(&[&a, &b], Duration::from_secs(10));
    let list = |n: &Node| ok(&n.net, &["list", "--key-file", key_file]);

    let owner = UdpSocket::bind("127.0.0.1:0").unwrap();
    let name = ServiceName::new("replayed").unwrap();
    let location = Location::from_socket_addr("127.0.0.1:7400".parse().unwrap()).unwrap();
    let registration = Registration::new(name.clone(), &[location]).unwrap();
    let register = |counter: u64| {
        let r = RegisterRequest {
            request: 1,
            registrant: 0x0e0e,
            sequence: counter,
            lease: Lease::from_secs(60),
            registration: registration.clone(),
        };
        sealed(&keys, counter, &r)
    };
    let unregister = |counter: u64| {
        let u = UnregisterRequest {
            request: 2,
            registrant: 0x0e0e,
            sequence: counter,
            name: name.clone(),
        };
        sealed(&keys, counter, &u)
    };
    let captured_register = register(unix_micros());
    owner.send_to(&captured_register, a.net.directory).unwrap();
    wait_for("b lists it", Duration::from_secs(5), || {
        list(&b).contains("replayed")
    });
    let captured_unregister = unregister(unix_micros());
    owner
        .send_to(&captured_unregister, a.net.directory)
        .unwrap();
    wait_for("b no longer lists it", Duration::from_secs(5), || {
        !list(&b).contains("replayed")
    });
    // The captured Register, replayed to the other directory, within the time window.
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker
        .send_to(&captured_register, b.net.directory)
        .unwrap();
    thread::sleep(Duration::from_millis(800));
    assert!(!list(&a).contains("replayed"), "the replay brought it back");
    assert!(!list(&b).contains("replayed"), "the replay brought it back");

    // The owner registers again; its captured Unregister is replayed to the other one.
    owner
        .send_to(&register(unix_micros()), a.net.directory)
        .unwrap();
    wait_for("b lists it again", Duration::from_secs(5), || {
        list(&b).contains("replayed")
    });
    attacker
        .send_to(&captured_unregister, b.net.directory)
        .unwrap();
    thread::sleep(Duration::from_millis(800));
    assert!(list(&a).contains("replayed"), "the replay removed it");
    assert!(list(&b).contains("replayed"), "the replay removed it");
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
    // `a` acknowledges from memory while etcd is slower than its request timeout (a
    // loaded machine) and writes the record when etcd answers again: `b` may read the
    // registry before that, and takes the record from its watch (bounded wait).
    let want = "real 127.0.0.1:7001";
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.list().trim() != want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let logs = || format!("a:\n{}\nb:\n{}", a.proc.stderr(), b.proc.stderr());
    assert_eq!(b.list().trim(), want, "{}", logs());
    assert_eq!(a.list().trim(), want, "{}", logs());
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

/// Samples `herald_store_reachable` of each metrics endpoint every 20 ms in a thread of
/// its own, until dropped: when each first and last read 0, and how many samples did.
struct ReachableSampler {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Vec<Unreachable>>>,
}

/// What a [`ReachableSampler`] saw of one directory, times since it started.
#[derive(Clone, Copy, Debug, Default)]
struct Unreachable {
    first: Option<Duration>,
    last: Option<Duration>,
    samples: u32,
}

impl ReachableSampler {
    fn start(nodes: &[&Node]) -> ReachableSampler {
        let metrics: Vec<String> = nodes.iter().map(|n| n.metrics.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = stop.clone();
        let thread = thread::spawn(move || {
            let start = Instant::now();
            let mut seen = vec![Unreachable::default(); metrics.len()];
            while !halt.load(Ordering::SeqCst) {
                for (addr, seen) in metrics.iter().zip(&mut seen) {
                    if metric(&http_get(addr, "/metrics"), "herald_store_reachable") == 0.0 {
                        let at = start.elapsed();
                        seen.first.get_or_insert(at);
                        seen.last = Some(at);
                        seen.samples += 1;
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        ReachableSampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Unreachable> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ReachableSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Registers `name` for a minute through `node`; how long the acknowledgement took.
fn register_once(node: &Node, name: &str, location: &str) -> Duration {
    let start = Instant::now();
    ok(
        &node.net,
        &["register", name, location, "--once", "--lease", "60"],
    );
    start.elapsed()
}

/// Two directories on a three-member etcd cluster (every member in `--store`); one
/// member is killed (`kill -9`): the leader, or a follower. The directories must keep
/// taking registrations and unregistrations through etcd, each seeing the other's, and
/// the registrant that renews throughout must not be expired. A dead follower must cost
/// no outage and no publisher change; a dead leader at most one short outage per
/// directory (etcd has no leader until the others elect one) and at most one
/// publisher change. Prints what the kill cost: the first acknowledgement, the first
/// registration seen by the other directory, outages and publisher changes.
fn one_etcd_member_dies(kill_leader: bool) {
    let Some(mut etcd) = EtcdCluster::start(3) else {
        return;
    };
    let store = etcd.store();
    let [a, b] = Node::pair(&store);
    let nodes = [&a, &b];
    let logs = || format!("a:\n{}\nb:\n{}", a.proc.stderr(), b.proc.stderr());
    let p = publisher(&nodes, Duration::from_secs(10));
    let (publisher_node, replica) = (nodes[p], nodes[1 - p]);
    let watch = watcher(&publisher_node.net, "watcher", &[]);
    register_once(&a, "alpha", "127.0.0.1:7101");
    register_once(&b, "beta", "127.0.0.1:7102");
    // Renews through the replica every ~0.7 s, each renewal written to etcd before its
    // acknowledgement.
    let _steady = registrant(&replica.net, "steady", &["127.0.0.1:7103", "--lease", "2"]);
    for node in nodes {
        wait_for(
            "both list alpha, beta and steady",
            Duration::from_secs(5),
            || {
                let list = node.list();
                ["alpha", "beta", "steady"].iter().all(|n| list.contains(n))
            },
        );
    }
    let metrics = |name: &str| -> Vec<f64> { nodes.iter().map(|n| n.metric(name)).collect() };
    let outages = metrics("herald_store_outages_total");
    let changes = metrics("herald_publisher_changes_total");

    let leader = etcd.leader(Duration::from_secs(10));
    let victim = if kill_leader {
        leader
    } else {
        (leader + 1) % 3
    };
    let what = if kill_leader { "leader" } else { "follower" };
    let survivors: Vec<u16> = (0..3)
        .filter(|&i| i != victim)
        .map(|i| etcd.members[i].client)
        .collect();
    etcd.members[victim].kill();
    let killed = Instant::now();
    let sampler = ReachableSampler::start(&nodes);
    // When the survivors agree on a leader among them (a new one after the leader's
    // death).
    let elected = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let statuses: Vec<Option<(String, String)>> =
                survivors.iter().map(|&port| member_status(port)).collect();
            if let [Some((m1, l1)), Some((m2, l2))] = &statuses[..] {
                if l1 == l2 && (l1 == m1 || l1 == m2) {
                    return Some(killed.elapsed());
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    });
    println!("[{what}] killed the etcd {what} (member {})", victim + 1);

    // The first registration after the kill, through the publisher and seen by the
    // replica: it went through etcd.
    let first_ack = register_once(publisher_node, "first", "127.0.0.1:7110");
    let acked = killed.elapsed();
    let seen = wait_for("the replica lists first", Duration::from_secs(15), || {
        replica.list().contains("first 127.0.0.1:7110")
    });
    println!(
        "[{what}] first registration after the kill: acknowledged {acked:?} after it (took \
         {first_ack:?}), listed by the other directory {:?} after the kill",
        acked + seen
    );
    // More, through each in turn, while the member stays dead.
    let mut slowest = first_ack;
    let names: Vec<String> = (0..16).map(|i| format!("during-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let took = register_once(nodes[i % 2], name, &format!("127.0.0.1:{}", 7120 + i));
        slowest = slowest.max(took);
    }
    ok(&b.net, &["unregister", "alpha"]);
    for node in nodes {
        wait_for(
            "both list every registration and no alpha",
            Duration::from_secs(15),
            || {
                let list = node.list();
                names.iter().all(|n| list.contains(&format!("{n} "))) && !list.contains("alpha")
            },
        );
    }
    // Longer than steady's lease: its renewals keep going through etcd.
    thread::sleep(Duration::from_millis(3_000));
    let unreachable = sampler.finish();
    match elected.join().unwrap() {
        Some(t) if kill_leader => {
            println!("[{what}] the survivors had a new etcd leader {t:?} after the kill")
        }
        Some(_) => {}
        None => panic!("the surviving etcd members agree on no leader"),
    }
    println!(
        "[{what}] slowest of {} registrations while the member was dead: {slowest:?}",
        names.len() + 1
    );
    let publisher_now = publisher(&nodes, Duration::from_secs(10));
    let outages_moved: Vec<f64> = metrics("herald_store_outages_total")
        .iter()
        .zip(&outages)
        .map(|(now, before)| now - before)
        .collect();
    let changes_moved: Vec<f64> = metrics("herald_publisher_changes_total")
        .iter()
        .zip(&changes)
        .map(|(now, before)| now - before)
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let role = if i == p { "publisher" } else { "replica" };
        let span = match (unreachable[i].first, unreachable[i].last) {
            (Some(first), Some(last)) => format!(
                "from {first:?} to {last:?} after the kill ({} samples of 20 ms)",
                unreachable[i].samples
            ),
            _ => "never".to_owned(),
        };
        println!(
            "[{what}] directory {i} ({role}): outages +{}, publisher changes +{}, etcd unreachable {span}",
            outages_moved[i], changes_moved[i]
        );
        assert_eq!(node.metric("herald_store_reachable"), 1.0, "{}", logs());
        let list = node.list();
        for n in ["beta", "steady", "first"] {
            assert!(
                list.contains(n),
                "directory {i} lost {n}: {list}\n{}",
                logs()
            );
        }
        if kill_leader {
            assert!(outages_moved[i] <= 1.0, "{}", logs());
            if let Some(last) = unreachable[i].last {
                assert!(last < Duration::from_secs(10), "{}", logs());
            }
        } else {
            assert_eq!(outages_moved[i], 0.0, "{}", logs());
        }
    }
    println!(
        "[{what}] publisher: directory {p} before, directory {publisher_now} after the {what} died"
    );
    if kill_leader {
        assert!(changes_moved.iter().sum::<f64>() <= 2.0, "{}", logs());
    } else {
        assert_eq!(publisher_now, p, "{}", logs());
        assert_eq!(changes_moved, [0.0, 0.0], "{}", logs());
    }
    let lines = watch.lines_for(Duration::from_millis(500));
    assert_eq!(count(&lines, "unregistered", "steady"), 0, "{lines:#?}");
    assert_eq!(count(&lines, "unregistered", "beta"), 0, "{lines:#?}");
    assert_eq!(count(&lines, "unregistered", "alpha"), 1, "{lines:#?}");
}

#[test]
fn an_etcd_follower_killed() {
    one_etcd_member_dies(false);
}

#[test]
fn the_etcd_leader_killed() {
    one_etcd_member_dies(true);
}

/// The ids `herald list --subscribers --json` shows at the HTTP API `http`.
fn subscriber_ids(net: &Net, http: &str) -> Vec<String> {
    let text = ok(net, &["list", "--subscribers", "--json", "--http", http]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap();
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Subscriptions taken and ended at a directory while etcd is down are queued, not
/// dropped: once etcd is back the other directory holds the one that came and not
/// the one that went, although the one that came never renewed after the outage.
#[test]
fn subscriber_changes_during_an_etcd_outage_reach_the_other_directory() {
    let Some(mut etcd) = Etcd::start() else {
        return;
    };
    let group = group();
    let (http_a, http_b) = (
        format!("127.0.0.1:{}", free_port_tcp()),
        format!("127.0.0.1:{}", free_port_tcp()),
    );
    let a = Node::start_with_args(&etcd.store(), group, &["--http", &http_a]);
    let b = Node::start_with_args(&etcd.store(), group, &["--http", &http_b]);
    let subscriber = |label: &str| {
        let mut args: Vec<String> = ["watch", "--json", "--subscribe"]
            .map(String::from)
            .to_vec();
        args.extend(a.net.client_args());
        Proc::spawn(label, &args, &[])
    };
    let early = subscriber("subscribed before the outage");
    let mut early_id = String::new();
    wait_for(
        "b lists the early subscriber",
        Duration::from_secs(10),
        || {
            let ids = subscriber_ids(&b.net, &http_b);
            early_id = ids.first().cloned().unwrap_or_default();
            ids.len() == 1
        },
    );

    etcd.kill();
    wait_for("etcd unreachable", Duration::from_secs(5), || {
        a.metric("herald_store_reachable") == 0.0
    });
    let mut late = subscriber("subscribed during the outage");
    let mut late_id = String::new();
    wait_for("a lists both", Duration::from_secs(10), || {
        let ids = subscriber_ids(&a.net, &http_a);
        late_id = ids
            .iter()
            .find(|id| **id != early_id)
            .cloned()
            .unwrap_or_default();
        ids.len() == 2
    });
    early.signal("INT");
    wait_for("a lists the late one only", Duration::from_secs(10), || {
        subscriber_ids(&a.net, &http_a) == [late_id.clone()]
    });
    late.kill();
    assert_eq!(
        subscriber_ids(&b.net, &http_b),
        [early_id.clone()],
        "b saw nothing yet"
    );

    etcd.run();
    wait_for("b lists the late one only", Duration::from_secs(10), || {
        subscriber_ids(&b.net, &http_b) == [late_id.clone()]
    });
    wait_for("a's queue written", Duration::from_secs(5), || {
        a.metric("herald_store_queued_writes") == 0.0
    });
}
