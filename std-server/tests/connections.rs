//! Every TCP interface of the directory (HTTP, the metrics endpoint, DNS over TCP)
//! bounds its connections: at most a fixed number are taken at once (the rest wait in
//! the kernel's backlog and hold no descriptor of the directory's), and an idle one is
//! closed after a timeout. Without both, idle clients could use up the process's file
//! descriptors, and with them its storage and every other interface.

mod common;

use common::*;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Idle connections opened by the test, more than any interface takes at once.
const IDLE: usize = 600;
/// The loopback addresses they come from (127.0.0.2 on), each within its share of an
/// HTTP interface's connections (an eighth of 512).
const SOURCES: usize = 10;

/// A connection to `addr` from the loopback address 127.0.0.`source`.
fn connect_from(source: u8, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local = SocketAddr::from(([127, 0, 0, source], 0));
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// Opens [`IDLE`] idle connections to `addr` of directory `p` from [`SOURCES`]
/// addresses; checks that it takes at most `max` of them, that it closes the first by
/// itself within `closes_within`, and that once they are gone `works` succeeds at once.
fn bounded(p: &Proc, addr: &str, max: usize, closes_within: Duration, works: impl Fn()) {
    let before = descriptors(p.pid());
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| connect_from(2 + (i % SOURCES) as u8, addr))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = descriptors(p.pid()) - before;
    assert!(
        held <= max,
        "{held} descriptors for {IDLE} idle connections"
    );
    let mut first = &idle[0];
    first.set_read_timeout(Some(closes_within)).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = first.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "closed, not timed out: {closed:?} after {:?}",
        started.elapsed()
    );
    drop(idle);
    works();
}

/// A directory with the interface `flag` on a free loopback port; its address.
fn start(flag: &str) -> (Proc, String, tempfile::TempDir) {
    let net = Net::new();
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port_tcp());
    let p = directory(&net, data.path(), &[flag, &addr]);
    (p, addr, data)
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// HTTP: at most 512 connections, and one that sends no request head within 10 s is
/// closed. Before, every connection was taken and held for ever.
#[test]
fn http_connections_are_bounded_and_closed() {
    let (p, http, _data) = start("--http");
    bounded(&p, &http, 512, Duration::from_secs(30), || {
        let (status, _) = request(&http, "GET", "/healthz", &[], "");
        assert_eq!(status, 200);
    });
}

/// The metrics endpoint: at most 64 connections (scrapers are few), each closed 5 s
/// after it was taken. Before, every connection was taken, so a client opening them
/// faster than they timed out held as many descriptors as it liked.
#[test]
fn metrics_connections_are_bounded_and_closed() {
    let (p, metrics, _data) = start("--metrics");
    bounded(&p, &metrics, 64, Duration::from_secs(20), || {
        let text = http_get(&metrics, "/metrics");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    });
}

/// DNS over TCP: at most 128 connections, and one that sends no query within 10 s is
/// closed. Before, every connection was taken. A connection carries many queries; one
/// that does not parse gets `FORMERR`, and bytes that are no DNS message end it.
#[test]
fn dns_tcp_connections_are_bounded_and_closed() {
    let (p, dns, _data) = start("--dns");
    bounded(&p, &dns, 128, Duration::from_secs(30), || {
        let mut s = TcpStream::connect(&dns).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut soa = vec![0x4e, 0x21, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        soa.extend_from_slice(b"\x06herald\x00\x00\x06\x00\x01");
        for _ in 0..2 {
            let answer = exchange(&mut s, &soa);
            // The same id, a response, authoritative, NOERROR, one answer.
            assert_eq!(&answer[..2], &[0x4e, 0x21], "{answer:?}");
            assert_eq!(answer[2] & 0x84, 0x84, "{answer:?}");
            assert_eq!(answer[3] & 0x0f, 0, "{answer:?}");
            assert_eq!(&answer[6..8], &[0, 1], "{answer:?}");
        }
        // A question cut short: FORMERR, same id.
        let answer = exchange(&mut s, &soa[..15]);
        assert_eq!(&answer[..2], &[0x4e, 0x21], "{answer:?}");
        assert_eq!(answer[3] & 0x0f, 1, "{answer:?}");
        // Less than a header: the connection is closed.
        s.write_all(&[0, 3, 1, 2, 3]).unwrap();
        let mut rest = Vec::new();
        assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    });
}

/// Sends `query` on `s` with its length, and reads one answer.
fn exchange(s: &mut TcpStream, query: &[u8]) -> Vec<u8> {
    s.write_all(&(query.len() as u16).to_be_bytes()).unwrap();
    s.write_all(query).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).unwrap();
    answer
}

/// An HTTP request whose body never arrives whole gets 408 within 10 s of its head and
/// the connection is closed. Before, the directory waited for the body for ever, so
/// such requests could hold every HTTP connection.
#[test]
fn an_http_body_that_never_ends_is_timed_out() {
    let (_p, http, _data) = start("--http");
    let mut s = TcpStream::connect(&http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT /v1/services/x HTTP/1.1\r\nHost: x\r\nHerald-Registrant: 00000000000a11ce\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    )
    .unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    let read = s.read_to_string(&mut answer);
    assert!(read.is_ok(), "{read:?} after {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive"), "{answer}");
}

/// Event streams cannot take every HTTP connection: at most 384 are open at once, one
/// more gets 503 (its connection closed), and requests are still answered at once.
/// Before, 512 watches held all 512 connections and every other request waited for
/// one of them to end.
#[test]
fn event_streams_leave_room_for_requests() {
    let (_p, http, _data) = start("--http");
    let mut watches = Vec::new();
    let (mut open, mut refused) = (0, 0);
    for i in 0..520 {
        // From several addresses: one takes at most an eighth of the connections.
        let mut s = connect_from(2 + (i % SOURCES) as u8, &http);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let path = if i % 2 == 0 {
            "/v1/watch"
        } else {
            "/v1/subscribers/watch"
        };
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut status = [0u8; 12];
        if s.read_exact(&mut status).is_err() {
            break;
        }
        match &status[9..12] {
            b"200" => open += 1,
            b"503" => {
                refused += 1;
                continue;
            }
            other => panic!("{}", String::from_utf8_lossy(other)),
        }
        watches.push(s);
    }
    assert_eq!((open, refused), (384, 136));
    let (status, _) = request(&http, "GET", "/healthz", &[], "");
    assert_eq!(status, 200);
}

/// One source cannot take every connection of an interface: past an eighth of them
/// (64 of HTTP's 512) its connections get `429` and are closed at once, and a request
/// from another address is answered at once. Before, one address's 512 idle
/// connections held every slot, and the request waited for the first of them to time
/// out (10 s).
#[test]
fn one_source_leaves_room_for_the_others() {
    let (p, http, _data) = start("--http");
    let before = descriptors(p.pid());
    let connections: Vec<TcpStream> = (0..IDLE).map(|_| connect_from(2, &http)).collect();
    std::thread::sleep(Duration::from_secs(1));
    // A refused connection has its answer and its end waiting; a taken one, nothing.
    let mut idle = Vec::new();
    let mut refused = Vec::new();
    for mut s in connections {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut answer = String::new();
        match s.read_to_string(&mut answer) {
            Ok(_) => refused.push(answer),
            Err(_) => idle.push(s),
        }
    }
    assert_eq!((idle.len(), refused.len()), (64, IDLE - 64));
    assert!(refused[0].starts_with("HTTP/1.1 429"), "{}", refused[0]);
    assert!(
        refused[0].contains("too many connections from this address: at most 64 of 512"),
        "{}",
        refused[0]
    );
    assert!(descriptors(p.pid()) - before <= 64 + 1);
    // Another address is served at once.
    let mut s = connect_from(3, &http);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let read = s.read_to_string(&mut answer);
    assert!(read.is_ok(), "{read:?}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
