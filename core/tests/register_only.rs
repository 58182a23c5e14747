//! A register-only build (herald-core without `listen`): the client registers as
//! always, refuses an interest with a clear error, and takes the directory's
//! announcements and pages without discovering anything.
#![cfg(not(feature = "listen"))]

use herald_core::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[test]
fn an_interest_is_refused_with_a_clear_error() {
    let mut table = ClientStorage::<0>::new();
    let (known, index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.interest = Some(Interest::all());
    let refused = Client::<'_, 1>::new(config, known, index).err();
    assert_eq!(refused, Some(ClientError::NoDiscovery));
    assert!(ClientError::NoDiscovery.to_string().contains("`listen`"));
}

#[test]
fn registers_and_discovers_nothing_from_announcements_and_pages() {
    let dir_addr = Location::new(IP, 37399).unwrap();
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let mut storage = DirectoryStorage::<8>::new();
    let (slots, index) = storage.parts();
    let mut directory =
        Directory::new(DirectoryConfig::new(dir_addr, group), slots, index).unwrap();

    let mut table = ClientStorage::<0>::new();
    let (known, known_index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.directories.push(dir_addr).unwrap();
    let mut client: Client<'_, 1> = Client::new(config, known, known_index).unwrap();
    let mut other_table = ClientStorage::<0>::new();
    let (other_known, other_index) = other_table.parts();
    let mut config = ClientConfig::new(8);
    config.directories.push(dir_addr).unwrap();
    let mut other: Client<'_, 1> = Client::new(config, other_known, other_index).unwrap();

    let reg = |name: &str, port: u16| {
        let name = ServiceName::new(name).unwrap();
        Registration::new(name, &[Location::new(IP, port).unwrap()]).unwrap()
    };
    let now = Instant::ZERO;
    client.register(now, reg("billing", 8080)).unwrap();
    other.register(now, reg("ledger", 8081)).unwrap();
    // A snapshot request does nothing in this build.
    client.request_snapshot(now);

    let (me, them) = (SocketAddr::new(IP, 5000), SocketAddr::new(IP, 5001));
    let mut buf = [0u8; 1400];
    let mut events = Vec::new();
    for _ in 0..4 {
        while let Some(t) = client.poll_transmit(now, &mut buf) {
            directory.handle_datagram(now, me, &buf[..t.len]);
        }
        while let Some(t) = other.poll_transmit(now, &mut buf) {
            directory.handle_datagram(now, them, &buf[..t.len]);
        }
        directory.handle_timeout(now);
        while directory.poll_event().is_some() {}
        while let Some(t) = directory.poll_transmit(now, &mut buf) {
            // Replies to their addressee, the group's datagrams (announcements,
            // beacons) to both.
            if t.destination != them {
                client.handle_datagram(now, dir_addr.socket_addr(), &buf[..t.len]);
            }
            if t.destination != me {
                other.handle_datagram(now, dir_addr.socket_addr(), &buf[..t.len]);
            }
        }
        events.extend(std::iter::from_fn(|| client.poll_event()));
        while other.poll_event().is_some() {}
    }
    assert!(
        events.iter().any(
            |e| matches!(e, ClientEvent::Registered { name, .. } if name.as_str() == "billing")
        ),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| !matches!(
            e,
            ClientEvent::Discovered(_) | ClientEvent::SnapshotComplete { .. }
        )),
        "{events:?}"
    );
    assert_eq!(client.services().count(), 0);
    assert_eq!(client.stats().malformed, 0);
}

/// Two directories and a register-only client that uses both, their datagrams
/// exchanged in virtual time; the first directory can be down (it neither receives nor
/// sends).
struct TwoDirectories<'a> {
    directories: [(Location, Directory<'a>); 2],
    client: Client<'a, 1>,
    first_up: bool,
    now: Instant,
    events: Vec<ClientEvent>,
    /// When the client first sent to the first directory while it was down.
    first_lost: Option<Instant>,
    /// When the client moved to another directory.
    moved_at: Option<Instant>,
}

impl TwoDirectories<'_> {
    const ME: SocketAddr = SocketAddr::new(IP, 5000);

    /// Runs for `span`, in steps of at most 10 ms.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        let mut buf = [0u8; 1400];
        while self.now < end {
            let now = self.now;
            self.client.handle_timeout(now);
            while let Some(t) = self.client.poll_transmit(now, &mut buf) {
                for (i, (location, directory)) in self.directories.iter_mut().enumerate() {
                    if t.destination != location.socket_addr() {
                        continue;
                    }
                    if i == 1 || self.first_up {
                        directory.handle_datagram(now, Self::ME, &buf[..t.len]);
                    } else {
                        self.first_lost.get_or_insert(now);
                    }
                }
            }
            for (i, (location, directory)) in self.directories.iter_mut().enumerate() {
                directory.handle_timeout(now);
                while directory.poll_event().is_some() {}
                while let Some(t) = directory.poll_transmit(now, &mut buf) {
                    // Replies to the client, and the group's datagrams (beacons).
                    let up = i == 1 || self.first_up;
                    if up && (t.destination == Self::ME || t.destination.ip().is_multicast()) {
                        self.client
                            .handle_datagram(now, location.socket_addr(), &buf[..t.len]);
                    }
                }
            }
            for event in std::iter::from_fn(|| self.client.poll_event()) {
                if matches!(event, ClientEvent::DirectoryChanged(_)) {
                    self.moved_at.get_or_insert(now);
                }
                self.events.push(event);
            }
            let step = self.now + Duration::from_millis(10);
            let next = [self.client.poll_timeout(), Some(step)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(step);
            self.now = next.max(self.now + Duration::from_micros(1)).min(end);
        }
    }

    fn holds(&self, i: usize, name: &str) -> bool {
        self.directories[i]
            .1
            .record(name)
            .is_some_and(|r| r.is_live())
    }
}

/// A register-only client fails over as a full one does: a directory that stays silent
/// for less than `failover_after` across a renewal keeps its registrant, one that is
/// gone loses it to the next, where the client registers again. It moves once the next
/// answers its probe (a keep-alive that claims nothing), before twice `failover_after`
/// of silence, after which it would move whatever happens.
#[test]
fn a_registrant_fails_over_only_when_its_directory_is_gone() {
    let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
    let (a, b) = (
        Location::new(IP, 37399).unwrap(),
        Location::new(Ipv4Addr::new(127, 0, 0, 2).into(), 37399).unwrap(),
    );
    let mut storage = [DirectoryStorage::<8>::new(), DirectoryStorage::<8>::new()];
    let [first, second] = &mut storage;
    let (slots_a, index_a) = first.parts();
    let (slots_b, index_b) = second.parts();
    let directory_a = Directory::new(DirectoryConfig::new(a, group), slots_a, index_a).unwrap();
    let directory_b = Directory::new(DirectoryConfig::new(b, group), slots_b, index_b).unwrap();
    let mut table = ClientStorage::<0>::new();
    let (known, known_index) = table.parts();
    let mut config = ClientConfig::new(7);
    config.directories.push(a).unwrap();
    config.directories.push(b).unwrap();
    config.lease = Duration::from_secs(15);
    let client = Client::new(config, known, known_index).unwrap();
    let mut net = TwoDirectories {
        directories: [(a, directory_a), (b, directory_b)],
        client,
        first_up: true,
        now: Instant::from_millis(1),
        events: Vec::new(),
        first_lost: None,
        moved_at: None,
    };
    let name = ServiceName::new("billing").unwrap();
    let registration = Registration::new(name, &[Location::new(IP, 8080).unwrap()]).unwrap();
    net.client.register(net.now, registration).unwrap();
    net.run(Duration::from_secs(1));
    assert_eq!(net.client.current_directory(), Some(a));
    assert!(net.holds(0, "billing"));

    // 2.5 s of silence across the renewal (due 5 s after registering): it stays.
    net.run(Duration::from_millis(3_500));
    net.first_up = false;
    net.run(Duration::from_millis(2_500));
    net.first_up = true;
    net.run(Duration::from_secs(10));
    assert_eq!(net.client.current_directory(), Some(a), "{:?}", net.events);
    let moved = |events: &[ClientEvent]| {
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::DirectoryChanged(_)))
    };
    assert!(!moved(&net.events), "{:?}", net.events);
    assert!(!net.holds(1, "billing"), "registered at B too");

    // A is gone for good: the registrant moves to B, once B answers its probe, and
    // registers there.
    net.first_up = false;
    net.first_lost = None;
    net.run(Duration::from_secs(20));
    assert_eq!(net.client.current_directory(), Some(b), "{:?}", net.events);
    let (lost, moved_at) = (net.first_lost.unwrap(), net.moved_at.unwrap());
    let silence = moved_at.saturating_since(lost);
    assert!(silence < Duration::from_secs(6), "moved after {silence:?}");
    assert!(net.holds(1, "billing"));
}
