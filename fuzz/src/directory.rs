//! The `directory` target: arbitrary steps of time, sender and datagram into a
//! [`Directory`], checking its invariants after every step.
//!
//! Checked:
//! - no panic, and `poll_transmit` / `poll_event` run dry;
//! - every datagram sent is within the configured maximum size and decodes, goes where
//!   its kind says (group or requester), and tells the truth about the registry (page
//!   and announcement items are live records with that version; a beacon counts the
//!   live services);
//! - each removal `(name, version)` is announced at most N times, and exactly N times
//!   once the directory is left to run (unless the name came back, or a departed entry
//!   had to be reclaimed for room);
//! - the registry never holds more than its capacity;
//! - after `handle_timeout(now)` and the drains, `poll_timeout()` is later than `now`:
//!   a shell that sleeps until the deadline always makes progress (no busy loop);
//! - every stored record survives `Record::to_bytes` / `from_bytes`, within
//!   `MAX_RECORD_LEN`;
//! - as a replica of a shared store (the `Extra` op also turns publishing and expiry on
//!   and off, applies other directories' changes decoded from arbitrary bytes, echoes
//!   the store's records back and deletes finished removals), only a publishing
//!   directory announces or sweeps, and a removal another directory started is
//!   announced exactly the notifications its record still owed;
//! - a late copy of any state the store ever held (the `Extra` op again) never brings a
//!   service back at a version older than a removal the directory announced.

use crate::input::{self, Op, Step};
use crate::message::{decode_sent, seal, OwnedFrame, OwnedMessage};
use crate::world::{group, keys, ms, EnvChoice, SmallName, SmallRegistration};
use arbitrary::{Arbitrary, Unstructured};
use herald_core::directory::SubscriberSlot;
use herald_core::registry::{WallClock, MAX_RECORD_LEN};
use herald_core::wire::{
    self, Change, DeliveryAck, Holdings, KeepAliveRequest, RegisterRequest, SnapshotRequest,
    SubscribeRequest, UnregisterRequest, UnsubscribeRequest,
};
use herald_core::{
    Directory, DirectoryConfig, DirectoryEvent, Instant, Interest, Location, Pattern, Record,
    RecordState, Slot,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most steps run from one input (keeps executions fast).
const MAX_STEPS: usize = 256;
/// Most `handle_timeout` rounds to let departed entries finish at the end.
const QUIESCE_ROUNDS: usize = 20_000;
/// Most datagrams one drain may produce before it counts as a runaway.
const MAX_DRAIN: usize = 100_000;

/// What each [`Op::Extra`] step calls, for the trace.
const EXTRA_CALLS: [&str; 6] = [
    "a datagram from the past",
    "set_publishing",
    "set_expiring",
    "a peer's change",
    "a stored record back",
    "a record gone from the store",
];

/// A request from one of the small world's clients.
#[derive(Debug, Arbitrary)]
pub enum Request {
    /// Register or renew.
    Register {
        /// Request id.
        request: u32,
        /// One of three registrants.
        registrant: u8,
        /// The lease asked for (0: the default).
        lease_ms: u16,
        /// What.
        registration: SmallRegistration,
    },
    /// Unregister.
    Unregister {
        /// Request id.
        request: u32,
        /// One of three registrants.
        registrant: u8,
        /// What.
        name: SmallName,
    },
    /// Ask for a snapshot.
    Snapshot {
        /// Request id.
        request: u32,
        /// Pages wanted (0 reads as 1).
        max_pages: u8,
        /// Start after.
        after: Option<SmallName>,
        /// Interest: one name, exact or prefix.
        interest: Option<(SmallName, bool)>,
        /// A repair: the changes since this version.
        since: Option<u32>,
    },
    /// Renew every registration of a registrant.
    KeepAlive {
        /// Request id.
        request: u32,
        /// One of three registrants.
        registrant: u8,
        /// The lease asked for (0: the default).
        lease_ms: u16,
        /// What it claims the directory holds (the directory renews whatever it holds).
        held: u8,
        /// The claimed digest.
        digest: u64,
    },
    /// Subscribe to unicast deliveries, or renew (with the sender's cookie).
    Subscribe {
        /// Request id.
        request: u32,
        /// One of three subscribers.
        subscriber: u8,
        /// One of three delivery ids.
        delivery: u8,
        /// The lease asked for (0: the default).
        lease_ms: u16,
        /// What it claims to hold.
        since: Option<u32>,
    },
    /// End a subscription.
    Unsubscribe {
        /// Request id.
        request: u32,
        /// One of three subscribers.
        subscriber: u8,
    },
    /// Acknowledge deliveries.
    DeliveryAck {
        /// One of three subscribers.
        subscriber: u8,
        /// One of three delivery ids.
        delivery: u8,
        /// Held up to.
        as_of: u32,
        /// The delivery in flight taken up to this name.
        taken: Option<SmallName>,
    },
}

/// A structured datagram for the directory.
#[derive(Debug, Arbitrary)]
pub struct RequestFrame {
    /// Its environment.
    pub env: EnvChoice,
    /// Its request.
    pub request: Request,
}

impl RequestFrame {
    /// Encodes the frame with the real encoder; a snapshot request or a subscription
    /// carries `cookie`.
    pub fn to_vec(&self, cookie: Option<[u8; wire::COOKIE_LEN]>) -> Vec<u8> {
        let environment = self.env.environment();
        let mut buf = vec![0; wire::DEFAULT_MAX_DATAGRAM];
        let len = match &self.request {
            Request::Register {
                request,
                registrant,
                lease_ms,
                registration,
            } => wire::encode(
                &environment,
                &RegisterRequest {
                    request: *request,
                    registrant: u64::from(registrant % 3),
                    // Arbitrary, so that late and repeated requests are exercised too.
                    sequence: u64::from(*request),
                    lease: ms(u64::from(*lease_ms)),
                    registration: registration.registration(),
                },
                &mut buf,
            ),
            Request::Unregister {
                request,
                registrant,
                name,
            } => wire::encode(
                &environment,
                &UnregisterRequest {
                    request: *request,
                    registrant: u64::from(registrant % 3),
                    sequence: u64::from(*request),
                    name: name.name(),
                },
                &mut buf,
            ),
            Request::Snapshot {
                request,
                max_pages,
                after,
                interest,
                since,
            } => {
                let mut i = Interest::all();
                if let Some((name, prefix)) = interest {
                    let name = name.name();
                    let p = if *prefix {
                        Pattern::prefix(name.as_str()).expect("valid prefix")
                    } else {
                        Pattern::exact(&name)
                    };
                    i.push(p).expect("room for one pattern");
                }
                wire::encode(
                    &environment,
                    &SnapshotRequest {
                        request: *request,
                        max_pages: *max_pages,
                        after: after.map(SmallName::name),
                        interest: i,
                        cookie,
                        since: since.map(|v| herald_core::Version(u64::from(v))),
                    },
                    &mut buf,
                )
            }
            Request::KeepAlive {
                request,
                registrant,
                lease_ms,
                held,
                digest,
            } => wire::encode(
                &environment,
                &KeepAliveRequest {
                    request: *request,
                    registrant: u64::from(registrant % 3),
                    sequence: u64::from(*request),
                    lease: ms(u64::from(*lease_ms)),
                    held: Holdings {
                        count: u32::from(*held),
                        digest: *digest,
                    },
                },
                &mut buf,
            ),
            Request::Subscribe {
                request,
                subscriber,
                delivery,
                lease_ms,
                since,
            } => wire::encode(
                &environment,
                &SubscribeRequest {
                    request: *request,
                    subscriber: u64::from(subscriber % 3),
                    delivery: u32::from(delivery % 3),
                    lease: ms(u64::from(*lease_ms)),
                    interest: Interest::all(),
                    since: since.map(|v| herald_core::Version(u64::from(v))),
                    cookie,
                },
                &mut buf,
            ),
            Request::Unsubscribe {
                request,
                subscriber,
            } => wire::encode(
                &environment,
                &UnsubscribeRequest {
                    request: *request,
                    subscriber: u64::from(subscriber % 3),
                },
                &mut buf,
            ),
            Request::DeliveryAck {
                subscriber,
                delivery,
                as_of,
                taken,
            } => wire::encode(
                &environment,
                &DeliveryAck {
                    subscriber: u64::from(subscriber % 3),
                    delivery: u32::from(delivery % 3),
                    as_of: herald_core::Version(u64::from(*as_of)),
                    taken: (*taken).map(SmallName::name),
                },
                &mut buf,
            ),
        }
        .expect("a small-world request fits");
        buf.truncate(len);
        buf
    }
}

/// The directory's configuration and capacity from the input's configuration bytes;
/// every combination is valid.
pub fn config(c: [u8; input::CONFIG_LEN]) -> (DirectoryConfig, usize) {
    let address = Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 37399).expect("valid");
    let mut config = DirectoryConfig::new(address, group());
    config.notifications = 1 + c[0] % 24;
    let capacity = 1 + usize::from(c[1] % 12);
    config.max_datagram =
        wire::MIN_MAX_DATAGRAM + usize::from(u16::from_le_bytes([c[2], c[3]]) % 1024);
    config.interval = ms(1 + u64::from(c[4]));
    config.beacon_interval = ms(100 * (1 + u64::from(c[5] % 20)));
    config.sweep_period = ms(100 * (1 + u64::from(c[6] % 100)));
    config.min_lease = ms(100 * (1 + u64::from(c[7] & 7)));
    config.default_lease = config.min_lease.mul(2);
    config.max_lease = config.min_lease.mul(2 + u64::from(c[7] >> 3));
    if c[6] >= 200 {
        config.keys = Some(keys());
        config.max_datagram += herald_core::auth::TRAILER_LEN;
    }
    (config, capacity)
}

/// The small world's senders (clients, and a few odd addresses).
pub fn sender(index: u8) -> SocketAddr {
    let all = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5001),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 6000),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    ];
    all[usize::from(index) % all.len()]
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (c, steps) = input::parse(data);
    let (config, capacity) = config(c);
    let mut slots: Vec<Slot> = vec![None; capacity];
    let mut index = vec![0u32; capacity];
    // A small subscriber table: subscriptions, deliveries and their re-sends are fuzzed
    // too, and so is "full".
    let mut subscribers: Vec<SubscriberSlot> = vec![None; 2];
    let directory = Directory::new(config.clone(), &mut slots, &mut index)
        .expect("valid config")
        .with_subscribers(&mut subscribers);
    let mut h = Harness {
        d: directory,
        config,
        capacity,
        now: Instant::ZERO,
        buf: vec![0; 2 * wire::DEFAULT_MAX_DATAGRAM],
        unregistered: HashMap::new(),
        registered: HashMap::new(),
        counters: HashMap::new(),
        last_counter: 0,
        cookies: HashMap::new(),
        received: 0,
        store: BTreeMap::new(),
        owed: HashMap::new(),
        history: Vec::new(),
        held: HashSet::new(),
    };
    // Time starts at zero (the clock that authenticated counters follow starts here).
    h.timeout(Instant::ZERO);
    for step in steps.take(MAX_STEPS) {
        h.step(step);
    }
    h.quiesce();
}

struct Harness<'a> {
    d: Directory<'a>,
    config: DirectoryConfig,
    capacity: usize,
    /// The latest time fed.
    now: Instant,
    buf: Vec<u8>,
    /// Unregistered notifications sent per (name, version).
    unregistered: HashMap<(String, u64), u32>,
    /// The newest version announced or stored as registered, per name.
    registered: HashMap<String, u64>,
    /// With keys: the last counter each sender sealed a request with.
    counters: HashMap<SocketAddr, u64>,
    /// With keys: the last counter the directory sent.
    last_counter: u64,
    /// The last snapshot cookie the directory gave each sender, echoed in its requests.
    cookies: HashMap<SocketAddr, [u8; wire::COOKIE_LEN]>,
    /// The length of the datagram being answered.
    received: usize,
    /// The shared store as this directory and its peers wrote it: name → record bytes.
    store: BTreeMap<String, Vec<u8>>,
    /// Removals not started here: the notifications still owed when the record
    /// arrived (`None`: a peer finished it, any number up to N is right).
    owed: HashMap<(String, u64), Option<u32>>,
    /// Every record ever written to the store, oldest first (bounded): late copies the
    /// store may still deliver.
    history: Vec<Vec<u8>>,
    /// Senders of a snapshot request not answered in its own step: the directory may
    /// hold its answer and send it later (a new publisher catching up holds pages, and
    /// the answers queued behind them).
    held: HashSet<SocketAddr>,
}

/// Most records kept in [`Harness::history`].
const HISTORY: usize = 1_024;

fn earlier(now: Instant, dt: u16) -> Instant {
    Instant::from_micros(
        now.as_micros()
            .saturating_sub(ms(u64::from(dt)).as_micros()),
    )
}

impl Harness<'_> {
    fn step(&mut self, step: Step<'_>) {
        let dt = ms(u64::from(step.dt_ms));
        let from = sender(step.sender);
        if step.op != Op::Extra {
            self.now += dt;
        }
        let now = self.now;
        match step.op {
            Op::Timeout => self.timeout(now),
            Op::Deadline => {
                let deadline = self
                    .d
                    .poll_timeout()
                    .expect("a directory always has a deadline");
                self.now = self.now.max(deadline);
                self.timeout(self.now);
            }
            Op::Raw => self.deliver(now, from, step.payload),
            Op::Structured => {
                if let Ok(frame) = RequestFrame::arbitrary(&mut Unstructured::new(step.payload)) {
                    let bytes = self.outgoing(from, frame.to_vec(self.cookies.get(&from).copied()));
                    self.deliver(now, from, &bytes);
                }
            }
            Op::Message => {
                if let Ok(frame) = OwnedFrame::arbitrary(&mut Unstructured::new(step.payload)) {
                    if let Ok(bytes) = frame.to_vec(wire::DEFAULT_MAX_DATAGRAM) {
                        let bytes = self.outgoing(from, bytes);
                        self.deliver(now, from, &bytes);
                    }
                }
            }
            Op::Mutated => {
                let (mutation, rest) = input::mutation(step.payload);
                if let Ok(frame) = RequestFrame::arbitrary(&mut Unstructured::new(rest)) {
                    let mut bytes =
                        self.outgoing(from, frame.to_vec(self.cookies.get(&from).copied()));
                    mutation.apply(&mut bytes);
                    self.deliver(now, from, &bytes);
                }
            }
            Op::Extra => self.extra(now, from, step),
        }
    }

    /// An API call: a datagram with time going backwards, or a replica's calls.
    fn extra(&mut self, now: Instant, from: SocketAddr, step: Step<'_>) {
        let (&which, rest) = step.payload.split_first().unwrap_or((&0, &[]));
        let flag = rest.first().is_some_and(|b| b & 1 == 1);
        crate::trace!(
            "  call {} (flag {flag})",
            EXTRA_CALLS[usize::from(which % 6)]
        );
        match which % 6 {
            0 => {
                // The directory must treat time going backwards as the latest time.
                if let Ok(frame) = RequestFrame::arbitrary(&mut Unstructured::new(rest)) {
                    let bytes = self.outgoing(from, frame.to_vec(self.cookies.get(&from).copied()));
                    self.deliver(earlier(now, step.dt_ms), from, &bytes);
                }
                return;
            }
            1 => self.d.set_publishing(now, flag),
            2 => self.d.set_expiring(now, flag),
            3 => self.peer_change(now, rest),
            4 if flag => self.late_copy(now, rest),
            4 => {
                // The store sends one of its records back (a watch event, a reload).
                if let Some(bytes) = pick(&self.store, rest).map(|(_, b)| b.clone()) {
                    let record = Record::from_bytes(&bytes, self.wall()).expect("stored");
                    let _ = self.d.apply(now, record);
                }
            }
            _ => {
                // The record left the store: another directory finished its removal
                // (forget), or it went while this directory was not watching and a
                // reload finds it gone (discard).
                let picked = pick(&self.store, rest).map(|(name, bytes)| {
                    let r = Record::from_bytes(bytes, self.wall()).expect("stored");
                    (name.clone(), r.service.version.0, r.is_live())
                });
                if let Some((name, version, live)) = picked {
                    self.store.remove(&name);
                    self.owed.insert((name.clone(), version), None);
                    if live && flag {
                        self.d.discard(now, &name);
                    } else {
                        self.d.forget(now, &name);
                    }
                }
            }
        }
        self.drain(now, None);
    }

    /// A late copy of any state the store ever held arrives (a slow replica's watch):
    /// it must not bring back a state older than a removal this directory announced.
    fn late_copy(&mut self, now: Instant, rest: &[u8]) {
        let Some(bytes) = rest
            .get(1)
            .and_then(|&i| self.history.get(usize::from(i) * self.history.len() / 256))
        else {
            return;
        };
        let record = Record::from_bytes(bytes, self.wall()).expect("stored");
        let (name, version) = (record.name().to_string(), record.service.version.0);
        let _ = self.d.apply(now, record);
        let held = self
            .d
            .record(&name)
            .filter(|r| r.is_live() && r.service.version.0 == version);
        if held.is_some() {
            let removed_later = self
                .unregistered
                .keys()
                .any(|(n, v)| *n == name && *v > version);
            assert!(
                !removed_later,
                "a late copy of {name} v{version} brought it back after a newer removal"
            );
        }
    }

    /// Another directory's change, decoded from arbitrary bytes, newer than anything
    /// here (as a peer's version clock makes it), arriving through the store.
    fn peer_change(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(mut record) = Record::from_bytes(bytes, self.wall()) else {
            return;
        };
        record.service.version = herald_core::Version(self.d.as_of().0 + 1);
        if let RecordState::Departed { remaining } = record.state {
            let remaining = remaining.min(self.config.notifications);
            record.state = RecordState::Departed { remaining };
            let key = (record.name().to_string(), record.service.version.0);
            self.owed.insert(key, Some(u32::from(remaining)));
        }
        let mut buf = [0u8; MAX_RECORD_LEN];
        if let Some(stored) = record.to_bytes(self.wall(), &mut buf) {
            self.store
                .insert(record.name().to_string(), stored.to_vec());
        }
        let _ = self.d.apply(now, record);
    }

    /// The wall clock the store's records are written with.
    fn wall(&self) -> WallClock {
        WallClock {
            now: self.now,
            unix_ms: 1_700_000_000_000,
        }
    }

    /// Seals a request when the directory has keys, with the sender's next counter
    /// (following the clock, as a client's does).
    fn outgoing(&mut self, from: SocketAddr, frame: Vec<u8>) -> Vec<u8> {
        let Some(keys) = &self.config.keys else {
            return frame;
        };
        let last = self.counters.entry(from).or_default();
        *last = (*last + 1).max(self.now.as_micros());
        seal(&frame, keys, *last)
    }

    fn deliver(&mut self, at: Instant, from: SocketAddr, bytes: &[u8]) {
        crate::trace!(
            "{at} datagram from {from}: {:?}",
            decode_sent(bytes, self.config.keys.as_ref())
        );
        crate::trace!("  bytes {}", crate::hex(bytes));
        self.received = bytes.len();
        self.d.handle_datagram(at, from, bytes);
        let answered = self.drain(at, Some(from));
        let snapshot = decode_sent(bytes, self.config.keys.as_ref())
            .is_ok_and(|(f, _)| matches!(f.message, OwnedMessage::SnapshotRequest(_)));
        if snapshot && !answered {
            self.held.insert(from);
        }
    }

    fn timeout(&mut self, now: Instant) {
        crate::trace!("{now} timeout");
        self.d.handle_timeout(now);
        self.drain(now, None);
        let next = self
            .d
            .poll_timeout()
            .expect("a directory always has a deadline");
        assert!(
            next > self.now,
            "no progress: after handle_timeout({}) poll_timeout() is {next}",
            self.now
        );
    }

    /// Lets the directory run until no departed entry is left, then checks that every
    /// removal was announced exactly N times.
    fn quiesce(&mut self) {
        self.d.set_publishing(self.now, true);
        self.d.set_expiring(self.now, true);
        for _ in 0..QUIESCE_ROUNDS {
            if self.d.records().all(Record::is_live) {
                break;
            }
            let deadline = self
                .d
                .poll_timeout()
                .expect("a directory always has a deadline");
            self.now = self.now.max(deadline);
            self.timeout(self.now);
        }
        let stuck: Vec<_> = self.d.records().filter(|r| !r.is_live()).collect();
        assert!(stuck.is_empty(), "departed entries never finish: {stuck:?}");
        if self.d.stats().notifications_dropped > 0 {
            return;
        }
        let n = u32::from(self.config.notifications);
        for ((name, version), &count) in &self.unregistered {
            let came_back = self.registered.get(name).is_some_and(|v| v > version);
            let expected = match self.owed.get(&(name.clone(), *version)) {
                Some(None) => continue,
                Some(Some(owed)) => *owed,
                None => n,
            };
            assert!(
                came_back || count == expected,
                "{name} v{version} announced unregistered {count} times, not exactly {expected}"
            );
        }
    }

    /// Takes what the directory sends and its events, and checks them; true when
    /// something was sent to `from`.
    fn drain(&mut self, at: Instant, from: Option<SocketAddr>) -> bool {
        let mut sent = 0;
        let mut answered = false;
        while let Some(t) = self.d.poll_transmit(at, &mut self.buf) {
            sent += 1;
            assert!(sent <= MAX_DRAIN, "poll_transmit never runs dry");
            assert!(
                t.len <= self.config.max_datagram,
                "datagram of {} bytes, maximum {}",
                t.len,
                self.config.max_datagram
            );
            let (frame, counter) = decode_sent(&self.buf[..t.len], self.config.keys.as_ref())
                .unwrap_or_else(|e| panic!("the directory sent an undecodable datagram: {e}"));
            if let Some(counter) = counter {
                assert!(
                    counter > self.last_counter,
                    "counter did not grow: {counter}"
                );
                self.last_counter = counter;
            }
            crate::trace!("  sent to {}: {frame:?}", t.destination);
            if matches!(frame.message, OwnedMessage::Cookie(_)) {
                assert!(
                    t.len <= herald_core::AMPLIFICATION * self.received,
                    "a cookie of {} bytes answered {} bytes",
                    t.len,
                    self.received
                );
            }
            answered |= Some(t.destination) == from;
            self.check_sent(t.destination, from, frame);
        }
        let mut removed = Vec::new();
        let mut events = 0;
        let clock = self.wall();
        while let Some(event) = self.d.poll_event() {
            events += 1;
            assert!(events <= MAX_DRAIN, "poll_event never runs dry");
            crate::trace!("  event {event:?}");
            match event {
                DirectoryEvent::Stored(record) | DirectoryEvent::Renewed(record) => {
                    if record.is_live() {
                        // The name is back (a replica stores it without announcing it):
                        // an earlier removal's remaining notifications are moot.
                        let v = self
                            .registered
                            .entry(record.name().to_string())
                            .or_default();
                        *v = (*v).max(record.service.version.0);
                    }
                    let bytes = check_stored(record, clock);
                    if self.history.len() < HISTORY {
                        self.history.push(bytes.clone());
                    }
                    self.store.insert(record.name().to_string(), bytes);
                }
                DirectoryEvent::Removed(name) => removed.push(name),
            }
        }
        for name in &removed {
            // As a shell does: delete the stored record if it is still departed.
            let departed = self
                .store
                .get(name.as_str())
                .is_some_and(|bytes| Record::from_bytes(bytes, clock).is_ok_and(|r| !r.is_live()));
            if departed {
                self.store.remove(name.as_str());
            }
        }
        for name in removed {
            assert!(
                self.d.record(name.as_str()).is_none(),
                "{name} reported removed but still held"
            );
        }
        assert_eq!(self.d.capacity(), self.capacity);
        assert!(self.d.len() <= self.capacity, "registry over capacity");
        assert_eq!(self.d.records().count(), self.d.len());
        answered
    }

    fn check_sent(&mut self, to: SocketAddr, from: Option<SocketAddr>, frame: OwnedFrame) {
        let own_env = frame.environment == self.config.environment;
        match frame.message {
            OwnedMessage::DeliveredSnapshot(id, ref h, _)
            | OwnedMessage::DeliveredChanges(id, ref h, _) => {
                // A delivery to a subscriber, named for it.
                let subscribed = self
                    .d
                    .subscribers()
                    .any(|s| s.id == id && s.address == to && s.delivery == h.request);
                assert!(subscribed, "a delivery to no subscription");
                assert!(self.d.is_publishing(), "a replica delivered");
            }
            OwnedMessage::Ack(_)
            | OwnedMessage::KeepAliveAck(_)
            | OwnedMessage::SubscribeAck(_)
            | OwnedMessage::Reject(_) => {
                assert_eq!(Some(to), from, "a reply goes to the requester");
            }
            OwnedMessage::SnapshotPage(..) | OwnedMessage::ChangesPage(..) => {
                let requester = Some(to) == from || self.held.contains(&to);
                assert!(requester, "a page goes to {to}, who asked for none");
            }
            OwnedMessage::Cookie(c) => {
                let requester = Some(to) == from || self.held.contains(&to);
                assert!(requester, "a cookie goes to {to}, who asked for none");
                self.cookies.insert(to, c.cookie);
            }
            OwnedMessage::Beacon(ref b)
                if to != self.config.group && self.d.subscribers().any(|s| s.address == to) =>
            {
                // A demoted directory tells each subscriber, by a beacon of its own, that
                // it delivers nothing more.
                assert!(!b.publishing, "a unicast beacon says publishing");
                assert!(!self.d.is_publishing(), "a publisher beaconed a subscriber");
                assert!(own_env, "beacons are in the directory's environment");
            }
            OwnedMessage::Announce(..) | OwnedMessage::SyncPage(..) | OwnedMessage::Beacon(_) => {
                assert_eq!(to, self.config.group, "announcements go to the group");
                let beacon = matches!(frame.message, OwnedMessage::Beacon(_));
                assert!(beacon || self.d.is_publishing(), "a replica announced");
                assert!(own_env, "announcements are in the directory's environment");
            }
            ref m => panic!("a directory sent a request: {m:?}"),
        }
        match frame.message {
            OwnedMessage::Announce(header, changes) => {
                assert_eq!(header.directory, self.config.address);
                assert!(
                    header.previous <= header.as_of,
                    "a link before its predecessor"
                );
                for change in changes {
                    match change {
                        Change::Registered(s) => {
                            self.check_live(&s);
                            let v = self.registered.entry(s.name().to_string()).or_default();
                            *v = (*v).max(s.version.0);
                        }
                        Change::Unregistered { name, version } => {
                            let key = (name.to_string(), version.0);
                            let count = self.unregistered.entry(key).or_default();
                            *count += 1;
                            assert!(
                                *count <= u32::from(self.config.notifications),
                                "{name} {version} announced unregistered {count} times, more than {}",
                                self.config.notifications
                            );
                        }
                    }
                }
            }
            OwnedMessage::SnapshotPage(header, services)
            | OwnedMessage::SyncPage(header, services)
            | OwnedMessage::DeliveredSnapshot(_, header, services) => {
                let mut previous = header.after.clone();
                for s in &services {
                    self.check_live(s);
                    if let Some(p) = &previous {
                        assert!(p < s.name(), "page out of order: {p} then {}", s.name());
                    }
                    previous = Some(s.name().clone());
                }
                assert!(header.as_of <= self.d.as_of());
            }
            OwnedMessage::ChangesPage(header, changes)
            | OwnedMessage::DeliveredChanges(_, header, changes) => {
                let mut previous = header.after.clone();
                for change in &changes {
                    match change {
                        Change::Registered(s) => self.check_live(s),
                        Change::Unregistered { name, version } => {
                            let record = self.d.record(name.as_str());
                            assert!(
                                record
                                    .is_some_and(|r| !r.is_live() && r.service.version == *version),
                                "{name} sent as removed at {version} but not held so"
                            );
                        }
                    }
                    if let Some(p) = &previous {
                        assert!(
                            p < change.name(),
                            "page out of order: {p} then {}",
                            change.name()
                        );
                    }
                    previous = Some(change.name().clone());
                }
                assert!(header.as_of <= self.d.as_of());
            }
            OwnedMessage::Beacon(b) => {
                assert_eq!(b.directory, self.config.address);
                assert_eq!(b.publishing, self.d.is_publishing());
                assert_eq!(b.services as usize, self.d.live(), "beacon miscounts");
            }
            _ => {}
        }
    }

    /// A service the directory just sent as live is live in its registry, as sent.
    fn check_live(&self, s: &herald_core::Service) {
        let record = self
            .d
            .record(s.name().as_str())
            .unwrap_or_else(|| panic!("{} sent as live but not held", s.name()));
        assert!(record.is_live(), "{} sent as live but departed", s.name());
        assert_eq!(&record.service, s, "sent state differs from the registry");
    }
}

/// A stored record reads back as written (an expired lease reads back as expiring now);
/// returns its bytes.
fn check_stored(record: &Record, clock: WallClock) -> Vec<u8> {
    let mut buf = [0u8; MAX_RECORD_LEN];
    let bytes = record
        .to_bytes(clock, &mut buf)
        .unwrap_or_else(|| panic!("record longer than MAX_RECORD_LEN: {record:?}"));
    let back = Record::from_bytes(bytes, clock).expect("a stored record reads back");
    let mut expected = record.clone();
    if let RecordState::Live { expires } = &mut expected.state {
        *expires = (*expires).max(clock.now);
    }
    assert_eq!(back, expected, "stored record changed");
    bytes.to_vec()
}

/// The store's entry at the index the first byte of `choice` picks.
fn pick<'s>(
    store: &'s BTreeMap<String, Vec<u8>>,
    choice: &[u8],
) -> Option<(&'s String, &'s Vec<u8>)> {
    let len = store.len();
    (len > 0).then(|| {
        store
            .iter()
            .nth(usize::from(choice.first().copied().unwrap_or(0)) % len)
    })?
}
