//! One unregistration is announced exactly N times, even when its request reaches two
//! directories of a shared store: a client that fails over sends the same request (same
//! request id) to the next directory, and an earlier copy may still be on its way to
//! the first. Found by the history checker (seed 4 of `history`): the second directory,
//! which had not yet seen the removal through the store, removed the name again at a
//! new version; the publisher stopped counting the first removal at 15 and sent 20 more
//! for the second, 35 notifications for one removal.

mod support;

use herald_core::wire::{decode, Message};
use herald_core::*;
use support::*;

#[test]
fn an_unregistration_reaching_two_directories_is_announced_n_times() {
    let delay = Duration::from_millis(500);
    let mut sim = Sim::replicated(1, Faults::none(), 16, 2, delay);
    sim.client_lease = Duration::from_secs(20);
    let registrant = sim.add_client(None, 4);
    let listener = sim.add_client(Some(Interest::all()), 16);
    sim.register(registrant, service("twice", 7001));
    sim.run(Duration::from_secs(2));
    assert!(sim.live_at(1).contains_key("twice"), "replicated");

    // The registrant unregisters through the publisher (directory 0); a copy of the same
    // request reaches directory 1 too, before the removal does through the store.
    sim.capture = true;
    sim.unregister(registrant, "twice");
    sim.capture = false;
    let request = sim
        .captured
        .iter()
        .find(|(_, to, bytes)| {
            *to == nth_directory(0).socket_addr()
                && matches!(decode(bytes).map(|f| f.message), Ok(Message::Unregister(_)))
        })
        .cloned()
        .expect("the unregistration was sent");
    sim.run(Duration::from_millis(100));
    sim.inject(request.0, nth_directory(1).socket_addr(), &request.2);
    sim.run(Duration::from_secs(4));

    let sent: Vec<(u64, usize)> = sim
        .notifications
        .iter()
        .filter(|((name, _), _)| name == "twice")
        .map(|((_, version), n)| (*version, *n))
        .collect();
    let total: usize = sent.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total, 20,
        "one unregistration, notified per version: {sent:?}"
    );
    assert_eq!(sim.nodes[listener].view.unregistered.get("twice"), Some(&1));
    assert_clean(&sim);
}
