//! A registrant's requests are ordered by its sequence across the directories of a
//! shared store: a late request never undoes a newer one, whichever directory it
//! reaches and whatever version that directory gives it.

mod support;

use herald_core::wire::{decode, Message};
use herald_core::*;
use support::*;

/// The first request of `kind` the registrant sent to directory 0 while capturing.
fn captured_to_zero(sim: &Sim, unregister: bool) -> (std::net::SocketAddr, Vec<u8>) {
    sim.captured
        .iter()
        .find(|(_, to, bytes)| {
            *to == nth_directory(0).socket_addr()
                && match decode(bytes).map(|f| f.message) {
                    Ok(Message::Unregister(_)) => unregister,
                    Ok(Message::Register(_)) => !unregister,
                    _ => false,
                }
        })
        .map(|(from, _, bytes)| (*from, bytes.clone()))
        .expect("the request was sent")
}

/// Failed before (seed 4618 of `history`): the registrant unregisters through
/// directory 0 and registers again there; a late copy of the unregistration reaches
/// directory 1 before either change does through the store. Directory 1 removed the
/// name at a newer version than the new registration's; its write conflicted, it read
/// the registration back and ignored it as older, and its removal won in the store and
/// at the publisher: the live registration was lost. The higher sequence now wins.
#[test]
fn a_late_unregistration_at_another_directory_does_not_undo_a_new_registration() {
    let delay = Duration::from_millis(500);
    let mut sim = Sim::replicated(1, Faults::none(), 16, 2, delay);
    sim.client_lease = Duration::from_secs(20);
    let registrant = sim.add_client(None, 4);
    let listener = sim.add_client(Some(Interest::all()), 16);
    sim.register(registrant, service("again", 7001));
    sim.run(Duration::from_secs(2));
    assert!(sim.live_at(1).contains_key("again"), "replicated");

    sim.capture = true;
    sim.unregister(registrant, "again");
    sim.capture = false;
    let (from, bytes) = captured_to_zero(&sim, true);
    sim.run(Duration::from_millis(50));
    sim.register(registrant, service("again", 7001));
    sim.run(Duration::from_millis(50));
    // The late copy reaches directory 1, which has seen neither change yet.
    sim.inject(from, nth_directory(1).socket_addr(), &bytes);
    sim.run(Duration::from_secs(4));

    for d in 0..2 {
        assert!(
            sim.live_at(d).contains_key("again"),
            "live at directory {d}"
        );
    }
    let store = sim.shared.as_ref().unwrap();
    let stored = Record::from_bytes(&store.records["again"], wall(sim.now)).unwrap();
    assert!(stored.is_live(), "the store holds the registration");
    assert!(
        sim.nodes[listener].view.services.contains_key("again"),
        "the listener holds the registration"
    );
    assert_clean(&sim);
}

/// Sends one request from a registrant at `from` (registrant 77) to directory 0 and
/// runs the simulation a little.
fn send(sim: &mut Sim, request: Message<'_>) {
    send_to(sim, 0, request);
}

/// Sends one request as [`send`] does, to directory `d`.
fn send_to(sim: &mut Sim, d: usize, request: Message<'_>) {
    let from = std::net::SocketAddr::new(ip(200), 5000);
    let mut bytes = [0u8; 512];
    let len = match &request {
        Message::Register(r) => herald_core::wire::encode(&sim.config.environment, r, &mut bytes),
        Message::Unregister(u) => herald_core::wire::encode(&sim.config.environment, u, &mut bytes),
        _ => unreachable!(),
    }
    .unwrap();
    sim.inject(from, nth_directory(d).socket_addr(), &bytes[..len]);
    sim.run(Duration::from_millis(100));
}

fn register(sequence: u64) -> Message<'static> {
    Message::Register(herald_core::wire::RegisterRequest {
        request: sequence as u32,
        registrant: 77,
        sequence,
        lease: Duration::from_secs(20),
        registration: service("late", 7002),
    })
}

fn unregister(sequence: u64) -> Message<'static> {
    Message::Unregister(herald_core::wire::UnregisterRequest {
        request: sequence as u32,
        registrant: 77,
        sequence,
        name: ServiceName::new("late").unwrap(),
    })
}

/// Whether directory 0 holds "late" live.
fn held_live(sim: &Sim) -> bool {
    sim.directory().record("late").is_some_and(|r| r.is_live())
}

/// Failed before (seed 2820 of `history`): an Unregister reached the directory before
/// the Register sent ahead of it; the directory did not hold the name, acknowledged the
/// Unregister and kept no trace of it, then applied the late Register.
#[test]
fn a_register_arriving_after_the_unregister_that_followed_it_is_stale() {
    let mut sim = Sim::new(1, Faults::none(), 16);
    send(&mut sim, unregister(20));
    send(&mut sim, register(10));
    assert!(!held_live(&sim), "the late register was applied");
    // A later register is applied.
    send(&mut sim, register(30));
    assert!(held_live(&sim));
}

/// Failed before: the directory held the name as a tombstone of an older removal; the
/// Unregister acknowledged as already done left its sequence unrecorded, and the
/// Register sent before it, arriving after, was applied.
#[test]
fn an_unregister_of_a_removed_name_raises_its_floor() {
    let mut sim = Sim::new(1, Faults::none(), 16);
    send(&mut sim, register(1));
    send(&mut sim, unregister(5));
    assert!(!held_live(&sim));
    send(&mut sim, unregister(20));
    send(&mut sim, register(10));
    assert!(!held_live(&sim), "the late register was applied");
    send(&mut sim, register(30));
    assert!(held_live(&sim));
}

/// Failed before: the Unregister reached directory 1, which did not hold the name; the
/// Register sent before it reached directory 0 after, which applied it and stored it;
/// directory 1 took the live record from the store and kept it. It now removes it (the
/// Unregister is the later request) and the store and directory 0 follow.
#[test]
fn a_late_register_at_another_directory_is_removed_by_the_earlier_arrived_unregister() {
    let mut sim = Sim::replicated(1, Faults::none(), 16, 2, Duration::from_millis(300));
    let listener = sim.add_client(Some(Interest::all()), 16);
    send_to(&mut sim, 1, unregister(20));
    send_to(&mut sim, 0, register(10));
    sim.run(Duration::from_secs(3));
    for d in 0..2 {
        assert!(
            !sim.live_at(d).contains_key("late"),
            "live at directory {d}"
        );
    }
    assert!(!sim.nodes[listener].view.services.contains_key("late"));
    assert_clean(&sim);
}
