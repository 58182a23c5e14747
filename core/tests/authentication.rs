//! Authenticated environments on the simulated network: legitimate traffic works (also
//! during a key rotation), while forged, altered, replayed and foreign-key frames are
//! dropped and counted.

mod support;

use herald_core::auth::{self, Key, Keys};
use herald_core::wire::{self, Change, Message};
use herald_core::*;
use support::*;

fn key(id: u8) -> Key {
    Key::new(id, format!("herald-test-key-number-{id:02}").as_bytes()).unwrap()
}

fn keyed_sim(seed: u64, directory_keys: Keys, client_keys: Keys) -> Sim {
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(directory_keys);
    config.version_floor = Version(1_000_000_000);
    let mut sim = Sim::with_config(seed, Faults::none(), 16, config);
    sim.client_keys = Some(client_keys);
    sim
}

fn kinds(sim: &Sim, node: usize) -> Vec<&ClientEvent> {
    sim.nodes[node]
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Discovered(_) | ClientEvent::Changed(_) | ClientEvent::Unregistered(_)
            )
        })
        .collect()
}

#[test]
fn authenticated_traffic_works_and_resynchronises_clocks() {
    let keys = Keys::new(key(1));
    let mut sim = keyed_sim(1, keys.clone(), keys);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("secure", 1000));
    sim.run(Duration::from_secs(1));
    assert!(sim.nodes[l].view.services.contains_key("secure"));
    // The clients start with no clock: their first request is refused as stale, and they
    // follow the directory's clock from then on.
    let stats = *sim.directory().stats();
    assert!(stats.rejected(RejectReason::Stale) >= 1);
    assert_eq!(stats.unauthenticated, 0);
    assert_eq!(stats.replayed, 0);
    sim.unregister(r, "secure");
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.nodes[l].view.unregistered.get("secure"), Some(&1));
    assert_eq!(sim.nodes[l].client.stats().unauthenticated, 0);
}

#[test]
fn a_key_rotation_in_progress_keeps_working() {
    // The directory already signs with key 2; the clients still sign with key 1; both
    // accept both.
    let directory = Keys::new(key(2)).also_accepting(key(1)).unwrap();
    let clients = Keys::new(key(1)).also_accepting(key(2)).unwrap();
    let mut sim = keyed_sim(2, directory, clients);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("rotating", 1000));
    sim.run(Duration::from_secs(1));
    assert!(sim.nodes[l].view.services.contains_key("rotating"));
    assert_eq!(sim.directory().stats().unauthenticated, 0);
}

#[test]
fn frames_without_the_key_are_dropped_and_counted() {
    let mut sim = keyed_sim(3, Keys::new(key(1)), Keys::new(key(9)));
    let intruder = sim.add_client(None, 1);
    sim.register(intruder, service("fake", 6666));
    sim.run(Duration::from_secs(2));
    assert!(sim.live().is_empty());
    assert!(sim.directory().stats().unauthenticated >= 1);
    // No answer at all: the intruder learns nothing and times out.
    assert!(!sim.nodes[intruder].events.iter().any(|e| matches!(
        e,
        ClientEvent::Registered { .. } | ClientEvent::Rejected { .. }
    )));
}

#[test]
fn forged_altered_and_unauthenticated_announcements_are_ignored() {
    let keys = Keys::new(key(1));
    let mut sim = keyed_sim(4, keys.clone(), keys);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("real", 1000));
    sim.run(Duration::from_secs(1));
    let listener = sim.nodes[l].addr;
    let dir = directory_location().socket_addr();

    // An announcement that "real" is gone, forged three ways.
    let mut buf = [0u8; 1400];
    let header = wire::AnnounceHeader {
        directory: directory_location(),
        as_of: Version(u64::MAX / 2),
        previous: Version(0),
    };
    let mut w = wire::BatchWriter::announce(&Environment::default(), &header, &mut buf).unwrap();
    assert!(w.push(&Change::Unregistered {
        name: ServiceName::new("real").unwrap(),
        version: Version(u64::MAX / 2),
    }));
    let n = w.len();
    let plain = buf[..n].to_vec();
    let wrong_key = {
        let mut b = buf;
        let len = auth::seal(&Keys::new(key(9)), u64::MAX / 2, &mut b, n).unwrap();
        b[..len].to_vec()
    };
    let flipped = {
        let mut b = buf;
        let len = auth::seal(&Keys::new(key(1)), u64::MAX / 2, &mut b, n).unwrap();
        b[12] ^= 0x01;
        b[..len].to_vec()
    };
    for forged in [plain, wrong_key, flipped] {
        sim.inject(dir, listener, &forged);
    }
    sim.run(Duration::from_millis(100));
    assert!(sim.nodes[l].view.services.contains_key("real"));
    assert_eq!(sim.nodes[l].client.stats().unauthenticated, 3);
    assert!(sim.nodes[l].view.unregistered.is_empty());
}

#[test]
fn replayed_requests_are_refused_also_after_a_directory_restart() {
    let keys = Keys::new(key(1));
    let mut sim = keyed_sim(5, keys.clone(), keys);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.capture = true;
    sim.register(r, service("target", 1000));
    sim.run(Duration::from_secs(1));
    sim.unregister(r, "target");
    // Long enough that the replay below trails the registrant's newest counter by more
    // than the replay window's span (2 s), whatever its clock resynchronisation did.
    sim.run(Duration::from_secs(3));
    sim.capture = false;
    let dir = directory_location().socket_addr();
    let unregister = sim
        .captured
        .iter()
        .rev()
        .find(|(_, to, bytes)| {
            *to == dir
                && auth::open(&Keys::new(key(1)), bytes)
                    .ok()
                    .and_then(|(inner, _)| wire::decode_authenticated(inner).ok())
                    .is_some_and(|f| matches!(f.message, Message::Unregister(_)))
        })
        .cloned()
        .expect("an unregister was captured");

    // The service comes back; the captured unregister is replayed at once.
    sim.register(r, service("target", 1000));
    sim.run(Duration::from_secs(1));
    assert!(sim.live().contains_key("target"));
    let (from, to, bytes) = unregister.clone();
    sim.inject(from, to, &bytes);
    sim.run(Duration::from_millis(200));
    assert!(
        sim.live().contains_key("target"),
        "a replay removed the service"
    );
    // Its sequence (its counter) is below the one the record holds: refused as out of
    // order (answered `stale` with that floor, which tells a registrant that really is
    // behind where to resume).
    assert_eq!(sim.directory().stats().out_of_order, 1);
    // From another address and port, it is the same registrant's counter: refused too.
    let elsewhere = std::net::SocketAddr::new(ip(99), 4321);
    sim.inject(elsewhere, to, &bytes);
    sim.run(Duration::from_millis(200));
    assert!(
        sim.live().contains_key("target"),
        "a replay from elsewhere removed it"
    );
    assert_eq!(sim.directory().stats().out_of_order, 2);
    assert_eq!(sim.directory().stats().unregisters, 1);

    // After a restart the replay table is empty, but the directory refuses anything
    // older than its start.
    let clock_now = sim.directory().as_of().0 + 10_000_000;
    let mut config = sim.config.clone();
    config.version_floor = Version(clock_now);
    sim.directories[0].directory =
        Directory::new(config, Vec::leak(vec![None; 16]), Vec::leak(vec![0u32; 16])).unwrap();
    sim.inject(from, to, &bytes);
    sim.run(Duration::from_millis(200));
    let stats = *sim.directory().stats();
    assert_eq!(stats.stale, 1);
    assert_eq!(stats.unregisters, 0);
    // The legitimate registrant moves on: it re-registers with the restarted directory.
    sim.run(Duration::from_secs(3));
    assert!(sim.live().contains_key("target"));
    assert!(kinds(&sim, l).len() >= 2);
}

#[test]
fn a_second_registrant_cannot_take_over_a_live_name() {
    let keys = Keys::new(key(1));
    let mut sim = keyed_sim(6, keys.clone(), keys);
    let owner = sim.add_client(None, 1);
    let thief = sim.add_client(None, 1);
    sim.register(owner, service("owned", 1));
    sim.run(Duration::from_millis(500));
    sim.register(thief, service("owned", 2));
    sim.run(Duration::from_millis(500));
    assert_eq!(sim.live()["owned"].registration.locations[0].port(), 1);
    assert_eq!(sim.directory().stats().rejected(RejectReason::NameHeld), 1);
}

/// Unregisters "target" (registered by `r`), lets listeners join once the removal's
/// repeats are over (one hears the group, one subscribes; neither hears of "target"),
/// and sends each the frame `replayed`, a genuine one of the directory's from before
/// the removal: it must bring nothing back, being older than what their snapshot or
/// delivery holds. `what` names the frame in the failure.
fn joiners_take_nothing_from(sim: &mut Sim, r: usize, replayed: &[u8], what: &str) {
    let dir = directory_location().socket_addr();
    sim.unregister(r, "target");
    sim.run(Duration::from_millis(1100));
    let mut joined = vec![sim.add_client(Some(Interest::all()), 16)];
    if cfg!(feature = "subscribe") {
        joined.push(sim.add_subscriber(Interest::all(), 16));
    }
    sim.run(Duration::from_millis(300));
    for &node in &joined {
        assert!(sim.nodes[node].client.service("target").is_none());
        let to = sim.nodes[node].addr;
        sim.inject(dir, to, replayed);
    }
    sim.run(Duration::from_millis(100));
    for node in joined {
        assert!(
            sim.nodes[node].client.service("target").is_none(),
            "node {node} took a replayed {what} older than its snapshot"
        );
    }
}

/// The message of an authenticated frame sealed with `keys`, if it opens and decodes.
fn opened<'a>(keys: &Keys, bytes: &'a [u8]) -> Option<Message<'a>> {
    let (inner, _) = auth::open(keys, bytes).ok()?;
    wire::decode_authenticated(inner).ok().map(|f| f.message)
}

/// A genuine announcement replayed within the replay window's span (2 s, for frames
/// reordered on the way) to listeners that joined after the change it tells was undone
/// brings nothing back: it is older than what their snapshot or delivery holds.
/// (A unicast subscriber took it and listed the removed service for good, since no
/// later delivery named it: history seed 1753230.)
#[test]
fn a_replayed_announcement_older_than_what_a_listener_holds_brings_nothing_back() {
    let keys = Keys::new(key(1));
    let mut sim = keyed_sim(7, keys.clone(), keys.clone());
    let r = sim.add_client(None, 1);
    // A listener from the start, to whom the announcement is sent (and captured).
    let witness = sim.add_client(Some(Interest::all()), 16);
    sim.capture = true;
    sim.register(r, service("target", 1000));
    sim.run(Duration::from_millis(300));
    sim.capture = false;
    let dir = directory_location().socket_addr();
    let (_, _, announcement) = sim
        .captured
        .iter()
        .find(|(from, to, bytes)| {
            *from == dir
                && *to == sim.nodes[witness].addr
                && matches!(opened(&keys, bytes), Some(Message::Announce(..)))
        })
        .cloned()
        .expect("the registration's announcement was captured");
    joiners_take_nothing_from(&mut sim, r, &announcement, "announcement");
}

/// The same for a page of the directory's sweep. (A subscriber took one, replayed to
/// it, and held the removed service for good: history seed 2928985.)
#[test]
fn a_replayed_sweep_page_older_than_what_a_listener_holds_brings_nothing_back() {
    let keys = Keys::new(key(1));
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(keys.clone());
    config.version_floor = Version(1_000_000_000);
    config.sweep_period = Duration::from_secs(1);
    let mut sim = Sim::with_config(8, Faults::none(), 16, config);
    sim.client_keys = Some(keys.clone());
    let r = sim.add_client(None, 1);
    // A listener from the start, to whom the sweep is sent (and captured).
    sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("target", 1000));
    sim.run(Duration::from_millis(300));
    // A page of the sweep that lists "target", captured on its way to the group.
    sim.capture = true;
    sim.run(Duration::from_millis(1500));
    sim.capture = false;
    let dir = directory_location().socket_addr();
    let lists_target = |bytes: &[u8]| match opened(&keys, bytes) {
        Some(Message::SyncPage(_, items)) => {
            items.into_iter().any(|s| s.name().as_str() == "target")
        }
        _ => false,
    };
    let (_, _, page) = sim
        .captured
        .iter()
        .find(|(from, _, bytes)| *from == dir && lists_target(bytes))
        .cloned()
        .expect("a sweep page listing the registration was captured");
    joiners_take_nothing_from(&mut sim, r, &page, "sweep page");
}
