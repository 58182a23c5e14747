//! A client's requests: answers matched to the attempt and the directory they answer,
//! and failover only when a directory is really gone.

mod support;

use herald_core::client::ClientStorage;
use herald_core::wire::{self, Ack, Holdings, KeepAliveAck, Message};
use herald_core::*;
use support::*;

/// A Register or KeepAlive the client sent: its request id, and for a keep-alive what
/// it claimed the directory holds.
type Sent = (u32, Option<Holdings>);

/// The Register or KeepAlive the client sent, if that is what `bytes` holds.
fn registration_request(bytes: &[u8]) -> Option<Sent> {
    match wire::decode(bytes).ok()?.message {
        Message::Register(r) => Some((r.request, None)),
        Message::KeepAlive(k) => Some((k.request, Some(k.held))),
        _ => None,
    }
}

/// The directory's acknowledgement of `sent` (a keep-alive's says it holds what was
/// claimed), granting 15 s.
fn ack(sent: Sent) -> Vec<u8> {
    ack_granting(sent, Duration::from_secs(15))
}

/// The directory's acknowledgement of `sent`, granting `lease`.
fn ack_granting(sent: Sent, lease: Duration) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let env = Environment::default();
    let n = match sent {
        (request, None) => {
            let ack = Ack {
                request,
                lease,
                version: Version(10),
            };
            wire::encode(&env, &ack, &mut buf)
        }
        (request, Some(held)) => {
            let ack = KeepAliveAck {
                request,
                lease,
                held,
            };
            wire::encode(&env, &ack, &mut buf)
        }
    };
    buf[..n.unwrap()].to_vec()
}

/// A client (registrant 3) of `directories`, in that order, over `store`.
fn client_of<'a>(store: &'a mut ClientStorage<1>, directories: &[Location]) -> Client<'a, 1> {
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(3);
    for directory in directories {
        config.directories.push(*directory).unwrap();
    }
    Client::new(config, known, index).unwrap()
}

/// Every Register and KeepAlive the client sends until `until`.
fn registers_until(client: &mut Client<'_, 1>, now: &mut Instant, until: Instant) -> Vec<Sent> {
    let mut buf = [0u8; 1400];
    let mut ids = Vec::new();
    loop {
        while let Some(t) = client.poll_transmit(*now, &mut buf) {
            ids.extend(registration_request(&buf[..t.len]));
        }
        match client.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                client.handle_timeout(*now);
            }
            _ => break,
        }
    }
    *now = until;
    ids
}

/// A late copy of an earlier cycle's acknowledgement, or an acknowledgement from
/// another directory, does not confirm a renewal (a keep-alive): the client keeps
/// renewing until the directory it renews at answers that renewal.
#[test]
fn a_renewal_is_confirmed_only_by_its_own_answer_from_its_directory() {
    let a = nth_directory(0);
    let b = nth_directory(1);
    let mut store = ClientStorage::<1>::new();
    let mut client = client_of(&mut store, &[a, b]);
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    let first = registers_until(&mut client, &mut now, Instant::from_millis(1));
    assert_eq!(first.len(), 1);
    client.handle_datagram(now, a.socket_addr(), &ack(first[0]));
    while client.poll_event().is_some() {}

    // Up to the renewal, a third of the lease later: nothing to send before it.
    let quiet = registers_until(&mut client, &mut now, Instant::from_millis(4_900));
    assert!(quiet.is_empty(), "{quiet:?}");
    let renewal = registers_until(&mut client, &mut now, Instant::from_millis(5_100));
    assert!(!renewal.is_empty(), "the renewal was sent");
    // A duplicate of the first acknowledgement arrives late, and another directory
    // acknowledges the renewal's id: neither is the renewal's answer.
    client.handle_datagram(now, a.socket_addr(), &ack(first[0]));
    for id in &renewal {
        client.handle_datagram(now, b.socket_addr(), &ack(*id));
    }
    let retries = registers_until(&mut client, &mut now, Instant::from_millis(7_000));
    assert!(
        !retries.is_empty(),
        "the renewal is still unanswered: the client retries it"
    );
    assert!(
        renewal
            .iter()
            .chain(&retries)
            .all(|(_, held)| held.is_some()),
        "the renewal goes as a keep-alive"
    );
    let mut ids: Vec<u32> = renewal.iter().map(|s| s.0).collect();
    ids.extend(retries.iter().map(|s| s.0));
    ids.push(first[0].0);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        renewal.len() + retries.len() + 1,
        "every attempt has its own request id"
    );
    // Its real answer stops the retries until the next renewal.
    client.handle_datagram(now, a.socket_addr(), &ack(*retries.last().unwrap()));
    let after = registers_until(&mut client, &mut now, Instant::from_millis(11_000));
    assert!(after.is_empty(), "{after:?}");
}

/// A registration is answered only from the directory its attempt went to, even when
/// the configuration names that directory twice (attempts remember the directory by
/// its place among those known: either place is the same address).
#[test]
fn a_registration_is_answered_only_from_the_directory_it_went_to() {
    let a = nth_directory(0);
    let b = nth_directory(1);
    let mut store = ClientStorage::<1>::new();
    let mut client = client_of(&mut store, &[a, b, a]);
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    let sent = registers_until(&mut client, &mut now, Instant::from_millis(1));
    assert_eq!(sent.len(), 1);
    // The other directory's answer with the same id is not the registration's.
    client.handle_datagram(now, b.socket_addr(), &ack(sent[0]));
    assert!(
        !matches!(client.poll_event(), Some(ClientEvent::Registered { .. })),
        "registered by an answer from the wrong directory"
    );
    client.handle_datagram(now, a.socket_addr(), &ack(sent[0]));
    assert!(
        matches!(client.poll_event(), Some(ClientEvent::Registered { .. })),
        "its directory's answer registers it"
    );
}

/// Two independent directories: the one a registrant uses goes silent for longer than
/// three attempts (but less than `failover_after`). The registrant stays (transient loss moves nothing); when the
/// directory is really gone, it moves to the other one, which answers its probe.
#[test]
fn a_registrant_fails_over_only_when_its_directory_is_gone() {
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(seed, Faults::none(), 8);
        sim.add_directory(8);
        sim.client_lease = Duration::from_secs(15);
        let r = sim.add_client(None, 1);
        sim.register(r, service("api", 8000));
        sim.run(Duration::from_secs(1));
        let a = sim.directories[0].location;
        let b = sim.directories[1].location;
        assert_eq!(sim.nodes[r].client.current_directory(), Some(a));

        // An outage of 2.5 s across the renewal (due 5 s after registering): every
        // attempt in its first 2 s is lost, more than the three attempts after which
        // the client used to move.
        sim.run(Duration::from_millis(3_500));
        sim.directories[0].down = true;
        sim.run(Duration::from_millis(2_500));
        sim.directories[0].down = false;
        sim.run(Duration::from_secs(10));
        assert_eq!(
            sim.nodes[r].client.current_directory(),
            Some(a),
            "seed {seed}: a transient outage moved the registrant"
        );
        let moved = sim.nodes[r]
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::DirectoryChanged(_)));
        assert!(!moved, "seed {seed}");
        assert!(
            sim.live_at(1).is_empty(),
            "seed {seed}: registered at B too"
        );

        // A is gone for good: the registrant moves to B and registers there.
        sim.directories[0].down = true;
        sim.run(Duration::from_secs(20));
        assert_eq!(
            sim.nodes[r].client.current_directory(),
            Some(b),
            "seed {seed}"
        );
        assert!(sim.live_at(1).contains_key("api"), "seed {seed}");
    }
}

/// A directory that cannot store a change refuses it with `storage_unavailable`: the
/// client keeps the registration, tells nobody it was refused, and sends it again
/// after a back-off, without leaving the directory.
#[test]
fn a_registration_the_directory_could_not_store_is_sent_again() {
    let a = nth_directory(0);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(3);
    config.directories.push(a).unwrap();
    config.directories.push(nth_directory(1)).unwrap();
    let mut client: Client<'_, 1> = Client::new(config, known, index).unwrap();
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    let first = registers_until(&mut client, &mut now, Instant::from_millis(1));
    let reject = wire::Reject {
        request: first[0].0,
        reason: RejectReason::StorageUnavailable,
        directory_environment: Environment::default(),
        floor: 0,
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &reject, &mut buf).unwrap();
    client.handle_datagram(now, a.socket_addr(), &buf[..n]);
    let early = registers_until(&mut client, &mut now, Instant::from_millis(1_000));
    assert!(
        early.is_empty(),
        "sent again before the back-off: {early:?}"
    );
    let again = registers_until(&mut client, &mut now, Instant::from_millis(2_500));
    assert!(!again.is_empty(), "sent again after the back-off");
    assert_eq!(client.current_directory(), Some(a));
    client.handle_datagram(now, a.socket_addr(), &ack(again[0]));
    let mut registered = false;
    while let Some(e) = client.poll_event() {
        assert!(!matches!(e, ClientEvent::Rejected { .. }), "{e:?}");
        registered |= matches!(e, ClientEvent::Registered { .. });
    }
    assert!(registered);
    assert_eq!(client.stats().storage_unavailable, 1);
}

/// Issue 14, finding 8: two independent directories, 10 % loss everywhere, for 600 s.
/// A live service must not go missing from a listener for long: the registrant never
/// leaves a directory that works (before, it failed over after three lost attempts and
/// the listener, following the other directory, lost the service for 212–338 s).
#[test]
fn transient_loss_does_not_move_a_registrant_away_from_its_listeners() {
    for seed in [1, 2, 3, 4] {
        let mut sim = Sim::new(seed, Faults::lossy(0.10), 8);
        sim.add_directory(8);
        sim.client_lease = Duration::from_secs(15);
        let r = sim.add_client(None, 1);
        let l = sim.add_client(Some(Interest::all()), 8);
        sim.register(r, service("api", 8000));
        sim.run(Duration::from_secs(5));
        let mut missing = 0;
        for _ in 0..600 {
            sim.run(Duration::from_secs(1));
            if !sim.nodes[l].view.services.contains_key("api") {
                missing += 1;
            }
        }
        let moves = sim.nodes[r]
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::DirectoryChanged(_)))
            .count();
        assert!(
            missing <= 5,
            "seed {seed}: missing {missing} s of 600 ({moves} registrant moves)"
        );
        assert_clean(&sim);
    }
}

/// A process restarted with the same registrant id (a later clock) numbers its requests
/// apart from the process before it: a late acknowledgement of the earlier process's
/// registration does not confirm the new process's own. Before, both numbered from the
/// registrant id, and the new process took the old answer for its first request.
#[test]
fn a_restarted_process_does_not_take_the_answers_of_the_process_before_it() {
    /// A process of registrant 3 whose clock reads `clock_floor`, and the Register it
    /// sends first.
    fn start(clock_floor: u64, store: &mut ClientStorage<1>) -> (Client<'_, 1>, Sent) {
        let (known, index) = store.parts();
        let mut config = ClientConfig::new(3);
        config.directories.push(directory_location()).unwrap();
        config.clock_floor = clock_floor;
        let mut client = Client::new(config, known, index).unwrap();
        let now = Instant::from_millis(1);
        client.register(now, service("api", 1)).unwrap();
        let mut buf = [0u8; 1400];
        let t = client.poll_transmit(now, &mut buf).expect("a register");
        let sent = registration_request(&buf[..t.len]).expect("a register");
        (client, sent)
    }
    let directory = directory_location();
    let floor = 1_700_000_000_000_000u64;
    let mut first_store = ClientStorage::<1>::new();
    let (_, first) = start(floor, &mut first_store);
    let mut second_store = ClientStorage::<1>::new();
    let (mut second, _) = start(floor + 5_000_000, &mut second_store);
    let now = Instant::from_millis(2);
    second.handle_datagram(now, directory.socket_addr(), &ack(first));
    while let Some(event) = second.poll_event() {
        assert!(
            !matches!(event, ClientEvent::Registered { .. }),
            "the restarted process took the answer to the first one's request {}",
            first.0
        );
    }
}

/// Clients with neighbouring registrant ids and no clock (devices numbered in a row)
/// number their requests far apart: an answer meant for one, sent (or replayed) to the
/// other, is not taken for one of its own. Before, each numbered from its registrant
/// id, so one client's first request had the id of its neighbour's second attempt
/// (history seed 4036540: a subscription acknowledgement replayed to the neighbour's
/// address made it believe it was subscribed).
#[test]
fn an_answer_meant_for_a_neighbour_is_not_taken_for_ones_own() {
    let directory = directory_location();
    for registrant in [1u64, 4_097, 0xDEAD_BEEF] {
        let start = |registrant: u64, store| {
            let (known, index) = ClientStorage::<1>::parts(store);
            let mut config = ClientConfig::new(registrant);
            config.directories.push(directory).unwrap();
            let mut client = Client::new(config, known, index).unwrap();
            client
                .register(Instant::from_millis(1), service("api", 1))
                .unwrap();
            client
        };
        let (mut store, mut neighbour_store) = (ClientStorage::new(), ClientStorage::new());
        let mut client = start(registrant, &mut store);
        let mut neighbour = start(registrant + 1, &mut neighbour_store);
        // The client tries for two seconds unanswered; its neighbour once, and is
        // answered.
        let mut now = Instant::from_millis(1);
        let mine = registers_until(&mut client, &mut now, Instant::from_millis(2_000));
        assert!(mine.len() >= 2, "{mine:?}");
        let mut then = Instant::from_millis(1);
        let theirs = registers_until(&mut neighbour, &mut then, Instant::from_millis(2));
        client.handle_datagram(now, directory.socket_addr(), &ack(theirs[0]));
        while let Some(event) = client.poll_event() {
            assert!(
                !matches!(event, ClientEvent::Registered { .. }),
                "registrant {registrant} took its neighbour's answer to request {} (its own: {:?})",
                theirs[0].0,
                mine.iter().map(|s| s.0).collect::<Vec<_>>()
            );
        }
    }
}

/// An acknowledgement granting no lease answers an unregistration, never a
/// registration. Taken for one (a late answer to the request of an earlier process
/// with the same registrant id and request id, or a forged one), it gave the
/// registration a zero lease, and so the directory a zero silence limit: the client
/// failed over at every wake-up, sending every registration again each time (history
/// seed 3591306, a restarted registrant: thousands of requests a millisecond).
#[test]
fn an_acknowledgement_granting_no_lease_does_not_confirm_a_registration() {
    let (a, b) = (directory_location(), nth_directory(1));
    let mut store = ClientStorage::<1>::new();
    let mut client = client_of(&mut store, &[a, b]);
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 1)).unwrap();
    let sent = registers_until(&mut client, &mut now, Instant::from_millis(2));
    client.handle_datagram(now, a.socket_addr(), &ack(sent[0]));
    while client.poll_event().is_some() {}
    // The registration changes; its Register is answered with no lease.
    client.register(now, service("api", 2)).unwrap();
    let sent = registers_until(&mut client, &mut now, Instant::from_millis(3));
    let mut buf = [0u8; 1400];
    let zero = Ack {
        request: sent[0].0,
        lease: Duration::ZERO,
        version: Version(11),
    };
    let n = wire::encode(&Environment::default(), &zero, &mut buf).unwrap();
    client.handle_datagram(now, a.socket_addr(), &buf[..n]);
    let confirmed = std::iter::from_fn(|| client.poll_event())
        .any(|e| matches!(e, ClientEvent::Registered { .. }));
    assert!(!confirmed, "a zero lease confirmed a registration");
    // Unanswered for a second, well within the silence limit: still at `a`.
    let resent = registers_until(&mut client, &mut now, Instant::from_millis(1_000));
    assert_eq!(client.current_directory(), Some(a));
    assert!(resent.len() < 10, "{} requests in a second", resent.len());
}

/// A device without a clock restarted under the same registrant id numbered its
/// requests as the process before it did, and took a late answer to its predecessor's
/// Register for an answer to its own (a registration confirmed that the directory may
/// not hold). With random bits drawn at start (`entropy`, from the board's RNG), the two
/// processes number their requests apart.
#[test]
fn a_clockless_process_restarted_with_other_random_bits_takes_no_answer_meant_for_its_predecessor()
{
    let directory = directory_location();
    fn start(entropy: u64, store: &mut ClientStorage<1>) -> Client<'_, 1> {
        let (known, index) = ClientStorage::<1>::parts(store);
        let mut config = ClientConfig::new(7);
        config.directories.push(directory_location()).unwrap();
        config.entropy = entropy;
        let mut client = Client::new(config, known, index).unwrap();
        client
            .register(Instant::from_millis(1), service("api", 1))
            .unwrap();
        client
    }
    for (before, after) in [(0x1234_5678_9abc_def0u64, 0x0fed_cba9_8765_4321u64), (1, 2)] {
        let (mut first_store, mut second_store) = (ClientStorage::new(), ClientStorage::new());
        let mut first = start(before, &mut first_store);
        let mut second = start(after, &mut second_store);
        // The predecessor's attempts, unanswered; the new process starts and tries.
        let mut then = Instant::from_millis(1);
        let theirs = registers_until(&mut first, &mut then, Instant::from_millis(2_000));
        let mut now = Instant::from_millis(1);
        let mine = registers_until(&mut second, &mut now, Instant::from_millis(2_000));
        // Each of the predecessor's late answers arrives.
        for sent in &theirs {
            second.handle_datagram(now, directory.socket_addr(), &ack(*sent));
        }
        while let Some(event) = second.poll_event() {
            assert!(
                !matches!(event, ClientEvent::Registered { .. }),
                "took its predecessor's answer (theirs {:?}, its own {:?})",
                theirs.iter().map(|s| s.0).collect::<Vec<_>>(),
                mine.iter().map(|s| s.0).collect::<Vec<_>>()
            );
        }
    }
    // Without a clock or random bits, the two number alike: the limitation this closes.
    let (mut a, mut b) = (ClientStorage::new(), ClientStorage::new());
    let (mut first, mut second) = (start(0, &mut a), start(0, &mut b));
    let mut t = Instant::from_millis(1);
    let theirs = registers_until(&mut first, &mut t, Instant::from_millis(2));
    let mut u = Instant::from_millis(1);
    let mine = registers_until(&mut second, &mut u, Instant::from_millis(2));
    assert_eq!(theirs[0].0, mine[0].0);
}

/// An answer to the first attempt counts however many attempts followed it, for a
/// registration and for a keep-alive alike. With a 3 s lease attempts go out 75 ms
/// apart, and the client remembered only the newest eight: an answer more than 600 ms
/// late was dropped, and the client went on retrying (history seed 4676703: a
/// keep-alive's answers came 0.6-1 s late and were dropped until one to a recent
/// attempt arrived, too late for the shared store to carry the renewal to the
/// publisher in time).
#[test]
fn an_answer_to_an_early_attempt_counts_however_many_followed_it() {
    let a = nth_directory(0);
    let mut store = ClientStorage::<1>::new();
    let (known, index) = store.parts();
    let mut config = ClientConfig::new(3);
    config.directories.push(a).unwrap();
    config.lease = Duration::from_secs(3);
    let mut client = Client::new(config, known, index).unwrap();
    let lease = Duration::from_secs(3);
    let mut now = Instant::from_millis(1);
    client.register(now, service("api", 8000)).unwrap();
    // No answer for 0.75 s: ten attempts.
    let sent = registers_until(&mut client, &mut now, Instant::from_millis(750));
    assert!(sent.len() >= 10, "{} attempts", sent.len());
    client.handle_datagram(now, a.socket_addr(), &ack_granting(sent[0], lease));
    let events: Vec<ClientEvent> = std::iter::from_fn(|| client.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Registered { .. })),
        "the first attempt's answer registers it: {events:?}"
    );
    // Renewed a third of the lease after the attempt answered was sent.
    let quiet = registers_until(&mut client, &mut now, Instant::from_millis(950));
    assert!(quiet.is_empty(), "no retry once answered: {quiet:?}");
    // The renewal, a keep-alive: unanswered for 0.75 s, then its first attempt answered.
    let renewal = registers_until(&mut client, &mut now, Instant::from_millis(1_750));
    assert!(renewal.len() >= 10, "{} attempts", renewal.len());
    assert!(
        renewal.iter().all(|(_, held)| held.is_some()),
        "a keep-alive"
    );
    client.handle_datagram(now, a.socket_addr(), &ack_granting(renewal[0], lease));
    let after = registers_until(&mut client, &mut now, Instant::from_millis(1_950));
    assert!(after.is_empty(), "no retry once answered: {after:?}");
}
