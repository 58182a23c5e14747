//! Anti-entropy on demand: a listener that missed an announcement learns of it from
//! the announcement chain (or the beacon) and asks for exactly the changes it lacks,
//! with no sweep; and an idle directory sends beacons only.
//!
//! These tests drive one directory, one registrant and one listener by hand (simulated
//! time), so that exactly the datagrams chosen are lost.

use herald_core::wire::{self, Message, RegisterRequest};
use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

fn directory_location() -> Location {
    Location::new(ip(), 37399).unwrap()
}

fn group() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371)
}

fn registration(name: &str, port: u16) -> Registration {
    Registration::new(
        ServiceName::new(name).unwrap(),
        &[Location::new(ip(), port).unwrap()],
    )
    .unwrap()
}

fn leak<T: Clone>(value: T, n: usize) -> &'static mut [T] {
    Vec::leak(vec![value; n])
}

/// One directory whose sweep is an hour apart (so it never helps here), one
/// registrant, one listener of the services named `svc-*` (not of everything: the
/// beacon's service count does not help it either).
struct Net {
    now: Instant,
    directory: Directory<'static>,
    registrant: Client<'static, 4>,
    listener: Client<'static, 4>,
    /// Datagrams the directory sent to the listener (unicast answers included).
    to_listener: Vec<Vec<u8>>,
    /// Datagrams the listener lost.
    lost: Vec<Vec<u8>>,
}

const REGISTRANT: u16 = 5000;
const LISTENER: u16 = 5001;

impl Net {
    fn new(announcements: u8) -> Self {
        Self::with_interest(announcements, Interest::parse_all(["svc-*"]).unwrap())
    }

    fn with_interest(announcements: u8, interest: Interest) -> Self {
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.sweep_period = Duration::from_secs(3600);
        config.registration_announcements = announcements;
        config.version_floor = Version(1_000);
        let directory = Directory::new(config, leak(None, 512), leak(0u32, 512)).unwrap();
        let client = |id: u64, interest: Option<Interest>| {
            let mut config = ClientConfig::new(id);
            config.directories.push(directory_location()).unwrap();
            config.interest = interest;
            Client::new(config, leak(None, 512), leak(0u32, 512)).unwrap()
        };
        let mut net = Net {
            now: Instant::from_millis(1),
            directory,
            registrant: client(1, None),
            listener: client(2, Some(interest)),
            to_listener: Vec::new(),
            lost: Vec::new(),
        };
        net.listener.request_snapshot(net.now);
        net
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(ip(), port)
    }

    /// Moves every datagram due now; the listener loses those `lose` picks.
    fn shuttle(&mut self, lose: &mut dyn FnMut(&Message<'_>) -> bool) {
        let mut buf = [0u8; 1400];
        let dir = directory_location().socket_addr();
        for _ in 0..64 {
            let mut moved = false;
            while let Some(t) = self.registrant.poll_transmit(self.now, &mut buf) {
                let bytes = buf[..t.len].to_vec();
                self.directory
                    .handle_datagram(self.now, Self::addr(REGISTRANT), &bytes);
                moved = true;
            }
            while let Some(t) = self.listener.poll_transmit(self.now, &mut buf) {
                let bytes = buf[..t.len].to_vec();
                self.directory
                    .handle_datagram(self.now, Self::addr(LISTENER), &bytes);
                moved = true;
            }
            while let Some(_event) = self.directory.poll_event() {}
            while let Some(t) = self.directory.poll_transmit(self.now, &mut buf) {
                moved = true;
                let bytes = buf[..t.len].to_vec();
                let to_group = t.destination == group();
                if to_group || t.destination == Self::addr(REGISTRANT) {
                    self.registrant.handle_datagram(self.now, dir, &bytes);
                }
                if to_group || t.destination == Self::addr(LISTENER) {
                    let frame = wire::decode(&bytes).unwrap();
                    if lose(&frame.message) {
                        self.lost.push(bytes.clone());
                    } else {
                        self.to_listener.push(bytes.clone());
                        self.listener.handle_datagram(self.now, dir, &bytes);
                    }
                }
            }
            if !moved {
                break;
            }
        }
        while self.registrant.poll_event().is_some() {}
    }

    /// Runs until `until`, waking each machine at its deadline (at least every 10 ms).
    fn run_until(&mut self, until: Instant, lose: &mut dyn FnMut(&Message<'_>) -> bool) {
        loop {
            self.shuttle(lose);
            let next = [
                self.directory.poll_timeout(),
                self.registrant.poll_timeout(),
                self.listener.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(until)
            .max(self.now + Duration::from_micros(1))
            .min(self.now + Duration::from_millis(10));
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            self.directory.handle_timeout(self.now);
            self.registrant.handle_timeout(self.now);
            self.listener.handle_timeout(self.now);
        }
    }

    fn listener_knows(&self, name: &str) -> bool {
        self.listener.service(name).is_some()
    }

    /// Hands the listener an announcement forged as if from the directory (no keys):
    /// a chain link stamped far in the future, following the first, listing
    /// `registration` at that stamp.
    fn forge_link_from_the_future(&mut self, registration: Registration) {
        let forged = wire::AnnounceHeader {
            directory: directory_location(),
            as_of: Version(u64::MAX / 2),
            previous: Version(0),
        };
        let mut buf = [0u8; 1400];
        let mut w =
            wire::BatchWriter::announce(&Environment::default(), &forged, &mut buf).unwrap();
        assert!(w.push(&wire::Change::Registered(Service {
            registration,
            version: Version(u64::MAX / 2),
        })));
        let n = w.len();
        let dir = directory_location().socket_addr();
        self.listener.handle_datagram(self.now, dir, &buf[..n]);
    }
}

#[test]
fn a_listener_of_everything_corrects_a_state_the_count_cannot_see() {
    let mut net = Net::with_interest(3, Interest::all());
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    net.run_until(net.now + Duration::from_millis(500), &mut nothing);
    let real = net.listener.service("svc-a").cloned().unwrap();
    // A forged announcement "from the future", as if from the directory: same count,
    // a chain link that follows the one held, another location.
    net.forge_link_from_the_future(registration("svc-a", 9999));
    assert_eq!(
        net.listener.service("svc-a").unwrap().registration,
        registration("svc-a", 9999)
    );
    // The beacons' digest differs from the listener's while the count agrees: it asks
    // for snapshots, and a page a directory timeout after the first corrects the state.
    net.run_until(net.now + Duration::from_secs(10), &mut nothing);
    assert_eq!(
        net.listener.service("svc-a").unwrap().registration,
        real.registration,
        "corrected with no sweep"
    );
}

fn announces(message: &Message<'_>, name: &str) -> bool {
    match message {
        Message::Announce(_, items) => items.clone().any(|c| c.name().as_str() == name),
        _ => false,
    }
}

#[test]
fn a_listener_that_lost_an_announcement_repairs_without_a_sweep() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    // The listener loses the (only) announcement of svc-a; svc-b follows it within
    // the interval, before the beacon that would show the gap.
    let mut lose_a = |m: &Message<'_>| announces(m, "svc-a");
    net.run_until(net.now + Duration::from_millis(20), &mut lose_a);
    assert!(!net.listener_knows("svc-a"), "the announcement was lost");
    net.registrant
        .register(net.now, registration("svc-b", 8002))
        .unwrap();
    // svc-b's announcement arrives, and names the link the listener lacks.
    net.run_until(net.now + Duration::from_millis(200), &mut lose_a);
    assert!(net.listener_knows("svc-b"));
    assert!(
        net.listener_knows("svc-a"),
        "the listener asked for what it lacked at once, with no sweep"
    );
}

#[test]
fn a_listener_that_lost_the_last_announcement_repairs_at_the_next_beacon() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    // The listener loses svc-a's announcement and the beacon one interval after it.
    let mut lose_a_and_beacon =
        |m: &Message<'_>| announces(m, "svc-a") || matches!(m, Message::Beacon(_));
    net.run_until(net.now + Duration::from_millis(100), &mut lose_a_and_beacon);
    assert!(!net.listener_knows("svc-a"), "the announcement was lost");
    // Nothing else changes: the next beacon (1 s apart) shows a version not heard.
    let mut lose_a = |m: &Message<'_>| announces(m, "svc-a");
    net.run_until(net.now + Duration::from_millis(1500), &mut lose_a);
    assert!(net.listener_knows("svc-a"));
}

#[test]
fn a_repair_asks_only_for_what_is_lacking() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    // Many services the listener hears, four at a time (the registrant's room).
    let mut known = 0;
    for round in 0..50u16 {
        let names: Vec<String> = (0..4).map(|i| format!("svc-{round:02}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            net.registrant
                .register(net.now, registration(name, 9000 + round * 4 + i as u16))
                .unwrap();
        }
        net.run_until(net.now + Duration::from_millis(100), &mut nothing);
        for name in &names {
            net.registrant
                .unregister(net.now, &ServiceName::new(name).unwrap())
                .unwrap();
        }
        net.run_until(net.now + Duration::from_millis(100), &mut nothing);
        known += 4;
    }
    assert_eq!(known, 200);
    net.run_until(net.now + Duration::from_secs(2), &mut nothing);
    for name in ["svc-x", "svc-y"] {
        net.registrant
            .register(net.now, registration(name, 8001))
            .unwrap();
    }
    net.run_until(net.now + Duration::from_millis(200), &mut nothing);
    assert!(net.listener_knows("svc-x") && net.listener_knows("svc-y"));
    net.to_listener.clear();
    net.registrant
        .register(net.now, registration("svc-a", 8003))
        .unwrap();
    let mut lose_a = |m: &Message<'_>| announces(m, "svc-a");
    net.run_until(net.now + Duration::from_millis(100), &mut lose_a);
    net.registrant
        .register(net.now, registration("svc-b", 8004))
        .unwrap();
    net.run_until(net.now + Duration::from_millis(300), &mut lose_a);
    assert!(net.listener_knows("svc-a") && net.listener_knows("svc-b"));
    // What the directory sent the listener in answer: the changes since the last link
    // it held (svc-a, and svc-b if the repair crossed its announcement), not the
    // registry (two live services and two hundred removals still held as tombstones).
    let mut items = 0;
    let mut answers = 0;
    for bytes in &net.to_listener {
        match wire::decode(bytes).unwrap().message {
            Message::ChangesPage(_, changes) => {
                answers += 1;
                items += changes.count();
            }
            Message::SnapshotPage(_, services) => {
                answers += 1;
                items += services.count();
            }
            _ => {}
        }
    }
    assert_eq!(answers, 1, "one page answers the repair");
    assert!(items <= 2, "the repair carried {items} items");
}

#[test]
fn an_idle_directory_of_a_thousand_services_sends_beacons_only() {
    let config = DirectoryConfig::new(directory_location(), group());
    let mut directory = Directory::new(config, leak(None, 1024), leak(0u32, 1024)).unwrap();
    let mut buf = [0u8; 1400];
    let mut now = Instant::from_millis(1);
    let env = Environment::default();
    for i in 0..1000u32 {
        let request = RegisterRequest {
            request: i + 1,
            registrant: u64::from(i) + 1,
            sequence: 1,
            lease: Duration::from_secs(300),
            registration: registration(&format!("svc-{i:04}"), 8000),
        };
        let len = wire::encode(&env, &request, &mut buf).unwrap();
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, (i / 200) as u8, 1)), 5000);
        let bytes = buf[..len].to_vec();
        directory.handle_datagram(now, from, &bytes);
        while directory.poll_event().is_some() {}
        while directory.poll_transmit(now, &mut buf).is_some() {}
    }
    assert_eq!(directory.live(), 1000);
    // Let the announcements and their repeats go out.
    let settle = now + Duration::from_secs(2);
    let mut group_datagrams = Vec::new();
    while now < settle + Duration::from_secs(10) {
        directory.handle_timeout(now);
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            if t.destination == group() && now >= settle {
                group_datagrams.push(buf[..t.len].to_vec());
            }
        }
        now = directory
            .poll_timeout()
            .unwrap_or(now)
            .max(now + Duration::from_micros(1));
    }
    let beacons = group_datagrams
        .iter()
        .filter(|b| matches!(wire::decode(b).unwrap().message, Message::Beacon(_)))
        .count();
    let bytes: usize = group_datagrams.iter().map(|b| b.len() + 28).sum();
    println!(
        "idle 10 s, 1000 services: {} group datagrams ({beacons} beacons), {bytes} bytes with IP/UDP headers",
        group_datagrams.len()
    );
    assert_eq!(
        beacons,
        group_datagrams.len(),
        "only beacons in an idle window"
    );
    assert!(bytes <= 1850, "{bytes} bytes in 10 s");
}

/// What a directory answers a repair since `since` with, after `setup`: the kind of
/// the page (the cookie exchange done first).
fn answer_to_repair(setup: impl FnOnce(&mut Directory<'static>, Instant)) -> &'static str {
    let config = DirectoryConfig::new(directory_location(), group());
    let mut directory = Directory::new(config, leak(None, 16), leak(0u32, 16)).unwrap();
    let now = Instant::from_millis(1);
    let env = Environment::default();
    let mut buf = [0u8; 1400];
    let from = SocketAddr::new(ip(), 5001);
    let register = RegisterRequest {
        request: 1,
        registrant: 7,
        sequence: 1,
        lease: Duration::from_secs(15),
        registration: registration("svc-a", 8001),
    };
    let len = wire::encode(&env, &register, &mut buf).unwrap();
    let bytes = buf[..len].to_vec();
    directory.handle_datagram(now, SocketAddr::new(ip(), 5000), &bytes);
    while directory.poll_event().is_some() {}
    while directory.poll_transmit(now, &mut buf).is_some() {}
    setup(&mut directory, now);
    let mut request = wire::SnapshotRequest {
        request: 9,
        max_pages: 4,
        after: None,
        interest: Interest::all(),
        cookie: None,
        since: Some(directory.as_of()),
    };
    for _ in 0..2 {
        let len = wire::encode(&env, &request, &mut buf).unwrap();
        let bytes = buf[..len].to_vec();
        directory.handle_datagram(now, from, &bytes);
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            if t.destination != from {
                continue;
            }
            match wire::decode(&buf[..t.len]).unwrap().message {
                Message::Cookie(c) => request.cookie = Some(c.cookie),
                Message::ChangesPage(..) => return "changes",
                Message::SnapshotPage(..) => return "snapshot",
                _ => {}
            }
        }
    }
    "none"
}

#[test]
fn a_publisher_answers_a_repair_with_changes_and_a_replica_with_a_snapshot() {
    assert_eq!(answer_to_repair(|_, _| {}), "changes");
    assert_eq!(
        answer_to_repair(|d, now| d.set_publishing(now, false)),
        "snapshot",
        "a replica keeps no announcement chain"
    );
}

fn is_page(message: &Message<'_>) -> bool {
    matches!(
        message,
        Message::ChangesPage(..) | Message::SnapshotPage(..)
    )
}

/// A repair page that arrives late, after the listener heard (and forgot, its ring of
/// removals overflowing) removals newer than the page, has its state refused: the page
/// may predate a removal of it. The listener must not count that state as held: the
/// chain stays below it, so that the next beacon asks for it again (no sweep helps).
#[test]
fn a_state_refused_from_a_late_page_is_asked_for_again() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    // The listener loses svc-a's announcement, and every page answering its repair is
    // held back; the first is delivered late.
    let mut late = |m: &Message<'_>| announces(m, "svc-a") || is_page(m);
    net.lost.clear();
    net.run_until(net.now + Duration::from_millis(100), &mut late);
    assert!(!net.listener_knows("svc-a"), "the announcement was lost");
    // More removals than the listener remembers, all newer than the page held back.
    for round in 0..6u16 {
        let names: Vec<String> = (0..3).map(|i| format!("svc-x{round}-{i}")).collect();
        for (i, name) in names.iter().enumerate() {
            net.registrant
                .register(net.now, registration(name, 9000 + round * 4 + i as u16))
                .unwrap();
        }
        net.run_until(net.now + Duration::from_millis(100), &mut late);
        for name in &names {
            net.registrant
                .unregister(net.now, &ServiceName::new(name).unwrap())
                .unwrap();
        }
        net.run_until(net.now + Duration::from_millis(100), &mut late);
    }
    let page = net
        .lost
        .iter()
        .find(|b| is_page(&wire::decode(b).unwrap().message))
        .cloned()
        .expect("a repair page was held back");
    let dir = directory_location().socket_addr();
    net.listener.handle_datagram(net.now, dir, &page);
    assert!(
        !net.listener_knows("svc-a"),
        "refused: the page may predate a removal the listener forgot"
    );
    net.run_until(net.now + Duration::from_secs(3), &mut nothing);
    assert!(
        net.listener_knows("svc-a"),
        "the refused state was asked for again, with no sweep"
    );
}

/// The pages of one window of a snapshot (or repair) may overtake each other in the
/// network: a listener that takes pages only in order drops those that came early, and
/// it asks again at once from the page it took (not a request timeout later), since the
/// next one may be among those it dropped.
#[test]
fn a_listener_whose_pages_overtook_each_other_asks_again_at_once() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    let env = Environment::default();
    let mut buf = [0u8; 1400];
    for i in 0..120u32 {
        let request = RegisterRequest {
            request: i + 1,
            registrant: u64::from(i) + 100,
            sequence: 1,
            lease: Duration::from_secs(300),
            registration: registration(&format!("svc-{i:03}-with-a-longer-name"), 8000),
        };
        let len = wire::encode(&env, &request, &mut buf).unwrap();
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 6000 + i as u16);
        let bytes = buf[..len].to_vec();
        net.directory.handle_datagram(net.now, from, &bytes);
    }
    net.run_until(net.now + Duration::from_secs(2), &mut nothing);
    // A snapshot whose pages are all held back.
    net.listener.request_snapshot(net.now);
    net.lost.clear();
    let mut pages = |m: &Message<'_>| matches!(m, Message::SnapshotPage(..));
    net.shuttle(&mut pages);
    let held: Vec<Vec<u8>> = net.lost.clone();
    assert!(held.len() >= 3, "{} pages", held.len());
    let last_of = |bytes: &[u8]| match wire::decode(bytes).unwrap().message {
        Message::SnapshotPage(_, items) => items.last().map(|s| s.registration.name),
        _ => None,
    };
    // The second page overtakes the first.
    let dir = directory_location().socket_addr();
    net.listener.handle_datagram(net.now, dir, &held[1]);
    net.listener.handle_datagram(net.now, dir, &held[0]);
    let mut out = [0u8; 1400];
    let t = net
        .listener
        .poll_transmit(net.now, &mut out)
        .expect("the listener asks again at once");
    match wire::decode(&out[..t.len]).unwrap().message {
        Message::SnapshotRequest(r) => assert_eq!(r.after, last_of(&held[0])),
        other => panic!("not a snapshot request: {other:?}"),
    }
}

/// A new registration is announced once by default: the group carries each new service
/// one time, not once per repeat (issue 19: publisher bytes in the first 10 s).
#[test]
fn a_new_registration_is_announced_once_by_default() {
    let config = DirectoryConfig::new(directory_location(), group());
    let mut directory = Directory::new(config, leak(None, 256), leak(0u32, 256)).unwrap();
    let env = Environment::default();
    let mut buf = [0u8; 1400];
    let mut now = Instant::from_millis(1);
    let mut announced = 0;
    let mut count = |directory: &mut Directory<'static>, now: Instant, buf: &mut [u8; 1400]| {
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, buf) {
            if let Message::Announce(_, items) = wire::decode(&buf[..t.len]).unwrap().message {
                announced += items.count();
            }
        }
    };
    for i in 0..200u32 {
        let request = RegisterRequest {
            request: i + 1,
            registrant: u64::from(i) + 1,
            sequence: 1,
            lease: Duration::from_secs(300),
            registration: registration(&format!("svc-{i:03}"), 8000),
        };
        let len = wire::encode(&env, &request, &mut buf).unwrap();
        let bytes = buf[..len].to_vec();
        directory.handle_datagram(now, SocketAddr::new(ip(), 5000), &bytes);
        count(&mut directory, now, &mut buf);
    }
    let end = now + Duration::from_secs(5);
    while now < end {
        directory.handle_timeout(now);
        count(&mut directory, now, &mut buf);
        now = directory
            .poll_timeout()
            .unwrap_or(end)
            .max(now + Duration::from_micros(1));
    }
    assert_eq!(announced, 200, "each new registration on the group once");
}

/// The beacon after a link comes one processing interval after it: a listener that
/// lost the only announcement of a registration (and nothing follows it) repairs within
/// about one interval, not a whole beacon interval later.
#[test]
fn a_listener_that_lost_the_only_announcement_repairs_within_an_interval() {
    let mut net = Net::new(1);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    let mut lose_a = |m: &Message<'_>| announces(m, "svc-a");
    let registered = net.now;
    while !net.listener_knows("svc-a") && net.now < registered + Duration::from_secs(3) {
        net.run_until(net.now + Duration::from_millis(1), &mut lose_a);
    }
    assert!(net.listener_knows("svc-a"));
    let took = net.now.saturating_since(registered);
    assert!(
        took <= Duration::from_millis(60),
        "learned {} ms after registering (interval 50 ms)",
        took.as_millis()
    );
}

/// Tiny seeded generator for loss (xorshift64*).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Milliseconds from registering each of `count` services (one at a time, each
/// unregistered once learned) to the listener holding it, the listener losing every
/// datagram from the directory with probability `loss_percent` (seeded).
fn learning_times(announcements: u8, loss_percent: u64, seed: u64, count: usize) -> Vec<u64> {
    let mut net = Net::new(announcements);
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    let mut state = seed | 1;
    let mut pauses = seed.rotate_left(17) | 1;
    let mut lose = |_: &Message<'_>| next_random(&mut state) % 100 < loss_percent;
    let mut times = Vec::new();
    for i in 0..count {
        let name = format!("svc-{i:03}");
        net.registrant
            .register(net.now, registration(&name, 8000 + i as u16))
            .unwrap();
        let registered = net.now;
        while !net.listener_knows(&name) && net.now < registered + Duration::from_secs(10) {
            net.run_until(net.now + Duration::from_millis(1), &mut lose);
        }
        assert!(net.listener_knows(&name), "{name} learned despite the loss");
        times.push(net.now.saturating_since(registered).as_millis());
        net.registrant
            .unregister(net.now, &ServiceName::new(&name).unwrap())
            .unwrap();
        // Spread the registrations over beacon phases.
        let pause = 100 + next_random(&mut pauses) % 900;
        net.run_until(net.now + Duration::from_millis(pause), &mut lose);
    }
    times
}

/// The cost of announcing a registration once, in simulated time: how long a listener
/// that loses 10 % of the directory's datagrams takes to learn a new registration, with
/// one announcement (the default) and with three. Whatever is lost, each is learned
/// within a few beacon intervals; the figures are printed for `BENCHMARKS.md`.
#[test]
fn learning_a_registration_under_seeded_loss_once_and_thrice() {
    let summary = |times: &mut Vec<u64>| {
        times.sort_unstable();
        let at = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
        let slow = times.iter().filter(|&&t| t > 5).count();
        (at(50), at(90), at(99), times[times.len() - 1], slow)
    };
    for announcements in [1u8, 3] {
        let mut times = Vec::new();
        for seed in 1..=4u64 {
            times.extend(learning_times(announcements, 10, seed * 7919, 100));
        }
        let (p50, p90, p99, max, slow) = summary(&mut times);
        println!(
            "{announcements} announcement(s), 10 % loss, {} registrations: learned p50 {p50} ms, p90 {p90} ms, p99 {p99} ms, max {max} ms; {slow} took over 5 ms",
            times.len()
        );
        assert!(
            max <= 3_000,
            "every registration learned within 3 beacon intervals"
        );
    }
}

/// While links keep coming (each shows a listener any link it lacks), the beacon after
/// a link waits for the chain to go quiet: a steady stream of changes costs beacons at
/// the beacon interval, not one per processing interval (each beacon carries a digest,
/// a pass over the registry).
#[test]
fn a_steady_stream_of_changes_keeps_beacons_at_their_interval() {
    let config = DirectoryConfig::new(directory_location(), group());
    let mut directory = Directory::new(config, leak(None, 512), leak(0u32, 512)).unwrap();
    let env = Environment::default();
    let mut buf = [0u8; 1400];
    let mut now = Instant::from_millis(1);
    let mut beacons = 0;
    let mut drain = |directory: &mut Directory<'static>, now: Instant, buf: &mut [u8; 1400]| {
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, buf) {
            if let Message::Beacon(_) = wire::decode(&buf[..t.len]).unwrap().message {
                beacons += 1;
            }
        }
    };
    // One new registration every 20 ms for 3 s.
    for i in 0..150u32 {
        let at = Instant::from_millis(1 + 20 * u64::from(i));
        while now < at {
            directory.handle_timeout(now);
            drain(&mut directory, now, &mut buf);
            now = directory
                .poll_timeout()
                .unwrap_or(at)
                .min(at)
                .max(now + Duration::from_micros(1));
        }
        let request = RegisterRequest {
            request: i + 1,
            registrant: u64::from(i) + 1,
            sequence: 1,
            lease: Duration::from_secs(300),
            registration: registration(&format!("svc-{i:03}"), 8000),
        };
        let len = wire::encode(&env, &request, &mut buf).unwrap();
        let bytes = buf[..len].to_vec();
        directory.handle_datagram(now, SocketAddr::new(ip(), 5000), &bytes);
        drain(&mut directory, now, &mut buf);
    }
    assert!(beacons <= 4, "{beacons} beacons in 3 s of steady changes");
}

/// A link forged "from the future" (no keys) does not silence the announcements after
/// it: a listener takes no announcement stamped below the last snapshot, repair or
/// delivery it took (a late or replayed one), but links do not raise that bound.
#[test]
fn a_forged_link_from_the_future_does_not_silence_later_announcements() {
    let mut net = Net::with_interest(3, Interest::all());
    let mut nothing = |_: &Message<'_>| false;
    let start = net.now;
    net.run_until(start + Duration::from_millis(500), &mut nothing);
    net.forge_link_from_the_future(registration("forged", 9999));
    // Registered now: its announcement is stamped far below the forged link.
    net.registrant
        .register(net.now, registration("svc-a", 8001))
        .unwrap();
    net.run_until(net.now + Duration::from_millis(100), &mut nothing);
    assert!(
        net.listener_knows("svc-a"),
        "the announcement was not taken"
    );
}
