//! Directories that share one replicated store (as `herald serve` shares etcd), on the
//! simulated network: one publishes, the others are replicas. Registrations made
//! through any of them reach listeners once; removals are counted exactly N times by
//! the publisher alone; a new publisher takes over where the old one stopped; and an
//! unreachable store holds expiry instead of announcing live services unregistered.

mod support;

use herald_core::*;
use support::*;

const SEEDS: [u64; 4] = [1, 7, 42, 1234];
const REPLICATION: Duration = Duration::from_millis(3);

/// Every running directory holds the same live services.
fn assert_replicas_agree(sim: &Sim) {
    let first = sim.live_at(0);
    for d in 1..sim.directories.len() {
        assert_eq!(
            sim.live_at(d).keys().collect::<Vec<_>>(),
            first.keys().collect::<Vec<_>>(),
            "directory {d} differs from directory 0"
        );
    }
}

/// True when `record` is a finished removal kept as a tombstone.
fn is_tombstone(record: Option<&Record>) -> bool {
    record.is_some_and(|r| r.state == RecordState::Departed { remaining: 0 })
}

/// True when the shared store holds `name` as a finished removal (a tombstone).
fn store_has_tombstone(sim: &Sim, name: &str) -> bool {
    let stored = sim.shared.as_ref().unwrap().records.get(name);
    let record = stored.map(|bytes| Record::from_bytes(bytes, wall(sim.now)).unwrap());
    is_tombstone(record.as_ref())
}

/// Adds a registrant configured with directory `first` first.
fn registrant_via(sim: &mut Sim, first: usize) -> usize {
    sim.next_first_directory = first;
    sim.add_client(None, 4)
}

#[test]
fn a_registration_through_any_directory_is_announced_once_by_the_publisher() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::lossy(0.05), 64, 3, REPLICATION);
        let via: Vec<usize> = (0..3).map(|d| registrant_via(&mut sim, d)).collect();
        // The listener starts with a replica and must move to the publisher.
        sim.next_first_directory = 2;
        let l = sim.add_client(Some(Interest::all()), 64);
        for (k, r) in via.iter().enumerate() {
            for j in 0..3 {
                let name = format!("via{k}-{j}");
                sim.register(*r, service(&name, 9000 + (k * 3 + j) as u16));
            }
        }
        sim.run(Duration::from_secs(4));
        assert_replicas_agree(&sim);
        assert_eq!(sim.live_at(0).len(), 9, "seed {seed}");
        assert_eq!(
            sim.nodes[l].client.current_directory(),
            Some(nth_directory(0)),
            "seed {seed}: the listener follows the publisher"
        );
        let view = &sim.nodes[l].view;
        assert_eq!(view.services.len(), 9, "seed {seed}");
        assert!(view.discovered.values().all(|n| *n == 1), "seed {seed}");
        let announcers = &sim.shared.as_ref().unwrap().announcers;
        assert_eq!(
            announcers.iter().collect::<Vec<_>>(),
            vec![&0],
            "seed {seed}: only the publisher announces"
        );
        for d in 1..3 {
            assert_eq!(sim.directories[d].directory.stats().registered_announced, 0);
        }

        // A removal through a replica is counted by the publisher, exactly N times.
        sim.unregister(via[1], "via1-0");
        sim.run(Duration::from_secs(3));
        assert!(
            is_tombstone(sim.directories[1].directory.record("via1-0")),
            "seed {seed}: the replica keeps the finished removal as a tombstone"
        );
        let sent: Vec<usize> = sim
            .notifications
            .iter()
            .filter(|((name, _), _)| name == "via1-0")
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(sent, vec![20], "seed {seed}: exactly N notifications");
        assert_eq!(sim.nodes[l].view.unregistered.get("via1-0"), Some(&1));
        assert!(store_has_tombstone(&sim, "via1-0"), "seed {seed}");
        assert_replicas_agree(&sim);
        assert_clean(&sim);
    }
}

#[test]
fn a_new_publisher_finishes_the_counting_and_listeners_follow_it() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::lossy(0.05), 64, 3, REPLICATION);
        sim.client_lease = Duration::from_secs(6);
        let r = registrant_via(&mut sim, 1);
        let l = sim.add_client(Some(Interest::all()), 64);
        for j in 0..4 {
            sim.register(r, service(&format!("s{j}"), 9000 + j as u16));
        }
        sim.run(Duration::from_secs(3));
        assert_eq!(sim.nodes[l].view.services.len(), 4, "seed {seed}");

        // The publisher stops in the middle of counting a removal.
        sim.unregister(r, "s0");
        sim.run(Duration::from_millis(300));
        sim.directories[0].down = true;
        let sent_before: usize = sim.notifications.values().sum();
        assert!(
            sent_before > 0 && sent_before < 20,
            "seed {seed}: {sent_before}"
        );

        // A second later (an election), directory 2 publishes.
        sim.run(Duration::from_secs(1));
        sim.elect(Some(2));
        sim.run(Duration::from_secs(8));
        let sent: usize = sim.notifications.values().sum();
        assert!(
            sent >= 20,
            "seed {seed}: the new publisher sent what was still owed ({sent})"
        );
        assert!(
            store_has_tombstone(&sim, "s0"),
            "seed {seed}: the finished removal is a tombstone in the store"
        );
        assert_eq!(
            sim.nodes[l].client.current_directory(),
            Some(nth_directory(2)),
            "seed {seed}: the listener follows the new publisher"
        );

        // Changes keep flowing, through the new publisher.
        sim.register(r, service("after", 9100));
        sim.unregister(r, "s1");
        sim.run(Duration::from_secs(3));
        let view = &sim.nodes[l].view;
        assert!(view.services.contains_key("after"), "seed {seed}");
        assert_eq!(view.unregistered.get("s0"), Some(&1), "seed {seed}");
        assert_eq!(view.unregistered.get("s1"), Some(&1), "seed {seed}");
        assert_eq!(
            view.unregistered.len(),
            2,
            "seed {seed}: no spurious unregistered: {:?}",
            view.unregistered
        );
        assert!(view.discovered.values().all(|n| *n == 1), "seed {seed}");
        assert_clean(&sim);
    }
}

#[test]
fn an_unreachable_store_holds_expiry_and_the_directories_catch_up() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::none(), 64, 2, REPLICATION);
        sim.client_lease = Duration::from_secs(2);
        let r = registrant_via(&mut sim, 1);
        let l = sim.add_client(Some(Interest::all()), 64);
        sim.register(r, service("renewed-via-replica", 9000));
        sim.run(Duration::from_secs(2));
        assert_eq!(sim.nodes[l].view.services.len(), 1, "seed {seed}");

        // The registrant keeps renewing through the replica, whose writes now wait:
        // the publisher must not expire what it no longer sees renewed.
        sim.store_down();
        sim.run(Duration::from_secs(6));
        assert!(
            sim.nodes[l].view.unregistered.is_empty(),
            "seed {seed}: expired while the store was down"
        );
        // A registration during the outage is held by the replica that took it.
        sim.register(r, service("made-during-outage", 9001));
        sim.run(Duration::from_secs(1));
        assert!(sim.live_at(1).contains_key("made-during-outage"));
        assert!(!sim.live_at(0).contains_key("made-during-outage"));

        sim.store_up();
        sim.run(Duration::from_secs(3));
        assert_replicas_agree(&sim);
        let view = &sim.nodes[l].view;
        assert!(
            view.services.contains_key("made-during-outage"),
            "seed {seed}"
        );
        assert!(
            view.unregistered.is_empty(),
            "seed {seed}: {:?}",
            view.unregistered
        );

        // Expiry works again: a registrant that stops is expired by the publisher.
        sim.nodes[r].crashed = true;
        sim.run(Duration::from_secs(5));
        let view = &sim.nodes[l].view;
        assert_eq!(
            view.unregistered.len(),
            2,
            "seed {seed}: {:?}",
            view.unregistered
        );
        assert!(sim.live_at(0).is_empty() && sim.live_at(1).is_empty());
        assert_clean(&sim);
    }
}

#[test]
fn a_replica_announces_nothing_and_beacons_that_it_does_not_publish() {
    let mut sim = Sim::replicated(5, Faults::none(), 16, 2, REPLICATION);
    sim.capture = true;
    let r = registrant_via(&mut sim, 1);
    sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("quiet", 9000));
    sim.run(Duration::from_secs(3));
    let replica = nth_directory(1).socket_addr();
    let mut beacons = 0;
    for (from, _, bytes) in &sim.captured {
        if *from != replica {
            continue;
        }
        match wire::decode(bytes).unwrap().message {
            wire::Message::Beacon(b) => {
                assert!(!b.publishing);
                beacons += 1;
            }
            wire::Message::Announce(..) | wire::Message::SyncPage(..) => {
                panic!("a replica announced")
            }
            _ => {}
        }
    }
    assert!(beacons >= 2);
    assert!(sim.directories[0].directory.is_publishing());
    assert!(!sim.directories[1].directory.is_publishing());
}

#[test]
fn late_copies_of_a_finished_removal_do_not_bring_it_back() {
    for seed in SEEDS {
        // The store is slow: the publisher's own writes of its notification counts come
        // back after it has sent them all and dropped the entry.
        let mut sim = Sim::replicated(seed, Faults::none(), 16, 2, Duration::from_millis(1500));
        let r = registrant_via(&mut sim, 0);
        let l = sim.add_client(Some(Interest::all()), 16);
        sim.register(r, service("brief", 9000));
        // Not at a renewal: a renewal and an unregistration sent at the same instant may
        // be reordered (per-registrant request ordering is the directory's to fix).
        sim.run(Duration::from_millis(3_500));
        sim.unregister(r, "brief");
        sim.run(Duration::from_secs(6));
        let sent: Vec<usize> = sim.notifications.values().copied().collect();
        assert_eq!(sent, vec![20], "seed {seed}");
        assert!(is_tombstone(sim.directories[0].directory.record("brief")));
        assert_eq!(sim.nodes[l].view.unregistered.get("brief"), Some(&1));
        // After the retention time the tombstone is reaped, here and in the store,
        // and nothing comes back.
        sim.run(sim.config.tombstone_retention + Duration::from_secs(5));
        for d in 0..2 {
            assert!(
                sim.directories[d].directory.record("brief").is_none(),
                "seed {seed}"
            );
        }
        assert!(!sim.shared.as_ref().unwrap().records.contains_key("brief"));
        let sent: Vec<usize> = sim.notifications.values().copied().collect();
        assert_eq!(sent, vec![20], "seed {seed}");
        assert_eq!(sim.nodes[l].view.unregistered.get("brief"), Some(&1));
        assert_clean(&sim);
    }
}

#[test]
fn a_replica_that_missed_a_removal_drops_it_when_it_reloads() {
    let mut sim = Sim::replicated(3, Faults::none(), 16, 2, REPLICATION);
    let r = registrant_via(&mut sim, 0);
    sim.register(r, service("gone-while-away", 9000));
    sim.register(r, service("stays", 9001));
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.live_at(1).len(), 2);

    // The replica is cut off while the service is removed, its removal finished and
    // its tombstone reaped.
    sim.directories[1].down = true;
    sim.unregister(r, "gone-while-away");
    sim.run(sim.config.tombstone_retention + Duration::from_secs(3));
    assert!(!sim
        .shared
        .as_ref()
        .unwrap()
        .records
        .contains_key("gone-while-away"));
    sim.directories[1].down = false;
    assert!(sim.live_at(1).contains_key("gone-while-away"), "still held");

    sim.reload(1);
    assert_eq!(
        sim.live_at(1).keys().collect::<Vec<_>>(),
        vec!["stays"],
        "the reload dropped what the store no longer holds"
    );
}

#[test]
fn a_listener_moves_to_a_new_publisher_before_its_old_one_times_out() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::none(), 16, 3, REPLICATION);
        let l = sim.add_client(Some(Interest::all()), 16);
        sim.run(Duration::from_secs(3));
        assert_eq!(
            sim.nodes[l].client.current_directory(),
            Some(nth_directory(0))
        );
        // The publisher dies; another is elected at once.
        sim.directories[0].down = true;
        let died = sim.now;
        sim.elect(Some(1));
        while sim.nodes[l].client.current_directory() != Some(nth_directory(1))
            && sim.now - died < Duration::from_secs(10)
        {
            sim.run(Duration::from_millis(50));
        }
        let moved = sim.now - died;
        let timeout = CLIENT_DIRECTORY_TIMEOUT;
        assert!(
            moved < timeout,
            "seed {seed}: moved after {moved}, the directory timeout is {timeout}"
        );
        assert_clean(&sim);
    }
}
