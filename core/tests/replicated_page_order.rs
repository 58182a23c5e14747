//! A page written by the publisher before a registration made through a replica reached
//! it, delivered after that registration's announcement (a datagram delayed half a
//! second, within the reordering the protocol tolerates), must not make a listener
//! report the live service unregistered. With a replicated store, versions reach the
//! publisher out of order: the page's `as_of` is newer than the late registration's
//! version although the page was written before the publisher held it. Found by the
//! history checker (seed 4 of `history`; seed 693: the listener then ignores every
//! later page that lists the service, as older than the removal it inferred, and
//! misses it for good).

mod support;

use herald_core::wire::{decode, Message};
use herald_core::*;
use support::*;

#[test]
fn a_late_page_does_not_unregister_a_registration_replicated_after_it() {
    let delay = Duration::from_millis(500);
    let mut sim = Sim::replicated(1, Faults::none(), 16, 2, delay);
    sim.client_lease = Duration::from_secs(20);
    sim.next_first_directory = 1;
    let via_replica = sim.add_client(None, 4);
    sim.next_first_directory = 0;
    let via_publisher = sim.add_client(None, 4);
    let listener = sim.add_client(Some(Interest::all()), 16);
    sim.run(Duration::from_millis(1_800));

    // "late" is registered through the replica, then "early" through the publisher: the
    // publisher stamps "early" with a newer version than "late" and sweeps (every 2 s)
    // before "late" reaches it through the store.
    sim.register(via_replica, service("late", 7001));
    sim.run(Duration::from_millis(50));
    sim.register(via_publisher, service("early", 7002));
    sim.capture = true;
    sim.run(Duration::from_millis(300));
    sim.capture = false;
    let listener_addr = sim.nodes[listener].addr;
    let publisher = nth_directory(0).socket_addr();
    let page = sim
        .captured
        .iter()
        .find(|(from, to, bytes)| {
            *from == publisher
                && *to == listener_addr
                && matches!(decode(bytes).map(|f| f.message), Ok(Message::SyncPage(..)))
        })
        .map(|(_, _, bytes)| bytes.clone())
        .expect("the publisher swept while the registration was on its way");
    let Ok(Message::SyncPage(header, items)) = decode(&page).map(|f| f.message) else {
        unreachable!()
    };
    let names: Vec<String> = items.map(|s| s.name().to_string()).collect();
    assert!(
        header.complete && !names.contains(&"late".to_string()),
        "{names:?}"
    );

    // "late" reaches the publisher, which announces it; the listener discovers it.
    sim.run(Duration::from_millis(600));
    let late = sim.live_at(0).get("late").cloned().expect("replicated");
    assert!(
        late.version < header.as_of,
        "the page's as_of ({}) is newer than the late registration ({})",
        header.as_of.0,
        late.version.0
    );
    assert!(sim.nodes[listener].view.services.contains_key("late"));

    // The page, delayed, arrives now; three sweeps follow.
    sim.inject(publisher, listener_addr, &page);
    sim.run(Duration::from_secs(6));
    let view = &sim.nodes[listener].view;
    assert!(
        !view.unregistered.contains_key("late") && view.services.contains_key("late"),
        "a page older than the registration's announcement removed it (still missing \
         three sweeps later: {}): {:?}",
        !view.services.contains_key("late"),
        sim.nodes[listener].events
    );
    assert_clean(&sim);
}
