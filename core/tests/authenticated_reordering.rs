//! In an authenticated environment, two requests of one registrant that arrive in the
//! opposite order to the one they were sent in (reordering the protocol tolerates)
//! must both be accepted. Found by the history checker (seed 267 of `history`): replay
//! windows hold 64 counters, but counters follow a microsecond clock, so a request
//! overtaken by one sent more than 64 µs later is refused as a replay; with reordering
//! up to 1 s and no loss, the directory dropped 124 requests as replayed and a
//! registrant's lease ran out.

mod support;

use herald_core::auth::{self, Key, Keys};
use herald_core::wire::{decode_authenticated, Message, RejectReason};
use herald_core::*;
use support::*;

#[test]
fn requests_overtaken_by_newer_ones_of_the_same_registrant_are_accepted() {
    overtaken(false);
}

/// Accepted as they arrive, not refused as `stale` and sent again: under reordering of
/// up to a second, with a registrant's several names renewing, every attempt of one
/// name can be overtaken by another's, and refusing them ran a lease out (seed 1488 of
/// `history`: 1,250 `stale` answers, a registration expired while renewed every 50 ms).
#[test]
fn requests_overtaken_by_newer_ones_are_applied_without_a_stale_round_trip() {
    overtaken(true);
}

fn overtaken(without_retry: bool) {
    let keys = Keys::new(Key::new(1, b"herald-reordering-test-key-01").unwrap());
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(keys.clone());
    config.version_floor = Version(1_000_000_000);
    let mut sim = Sim::with_config(1, Faults::none(), 16, config);
    sim.client_keys = Some(keys.clone());
    sim.client_lease = Duration::from_secs(20);
    let r = sim.add_client(None, 4);
    // A first registration sets the client's counter clock from the directory's.
    sim.register(r, service("warm", 7000));
    sim.run(Duration::from_secs(1));
    assert!(sim.live().contains_key("warm"));

    // Two registrations 5 ms apart, held back on the way...
    sim.nodes[r].partitioned = true;
    sim.capture = true;
    sim.register(r, service("first", 7001));
    sim.run(Duration::from_millis(5));
    sim.register(r, service("second", 7002));
    sim.run(Duration::from_millis(1));
    sim.capture = false;
    sim.nodes[r].partitioned = false;
    let sent = |name: &str| {
        sim.captured
            .iter()
            .find(|(_, _, bytes)| {
                let (inner, _) = auth::open(&keys, bytes).unwrap();
                matches!(decode_authenticated(inner).map(|f| f.message),
                    Ok(Message::Register(q)) if q.registration.name.as_str() == name)
            })
            .cloned()
            .expect("sent")
    };
    let (first, second) = (sent("first"), sent("second"));
    let before = *sim.directory().stats();
    // ...arrive in the opposite order, before any retransmission.
    sim.inject(second.0, second.1, &second.2);
    sim.inject(first.0, first.1, &first.2);
    sim.run(Duration::from_millis(2));
    let live = sim.live();
    if without_retry {
        let stats = sim.directory().stats();
        assert_eq!(
            (
                stats.replayed - before.replayed,
                stats.rejected(RejectReason::Stale) - before.rejected(RejectReason::Stale)
            ),
            (0, 0),
            "refused as replayed or stale"
        );
    }
    assert!(
        live.contains_key("second") && live.contains_key("first"),
        "registered: {:?}; dropped as replayed: {}",
        live.keys().collect::<Vec<_>>(),
        sim.directory().stats().replayed
    );
}

/// A `stale` answer delayed on the way must not set a registrant's counter back below
/// the sequences it already sent: its next request would then be older than the ones
/// before it, and a late copy of an earlier Unregister would remove the registration
/// that follows it. Found by the history checker (seed 3588 with every fault class):
/// a `stale` answer 0.8 s late took the counter back from 1,620,598 to 981,656, the
/// Register sent next carried 1,128,655, and the Unregister sent before it (1,620,598),
/// overtaken, removed the new registration while its registrant renewed it.
/// Only an answer refusing a request as too far ahead of the directory's clock (floor
/// 0, for a request above the answer's own counter) takes the counter back.
#[test]
fn a_late_stale_answer_does_not_take_the_sequence_back() {
    use herald_core::client::ClientStorage;
    use herald_core::wire::{self, Reject};
    let keys = Keys::new(Key::new(1, b"herald-reordering-test-key-01").unwrap());
    let a = nth_directory(0);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(9);
    config.directories.push(a).unwrap();
    config.keys = Some(keys.clone());
    config.clock_floor = 1_000_000_000;
    let mut client: Client<'_, 1> = Client::new(config, known, index).unwrap();
    // What the client sends: (request id, sequence).
    let sent = |client: &mut Client<'_, 1>, now: Instant| {
        let mut buf = [0u8; 1400];
        let mut out = Vec::new();
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            let (inner, _) = auth::open(&keys, &buf[..t.len]).unwrap();
            match decode_authenticated(inner).unwrap().message {
                Message::Register(r) => out.push((r.request, r.sequence)),
                Message::Unregister(u) => out.push((u.request, u.sequence)),
                _ => {}
            }
        }
        out
    };
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    let first = sent(&mut client, now);
    // Unanswered for a while: retries, each with a higher sequence.
    let mut all = first.clone();
    while now < Instant::from_millis(800) {
        now = client.poll_timeout().unwrap().max(now);
        client.handle_timeout(now);
        all.extend(sent(&mut client, now));
    }
    let highest = all.iter().map(|(_, s)| *s).max().unwrap();
    assert!(highest > first[0].1 + 500_000, "{all:?}");

    // The directory's `stale` answer to the first attempt, written right after it
    // arrived (its counter just above it), arrives now.
    let reject = Reject {
        request: first[0].0,
        reason: RejectReason::Stale,
        directory_environment: Environment::default(),
        floor: first[0].1,
    };
    let mut buf = [0u8; 1400];
    let len = wire::encode(&Environment::default(), &reject, &mut buf).unwrap();
    let len = auth::seal(&keys, first[0].1 + 1_000, &mut buf, len).unwrap();
    let answer = buf[..len].to_vec();
    client.handle_datagram(now, a.socket_addr(), &answer);
    let next = sent(&mut client, now);
    client
        .unregister(now, &ServiceName::new("api").unwrap())
        .unwrap();
    let next: Vec<_> = next.into_iter().chain(sent(&mut client, now)).collect();
    assert!(!next.is_empty());
    for (request, sequence) in &next {
        assert!(
            *sequence > highest,
            "request {request} went out with sequence {sequence}, below {highest} already sent"
        );
    }
}

/// The counter goes back where it must: a client whose clock runs a minute ahead of the
/// directory's (past its 30 s window) is refused as `stale` with floor 0, follows the
/// directory's clock back, and registers.
#[test]
fn a_client_ahead_of_the_directory_window_follows_its_clock_back() {
    let keys = Keys::new(Key::new(1, b"herald-reordering-test-key-01").unwrap());
    let floor = 1_000_000_000u64;
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(keys.clone());
    config.version_floor = Version(floor);
    let mut sim = Sim::with_config(2, Faults::none(), 16, config);
    let mut c = ClientConfig::new(0xa4ead);
    c.directories.push(directory_location()).unwrap();
    c.keys = Some(keys);
    c.lease = Duration::from_secs(3);
    c.clock_floor = floor + Duration::from_secs(60).as_micros();
    let r = sim.push_node(std::net::SocketAddr::new(ip(60), 40000), c, 4);
    sim.register(r, service("ahead", 1));
    sim.run(Duration::from_secs(2));
    assert!(sim.live().contains_key("ahead"));
    assert!(sim.directory().stats().rejected(RejectReason::Stale) >= 1);
}

/// A registrant's process that stops right after unregistering a name and starts
/// again registering it: the new process's clock may be behind the directory's, which
/// its predecessor followed, so the predecessor's Unregister, still on the way, carries
/// a higher sequence than the new Register. It must not remove the new registration.
/// Found by the history checker (seed 4161220: independent directories, one 2 s ahead;
/// the Unregister arrived 1 s late and removed the registration made after it while
/// its registrant renewed it). The directory stores a registration that makes a name
/// live (or changes it) at no less than its own clock, which the registrant's counter
/// follows from the answer on.
#[test]
fn a_predecessors_late_unregister_does_not_remove_the_registration_made_after_it() {
    let keys = Keys::new(Key::new(1, b"herald-reordering-test-key-01").unwrap());
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(keys.clone());
    // The directory's clock runs 2 s ahead of the registrant's wall clock.
    config.version_floor = Version(2_000_000);
    let mut sim = Sim::with_config(1, Faults::none(), 16, config);
    sim.client_keys = Some(keys.clone());
    let r = sim.add_client(None, 4);
    // Past the directory's start, which it refuses counters below.
    sim.run(Duration::from_secs(3));
    sim.register(r, service("svc", 7000));
    sim.run(Duration::from_secs(1));
    assert!(sim.live().contains_key("svc"));

    // The Unregister is held back on the way; the process stops and starts again.
    sim.nodes[r].partitioned = true;
    sim.capture = true;
    sim.unregister(r, "svc");
    sim.run(Duration::from_millis(5));
    sim.capture = false;
    let dir = directory_location().socket_addr();
    let late = sim
        .captured
        .iter()
        .find(|(_, to, bytes)| {
            *to == dir
                && auth::open(&keys, bytes)
                    .ok()
                    .and_then(|(inner, _)| decode_authenticated(inner).ok())
                    .is_some_and(|f| matches!(f.message, Message::Unregister(_)))
        })
        .cloned()
        .expect("an unregister was captured");
    sim.restart_client(r);
    sim.nodes[r].partitioned = false;
    sim.register(r, service("svc", 7001));
    sim.run(Duration::from_millis(200));
    assert_eq!(
        sim.live()
            .get("svc")
            .map(|s| s.registration.locations[0].port()),
        Some(7001)
    );

    // The predecessor's Unregister arrives, before the new process renews.
    sim.inject(late.0, late.1, &late.2);
    sim.run(Duration::from_millis(200));
    assert!(
        sim.live().contains_key("svc"),
        "the predecessor's late Unregister removed the new registration"
    );
    // The new process goes on as usual: it renews, and unregisters.
    sim.run(Duration::from_secs(20));
    assert!(sim.live().contains_key("svc"));
    sim.unregister(r, "svc");
    sim.run(Duration::from_secs(1));
    assert!(!sim.live().contains_key("svc"));
}
