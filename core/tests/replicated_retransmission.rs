//! One unregistration is announced exactly N times, even when its request reaches two
//! directories of a shared store: a client that fails over sends the same request (same
//! request id) to the next directory, and an earlier copy may still be on its way to
//! the first. Found by the history checker (seed 4 of `history`): the second directory,
//! which had not yet seen the removal through the store, removed the name again at a
//! new version; the publisher stopped counting the first removal at 15 and sent 20 more
//! for the second, 35 notifications for one removal. The same goes for an earlier
//! attempt of the unregistration (a lower sequence, another request id) that reaches
//! the second directory late, while a later attempt removed the name at the first.

mod support;

use herald_core::wire::{decode, encode, Change, Message, UnregisterRequest};
use herald_core::*;
use std::collections::HashMap;
use support::*;

#[test]
fn an_unregistration_reaching_two_directories_is_announced_n_times() {
    reach_two_directories(|request| request);
}

#[test]
fn an_earlier_attempt_reaching_another_directory_late_is_the_same_removal() {
    reach_two_directories(|request| UnregisterRequest {
        request: request.request.wrapping_sub(1),
        sequence: request.sequence - 1,
        ..request
    });
}

/// Unregisters through directory 0 and delivers `copy` of the request to directory 1,
/// 100 ms later (before the removal reaches it through the store, 500 ms).
fn reach_two_directories(copy: impl Fn(UnregisterRequest) -> UnregisterRequest) {
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
    let Ok(Message::Unregister(sent)) = decode(&request.2).map(|f| f.message) else {
        unreachable!()
    };
    let mut bytes = [0u8; 512];
    let len = encode(&sim.config.environment, &copy(sent), &mut bytes).unwrap();
    sim.run(Duration::from_millis(100));
    sim.inject(request.0, nth_directory(1).socket_addr(), &bytes[..len]);
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
    // Both directories (and so the store they write) hold one finished removal: a
    // later publisher or a restart does not announce it again.
    let held: Vec<Option<(Version, RecordState)>> = (0..2)
        .map(|d| {
            sim.directories[d]
                .directory
                .record("twice")
                .map(|r| (r.service.version, r.state))
        })
        .collect();
    assert!(
        held.iter().all(|h| *h == held[0]
            && h.is_some_and(|(_, s)| s == RecordState::Departed { remaining: 0 })),
        "{held:?}"
    );
    assert_clean(&sim);
}

/// Failed before (40 notifications): the copy reaches directory 1 after the publisher
/// finished counting, but before the removal reaches it through the store (1.5 s).
/// Directory 1 removed the name again at a newer version and wrote that removal, owing
/// all 20, over the publisher's finished one (its write conflicted; it read the older
/// removal back and ignored it); the publisher, restarted from the store, counted it
/// afresh. An older removal of the same registration now counts as a newer one does:
/// directory 1 writes the newer version with nothing owed.
#[test]
fn a_late_copy_after_the_count_ended_owes_nothing_even_across_a_restart() {
    let delay = Duration::from_millis(1_500);
    let mut sim = Sim::replicated(1, Faults::none(), 16, 2, delay);
    sim.client_lease = Duration::from_secs(20);
    let registrant = sim.add_client(None, 4);
    sim.register(registrant, service("twice", 7001));
    sim.run(Duration::from_secs(2));
    assert!(sim.live_at(1).contains_key("twice"), "replicated");

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
    sim.run(Duration::from_millis(1_200));
    assert_eq!(
        sim.directory().record("twice").map(|r| r.state),
        Some(RecordState::Departed { remaining: 0 }),
        "the publisher finished counting"
    );
    sim.inject(request.0, nth_directory(1).socket_addr(), &request.2);
    sim.run(Duration::from_millis(100));

    // The publisher restarts from the store.
    let now = sim.now;
    let mut config = sim.config.clone();
    config.version_floor = Version(config.version_floor.0 + now.as_micros());
    let slots = Vec::leak(vec![None; 16]);
    let index = Vec::leak(vec![0u32; 16]);
    let mut restarted = Directory::new(config, slots, index).unwrap();
    let stored: Vec<Vec<u8>> = sim
        .shared
        .as_ref()
        .unwrap()
        .records
        .values()
        .cloned()
        .collect();
    for bytes in stored {
        restarted
            .restore(now, Record::from_bytes(&bytes, wall(now)).unwrap())
            .unwrap();
    }
    restarted.set_publishing(now, true);
    restarted.caught_up(now);
    sim.directories[0].directory = restarted;
    sim.read_store(0);
    sim.run(Duration::from_secs(4));

    let total: usize = sim
        .notifications
        .iter()
        .filter(|((name, _), _)| name == "twice")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, 20, "{:?}", sim.notifications);
}

/// Failed before (the second removal notified 13 times): the store's copies of a directory's
/// own writes come back 500 ms late. The name was removed, registered again with the
/// same content and removed again while the first removal's were still coming; the late copies of the
/// first removal's counts were taken for an older removal of the same registration,
/// and their count (few left) cut the second removal's. A directory that held the name
/// live after a removal knows that removal ended an earlier registration.
#[test]
fn a_late_copy_of_an_earlier_removal_does_not_cut_a_later_ones_count() {
    let delay = Duration::from_millis(500);
    let mut sim = Sim::replicated(1, Faults::none(), 16, 1, delay);
    sim.client_lease = Duration::from_secs(20);
    let registrant = sim.add_client(None, 4);
    sim.register(registrant, service("again", 7001));
    sim.run(Duration::from_secs(1));
    sim.unregister(registrant, "again");
    sim.run(Duration::from_millis(700));
    sim.register(registrant, service("again", 7001));
    sim.run(Duration::from_millis(100));
    sim.unregister(registrant, "again");
    sim.run(Duration::from_secs(3));
    let mut sent: Vec<(u64, usize)> = sim
        .notifications
        .iter()
        .filter(|((name, _), _)| name == "again")
        .map(|((_, version), n)| (*version, *n))
        .collect();
    sent.sort();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1].1, 20, "the second removal: {sent:?}");
}

/// A publishing directory alone, fed records as the replicated store would bring them.
struct Publisher {
    directory: Directory<'static>,
    now: Instant,
    /// Unregistered notifications sent, per version.
    sent: HashMap<u64, usize>,
}

impl Publisher {
    fn new() -> Self {
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.version_floor = Version(1);
        let mut directory =
            Directory::new(config, Vec::leak(vec![None; 8]), Vec::leak(vec![0u32; 8])).unwrap();
        let now = Instant::from_millis(1);
        directory.set_publishing(now, true);
        directory.caught_up(now);
        Publisher {
            directory,
            now,
            sent: HashMap::new(),
        }
    }

    /// Applies a record of `moved` at `version` (port `port`) from the store, its
    /// sequence the version.
    fn apply(&mut self, version: u64, port: u16, state: RecordState, ended: u64) {
        self.apply_sequenced(version, port, state, ended, version);
    }

    /// Applies a record of `moved` with its own `sequence`.
    fn apply_sequenced(
        &mut self,
        version: u64,
        port: u16,
        state: RecordState,
        ended: u64,
        sequence: u64,
    ) {
        self.apply_from(7, version, port, state, ended, sequence);
    }

    /// Applies a record of `moved` held by `registrant`.
    fn apply_from(
        &mut self,
        registrant: u64,
        version: u64,
        port: u16,
        state: RecordState,
        ended: u64,
        sequence: u64,
    ) {
        let record = Record {
            service: Service {
                registration: service("moved", port),
                version: Version(version),
            },
            registrant,
            sequence,
            state,
            ended: Version(ended),
            counted_from: Version(0),
        };
        self.directory.apply(self.now, record).unwrap();
    }

    /// Runs for `span`, counting the notifications sent.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        let mut buf = [0u8; 1400];
        loop {
            self.directory.handle_timeout(self.now);
            while let Some(t) = self.directory.poll_transmit(self.now, &mut buf) {
                let Ok(frame) = decode(&buf[..t.len]) else {
                    continue;
                };
                if let Message::Announce(_, items) = frame.message {
                    for change in items {
                        if let Change::Unregistered { .. } = change {
                            *self.sent.entry(change.version().0).or_default() += 1;
                        }
                    }
                }
            }
            match self.directory.poll_timeout() {
                Some(t) if t <= end => self.now = t.max(self.now),
                _ => break,
            }
        }
        self.now = end;
    }

    fn total(&self) -> usize {
        self.sent.values().sum()
    }

    /// A publisher that held `moved` at v10 (port 1001) and counts its removal at v20,
    /// made through another directory, partway: some notifications sent, not all.
    fn counting_a_removal() -> Self {
        let mut p = Publisher::new();
        let lease = RecordState::Live {
            expires: p.now + Duration::from_secs(60),
        };
        p.apply(10, 1001, lease, 0);
        p.run(Duration::from_millis(100));
        p.apply(20, 1001, RecordState::Departed { remaining: 20 }, 10);
        p.run(Duration::from_millis(220));
        assert!((1..20).contains(&p.total()), "{:?}", p.sent);
        p
    }
}

/// Seed 21978 of `history` (and 12 more in 100,000): a registrant moved its name to new
/// locations at directory B, whose write the publisher had not yet received when it
/// removed the old registration; B then removed the new one. The publisher took that
/// removal (another content) for a new one and sent N more notifications: 26 for what
/// listeners saw as one removal (they never saw the new locations: the publisher's
/// removal, at a higher version than the registration it ended, had told them all).
/// A removal names the version it ended, and the two are one removal when that version
/// is older than the other removal. Failed before removals named it (25 sent).
#[test]
fn a_removal_of_a_registration_older_than_the_held_removal_is_the_same_removal() {
    // Another directory removed it (v20); B registered new locations at v15 and
    // removes them (v30) after the publisher's removal was counting.
    let mut p = Publisher::counting_a_removal();
    p.apply(30, 1002, RecordState::Departed { remaining: 20 }, 15);
    p.run(Duration::from_secs(5));
    assert_eq!(p.total(), 20, "one removal to listeners: {:?}", p.sent);
}

/// A removal of a registration made after the held removal is a removal of its own,
/// whatever its content: listeners may have been told of that registration.
#[test]
fn a_removal_of_a_registration_newer_than_the_held_removal_is_counted_afresh() {
    let mut p = Publisher::new();
    p.apply(20, 1001, RecordState::Departed { remaining: 20 }, 10);
    p.run(Duration::from_millis(220));
    let before = p.total();
    assert!((1..20).contains(&before), "{:?}", p.sent);
    // Registered again at v25 (same content) elsewhere, and removed at v30.
    p.apply(30, 1001, RecordState::Departed { remaining: 20 }, 25);
    p.run(Duration::from_secs(5));
    assert_eq!(p.sent.get(&30), Some(&20), "{:?}", p.sent);
}

/// Seed 22070 of `history`: a directory holding a finished removal, whose sequence an
/// unregistration raised, took a registration sent before that unregistration (at a
/// newer version: it had not reached it through the store) and kept the removal at a
/// new version, which named the live version the old removal had ended instead of the
/// registration it now ended. A late copy of the old, finished removal was then taken
/// for the same removal, and its count (none left) cut the new one at 5 of 20. Failed
/// before a superseding removal named the version it ended.
#[test]
fn a_removal_that_supersedes_a_registration_names_it_as_ended() {
    let mut p = Publisher::new();
    let finished = RecordState::Departed { remaining: 0 };
    // Removed long ago (v50, ending v20); the registrant's unregistration (sequence 100)
    // came after the registration it sent at sequence 90, which arrives now at v70.
    p.apply_sequenced(50, 1001, finished, 20, 100);
    let lease = RecordState::Live {
        expires: p.now + Duration::from_secs(60),
    };
    p.apply_sequenced(70, 1001, lease, 0, 90);
    p.run(Duration::from_millis(220));
    let new_removal = p
        .sent
        .keys()
        .copied()
        .max()
        .expect("the new removal counts");
    assert!(new_removal > 70, "{:?}", p.sent);
    // A late copy of the old removal, finished.
    p.apply_sequenced(50, 1001, finished, 20, 100);
    p.run(Duration::from_secs(5));
    assert_eq!(p.sent.get(&new_removal), Some(&20), "{:?}", p.sent);
}

/// Seed 518419 of `history`: a replica that had not yet seen a registration removed the
/// older one it held (v40, ending v10), then read the store's earlier removal of v10
/// (v20, being counted by the publisher) and took over its count, as one removal. The
/// registration it had not seen (v30) was removed at the publisher (v50, ending v30);
/// the replica's record then reached the publisher, which took it for the same removal
/// as its own (v30 is older than v40) and cut its count to the inherited one: 18 of 20.
/// But the notifications counted there were announced at v20, and told no listener of
/// v30. A record names the oldest removal counted in it, and a removal is one with it
/// only when it ended a version older than that.
#[test]
fn a_count_taken_over_from_an_older_removal_does_not_cut_a_later_registrations_removal() {
    let mut p = Publisher::new();
    let mut replica = Publisher::new();
    replica.directory.set_publishing(replica.now, false);
    let lease = |now| RecordState::Live {
        expires: now + Duration::from_secs(60),
    };
    for d in [&mut p, &mut replica] {
        d.apply(10, 1001, lease(d.now), 0);
    }
    // Removed elsewhere at v20: the publisher counts it.
    p.apply(20, 1001, RecordState::Departed { remaining: 20 }, 10);
    p.run(Duration::from_millis(220));
    let counted = 20 - p.sent[&20] as u8;
    assert!(counted < 20, "{:?}", p.sent);
    // Registered again at v30 (the publisher holds it), which the replica had not yet
    // seen when it removed v10 itself at v40; then it read v20 with its count.
    p.apply(30, 1002, lease(p.now), 0);
    p.run(Duration::from_millis(100));
    replica.apply(40, 1001, RecordState::Departed { remaining: 20 }, 10);
    replica.apply(20, 1001, RecordState::Departed { remaining: counted }, 10);
    let taken_over = replica.directory.record("moved").cloned().unwrap();
    assert_eq!(taken_over.service.version, Version(40));
    assert_eq!(
        taken_over.state,
        RecordState::Departed { remaining: counted }
    );
    // The publisher removes v30 at v50; the replica's record reaches it.
    p.apply(50, 1002, RecordState::Departed { remaining: 20 }, 30);
    p.run(Duration::from_millis(100));
    p.directory.apply(p.now, taken_over).unwrap();
    p.run(Duration::from_secs(5));
    assert_eq!(p.sent.get(&50), Some(&20), "{:?}", p.sent);
}

/// Seed 705949 of `history` (on the first form of the fix above): a publisher joined its
/// own removal (v20, its count running) with another directory's older removal of the
/// same registration (v15), kept its own fewer owed, but named the count as counted from
/// v15. A replica's removal of a registration no listener held (v18, made there after
/// v15 and before v20, so v20 had told every listener) then looked like the removal of
/// a registration made after the count, was not joined, and owed 20 more: 31 in all.
/// The count taken keeps where it was counted from.
#[test]
fn a_directorys_own_count_joined_with_an_older_removal_stays_counted_from_its_own() {
    let mut p = Publisher::counting_a_removal();
    // Another directory's older removal of the same registration: one removal.
    p.apply(15, 1001, RecordState::Departed { remaining: 20 }, 10);
    p.run(Duration::from_millis(100));
    // A replica removes the registration it alone held (v18) at v30.
    p.apply(30, 1002, RecordState::Departed { remaining: 20 }, 18);
    p.run(Duration::from_secs(5));
    assert_eq!(p.total(), 20, "{:?}", p.sent);
}

/// Seed 2019739 of `history`: a replica that had not yet seen a registration (v30)
/// carried out its registrant's later unregistration on the older one it held (v40,
/// ending v10), and took over the count of the store's earlier removal of v10 (v20,
/// counted at the publisher), as one removal. Its record reached the publisher, which
/// held v30 live and announced: it took the newer removal, then the count inherited
/// from v20 as its own write came back (9 of 20 sent after v30). But those
/// notifications were announced before v30 and told no listener of it. A count counted
/// from a version no newer than one held live is not taken.
#[test]
fn a_count_counted_from_before_a_live_version_held_is_not_taken() {
    let mut p = Publisher::counting_a_removal();
    let lease = RecordState::Live {
        expires: p.now + Duration::from_secs(60),
    };
    p.apply(30, 1002, lease, 0);
    p.run(Duration::from_millis(100));
    let before = p.total();
    // The replica's removal (sequence 40, after v30's) of v10, first with its own count,
    // then with the count it took over from v20.
    p.apply(40, 1001, RecordState::Departed { remaining: 20 }, 10);
    p.run(Duration::from_millis(100));
    let taken_over = Record {
        service: Service {
            registration: service("moved", 1001),
            version: Version(40),
        },
        registrant: 7,
        sequence: 40,
        state: RecordState::Departed { remaining: 5 },
        ended: Version(10),
        counted_from: Version(20),
    };
    p.directory.apply(p.now, taken_over).unwrap();
    p.run(Duration::from_secs(5));
    assert_eq!(p.total() - before, 20, "after v30: {:?}", p.sent);
}

/// Two directories gave one registrant's two requests for a name (port 1044, then port
/// 1053) the same version: their version clocks both followed a peer's newer versions
/// (a clock ahead), one past the newest they held. Whichever order the store brings
/// them in, the later request is kept at a new version, so that a listener told of the
/// other state at that version is told of it. Before, the second was merged into the
/// first as a copy of it: the store and its directories kept one state, and a listener
/// the other, for good (history seed 3325446, clock skew).
#[test]
fn two_requests_given_one_version_by_two_directories_settle_on_the_later() {
    for later_first in [false, true] {
        let mut p = Publisher::new();
        let lease = RecordState::Live {
            expires: p.now + Duration::from_secs(60),
        };
        let (first, second) = if later_first {
            ((1053, 91), (1044, 90))
        } else {
            ((1044, 90), (1053, 91))
        };
        p.apply_sequenced(40, first.0, lease, 0, first.1);
        p.run(Duration::from_millis(100));
        p.apply_sequenced(40, second.0, lease, 0, second.1);
        p.run(Duration::from_millis(100));
        let held = &p.directory.record("moved").expect("held").service;
        assert_eq!(
            held.registration.locations[0].port(),
            1053,
            "later first: {later_first}"
        );
        assert!(held.version > Version(40), "later first: {later_first}");
    }
}

/// Two directories gave two registrants' records of one name the same version: one
/// registrant unregistered it (or let it expire) where the other registered it, or each
/// registered it where the name was free, as their version clocks both followed a peer's
/// newer versions. Whichever order the store brings them in, every directory keeps the
/// same one (the higher sequence, then the higher registrant) at a new version, so that
/// listeners told of the other are told of it. Before, the second merged into the first
/// as a copy: two directories could keep different owners of the name, and listeners
/// whichever the publisher held, for good.
#[test]
fn two_registrants_given_one_version_settle_on_one_owner_everywhere() {
    let lease = |p: &Publisher| RecordState::Live {
        expires: p.now + Duration::from_secs(60),
    };
    let cases = [
        // (registrant, port, live, sequence) of each; the first wins.
        ((7, 1044, true, 2000), (8, 1053, true, 1000)),
        ((8, 1053, true, 1000), (7, 1044, true, 1000)),
        ((8, 1053, true, 3000), (7, 1044, false, 2000)),
        ((7, 1044, false, 3000), (8, 1053, true, 2000)),
    ];
    for (winner, loser) in cases {
        for winner_first in [false, true] {
            let mut p = Publisher::new();
            let (first, second) = if winner_first {
                (winner, loser)
            } else {
                (loser, winner)
            };
            for (registrant, port, live, sequence) in [first, second] {
                let state = if live {
                    lease(&p)
                } else {
                    RecordState::Departed { remaining: 20 }
                };
                p.apply_from(registrant, 40, port, state, 0, sequence);
                p.run(Duration::from_millis(100));
            }
            let held = p.directory.record("moved").expect("held");
            let case = format!("winner {winner:?}, loser {loser:?}, winner first: {winner_first}");
            assert_eq!(held.registrant, winner.0, "{case}");
            assert_eq!(held.is_live(), winner.2, "{case}");
            assert_eq!(
                held.service.registration.locations[0].port(),
                winner.1,
                "{case}"
            );
            assert!(held.service.version > Version(40), "{case}");
        }
    }
}
