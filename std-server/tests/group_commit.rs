//! Group commit: requests that arrive together share one durable write, and none of them
//! is acknowledged before it is on disk.

mod common;

use common::*;
use herald_core::wire::{self, Message, RegisterRequest};
use herald_core::{Duration as Lease, Environment, Location, Registration, ServiceName};
use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const REGISTRANT: u64 = 0x6763_6f6d;
/// Registrations sent in one burst.
const BURST: u32 = 1000;

fn register_frame(request: u32) -> Vec<u8> {
    let registration = Registration::new(
        ServiceName::new(&format!("burst-{request:05}")).unwrap(),
        &[Location::from_socket_addr("127.0.0.1:9000".parse().unwrap()).unwrap()],
    )
    .unwrap();
    let r = RegisterRequest {
        request,
        registrant: REGISTRANT,
        sequence: u64::from(request),
        lease: Lease::from_secs(300),
        registration,
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn writes(metrics: &str) -> f64 {
    metric(
        &http_get(metrics, "/metrics"),
        "herald_storage_writes_total",
    )
}

/// A burst of new registrations that is waiting in the socket when the directory reads
/// it is stored in a few durable writes, not one per [`herald_core::REPLY_QUEUE`]
/// requests (31 writes for this burst before group commit), and every one is
/// acknowledged, and still there after a SIGKILL and restart.
#[test]
fn a_burst_of_registrations_shares_durable_writes() {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let mut dir = directory(&net, data.path(), &["--metrics", &metrics]);
    std::thread::sleep(Duration::from_millis(300));
    let before = writes(&metrics);

    // The directory is stopped while the burst arrives, so that it finds the whole
    // burst in its socket (its receive buffer holds it) when it runs again.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frames: Vec<Vec<u8>> = (1..=BURST).map(register_frame).collect();
    dir.signal("STOP");
    for frame in &frames {
        socket.send_to(frame, net.directory).unwrap();
    }
    dir.signal("CONT");

    let mut acked = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.len() < BURST as usize && Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => match wire::decode(&buf[..n]).map(|f| f.message) {
                Ok(Message::Ack(a)) => {
                    acked.insert(a.request);
                }
                other => panic!("unexpected answer: {other:?}"),
            },
            // Lost on a busy machine: send the unanswered ones again (the same
            // request is acknowledged again).
            Err(_) => {
                for request in 1..=BURST {
                    if !acked.contains(&request) {
                        let frame = &frames[request as usize - 1];
                        socket.send_to(frame, net.directory).unwrap();
                    }
                }
            }
        }
    }
    assert_eq!(
        acked.len(),
        BURST as usize,
        "every registration acknowledged"
    );
    std::thread::sleep(Duration::from_millis(300));
    let shared = writes(&metrics) - before;
    eprintln!("{BURST} registrations in {shared} writes");
    assert!(shared >= 1.0, "the registrations were written");
    assert!(
        shared <= 8.0,
        "{BURST} registrations waiting together took {shared} writes"
    );

    // Acknowledged means on disk.
    dir.kill();
    let _dir = directory(&net, data.path(), &[]);
    let text = ok(&net, &["list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        list.len(),
        BURST as usize,
        "every acknowledged registration kept"
    );
}

/// `strace`, which the next test runs the directory under (it makes each fsync slow).
fn strace() -> Option<&'static str> {
    let found = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then_some("strace")
}

/// Announcements on `group` seen while listening for `period`: how many datagrams, and
/// how many registrations they carried.
fn announcements(socket: &UdpSocket, period: Duration) -> (usize, usize) {
    let deadline = Instant::now() + period;
    let (mut datagrams, mut items) = (0, 0);
    let mut buf = [0u8; 65_536];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Ok(Message::Announce(_, changes)) = wire::decode(&buf[..len]).map(|f| f.message) {
            datagrams += 1;
            items += changes.count();
        }
    }
    (datagrams, items)
}

/// A member of `group` on loopback.
fn group_member(group: std::net::SocketAddr) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.bind(&group.into()).unwrap();
    let std::net::SocketAddr::V4(v4) = group else {
        unreachable!("the tests' group is IPv4")
    };
    socket
        .join_multicast_v4(v4.ip(), &std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    socket.into()
}

/// `herald serve` on `net` under `strace`, every fsync made `delay_ms` slow.
fn slow_directory(
    strace: &str,
    net: &Net,
    data: &std::path::Path,
    delay_ms: u32,
    extra: &[&str],
) -> Proc {
    let mut cmd = std::process::Command::new(strace);
    cmd.args(["-f", "--seccomp-bpf", "-qq", "-o", "/dev/null"])
        .args(["-e", "trace=fsync,fdatasync", "-e"])
        .arg(format!(
            "inject=fsync,fdatasync:delay_exit={}",
            delay_ms * 1000
        ))
        .arg(env!("CARGO_BIN_EXE_herald"))
        .args(serve_args(net, data, extra));
    let dir = Proc::spawn_command("directory", cmd);
    dir.expect_log("herald directory serving", Duration::from_secs(20));
    dir
}

/// CPU time (user and system) used so far by the process `pid`'s first child (the
/// directory `strace` runs), in clock ticks.
fn child_cpu_ticks(pid: u32) -> u64 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let child = children
        .split_whitespace()
        .next()
        .expect("strace runs the directory");
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
    // After the command name in parentheses, field 3 (the state) comes first: utime
    // and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// While what the directory sends waits for the write in flight, the serve loop does not
/// spin on a timer whose sending waits too (a sweep page, due every 50 ms here): with
/// every fsync 100 ms slow and a registration every 20 ms for 2 s, a write is nearly
/// always in flight, and the directory stays far from busy.
#[test]
fn waiting_for_a_write_does_not_spin() {
    let Some(strace) = strace() else {
        eprintln!("skipped: needs strace (to make each fsync slow)");
        return;
    };
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let dir = slow_directory(strace, &net, data.path(), 100, &["--sweep-period-ms", "50"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(&register_frame(1), net.directory).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let before = child_cpu_ticks(dir.pid());
    let start = Instant::now();
    for request in 2..=101 {
        socket
            .send_to(&register_frame(request), net.directory)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = (child_cpu_ticks(dir.pid()) - before) as f64 / 100.0;
    let wall = start.elapsed().as_secs_f64();
    eprintln!("directory CPU {busy:.2} s in {wall:.2} s");
    assert!(
        busy < wall / 4.0,
        "the directory used {busy:.2} s of CPU in {wall:.2} s"
    );
}

/// Registrations that arrive one by one while a write is in flight are announced
/// together once it is done, not in an announcement per wake-up: with every fsync made
/// 30 ms slow (`strace` delays it), 100 registrations sent 2 ms apart take a handful of
/// writes, and the announcements number about as many (before, one per registration).
#[test]
fn registrations_waiting_for_one_write_are_announced_together() {
    let Some(strace) = strace() else {
        eprintln!("skipped: needs strace (to make each fsync slow)");
        return;
    };
    const SPREAD: u32 = 100;
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let _dir = slow_directory(strace, &net, data.path(), 30, &["--metrics", &metrics]);
    let group = group_member(net.group);
    // Beacons and the start's writes settle first.
    std::thread::sleep(Duration::from_millis(300));
    let before = writes(&metrics);

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for request in 1..=SPREAD {
        socket
            .send_to(&register_frame(request), net.directory)
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let (datagrams, items) = announcements(&group, Duration::from_millis(800));
    let written = writes(&metrics) - before;
    eprintln!("{SPREAD} registrations: {written} writes, {datagrams} announcements of {items}");
    assert_eq!(items, SPREAD as usize, "each registration announced once");
    assert!(written < 20.0, "the writes were slow ({written} writes)");
    assert!(
        datagrams as f64 <= written + 1.0,
        "{datagrams} announcements for {written} writes"
    );
}
