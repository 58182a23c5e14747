//! The directory: the server's state machine.
//!
//! It keeps the [registry](crate::registry), answers requests (register, renew,
//! unregister, snapshot), expires leases, announces every change on the multicast group
//! in the same wake-up that caused it (in a chain that shows listeners what they
//! missed), repeats each removal exactly N times (see [`notify`]), sends a beacon with
//! the registry's version, count and digest, answers repairs with the changes a
//! listener lacks, and sweeps the whole registry at a slow, paced rate (anti-entropy)
//! as a safety net.
//!
//! Drive it as the [crate docs](crate) describe.

use crate::auth::{self, Keys, ReplayWindow, TRAILER_LEN};
use crate::interest::Interest;
use crate::location::Location;
use crate::name::{Environment, ServiceName};
use crate::notify;
use crate::registry::{Entry, List, Record, RecordState, Registry, Slot};
use crate::service::{Service, Version};
use crate::table::TableStorage;
use crate::time::{Duration, Instant};
use crate::wire::{
    self, Ack, BatchWriter, Beacon, DecodeError, Header, Message, PageHeader, PageKind,
    RegisterRequest, Reject, RejectReason, UnregisterRequest,
};
use crate::Transmit;
use core::net::SocketAddr;

mod admission;
mod announcements;
mod anti_entropy;
mod catch_up;
mod changes;
mod counters;
mod delivery;
pub(crate) mod digest;
mod keep_alive;
mod leases;
mod replica;
mod requests;
mod shared;
mod storage;
mod subscribers;
mod tombstones;
pub use admission::{AdmissionConfig, AMPLIFICATION, COOKIE_PERIOD, SNAPSHOT_QUEUE};
use counters::{CounterRefusal, Sender, SenderId, SENDERS};
pub use subscribers::{
    Subscriber, SubscriberEvent, SubscriberSlot, SubscriberStorage, MAX_SUBSCRIBER_LEN,
};

/// How many replies may wait between two drains of `poll_transmit`. A shell feeds at
/// most this many datagrams before it drains; beyond it, replies are dropped (and
/// counted) and clients retry.
pub const REPLY_QUEUE: usize = 32;

/// Directory settings. Defaults follow the XOOM numbers where there are any.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// The environment served; requests from others are refused.
    pub environment: Environment,
    /// Where the directory takes requests, as announced (a real address).
    pub address: Location,
    /// The multicast group and port for announcements (default `237.37.37.1:37371`).
    pub group: SocketAddr,
    /// Paces repeated notifications (default 50 ms). Never delays a first announcement.
    pub interval: Duration,
    /// How many times each removal is announced (default 20).
    pub notifications: u8,
    /// How many times each new or changed registration is announced: at once, then one
    /// per processing interval (default 1; at least 1). A listener that lost the one
    /// announcement learns of it from the beacon one interval later and repairs (see
    /// the `announcements` module); more repeats trade group bytes for sparing that
    /// round trip.
    pub registration_announcements: u8,
    /// Largest datagram sent (default 1400 bytes).
    pub max_datagram: usize,
    /// Lease granted when a request asks for none (default 15 s).
    pub default_lease: Duration,
    /// Shortest lease granted (default 1 s).
    pub min_lease: Duration,
    /// Longest lease granted (default 300 s).
    pub max_lease: Duration,
    /// After a restart, no restored lease ends sooner than this (default: the default
    /// lease, 15 s): registrants whose leases ran out while the directory was down (or
    /// whose stored expiry a wall-clock step moved into the past) renew before anything
    /// expires, so a restart never makes services flap. Restored leases are also capped
    /// at `max_lease` (a wall-clock step forward cannot lengthen them).
    pub restore_grace: Duration,
    /// Time between beacons (default 1 s).
    pub beacon_interval: Duration,
    /// Time for one anti-entropy sweep of the whole registry (default 600 s): a slow
    /// safety net, since listeners that miss an announcement ask for what they lack
    /// (see the `changes` module).
    pub sweep_period: Duration,
    /// The version clock at the first `now` the directory sees. A shell passes the wall
    /// clock in microseconds since the Unix epoch (or the last version it stored, if that
    /// is larger). Versions then follow that clock as time passes (and always grow by at
    /// least one per change), so they stay ordered across restarts and across
    /// directories whose clocks agree, like Zebus's timestamps.
    pub version_floor: Version,
    /// The environment's keys; `None` (the default) sends and accepts unauthenticated
    /// frames only. See [`auth`].
    pub keys: Option<Keys>,
    /// With keys: how far a request's counter may be from the directory's clock
    /// (default 30 s). Older requests are refused as replays of old traffic.
    pub max_clock_skew: Duration,
    /// How long a finished removal is kept as a tombstone (a departed record with no
    /// notification left, in the registry and in storage) before it is reaped
    /// (default 60 s; at least `replication_bound`, and with keys at least
    /// `max_clock_skew`). While it is held, late copies of the service's older states
    /// and late or replayed requests are refused by name; after it, by the floors of
    /// dropped tombstones (see `docs/PROTOCOL.md`, "Guarantees").
    pub tombstone_retention: Duration,
    /// How long a change may take to reach every directory that shares the registry
    /// through the replicated store, plus the largest difference between their clocks
    /// (default 5 s). A tombstone younger than this is never dropped to make room: a
    /// full registry refuses a new name instead (a delay, never a resurrection).
    pub replication_bound: Duration,
    /// Snapshot cookies and budgets, registration budgets (see [`AdmissionConfig`]).
    pub admission: AdmissionConfig,
    /// How long a unicast delivery to a subscriber waits for its acknowledgement before
    /// it is sent again (default 250 ms); doubles with each attempt, up to 8 times.
    pub delivery_timeout: Duration,
    /// Send announcements, beacons and sweeps to the group (default true). Without
    /// (`--group none`), nothing goes to a multicast address, and `group` need not be
    /// one: listeners subscribe to unicast deliveries and know their directories from
    /// their configuration. The announcement chain still advances (deliveries are
    /// computed from the changes it stamps), unsent.
    pub multicast: bool,
}

/// Default multicast group.
pub const DEFAULT_GROUP: [u8; 4] = [237, 37, 37, 1];
/// Default multicast port.
pub const DEFAULT_GROUP_PORT: u16 = 37371;
/// Default request port.
pub const DEFAULT_REQUEST_PORT: u16 = 37399;

impl DirectoryConfig {
    /// Defaults for a directory at `address` announcing on `group`.
    pub fn new(address: Location, group: SocketAddr) -> Self {
        DirectoryConfig {
            environment: Environment::default(),
            address,
            group,
            interval: Duration::from_millis(50),
            notifications: 20,
            registration_announcements: 1,
            max_datagram: wire::DEFAULT_MAX_DATAGRAM,
            default_lease: Duration::from_secs(15),
            min_lease: Duration::from_secs(1),
            max_lease: Duration::from_secs(300),
            restore_grace: Duration::from_secs(15),
            beacon_interval: Duration::from_secs(1),
            sweep_period: Duration::from_secs(600),
            version_floor: Version(0),
            keys: None,
            max_clock_skew: Duration::from_secs(30),
            tombstone_retention: Duration::from_secs(60),
            replication_bound: Duration::from_secs(5),
            admission: AdmissionConfig::default(),
            delivery_timeout: Duration::from_millis(250),
            multicast: true,
        }
    }

    /// Bytes the authentication trailer takes at the end of every frame sent (0 without
    /// keys).
    pub fn trailer_len(&self) -> usize {
        if self.keys.is_some() {
            TRAILER_LEN
        } else {
            0
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let trailer = self.trailer_len();
        if self.max_datagram < wire::MIN_MAX_DATAGRAM + trailer
            || self.max_datagram > wire::MAX_DATAGRAM
        {
            return Err(ConfigError::MaxDatagram);
        }
        if self.interval == Duration::ZERO
            || self.beacon_interval == Duration::ZERO
            || self.sweep_period == Duration::ZERO
            || self.delivery_timeout == Duration::ZERO
        {
            return Err(ConfigError::ZeroInterval);
        }
        if self.notifications == 0 || self.registration_announcements == 0 {
            return Err(ConfigError::ZeroNotifications);
        }
        if self.min_lease == Duration::ZERO
            || self.min_lease > self.max_lease
            || self.default_lease < self.min_lease
            || self.default_lease > self.max_lease
            || self.max_lease.as_millis() > u64::from(u32::MAX)
        {
            return Err(ConfigError::LeaseBounds);
        }
        if self.multicast && !self.group.ip().is_multicast() {
            return Err(ConfigError::GroupNotMulticast);
        }
        if self.tombstone_retention < self.replication_bound
            || (self.keys.is_some() && self.tombstone_retention < self.max_clock_skew)
        {
            return Err(ConfigError::TombstoneRetention);
        }
        self.admission.validate()
    }
}

/// Why a directory configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The maximum datagram size is below 512 or above 65507 bytes.
    MaxDatagram,
    /// An interval or period is zero.
    ZeroInterval,
    /// The number of unregister notifications or of registration announcements is zero.
    ZeroNotifications,
    /// Leases: need 0 < minimum <= default <= maximum <= 2^32 ms.
    LeaseBounds,
    /// The group address is not a multicast address.
    GroupNotMulticast,
    /// The tombstone retention is shorter than the replication bound, or (with keys)
    /// than the maximum clock skew.
    TombstoneRetention,
    /// A snapshot or registration budget is zero.
    ZeroBudget,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ConfigError::MaxDatagram => "the maximum datagram size must be 512 to 65507 bytes",
            ConfigError::ZeroInterval => "intervals and periods must be longer than zero",
            ConfigError::ZeroNotifications => {
                "at least one unregister notification and one registration announcement are needed"
            }
            ConfigError::LeaseBounds => "leases need 0 < minimum <= default <= maximum <= 49 days",
            ConfigError::GroupNotMulticast => "the group address is not a multicast address",
            ConfigError::TombstoneRetention => {
                "the tombstone retention must be at least the replication bound and, with keys, the maximum clock skew"
            }
            ConfigError::ZeroBudget => "snapshot and registration budgets must be above zero",
        })
    }
}

impl core::error::Error for ConfigError {}

/// What the directory tells its shell.
#[derive(Debug)]
pub enum DirectoryEvent<'s> {
    /// This record changed: store it, durably, before sending what `poll_transmit`
    /// gives next (an acknowledgement must not leave before the change it confirms is
    /// on disk).
    Stored(&'s Record),
    /// Only this record's lease, or its count of notifications still owed, changed: store
    /// it, but it need not be durable before the next send. Losing it in a crash only
    /// shortens the lease a restarted directory sees by at most one renewal period (the
    /// registrant renews well before), or repeats a few notifications.
    Renewed(&'s Record),
    /// This record is gone: delete it from storage.
    Removed(ServiceName),
}

/// Counters a shell may export as metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectoryStats {
    /// Datagrams handled.
    pub datagrams_in: u64,
    /// Datagrams that were not valid Herald frames (or not valid requests).
    pub malformed: u64,
    /// Requests from another environment (each answered with a rejection).
    pub wrong_environment: u64,
    /// Valid frames of a kind a directory does not take (announcements, replies).
    pub ignored: u64,
    /// New registrations.
    pub registrations: u64,
    /// Registrations whose locations or metadata changed.
    pub changes: u64,
    /// Lease renewals that changed nothing else.
    pub renewals: u64,
    /// Explicit unregistrations.
    pub unregisters: u64,
    /// Leases that ran out.
    pub expiries: u64,
    /// Rejections sent, indexed like [`RejectReason::ALL`].
    pub rejections: [u64; RejectReason::ALL.len()],
    /// Snapshot requests answered with pages (they carried a valid cookie).
    pub snapshots: u64,
    /// Snapshot requests without a valid cookie, answered with a cookie only.
    pub snapshot_cookies: u64,
    /// Snapshot requests dropped because the snapshot queue was full.
    pub snapshots_dropped: u64,
    /// Snapshot answers cut short because their source (or all sources) ran out of
    /// byte budget.
    pub snapshots_throttled: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Registered changes announced.
    pub registered_announced: u64,
    /// Unregistered notifications sent (each counts once per datagram it is in).
    pub unregistered_announced: u64,
    /// Replies dropped because the reply queue was full.
    pub replies_dropped: u64,
    /// Departed entries reclaimed for a new registration before all their notifications
    /// were sent.
    pub notifications_dropped: u64,
    /// Finished removals (tombstones) dropped before their retention time to make room
    /// for a new name.
    pub tombstones_evicted: u64,
    /// Requests refused with `stale` because a newer request of the registrant (or a
    /// removal kept as a tombstone) was already applied: late, repeated or replayed.
    pub out_of_order: u64,
    /// With keys: frames without a valid authentication tag (or with an unknown key),
    /// dropped.
    pub unauthenticated: u64,
    /// With keys: authenticated frames seen before, dropped; and snapshot requests whose
    /// counter is too old for their address's replay window, refused with `stale` and
    /// the highest counter as floor. (A registrant's request that old goes on to meet
    /// the record's sequence: refused late or replayed ones count in `out_of_order`.)
    pub replayed: u64,
    /// With keys: authenticated requests whose counter is outside the time window,
    /// refused with `stale`.
    pub stale: u64,
    /// Unicast delivery datagrams sent to subscribers (pages of changes or snapshots).
    pub deliveries: u64,
    /// Of those, pages of snapshots (the subscriber was too far behind, or new).
    pub delivery_snapshots: u64,
    /// Deliveries sent again because their acknowledgement did not come in time.
    pub delivery_resends: u64,
    /// Times a delivery page waited for the snapshot byte budgets (a snapshot, or a
    /// delivery of changes longer than one page).
    pub deliveries_throttled: u64,
    /// Subscriptions whose lease ran out.
    pub subscribers_expired: u64,
    /// New subscriptions taken (renewals and changes of a held one not counted).
    pub subscriptions: u64,
    /// Subscriptions ended by an Unsubscribe.
    pub unsubscribes: u64,
}

impl DirectoryStats {
    /// Rejections sent for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejections[reason.index()]
    }
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // One queue of fixed size: boxing is not an option.
enum Reply {
    Ack(SocketAddr, Ack),
    Reject(SocketAddr, Environment, Reject),
    KeepAliveAck(SocketAddr, wire::KeepAliveAck),
    SubscribeAck(SocketAddr, wire::SubscribeAck),
}

/// Storage for a directory of `N` services, for places without a heap.
pub type DirectoryStorage<const N: usize> = TableStorage<Entry, N>;

/// The memory a directory was made over, handed back by [`Directory::into_storage`].
#[derive(Debug)]
pub struct DirectoryParts<'a> {
    /// The registry's slots.
    pub slots: &'a mut [Slot],
    /// The registry's index.
    pub index: &'a mut [u32],
    /// The subscriber slots (empty when none were given).
    pub subscribers: &'a mut [SubscriberSlot],
}

/// The directory state machine.
pub struct Directory<'a> {
    config: DirectoryConfig,
    registry: Registry<'a>,
    replies: heapless::Deque<Reply, REPLY_QUEUE>,
    /// Snapshot answers, behind the replies.
    admission: admission::Admission,
    last_version: Version,
    now: Instant,
    /// The first `now` seen: `version_floor` is the version clock at that instant.
    epoch: Option<Instant>,
    /// With keys: the counter of the last frame sent.
    counter: u64,
    /// With keys: replay windows of recent senders.
    senders: heapless::Vec<Sender, SENDERS>,
    /// With keys: the highest counter of any forgotten sender.
    forgotten_floor: u64,
    /// Entries with something to announce.
    pending: usize,
    /// Entries whose stored form changed.
    dirty: usize,
    /// Entries that replaced an evicted one whose removal the shell has not taken yet.
    unreported: usize,
    /// The highest version of any tombstone dropped: a record for a name not held that
    /// is not newer is a late copy of something already removed, and is refused.
    dropped_version: Version,
    /// The `as_of` of the last link of the announcement chain (see the announcements
    /// module).
    chain: Version,
    /// A repair since a version below this is answered with a full snapshot: this
    /// directory may have dropped a removal made after it (see the changes module).
    repair_floor: Version,
    /// With keys: the highest request sequence of any tombstone dropped: a request for a
    /// name not held that is not newer is refused as stale.
    dropped_sequence: u64,
    /// The sequences of recent unregistrations of names not held, so that a Register
    /// sent before one and arriving after is refused as stale.
    unregistered: tombstones::Unregistered,
    next_tick: Option<Instant>,
    next_expiry: Option<Instant>,
    next_beacon: Instant,
    /// When the beacon after the last link is due (see the announcements module).
    tail_beacon: Option<Instant>,
    beacon_due: bool,
    next_sweep: Instant,
    sweep_started: Instant,
    sweep_cursor: Option<ServiceName>,
    sweep_due: bool,
    /// Announces, repeats, counts notifications, sweeps and expires (see
    /// [`Directory::set_publishing`]).
    publishing: bool,
    /// While a new publisher catches up with the replicated store: when it stops
    /// waiting for [`Directory::caught_up`].
    catch_up_until: Option<Instant>,
    /// May expire leases (see [`Directory::set_expiring`]).
    expiring: bool,
    /// Whether the shell can store changes (see [`Directory::storage_failed`]).
    storage: storage::Storage,
    /// Who listens by unicast (see the subscribers and delivery modules).
    subscribers: subscribers::Subscribers<'a>,
    stats: DirectoryStats,
}

/// Marks the entry's stored form as changed; `durable` when the change must be stored
/// durably before the next acknowledgement (anything but a lease or a counter).
fn touch(entry: &mut Entry, dirty: &mut usize, durable: bool) {
    entry.durable |= durable;
    if !entry.dirty {
        entry.dirty = true;
        *dirty += 1;
    }
}

impl<'a> Directory<'a> {
    /// A directory with an empty registry in `slots` and `index` (its capacity is the
    /// smaller of the two).
    pub fn new(
        config: DirectoryConfig,
        slots: &'a mut [Slot],
        index: &'a mut [u32],
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let last_version = config.version_floor;
        let admission = admission::Admission::new(&config.admission);
        Ok(Directory {
            config,
            registry: Registry::new(slots, index),
            replies: heapless::Deque::new(),
            admission,
            last_version,
            now: Instant::ZERO,
            epoch: None,
            counter: 0,
            senders: heapless::Vec::new(),
            forgotten_floor: 0,
            pending: 0,
            dirty: 0,
            unreported: 0,
            dropped_version: Version(0),
            dropped_sequence: 0,
            chain: last_version,
            repair_floor: last_version,
            unregistered: tombstones::Unregistered::new(),
            next_tick: None,
            next_expiry: None,
            next_beacon: Instant::ZERO,
            tail_beacon: None,
            beacon_due: false,
            next_sweep: Instant::ZERO,
            sweep_started: Instant::ZERO,
            sweep_cursor: None,
            sweep_due: false,
            publishing: true,
            catch_up_until: None,
            expiring: true,
            storage: storage::Storage::new(),
            subscribers: subscribers::Subscribers::new(&mut []),
            stats: DirectoryStats::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &DirectoryStats {
        &self.stats
    }

    /// The newest version handed out.
    pub fn as_of(&self) -> Version {
        self.last_version
    }

    /// Live services.
    pub fn live(&self) -> usize {
        self.registry
            .iter()
            .filter(|(_, e)| e.record.is_live())
            .count()
    }

    /// Entries held (live and departed).
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.registry.is_empty()
    }

    /// How many entries the registry can hold.
    pub fn capacity(&self) -> usize {
        self.registry.capacity()
    }

    /// The record for `name`, live or departed.
    pub fn record(&self, name: &str) -> Option<&Record> {
        self.registry
            .find(name)
            .and_then(|s| self.registry.get(s))
            .map(|e| &e.record)
    }

    /// Every record, in name order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.registry.ordered().map(|e| &e.record)
    }

    /// True while this directory publishes (see [`set_publishing`](Self::set_publishing)).
    pub fn is_publishing(&self) -> bool {
        self.publishing
    }

    /// Applies `f` to the entry in `slot`, keeping the pending and dirty counts right;
    /// `durable` as for [`touch`].
    fn update(&mut self, slot: usize, durable: bool, f: impl FnOnce(&mut Entry)) {
        let dirty = &mut self.dirty;
        Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
            f(e);
            touch(e, dirty, durable);
        });
    }

    /// Applies `f` to the entry in `slot`, keeping the pending count right (and nothing
    /// else: the stored form is the caller's business).
    fn modify(
        registry: &mut Registry<'a>,
        pending: &mut usize,
        slot: usize,
        f: impl FnOnce(&mut Entry),
    ) {
        if let Some(mut e) = registry.get_mut(slot) {
            let was = notify::is_pending(&e);
            f(&mut e);
            match (was, notify::is_pending(&e)) {
                (false, true) => *pending += 1,
                (true, false) => *pending -= 1,
                _ => {}
            }
        }
    }

    /// A datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.observe(now);
        self.stats.datagrams_in += 1;
        let received = bytes.len();
        let Ok((bytes, counter, decoded)) = auth::receive(self.config.keys.as_ref(), bytes) else {
            self.stats.unauthenticated += 1;
            return;
        };
        let frame = match decoded {
            Ok(frame) => frame,
            Err(e) => return self.handle_undecodable(from, bytes, e),
        };
        if let Message::DeliveryAck(ack) = frame.message {
            // Never answered; taken only from the subscriber's own address.
            if frame.environment == self.config.environment {
                self.handle_delivery_ack(from, ack);
            } else {
                self.stats.wrong_environment += 1;
            }
            return;
        }
        let Some(request) = request_id(&frame.message) else {
            self.stats.ignored += 1;
            return;
        };
        if frame.environment != self.config.environment {
            self.stats.wrong_environment += 1;
            return self.reject(
                from,
                frame.environment,
                request,
                RejectReason::WrongEnvironment,
            );
        }
        if let Some(counter) = counter {
            let id = match &frame.message {
                Message::Register(r) => SenderId::Registrant(r.registrant),
                Message::Unregister(u) => SenderId::Registrant(u.registrant),
                Message::KeepAlive(k) => SenderId::Registrant(k.registrant),
                _ => SenderId::Address(from),
            };
            match self.check_counter(id, counter) {
                Ok(()) => {}
                Err(CounterRefusal::Replayed) => {
                    self.stats.replayed += 1;
                    return;
                }
                Err(CounterRefusal::Behind { floor }) => {
                    self.stats.replayed += 1;
                    let reason = RejectReason::Stale;
                    return self.send_reject(from, frame.environment, request, reason, floor);
                }
                Err(CounterRefusal::Stale { floor }) => {
                    self.stats.stale += 1;
                    let reason = RejectReason::Stale;
                    return self.send_reject(from, frame.environment, request, reason, floor);
                }
            }
        }
        if self.refuse_unstorable(from, &frame.environment, request, &frame.message) {
            return;
        }
        match frame.message {
            Message::Register(r) => self.handle_register(from, frame.environment, r),
            Message::Unregister(u) => self.handle_unregister(from, frame.environment, u),
            Message::SnapshotRequest(request) => self.admit_snapshot(from, received, request),
            Message::KeepAlive(k) => self.handle_keep_alive(from, k),
            Message::Subscribe(s) => self.handle_subscribe(from, frame.environment, received, s),
            Message::Unsubscribe(u) => self.handle_unsubscribe(from, u),
            _ => self.stats.ignored += 1,
        }
    }

    /// Time has reached `now`: expire leases, pace notifications, beacons and sweeps.
    /// (Tombstones whose retention ran out are reaped by [`poll_event`](Self::poll_event),
    /// which reports each one removed.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now;
        if self.catch_up_until.is_some_and(|t| t <= now) {
            self.end_catch_up();
        }
        if self.expires() && self.next_expiry.is_some_and(|t| t <= now) {
            self.expire(now);
        }
        // Subscriptions are this directory's own: they run out whether or not it
        // publishes (a replica keeps those of subscribers that moved on).
        self.expire_subscribers(now);
        if self.next_tick.is_some_and(|t| t <= now) {
            let live_repeats = self.config.registration_announcements > 1;
            let (newly_due, any) = notify::tick(&mut self.registry, live_repeats);
            self.pending += newly_due;
            self.next_tick = any.then(|| now + self.config.interval);
        }
        if self.next_beacon <= now || self.tail_beacon.is_some_and(|t| t <= now) {
            self.beacon_due = true;
            self.tail_beacon = None;
            self.next_beacon = now + self.config.beacon_interval;
            // A directory that does not publish tells the subscribers it still holds
            // again at every beacon (one beacon may be lost), until their leases end.
            if !self.publishing && self.subscribers.len() > 0 {
                self.subscribers.demoted_from = Some(0);
            }
        }
        if self.announces() && self.next_sweep <= now && !self.sweep_due {
            if self.sweep_cursor.is_none() {
                self.sweep_started = now;
            }
            self.sweep_due = true;
        }
    }

    /// When the directory next needs `handle_timeout` (or, for reaping tombstones,
    /// `poll_event`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sweep = self.announces().then_some(self.next_sweep);
        let expiry = self.next_expiry.filter(|_| self.expires());
        let resume = self.storage.resumes_expiry(self.now);
        let mut t = self.next_beacon;
        let catch_up = self.catch_up_until;
        for other in [
            sweep,
            self.tail_beacon,
            self.next_tick,
            expiry,
            self.next_reap(),
            resume,
            catch_up,
            self.delivery_timeout(),
            // Subscribers still to be told of a demotion: at once.
            self.subscribers.demoted_from.map(|_| self.now),
        ]
        .into_iter()
        .flatten()
        {
            t = t.min(other);
        }
        Some(t)
    }

    /// The next datagram to send, written into `buf` (at most the configured maximum
    /// size is used). Replies come first, then announcements, the beacon and the sweep.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.observe(now);
        let max = buf.len().min(self.config.max_datagram);
        let trailer = self.config.trailer_len();
        let body = &mut buf[..max.saturating_sub(trailer)];
        if !self.config.multicast {
            self.announce_unsent(body);
        }
        let mut t = self
            .transmit_reply(body)
            .or_else(|| self.transmit_answer(body))
            .or_else(|| self.transmit_announcement(body))
            .or_else(|| self.transmit_delivery(body))
            .or_else(|| self.transmit_demotion(body))
            .or_else(|| self.transmit_beacon(body))
            .or_else(|| self.transmit_sweep(body));
        if let (Some(sent), Some(_)) = (t.as_mut(), &self.config.keys) {
            let counter = self.next_counter();
            let keys = self.config.keys.as_ref()?;
            sent.len = auth::seal(keys, counter, &mut buf[..max], sent.len).ok()?;
        }
        if t.is_some() {
            self.stats.datagrams_out += 1;
        }
        t
    }

    /// The next change the shell should persist. Take them all after every wake-up and
    /// write them in one batch. Removals come from the registry itself (entries that
    /// replaced an evicted tombstone, and tombstones whose retention ran out), so there
    /// is no queue to overflow: a shell that drains late only deletes late.
    pub fn poll_event(&mut self) -> Option<DirectoryEvent<'_>> {
        if let Some(name) = self.next_unreported() {
            return Some(DirectoryEvent::Removed(name));
        }
        if self.dirty == 0 {
            return self.reap_next().map(DirectoryEvent::Removed);
        }
        if let Some(slot) = self.registry.walk(List::Dirty).next() {
            self.dirty -= 1;
            let durable = {
                let mut e = self.registry.get_mut(slot)?;
                e.dirty = false;
                core::mem::take(&mut e.durable)
            };
            return self.registry.get(slot).map(|e| {
                if durable {
                    DirectoryEvent::Stored(&e.record)
                } else {
                    DirectoryEvent::Renewed(&e.record)
                }
            });
        }
        self.dirty = 0;
        self.reap_next().map(DirectoryEvent::Removed)
    }
}

/// The request id of a request message, `None` for other kinds.
fn request_id(message: &Message<'_>) -> Option<u32> {
    match message {
        Message::Register(r) => Some(r.request),
        Message::Unregister(u) => Some(u.request),
        Message::SnapshotRequest(s) => Some(s.request),
        Message::KeepAlive(k) => Some(k.request),
        Message::Subscribe(s) => Some(s.request),
        Message::Unsubscribe(u) => Some(u.request),
        _ => None,
    }
}
