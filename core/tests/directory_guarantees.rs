//! The directory's guarantees under adversity (docs/PROTOCOL.md, "Guarantees"): bursts of
//! removals with late copies from a slow replicated store, a registry full of finished
//! removals, reordered requests, replays to another directory of the environment, and
//! a registrant id used from a clock that was ahead. Everything in simulated time.

mod support;

use herald_core::auth::{self, Key, Keys};
use herald_core::wire::{self, Message, RegisterRequest, UnregisterRequest};
use herald_core::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use support::*;

const SEEDS: [u64; 4] = [1, 7, 42, 1234];

/// Registers `count` services named `{prefix}{i}` through registrants of 8 each.
fn register_many(sim: &mut Sim, count: usize, prefix: &str) -> Vec<(usize, String)> {
    let mut owned = Vec::new();
    let mut registrant = sim.add_client(None, 1);
    for i in 0..count {
        if i > 0 && i % 8 == 0 {
            registrant = sim.add_client(None, 1);
        }
        let name = format!("{prefix}{i}");
        sim.register(registrant, service(&name, 2000 + i as u16));
        owned.push((registrant, name));
    }
    owned
}

/// Removal notifications sent per name: (distinct removal versions, total sent).
fn notifications_per_name(sim: &Sim) -> HashMap<String, (usize, usize)> {
    let mut out: HashMap<String, (usize, usize)> = HashMap::new();
    for ((name, _), n) in &sim.notifications {
        let e = out.entry(name.clone()).or_default();
        e.0 += 1;
        e.1 += n;
    }
    out
}

#[test]
fn a_burst_of_removals_with_late_store_copies_is_announced_exactly_n_times() {
    // Issue 14, finding 1: 100 removals at once with a store whose copies arrive 1.5 s
    // late overflowed the ring of 64 reaped names; late copies were applied again.
    for seed in SEEDS {
        let mut sim = Sim::replicated(seed, Faults::none(), 256, 2, Duration::from_millis(1500));
        let l = sim.add_client(Some(Interest::all()), 256);
        let owned = register_many(&mut sim, 100, "burst");
        sim.run(Duration::from_secs(4));
        assert_eq!(sim.nodes[l].view.services.len(), 100, "seed {seed}");
        for (r, name) in &owned {
            let now = sim.now;
            let name = ServiceName::new(name).unwrap();
            sim.nodes[*r].client.unregister(now, &name).unwrap();
        }
        sim.run(Duration::from_secs(10));
        let check = |sim: &Sim, when: &str| {
            let sent = notifications_per_name(sim);
            assert_eq!(sent.len(), 100, "seed {seed} {when}");
            for (name, (removals, total)) in &sent {
                assert_eq!(
                    (*removals, *total),
                    (1, 20),
                    "seed {seed} {when}: {name} removed {removals} times, announced {total}"
                );
            }
            // (How often each listener reports a removal is the listener's part: its own
            // ring of removals is issue 14, finding 3. Here: it ends with nothing.)
            let view = &sim.nodes[l].view;
            assert!(view.services.is_empty(), "seed {seed} {when}");
            assert!(sim.live_at(0).is_empty() && sim.live_at(1).is_empty());
            assert_clean(sim);
        };
        check(&sim, "after the burst");
        // Past the retention time: the tombstones are reaped everywhere, and still
        // nothing comes back.
        sim.run(sim.config.tombstone_retention + Duration::from_secs(5));
        check(&sim, "after the retention");
        assert!(
            sim.shared.as_ref().unwrap().records.is_empty(),
            "seed {seed}"
        );
        assert_eq!(sim.directories[0].directory.len(), 0, "seed {seed}");
        assert_eq!(sim.directories[1].directory.len(), 0, "seed {seed}");
    }
}

fn config(capacity_hint: &str) -> DirectoryConfig {
    let _ = capacity_hint;
    DirectoryConfig::new(directory_location(), group())
}

fn record(name: &str, version: u64, state: RecordState) -> Record {
    Record {
        service: Service {
            registration: service(name, 1),
            version: Version(version),
        },
        registrant: 1,
        sequence: 0,
        state,
        ended: Version(0),
        counted_from: Version(0),
    }
}

#[test]
fn a_directory_or_client_made_over_the_memory_of_another_starts_empty() {
    const N: usize = 8;
    let mut d = new_directory(config("reuse"), N);
    let t0 = Instant::from_millis(1);
    for i in 0..3 {
        let finished = RecordState::Departed { remaining: 0 };
        d.apply(t0, record(&format!("old{i}"), 1_000 + i, finished))
            .unwrap();
    }
    assert_eq!(d.len(), 3);
    let parts = d.into_storage();
    assert_eq!(
        (
            parts.slots.len(),
            parts.index.len(),
            parts.subscribers.len()
        ),
        (N, N, SUBSCRIBERS)
    );
    let mut again = Directory::new(config("reuse"), parts.slots, parts.index)
        .unwrap()
        .with_subscribers(parts.subscribers);
    assert_eq!((again.len(), again.subscriber_capacity()), (0, SUBSCRIBERS));
    let finished = RecordState::Departed { remaining: 0 };
    again.apply(t0, record("new", 2_000, finished)).unwrap();
    assert_eq!(again.len(), 1);

    let mut c = ClientConfig::new(0xc1);
    c.directories.push(directory_location()).unwrap();
    let client: Client<'_> = Client::new(
        c.clone(),
        Vec::leak(vec![None; 4]),
        Vec::leak(vec![0u32; 4]),
    )
    .unwrap();
    let (slots, index) = client.into_storage();
    assert_eq!((slots.len(), index.len()), (4, 4));
    let client: Client<'_> = Client::new(c, slots, index).unwrap();
    assert_eq!(client.services().count(), 0);
}

#[test]
fn a_registry_full_of_finished_removals_takes_new_records_before_the_shell_drains() {
    // Issue 14, finding 2: more than 64 records applied into a full registry of finished
    // removals before the events were drained (an etcd reload) were refused as full,
    // and the next reclaim panicked on a subtraction overflow in a debug build.
    const N: usize = 100;
    let mut d = Directory::new(
        config("full"),
        Vec::leak(vec![None; N]),
        Vec::leak(vec![0u32; N]),
    )
    .unwrap();
    let t0 = Instant::from_millis(1);
    for i in 0..N {
        let finished = RecordState::Departed { remaining: 0 };
        d.apply(t0, record(&format!("old{i}"), 1_000 + i as u64, finished))
            .unwrap();
    }
    assert_eq!(d.len(), N);
    // Later (the tombstones are older than the replication bound), a reload brings more
    // records than any queue of removals would hold, with no drain in between.
    let t1 = t0 + Duration::from_secs(10);
    let expires = t1 + Duration::from_secs(60);
    for i in 0..N {
        let live = RecordState::Live { expires };
        let result = d.apply(t1, record(&format!("new{i}"), 5_000 + i as u64, live));
        assert_eq!(result, Ok(()), "record {i} refused");
    }
    assert_eq!(d.live(), N);
    let mut removed = Vec::new();
    while let Some(event) = d.poll_event() {
        if let DirectoryEvent::Removed(name) = event {
            removed.push(name.to_string());
        }
    }
    removed.sort();
    let mut expected: Vec<String> = (0..N).map(|i| format!("old{i}")).collect();
    expected.sort();
    assert_eq!(
        removed, expected,
        "every evicted tombstone is reported removed"
    );
    // A registry full of live services refuses, without panicking.
    let live = RecordState::Live { expires };
    assert_eq!(
        d.apply(t1, record("one-more", 9_000, live)),
        Err(RegistryError::Full)
    );
    // A late copy of an evicted record is refused (not above the dropped floor).
    let stale = RecordState::Live { expires };
    d.apply(t1, record("old5", 1_005, stale)).unwrap();
    assert!(d.record("old5").is_none());
}

/// Drives one directory alone: requests in, everything out, until `until`, waking only
/// when it asks to. Returns the names reported removed.
struct Solo {
    d: Directory<'static>,
    now: Instant,
    removed: Vec<String>,
    sequence: u64,
}

impl Solo {
    /// A directory of `capacity` entries configured as `c`, alone, at 1 ms.
    fn new(c: DirectoryConfig, capacity: usize) -> Solo {
        let slots = Vec::leak(vec![None; capacity]);
        let index = Vec::leak(vec![0u32; capacity]);
        Solo {
            d: Directory::new(c, slots, index).unwrap(),
            now: Instant::from_millis(1),
            removed: Vec::new(),
            sequence: 0,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
        self.d.handle_datagram(self.now, from, bytes);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(e) = self.d.poll_event() {
            if let DirectoryEvent::Removed(name) = e {
                self.removed.push(name.to_string());
            }
        }
        let mut buf = [0u8; 1400];
        while self.d.poll_transmit(self.now, &mut buf).is_some() {}
    }

    fn run_until(&mut self, until: Instant) {
        while let Some(t) = self.d.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t.max(self.now);
            self.d.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    fn register(&mut self, name: &str) {
        self.sequence += 1;
        let r = RegisterRequest {
            request: self.sequence as u32,
            registrant: 1,
            sequence: self.sequence,
            lease: Duration::from_secs(300),
            registration: service(name, 1),
        };
        let mut buf = [0u8; 1400];
        let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
        self.send(&buf[..n]);
    }

    fn unregister(&mut self, name: &str) {
        self.sequence += 1;
        let u = UnregisterRequest {
            request: self.sequence as u32,
            registrant: 1,
            sequence: self.sequence,
            name: ServiceName::new(name).unwrap(),
        };
        let mut buf = [0u8; 1400];
        let n = wire::encode(&Environment::default(), &u, &mut buf).unwrap();
        self.send(&buf[..n]);
    }
}

#[test]
fn finished_removals_are_reaped_on_time_with_no_other_wake_up() {
    // Issue 14, finding 9: reaping was bounded per wake-up and poll_timeout scheduled
    // none for it (616 of a 1,000-removal burst still held 4 s after the last
    // notification). Here beacons and sweeps are minutes apart: only the reaping
    // deadline wakes the directory.
    const N: usize = 1_000;
    let mut c = config("reap");
    c.beacon_interval = Duration::from_secs(300);
    c.sweep_period = Duration::from_secs(300);
    c.max_lease = Duration::from_secs(300);
    let retention = c.tombstone_retention;
    let mut solo = Solo::new(c, N);
    for i in 0..N {
        solo.register(&format!("s{i}"));
    }
    solo.run_until(solo.now + Duration::from_secs(1));
    assert_eq!(solo.d.live(), N);
    for i in 0..N {
        solo.unregister(&format!("s{i}"));
    }
    let unregistered = solo.now;
    // The notifications take about a second; the tombstones stay for the retention.
    solo.run_until(unregistered + Duration::from_secs(5));
    assert_eq!(solo.d.len(), N, "tombstones are kept");
    assert_eq!(solo.d.live(), 0);
    solo.run_until(unregistered + retention + Duration::from_millis(1));
    assert_eq!(solo.d.len(), 0, "every tombstone reaped at its time");
    assert_eq!(solo.removed.len(), N, "and reported removed");
    assert!(
        solo.d.poll_timeout().is_some_and(|t| t > solo.now),
        "nothing left due"
    );
}

#[test]
fn an_unregister_and_a_register_reordered_leave_the_service_registered() {
    // Issue 14, finding 6: with only 0-200 us of jitter, the Unregister arrived after
    // the Register that followed it and removed the new registration.
    let mut lost = Vec::new();
    for seed in 0..20u64 {
        let mut sim = Sim::new(seed, Faults::none(), 16);
        let r = sim.add_client(None, 1);
        let l = sim.add_client(Some(Interest::all()), 16);
        sim.register(r, service("flip", 7000));
        sim.run(Duration::from_millis(500));
        // Both leave at the same instant, the Unregister first.
        sim.unregister(r, "flip");
        sim.register(r, service("flip", 7000));
        sim.run(Duration::from_millis(300));
        let registered = sim.live().contains_key("flip");
        let seen = sim.nodes[l].view.services.contains_key("flip");
        if !registered || !seen {
            lost.push(seed);
        }
        assert_clean(&sim);
    }
    assert!(lost.is_empty(), "lost the registration with seeds {lost:?}");
}

fn key() -> Key {
    Key::new(1, b"herald-test-key-number-01").unwrap()
}

/// Directories 0 and 1 sharing a store, with keys.
fn keyed_replicated(seed: u64) -> Sim {
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(Keys::new(key()));
    config.version_floor = Version(1_000_000_000);
    let mut sim = Sim::replicated_with_config(
        seed,
        Faults::none(),
        16,
        2,
        Duration::from_millis(3),
        config,
    );
    sim.client_keys = Some(Keys::new(key()));
    sim
}

/// The last request of `kind` ("register" or "unregister") captured to `to`.
fn last_captured(sim: &Sim, to: SocketAddr, kind: &str) -> (SocketAddr, Vec<u8>) {
    sim.captured
        .iter()
        .rev()
        .find(|(_, dest, bytes)| {
            *dest == to
                && auth::open(&Keys::new(key()), bytes)
                    .ok()
                    .and_then(|(inner, _)| wire::decode_authenticated(inner).ok())
                    .is_some_and(|f| match f.message {
                        Message::Register(_) => kind == "register",
                        Message::Unregister(_) => kind == "unregister",
                        _ => false,
                    })
        })
        .map(|(from, _, bytes)| (*from, bytes.clone()))
        .unwrap_or_else(|| panic!("no {kind} captured"))
}

#[test]
fn a_request_replayed_to_another_directory_of_the_environment_is_refused() {
    // Issue 15, finding 3: a captured Register replayed to directory B after the owner
    // unregistered brought the service back; a captured Unregister replayed after the
    // owner registered again removed it.
    for seed in SEEDS {
        let mut sim = keyed_replicated(seed);
        sim.next_first_directory = 0;
        let r = sim.add_client(None, 1);
        let l = sim.add_client(Some(Interest::all()), 16);
        let a = nth_directory(0).socket_addr();
        let b = nth_directory(1).socket_addr();
        sim.capture = true;
        sim.register(r, service("target", 1000));
        sim.run(Duration::from_secs(2));
        let (from, register) = last_captured(&sim, a, "register");
        sim.unregister(r, "target");
        sim.run(Duration::from_secs(3));
        assert!(sim.live_at(0).is_empty() && sim.live_at(1).is_empty());

        sim.inject(from, b, &register);
        sim.run(Duration::from_millis(500));
        assert!(
            sim.live_at(0).is_empty() && sim.live_at(1).is_empty(),
            "seed {seed}: a replayed Register brought the service back"
        );
        assert!(sim.directories[1].directory.stats().out_of_order >= 1);

        // The owner registers again; its captured Unregister is replayed to B.
        sim.register(r, service("target", 1000));
        sim.run(Duration::from_secs(2));
        let (from, unregister) = last_captured(&sim, a, "unregister");
        assert!(sim.live_at(1).contains_key("target"), "seed {seed}");
        sim.inject(from, b, &unregister);
        sim.run(Duration::from_millis(500));
        assert!(
            sim.live_at(0).contains_key("target") && sim.live_at(1).contains_key("target"),
            "seed {seed}: a replayed Unregister removed the live service"
        );
        let view = &sim.nodes[l].view;
        assert!(view.services.contains_key("target"), "seed {seed}");
        assert_eq!(view.unregistered.get("target"), Some(&1), "seed {seed}");
        assert_clean(&sim);
    }
}

#[test]
fn a_registrant_id_used_from_a_clock_ahead_does_not_silence_a_correct_clock() {
    // Issue 15, finding 7: a registrant id used once from a clock up to 30 s ahead made
    // later frames from a correct clock count as replays, dropped without an answer.
    let mut config = DirectoryConfig::new(directory_location(), group());
    config.keys = Some(Keys::new(key()));
    let floor = 1_000_000_000u64;
    config.version_floor = Version(floor);
    let mut sim = Sim::with_config(3, Faults::none(), 16, config);
    let add = |sim: &mut Sim, ahead: Duration| {
        let mut c = ClientConfig::new(0xc10c);
        c.directories.push(directory_location()).unwrap();
        c.keys = Some(Keys::new(key()));
        c.lease = Duration::from_secs(3);
        c.clock_floor = floor + sim.now.as_micros() + ahead.as_micros();
        let i = sim.nodes.len();
        sim.push_node(SocketAddr::new(ip(50 + i as u8), 40000), c, 4)
    };
    let ahead = add(&mut sim, Duration::from_secs(29));
    sim.register(ahead, service("clocked", 1));
    sim.run(Duration::from_millis(500));
    assert!(sim.live().contains_key("clocked"));
    sim.nodes[ahead].crashed = true;

    // The same registrant id from a correct clock.
    let correct = add(&mut sim, Duration::ZERO);
    sim.register(correct, service("clocked", 2));
    sim.run(Duration::from_secs(2));
    let registered = sim.nodes[correct]
        .events
        .iter()
        .any(|e| matches!(e, ClientEvent::Registered { .. }));
    assert!(registered, "{:?}", sim.nodes[correct].events);
    assert_eq!(sim.live()["clocked"].registration.locations[0].port(), 2);
}

#[test]
fn a_restart_with_finished_removals_beyond_the_capacity_still_starts() {
    // Finished removals now stay in storage for the retention time: a directory whose
    // storage holds more records than its capacity, the surplus finished removals,
    // must still start, and tell its shell to delete what it dropped.
    let mut d = Directory::new(
        config("restore"),
        Vec::leak(vec![None; 2]),
        Vec::leak(vec![0u32; 2]),
    )
    .unwrap();
    let t = Instant::from_millis(1);
    let expires = t + Duration::from_secs(60);
    let finished = RecordState::Departed { remaining: 0 };
    let stored = [
        record("a-live", 10, RecordState::Live { expires }),
        record("b-gone", 11, finished),
        record("c-gone", 12, finished),
        record("d-live", 13, RecordState::Live { expires }),
    ];
    for r in stored {
        let name = r.name().to_string();
        assert_eq!(d.restore(t, r), Ok(()), "{name}");
    }
    assert_eq!(d.live(), 2);
    let mut removed = Vec::new();
    while let Some(event) = d.poll_event() {
        if let DirectoryEvent::Removed(name) = event {
            removed.push(name.to_string());
        }
    }
    removed.sort();
    assert_eq!(removed, ["b-gone", "c-gone"]);
    // A third live service does not fit: that is a real refusal.
    let more = record("e-live", 14, RecordState::Live { expires });
    assert_eq!(d.restore(t, more), Err(RegistryError::Full));
    // And the dropped removals are not brought back by a late copy of an older state.
    d.apply(t, record("b-gone", 5, RecordState::Live { expires }))
        .unwrap();
    assert!(d.record("b-gone").is_none());
}

/// A directory restarted from storage restores states its last run (or, with a shared
/// store, another directory while it was down) may never have announced. This run's
/// first link must name as `previous` a version past every restored one, so that a
/// listener that heard less sees a link missing and asks (and is answered with a
/// snapshot). It named the version clock's start instead: a listener whose `as_of` a
/// faster peer's versions had taken past that clock took the link as following what it
/// held, and kept the state a change made during the downtime had replaced (history
/// seed 4372812).
#[test]
fn a_restarted_directorys_first_link_follows_every_restored_version() {
    let mut d = new_directory(config("restart"), 8);
    let t = Instant::from_millis(1);
    let expires = t + Duration::from_secs(60);
    // Restored at a version far past this directory's clock (a peer's clock ahead).
    let restored = 50_000_000;
    d.restore(
        t,
        record(
            "changed-while-down",
            restored,
            RecordState::Live { expires },
        ),
    )
    .unwrap();
    let r = RegisterRequest {
        request: 1,
        registrant: 2,
        sequence: 1,
        lease: Duration::from_secs(60),
        registration: service("after-restart", 2),
    };
    let mut buf = [0u8; 1400];
    let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
    let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), 4000);
    d.handle_datagram(t, from, &buf[..n]);
    let mut first_link = None;
    let mut now = t;
    for _ in 0..100 {
        d.handle_timeout(now);
        while let Some(tx) = d.poll_transmit(now, &mut buf) {
            if let Ok(frame) = wire::decode(&buf[..tx.len]) {
                if let Message::Announce(header, _) = frame.message {
                    first_link.get_or_insert(header);
                }
            }
        }
        if first_link.is_some() {
            break;
        }
        now = d
            .poll_timeout()
            .unwrap_or(now + Duration::from_millis(10))
            .max(now);
    }
    let header = first_link.expect("the new registration was announced");
    assert!(
        header.previous.0 >= restored,
        "the first link names {:?} as previous, below the restored version {restored}",
        header.previous
    );
}

/// Registers 1,000 new names into a directory of `capacity` that holds `tombstones`
/// finished removals, old enough to be evicted and too young to be reaped, the way a
/// shell drives it (events and datagrams drained after every request). Returns how long
/// the registrations took.
fn register_among_tombstones(capacity: usize, tombstones: usize) -> std::time::Duration {
    const NEW: usize = 1_000;
    let mut solo = Solo::new(config("churn"), capacity);
    for i in 0..tombstones {
        let finished = RecordState::Departed { remaining: 0 };
        let old = record(&format!("old{i:05}"), 1 + i as u64, finished);
        solo.d.apply(solo.now, old).unwrap();
    }
    solo.drain();
    // Past the replication bound (evictable), within the retention (not reaped).
    solo.run_until(solo.now + Duration::from_secs(10));
    let started = std::time::Instant::now();
    for i in 0..NEW {
        solo.register(&format!("new{i:05}"));
    }
    let took = started.elapsed();
    assert_eq!(solo.d.live(), NEW);
    assert_eq!(solo.d.len(), (tombstones + NEW).min(capacity));
    took
}

#[test]
fn a_registry_full_of_old_tombstones_takes_new_names_as_fast_as_one_with_room() {
    // Each registration into a registry full of tombstones evicts one. The eviction and
    // the report of the evicted name each walked the whole registry: with 16,384 slots,
    // registering 1,000 names took 17 times as long as with room (250-300 ms against
    // 15 ms over loopback), a cost any client could impose by churning names. The
    // ratio is taken in one run, the best of three of each, so a loaded machine slows
    // both alike.
    const CAPACITY: usize = 16_384;
    let (mut full, mut room) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..3 {
        full = full.min(register_among_tombstones(CAPACITY, CAPACITY));
        room = room.min(register_among_tombstones(CAPACITY, CAPACITY - 1_000));
    }
    eprintln!("1,000 registrations: {full:?} into a full registry, {room:?} with room");
    assert!(
        full < room * 4,
        "a full registry took {full:?}, one with room {room:?}"
    );
}

/// Sends 1,000 keep-alives of a registrant holding 4 services to a directory that also
/// holds `others` services of other registrants, the way a shell drives it. Returns
/// how long they took.
fn keep_alives_among(others: usize) -> std::time::Duration {
    const KEEP_ALIVES: u64 = 1_000;
    let capacity = others + 8;
    let mut solo = Solo::new(config("keep-alives"), capacity);
    let expires = solo.now + Duration::from_secs(300);
    for i in 0..others {
        let mut live = record(
            &format!("other{i:05}"),
            1 + i as u64,
            RecordState::Live { expires },
        );
        live.registrant = 1_000 + i as u64;
        solo.d.apply(solo.now, live).unwrap();
    }
    let mut held = wire::Holdings::default();
    for i in 0..4 {
        let name = format!("mine{i}");
        solo.register(&name);
        held.add(&service(&name, 1));
    }
    solo.drain();
    assert_eq!(solo.d.live(), others + 4);
    let started = std::time::Instant::now();
    for k in 0..KEEP_ALIVES {
        solo.sequence += 1;
        let keep_alive = wire::KeepAliveRequest {
            request: k as u32 + 1,
            registrant: 1,
            sequence: solo.sequence,
            lease: Duration::from_secs(300),
            held,
        };
        let mut buf = [0u8; 1400];
        let n = wire::encode(&Environment::default(), &keep_alive, &mut buf).unwrap();
        solo.send(&buf[..n]);
    }
    let took = started.elapsed();
    assert_eq!(
        solo.d.stats().renewals,
        4 * KEEP_ALIVES,
        "every keep-alive renewed"
    );
    took
}

#[test]
fn a_keep_alive_costs_the_same_among_many_registrants_as_among_few() {
    // A keep-alive found its registrant's records by two passes over the registry: with
    // 16,384 services of other registrants, a thousand keep-alives took about 40 times
    // as long as with 64, so that keep-alives (one small datagram each) were a way to
    // spend the directory's CPU. The ratio is taken in one run, the best of three.
    let (mut many, mut few) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..3 {
        many = many.min(keep_alives_among(16_384));
        few = few.min(keep_alives_among(64));
    }
    eprintln!("1,000 keep-alives: {many:?} among 16,384 others, {few:?} among 64");
    assert!(
        many < few * 4,
        "among many took {many:?}, among few {few:?}"
    );
}
