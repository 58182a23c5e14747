//! What a listener believes: only its directory's word, no resurrection after a burst
//! of removals, convergence after a failover, no replay from another address, no
//! poisoning by forged versions. Datagrams are written by hand and fed to a real
//! `Client` in simulated time.

use herald_core::auth::{self, Key, Keys};
use herald_core::client::Discovered;
use herald_core::wire::{
    self, AnnounceHeader, BatchWriter, Beacon, Change, Message, PageHeader, PageKind,
};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn location(last: u8) -> Location {
    Location::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 37399).unwrap()
}

fn env() -> Environment {
    Environment::default()
}

fn svc(name: &str, port: u16, version: u64) -> Service {
    Service {
        registration: Registration::new(
            ServiceName::new(name).unwrap(),
            &[Location::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port).unwrap()],
        )
        .unwrap(),
        version: Version(version),
    }
}

fn listener(directories: &[Location], keys: Option<Keys>, table: usize) -> Client<'static, 1> {
    let slots: &'static mut [Discovered] = Vec::leak(vec![None; table]);
    let index: &'static mut [u32] = Vec::leak(vec![0u32; table]);
    let mut config = ClientConfig::new(77);
    for d in directories {
        config.directories.push(*d).unwrap();
    }
    config.interest = Some(Interest::all());
    config.keys = keys;
    let mut client = Client::new(config, slots, index).unwrap();
    client.request_snapshot(Instant::from_millis(1));
    client
}

fn announce(directory: Location, as_of: u64, changes: &[Change]) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let header = AnnounceHeader {
        directory,
        as_of: Version(as_of),
        previous: Version(0),
    };
    let mut w = BatchWriter::announce(&env(), &header, &mut buf).unwrap();
    for c in changes {
        assert!(w.push(c));
    }
    let n = w.len();
    buf[..n].to_vec()
}

fn page(request: u32, as_of: u64, services: &[Service]) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let header = PageHeader {
        request,
        as_of: Version(as_of),
        after: None,
        complete: true,
    };
    let kind = if request == 0 {
        PageKind::Sync
    } else {
        PageKind::Snapshot
    };
    let mut w = BatchWriter::page(&env(), &header, kind, &mut buf).unwrap();
    for s in services {
        assert!(w.push(s));
    }
    w.set_complete(true);
    let n = w.len();
    buf[..n].to_vec()
}

fn beacon(directory: Location, as_of: u64, services: u32) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    let b = Beacon {
        directory,
        as_of: Version(as_of),
        services,
        publishing: true,
        digest: 0,
    };
    let n = wire::encode(&env(), &b, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn sealed(keys: &Keys, counter: u64, frame: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 1400];
    buf[..frame.len()].copy_from_slice(frame);
    let n = auth::seal(keys, counter, &mut buf, frame.len()).unwrap();
    buf[..n].to_vec()
}

/// The discovery events so far.
fn events(client: &mut Client<'_, 1>) -> Vec<ClientEvent> {
    let mut out = Vec::new();
    while let Some(e) = client.poll_event() {
        if matches!(
            e,
            ClientEvent::Discovered(_)
                | ClientEvent::Changed(_)
                | ClientEvent::Unregistered(_)
                | ClientEvent::Evicted(_)
        ) {
            out.push(e);
        }
    }
    out
}

/// Runs the client's timers to `until`, answering every snapshot request it sends
/// with `answer` (given the request id and the directory asked).
fn run(
    client: &mut Client<'_, 1>,
    now: &mut Instant,
    until: Instant,
    mut answer: impl FnMut(u32, SocketAddr) -> Option<Vec<u8>>,
) {
    let mut buf = [0u8; 1400];
    loop {
        while let Some(t) = client.poll_transmit(*now, &mut buf) {
            let bytes = &buf[..t.len];
            let frame = match auth::open(&keys(), bytes) {
                Ok((inner, _)) => wire::decode_authenticated(inner).ok(),
                Err(_) => wire::decode(bytes).ok(),
            };
            if let Some(Message::SnapshotRequest(r)) = frame.map(|f| f.message) {
                if let Some(reply) = answer(r.request, t.destination) {
                    client.handle_datagram(*now, t.destination, &reply);
                }
            }
        }
        match client.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                client.handle_timeout(*now);
            }
            _ => break,
        }
    }
    *now = until.max(*now);
    client.handle_timeout(*now);
}

fn keys() -> Keys {
    Keys::new(Key::new(1, b"herald-listener-test-key").unwrap())
}

fn name_of(e: &ClientEvent) -> (&'static str, String) {
    match e {
        ClientEvent::Discovered(s) => ("discovered", s.name().to_string()),
        ClientEvent::Changed(s) => ("changed", s.name().to_string()),
        ClientEvent::Unregistered(s) => ("unregistered", s.name().to_string()),
        ClientEvent::Evicted(s) => ("evicted", s.name().to_string()),
        _ => ("other", String::new()),
    }
}

/// Issue 14, finding 3: 40 removals overflow the listener's ring of 16; late copies of
/// the original announcements must not bring any service back, and a page written
/// after the removals still brings what is really live.
#[test]
fn late_copies_after_a_burst_of_removals_bring_nothing_back() {
    let d = location(1);
    let mut client = listener(&[d], None, 64);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 1, &[]))
    });
    let from = d.socket_addr();
    let originals: Vec<Vec<u8>> = (0..40u64)
        .map(|k| {
            let s = svc(&format!("s{k:02}"), 1000 + k as u16, 10 + k);
            announce(d, 10 + k, &[Change::Registered(s)])
        })
        .collect();
    for a in &originals {
        client.handle_datagram(now, from, a);
    }
    assert_eq!(events(&mut client).len(), 40);
    for k in 0..40u64 {
        let removal = Change::Unregistered {
            name: ServiceName::new(&format!("s{k:02}")).unwrap(),
            version: Version(100 + k),
        };
        client.handle_datagram(now, from, &announce(d, 100 + k, &[removal]));
    }
    assert_eq!(events(&mut client).len(), 40);
    // The late copies (the simulator's reordering, or a duplicate).
    for a in &originals {
        client.handle_datagram(now, from, a);
    }
    let back: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert!(back.is_empty(), "services came back: {back:?}");
    assert_eq!(client.services().count(), 0);

    // A sweep written after the removals, listing s00 registered again (a newer
    // version) and s01 never seen with its old version: both are taken.
    let sweep = page(0, 200, &[svc("s00", 2000, 150), svc("zz", 3000, 5)]);
    client.handle_datagram(now, from, &sweep);
    let names: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(
        names,
        vec![
            ("discovered", "s00".to_string()),
            ("discovered", "zz".to_string())
        ]
    );
}

/// Issue 14, finding 3 with a replicated store: removals made through another
/// directory reach the publisher late, at versions below its newest, so a page it wrote
/// just before they arrived carries the same `as_of` stamp as their announcements. Once
/// the ring has forgotten such a removal, that page (arriving late) must not bring the
/// service back; the history checker found it with every fault class (seed 751:
/// "discovered v2629241 after unregistered v7908072"). A service really live at an old
/// version is still taken from a page at that stamp a second after the removal was
/// heard (no page written before it is still on its way; an idle directory's stamp
/// never rises).
#[test]
fn a_page_written_before_a_late_removal_reached_the_directory_brings_nothing_back() {
    let d = location(1);
    let from = d.socket_addr();
    let mut client = listener(&[d], None, 64);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, &[svc("late", 1, 100)]))
    });
    assert_eq!(events(&mut client).len(), 1);
    // The publisher's newest version is 500; removals made elsewhere arrive at 200 and
    // below. The page it writes at 500, before they arrive, still lists `late`.
    let before = page(0, 500, &[svc("late", 1, 100)]);
    let removal = |name: &str, version: u64| Change::Unregistered {
        name: ServiceName::new(name).unwrap(),
        version: Version(version),
    };
    client.handle_datagram(now, from, &announce(d, 500, &[removal("late", 200)]));
    assert_eq!(
        events(&mut client).iter().map(name_of).collect::<Vec<_>>(),
        vec![("unregistered", "late".to_string())]
    );
    // 16 more late removals (of names never seen) push `late` out of the ring.
    for k in 0..16u64 {
        let name = format!("other{k:02}");
        client.handle_datagram(now, from, &announce(d, 500, &[removal(&name, 150 + k)]));
    }
    // The page, overtaken in the network by the announcement, arrives 0.5 s after it.
    now += Duration::from_millis(500);
    client.handle_datagram(now, from, &before);
    let back: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert!(
        back.is_empty(),
        "the page written before the removal: {back:?}"
    );

    // The directory stays idle at 500. Once no page written before the removal can
    // still be on its way, the listener asks for a snapshot by itself: a service it
    // missed, live at an old version, comes with it.
    let mut asked = 0;
    let until = now + Duration::from_secs(2);
    run(&mut client, &mut now, until, |r, _| {
        asked += 1;
        Some(page(r, 500, &[svc("missed", 2, 90)]))
    });
    assert_eq!(asked, 1, "one snapshot asked for");
    let found: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(found, vec![("discovered", "missed".to_string())]);
}

/// Repeats of removals of names the listener does not hold (it heard an earlier copy,
/// or never held them) overflow its ring with stamps above their versions: they must
/// not hold back a service it missed, listed by a page written after every removal.
/// The rule of the commit before failed here (the history checker's convergence, seeds
/// 474 and 2281 with every fault class).
#[test]
fn repeats_of_removals_do_not_hold_back_a_missed_service() {
    let d = location(1);
    let from = d.socket_addr();
    let mut client = listener(&[d], None, 64);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 30, &[]))
    });
    for k in 0..40u64 {
        let removal = Change::Unregistered {
            name: ServiceName::new(&format!("gone{k:02}")).unwrap(),
            version: Version(10 + k % 20),
        };
        client.handle_datagram(now, from, &announce(d, 100, &[removal]));
    }
    // Written after every removal (stamped above their versions), before the repeats.
    client.handle_datagram(now, from, &page(0, 60, &[svc("missed", 2, 5)]));
    let found: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(found, vec![("discovered", "missed".to_string())]);
}

/// A listener of directory 1 that held `moving` at version 100 (from a snapshot page
/// stamped 100) and was then told by a sweep stamped 500, which no longer lists it, that
/// it is gone (unregistered through another directory): the directory, the listener
/// and the time.
fn removed_by_a_page() -> (Location, Client<'static, 1>, Instant) {
    let d = location(1);
    let mut client = listener(&[d], None, 16);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, &[svc("moving", 1, 100)]))
    });
    assert_eq!(events(&mut client).len(), 1);
    client.handle_datagram(now, d.socket_addr(), &page(0, 500, &[]));
    assert_eq!(
        events(&mut client).iter().map(name_of).collect::<Vec<_>>(),
        vec![("unregistered", "moving".to_string())]
    );
    (d, client, now)
}

/// With a replicated store, a page that does not list a state held tells that it was
/// removed at some version up to the page's stamp, not at the stamp: a registration made
/// through another directory reaches the publisher after the page, at a version below
/// its stamp, and must be taken when announced (stamped at or after the page). Late
/// copies of older announcements (stamped before the page) stay refused. The history
/// checker found the registration missing for good (every fault class, seed 5496:
/// convergence and lasting divergence).
#[test]
fn a_registration_older_than_the_page_that_removed_its_name_is_taken() {
    let (d, mut client, now) = removed_by_a_page();
    let from = d.socket_addr();
    // Late copies written before the sweep: refused.
    let old = |version: u64, as_of: u64, port: u16| {
        announce(
            d,
            as_of,
            &[Change::Registered(svc("moving", port, version))],
        )
    };
    client.handle_datagram(now, from, &old(100, 100, 1));
    client.handle_datagram(now, from, &old(300, 300, 2));
    assert_eq!(events(&mut client), vec![]);
    // Registered again through another directory at 400; the publisher applies it
    // after its sweep and announces it stamped 500.
    client.handle_datagram(now, from, &old(400, 500, 3));
    let back: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(back, vec![("discovered", "moving".to_string())]);
}

/// The same registration, older than the page that removed its name and taken when
/// announced, is then removed (at a version still below the page's stamp): the removal
/// takes it down. Before, the removal inferred from the page, remembered at the page's
/// stamp, made the listener take the newer removal for an older one, and it held the
/// service for good (history seed 3574868: a directory restarted with its versions a
/// second ahead, a peer's registration and removal below them).
#[test]
fn a_registration_taken_below_the_page_that_removed_its_name_is_removed_again() {
    let (d, mut client, now) = removed_by_a_page();
    let from = d.socket_addr();
    let registered = Change::Registered(svc("moving", 3, 400));
    client.handle_datagram(now, from, &announce(d, 500, &[registered]));
    assert_eq!(
        events(&mut client).iter().map(name_of).collect::<Vec<_>>(),
        vec![("discovered", "moving".to_string())]
    );
    // Unregistered through that directory at 450; announced stamped 600.
    let removed = Change::Unregistered {
        name: ServiceName::new("moving").unwrap(),
        version: Version(450),
    };
    client.handle_datagram(now, from, &announce(d, 600, &[removed]));
    assert_eq!(
        events(&mut client).iter().map(name_of).collect::<Vec<_>>(),
        vec![("unregistered", "moving".to_string())]
    );
    assert!(client.service("moving").is_none());
}

/// Issue 14, finding 4: the listener followed A, which removed `moved` after its
/// registrant moved to B (where it is live at an older version, B's versions being
/// B's own). A dies; the listener follows B and ends with exactly B's state after
/// B's snapshot, reporting only real differences.
#[test]
fn a_listener_that_moves_ends_with_the_new_directorys_state() {
    let a = location(1);
    let b = location(2);
    let mut client = listener(&[a, b], None, 16);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 900, &[svc("only-a", 2, 810), svc("same", 1, 800)]))
    });
    client.handle_datagram(now, a.socket_addr(), &beacon(a, 900, 2));
    client.handle_datagram(
        now,
        a.socket_addr(),
        &announce(a, 950, &[Change::Registered(svc("moved", 3, 950))]),
    );
    let mut before: Vec<_> = events(&mut client).iter().map(name_of).collect();
    let removal = Change::Unregistered {
        name: ServiceName::new("moved").unwrap(),
        version: Version(990),
    };
    client.handle_datagram(now, a.socket_addr(), &announce(a, 990, &[removal]));
    before.extend(events(&mut client).iter().map(name_of));
    assert_eq!(before.len(), 4, "{before:?}");

    // A falls silent; B beacons. B holds `moved` (at B's version 40) and `same`
    // (another version, same content), not `only-a`.
    let b_state = [svc("moved", 3, 40), svc("same", 1, 30)];
    now = Instant::from_millis(2_000);
    client.handle_timeout(now);
    client.handle_datagram(now, b.socket_addr(), &beacon(b, 50, 2));
    // The listener asks A whether it is alive; A does not answer.
    let answer = |r: u32, to: SocketAddr| (to == b.socket_addr()).then(|| page(r, 50, &b_state));
    run(&mut client, &mut now, Instant::from_millis(4_500), answer);
    assert_eq!(client.current_directory(), Some(b));
    // Within the failover grace `only-a` stays (its registrant may be moving too), and
    // `moved` is not taken at a version below A's removal of it (B might be a directory
    // of A's store that has not caught up).
    let during: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(during, Vec::<(&str, String)>::new());
    let mut t = now;
    for _ in 0..20 {
        t += Duration::from_secs(1);
        client.handle_datagram(t, b.socket_addr(), &beacon(b, 50, 2));
        run(&mut client, &mut now, t, answer);
    }
    let mut after: Vec<_> = events(&mut client).iter().map(name_of).collect();
    after.sort();
    assert_eq!(
        after,
        vec![
            ("discovered", "moved".to_string()),
            ("unregistered", "only-a".to_string())
        ]
    );
    let held: Vec<(String, u64)> = client
        .services()
        .map(|s| (s.name().to_string(), s.version.0))
        .collect();
    assert_eq!(
        held,
        vec![("moved".to_string(), 40), ("same".to_string(), 30)],
        "exactly B's state"
    );
}

/// Issue 14, failover within one store: the listener followed A, which announced
/// `gone` removed at v200 and `newer` changed to v300. A dies; the listener moves to B,
/// a directory of the same store (one version space) whose snapshot was written before
/// both changes reached it through the store. B's older states must not bring `gone`
/// back nor take `newer` back to its old content: the history checker found both
/// (seeds 4768, 6321, 8948, 8967, 9264: "discovered vX after unregistered vY"; seed
/// 3552: "changed" to an older version). Once B has caught up, the listener holds
/// exactly B's state, with no event at all.
#[test]
fn a_listener_moving_to_a_lagging_directory_of_its_store_takes_nothing_older() {
    let a = location(1);
    let b = location(2);
    let mut client = listener(&[a, b], None, 16);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, &[svc("gone", 1, 100), svc("newer", 2, 100)]))
    });
    client.handle_datagram(now, a.socket_addr(), &beacon(a, 100, 2));
    let mut before: Vec<_> = events(&mut client).iter().map(name_of).collect();
    let removal = Change::Unregistered {
        name: ServiceName::new("gone").unwrap(),
        version: Version(200),
    };
    client.handle_datagram(now, a.socket_addr(), &announce(a, 200, &[removal]));
    let change = Change::Registered(svc("newer", 3, 300));
    client.handle_datagram(now, a.socket_addr(), &announce(a, 300, &[change]));
    before.extend(events(&mut client).iter().map(name_of));
    before.sort();
    assert_eq!(
        before,
        vec![
            ("changed", "newer".to_string()),
            ("discovered", "gone".to_string()),
            ("discovered", "newer".to_string()),
            ("unregistered", "gone".to_string()),
        ]
    );

    // A falls silent; B beacons, and answers from its state before both changes.
    let behind = [svc("gone", 1, 100), svc("newer", 2, 100)];
    now = Instant::from_millis(2_000);
    client.handle_timeout(now);
    client.handle_datagram(now, b.socket_addr(), &beacon(b, 150, 2));
    let lagging = |r: u32, to: SocketAddr| (to == b.socket_addr()).then(|| page(r, 150, &behind));
    run(&mut client, &mut now, Instant::from_millis(4_500), lagging);
    assert_eq!(client.current_directory(), Some(b));
    client.handle_datagram(now, b.socket_addr(), &page(0, 150, &behind));
    let during: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(during, Vec::<(&str, String)>::new(), "an older state taken");

    // B catches up: its sweeps and snapshots now list `newer` at v300 only.
    let caught_up = [svc("newer", 3, 300)];
    let answer = |r: u32, to: SocketAddr| (to == b.socket_addr()).then(|| page(r, 300, &caught_up));
    let mut t = now;
    for _ in 0..20 {
        t += Duration::from_secs(1);
        client.handle_datagram(t, b.socket_addr(), &beacon(b, 300, 1));
        client.handle_datagram(t, b.socket_addr(), &page(0, 300, &caught_up));
        run(&mut client, &mut now, t, answer);
    }
    let after: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(after, Vec::<(&str, String)>::new());
    let held: Vec<(String, u64)> = client
        .services()
        .map(|s| (s.name().to_string(), s.version.0))
        .collect();
    assert_eq!(held, vec![("newer".to_string(), 300)], "exactly B's state");
}

/// The same with a burst of removals: the listener's ring forgot the removal of `gone`
/// before it moved, and B, behind but stamping its pages above that removal's version
/// (changes made through B itself), lists `gone` at its old version. The history
/// checker found it with every fault class (seed 6514: "discovered v825152 after
/// unregistered v2674520" at the move).
#[test]
fn a_removal_forgotten_before_a_move_is_not_undone_by_a_lagging_directory() {
    let a = location(1);
    let b = location(2);
    let mut client = listener(&[a, b], None, 64);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, &[svc("gone", 1, 100)]))
    });
    client.handle_datagram(now, a.socket_addr(), &beacon(a, 100, 1));
    let mut seen: Vec<_> = events(&mut client).iter().map(name_of).collect();
    let removal = |name: &str, version: u64| Change::Unregistered {
        name: ServiceName::new(name).unwrap(),
        version: Version(version),
    };
    client.handle_datagram(
        now,
        a.socket_addr(),
        &announce(a, 200, &[removal("gone", 200)]),
    );
    for k in 0..16u64 {
        let name = format!("other{k:02}");
        client.handle_datagram(
            now,
            a.socket_addr(),
            &announce(a, 201 + k, &[removal(&name, 201 + k)]),
        );
    }
    seen.extend(events(&mut client).iter().map(name_of));
    assert_eq!(
        seen,
        vec![
            ("discovered", "gone".to_string()),
            ("unregistered", "gone".to_string())
        ]
    );

    // A falls silent; B, behind, answers with `gone` at its old version, stamped 1000.
    now = Instant::from_millis(2_000);
    client.handle_timeout(now);
    client.handle_datagram(now, b.socket_addr(), &beacon(b, 1000, 1));
    let behind = [svc("gone", 1, 100)];
    let lagging = |r: u32, to: SocketAddr| (to == b.socket_addr()).then(|| page(r, 1000, &behind));
    run(&mut client, &mut now, Instant::from_millis(4_500), lagging);
    assert_eq!(client.current_directory(), Some(b));
    let during: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(during, Vec::<(&str, String)>::new(), "an older state taken");

    // B catches up; after the grace the listener holds exactly B's state.
    let caught_up = |r: u32, to: SocketAddr| (to == b.socket_addr()).then(|| page(r, 1001, &[]));
    let mut t = now;
    for _ in 0..20 {
        t += Duration::from_secs(1);
        client.handle_datagram(t, b.socket_addr(), &beacon(b, 1001, 0));
        run(&mut client, &mut now, t, caught_up);
    }
    assert_eq!(events(&mut client), vec![]);
    assert_eq!(client.services().count(), 0);
}

/// Issue 14, finding 5: with keys, an announcement recorded from the directory and
/// replayed from another address is refused, as is one replayed from the directory's
/// own address (its window has moved on).
#[test]
fn an_announcement_replayed_from_another_address_is_refused() {
    let d = location(1);
    let k = keys();
    let t0 = 1_700_000_000_000_000u64;
    let recorded = sealed(
        &k,
        t0,
        &announce(d, 10, &[Change::Registered(svc("long-gone", 1, 10))]),
    );
    // A listener that started later: it follows d, whose counters have moved on.
    let mut client = listener(&[d], Some(k.clone()), 16);
    let mut now = Instant::from_millis(1);
    let later = t0 + 10_000_000;
    client.handle_datagram(now, d.socket_addr(), &sealed(&k, later, &beacon(d, 20, 0)));
    run(&mut client, &mut now, Instant::from_millis(10), |r, _| {
        Some(sealed(&keys(), later + 1, &page(r, 20, &[])))
    });
    let attacker = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)), 37399);
    client.handle_datagram(now, attacker, &recorded);
    client.handle_datagram(now, d.socket_addr(), &recorded);
    assert_eq!(events(&mut client), vec![], "a replay was taken");
    assert!(client.stats().replayed >= 2, "{:?}", client.stats());
}

/// Issue 14, finding 5: beacons recorded from a directory that has died, replayed from
/// another address, do not hold a listener on it.
#[test]
fn replayed_beacons_of_a_dead_directory_do_not_hold_a_listener() {
    let dead = location(1);
    let alive = location(2);
    let k = keys();
    let t0 = 1_700_000_000_000_000u64;
    let mut client = listener(&[dead, alive], Some(k.clone()), 16);
    let mut now = Instant::from_millis(1);
    let recorded: Vec<Vec<u8>> = (0..60u64)
        .map(|i| sealed(&k, t0 + i * 1_000_000, &beacon(dead, 20, 0)))
        .collect();
    client.handle_datagram(now, dead.socket_addr(), &recorded[0]);
    run(&mut client, &mut now, Instant::from_millis(10), |r, _| {
        Some(sealed(&keys(), t0 + 1, &page(r, 20, &[])))
    });
    assert_eq!(client.current_directory(), Some(dead));
    // The directory dies; its recorded beacons come back from elsewhere, while the
    // other directory beacons too.
    let attacker = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)), 37399);
    let counter = std::cell::Cell::new(t0 + 100_000_000);
    let answer = |r: u32, to: SocketAddr| {
        counter.set(counter.get() + 1);
        (to == alive.socket_addr()).then(|| sealed(&keys(), counter.get(), &page(r, 30, &[])))
    };
    for (i, replay) in recorded.iter().enumerate().skip(1).take(30) {
        let t = Instant::from_millis(10 + 500 * i as u64);
        client.handle_datagram(t, attacker, replay);
        let live = sealed(
            &k,
            t0 + 2_000_000 + 500_000 * i as u64,
            &beacon(alive, 30, 0),
        );
        client.handle_datagram(t, alive.socket_addr(), &live);
        run(&mut client, &mut now, t, answer);
    }
    assert_eq!(client.current_directory(), Some(alive));
}

/// Issue 15, finding 8 (unauthenticated): a forged announcement with version 2^64-1
/// from another address is ignored; one with a spoofed source is corrected by the
/// directory's sweeps; a table filled with forged entries recovers.
#[test]
fn forged_versions_from_the_future_do_not_poison_a_listener() {
    let d = location(1);
    let from = d.socket_addr();
    let mut client = listener(&[d], None, 4);
    let mut now = Instant::from_millis(1);
    let real = svc("billing", 80, 100);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, std::slice::from_ref(&real)))
    });
    assert_eq!(events(&mut client).len(), 1);
    let forged = announce(
        d,
        u64::MAX,
        &[Change::Registered(svc("billing", 6666, u64::MAX))],
    );
    let attacker = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99)), 40000);
    client.handle_datagram(now, attacker, &forged);
    assert_eq!(events(&mut client), vec![], "taken from another address");

    // Spoofed from the directory's own address: taken at first, then corrected by the
    // sweeps (each lists billing at its real version).
    client.handle_datagram(now, from, &forged);
    assert_eq!(events(&mut client).len(), 1, "changed by the forgery");
    for s in 1..=4u64 {
        let t = Instant::from_millis(10_000 * s);
        run(&mut client, &mut now, t, |_, _| None);
        client.handle_datagram(now, from, &page(0, 100 + s, std::slice::from_ref(&real)));
    }
    let fixed: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(fixed, vec![("changed", "billing".to_string())]);
    assert_eq!(client.service("billing"), Some(&real));

    // The table (4 entries) filled with forged services: real ones come back.
    for k in 0..4 {
        let fake = svc(&format!("fake{k}"), 1, u64::MAX - k);
        client.handle_datagram(
            now,
            from,
            &announce(d, u64::MAX, &[Change::Registered(fake)]),
        );
    }
    events(&mut client);
    let live = [real.clone(), svc("orders", 81, 101)];
    for s in 5..=12u64 {
        let t = Instant::from_millis(10_000 * s);
        run(&mut client, &mut now, t, |_, _| None);
        client.handle_datagram(now, from, &page(0, 100 + s, &live));
        events(&mut client);
    }
    let held: Vec<String> = client.services().map(|s| s.name().to_string()).collect();
    assert_eq!(held, vec!["billing".to_string(), "orders".to_string()]);
}

/// A listener with a table of two, an empty snapshot taken, and then `services`
/// announced one by one (the first two discovered); its directory's address.
fn announced_to_a_table_of_two(services: &[&Service]) -> (SocketAddr, Client<'static, 1>, Instant) {
    let d = location(1);
    let mut client = listener(&[d], None, 2);
    let mut now = Instant::from_millis(1);
    run(&mut client, &mut now, Instant::from_millis(2), |r, _| {
        Some(page(r, 100, &[]))
    });
    for s in services {
        let change = Change::Registered((*s).clone());
        client.handle_datagram(now, d.socket_addr(), &announce(d, s.version.0, &[change]));
    }
    assert_eq!(events(&mut client).len(), 2);
    (d.socket_addr(), client, now)
}

/// A listener whose table is full does not give up a live service it holds for one a
/// page lists (it used to, and reported the service it dropped as unregistered while
/// its registrant kept renewing it): the newcomer waits for room.
#[test]
fn a_full_table_gives_up_no_live_service_for_a_newcomer() {
    // Two announced services fill the table; the third is dropped.
    let (w, x, y) = (svc("a-w", 3, 103), svc("m-x", 1, 101), svc("n-y", 2, 102));
    let (from, mut client, mut now) = announced_to_a_table_of_two(&[&x, &y, &w]);
    assert_eq!(client.stats().table_full, 1);
    // The sweep lists all three, the dropped one first.
    for s in 1..=3u64 {
        now += Duration::from_secs(10);
        client.handle_timeout(now);
        client.handle_datagram(now, from, &page(0, 103, &[w.clone(), x.clone(), y.clone()]));
        let seen: Vec<_> = events(&mut client).iter().map(name_of).collect();
        assert_eq!(seen, vec![], "sweep {s}");
    }
    let held: Vec<String> = client.services().map(|s| s.name().to_string()).collect();
    assert_eq!(held, vec!["m-x".to_string(), "n-y".to_string()]);
}

/// What a full table gives up for a service its directory confirms (a state no page
/// confirmed, here one a page doubted) is reported as evicted, not as unregistered:
/// nothing says it went away.
#[test]
fn a_state_given_up_for_room_is_reported_evicted_not_unregistered() {
    let (w, x, future) = (svc("a-w", 3, 103), svc("m-x", 1, 101), svc("z-f", 2, 999));
    let (from, mut client, mut now) = announced_to_a_table_of_two(&[&x, &future]);
    // A sweep that does not list the state from the future doubts it...
    client.handle_datagram(now, from, &page(0, 103, std::slice::from_ref(&x)));
    assert_eq!(events(&mut client), vec![]);
    // ... and the next, listing a newcomer, gives it up for room.
    now += Duration::from_millis(100);
    client.handle_timeout(now);
    client.handle_datagram(now, from, &page(0, 104, &[w.clone(), x.clone()]));
    let seen: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(seen, vec![("evicted", "z-f".to_string())]);
    client.handle_datagram(now, from, &page(0, 105, &[w.clone(), x.clone()]));
    let seen: Vec<_> = events(&mut client).iter().map(name_of).collect();
    assert_eq!(seen, vec![("discovered", "a-w".to_string())]);
}
