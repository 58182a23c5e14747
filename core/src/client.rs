//! The client: what devices and servers embed to register their own services and to
//! discover others.
//!
//! A client keeps a list of directories and talks to one at a time (the *current*
//! directory). It registers its services there and renews each lease a third of its
//! duration after sending the attempt that was acknowledged; unanswered requests are
//! retried at most a fortieth of the lease apart, each attempt with a fresh request id.
//! It leaves a directory that never answered after a few attempts, and one that has
//! answered only when it stays silent while another answers a probe (see the
//! `failover` module). It learns further directories from beacons.
//!
//! With an [`Interest`], it is also a listener: it follows the current directory's
//! announcements on the group (of directories that share a store only the publisher
//! announces, so a listener makes a directory whose beacons say it publishes its
//! current one as soon as it hears it, and prefers one when it fails over), keeps a bounded table of the services it has discovered,
//! and emits [`ClientEvent::Discovered`], [`ClientEvent::Changed`] and
//! [`ClientEvent::Unregistered`] exactly once per real change, never for a mere
//! re-announcement (a full table gives up only a state no page vouches for, and reports
//! it as [`ClientEvent::Evicted`]). It asks for a snapshot when it starts, when it switches directory,
//! and when a beacon's count or digest differs from what it holds; when an announcement
//! or a beacon shows that it missed a link of the announcement chain, it asks only for
//! the changes since the last link it holds (see the `repair` module). The directory's
//! slow sweep drops whatever it still holds that is gone and nothing showed. It takes
//! only its directory's word, from that directory's address (see the `listening`
//! module and "Guarantees" in docs/PROTOCOL.md).
//!
//! Drive it as the [crate docs](crate) describe.

use crate::auth::{self, Keys, ReplayWindow, TRAILER_LEN};
use crate::hash::{fnv1a, FNV_OFFSET};
use crate::interest::Interest;
use crate::location::Location;
use crate::name::{Environment, ServiceName};
use crate::service::{Registration, Service, Version};
use crate::table::{Named, Table, TableStorage};
use crate::time::{Duration, Instant};
use crate::wire::{
    self, Ack, AnnounceHeader, Beacon, Change, Items, Message, PageHeader, RegisterRequest, Reject,
    RejectReason, SnapshotRequest, UnregisterRequest,
};
use crate::Transmit;
use core::net::SocketAddr;

mod counters;
mod failover;
mod gated;
mod keep_alive;
mod listening;
mod registrations;
mod removals;
mod repair;
mod settings;
mod stretches;
mod subscription;

use gated::Slot as _;
use removals::{Removals, Verdict};
use repair::Chain;

/// Whether this build can discover (herald-core's `listen` feature). Without it the
/// client only registers: the listener's paths are never taken, so a firmware does not
/// link them.
const LISTEN: bool = cfg!(feature = "listen");
/// Subscription mode is built in (herald-core's `subscribe` feature, which implies `listen`).
const SUBSCRIBE: bool = cfg!(feature = "subscribe");

/// The snapshot in progress, held by a build that can discover.
#[cfg(feature = "listen")]
type SnapshotSlot = Option<Snapshot>;
#[cfg(not(feature = "listen"))]
type SnapshotSlot = gated::Absent<Snapshot>;
/// The subscription, held by a build with subscription mode.
#[cfg(feature = "subscribe")]
type SubscriptionSlot = Option<subscription::Subscription>;
#[cfg(not(feature = "subscribe"))]
type SubscriptionSlot = gated::Absent<subscription::Subscription>;

/// Most directories a client knows at once (configured and learned).
pub const MAX_DIRECTORIES: usize = 4;

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
    /// each retry, up to eight times, and never exceeds a fortieth of the lease (so that
    /// about 26 attempts fit in the two thirds of a lease left when a renewal starts).
    pub request_timeout: Duration,
    /// Attempts at a directory that has never answered before failing over to the next
    /// (default 3).
    pub max_attempts: u8,
    /// A directory that has answered before is left only when it stays silent this long
    /// while another directory answers a probe, or twice this long whatever happens
    /// (default 3 s): transient loss never moves a client.
    pub failover_after: Duration,
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
    /// The wall clock in microseconds since the Unix epoch at the first `now`, if the
    /// machine knows it (0 otherwise). Request sequences (and, with keys, counters)
    /// follow this clock, and the directory's when it is ahead; a `stale` answer tells
    /// a client that does not know the clock where to resume.
    pub clock_floor: u64,
    /// Random bits drawn when the process starts (0: none), mixed into the numbering of
    /// its requests: a device without a clock restarted under the same registrant id
    /// then numbers them apart from the process before it, whose late answers it would
    /// otherwise take for its own. Take them from the board's RNG (the seed an
    /// embassy-net stack is given will do).
    pub entropy: u64,
    /// With an interest: when to subscribe at the directory followed to unicast
    /// deliveries of every matching change (see [`Client::subscribe`]), for networks
    /// that drop multicast (default [`Subscribe::Never`]). The subscriber id is the
    /// registrant id.
    pub subscribe: Subscribe,
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
            failover_after: Duration::from_secs(3),
            directory_timeout: Duration::from_secs(3),
            failover_grace: Duration::from_secs(6),
            snapshot_pages: 16,
            max_datagram: wire::DEFAULT_MAX_DATAGRAM,
            keys: None,
            clock_floor: 0,
            entropy: 0,
            subscribe: Subscribe::Never,
        }
    }
}

/// When a listener subscribes to unicast deliveries (see the `subscription` module).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subscribe {
    /// Never: it hears changes on the multicast group only.
    #[default]
    Never,
    /// From the start, at every directory it follows.
    Always,
    /// Once it has heard no beacon on the group for a directory timeout (since it
    /// started, or since the last one): the network drops multicast. It stays
    /// subscribed.
    WithoutBeacons,
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
    /// The request timeout, the directory timeout or `failover_after` is zero.
    ZeroTimeout,
    /// An interest was given, but this build cannot discover (herald-core's `listen`
    /// feature is off).
    NoDiscovery,
    /// The configuration subscribes ([`ClientConfig::subscribe`] is not
    /// [`Subscribe::Never`]), but this build has no subscription mode (herald-core's
    /// `subscribe` feature is off).
    NoSubscriptions,
}

impl core::fmt::Display for ClientError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClientError::TooManyRegistrations => "no room for another registration",
            ClientError::NotRegistered => "that name is not registered by this client",
            ClientError::MaxDatagram => "the maximum datagram size must be 512 to 65507 bytes",
            ClientError::ZeroTimeout => "timeouts must be longer than zero",
            ClientError::NoDiscovery => {
                "this build cannot discover (herald-core's `listen` feature is off)"
            }
            ClientError::NoSubscriptions => {
                "this build cannot subscribe (herald-core's `subscribe` feature is off)"
            }
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
    /// A known service was given up to make room in the full table for one the
    /// directory confirmed (see [`ClientStats::table_full`]); nothing says it went away.
    /// Only states no page of the directory confirmed are given up.
    Evicted(Service),
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
    /// directory answered for a whole lease, each tried in turn (the lease has then run
    /// out by itself).
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
    /// Requests the directory could not store (`storage_unavailable`); each is kept and
    /// sent again after the longest back-off.
    pub storage_unavailable: u64,
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
    /// Removed for room, not gone: reported as evicted.
    evicted: bool,
    /// A hash of the content the user was last told, so that a change and back between
    /// two polls is not reported as a change.
    reported: u32,
    /// What vouches for this state.
    standing: Standing,
    /// The `as_of` stamp of the newest datagram of the directory followed that gave or
    /// confirmed this state. A page stamped no later may have been written before the
    /// directory held it (a registration that reached the publisher late through the
    /// replicated store carries an older version than the page's stamp).
    as_of: Version,
    /// When a page of the directory followed first failed to confirm a state newer than
    /// the page (a state "from the future", or a page that crossed a newer
    /// announcement): a second such page well after it corrects the state.
    doubted: Option<Instant>,
}

/// What vouches for a state a listener holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// A page of the directory followed listed it at this version.
    Confirmed,
    /// An announcement of the directory followed, not yet confirmed by a page.
    Announced,
    /// Held from a directory followed before: the new directory's pages replace it,
    /// whatever its version.
    Inherited,
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

/// How many frames sent a client remembers the counter of (see `sent_counters`); one in
/// a build without authentication, which sends no counters.
const SENT_COUNTERS_KEPT: usize = if cfg!(feature = "auth") { 8 } else { 1 };

/// Request ids set aside for the attempts of one request (a series that outlasts them
/// starts a new block, and its earlier attempts are forgotten).
const ATTEMPT_IDS: u32 = 1024;

/// The attempts of one request (a registration, renewal, unregistration, keep-alive or
/// subscription). Every attempt has its own request id, and only the directory it
/// went to can answer it. The ids are consecutive in a block set aside at the first
/// attempt, so an answer to any attempt is known by its id, however late it comes and
/// however many attempts followed it. (A ring of the newest eight forgot attempts
/// overtaken by newer ones: with a 3 s lease attempts go out 75 ms apart, and an
/// answer more than 600 ms late was dropped; history seed 4676703.) The directories
/// are kept by stretches: the attempts to the current directory, and those to the one
/// before it; a third directory within one series forgets the first's attempts.
#[derive(Clone, Copy, Debug)]
struct Attempts {
    /// The request id of the block's first attempt.
    first: u32,
    /// Attempts sent in the block (0: none).
    count: u32,
    /// Attempts before this one are forgotten.
    from: u32,
    /// Attempts from this one on went to `directory`, those before it to `before`.
    since: u32,
    /// Known directories, by index (which never changes: they are never removed nor
    /// reordered).
    directory: u8,
    before: u8,
    /// When the first attempt was sent: no attempt's lease began sooner.
    at: Instant,
    /// When the latest was sent.
    latest: Instant,
}

impl Attempts {
    /// None sent.
    const NONE: Attempts = Attempts {
        first: 0,
        count: 0,
        from: 0,
        since: 0,
        directory: 0,
        before: 0,
        at: Instant::ZERO,
        latest: Instant::ZERO,
    };

    /// Records an attempt to the known directory `directory` at `now` and returns its
    /// request id (the first of a new block of `ids`, when a block starts).
    fn send(&mut self, ids: &mut u32, directory: u8, now: Instant) -> u32 {
        if self.count == 0 || self.count >= ATTEMPT_IDS {
            *self = Attempts {
                first: take_ids(ids, ATTEMPT_IDS),
                directory,
                at: now,
                ..Attempts::NONE
            };
        } else if directory != self.directory {
            self.from = self.since;
            self.since = self.count;
            self.before = self.directory;
            self.directory = directory;
        }
        self.count += 1;
        self.latest = now;
        self.first.wrapping_add(self.count - 1)
    }

    /// If `request` is one of these attempts and `from` the directory it went to: a time
    /// no later than it was sent (the latest attempt's own, the first's for an earlier
    /// one, whose lease at the directory began later still).
    fn answered(&self, request: u32, from: Senders) -> Option<Instant> {
        let k = request.wrapping_sub(self.first);
        if k >= self.count || k < self.from {
            return None;
        }
        let directory = if k >= self.since {
            self.directory
        } else {
            self.before
        };
        let at = if k + 1 == self.count {
            self.latest
        } else {
            self.at
        };
        from.has(directory).then_some(at)
    }

    /// The request id of the latest attempt, if any was sent.
    fn last(&self) -> Option<u32> {
        (self.count > 0).then(|| self.first.wrapping_add(self.count - 1))
    }

    /// Forgets every attempt: the next starts a new request.
    fn clear(&mut self) {
        *self = Attempts::NONE;
    }
}

/// Sets aside `n` consecutive request ids from the counter `next` and returns the
/// first; a block never holds 0 (which stands for every request in a refusal).
fn take_ids(next: &mut u32, n: u32) -> u32 {
    if *next == 0 || *next > u32::MAX - n {
        *next = 1;
    }
    let first = *next;
    *next = first + n;
    first
}

/// The known directories a datagram's source is (bits by index; a location configured
/// twice is two of them): an answer to an attempt must come from the one it went to.
#[derive(Clone, Copy, Debug)]
struct Senders(u8);

impl Senders {
    /// Whether the known directory `directory` is one of these.
    fn has(self, directory: u8) -> bool {
        self.0 & (1 << directory) != 0
    }
}

// Every known directory has a bit in `Senders`.
const _: () = assert!(MAX_DIRECTORIES <= 8);

/// Appends `item` to a ring that keeps the newest `N` (attempts, links, counters),
/// forgetting the oldest when it is full.
fn push_newest<T, const N: usize>(ring: &mut heapless::Deque<T, N>, item: T) {
    if ring.is_full() {
        ring.pop_front();
    }
    let _ = ring.push_back(item);
}

/// What one of the client's own slots is for. (Without a heap the slot is sized for a
/// registration either way; the name of a release shares its room.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Claim {
    /// A registration to hold (and, once unregistering, to end).
    Register(Registration),
    /// A name this client only releases.
    Release(ServiceName),
}

#[derive(Clone, Debug)]
struct Own {
    claim: Claim,
    state: OwnState,
    /// The attempts of the request in progress.
    sent: Attempts,
    attempts: u8,
    send: bool,
    deadline: Instant,
    /// The lease the directory granted (until then, the lease asked for): retries are
    /// paced by it.
    granted: Duration,
    /// The user was told it is registered.
    confirmed: bool,
    /// Unregistering: when it is given up unconfirmed, a lease after it began (the
    /// lease has run out by then wherever it was held).
    give_up_at: Instant,
    outcome: Option<Outcome>,
}

impl Own {
    /// A registration (or a release) to send at once.
    fn new(claim: Claim, lease: Duration, now: Instant) -> Self {
        let state = match claim {
            Claim::Register(_) => OwnState::Registering,
            Claim::Release(_) => OwnState::Unregistering,
        };
        Own {
            claim,
            state,
            sent: Attempts::NONE,
            granted: lease,
            attempts: 0,
            send: true,
            deadline: now,
            confirmed: false,
            give_up_at: now + lease,
            outcome: None,
        }
    }

    /// The name registered or released.
    fn name(&self) -> &ServiceName {
        match &self.claim {
            Claim::Register(registration) => &registration.name,
            Claim::Release(name) => name,
        }
    }

    /// What is registered; `None` for a name this client only releases.
    fn registration(&self) -> Option<&Registration> {
        match &self.claim {
            Claim::Register(registration) => Some(registration),
            Claim::Release(_) => None,
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
    /// A repair: only the changes after this version (see the repair module).
    since: Option<Version>,
    /// A cookie answer already made this request go out again at once (once per page:
    /// a client whose address changes with every datagram must not ping-pong).
    cookied: bool,
    /// Since the request last went out, a page of it further on than the one awaited
    /// came (and was dropped): pages of a window overtook each other.
    overtaken: bool,
}

#[derive(Clone, Copy, Debug)]
struct KnownDirectory {
    location: Location,
    last_heard: Option<Instant>,
    /// With keys: the counters seen from this directory.
    window: ReplayWindow,
    /// What its last beacon said: it announces changes (until heard, assumed).
    publishing: bool,
    /// It has answered a request of this client: from now on only a long silence
    /// makes the client leave it.
    answered: bool,
}

/// A request sent to another directory while the current one is silent: an answer
/// shows that one is alive, and the client moves there.
#[derive(Clone, Copy, Debug)]
struct Probe {
    /// The directory probed (an index into the known directories).
    target: usize,
    request: u32,
    attempts: u8,
    send: bool,
    deadline: Instant,
}

impl KnownDirectory {
    fn new(location: Location) -> Self {
        KnownDirectory {
            location,
            last_heard: None,
            window: ReplayWindow::default(),
            publishing: true,
            answered: false,
        }
    }
}

/// The client state machine; `R` is how many services it can register itself.
pub struct Client<'a, const R: usize = 4> {
    /// What it keeps of its configuration.
    config: settings::Settings,
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
    /// The removals of the directory followed (see the removals module).
    removals: Removals,
    /// When to ask for a snapshot to bring a state refused as perhaps predating a
    /// forgotten removal (see the removals module).
    recheck: Option<Instant>,
    /// After a failover: entries and removals inherited from the previous directory
    /// are still held, to be settled once the failover grace ends.
    inherited: bool,
    /// A page during the failover grace did not list a state held in its range (the
    /// grace kept it): a snapshot settles it once the grace ends.
    unsettled: bool,
    /// How far the listener holds the announcement chain of its directory.
    chain: Chain,
    snapshot: SnapshotSlot,
    snapshot_done: Option<usize>,
    snapshot_rejection: Option<(RejectReason, Environment)>,
    /// The last snapshot cookie a directory gave this client, echoed in the snapshot
    /// requests (and probes) sent to that directory.
    cookie: Option<(SocketAddr, [u8; wire::COOKIE_LEN])>,
    /// The last beacon's service count or digest differed from what this listener holds.
    miscounted: bool,
    grace_until: Instant,
    /// Since when the current directory has left a request unanswered.
    silent_since: Option<Instant>,
    /// The probe of another directory, while the current one is silent.
    probe: Option<Probe>,
    /// A listener's check that its quiet directory is alive.
    check: Option<Probe>,
    /// The keep-alive of the registrations confirmed at the current directory.
    keep_alive: keep_alive::KeepAlive,
    /// The subscription to unicast deliveries, if any.
    subscription: SubscriptionSlot,
    /// When a beacon was last heard on the group (from any directory).
    last_beacon: Option<Instant>,
    next_request: u32,
    /// With keys: the counter of the last frame sent, and the clock it follows.
    counter: u64,
    /// The request ids and counters of the last frames sent, newest last: a `stale`
    /// answer takes the counter back only for a request sent above its own counter.
    sent_counters: heapless::Deque<(u32, u64), SENT_COUNTERS_KEPT>,
    counter_base: u64,
    /// When `counter_base` was set (`None` until the first `now`).
    counter_epoch: Option<Instant>,
    now: Instant,
    stats: ClientStats,
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
        if config.request_timeout == Duration::ZERO
            || config.directory_timeout == Duration::ZERO
            || config.failover_after == Duration::ZERO
        {
            return Err(ClientError::ZeroTimeout);
        }
        if !LISTEN && config.interest.is_some() {
            return Err(ClientError::NoDiscovery);
        }
        if !SUBSCRIBE && config.subscribe != Subscribe::Never {
            return Err(ClientError::NoSubscriptions);
        }
        let directories = config
            .directories
            .iter()
            .map(|&location| KnownDirectory::new(location))
            .collect();
        let current = (!config.directories.is_empty()).then_some(0);
        // A hash of the registrant id, the clock the client starts with and its entropy:
        // clients with neighbouring ids (devices numbered in a row) number their
        // requests far apart, and so does a process started again with the same id (a
        // later clock, or other random bits), so an answer meant for another is not
        // taken for one's own. (A client with neither, restarted under the same id,
        // numbers as the process before it.)
        let start = fnv1a(FNV_OFFSET, &config.registrant.to_le_bytes());
        let start = fnv1a(start, &config_clock_floor.to_le_bytes());
        let start = match config.entropy {
            0 => start,
            bits => fnv1a(start, &bits.to_le_bytes()),
        };
        let next_request = ((start ^ (start >> 32)) as u32).max(1);
        let subscribe =
            SUBSCRIBE && config.subscribe == Subscribe::Always && config.interest.is_some();
        let lease = config.lease;
        let mut client = Client {
            config: settings::Settings::new(config),
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
            removals: Removals::new(),
            recheck: None,
            inherited: false,
            unsettled: false,
            chain: Chain::default(),
            snapshot: Default::default(),
            snapshot_done: None,
            snapshot_rejection: None,
            cookie: None,
            miscounted: false,
            grace_until: Instant::ZERO,
            silent_since: None,
            probe: None,
            check: None,
            keep_alive: keep_alive::KeepAlive::new(),
            subscription: Default::default(),
            last_beacon: None,
            next_request,
            counter: 0,
            sent_counters: heapless::Deque::new(),
            counter_base: config_clock_floor,
            counter_epoch: None,
            now: Instant::ZERO,
            stats: ClientStats::default(),
        };
        if subscribe {
            let delivery = client.request_id();
            client.subscription.set(subscription::Subscription::start(
                delivery,
                lease,
                Instant::ZERO,
            ));
        }
        Ok(client)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The directory requests go to now.
    pub fn current_directory(&self) -> Option<Location> {
        self.current.map(|i| self.directories[i].location)
    }

    /// The known directories `from` is (see [`Senders`]).
    fn senders(&self, from: SocketAddr) -> Senders {
        let mut bits = 0;
        for (i, d) in self.directories.iter().enumerate() {
            if d.location.is(from) {
                bits |= 1 << i;
            }
        }
        Senders(bits)
    }

    /// Every directory known, configured or learned.
    pub fn directories(&self) -> impl Iterator<Item = Location> + '_ {
        self.directories.iter().map(|d| d.location)
    }

    /// Ends the client and hands back the table's slots and index, to make another
    /// client over (with a new configuration, say; the next client discards what they
    /// hold). Nothing is sent: unregister first what should not wait for its lease.
    pub fn into_storage(self) -> (&'a mut [Discovered], &'a mut [u32]) {
        self.table.into_parts()
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

    /// Registers `registration` (or updates it, if this client already registered the
    /// name) and keeps it alive until [`Client::unregister`].
    pub fn register(
        &mut self,
        now: Instant,
        registration: Registration,
    ) -> Result<(), ClientError> {
        self.observe(now);
        let fresh = Own::new(Claim::Register(registration), self.config.lease, self.now);
        match self.own.iter_mut().find(|o| o.name() == fresh.name()) {
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
        let now = self.now;
        let own = self
            .own
            .iter_mut()
            .find(|o| o.name() == name && o.state != OwnState::Done)
            .ok_or(ClientError::NotRegistered)?;
        own.state = OwnState::Unregistering;
        own.sent.clear();
        own.attempts = 0;
        own.send = true;
        own.deadline = now;
        own.give_up_at = now + own.granted;
        Ok(())
    }

    /// Unregisters `name` whether or not this client registered it: with a registrant id
    /// that is stable across restarts, a new process releases what an earlier one
    /// registered. [`ClientEvent::Released`] follows.
    pub fn release(&mut self, now: Instant, name: &ServiceName) -> Result<(), ClientError> {
        if self.unregister(now, name).is_ok() {
            return Ok(());
        }
        let releasing = Own::new(Claim::Release(name.clone()), self.config.lease, self.now);
        self.own
            .push(releasing)
            .map_err(|_| ClientError::TooManyRegistrations)
    }

    /// This client's own registrations that are live or in progress.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration> {
        self.own
            .iter()
            .filter(|o| matches!(o.state, OwnState::Registering | OwnState::Active))
            .filter_map(Own::registration)
    }

    /// Asks the current directory for its registry (filtered by the interest). The table
    /// is brought up to date and [`ClientEvent::SnapshotComplete`] follows. Without the
    /// `listen` feature it does nothing (the client only registers).
    pub fn request_snapshot(&mut self, now: Instant) {
        self.observe(now);
        if !LISTEN {
            return;
        }
        let request = self.request_id();
        self.chain.asked();
        self.snapshot.set(Snapshot {
            request,
            after: None,
            pages_left: self.config.snapshot_pages.max(1),
            attempts: 0,
            send: true,
            deadline: self.now,
            as_of: None,
            since: None,
            cookied: false,
            overtaken: false,
        });
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.observe(now);
        self.stats.datagrams_in += 1;
        let Ok((_, counter, decoded)) = auth::receive_reply(self.config.keys.as_ref(), bytes)
        else {
            self.stats.unauthenticated += 1;
            return;
        };
        let mut frame = match decoded {
            Ok(f) => f,
            // Requests are not for a client (as replies from strangers are not).
            Err(wire::DecodeError::Request(_)) => {
                self.stats.foreign_directory += 1;
                return;
            }
            // Kinds this build never acts on (deliveries without subscription mode,
            // announcements without discovery) are passed over.
            Err(wire::DecodeError::Unused(_)) => return,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        // Zones do not travel: the directory a frame names is on the link it came from.
        match &mut frame.message {
            Message::Beacon(b) => b.directory = b.directory.on_link_of(from),
            Message::Announce(h, _) => h.directory = h.directory.on_link_of(from),
            _ => {}
        }
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
            Message::Ack(ack) if self.is_directory(from) => self.handle_ack(ack, from),
            Message::KeepAliveAck(ack) if self.is_directory(from) => {
                if !self.probe_answered(from, ack.request) {
                    self.handle_keep_alive_ack(ack, from)
                }
            }
            Message::Reject(reject) if self.is_directory(from) => {
                let taken = self.probe_answered(from, reject.request)
                    || (SUBSCRIBE && self.subscription_rejected(&reject, from));
                if !taken {
                    self.handle_reject(reject, from);
                }
            }
            Message::SubscribeAck(ack) if SUBSCRIBE && self.is_directory(from) => {
                self.handle_subscribe_ack(ack, from)
            }
            // A delivery comes from whichever directory holds the subscription and
            // publishes: the current one, or, where directories share their subscriber
            // table (the etcd cluster), the publisher of a subscriber that talks to a
            // replica, or a new publisher before the subscriber has moved to it. It
            // names its subscriber, so a page delivered to another (replayed here) is
            // never taken, whatever its delivery id.
            Message::DeliveredSnapshot(subscriber, header, items)
                if SUBSCRIBE && self.is_delivery(subscriber, header.request) =>
            {
                self.handle_delivered_snapshot(from, header, items);
            }
            Message::DeliveredChanges(subscriber, header, items)
                if SUBSCRIBE && self.is_delivery(subscriber, header.request) =>
            {
                self.handle_delivered_changes(from, header, items);
            }
            Message::DeliveredSnapshot(subscriber, header, _)
            | Message::DeliveredChanges(subscriber, header, _)
                if SUBSCRIBE && subscriber == self.config.registrant =>
            {
                self.delivered_under_another_id(from, header.request);
            }
            Message::SnapshotPage(header, items) if self.is_directory(from) => {
                if !self.probe_answered(from, header.request)
                    && LISTEN
                    && self.heard_from_current(from)
                {
                    self.handle_snapshot_page(header, items);
                }
            }
            Message::Cookie(c) if self.is_directory(from) => {
                if !self.probe_answered(from, c.request) {
                    self.handle_cookie(from, c);
                }
            }
            Message::ChangesPage(header, items) if self.is_directory(from) => {
                if !self.probe_answered(from, header.request)
                    && LISTEN
                    && self.heard_from_current(from)
                {
                    self.handle_changes_page(header, items);
                }
            }
            Message::Beacon(beacon) => self.handle_beacon(from, beacon),
            Message::Announce(header, items) => {
                if LISTEN {
                    self.handle_announce(from, header, items)
                }
            }
            Message::SyncPage(header, items) => {
                if self.listening() && self.heard_from_current(from) {
                    self.handle_sweep_page(header, items);
                } else {
                    self.stats.foreign_directory += 1;
                }
            }
            // Requests, and replies from strangers, are not for a client.
            _ => self.stats.foreign_directory += 1,
        }
    }

    /// A listener: it has an interest (never without the `listen` feature).
    fn listening(&self) -> bool {
        LISTEN && self.config.interest.is_some()
    }

    /// A directory's snapshot cookie: kept, and the snapshot request it answers sent
    /// again with it at once (once per page; after that, at its next retry).
    ///
    /// Only an answer to a request of this client's own (its snapshot's, or its
    /// subscription's) is taken. A cookie answering another client's request (replayed
    /// or misdirected here) is for that client's address: echoing it would cost a round
    /// trip, and it says nothing about this client's requests reaching the directory.
    fn handle_cookie(&mut self, from: SocketAddr, reply: wire::CookieReply) {
        if !self.heard_from_current(from) {
            return;
        }
        let snapshot = LISTEN
            && self
                .snapshot
                .as_ref()
                .is_some_and(|s| s.request == reply.request);
        let subscription = SUBSCRIBE && self.subscription_asked(reply.request, from);
        if !(snapshot || subscription) {
            return;
        }
        self.answered();
        self.cookie = Some((from, reply.cookie));
        if SUBSCRIBE {
            self.subscription_cookie(reply.request, from);
        }
        if let Some(s) = self.snapshot.as_mut() {
            if s.request == reply.request && !s.cookied {
                s.cookied = true;
                s.send = true;
            }
        }
    }

    /// The cookie to echo in a snapshot request to `destination`, if it gave one.
    fn cookie_for(&self, destination: SocketAddr) -> Option<[u8; wire::COOKIE_LEN]> {
        self.cookie
            .filter(|(at, _)| *at == destination)
            .map(|(_, c)| c)
    }

    /// Time has reached `now`: retransmit, renew, fail over.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now;
        if LISTEN {
            self.settle_inherited();
        }
        if SUBSCRIBE {
            self.settle_subscription();
            self.subscribe_without_beacons();
        }
        self.recheck_refused();
        let max_attempts = self.config.max_attempts.max(1);
        // A directory that never answered is given up after a few attempts; one that has
        // answered only after a long silence (see the failover module).
        let fresh = self.current.is_some_and(|i| !self.directories[i].answered);
        let silence = self.silence();
        let gone = silence == Some(true);
        let mut failed = gone;
        for i in 0..self.own.len() {
            let own = &mut self.own[i];
            if own.deadline > now || own.send {
                continue;
            }
            match own.state {
                // Renewed by the keep-alive.
                OwnState::Active => {}
                OwnState::Registering | OwnState::Unregistering => {
                    own.attempts = own.attempts.saturating_add(1);
                    if (fresh && own.attempts >= max_attempts) || gone {
                        // Registrations and unregistrations alike move to the next
                        // directory: a release reaches one while any answers.
                        failed = true;
                    }
                    if own.state == OwnState::Unregistering && own.give_up_at <= now {
                        // No directory answered for a whole lease: it has run out by
                        // itself wherever it was held.
                        own.state = OwnState::Done;
                        own.outcome = Some(Outcome::Released { confirmed: false });
                        continue;
                    }
                    own.send = true;
                }
                OwnState::Done => {}
            }
        }
        if self.keep_alive_tick(fresh, max_attempts) {
            failed = true;
        }
        if SUBSCRIBE && self.subscription_tick(fresh, max_attempts) {
            failed = true;
        }
        if let Some(s) = self.snapshot.as_mut() {
            if s.deadline <= now && !s.send {
                s.attempts = s.attempts.saturating_add(1);
                if fresh && s.attempts >= max_attempts {
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
                    // Beacons lost to loss look the same: ask the directory first.
                    self.check_current();
                }
            }
            if self.check_timeout() {
                if let Some(i) = self.current {
                    self.directories[i].last_heard = None;
                }
                failed = true;
            }
        }
        if failed {
            self.fail_over();
        } else if silence.is_some() && self.directories.len() > 1 {
            self.probe_others();
        }
    }

    /// When the client next needs `handle_timeout`.
    /// A request waiting to be sent makes it `now`, so that a shell that only calls
    /// `poll_transmit` when it wakes sends requests made between two wake-ups at once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let can_send = self.current.is_some();
        // A request waiting to be sent is due now, once it can go; one sent, at its
        // deadline. (Plain comparisons, not an iterator chain: a tenth of the code.)
        let due = |send: bool, deadline: Instant| match send {
            true => can_send.then_some(self.now),
            false => Some(deadline),
        };
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for o in self.own.iter() {
            if !matches!(o.state, OwnState::Done | OwnState::Active) {
                consider(due(o.send, o.deadline));
            }
        }
        consider(self.keep_alive_timeout(can_send));
        if SUBSCRIBE {
            consider(self.subscription_timeout(can_send));
            consider(self.beacons_expected());
        }
        if let Some(s) = self.snapshot.as_ref() {
            consider(due(s.send, s.deadline));
        }
        if self.listening() && self.check.is_none() {
            let heard = self
                .current
                .and_then(|i| self.directories.get(i)?.last_heard);
            consider(heard.map(|t| t + self.config.directory_timeout + Duration::from_micros(1)));
        }
        for p in self.probe.iter().chain(self.check.iter()) {
            consider(Some(if p.send && can_send {
                self.now
            } else {
                p.deadline
            }));
        }
        consider(self.silence_deadline());
        consider(self.inherited.then(|| self.grace_until.max(self.now)));
        if self.snapshot.is_none() {
            consider(self.recheck.map(|t| t.max(self.now)));
        }
        next
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
        // One number both orders the request (its sequence) and seals the frame.
        let counter = self.upcoming_counter();
        let mut t = self.write_request(counter, &mut buf[..max.saturating_sub(trailer)])?;
        self.counter = counter;
        if self.config.keys.is_some() {
            let keys = self.config.keys.as_ref()?;
            t.len = auth::seal(keys, counter, &mut buf[..max], t.len).ok()?;
        }
        self.stats.datagrams_out += 1;
        Some(t)
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
            let name = self.own[i].name().clone();
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
        if LISTEN {
            if let Some(event) = self.next_table_event() {
                return Some(event);
            }
        }
        self.snapshot_done
            .take()
            .map(|services| ClientEvent::SnapshotComplete { services })
    }
}
