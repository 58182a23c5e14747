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
