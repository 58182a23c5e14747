//! The client: what devices and servers embed to register their own services and to
//! discover others.
//!
//! A client keeps a list of directories and talks to one at a time (the *current*
//! directory). It registers its services there and renews each lease at about a third
//! of its duration; when requests go unanswered it retries with backoff and then fails
//! over to the next directory. It learns further directories from beacons.
//!
//! With an [`Interest`], it is also a listener: it follows the current directory's
//! announcements on the group (of directories that share a store only the publisher
//! announces, so a listener makes a directory whose beacons say it publishes its
//! current one as soon as it hears it, and prefers one when it fails over), keeps a bounded table of the services it has discovered,
//! and emits [`ClientEvent::Discovered`], [`ClientEvent::Changed`] and
//! [`ClientEvent::Unregistered`] exactly once per real change, never for a mere
//! re-announcement. It asks for a snapshot when it starts, when it switches directory,
//! and when a beacon shows it has missed a change; the directory's paced sweep drops
//! whatever it still holds that is gone (after a partition, for instance).
//!
//! Drive it as the [crate docs](crate) describe.

use crate::auth::{self, Keys, ReplayWindow, TRAILER_LEN};
use crate::interest::Interest;
use crate::location::Location;
use crate::name::{Environment, ServiceName};
use crate::service::{Registration, Service, Version};
use crate::table::{Named, Table, TableStorage};
use crate::time::{Duration, Instant};
use crate::tombstone::{fnv1a, Tombstones, FNV_OFFSET};
use crate::wire::{
    self, Ack, AnnounceHeader, Beacon, Change, Items, Message, PageHeader, RegisterRequest, Reject,
    RejectReason, SnapshotRequest, UnregisterRequest,
};
use crate::Transmit;
use core::net::SocketAddr;

/// Most directories a client knows at once (configured and learned).
pub const MAX_DIRECTORIES: usize = 4;
/// How many recent removals a client remembers, to ignore stale announcements that
/// arrive after them.
const TOMBSTONES: usize = 16;

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The environment; frames from others are ignored (and counted).
    pub environment: Environment,
    /// Who this client is: only it may renew or remove what it registered. Choose it at
    /// random per process, or derive it from a stable identity to take names back after
    /// a restart.
    pub registrant: u64,
    /// Directories to use, in order of preference (more are learned from beacons).
    pub directories: heapless::Vec<Location, MAX_DIRECTORIES>,
    /// What to discover; `None` for a client that only registers.
    pub interest: Option<Interest>,
    /// Lease to ask for (default 15 s; the directory clamps it).
    pub lease: Duration,
    /// Time before the first retransmission of a request (default 250 ms); doubles on
    /// each retry, up to eight times.
    pub request_timeout: Duration,
    /// Attempts at one directory before failing over to the next (default 3).
    pub max_attempts: u8,
    /// A listener whose directory's beacons stop for this long fails over (default 3 s).
    pub directory_timeout: Duration,
    /// After a failover, absence from the new directory's pages removes nothing for this
    /// long, so registrants have time to move too (default 6 s).
    pub failover_grace: Duration,
    /// Pages the directory may send per snapshot request (default 16).
    pub snapshot_pages: u8,
    /// Largest datagram sent (default 1400 bytes).
    pub max_datagram: usize,
    /// The environment's keys; `None` (the default) sends and accepts unauthenticated
    /// frames only. See [`auth`].
    pub keys: Option<Keys>,
    /// With keys: the wall clock in microseconds since the Unix epoch at the first `now`,
    /// if the machine knows it (0 otherwise). Request counters follow this clock, and
    /// the directory's when it is ahead.
    pub clock_floor: u64,
}

impl ClientConfig {
    /// Defaults for a registrant identified by `registrant`, with no directory yet and no
    /// interest.
    pub fn new(registrant: u64) -> Self {
        ClientConfig {
            environment: Environment::default(),
            registrant,
            directories: heapless::Vec::new(),
            interest: None,
            lease: Duration::from_secs(15),
            request_timeout: Duration::from_millis(250),
            max_attempts: 3,
            directory_timeout: Duration::from_secs(3),
            failover_grace: Duration::from_secs(6),
            snapshot_pages: 16,
            max_datagram: wire::DEFAULT_MAX_DATAGRAM,
            keys: None,
            clock_floor: 0,
        }
    }
}

/// Why the client refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// No room for another registration of this client's own.
    TooManyRegistrations,
    /// This client has not registered that name.
    NotRegistered,
    /// The maximum datagram size is below 512 or above 65507 bytes.
    MaxDatagram,
    /// The request timeout or the directory timeout is zero.
    ZeroTimeout,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClientError::TooManyRegistrations => "no room for another registration",
            ClientError::NotRegistered => "that name is not registered by this client",
            ClientError::MaxDatagram => "the maximum datagram size must be 512 to 65507 bytes",
            ClientError::ZeroTimeout => "timeouts must be longer than zero",
        })
    }
}

impl core::error::Error for ClientError {}

/// What happened, as a client reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A service of interest appeared.
    Discovered(Service),
    /// A known service's locations or metadata changed.
    Changed(Service),
    /// A known service went away (unregistered or expired); its last known state.
    Unregistered(Service),
    /// One of this client's registrations was accepted (first time only).
    Registered {
        /// The service.
        name: ServiceName,
        /// The lease granted; the client renews it by itself.
        lease: Duration,
        /// The directory that accepted it.
        directory: Location,
    },
    /// A directory refused a request; a refused registration is dropped.
    Rejected {
        /// The registration concerned, `None` for a snapshot.
        name: Option<ServiceName>,
        /// Why.
        reason: RejectReason,
        /// The environment the directory serves.
        directory_environment: Environment,
    },
    /// One of this client's unregistrations finished; `confirmed` is false when no
    /// directory answered (the lease will then run out by itself).
    Released {
        /// The service.
        name: ServiceName,
        /// Whether a directory acknowledged it.
        confirmed: bool,
    },
    /// Every known directory was tried without an answer (the client keeps trying).
    Unreachable,
    /// The client now talks to this directory.
    DirectoryChanged(Location),
    /// A snapshot finished: the table holds the directory's registry (for the interest).
    SnapshotComplete {
        /// Services now known.
        services: usize,
    },
}

/// Counters a shell may export as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Datagrams handled.
    pub datagrams_in: u64,
    /// Datagrams that were not valid Herald frames.
    pub malformed: u64,
    /// Frames from another environment, ignored.
    pub wrong_environment: u64,
    /// Announcements and pages from a directory other than the current one, ignored.
    pub foreign_directory: u64,
    /// Announced states older than, or equal to, what was known, ignored.
    pub stale: u64,
    /// Services of interest dropped because the table was full.
    pub table_full: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// With keys: frames without a valid authentication tag, dropped.
    pub unauthenticated: u64,
    /// With keys: authenticated frames seen before, dropped.
    pub replayed: u64,
}

/// A discovered service in the client's table.
#[derive(Clone, Debug)]
pub struct Known {
    service: Service,
    /// The user has been told it exists.
    told: bool,
    /// Changed since the user was last told.
    changed: bool,
    /// Gone; to be reported (if told) and dropped.
    removed: bool,
    /// A hash of the content the user was last told, so that a change and back between
    /// two polls is not reported as a change.
    reported: u32,
}

impl Known {
    fn pending(&self) -> bool {
        if self.removed {
            true
        } else {
            !self.told || self.changed
        }
    }
}

impl Named for Known {
    fn name(&self) -> &str {
        self.service.registration.name.as_str()
    }
}

/// One place in the client's table of discovered services. Make storage with
/// [`ClientStorage`], or with `vec![None; n]` and `vec![0u32; n]` where there is a heap.
pub type Discovered = Option<Known>;

/// Storage for a client that discovers up to `N` services, for places without a heap.
pub type ClientStorage<const N: usize> = TableStorage<Known, N>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnState {
    /// Registering or renewing: waiting for an acknowledgement.
    Registering,
    /// Acknowledged; renew at the deadline.
    Active,
    /// Unregistering: waiting for an acknowledgement.
    Unregistering,
    /// Finished; the event is waiting to be polled, then the slot is freed.
    Done,
}

#[derive(Clone, Debug)]
struct Own {
    name: ServiceName,
    /// What to register; `None` for a name this client only releases.
    registration: Option<Registration>,
    state: OwnState,
    request: u32,
    attempts: u8,
    send: bool,
    deadline: Instant,
    /// The user was told it is registered.
    confirmed: bool,
    outcome: Option<Outcome>,
}

impl Own {
    /// A registration (or, without one, a release) to send at once as `request`.
    fn new(
        name: ServiceName,
        registration: Option<Registration>,
        request: u32,
        now: Instant,
    ) -> Self {
        let state = match registration {
            Some(_) => OwnState::Registering,
            None => OwnState::Unregistering,
        };
        Own {
            name,
            registration,
            state,
            request,
            attempts: 0,
            send: true,
            deadline: now,
            confirmed: false,
            outcome: None,
        }
    }
}

/// What happened to one of the client's own registrations, waiting to be polled. Kept
/// small: the event is built from it (and the registration's name) when polled.
#[derive(Clone, Debug)]
enum Outcome {
    Registered {
        lease: Duration,
        directory: Location,
    },
    Rejected {
        reason: RejectReason,
        directory_environment: Environment,
    },
    Released {
        confirmed: bool,
    },
}

impl Outcome {
    fn into_event(self, name: ServiceName) -> ClientEvent {
        match self {
            Outcome::Registered { lease, directory } => ClientEvent::Registered {
                name,
                lease,
                directory,
            },
            Outcome::Rejected {
                reason,
                directory_environment,
            } => ClientEvent::Rejected {
                name: Some(name),
                reason,
                directory_environment,
            },
            Outcome::Released { confirmed } => ClientEvent::Released { name, confirmed },
        }
    }
}

#[derive(Clone, Debug)]
struct Snapshot {
    request: u32,
    after: Option<ServiceName>,
    pages_left: u8,
    attempts: u8,
    send: bool,
    deadline: Instant,
    as_of: Option<Version>,
    /// A cookie answer already made this request go out again at once (once per page:
    /// a client whose address changes with every datagram must not ping-pong).
    cookied: bool,
}

#[derive(Clone, Copy, Debug)]
struct KnownDirectory {
    location: Location,
    last_heard: Option<Instant>,
    /// With keys: the counters seen from this directory.
    window: ReplayWindow,
    /// What its last beacon said: it announces changes (until heard, assumed).
    publishing: bool,
}

impl KnownDirectory {
    fn new(location: Location) -> Self {
        KnownDirectory {
            location,
            last_heard: None,
            window: ReplayWindow::default(),
            publishing: true,
        }
    }
}

/// The client state machine; `R` is how many services it can register itself.
pub struct Client<'a, const R: usize = 4> {
    config: ClientConfig,
    directories: heapless::Vec<KnownDirectory, MAX_DIRECTORIES>,
    current: Option<usize>,
    /// Directory switches since the last answer.
    switches: usize,
    unreachable_told: bool,
    unreachable_pending: bool,
    directory_changed: Option<Location>,
    own: heapless::Vec<Own, R>,
    table: Table<'a, Known>,
    pending: usize,
    event_cursor: usize,
    tombstones: Tombstones<TOMBSTONES>,
    max_seen: Version,
    snapshot: Option<Snapshot>,
    snapshot_done: Option<usize>,
    snapshot_rejection: Option<(RejectReason, Environment)>,
    /// The last snapshot cookie a directory gave this client, echoed in the snapshot
    /// requests sent to that directory.
    cookie: Option<(SocketAddr, [u8; wire::COOKIE_LEN])>,
    /// The last beacon's service count differed from what this listener holds.
    miscounted: bool,
    grace_until: Instant,
    next_request: u32,
    /// With keys: the counter of the last frame sent, and the clock it follows.
    counter: u64,
    counter_base: u64,
    /// When `counter_base` was set (`None` until the first `now`).
    counter_epoch: Option<Instant>,
    now: Instant,
    stats: ClientStats,
}

/// A hash of what a registration publishes (locations and metadata), FNV-1a folded to
/// 32 bits: two different contents collide with a chance of one in four billion.
fn content_hash(registration: &Registration) -> u32 {
    let mut h = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| h = fnv1a(h, bytes);
    for l in &registration.locations {
        match l.ip() {
            core::net::IpAddr::V4(a) => feed(&a.octets()),
            core::net::IpAddr::V6(a) => feed(&a.octets()),
        }
        feed(&l.port().to_le_bytes());
    }
    feed(&[0xff]);
    feed(registration.metadata.encoded());
    (h ^ (h >> 32)) as u32
}

impl<'a, const R: usize> Client<'a, R> {
    /// A client over `slots` and `index` (its table holds the smaller of the two).
    pub fn new(
        config: ClientConfig,
        slots: &'a mut [Discovered],
        index: &'a mut [u32],
    ) -> Result<Self, ClientError> {
        let config_clock_floor = config.clock_floor;
        let trailer = if config.keys.is_some() {
            TRAILER_LEN
        } else {
            0
        };
        if config.max_datagram < wire::MIN_MAX_DATAGRAM + trailer
            || config.max_datagram > wire::MAX_DATAGRAM
        {
            return Err(ClientError::MaxDatagram);
        }
        if config.request_timeout == Duration::ZERO || config.directory_timeout == Duration::ZERO {
            return Err(ClientError::ZeroTimeout);
        }
        let directories = config
            .directories
            .iter()
            .map(|&location| KnownDirectory::new(location))
            .collect();
        let current = (!config.directories.is_empty()).then_some(0);
        let next_request = (config.registrant as u32).max(1);
        Ok(Client {
            config,
            directories,
            current,
            switches: 0,
            unreachable_told: false,
            unreachable_pending: false,
            directory_changed: None,
            own: heapless::Vec::new(),
            table: Table::new(slots, index),
            pending: 0,
            event_cursor: 0,
            tombstones: Tombstones::new(),
            max_seen: Version(0),
            snapshot: None,
            snapshot_done: None,
            snapshot_rejection: None,
            cookie: None,
            miscounted: false,
            grace_until: Instant::ZERO,
            next_request,
            counter: 0,
            counter_base: config_clock_floor,
            counter_epoch: None,
            now: Instant::ZERO,
            stats: ClientStats::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The directory requests go to now.
    pub fn current_directory(&self) -> Option<Location> {
        self.current.map(|i| self.directories[i].location)
    }

    /// Every directory known, configured or learned.
    pub fn directories(&self) -> impl Iterator<Item = Location> + '_ {
        self.directories.iter().map(|d| d.location)
    }

    /// The services currently known, in name order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.table
            .ordered()
            .filter(|k| !k.removed)
            .map(|k| &k.service)
    }

    /// A known service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        let k = self.table.get(self.table.find(name)?)?;
        (!k.removed).then_some(&k.service)
    }

    /// How many services the table can hold.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn observe(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if self.counter_epoch.is_none() {
            self.counter_epoch = Some(now);
        }
    }

    fn request_id(&mut self) -> u32 {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        id
    }

    /// The wait before the next attempt: doubling from the request timeout, but short
    /// enough that several renewals fit in what is left of a lease.
    fn backoff(&self, attempts: u8) -> Duration {
        let doubled = self.config.request_timeout.mul(1 << attempts.min(3));
        doubled
            .min(self.config.lease.div(8))
            .max(self.config.request_timeout)
    }

    /// Registers `registration` (or updates it, if this client already registered the
    /// name) and keeps it alive until [`Client::unregister`].
    pub fn register(
        &mut self,
        now: Instant,
        registration: Registration,
    ) -> Result<(), ClientError> {
        self.observe(now);
        let request = self.request_id();
        let name = registration.name.clone();
        let fresh = Own::new(name.clone(), Some(registration), request, self.now);
        match self.own.iter_mut().find(|o| o.name == name) {
            Some(o) => *o = fresh,
            None => self
                .own
                .push(fresh)
                .map_err(|_| ClientError::TooManyRegistrations)?,
        }
        Ok(())
    }

    /// Unregisters one of this client's services.
    pub fn unregister(&mut self, now: Instant, name: &ServiceName) -> Result<(), ClientError> {
        self.observe(now);
        let request = self.request_id();
        let now = self.now;
        let own = self
            .own
            .iter_mut()
            .find(|o| &o.name == name && o.state != OwnState::Done)
            .ok_or(ClientError::NotRegistered)?;
        own.state = OwnState::Unregistering;
        own.request = request;
        own.attempts = 0;
        own.send = true;
        own.deadline = now;
        Ok(())
    }

    /// Unregisters `name` whether or not this client registered it: with a registrant id
    /// that is stable across restarts, a new process releases what an earlier one
    /// registered. [`ClientEvent::Released`] follows.
    pub fn release(&mut self, now: Instant, name: &ServiceName) -> Result<(), ClientError> {
        if self.unregister(now, name).is_ok() {
            return Ok(());
        }
        let request = self.request_id();
        let releasing = Own::new(name.clone(), None, request, self.now);
        self.own
            .push(releasing)
            .map_err(|_| ClientError::TooManyRegistrations)
    }

    /// This client's own registrations that are live or in progress.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.own
            .iter()
            .filter(|o| matches!(o.state, OwnState::Registering | OwnState::Active))
            .filter_map(|o| o.registration.as_ref())
    }

    /// Asks the current directory for its registry (filtered by the interest). The table
    /// is brought up to date and [`ClientEvent::SnapshotComplete`] follows.
    pub fn request_snapshot(&mut self, now: Instant) {
        self.observe(now);
        let request = self.request_id();
        self.snapshot = Some(Snapshot {
            request,
            after: None,
            pages_left: self.config.snapshot_pages.max(1),
            attempts: 0,
            send: true,
            deadline: self.now,
            as_of: None,
            cookied: false,
        });
    }

    fn is_directory(&self, from: SocketAddr) -> bool {
        self.directories
            .iter()
            .any(|d| d.location.socket_addr() == from)
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.observe(now);
        self.stats.datagrams_in += 1;
        let Ok((_, counter, decoded)) = auth::receive(self.config.keys.as_ref(), bytes) else {
            self.stats.unauthenticated += 1;
            return;
        };
        let frame = match decoded {
            Ok(f) => f,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        // A rejection for a wrong environment comes in the requester's environment.
        if frame.environment != self.config.environment {
            self.stats.wrong_environment += 1;
            return;
        }
        if let Some(counter) = counter {
            if !self.accept_counter(from, counter, &frame.message) {
                self.stats.replayed += 1;
                return;
            }
        }
        match frame.message {
            Message::Ack(ack) if self.is_directory(from) => self.handle_ack(ack),
            Message::Reject(reject) if self.is_directory(from) => self.handle_reject(reject),
            Message::SnapshotPage(header, items) if self.is_directory(from) => {
                self.handle_snapshot_page(header, items)
            }
            Message::Cookie(c) if self.is_directory(from) => self.handle_cookie(from, c),
            Message::Beacon(beacon) => self.handle_beacon(beacon),
            Message::Announce(header, items) => self.handle_announce(header, items),
            Message::SyncPage(header, items) => {
                if self.listening() && self.heard_from_current(from) {
                    self.apply_page(&header, items);
                } else {
                    self.stats.foreign_directory += 1;
                }
            }
            // Requests, and replies from strangers, are not for a client.
            _ => self.stats.foreign_directory += 1,
        }
    }

    fn listening(&self) -> bool {
        self.config.interest.is_some()
    }

    /// True when `from` is the current directory.
    fn heard_from_current(&self, from: SocketAddr) -> bool {
        match self.current_directory() {
            Some(d) => d.socket_addr() == from,
            None => false,
        }
    }

    fn answered(&mut self) {
        self.switches = 0;
        self.unreachable_told = false;
        if let Some(i) = self.current {
            self.directories[i].last_heard = Some(self.now);
        }
    }

    /// A directory's snapshot cookie: kept, and the snapshot request it answers sent
    /// again with it at once (once per page; after that, at its next retry).
    fn handle_cookie(&mut self, from: SocketAddr, reply: wire::CookieReply) {
        self.answered();
        self.cookie = Some((from, reply.cookie));
        if let Some(s) = self.snapshot.as_mut() {
            if s.request == reply.request && !s.cookied {
                s.cookied = true;
                s.send = true;
            }
        }
    }

    fn handle_ack(&mut self, ack: Ack) {
        let now = self.now;
        let Some(i) = self.own.iter().position(|o| o.request == ack.request) else {
            return;
        };
        self.answered();
        let directory = self.current_directory();
        let own = &mut self.own[i];
        match own.state {
            OwnState::Registering => {
                own.state = OwnState::Active;
                own.attempts = 0;
                own.send = false;
                own.deadline = now + ack.lease.div(3).max(Duration::from_millis(1));
                if !own.confirmed {
                    own.confirmed = true;
                    if let Some(directory) = directory {
                        own.outcome = Some(Outcome::Registered {
                            lease: ack.lease,
                            directory,
                        });
                    }
                }
            }
            OwnState::Unregistering => {
                own.state = OwnState::Done;
                own.send = false;
                own.outcome = Some(Outcome::Released { confirmed: true });
            }
            OwnState::Active | OwnState::Done => {}
        }
    }

    /// Checks an authenticated directory frame's counter against that directory's replay
    /// window, and lets the client's own counter follow the directory's clock.
    fn accept_counter(&mut self, from: SocketAddr, counter: u64, message: &Message<'_>) -> bool {
        let known = self
            .directories
            .iter_mut()
            .find(|d| d.location.socket_addr() == from);
        match known {
            Some(d) => {
                if !d.window.accept(counter) {
                    return false;
                }
            }
            None => {
                // A beacon from a directory not known yet: it is added with this counter.
                if let Message::Beacon(b) = message {
                    let learned = KnownDirectory::new(b.directory);
                    if b.directory.socket_addr() == from && self.directories.push(learned).is_ok() {
                        if let Some(d) = self.directories.last_mut() {
                            d.window.accept(counter);
                        }
                    }
                }
            }
        }
        let stale = matches!(message, Message::Reject(r) if r.reason == RejectReason::Stale);
        if stale || counter > self.clock() {
            // The directory's clock is ahead of ours (or it refused ours): follow it, but
            // never back below a counter already used unless it refused ours.
            self.counter_base = counter;
            self.counter_epoch = Some(self.now);
            self.counter = if stale {
                counter
            } else {
                self.counter.max(counter)
            };
        }
        true
    }

    /// The counter clock: the base, advanced by time since it was set.
    fn clock(&self) -> u64 {
        let elapsed = self
            .counter_epoch
            .map_or(0, |e| self.now.saturating_since(e).as_micros());
        self.counter_base.saturating_add(elapsed)
    }

    fn next_counter(&mut self) -> u64 {
        self.counter = self.counter.saturating_add(1).max(self.clock());
        self.counter
    }

    fn handle_reject(&mut self, reject: Reject) {
        self.answered();
        if reject.reason == RejectReason::Stale {
            // The counter clock was resynchronised from this answer: send again at once.
            for own in self.own.iter_mut() {
                if own.request == reject.request && own.state != OwnState::Done {
                    own.send = true;
                }
            }
            if let Some(s) = self.snapshot.as_mut() {
                if s.request == reject.request {
                    s.send = true;
                }
            }
            return;
        }
        let outcome = || Outcome::Rejected {
            reason: reject.reason,
            directory_environment: reject.directory_environment.clone(),
        };
        // Request 0: the directory could not read the request at all; it concerns every
        // request in flight.
        let all = reject.request == 0;
        for own in self.own.iter_mut() {
            let waiting = matches!(own.state, OwnState::Registering | OwnState::Unregistering);
            if waiting && (all || own.request == reject.request) {
                own.state = OwnState::Done;
                own.send = false;
                own.outcome = Some(outcome());
            }
        }
        if let Some(s) = &self.snapshot {
            if all || s.request == reject.request {
                self.snapshot = None;
                self.snapshot_rejection =
                    Some((reject.reason, reject.directory_environment.clone()));
            }
        }
    }

    fn handle_beacon(&mut self, beacon: Beacon) {
        let now = self.now;
        let index = match self
            .directories
            .iter()
            .position(|d| d.location == beacon.directory)
        {
            Some(i) => i,
            None => {
                let learned = KnownDirectory::new(beacon.directory);
                if self.directories.push(learned).is_err() {
                    return;
                }
                self.directories.len() - 1
            }
        };
        self.directories[index].last_heard = Some(now);
        self.directories[index].publishing = beacon.publishing;
        if self.current.is_none() {
            self.switch_to(index);
        }
        // Only a publishing directory announces: a listener following a replica (or a
        // directory silent for half the directory timeout, a publisher that died and
        // was replaced) moves to the publisher as soon as it hears it.
        let quiet = self.config.directory_timeout.div(2);
        let leave = self.current.is_some_and(|c| {
            let d = &self.directories[c];
            c != index
                && (!d.publishing
                    || d.last_heard
                        .is_some_and(|t| now.saturating_since(t) > quiet))
        });
        if self.listening() && beacon.publishing && leave {
            self.switch_to(index);
            return;
        }
        if self.current != Some(index) || !self.listening() || self.snapshot.is_some() {
            return;
        }
        // Missed a change: the directory has handed out a version not seen here.
        let behind = beacon.as_of > self.max_seen;
        // Missed a registration (a listener of everything can count): the count differs
        // at two beacons in a row (one may cross an announcement in flight).
        let everything = self
            .config
            .interest
            .as_ref()
            .is_some_and(|i| i.patterns().is_empty());
        let fits = beacon.services as usize <= self.table.capacity();
        let miscounted = everything && fits && self.live_count() != beacon.services as usize;
        let confirmed = miscounted && self.miscounted;
        self.miscounted = miscounted && !confirmed;
        if behind || confirmed {
            self.request_snapshot(now);
        }
    }

    /// Services known and not removed.
    fn live_count(&self) -> usize {
        self.table.iter().filter(|(_, k)| !k.removed).count()
    }

    fn handle_announce(&mut self, header: AnnounceHeader, items: Items<'_, Change>) {
        if !self.listening() {
            return;
        }
        if self.current_directory() != Some(header.directory) {
            // Only a publisher announces: a listener following a replica moves to a
            // known directory that announces (its snapshot there covers what came
            // before), without waiting for that directory's beacon.
            let following_replica = self
                .current
                .is_some_and(|c| !self.directories[c].publishing);
            let known = self
                .directories
                .iter()
                .position(|d| d.location == header.directory);
            match known {
                Some(i) if following_replica => {
                    self.directories[i].publishing = true;
                    self.switch_to(i);
                }
                _ => {
                    self.stats.foreign_directory += 1;
                    return;
                }
            }
        }
        for change in items {
            if change.version() > self.max_seen {
                self.max_seen = change.version();
            }
            match change {
                Change::Registered(service) => self.apply_service(service),
                Change::Unregistered { name, version } => self.apply_removal(&name, version),
            }
        }
    }

    /// A client without an interest only fills its table from snapshots it asks for,
    /// and then with everything.
    fn interested(&self, name: &str) -> bool {
        self.config
            .interest
            .as_ref()
            .is_none_or(|i| i.matches(name))
    }

    fn tombstone(&self, name: &str) -> Option<Version> {
        self.tombstones.get(name)
    }

    fn bury(&mut self, name: &str, version: Version) {
        self.tombstones.bury(name, version);
    }

    /// Changes the entry in `slot`, keeping the pending count right.
    fn update(&mut self, slot: usize, f: impl FnOnce(&mut Known)) {
        if let Some(k) = self.table.get_mut(slot) {
            let was = k.pending();
            f(k);
            match (was, k.pending()) {
                (false, true) => self.pending += 1,
                (true, false) => self.pending -= 1,
                _ => {}
            }
        }
    }

    /// A service is live in this state (from an announcement or a page).
    fn apply_service(&mut self, service: Service) {
        let name = service.registration.name.as_str();
        if !self.interested(name) {
            return;
        }
        if self.tombstone(name).is_some_and(|v| v >= service.version) {
            self.stats.stale += 1;
            return;
        }
        match self.table.find(name) {
            Some(slot) => {
                let Some(k) = self.table.get(slot) else {
                    return;
                };
                if service.version <= k.service.version {
                    self.stats.stale += 1;
                    return;
                }
                self.update(slot, |k| {
                    let differs = !k.service.registration.same_content(&service.registration);
                    // Gone and back before the user was told it went: a change at most.
                    k.removed = false;
                    if differs && k.told {
                        k.changed = true;
                    }
                    k.service = service;
                });
            }
            None => {
                let known = Known {
                    service,
                    told: false,
                    changed: false,
                    removed: false,
                    reported: 0,
                };
                match self.table.insert(known) {
                    Ok(_) => self.pending += 1,
                    Err(_) => self.stats.table_full += 1,
                }
            }
        }
    }

    /// A service was removed at `version`.
    fn apply_removal(&mut self, name: &ServiceName, version: Version) {
        if !self.interested(name.as_str()) {
            return;
        }
        if self.tombstone(name.as_str()).is_some_and(|v| v >= version) {
            return;
        }
        self.bury(name.as_str(), version);
        if let Some(slot) = self.table.find(name.as_str()) {
            let current = self.table.get(slot).map(|k| k.service.version);
            if current.is_some_and(|v| v < version) {
                self.update(slot, |k| {
                    k.removed = true;
                    k.service.version = version;
                });
            } else {
                self.stats.stale += 1;
            }
        }
    }

    /// Applies a page: every service in it, and the removal of what this client holds
    /// in the page's range that the page does not list.
    fn apply_page(&mut self, header: &PageHeader, items: Items<'_, Service>) {
        let mut last: Option<ServiceName> = None;
        for service in items.clone() {
            last = Some(service.registration.name.clone());
            self.apply_service(service);
        }
        if self.now < self.grace_until {
            return;
        }
        // The range this page speaks for: (after, last] or (after, end).
        let upper = if header.complete { None } else { last };
        if !header.complete && upper.is_none() {
            return;
        }
        let mut listed = items.map(|s| s.registration.name).peekable();
        let mut position = self
            .table
            .position_after(header.after.as_ref().map(|n| n.as_str()));
        while let Some(slot) = self.table.slot_at_position(position) {
            position += 1;
            let Some(k) = self.table.get(slot) else { break };
            let name = k.service.registration.name.as_str();
            if upper.as_ref().is_some_and(|u| name > u.as_str()) {
                break;
            }
            while listed.peek().is_some_and(|n| n.as_str() < name) {
                listed.next();
            }
            let present = listed.peek().is_some_and(|n| n.as_str() == name);
            if !present && !k.removed && k.service.version <= header.as_of {
                let version = header.as_of;
                let name = k.service.registration.name.clone();
                self.bury(name.as_str(), version);
                self.update(slot, |k| {
                    k.removed = true;
                    k.service.version = version;
                });
            }
        }
    }

    fn handle_snapshot_page(&mut self, header: PageHeader, items: Items<'_, Service>) {
        let Some(s) = &self.snapshot else { return };
        if s.request != header.request || s.after != header.after {
            return;
        }
        self.answered();
        let last = items.clone().last().map(|s| s.registration.name);
        self.apply_page(&header, items);
        let now = self.now;
        let timeout = self.config.request_timeout;
        let pages = self.config.snapshot_pages.max(1);
        let Some(s) = &mut self.snapshot else { return };
        s.as_of = Some(s.as_of.map_or(header.as_of, |v| v.min(header.as_of)));
        s.attempts = 0;
        s.cookied = false;
        if header.complete {
            let as_of = s.as_of.unwrap_or(header.as_of);
            if as_of > self.max_seen {
                self.max_seen = as_of;
            }
            self.snapshot = None;
            self.snapshot_done = Some(self.services().count());
            return;
        }
        if last.is_some() {
            s.after = last;
        }
        s.pages_left = s.pages_left.saturating_sub(1);
        if s.pages_left == 0 {
            // The window is used up: ask for the next one at once.
            s.pages_left = pages;
            s.send = true;
        }
        s.deadline = now + timeout;
    }

    /// Makes directory `index` the current one and starts over there.
    fn switch_to(&mut self, index: usize) {
        let now = self.now;
        self.current = Some(index);
        let location = self.directories[index].location;
        self.directory_changed = Some(location);
        for own in self.own.iter_mut() {
            match own.state {
                OwnState::Registering | OwnState::Active => {
                    own.state = OwnState::Registering;
                    own.send = true;
                    own.attempts = 0;
                    own.deadline = now;
                }
                OwnState::Unregistering => {
                    own.send = true;
                    own.attempts = 0;
                    own.deadline = now;
                }
                OwnState::Done => {}
            }
        }
        if self.listening() {
            self.grace_until = now + self.config.failover_grace;
        }
        if self.listening() || self.snapshot.is_some() {
            self.request_snapshot(now);
        }
    }

    /// The current directory did not answer: move to the next one.
    fn fail_over(&mut self) {
        if self.directories.is_empty() {
            return;
        }
        self.switches += 1;
        if self.switches >= self.directories.len() && !self.unreachable_told {
            self.unreachable_told = true;
            self.unreachable_pending = true;
        }
        let next = self
            .publisher_heard()
            .unwrap_or_else(|| self.current.map_or(0, |i| (i + 1) % self.directories.len()));
        if Some(next) == self.current {
            // The only directory: keep trying it.
            return;
        }
        self.switch_to(next);
    }

    /// For a listener: another directory whose beacons say it publishes, heard within
    /// the directory timeout.
    fn publisher_heard(&self) -> Option<usize> {
        if !self.listening() {
            return None;
        }
        let timeout = self.config.directory_timeout;
        self.directories.iter().position(|d| {
            Some(d.location) != self.current_directory()
                && d.publishing
                && d.last_heard
                    .is_some_and(|t| self.now.saturating_since(t) <= timeout)
        })
    }

    /// Time has reached `now`: retransmit, renew, fail over.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now;
        let mut failed = false;
        let max_attempts = self.config.max_attempts.max(1);
        let rounds = self.directories.len().max(1);
        for i in 0..self.own.len() {
            let backoff = self.backoff(self.own[i].attempts);
            let own = &mut self.own[i];
            if own.deadline > now || own.send {
                continue;
            }
            match own.state {
                OwnState::Active => {
                    // Time to renew.
                    own.state = OwnState::Registering;
                    own.send = true;
                }
                OwnState::Registering | OwnState::Unregistering => {
                    own.attempts = own.attempts.saturating_add(1);
                    if own.attempts >= max_attempts {
                        failed = true;
                        if own.state == OwnState::Unregistering && self.switches + 1 >= rounds {
                            // Nobody answers: the lease will run out by itself.
                            own.state = OwnState::Done;
                            own.outcome = Some(Outcome::Released { confirmed: false });
                            continue;
                        }
                    }
                    own.send = true;
                    own.deadline = now + backoff;
                }
                OwnState::Done => {}
            }
        }
        if let Some(s) = &mut self.snapshot {
            if s.deadline <= now && !s.send {
                s.attempts = s.attempts.saturating_add(1);
                if s.attempts >= max_attempts {
                    failed = true;
                }
                s.send = true;
            }
        }
        if self.listening() {
            if let Some(i) = self.current {
                let silent = self.directories[i]
                    .last_heard
                    .is_some_and(|t| now.saturating_since(t) > self.config.directory_timeout);
                if silent {
                    self.directories[i].last_heard = None;
                    failed = true;
                }
            }
        }
        if failed {
            self.fail_over();
        }
    }

    /// When the client next needs `handle_timeout`.
    /// A request waiting to be sent makes it `now`, so that a shell that only calls
    /// `poll_transmit` when it wakes sends requests made between two wake-ups at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let can_send = self.current.is_some();
        let at = |send: bool, deadline: Instant| {
            if send && can_send {
                self.now
            } else {
                deadline
            }
        };
        let own = self
            .own
            .iter()
            .filter(|o| o.state != OwnState::Done && (!o.send || can_send))
            .map(|o| at(o.send, o.deadline));
        let snapshot = self
            .snapshot
            .iter()
            .filter(|s| !s.send || can_send)
            .map(|s| at(s.send, s.deadline));
        let silence = self
            .current
            .filter(|_| self.listening())
            .and_then(|i| self.directories[i].last_heard)
            .map(|t| t + self.config.directory_timeout + Duration::from_micros(1));
        own.chain(snapshot).chain(silence).min()
    }

    /// The next request to send, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.observe(now);
        let max = buf.len().min(self.config.max_datagram);
        let trailer = if self.config.keys.is_some() {
            TRAILER_LEN
        } else {
            0
        };
        let mut t = self.write_request(&mut buf[..max.saturating_sub(trailer)])?;
        if self.config.keys.is_some() {
            let counter = self.next_counter();
            let keys = self.config.keys.as_ref()?;
            t.len = auth::seal(keys, counter, &mut buf[..max], t.len).ok()?;
        }
        self.stats.datagrams_out += 1;
        Some(t)
    }

    /// Writes the next request due, if any, into `buf`.
    fn write_request(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let now = self.now;
        let destination = self.current_directory()?.socket_addr();
        let env = &self.config.environment;
        for i in 0..self.own.len() {
            if !self.own[i].send {
                continue;
            }
            let backoff = self.backoff(self.own[i].attempts);
            let own = &mut self.own[i];
            own.send = false;
            own.deadline = now + backoff;
            let len = match own.state {
                OwnState::Registering => {
                    let Some(registration) = own.registration.clone() else {
                        continue;
                    };
                    let request = RegisterRequest {
                        request: own.request,
                        registrant: self.config.registrant,
                        lease: self.config.lease,
                        registration,
                    };
                    wire::encode(env, &request, buf)
                }
                OwnState::Unregistering => {
                    let request = UnregisterRequest {
                        request: own.request,
                        registrant: self.config.registrant,
                        name: own.name.clone(),
                    };
                    wire::encode(env, &request, buf)
                }
                OwnState::Active | OwnState::Done => continue,
            };
            if let Ok(len) = len {
                return Some(Transmit { destination, len });
            }
        }
        let backoff = self.backoff(self.snapshot.as_ref().map_or(0, |s| s.attempts));
        let interest = self.config.interest.clone().unwrap_or_default();
        let pages = self.config.snapshot_pages.max(1);
        let cookie = self.cookie.filter(|(at, _)| *at == destination);
        if let Some(s) = self.snapshot.as_mut().filter(|s| s.send) {
            s.send = false;
            s.deadline = now + backoff;
            s.pages_left = pages;
            let request = SnapshotRequest {
                request: s.request,
                max_pages: pages,
                after: s.after.clone(),
                interest,
                cookie: cookie.map(|(_, c)| c),
            };
            if let Ok(len) = wire::encode(env, &request, buf) {
                return Some(Transmit { destination, len });
            }
        }
        None
    }

    /// The next event. Take them all after every input.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if let Some(location) = self.directory_changed.take() {
            return Some(ClientEvent::DirectoryChanged(location));
        }
        if core::mem::take(&mut self.unreachable_pending) {
            return Some(ClientEvent::Unreachable);
        }
        if let Some(i) = self.own.iter().position(|o| o.outcome.is_some()) {
            let outcome = self.own[i].outcome.take()?;
            let name = self.own[i].name.clone();
            if self.own[i].state == OwnState::Done {
                self.own.swap_remove(i);
            }
            return Some(outcome.into_event(name));
        }
        if let Some((reason, directory_environment)) = self.snapshot_rejection.take() {
            return Some(ClientEvent::Rejected {
                name: None,
                reason,
                directory_environment,
            });
        }
        if let Some(event) = self.next_table_event() {
            return Some(event);
        }
        self.snapshot_done
            .take()
            .map(|services| ClientEvent::SnapshotComplete { services })
    }

    fn next_table_event(&mut self) -> Option<ClientEvent> {
        let mut scanned = 0;
        // Counts the slots passed over; a removal shrinks the table instead (counting it
        // too would end the scan before the entries that moved into the hole).
        while self.pending > 0 && scanned <= self.table.len() {
            if self.event_cursor >= self.table.len() {
                self.event_cursor = 0;
            }
            let slot = self.event_cursor;
            let Some(k) = self.table.get_mut(slot) else {
                self.event_cursor += 1;
                scanned += 1;
                continue;
            };
            if !k.pending() {
                self.event_cursor += 1;
                scanned += 1;
                continue;
            }
            self.pending -= 1;
            if k.removed {
                let told = k.told;
                // The last slot moves into this one: look at it next.
                let gone = self.table.remove(slot)?;
                if told {
                    return Some(ClientEvent::Unregistered(gone.service));
                }
                continue;
            }
            self.event_cursor += 1;
            let content = content_hash(&k.service.registration);
            let event = if !k.told {
                ClientEvent::Discovered(k.service.clone())
            } else if content != k.reported {
                ClientEvent::Changed(k.service.clone())
            } else {
                // Changed and changed back before anyone asked: nothing to report.
                k.changed = false;
                continue;
            };
            k.told = true;
            k.changed = false;
            k.reported = content;
            return Some(event);
        }
        if self.pending > 0 {
            // Unreachable when the count is right; never spin on a wrong count.
            self.pending = 0;
        }
        None
    }
}
