//! Directories that share their subscriber table through a replicated store (as the
//! etcd cluster does): only the publisher delivers, a replica holds the table and sends
//! its subscribers nothing, and a new publisher continues from the cursors its
//! predecessor left, so that a subscriber takes every change exactly once across the
//! publisher's death whichever directory it talks to.

mod support;

use herald_core::directory::{SubscriberEvent, SubscriberSlot, MAX_SUBSCRIBER_LEN};
use herald_core::wire::{decode, Message};
use herald_core::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use support::{group, ip, service, wall};

fn leak<T: Clone>(value: T, n: usize) -> &'static mut [T] {
    Vec::leak(vec![value; n])
}

fn location(last: u8) -> Location {
    Location::new(ip(last), 37399).unwrap()
}

fn directory(at: Location) -> Directory<'static> {
    directory_from(at, Version(1_000))
}

/// A directory whose version clock starts at `floor`.
fn directory_from(at: Location, floor: Version) -> Directory<'static> {
    let mut config = DirectoryConfig::new(at, group());
    config.default_lease = Duration::from_secs(3);
    config.min_lease = Duration::from_millis(500);
    config.sweep_period = Duration::from_secs(3600);
    config.version_floor = floor;
    let slots: &'static mut [SubscriberSlot] = leak(None, 8);
    Directory::new(config, leak(None, 64), leak(0u32, 64))
        .unwrap()
        .with_subscribers(slots)
}

fn client(id: u64, directories: &[Location], listens: bool) -> Client<'static, 4> {
    let config = client_config(id, directories, listens);
    Client::new(config, leak(None, 64), leak(0u32, 64)).unwrap()
}

/// The configuration of [`client`]: a lease of 3 s; a listener subscribes.
fn client_config(id: u64, directories: &[Location], listens: bool) -> ClientConfig {
    let mut config = ClientConfig::new(id);
    for d in directories {
        config.directories.push(*d).unwrap();
    }
    if listens {
        config.interest = Some(Interest::all());
        config.subscribe = Subscribe::Always;
    }
    config.lease = Duration::from_secs(3);
    config
}

/// What a delivery page was: changes (how many), or a snapshot page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Changes(usize),
    Snapshot,
}

/// Two directories sharing a store (every change reaches the other at once), a
/// registrant that knows both, and a subscriber; no multicast reaches anyone.
struct Cluster {
    now: Instant,
    directories: Vec<(SocketAddr, Directory<'static>, bool)>,
    registrant: (SocketAddr, Client<'static, 4>),
    subscriber: (SocketAddr, Client<'static, 4>),
    events: Vec<ClientEvent>,
    /// Delivery pages each directory sent the subscriber.
    pages: Vec<Vec<Page>>,
    /// Other datagrams each directory sent the subscriber (beacons, answers).
    others: Vec<usize>,
}

impl Cluster {
    fn new(subscriber_knows: &[Location]) -> Cluster {
        Cluster::skewed(subscriber_knows, Duration::ZERO)
    }

    /// With the first directory's clock `ahead` of the second's.
    fn skewed(subscriber_knows: &[Location], ahead: Duration) -> Cluster {
        let (a, b) = (location(1), location(2));
        let now = Instant::from_millis(1);
        let mut replica = directory(b);
        replica.set_publishing(now, false);
        let publisher = directory_from(a, Version(1_000 + ahead.as_micros()));
        Cluster {
            now,
            directories: vec![
                (a.socket_addr(), publisher, true),
                (b.socket_addr(), replica, true),
            ],
            registrant: (SocketAddr::new(ip(11), 40001), client(9, &[a, b], false)),
            subscriber: (
                SocketAddr::new(ip(10), 40000),
                client(7, subscriber_knows, true),
            ),
            events: Vec::new(),
            pages: vec![Vec::new(); 2],
            others: vec![0; 2],
        }
    }

    fn send_to_directory(&mut self, to: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        if let Some((_, d, _)) = self
            .directories
            .iter_mut()
            .find(|(at, _, alive)| *at == to && *alive)
        {
            d.handle_datagram(now, from, bytes);
        }
    }

    /// Moves every datagram and store change until nothing moves.
    fn pump(&mut self) {
        let mut buf = [0u8; 1400];
        let now = self.now;
        loop {
            let mut moved = false;
            for i in 0..self.directories.len() {
                let (at, _, alive) = self.directories[i];
                if !alive {
                    continue;
                }
                while let Some(t) = self.directories[i].1.poll_transmit(now, &mut buf) {
                    moved = true;
                    let bytes = &buf[..t.len];
                    if t.destination == self.subscriber.0 {
                        match decode(bytes).unwrap().message {
                            Message::DeliveredChanges(_, _, items) => {
                                self.pages[i].push(Page::Changes(items.count()))
                            }
                            Message::DeliveredSnapshot(..) => self.pages[i].push(Page::Snapshot),
                            _ => self.others[i] += 1,
                        }
                        self.subscriber.1.handle_datagram(now, at, bytes);
                    } else if t.destination == self.registrant.0 {
                        self.registrant.1.handle_datagram(now, at, bytes);
                    }
                }
                moved |= self.replicate(i);
            }
            for listener in [false, true] {
                loop {
                    let (from, c) = if listener {
                        (self.subscriber.0, &mut self.subscriber.1)
                    } else {
                        (self.registrant.0, &mut self.registrant.1)
                    };
                    let Some(t) = c.poll_transmit(now, &mut buf) else {
                        break;
                    };
                    moved = true;
                    let bytes = buf[..t.len].to_vec();
                    self.send_to_directory(t.destination, from, &bytes);
                }
            }
            while let Some(e) = self.subscriber.1.poll_event() {
                self.events.push(e);
            }
            while self.registrant.1.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    /// Hands directory `i`'s storage events to the other live directory, through the
    /// stored encodings; true when there were any.
    fn replicate(&mut self, i: usize) -> bool {
        let now = self.now;
        let mut records = Vec::new();
        let mut subscribers = Vec::new();
        let d = &mut self.directories[i].1;
        while let Some(event) = d.poll_event() {
            records.push(match event {
                DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r) => Ok(r.clone()),
                DirectoryEvent::Removed(name) => Err(name),
            });
        }
        while let Some(event) = d.poll_subscriber_event() {
            subscribers.push(match event {
                SubscriberEvent::Stored(s) => {
                    let mut buf = [0u8; MAX_SUBSCRIBER_LEN];
                    Ok(s.to_bytes(wall(now), &mut buf).unwrap().to_vec())
                }
                SubscriberEvent::Removed(id) => Err(id),
            });
        }
        let any = !records.is_empty() || !subscribers.is_empty();
        for (j, (_, other, alive)) in self.directories.iter_mut().enumerate() {
            if j == i || !*alive {
                continue;
            }
            for r in &records {
                match r {
                    Ok(record) => other.apply(now, record.clone()).unwrap(),
                    Err(name) => other.forget(now, name.as_str()),
                }
            }
            for s in &subscribers {
                match s {
                    Ok(bytes) => {
                        let s = Subscriber::from_bytes(bytes, wall(now)).unwrap();
                        other.apply_subscriber(now, s).unwrap();
                    }
                    Err(id) => other.forget_subscriber(now, *id),
                }
            }
        }
        any
    }

    /// Runs for `span` in steps of 10 ms.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            for (_, d, alive) in self.directories.iter_mut() {
                if *alive {
                    d.handle_timeout(now);
                }
            }
            self.registrant.1.handle_timeout(now);
            self.subscriber.1.handle_timeout(now);
            self.pump();
        }
    }

    fn register(&mut self, name: &str, port: u16) {
        self.registrant
            .1
            .register(self.now, service(name, port))
            .unwrap();
    }

    fn unregister(&mut self, name: &str) {
        let name = ServiceName::new(name).unwrap();
        self.registrant.1.unregister(self.now, &name).unwrap();
    }

    /// The first directory (the publisher) dies; the second is elected and catches up.
    fn kill_publisher(&mut self) {
        self.directories[0].2 = false;
        let now = self.now;
        let d = &mut self.directories[1].1;
        d.set_publishing(now, true);
        d.caught_up(now);
    }

    fn count(&self) -> HashMap<(bool, String), usize> {
        let mut counts = HashMap::new();
        for e in &self.events {
            let key = match e {
                ClientEvent::Discovered(s) => (true, s.registration.name.as_str().to_owned()),
                ClientEvent::Unregistered(s) => (false, s.registration.name.as_str().to_owned()),
                _ => continue,
            };
            *counts.entry(key).or_default() += 1;
        }
        counts
    }

    fn assert_once(&self, discovered: &[&str], unregistered: &[&str]) {
        let counts = self.count();
        let mut expected = HashMap::new();
        for n in discovered {
            expected.insert((true, (*n).to_owned()), 1);
        }
        for n in unregistered {
            expected.insert((false, (*n).to_owned()), 1);
        }
        assert_eq!(counts, expected, "{:#?}", self.events);
    }
}

/// The subscriber knows only the second directory, a replica: the publisher delivers to
/// it (the subscription reached it through the store), the replica sends it nothing
/// and passes its acknowledgements on, and once the publisher dies the second directory
/// continues from the stored cursor with changes, never a snapshot, and no
/// re-subscription.
#[test]
fn a_subscriber_of_a_replica_gets_every_change_once_across_the_publishers_death() {
    let mut c = Cluster::new(&[location(2)]);
    c.run(Duration::from_secs(1));
    for (_, d, _) in &c.directories {
        assert_eq!(d.subscribers().count(), 1, "held by both");
    }
    c.register("before", 8001);
    c.register("flash", 8002);
    c.run(Duration::from_secs(1));
    c.unregister("flash");
    c.run(Duration::from_secs(2));
    c.assert_once(&["before", "flash"], &["flash"]);
    // Told by its directory that it does not deliver, with nowhere else to go, it is
    // not cut off.
    let unreachable = |e: &ClientEvent| matches!(e, ClientEvent::Unreachable);
    assert!(!c.events.iter().any(unreachable), "{:#?}", c.events);
    assert!(!c.pages[0].is_empty(), "the publisher delivered");
    assert!(c.pages[1].is_empty(), "a replica delivers nothing");
    // The replica's cursor, from the subscriber's acknowledgements, reached the
    // publisher: it re-sends little.
    let resends = c.directories[0].1.stats().delivery_resends;
    let sent = c.pages[0].len();

    c.kill_publisher();
    c.register("after", 8003);
    c.unregister("before");
    c.run(Duration::from_secs(8));
    c.assert_once(&["before", "flash", "after"], &["flash", "before"]);
    let changes = |p: &Page| matches!(p, Page::Changes(_));
    assert!(
        !c.pages[1].is_empty() && c.pages[1].iter().all(changes),
        "the new publisher continues with changes: {:?}",
        c.pages[1]
    );
    eprintln!(
        "first publisher: {sent} delivery pages, {resends} re-sent; second: {:?}",
        c.pages[1]
    );
    // What it took as a replica went once (in its first delivery): a later change
    // comes alone.
    let before = c.pages[1].len();
    c.register("later", 8004);
    c.run(Duration::from_secs(2));
    c.assert_once(&["before", "flash", "after", "later"], &["flash", "before"]);
    assert_eq!(
        c.pages[1][before..].first(),
        Some(&Page::Changes(1)),
        "{:?}",
        c.pages[1]
    );
}

/// The subscriber knows both and talks to the publisher: the replica holds its
/// subscription and sends it nothing; when the publisher dies, the new one delivers the
/// next change under the stored subscription (changes from the stored cursor) before
/// the subscriber has moved, and every change is reported once.
#[test]
fn a_subscriber_of_the_publisher_gets_every_change_once_when_it_dies() {
    let mut c = Cluster::new(&[location(1), location(2)]);
    c.run(Duration::from_secs(1));
    c.register("before", 8001);
    c.register("flash", 8002);
    c.run(Duration::from_secs(1));
    c.unregister("flash");
    c.run(Duration::from_secs(2));
    c.assert_once(&["before", "flash"], &["flash"]);
    assert_eq!(c.directories[1].1.subscribers().count(), 1, "replicated");
    assert!(
        c.pages[1].is_empty() && c.others[1] == 0,
        "the replica sent nothing"
    );

    c.kill_publisher();
    c.register("after", 8003);
    c.unregister("before");
    c.run(Duration::from_secs(10));
    c.assert_once(&["before", "flash", "after"], &["flash", "before"]);
    assert!(
        matches!(c.pages[1].first(), Some(Page::Changes(_))),
        "the first delivery continues from the stored cursor: {:?}",
        c.pages[1]
    );
}

/// The publisher's clock ran 10 s ahead of the replica's: the replica, elected, takes
/// its versions above the cursors it holds, so that the subscriber (which knows only
/// it) takes its deliveries, every change once.
#[test]
fn a_new_publisher_whose_clock_is_behind_continues_above_the_cursors() {
    let mut c = Cluster::skewed(&[location(2)], Duration::from_secs(10));
    c.run(Duration::from_secs(1));
    c.register("before", 8001);
    c.run(Duration::from_secs(2));
    c.assert_once(&["before"], &[]);
    c.kill_publisher();
    c.register("after", 8003);
    c.unregister("before");
    c.run(Duration::from_secs(8));
    c.assert_once(&["before", "after"], &["before"]);
}

/// A subscriber of a replica acknowledges there; the cursor reaches the publisher,
/// which then stops re-sending: a quiet registry costs no deliveries.
#[test]
fn acknowledgements_through_a_replica_stop_the_publishers_resends() {
    let mut c = Cluster::new(&[location(2)]);
    c.run(Duration::from_secs(1));
    c.register("one", 8001);
    c.run(Duration::from_secs(2));
    c.assert_once(&["one"], &[]);
    let sent = c.pages[0].len();
    c.run(Duration::from_secs(10));
    assert_eq!(c.pages[0].len(), sent, "re-sent: {:?}", c.pages[0]);
}

/// A subscriber that restarts (the same id from another port, holding nothing) at a
/// replica while nothing changes: the publisher takes the new subscription from the
/// store in place of the old one and delivers the registry to it at once, not at the
/// next change.
#[test]
fn a_subscription_replaced_through_the_store_is_delivered_without_a_change() {
    let mut c = Cluster::new(&[location(2)]);
    c.register("before", 8001);
    c.run(Duration::from_secs(2));
    c.assert_once(&["before"], &[]);
    c.subscriber = (
        SocketAddr::new(ip(10), 40010),
        client(7, &[location(2)], true),
    );
    c.events.clear();
    c.run(Duration::from_secs(2));
    c.assert_once(&["before"], &[]);
}

/// A subscriber with a long lease (no renewal before the publisher dies) that took its
/// first delivery from the publisher: the cursor its acknowledgement moved is in the
/// store, so the new publisher continues from it with changes, not a snapshot of
/// everything (it sent only snapshots before the first cursor was stored).
#[test]
fn a_new_publisher_continues_from_the_first_acknowledged_cursor_without_a_renewal() {
    let mut c = Cluster::new(&[location(1), location(2)]);
    let mut config = client_config(7, &[location(1), location(2)], true);
    config.lease = Duration::from_secs(60);
    c.subscriber.1 = Client::new(config, leak(None, 64), leak(0u32, 64)).unwrap();
    c.register("before", 8001);
    c.run(Duration::from_secs(2));
    c.assert_once(&["before"], &[]);
    assert!(
        c.pages[0].contains(&Page::Snapshot),
        "the first delivery is a snapshot: {:?}",
        c.pages[0]
    );

    c.kill_publisher();
    c.register("after", 8003);
    c.run(Duration::from_secs(3));
    c.assert_once(&["before", "after"], &[]);
    // (Once the subscriber fails over it subscribes afresh there, as it does when the
    // publisher it talked to dies; what comes before is under the stored cursor.)
    assert!(
        matches!(c.pages[1].first(), Some(Page::Changes(_))),
        "the new publisher continues from the stored cursor: {:?}",
        c.pages[1]
    );
}

/// The publisher a subscriber talks to dies, and the new one delivers under the stored
/// subscription before the subscriber has moved: the subscriber acknowledges to the
/// directory that delivered (one it knows), not to its dead one, so nothing is re-sent
/// while it fails over.
#[test]
fn a_subscriber_acknowledges_a_new_publishers_deliveries_to_it() {
    let mut c = Cluster::new(&[location(1), location(2)]);
    c.register("before", 8001);
    c.run(Duration::from_secs(2));
    c.assert_once(&["before"], &[]);

    c.kill_publisher();
    c.register("after", 8003);
    c.run(Duration::from_secs(10));
    c.assert_once(&["before", "after"], &[]);
    assert_eq!(
        c.directories[1].1.stats().delivery_resends,
        0,
        "the new publisher re-sent: {:?}",
        c.pages[1]
    );
}
