//! The directory and several clients on a deterministic simulated network, driven
//! through the core alone, at 0 %, 10 % and 30 % loss with duplication and reordering.

mod support;

use herald_core::*;
use support::*;

const SEEDS: [u64; 4] = [1, 7, 42, 1234];
const LOSSES: [f64; 3] = [0.0, 0.10, 0.30];

fn faults(loss: f64) -> Faults {
    if loss == 0.0 {
        Faults::none()
    } else {
        Faults::lossy(loss)
    }
}

/// Listener `i` holds exactly the directory's live services that match `interest`.
fn assert_converged(sim: &Sim, i: usize, interest: &Interest) {
    let expected: Vec<(String, Service)> = sim
        .live()
        .into_iter()
        .filter(|(name, _)| interest.matches(name))
        .collect();
    let told: Vec<(String, Service)> = sim.nodes[i]
        .view
        .services
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let expected_names: Vec<&String> = expected.iter().map(|(n, _)| n).collect();
    let told_names: Vec<&String> = told.iter().map(|(n, _)| n).collect();
    assert_eq!(told_names, expected_names, "listener {i} view differs");
    for ((_, a), (_, b)) in told.iter().zip(&expected) {
        assert!(
            a.registration.same_content(&b.registration),
            "listener {i}: stale content"
        );
    }
}

/// Registers `count` services spread over registrants 0..registrants.
fn register_many(sim: &mut Sim, registrants: usize, count: usize, prefix: &str) {
    for k in 0..count {
        let node = k % registrants;
        sim.register(node, service(&format!("{prefix}{k:03}"), 9000 + k as u16));
    }
}

#[test]
fn every_registration_and_removal_is_seen_exactly_once() {
    for seed in SEEDS {
        for loss in LOSSES {
            let mut sim = Sim::new(seed, faults(loss), 64);
            // Long enough that renewals survive 30 % loss: several retries fit in it.
            sim.client_lease = Duration::from_secs(20);
            let registrants: Vec<usize> = (0..5).map(|_| sim.add_client(None, 1)).collect();
            let all = Interest::all();
            let db_only = Interest::parse_all(["db*"]).unwrap();
            let l_all = sim.add_client(Some(all.clone()), 64);
            let l_all2 = sim.add_client(Some(all.clone()), 64);
            let l_db = sim.add_client(Some(db_only.clone()), 64);
            sim.run(Duration::from_millis(100));

            register_many(&mut sim, registrants.len(), 20, "web");
            register_many(&mut sim, registrants.len(), 10, "db");
            // At 30 % loss a request and its answer both get through about half the
            // time; retries back off up to 2 s.
            sim.run(Duration::from_secs(15));
            let ctx = format!("seed {seed} loss {loss}");
            assert_eq!(sim.live().len(), 30, "{ctx}: registry");
            for l in [l_all, l_all2] {
                assert_converged(&sim, l, &all);
            }
            assert_converged(&sim, l_db, &db_only);

            // Unregister a third explicitly; crash one registrant (its leases expire).
            for k in (0..30).step_by(3) {
                let name = if k < 20 {
                    format!("web{k:03}")
                } else {
                    format!("db{:03}", k - 20)
                };
                let owner = if k < 20 { k % 5 } else { (k - 20) % 5 };
                sim.unregister(owner, &name);
            }
            sim.nodes[registrants[4]].crashed = true;
            sim.run(Duration::from_secs(30));
            for l in [l_all, l_all2] {
                assert_converged(&sim, l, &all);
            }
            assert_converged(&sim, l_db, &db_only);
            assert_clean(&sim);

            // Every removal reached every interested listener exactly once.
            for l in [l_all, l_all2, l_db] {
                let view = &sim.nodes[l].view;
                for (name, count) in &view.unregistered {
                    assert_eq!(
                        *count, 1,
                        "{ctx}: listener {l} saw {name} unregistered {count} times"
                    );
                }
                for (name, count) in &view.discovered {
                    assert_eq!(
                        *count, 1,
                        "{ctx}: listener {l} discovered {name} {count} times"
                    );
                }
            }
            let gone = 30 - sim.live().len();
            assert!(gone >= 10, "{ctx}: only {gone} removed");
            assert_eq!(sim.nodes[l_all].view.unregistered.len(), gone, "{ctx}");
        }
    }
}

#[test]
fn unregister_notifications_are_sent_exactly_n_times() {
    for n in [1u8, 3, 20] {
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.notifications = n;
        let mut sim = Sim::with_config(5, Faults::none(), 16, config);
        let r = sim.add_client(None, 1);
        sim.add_client(Some(Interest::all()), 16);
        sim.register(r, service("alpha", 1000));
        sim.register(r, service("beta", 1001));
        sim.run(Duration::from_millis(200));
        sim.unregister(r, "alpha");
        sim.unregister(r, "beta");
        sim.run(Duration::from_secs(3));
        assert_eq!(sim.notifications.len(), 2);
        for ((name, _), count) in &sim.notifications {
            assert_eq!(
                *count,
                usize::from(n),
                "{name} announced {count} times, want {n}"
            );
        }
        // Registrations are announced once by default.
        assert_eq!(sim.announcements.len(), 2);
        for ((name, _), count) in &sim.announcements {
            assert_eq!(*count, 1, "{name} registered-announced {count} times");
        }
        // Done: the departed entries are kept as tombstones for the retention time,
        // then reaped (and nothing more is announced).
        assert_eq!(sim.directory().len(), 2);
        assert_eq!(sim.directory().live(), 0);
        sim.run(sim.config.tombstone_retention);
        assert_eq!(sim.directory().len(), 0);
        for count in sim.notifications.values() {
            assert_eq!(*count, usize::from(n));
        }
        let stats = sim.directory().stats();
        assert_eq!(stats.unregistered_announced, 2 * u64::from(n));
    }
}

#[test]
fn expiry_is_announced_like_an_unregister() {
    let mut sim = Sim::new(9, Faults::none(), 16);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("ephemeral", 1000));
    sim.run(Duration::from_millis(500));
    assert!(sim.nodes[l].view.services.contains_key("ephemeral"));
    sim.nodes[r].crashed = true;
    let crashed_at = sim.now;
    // Lease is 3 s; it must be gone within lease + one interval (+ delivery).
    sim.run(Duration::from_millis(3_100));
    assert!(
        !sim.nodes[l].view.services.contains_key("ephemeral"),
        "still present {} after the crash",
        sim.now - crashed_at
    );
    assert_eq!(sim.nodes[l].view.unregistered.get("ephemeral"), Some(&1));
    assert_eq!(sim.directory().stats().expiries, 1);
    assert_clean(&sim);
}

#[test]
fn re_announcements_and_renewals_cause_no_events() {
    let mut sim = Sim::new(3, Faults::lossy(0.0), 16);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("steady", 1000));
    sim.run(Duration::from_secs(1));
    let before = sim.nodes[l].events.len();
    // 20 s: several renewals and sweeps, dozens of beacons.
    sim.run(Duration::from_secs(20));
    let after: Vec<&ClientEvent> = sim.nodes[l].events[before..]
        .iter()
        .filter(|e| {
            matches!(
                e,
                ClientEvent::Discovered(_) | ClientEvent::Changed(_) | ClientEvent::Unregistered(_)
            )
        })
        .collect();
    assert!(after.is_empty(), "events for re-announcements: {after:?}");
    assert!(sim.directory().stats().renewals >= 5);
    assert_eq!(sim.nodes[l].view.discovered.get("steady"), Some(&1));
}

#[test]
fn changed_locations_are_reported_once() {
    let mut sim = Sim::new(11, Faults::lossy(0.1), 16);
    let r = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 16);
    sim.register(r, service("mover", 1000));
    sim.run(Duration::from_secs(2));
    sim.register(r, service("mover", 2000));
    sim.run(Duration::from_secs(4));
    let view = &sim.nodes[l].view;
    assert_eq!(view.changed.get("mover"), Some(&1));
    assert_eq!(
        view.services["mover"].registration.locations[0].port(),
        2000
    );
    assert_clean(&sim);
}

#[test]
fn a_partitioned_listener_converges_after_healing() {
    for seed in SEEDS {
        let mut sim = Sim::new(seed, Faults::lossy(0.1), 64);
        let registrants: Vec<usize> = (0..3).map(|_| sim.add_client(None, 1)).collect();
        let l = sim.add_client(Some(Interest::all()), 64);
        register_many(&mut sim, registrants.len(), 12, "svc");
        // A lost first announcement is repaired by the sweep (2 s here).
        sim.run(Duration::from_secs(6));
        assert_converged(&sim, l, &Interest::all());

        sim.nodes[l].partitioned = true;
        // While cut off: some go, some come, one changes.
        for k in 0..6 {
            sim.unregister(k % 3, &format!("svc{k:03}"));
        }
        for k in 12..16 {
            sim.register(k % 3, service(&format!("svc{k:03}"), 9000 + k as u16));
        }
        sim.register(6 % 3, service("svc006", 7777));
        sim.run(Duration::from_secs(4));
        // It missed every one of the unregister notifications.
        assert!(sim.nodes[l].view.services.contains_key("svc000"));

        sim.nodes[l].partitioned = false;
        sim.run(Duration::from_secs(5));
        assert_converged(&sim, l, &Interest::all());
        assert_clean(&sim);
        let view = &sim.nodes[l].view;
        assert_eq!(view.unregistered.len(), 6, "seed {seed}");
        assert_eq!(view.changed.get("svc006"), Some(&1), "seed {seed}");
    }
}

#[test]
fn a_late_joiner_learns_the_registry_in_one_snapshot() {
    let mut sim = Sim::new(21, Faults::none(), 512);
    let registrants: Vec<usize> = (0..8).map(|_| sim.add_client(None, 1)).collect();
    register_many(&mut sim, registrants.len(), 64, "late");
    sim.run(Duration::from_secs(1));
    let l = sim.add_client(Some(Interest::all()), 512);
    // Well under a beacon interval and before any sweep could deliver it all.
    sim.run(Duration::from_millis(50));
    assert_converged(&sim, l, &Interest::all());
    assert!(sim.nodes[l]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::SnapshotComplete { services: 64 })));
}

#[test]
fn a_full_registry_rejects_with_a_reason() {
    let mut sim = Sim::new(4, Faults::none(), 2);
    let r = sim.add_client(None, 1);
    for (name, port) in [("one", 1), ("two", 2), ("three", 3)] {
        sim.register(r, service(name, port));
        sim.run(Duration::from_millis(50));
    }
    sim.run(Duration::from_millis(500));
    let rejected: Vec<&ClientEvent> = sim.nodes[r]
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Rejected { .. }))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        matches!(
            rejected[0],
            ClientEvent::Rejected { reason: RejectReason::RegistryFull, name: Some(n), .. } if n.as_str() == "three"
        ),
        "{rejected:?}"
    );
    assert_eq!(
        sim.directory().stats().rejected(RejectReason::RegistryFull),
        1
    );
}

#[test]
fn a_name_held_by_another_registrant_is_refused() {
    let mut sim = Sim::new(8, Faults::none(), 8);
    let a = sim.add_client(None, 1);
    let b = sim.add_client(None, 1);
    sim.register(a, service("shared", 1));
    sim.run(Duration::from_millis(200));
    sim.register(b, service("shared", 2));
    sim.run(Duration::from_millis(200));
    assert!(sim.nodes[b].events.iter().any(|e| matches!(
        e,
        ClientEvent::Rejected {
            reason: RejectReason::NameHeld,
            ..
        }
    )));
    assert_eq!(sim.live()["shared"].registration.locations[0].port(), 1);
    // Once the holder lets go, the name is free.
    sim.unregister(a, "shared");
    sim.run(Duration::from_millis(200));
    sim.register(b, service("shared", 2));
    sim.run(Duration::from_millis(200));
    assert_eq!(sim.live()["shared"].registration.locations[0].port(), 2);
}

#[test]
fn versions_follow_the_version_clock_and_always_grow() {
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.version_floor = Version(1_700_000_000_000_000);
    let mut sim = Sim::with_config(2, Faults::none(), 8, config);
    let r = sim.add_client(None, 1);
    sim.register(r, service("a", 1));
    sim.run(Duration::from_millis(10));
    let first = sim.live()["a"].version;
    assert!(first.0 >= 1_700_000_000_000_000);
    sim.run(Duration::from_secs(2));
    sim.register(r, service("a", 2));
    sim.run(Duration::from_millis(10));
    let second = sim.live()["a"].version;
    // Two seconds of version clock later, not just one more.
    assert!(second.0 - first.0 >= 2_000_000, "{first} then {second}");
}

#[test]
fn registrations_and_listeners_fail_over_without_spurious_events() {
    for seed in SEEDS {
        let mut sim = Sim::new(seed, Faults::lossy(0.05), 32);
        sim.client_lease = Duration::from_secs(6);
        let b = sim.add_directory(32);
        let registrants: Vec<usize> = (0..2).map(|_| sim.add_client(None, 1)).collect();
        let l = sim.add_client(Some(Interest::all()), 32);
        register_many(&mut sim, registrants.len(), 6, "fo");
        sim.run(Duration::from_secs(4));
        assert_converged(&sim, l, &Interest::all());
        assert!(
            sim.live_at(b).is_empty(),
            "seed {seed}: the second directory is idle"
        );

        sim.directories[0].down = true;
        let stopped = sim.now;
        while sim.live_at(b).len() < 6 && sim.now - stopped < Duration::from_secs(20) {
            sim.run(Duration::from_millis(100));
        }
        // Everything moved to the second directory, within a lease of the stop.
        let moved = sim.now - stopped;
        assert_eq!(sim.live_at(b).len(), 6, "seed {seed}");
        assert!(moved <= sim.client_lease, "seed {seed}: took {moved}");
        sim.run(Duration::from_secs(15));
        assert_eq!(
            sim.nodes[l].client.current_directory(),
            Some(nth_directory(b))
        );
        for r in &registrants {
            assert_eq!(
                sim.nodes[*r].client.current_directory(),
                Some(nth_directory(b))
            );
        }
        // The listener kept its view: no unregistered, no second discovery.
        let view = &sim.nodes[l].view;
        assert!(
            view.unregistered.is_empty(),
            "seed {seed}: {:?}",
            view.unregistered
        );
        assert_eq!(view.services.len(), 6, "seed {seed}");
        assert!(view.discovered.values().all(|n| *n == 1), "seed {seed}");
        assert_clean(&sim);

        // And it still follows changes, now from the second directory.
        sim.unregister(registrants[0], "fo000");
        sim.run(Duration::from_secs(2));
        assert_eq!(
            sim.nodes[l].view.unregistered.get("fo000"),
            Some(&1),
            "seed {seed}"
        );
    }
}

#[test]
fn a_restarted_registrant_releases_what_its_predecessor_registered() {
    let mut sim = Sim::new(12, Faults::none(), 8);
    sim.next_registrant = Some(0xfeed);
    let first = sim.add_client(None, 1);
    let l = sim.add_client(Some(Interest::all()), 8);
    sim.register(first, service("orphan", 1));
    sim.run(Duration::from_millis(300));
    sim.nodes[first].crashed = true;
    // A new process with the same registrant id, which never registered the name.
    sim.next_registrant = Some(0xfeed);
    let second = sim.add_client(None, 1);
    let name = ServiceName::new("orphan").unwrap();
    let now = sim.now;
    assert_eq!(
        sim.nodes[second].client.unregister(now, &name),
        Err(ClientError::NotRegistered)
    );
    sim.nodes[second].client.release(now, &name).unwrap();
    sim.run(Duration::from_millis(300));
    assert!(sim.live().is_empty());
    assert!(sim.nodes[second].events.iter().any(|e| matches!(
        e,
        ClientEvent::Released {
            confirmed: true,
            ..
        }
    )));
    assert_eq!(sim.nodes[l].view.unregistered.get("orphan"), Some(&1));
}

#[test]
fn lost_registrations_are_recovered_long_before_the_sweep() {
    for seed in SEEDS {
        // No repeats and a sweep too slow to matter: only the beacon's count can tell the
        // listener what it missed.
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.registration_announcements = 1;
        config.sweep_period = Duration::from_secs(600);
        config.version_floor = Version(1_000);
        let mut sim = Sim::with_config(seed, Faults::lossy(0.2), 64, config);
        sim.client_lease = Duration::from_secs(60);
        let registrants: Vec<usize> = (0..4).map(|_| sim.add_client(None, 1)).collect();
        let l = sim.add_client(Some(Interest::all()), 64);
        sim.run(Duration::from_secs(1));
        register_many(&mut sim, registrants.len(), 24, "quick");
        sim.run(Duration::from_secs(8));
        assert_eq!(sim.live().len(), 24, "seed {seed}");
        assert_converged(&sim, l, &Interest::all());
        assert_clean(&sim);
    }
}
