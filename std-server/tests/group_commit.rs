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
