//! Scenario 9: hostile input. Random, truncated, oversized, replayed, forged and
//! foreign-version datagrams go to the directory's request port and to the group; the
//! directory and the listener keep serving correctly, and the directory counts what it
//! dropped or refused.

use herald_core::wire::{self, Message, RejectReason};
use herald_tests::harness::herald::{count, list_view, register};
use herald_tests::harness::host::Host;
use herald_tests::harness::hostile;
use herald_tests::harness::rng::Rng;
use herald_tests::harness::wait::poll_until;
use herald_tests::{Directory, DirectoryOptions, Watcher};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const ENV: &str = "s09";

fn sender() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("multicast on loopback");
    s.set_multicast_ttl_v4(1).expect("ttl");
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("bind");
    s.into()
}

#[test]
fn hostile_datagrams_are_dropped_and_counted_and_service_goes_on() {
    let host = Host::loopback("lo");
    let options = DirectoryOptions::new(ENV).with_metrics();
    let directory = Directory::start(&host, "directory", options);
    let conn = directory.connect();
    let watcher = Watcher::start(&host, "watch", &conn, &[]);
    watcher.wait_ready(T);
    let _victim = register(&host, &conn, "victim", &[host.addr(7300)], &[]);
    watcher.wait(T, "victim discovered", |e| {
        count(e, "discovered", "victim") == 1
    });
    // Metrics are refreshed on the directory's wake-ups: wait until they show victim.
    let before = poll_until(T, || {
        let m = directory.metrics();
        (m.get("herald_registrations_total") >= 1.0).then_some(m)
    })
    .expect("metrics show the first registration");

    let seed = Rng::fresh_seed();
    eprintln!("[s09] seed {seed}");
    let mut rng = Rng::new(seed);
    let socket = sender();
    let dir = directory.bind_addr();
    let valid = hostile::register(ENV, 99, "victim", host.addr(7301));
    let mut to_directory: Vec<Vec<u8>> = Vec::new();
    let random = hostile::random(&mut rng, 200);
    let malformed = random.len() + valid.len() - 1 + 2;
    to_directory.extend(random);
    to_directory.extend(hostile::truncations(&valid));
    to_directory.extend(hostile::oversized(&mut rng, &valid));
    for _ in 0..5 {
        to_directory.push(hostile::foreign_version(&valid));
        to_directory.push(hostile::flagged(&valid));
        // Replays by a registrant that does not hold the name.
        to_directory.push(valid.clone());
        to_directory.push(hostile::unregister(ENV, 99, "victim"));
        to_directory.push(hostile::register(
            "elsewhere",
            99,
            "victim",
            host.addr(7301),
        ));
    }
    let mut to_group: Vec<Vec<u8>> = hostile::random(&mut rng, 100);
    // The real directory's address, an old version: a stale replay.
    let stale = hostile::announce_removal(ENV, dir, "victim", 1);
    // A directory nobody follows, a new version: a forgery.
    let forged = hostile::announce_removal(ENV, host.addr(1), "victim", u64::MAX / 2);
    to_group.extend(hostile::truncations(&stale));
    for _ in 0..5 {
        to_group.push(stale.clone());
        to_group.push(forged.clone());
        to_group.push(hostile::foreign_version(&stale));
        to_group.push(hostile::announce_removal(
            "elsewhere",
            dir,
            "victim",
            u64::MAX / 2,
        ));
    }
    eprintln!(
        "[s09] sending {} datagrams to the request port and {} to the group",
        to_directory.len(),
        to_group.len()
    );
    for (i, d) in to_directory.iter().enumerate() {
        let _ = socket.send_to(d, dir);
        if i % 32 == 31 {
            // Bounded bursts: the directory drains a full socket, not an overflowing one.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for d in &to_group {
        let _ = socket.send_to(d, directory.group());
    }

    // Still serving: a new registration is announced and listed; nothing else changed.
    let _after = register(&host, &conn, "after", &[host.addr(7302)], &[]);
    watcher.wait(T, "after discovered", |e| {
        count(e, "discovered", "after") == 1
    });
    let listed = list_view(&host, &conn).expect("list");
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["after", "victim"],
        "{listed:?}"
    );
    assert_eq!(
        listed["victim"],
        [host.addr(7300).to_string()],
        "victim untouched"
    );
    std::thread::sleep(Duration::from_secs(1));
    let e = watcher.events();
    assert_eq!(count(&e, "unregistered", "victim"), 0, "{e:?}");
    assert_eq!(e.len(), 2, "no spurious events: {e:?}");

    let m = directory.metrics();
    let delta = |k: &str| m.get(k) - before.get(k);
    let rejected = |reason: &str| delta(&format!("herald_rejections_total{{reason=\"{reason}\"}}"));
    eprintln!(
        "[s09] directory counted: malformed +{}, wrong environment +{}, rejections: unsupported_version +{}, name_held +{}, malformed +{}; replies dropped +{}",
        delta("herald_malformed_total"),
        delta("herald_wrong_environment_total"),
        rejected("unsupported_version"),
        rejected("name_held"),
        rejected("malformed"),
        delta("herald_replies_dropped_total"),
    );
    assert!(
        delta("herald_malformed_total") >= malformed as f64 * 0.9,
        "malformed datagrams counted: {} of about {malformed}",
        delta("herald_malformed_total")
    );
    assert!(delta("herald_wrong_environment_total") >= 5.0);
    assert!(
        rejected("unsupported_version") >= 5.0,
        "foreign versions refused"
    );
    // Frames with an unknown flag are refused too (as malformed or unsupported).
    assert!(
        delta("herald_malformed_total") + rejected("unsupported_version")
            >= (malformed + 10) as f64 * 0.9,
        "flagged frames are counted"
    );
    assert!(
        rejected("name_held") >= 10.0,
        "replays by another registrant refused"
    );
    assert_eq!(
        delta("herald_registrations_total"),
        1.0,
        "only `after` registered"
    );
    assert_eq!(delta("herald_unregisters_total"), 0.0);
}

/// Asks the directory at `to` for its cookie from `socket`.
fn cookie(socket: &UdpSocket, to: SocketAddr) -> [u8; wire::COOKIE_LEN] {
    socket
        .send_to(&hostile::snapshot_request(ENV, None), to)
        .expect("send");
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).expect("a cookie within the timeout");
        if let Some(Message::Cookie(c)) = hostile::decode(&buf[..n]) {
            return c.cookie;
        }
    }
}

/// A socket on `ip` (a loopback address of its own) that waits at most 2 s.
fn subscriber_socket(ip: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Subscribes `ids` from `socket`; how many were taken and how many refused for the
/// source's budget (deliveries arriving meanwhile are skipped).
fn subscribe_all(socket: &UdpSocket, to: SocketAddr, ids: std::ops::Range<u64>) -> (usize, usize) {
    let cookie = cookie(socket, to);
    let (mut taken, mut refused) = (0, 0);
    let mut buf = [0u8; 1500];
    for id in ids {
        let delivery = id as u32 + 1;
        socket
            .send_to(&hostile::subscribe(ENV, id, delivery, cookie), to)
            .expect("send");
        loop {
            let n = socket.recv(&mut buf).expect("an answer within the timeout");
            match hostile::decode(&buf[..n]) {
                Some(Message::SubscribeAck(_)) => taken += 1,
                Some(Message::Reject(r)) if r.reason == RejectReason::SourceBudget => refused += 1,
                Some(Message::Reject(r)) => panic!("refused: {r:?}"),
                _ => continue,
            }
            break;
        }
    }
    (taken, refused)
}

#[test]
fn one_address_takes_its_subscription_budget_and_no_more() {
    let host = Host::loopback("lo");
    let options = DirectoryOptions::new(ENV).with_metrics();
    let directory = Directory::start(&host, "directory", options);
    let to = directory.bind_addr();
    let attacker = subscriber_socket(Ipv4Addr::new(127, 0, 0, 9));
    let (taken, refused) = subscribe_all(&attacker, to, 0..100);
    eprintln!("[s09] one address subscribing 100 times: {taken} taken, {refused} refused");
    assert_eq!(
        (taken, refused),
        (64, 36),
        "the default budget of one address"
    );
    // Another address is still served.
    let other = subscriber_socket(Ipv4Addr::new(127, 0, 0, 10));
    assert_eq!(subscribe_all(&other, to, 1_000..1_001), (1, 0));
    let subscribers = poll_until(T, || {
        let m = directory.metrics();
        (m.get("herald_subscribers") == 65.0).then_some(())
    });
    assert!(
        subscribers.is_some(),
        "{}",
        directory.metrics().get("herald_subscribers")
    );
}
