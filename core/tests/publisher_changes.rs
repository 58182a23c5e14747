//! A change of publisher between directories that share a replicated store whose copies
//! arrive late: the new publisher catches up before it publishes (it never announces a
//! state older than what its predecessor announced), and does so as soon as its shell
//! says it holds every earlier write; a directory that missed a registration while it
//! was away does not take its removal for an earlier one.

mod support;

use herald_core::wire::{decode, Change, Message};
use herald_core::*;
use support::*;

const SEEDS: [u64; 4] = [1, 7, 42, 1234];

/// Adds a registrant configured with directory `first` first.
fn registrant_via(sim: &mut Sim, first: usize) -> usize {
    sim.next_first_directory = first;
    sim.add_client(None, 4)
}

/// What the directories sent to the group about `name`, in order: (directory, true for
/// a live announcement, version).
fn announced(sim: &Sim, name: &str) -> Vec<(usize, bool, u64)> {
    let mut out = Vec::new();
    for (from, to, bytes) in &sim.captured {
        let Some(d) = sim
            .directories
            .iter()
            .position(|d| d.location.socket_addr() == *from)
        else {
            continue;
        };
        if *to != sim.nodes[0].addr {
            continue;
        }
        if let Ok(frame) = decode(bytes) {
            if let Message::Announce(_, items) = frame.message {
                for change in items.filter(|c| c.name().as_str() == name) {
                    let live = matches!(change, Change::Registered(_));
                    out.push((d, live, change.version().0));
                }
            }
        }
    }
    out
}

/// Unregistered notifications sent for `name`, per removal version, in version order.
fn notifications(sim: &Sim, name: &str) -> Vec<(u64, usize)> {
    let mut counts: Vec<(u64, usize)> = sim
        .notifications
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, v), c)| (*v, *c))
        .collect();
    counts.sort();
    counts
}

/// Failed before the new publisher caught up: directory 1 became the publisher while
/// the registration and removal its predecessor had announced were still on their way
/// to it, applied the registration when it arrived and announced it live again, after
/// the removal (the history checker's "directory resurrection", seeds 484 and 919).
#[test]
fn a_new_publisher_behind_the_store_never_announces_an_older_state() {
    for seed in SEEDS {
        let delay = Duration::from_millis(1_500);
        let mut sim = Sim::replicated(seed, Faults::none(), 16, 2, delay);
        sim.capture = true;
        sim.add_client(Some(Interest::all()), 16);
        let r = registrant_via(&mut sim, 0);
        sim.run(Duration::from_millis(500));
        sim.register(r, service("svc", 9000));
        sim.run(Duration::from_millis(200));
        sim.unregister(r, "svc");
        sim.run(Duration::from_millis(300));
        sim.elect(Some(1));
        assert!(sim.directories[1].directory.is_catching_up(), "seed {seed}");
        sim.run(Duration::from_secs(4));
        assert!(
            !sim.directories[1].directory.is_catching_up(),
            "seed {seed}"
        );

        let sent = announced(&sim, "svc");
        let removed = sent.iter().position(|(_, live, _)| !live);
        let removed = removed.expect("the removal was announced");
        let removal = sent[removed].2;
        let older: Vec<_> = sent[removed..]
            .iter()
            .filter(|(_, live, v)| *live && *v < removal)
            .collect();
        assert!(
            older.is_empty(),
            "seed {seed}: announced live after its removal v{removal}: {older:?}"
        );
        let counts = notifications(&sim, "svc");
        assert_eq!(
            counts,
            vec![(removal, 20)],
            "seed {seed}: the new publisher finished the count where the old one stopped"
        );
        assert!(
            sent.iter().any(|(d, live, _)| *d == 1 && !live),
            "seed {seed}: the new publisher sent some of them"
        );
        assert_clean(&sim);
    }
}

/// A new publisher whose shell says at once that it holds every earlier write (the
/// store's copies are 3 ms late here, and nothing was on its way) publishes at once:
/// the catch-up costs no takeover time when the shell signals it.
#[test]
fn a_new_publisher_that_has_caught_up_announces_at_once() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::none(), 16, 2, Duration::from_millis(3));
        let r = registrant_via(&mut sim, 1);
        sim.run(Duration::from_secs(2));
        sim.elect(Some(1));
        sim.run(Duration::from_millis(10));
        assert!(
            !sim.directories[1].directory.is_catching_up(),
            "seed {seed}"
        );
        sim.register(r, service("svc", 9000));
        sim.run(Duration::from_millis(200));
        assert_eq!(
            notifications(&sim, "svc"),
            vec![],
            "seed {seed}: nothing removed"
        );
        let announced: usize = sim.announcements.values().sum();
        assert!(announced > 0, "seed {seed}: announced within 200 ms");
    }
}

/// Without the shell's word, a new publisher waits out the replication bound, then
/// publishes what it holds.
#[test]
fn a_new_publisher_without_word_from_its_shell_publishes_after_the_replication_bound() {
    let ip = core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST);
    let address = Location::new(ip, 37399).unwrap();
    let config = DirectoryConfig::new(address, group());
    let bound = config.replication_bound;
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut directory = Directory::new(config, slots, index).unwrap();
    let start = Instant::from_millis(1);
    directory.set_publishing(start, false);
    let expires = start + Duration::from_secs(60);
    let record = Record {
        service: Service {
            registration: service("svc", 9000),
            version: Version(10),
        },
        registrant: 1,
        sequence: 1,
        state: RecordState::Live { expires },
        ended: Version(0),
        counted_from: Version(0),
    };
    directory.set_publishing(start, true);
    directory.apply(start, record).unwrap();
    let mut buf = [0u8; 1400];
    let kinds = |directory: &mut Directory<'_>, now: Instant, buf: &mut [u8; 1400]| {
        directory.handle_timeout(now);
        let mut kinds = Vec::new();
        while let Some(t) = directory.poll_transmit(now, buf) {
            let frame = decode(&buf[..t.len]).unwrap();
            kinds.push(match frame.message {
                Message::Beacon(b) => {
                    assert!(b.publishing, "it beacons as the publisher");
                    "beacon"
                }
                Message::Announce(..) => "announce",
                Message::SyncPage(..) => "sweep",
                _ => "other",
            });
        }
        kinds
    };
    assert_eq!(kinds(&mut directory, start, &mut buf), vec!["beacon"]);
    let almost = start + Duration::from_micros(bound.as_micros() - 1_000);
    let mut now = start;
    for _ in 0..1_000 {
        if now >= almost {
            break;
        }
        now = directory.poll_timeout().unwrap().min(almost);
        let sent = kinds(&mut directory, now, &mut buf);
        assert!(sent.iter().all(|k| *k == "beacon"), "{now}: {sent:?}");
    }
    assert!(now >= almost, "{now}");
    assert_eq!(directory.poll_timeout(), Some(start + bound));
    let sent = kinds(&mut directory, start + bound, &mut buf);
    assert!(sent.contains(&"announce"), "{sent:?}");
    assert!(sent.contains(&"sweep"), "{sent:?}");
    assert!(!directory.is_catching_up());
}

/// Failed before: a replica held a finished removal of a name when it stopped; while it
/// was away the name was registered again (at other locations) and removed; when it
/// came back and read the store it took the new removal for its old one, wrote its
/// count of notifications (none left) back, and the publisher stopped notifying after
/// a few (the history checker's "notification count", seeds 3602 and 7425).
#[test]
fn a_directory_that_missed_a_registration_does_not_join_its_removal_to_an_older_one() {
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::none(), 16, 2, Duration::from_millis(3));
        let r = registrant_via(&mut sim, 0);
        sim.register(r, service("svc", 9000));
        sim.run(Duration::from_secs(1));
        sim.unregister(r, "svc");
        sim.run(Duration::from_secs(2));
        assert_eq!(notifications(&sim, "svc").len(), 1, "seed {seed}");
        assert_eq!(notifications(&sim, "svc")[0].1, 20, "seed {seed}");

        sim.directories[1].down = true;
        sim.register(r, service("svc", 9001));
        sim.run(Duration::from_millis(500));
        sim.unregister(r, "svc");
        sim.run(Duration::from_millis(200));
        sim.directories[1].down = false;
        sim.reload(1);
        sim.run(Duration::from_secs(3));
        let counts = notifications(&sim, "svc");
        assert_eq!(counts.len(), 2, "seed {seed}: {counts:?}");
        assert_eq!(
            counts[1].1, 20,
            "seed {seed}: the second removal is notified 20 times: {counts:?}"
        );
    }
}
