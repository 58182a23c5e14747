//! The `client` target: arbitrary steps of time, sender, datagram and API call into a
//! [`Client`], checking its invariants after every step.
//!
//! Checked:
//! - no panic, and `poll_transmit` / `poll_event` run dry;
//! - every datagram sent is a request (or a delivery acknowledgement) within the
//!   maximum size that decodes, in the client's environment, to the current directory
//!   (or, for a one-page snapshot request probing another directory while the current
//!   one is silent, to a known directory);
//! - a subscription (the configuration picks `Subscribe::{Never, Always,
//!   WithoutBeacons}`; `subscribe` / `unsubscribe` are calls) carries the client's id and
//!   interest, and only deliveries it asked for are acknowledged; deliveries to it
//!   (pages of its newest delivery id), cookies and subscription acks are among what
//!   directories send;
//! - no event twice for the same state: never `Discovered` for a name already reported
//!   (without `Unregistered` between), never `Changed` or `Unregistered` for a name not
//!   reported, never `Changed` to a state that is not newer than the last reported (a
//!   re-announcement) unless a page or a change of directory came since (a page
//!   corrects a state newer than itself, and replaces one inherited from the previous
//!   directory), or to the content reported last (a change and back between two
//!   polls), `Registered` at most once per `register` call and `Released` at
//!   most once per `unregister` call;
//! - once the events are drained, `services()` is exactly what the events said;
//! - the discovered table stays within its capacity;
//! - a shell that sleeps until `poll_timeout()` and calls `handle_timeout` makes
//!   progress: within a few rounds at the same instant the deadline moves past it.

use crate::input::{self, Op, Step};
use crate::message::{decode_sent, seal, OwnedFrame, OwnedMessage};
use crate::world::{
    directory, keys, ms, EnvChoice, SmallName, SmallRegistration, SmallVersion, NAMES,
};
use arbitrary::{Arbitrary, Unstructured};
use herald_core::wire::{
    self, Ack, AnnounceHeader, Beacon, Change, CookieReply, Holdings, KeepAliveAck, PageHeader,
    Reject, RejectReason, SubscribeAck,
};
use herald_core::{
    Client, ClientConfig, ClientEvent, Discovered, Environment, Instant, Interest, Location,
    Metadata, Service, ServiceName, Subscribe,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Most steps run from one input.
const MAX_STEPS: usize = 256;
/// Most datagrams or events one drain may produce before it counts as a runaway.
const MAX_DRAIN: usize = 10_000;
/// Rounds of `handle_timeout` at one instant before the deadline must move past it
/// (a failover may land on a directory that was already silent, and move on at once).
const SAME_INSTANT_ROUNDS: usize = 2 * herald_core::client::MAX_DIRECTORIES + 2;
/// Registrations the client may hold.
const OWN: usize = 2;
/// The registrant id of the client under test.
const REGISTRANT: u64 = 7;

/// A service of the small world.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallService {
    /// Its registration.
    pub registration: SmallRegistration,
    /// Its version.
    pub version: SmallVersion,
}

impl SmallService {
    /// The service.
    pub fn service(&self) -> Service {
        Service {
            registration: self.registration.registration(),
            version: self.version.version(),
        }
    }
}

/// A change of the small world.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum SmallChange {
    /// Live in this state.
    Registered(SmallService),
    /// Removed at this version.
    Unregistered(SmallName, SmallVersion),
}

/// What a directory (or an impostor) sends a client.
#[derive(Debug, Arbitrary)]
pub enum DirectoryMessage {
    /// Changes on the group.
    Announce {
        /// Which directory the header names.
        directory: u8,
        /// Header version.
        as_of: SmallVersion,
        /// The link before, in the announcement chain.
        previous: SmallVersion,
        /// The changes.
        changes: Vec<SmallChange>,
    },
    /// A page of the sweep.
    SyncPage {
        /// Header version.
        as_of: SmallVersion,
        /// Start after.
        after: Option<SmallName>,
        /// Reaches the end.
        complete: bool,
        /// Sort by name and drop duplicates, as a directory does.
        sorted: bool,
        /// The services.
        services: Vec<SmallService>,
    },
    /// A page answering one of the client's recent snapshot requests.
    SnapshotPage {
        /// Which recent request (its id and `after` are echoed).
        echo: u8,
        /// Header version.
        as_of: SmallVersion,
        /// Reaches the end.
        complete: bool,
        /// Sort by name and drop duplicates.
        sorted: bool,
        /// The services.
        services: Vec<SmallService>,
    },
    /// Accepts one of the client's recent requests (a keep-alive with a KeepAliveAck
    /// that holds what it claimed when the version is even, something else when odd).
    Ack {
        /// Which recent request.
        echo: u8,
        /// Lease granted.
        lease_ms: u16,
        /// Version.
        version: SmallVersion,
    },
    /// Refuses one of the client's recent requests (`None`: request 0, all of them).
    Reject {
        /// Which recent request.
        echo: Option<u8>,
        /// Why.
        reason: RejectReason,
    },
    /// A directory is available.
    Beacon {
        /// Which directory.
        directory: u8,
        /// Its version.
        as_of: SmallVersion,
        /// Services it counts.
        services: u8,
        /// Whether it publishes.
        publishing: bool,
        /// Its registry digest.
        digest: u64,
    },
    /// A page of changes answering one of the client's recent requests (a repair).
    ChangesPage {
        /// Which recent request (its id and `after` are echoed).
        echo: u8,
        /// Header version.
        as_of: SmallVersion,
        /// Reaches the end.
        complete: bool,
        /// The changes.
        changes: Vec<SmallChange>,
    },
    /// A cookie answering one of the client's recent requests (a subscription echoes it).
    Cookie {
        /// Which recent request.
        echo: u8,
        /// The cookie.
        cookie: [u8; 16],
    },
    /// Accepts one of the client's recent requests as a subscription.
    SubscribeAck {
        /// Which recent request.
        echo: u8,
        /// Lease granted.
        lease_ms: u16,
        /// Whether this directory delivers.
        delivering: bool,
    },
    /// A page of a unicast delivery to the client's newest subscription (a snapshot's
    /// services, or changes).
    Delivery {
        /// Services (a snapshot page) or changes.
        snapshot: bool,
        /// Named for another subscriber (never taken).
        to_another: bool,
        /// Header version.
        as_of: SmallVersion,
        /// Starts after this name.
        after: Option<SmallName>,
        /// Reaches the end.
        complete: bool,
        /// Sort the services by name and drop duplicates.
        sorted: bool,
        /// A snapshot page's services.
        services: Vec<SmallService>,
        /// A changes page's changes.
        changes: Vec<SmallChange>,
    },
}

/// The changes of the small world, as sent.
fn changes(list: &[SmallChange]) -> Vec<Change> {
    list.iter()
        .map(|c| match c {
            SmallChange::Registered(s) => Change::Registered(s.service()),
            SmallChange::Unregistered(name, version) => Change::Unregistered {
                name: name.name(),
                version: version.version(),
            },
        })
        .collect()
}

/// A structured datagram for the client.
#[derive(Debug, Arbitrary)]
pub struct ClientFrame {
    /// Its environment.
    pub env: EnvChoice,
    /// Its message.
    pub message: DirectoryMessage,
}

/// A call of the client's API.
#[derive(Debug, Arbitrary)]
pub enum Call {
    /// `register`.
    Register(SmallRegistration),
    /// `unregister`.
    Unregister(SmallName),
    /// `request_snapshot`.
    Snapshot,
    /// `subscribe`.
    Subscribe,
    /// `unsubscribe`.
    Unsubscribe,
}

/// A request the client sent, as remembered to answer it.
#[derive(Clone, Debug)]
pub struct Sent {
    /// Its id.
    pub request: u32,
    /// For a snapshot request, where it starts.
    pub after: Option<Option<ServiceName>>,
    /// For a keep-alive, what it claimed the directory holds.
    pub held: Option<Holdings>,
}

impl Sent {
    /// A request an answer needs only the id of.
    fn answered_by_id(request: u32) -> Sent {
        Sent {
            request,
            after: None,
            held: None,
        }
    }
}

fn services(list: &[SmallService], sorted: bool) -> Vec<Service> {
    let mut out: Vec<Service> = list.iter().map(SmallService::service).collect();
    if sorted {
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out.dedup_by(|a, b| a.name() == b.name());
    }
    out
}

impl ClientFrame {
    /// Encodes the frame; `recent` holds the client's recent requests to answer, and
    /// `delivery` the delivery id of its newest subscription.
    pub fn to_vec(&self, recent: &[Sent], delivery: Option<u32>) -> Vec<u8> {
        let pick = |echo: u8| recent.get(usize::from(echo) % recent.len().max(1)).cloned();
        let id = |echo: u8| pick(echo).map_or(u32::from(echo), |s| s.request);
        let message = match &self.message {
            DirectoryMessage::Announce {
                directory: d,
                as_of,
                previous,
                changes: list,
            } => OwnedMessage::Announce(
                AnnounceHeader {
                    directory: directory(*d),
                    as_of: as_of.version(),
                    previous: previous.version(),
                },
                changes(list),
            ),
            DirectoryMessage::ChangesPage {
                echo,
                as_of,
                complete,
                changes: list,
            } => {
                let sent = pick(*echo);
                OwnedMessage::ChangesPage(
                    PageHeader {
                        request: sent.as_ref().map_or(u32::from(*echo), |s| s.request),
                        as_of: as_of.version(),
                        after: sent.and_then(|s| s.after).flatten(),
                        complete: *complete,
                    },
                    changes(list),
                )
            }
            DirectoryMessage::SyncPage {
                as_of,
                after,
                complete,
                sorted,
                services: list,
            } => OwnedMessage::SyncPage(
                PageHeader {
                    request: 0,
                    as_of: as_of.version(),
                    after: after.map(SmallName::name),
                    complete: *complete,
                },
                services(list, *sorted),
            ),
            DirectoryMessage::SnapshotPage {
                echo,
                as_of,
                complete,
                sorted,
                services: list,
            } => {
                let sent = pick(*echo);
                OwnedMessage::SnapshotPage(
                    PageHeader {
                        request: sent.as_ref().map_or(u32::from(*echo), |s| s.request),
                        as_of: as_of.version(),
                        after: sent.and_then(|s| s.after).flatten(),
                        complete: *complete,
                    },
                    services(list, *sorted),
                )
            }
            DirectoryMessage::Ack {
                echo,
                lease_ms,
                version,
            } => match pick(*echo).and_then(|s| s.held) {
                Some(claimed) => {
                    let version = version.version().0;
                    let held = if version % 2 == 0 {
                        claimed
                    } else {
                        Holdings {
                            count: claimed.count,
                            digest: claimed.digest ^ version,
                        }
                    };
                    OwnedMessage::KeepAliveAck(KeepAliveAck {
                        request: id(*echo),
                        lease: ms(u64::from(*lease_ms)),
                        held,
                    })
                }
                None => OwnedMessage::Ack(Ack {
                    request: id(*echo),
                    lease: ms(u64::from(*lease_ms)),
                    version: version.version(),
                }),
            },
            DirectoryMessage::Reject { echo, reason } => OwnedMessage::Reject(Reject {
                request: echo.map_or(0, id),
                reason: *reason,
                directory_environment: Environment::default(),
                floor: 0,
            }),
            DirectoryMessage::Beacon {
                directory: d,
                as_of,
                services,
                publishing,
                digest,
            } => OwnedMessage::Beacon(Beacon {
                directory: directory(*d),
                as_of: as_of.version(),
                services: u32::from(*services),
                publishing: *publishing,
                digest: *digest,
            }),
            DirectoryMessage::Cookie { echo, cookie } => OwnedMessage::Cookie(CookieReply {
                request: id(*echo),
                cookie: *cookie,
            }),
            DirectoryMessage::SubscribeAck {
                echo,
                lease_ms,
                delivering,
            } => OwnedMessage::SubscribeAck(SubscribeAck {
                request: id(*echo),
                lease: ms(u64::from(*lease_ms)),
                delivering: *delivering,
            }),
            DirectoryMessage::Delivery {
                snapshot,
                to_another,
                as_of,
                after,
                complete,
                sorted,
                services: list,
                changes: changed,
            } => {
                let header = PageHeader {
                    request: delivery.unwrap_or(0),
                    as_of: as_of.version(),
                    after: after.map(SmallName::name),
                    complete: *complete,
                };
                let subscriber = REGISTRANT ^ u64::from(*to_another);
                if *snapshot {
                    OwnedMessage::DeliveredSnapshot(subscriber, header, services(list, *sorted))
                } else {
                    OwnedMessage::DeliveredChanges(subscriber, header, changes(changed))
                }
            }
        };
        OwnedFrame {
            environment: self.env.environment(),
            message,
        }
        .to_vec(wire::DEFAULT_MAX_DATAGRAM)
        .expect("a small-world message fits")
    }
}

/// The client's configuration and table capacity from the configuration bytes.
pub fn config(c: [u8; input::CONFIG_LEN]) -> (ClientConfig, usize) {
    let mut config = ClientConfig::new(REGISTRANT);
    let name = NAMES[usize::from(c[0] / 4) % NAMES.len()];
    config.interest = match c[0] % 4 {
        0 => None,
        1 => Some(Interest::all()),
        2 => Some(Interest::parse_all([format!("{name}*").as_str()]).expect("valid")),
        _ => Some(Interest::parse_all([name, "db"]).expect("valid")),
    };
    for i in 0..c[1] % 4 {
        config
            .directories
            .push(directory(i.wrapping_add(c[1] / 4)))
            .expect("room");
    }
    let capacity = 1 + usize::from(c[2] % 8);
    config.request_timeout = ms(10 * (1 + u64::from(c[3] % 50)));
    config.max_attempts = c[4] % 5;
    config.directory_timeout = ms(100 * (1 + u64::from(c[5] % 30)));
    config.failover_grace = ms(100 * u64::from(c[6] % 40));
    config.snapshot_pages = c[7] % 4;
    config.lease = ms(1000 * (1 + u64::from(c[7] / 4 % 30)));
    if c[6] >= 200 {
        config.keys = Some(keys());
    }
    config.subscribe = match c[5] / 30 % 4 {
        2 => Subscribe::Always,
        3 => Subscribe::WithoutBeacons,
        _ => Subscribe::Never,
    };
    (config, capacity)
}

/// The senders of the small world: the directories, and a stranger.
pub fn sender(index: u8) -> SocketAddr {
    match index % 5 {
        4 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 37399),
        i => directory(i).socket_addr(),
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (c, steps) = input::parse(data);
    let (config, capacity) = config(c);
    let mut slots: Vec<Discovered> = vec![None; capacity];
    let mut index = vec![0u32; capacity];
    let client: Client<'_, OWN> =
        Client::new(config.clone(), &mut slots, &mut index).expect("valid config");
    let mut h = Harness {
        c: client,
        config,
        capacity,
        now: Instant::ZERO,
        buf: vec![0; 2 * wire::DEFAULT_MAX_DATAGRAM],
        recent: Vec::new(),
        told: HashMap::new(),
        told_versions: HashMap::new(),
        corrections: 0,
        told_at: HashMap::new(),
        registering: HashSet::new(),
        releasing: HashSet::new(),
        deliveries: Vec::new(),
        counters: HashMap::new(),
        last_counter: 0,
    };
    // Time starts at zero (the clock that authenticated counters follow starts here).
    h.timeout(Instant::ZERO);
    for step in steps.take(MAX_STEPS) {
        h.step(step);
    }
}

struct Harness<'a> {
    c: Client<'a, OWN>,
    config: ClientConfig,
    capacity: usize,
    now: Instant,
    buf: Vec<u8>,
    /// The client's recent requests, newest last.
    recent: Vec<Sent>,
    /// What the events said: name → (locations, metadata) last reported.
    told: HashMap<String, (Vec<Location>, Metadata)>,
    /// The version last reported, per name.
    told_versions: HashMap<String, herald_core::Version>,
    /// Pages delivered and directory changes reported so far: each may correct states.
    corrections: u64,
    /// The value of `corrections` when each name was last reported.
    told_at: HashMap<String, u64>,
    /// Names registered since their last `Registered` event.
    registering: HashSet<String>,
    /// Names unregistered since their last `Released` event.
    releasing: HashSet<String>,
    /// The delivery ids of every subscription the client asked for, newest last.
    deliveries: Vec<u32>,
    /// With keys: the last counter each sender sealed a frame with.
    counters: HashMap<SocketAddr, u64>,
    /// With keys: the last counter the client sent.
    last_counter: u64,
}

impl Harness<'_> {
    fn step(&mut self, step: Step<'_>) {
        self.now += ms(u64::from(step.dt_ms));
        let now = self.now;
        let from = sender(step.sender);
        match step.op {
            Op::Timeout => self.timeout(now),
            Op::Deadline => {
                if let Some(deadline) = self.c.poll_timeout() {
                    self.now = self.now.max(deadline);
                }
                self.timeout(self.now);
            }
            Op::Raw => self.deliver(from, step.payload),
            Op::Structured => {
                if let Ok(frame) = ClientFrame::arbitrary(&mut Unstructured::new(step.payload)) {
                    let bytes = self.outgoing(
                        from,
                        frame.to_vec(&self.recent, self.deliveries.last().copied()),
                    );
                    self.deliver(from, &bytes);
                }
            }
            Op::Message => {
                if let Ok(frame) = OwnedFrame::arbitrary(&mut Unstructured::new(step.payload)) {
                    if let Ok(bytes) = frame.to_vec(wire::DEFAULT_MAX_DATAGRAM) {
                        let bytes = self.outgoing(from, bytes);
                        self.deliver(from, &bytes);
                    }
                }
            }
            Op::Mutated => {
                let (mutation, rest) = input::mutation(step.payload);
                if let Ok(frame) = ClientFrame::arbitrary(&mut Unstructured::new(rest)) {
                    let delivery = self.deliveries.last().copied();
                    let mut bytes = self.outgoing(from, frame.to_vec(&self.recent, delivery));
                    mutation.apply(&mut bytes);
                    self.deliver(from, &bytes);
                }
            }
            Op::Extra => {
                if let Ok(call) = Call::arbitrary(&mut Unstructured::new(step.payload)) {
                    self.call(call);
                }
            }
        }
    }

    fn call(&mut self, call: Call) {
        let now = self.now;
        crate::trace!("{now} call {call:?}");
        match call {
            Call::Register(r) => {
                let registration = r.registration();
                let name = registration.name.to_string();
                if self.c.register(now, registration).is_ok() {
                    self.registering.insert(name);
                }
            }
            Call::Unregister(name) => {
                if self.c.unregister(now, &name.name()).is_ok() {
                    self.releasing.insert(name.name().to_string());
                }
            }
            Call::Snapshot => self.c.request_snapshot(now),
            Call::Subscribe => self.c.subscribe(now),
            Call::Unsubscribe => self.c.unsubscribe(now),
        }
        self.drain();
    }

    /// Seals a frame when the client has keys, with the sender's next counter.
    fn outgoing(&mut self, from: SocketAddr, frame: Vec<u8>) -> Vec<u8> {
        let Some(keys) = &self.config.keys else {
            return frame;
        };
        let last = self.counters.entry(from).or_default();
        *last = (*last + 1).max(self.now.as_micros());
        seal(&frame, keys, *last)
    }

    fn deliver(&mut self, from: SocketAddr, bytes: &[u8]) {
        let decoded = decode_sent(bytes, self.config.keys.as_ref());
        crate::trace!("{} datagram from {from}: {decoded:?}", self.now);
        crate::trace!("  bytes {}", crate::hex(bytes));
        if let Ok((frame, _)) = &decoded {
            if matches!(
                frame.message,
                OwnedMessage::SnapshotPage(..)
                    | OwnedMessage::SyncPage(..)
                    | OwnedMessage::DeliveredSnapshot(..)
            ) {
                self.corrections += 1;
            }
        }
        if let Ok((frame, Some(_))) = &decoded {
            if let OwnedMessage::Reject(r) = &frame.message {
                if r.reason == RejectReason::Stale {
                    // The directory refused the client's counter as outside its window:
                    // the client takes the directory's, which may be lower.
                    self.last_counter = 0;
                }
            }
        }
        self.c.handle_datagram(self.now, from, bytes);
        self.drain();
    }

    fn timeout(&mut self, now: Instant) {
        crate::trace!("{now} timeout");
        for _ in 0..SAME_INSTANT_ROUNDS {
            self.c.handle_timeout(now);
            self.drain();
            match self.c.poll_timeout() {
                Some(next) if next <= now => continue,
                _ => return,
            }
        }
        panic!(
            "no progress: after {SAME_INSTANT_ROUNDS} rounds of handle_timeout({now}) \
             poll_timeout() is still {:?}",
            self.c.poll_timeout()
        );
    }

    fn drain(&mut self) {
        let now = self.now;
        let mut sent = 0;
        while let Some(t) = self.c.poll_transmit(now, &mut self.buf) {
            sent += 1;
            assert!(sent <= MAX_DRAIN, "poll_transmit never runs dry");
            assert!(
                t.len <= self.config.max_datagram,
                "datagram over the maximum"
            );
            let current = self.c.current_directory().map(|d| d.socket_addr());
            let (frame, counter) = decode_sent(&self.buf[..t.len], self.config.keys.as_ref())
                .unwrap_or_else(|e| panic!("the client sent an undecodable datagram: {e}"));
            // A probe of another directory, or an acknowledgement of a delivery that
            // another directory sent, may go to any known directory.
            let elsewhere = match &frame.message {
                OwnedMessage::SnapshotRequest(s) => s.max_pages == 1,
                OwnedMessage::DeliveryAck(_) => true,
                _ => false,
            };
            let known = self
                .c
                .directories()
                .any(|d| d.socket_addr() == t.destination);
            assert!(
                Some(t.destination) == current || (elsewhere && known),
                "request not to the current directory"
            );
            if let Some(counter) = counter {
                // A directory's counter (which a client follows) can be anything a key
                // holder sends; at u64::MAX it saturates, and the directory's Stale answer
                // brings it back.
                assert!(
                    counter > self.last_counter || counter == u64::MAX,
                    "counter did not grow: {counter}"
                );
                self.last_counter = counter;
            }
            crate::trace!("  sent to {}: {frame:?}", t.destination);
            assert_eq!(frame.environment, self.config.environment);
            let sent = match frame.message {
                OwnedMessage::Register(r) => {
                    assert_eq!(r.registrant, REGISTRANT);
                    Sent::answered_by_id(r.request)
                }
                OwnedMessage::Unregister(u) => {
                    assert_eq!(u.registrant, REGISTRANT);
                    Sent::answered_by_id(u.request)
                }
                OwnedMessage::KeepAlive(k) => {
                    assert_eq!(k.registrant, REGISTRANT);
                    assert!(k.held.count > 0, "a keep-alive for nothing");
                    Sent {
                        request: k.request,
                        after: None,
                        held: Some(k.held),
                    }
                }
                OwnedMessage::SnapshotRequest(s) => Sent {
                    request: s.request,
                    after: Some(s.after),
                    held: None,
                },
                OwnedMessage::Subscribe(s) => {
                    assert_eq!(s.subscriber, REGISTRANT);
                    assert!(
                        self.config.interest.is_some(),
                        "subscribed without interest"
                    );
                    assert_eq!(Some(&s.interest), self.config.interest.as_ref());
                    if self.deliveries.last() != Some(&s.delivery) {
                        self.deliveries.push(s.delivery);
                    }
                    Sent::answered_by_id(s.request)
                }
                OwnedMessage::Unsubscribe(u) => {
                    assert_eq!(u.subscriber, REGISTRANT);
                    Sent::answered_by_id(u.request)
                }
                OwnedMessage::DeliveryAck(a) => {
                    // Never answered: not a request to echo.
                    assert_eq!(a.subscriber, REGISTRANT);
                    assert!(
                        self.deliveries.contains(&a.delivery),
                        "an acknowledgement of a delivery never asked for: {a:?}"
                    );
                    continue;
                }
                m => panic!("a client sent a non-request: {m:?}"),
            };
            if self.recent.len() == 8 {
                self.recent.remove(0);
            }
            self.recent.push(sent);
        }
        let mut events = 0;
        while let Some(event) = self.c.poll_event() {
            events += 1;
            assert!(events <= MAX_DRAIN, "poll_event never runs dry");
            crate::trace!("  event {event:?}");
            self.check_event(event);
        }
        let held: HashMap<String, (Vec<Location>, Metadata)> = self
            .c
            .services()
            .map(|s| (s.name().to_string(), content(s)))
            .collect();
        assert_eq!(
            held, self.told,
            "services() differs from what the events said"
        );
        assert_eq!(self.c.capacity(), self.capacity);
        assert!(held.len() <= self.capacity, "table over capacity");
    }

    fn check_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Discovered(s) => {
                if let Some(i) = &self.config.interest {
                    assert!(
                        i.matches(s.name().as_str()),
                        "discovered outside the interest"
                    );
                }
                let old = self.told.insert(s.name().to_string(), content(&s));
                assert!(old.is_none(), "Discovered twice: {s:?}");
                self.told_versions.insert(s.name().to_string(), s.version);
                self.told_at.insert(s.name().to_string(), self.corrections);
            }
            ClientEvent::Changed(s) => {
                let new = content(&s);
                let old = self
                    .told
                    .insert(s.name().to_string(), new.clone())
                    .unwrap_or_else(|| panic!("Changed before Discovered: {s:?}"));
                let version = self.told_versions.insert(s.name().to_string(), s.version);
                let version = version.expect("told together");
                let at = self.told_at.insert(s.name().to_string(), self.corrections);
                let corrected = at.is_some_and(|at| at < self.corrections);
                assert!(
                    s.version > version || corrected,
                    "Changed to an older state: {s:?}"
                );
                // A change and back between two reports is no change: a Changed always
                // brings content other than what was reported last.
                assert_ne!(old, new, "Changed without a change: {s:?}");
            }
            ClientEvent::Unregistered(s) | ClientEvent::Evicted(s) => {
                assert!(
                    self.told.remove(s.name().as_str()).is_some(),
                    "Unregistered or Evicted without Discovered: {s:?}"
                );
                self.told_versions.remove(s.name().as_str());
                self.told_at.remove(s.name().as_str());
            }
            ClientEvent::Registered { name, .. } => {
                assert!(
                    self.registering.remove(name.as_str()),
                    "Registered twice for one register call: {name}"
                );
            }
            ClientEvent::Released { name, .. } => {
                assert!(
                    self.releasing.remove(name.as_str()),
                    "Released twice for one unregister call: {name}"
                );
            }
            ClientEvent::Rejected {
                name: Some(name), ..
            } => {
                self.registering.remove(name.as_str());
                self.releasing.remove(name.as_str());
            }
            ClientEvent::DirectoryChanged(_) => self.corrections += 1,
            ClientEvent::Rejected { name: None, .. }
            | ClientEvent::Unreachable
            | ClientEvent::SnapshotComplete { .. } => {}
        }
    }
}

fn content(s: &Service) -> (Vec<Location>, Metadata) {
    (
        s.registration.locations.to_vec(),
        s.registration.metadata.clone(),
    )
}
