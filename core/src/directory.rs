//! The directory: the server's state machine.
//!
//! It keeps the [registry](crate::registry), answers requests (register, renew,
//! unregister, snapshot), expires leases, announces every change on the multicast group
//! in the same wake-up that caused it, repeats each removal exactly N times (see
//! [`notify`]), sends a beacon, and sweeps the whole registry at a paced
//! rate (anti-entropy) so that listeners who lost datagrams or joined late converge.
//!
//! Drive it as the [crate docs](crate) describe.

use crate::auth::{self, Keys, ReplayWindow, TRAILER_LEN};
use crate::interest::Interest;
use crate::location::Location;
use crate::name::{Environment, ServiceName};
use crate::notify;
use crate::registry::{Entry, Record, RecordState, Registry, Slot};
use crate::service::{Service, Version};
use crate::table::TableStorage;
use crate::time::{Duration, Instant};
use crate::wire::{
    self, Ack, BatchWriter, Beacon, DecodeError, Header, Message, PageHeader, RegisterRequest,
    Reject, RejectReason, UnregisterRequest,
};
use crate::Transmit;
use core::net::SocketAddr;

mod admission;
mod storage;
pub use admission::{AdmissionConfig, AMPLIFICATION, COOKIE_PERIOD, SNAPSHOT_QUEUE};

/// How many replies may wait between two drains of `poll_transmit`. A shell feeds at
/// most this many datagrams before it drains; beyond it, replies are dropped (and
/// counted) and clients retry.
pub const REPLY_QUEUE: usize = 32;
/// With keys: how many senders' replay windows are kept (registrants, and addresses that
/// ask for snapshots). When a sender is forgotten,
/// counters up to its highest are refused from every sender not in the table, so a
/// forgotten sender's frames cannot be replayed; a sender refused that way resynchronises
/// from the `stale` answer.
const SENDERS: usize = 128;
/// How far below a sender's highest counter a counter is still checked against the
/// replay window's bits (see [`ReplayWindow`]); further below, it is answered `stale`.
const REPLAY_WINDOW: u64 = 64;

/// Whose counters a replay window holds: a registrant's (its requests about its
/// registrations, whatever address and port they come from), or an address's
/// (snapshot requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SenderId {
    Registrant(u64),
    Address(SocketAddr),
}

/// Why an authenticated request's counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CounterRefusal {
    /// Seen before from this sender: a copy, dropped without an answer.
    Replayed,
    /// A snapshot request more than the replay window below the highest counter its
    /// address used: a replay, or a sender whose clock was ahead before. Counted as a
    /// replay, and
    /// answered `stale` with that highest counter as the floor to resume above.
    Behind { floor: u64 },
    /// Outside the time window, or below what the sender already used: answered
    /// `stale` with the floor its next counter must exceed (0: follow the answer's
    /// own counter).
    Stale { floor: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Sender {
    id: SenderId,
    window: ReplayWindow,
    last_used: Instant,
}

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
    /// per processing interval (default 3; at least 1).
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
    /// Time for one anti-entropy sweep of the whole registry (default 10 s).
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
            registration_announcements: 3,
            max_datagram: wire::DEFAULT_MAX_DATAGRAM,
            default_lease: Duration::from_secs(15),
            min_lease: Duration::from_secs(1),
            max_lease: Duration::from_secs(300),
            restore_grace: Duration::from_secs(15),
            beacon_interval: Duration::from_secs(1),
            sweep_period: Duration::from_secs(10),
            version_floor: Version(0),
            keys: None,
            max_clock_skew: Duration::from_secs(30),
            tombstone_retention: Duration::from_secs(60),
            replication_bound: Duration::from_secs(5),
            admission: AdmissionConfig::default(),
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let trailer = if self.keys.is_some() { TRAILER_LEN } else { 0 };
        if self.max_datagram < wire::MIN_MAX_DATAGRAM + trailer
            || self.max_datagram > wire::MAX_DATAGRAM
        {
            return Err(ConfigError::MaxDatagram);
        }
        if self.interval == Duration::ZERO
            || self.beacon_interval == Duration::ZERO
            || self.sweep_period == Duration::ZERO
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
        if !self.group.ip().is_multicast() {
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
    /// counter is more than the replay window below what their address already used,
    /// refused with `stale` and that floor. (A registrant's request that far below goes
    /// on to meet the record's sequence: refused late or replayed ones count in
    /// `out_of_order`.)
    pub replayed: u64,
    /// With keys: authenticated requests whose counter is outside the time window,
    /// refused with `stale`.
    pub stale: u64,
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
}

/// Storage for a directory of `N` services, for places without a heap.
pub type DirectoryStorage<const N: usize> = TableStorage<Entry, N>;

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
    dirty_cursor: usize,
    /// Entries that replaced an evicted one whose removal the shell has not taken yet.
    unreported: usize,
    unreported_cursor: usize,
    /// The earliest a tombstone may be due for reaping (`None`: none held), as
    /// scheduled; `poll_event` reaps in passes over the registry.
    next_reap: Option<Instant>,
    /// Where the reaping pass in progress is (`None`: none in progress), and the
    /// earliest reap time of the tombstones it kept.
    reap_cursor: Option<usize>,
    reap_pass_min: Option<Instant>,
    /// The highest version of any tombstone dropped: a record for a name not held that
    /// is not newer is a late copy of something already removed, and is refused.
    dropped_version: Version,
    /// With keys: the highest request sequence of any tombstone dropped: a request for a
    /// name not held that is not newer is refused as stale.
    dropped_sequence: u64,
    next_tick: Option<Instant>,
    next_expiry: Option<Instant>,
    next_beacon: Instant,
    beacon_due: bool,
    next_sweep: Instant,
    sweep_started: Instant,
    sweep_cursor: Option<ServiceName>,
    sweep_due: bool,
    /// Announces, repeats, counts notifications, sweeps and expires (see
    /// [`Directory::set_publishing`]).
    publishing: bool,
    /// May expire leases (see [`Directory::set_expiring`]).
    expiring: bool,
    /// Whether the shell can store changes (see [`Directory::storage_failed`]).
    storage: storage::Storage,
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
            dirty_cursor: 0,
            unreported: 0,
            unreported_cursor: 0,
            next_reap: None,
            reap_cursor: None,
            reap_pass_min: None,
            dropped_version: Version(0),
            dropped_sequence: 0,
            next_tick: None,
            next_expiry: None,
            next_beacon: Instant::ZERO,
            beacon_due: false,
            next_sweep: Instant::ZERO,
            sweep_started: Instant::ZERO,
            sweep_cursor: None,
            sweep_due: false,
            publishing: true,
            expiring: true,
            storage: storage::Storage::new(),
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

    /// Puts back a record read from storage at start-up. A live record's lease ends no
    /// sooner than `restore_grace` from `now` and no later than `max_lease` from `now`
    /// (see [`DirectoryConfig::restore_grace`]); a departed record sends the
    /// notifications it still owed, and a finished one is kept as a tombstone for the
    /// retention time from now. In a full registry, finished removals give way (and are
    /// reported removed); only live entries and removals still owing notifications can
    /// make it refuse.
    pub fn restore(
        &mut self,
        now: Instant,
        mut record: Record,
    ) -> Result<(), crate::RegistryError> {
        self.observe(now);
        if record.service.version > self.last_version {
            self.last_version = record.service.version;
        }
        if let RecordState::Live { expires } = record.state {
            let grace = self.config.restore_grace.min(self.config.max_lease);
            let expires = expires
                .max(self.now + grace)
                .min(self.now + self.config.max_lease);
            record.state = RecordState::Live { expires };
        }
        let state = record.state;
        let mut entry = Entry::new(record);
        entry.reap_at = self.now + self.config.tombstone_retention;
        let slot = match self.registry.find(entry.record.name().as_str()) {
            Some(slot) => {
                let pending = &mut self.pending;
                let dirty = &mut self.dirty;
                Self::modify(&mut self.registry, pending, slot, |e| {
                    if e.dirty {
                        *dirty -= 1;
                    }
                    entry.evicted = e.evicted.take();
                    *e = entry;
                });
                slot
            }
            None => {
                if self.registry.is_full() && self.make_room_to_restore(&mut entry)? {
                    return Ok(());
                }
                self.registry
                    .insert(entry)
                    .map_err(|_| crate::RegistryError::Full)?
            }
        };
        match state {
            RecordState::Live { expires } => self.schedule_expiry(expires),
            RecordState::Departed { remaining } => {
                if remaining > 0 {
                    let publishing = self.publishing;
                    self.update(slot, false, |e| e.due = publishing);
                    self.schedule_tick();
                } else {
                    self.schedule_reap(self.now + self.config.tombstone_retention);
                }
            }
        }
        Ok(())
    }

    /// Restoring `entry` into a full registry: at start-up nothing older is on its way,
    /// so any finished removal may go. A finished removal being restored goes itself
    /// (true: nothing to insert); otherwise the oldest held one makes room. Either way
    /// its removal is reported by an entry that carries none.
    fn make_room_to_restore(&mut self, entry: &mut Entry) -> Result<bool, crate::RegistryError> {
        let full = crate::RegistryError::Full;
        if entry.record.state == (RecordState::Departed { remaining: 0 }) {
            let carrier = self
                .registry
                .iter()
                .find(|(_, e)| e.evicted.is_none())
                .map(|(slot, _)| slot)
                .ok_or(full)?;
            self.raise_floors(&entry.record);
            if let Some(e) = self.registry.get_mut(carrier) {
                e.evicted = Some(entry.record.name().clone());
                self.unreported += 1;
            }
            return Ok(true);
        }
        let (_, victim) = self
            .registry
            .iter()
            .filter(|(_, e)| e.evicted.is_none())
            .filter(|(_, e)| e.record.state == RecordState::Departed { remaining: 0 })
            .map(|(slot, e)| (e.reap_at, slot))
            .min()
            .ok_or(full)?;
        let gone = self.drop_slot(victim).ok_or(full)?;
        entry.evicted = Some(gone.record.service.registration.name);
        self.unreported += 1;
        Ok(false)
    }

    /// Makes this directory the publisher of its group, or a replica. A single directory
    /// publishes (the default). Directories that share their registry through a
    /// replicated store elect one publisher: it announces changes, repeats them, counts
    /// every removal's notifications, sweeps the registry and expires leases. A replica
    /// answers requests, stores what they change, takes other directories' changes
    /// through [`apply`](Self::apply), beacons (as not publishing) and announces
    /// nothing, so listeners get one copy of each announcement.
    ///
    /// A new publisher beacons at once (listeners that are behind ask it for a
    /// snapshot), starts a sweep, sends the notifications its predecessor still owed
    /// (as last stored) and expires the leases that ran out meanwhile.
    pub fn set_publishing(&mut self, now: Instant, publishing: bool) {
        self.observe(now);
        if publishing == self.publishing {
            return;
        }
        self.publishing = publishing;
        self.beacon_due = true;
        self.next_beacon = self.now + self.config.beacon_interval;
        self.sweep_due = false;
        self.sweep_cursor = None;
        if publishing {
            self.next_sweep = self.now;
            self.next_expiry = Some(self.now);
            for slot in 0..self.registry.len() {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    if let RecordState::Departed { remaining } = e.record.state {
                        e.due = remaining > 0;
                    }
                });
            }
            self.schedule_tick();
        } else {
            for slot in 0..self.registry.len() {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.announce = false;
                    e.repeats = 0;
                    e.due = false;
                });
            }
            self.next_tick = None;
        }
    }

    /// True while this directory publishes (see [`set_publishing`](Self::set_publishing)).
    pub fn is_publishing(&self) -> bool {
        self.publishing
    }

    /// Allows or holds lease expiry (allowed by default). A shell whose replicated store
    /// is unreachable holds it: renewals made through other directories no longer reach
    /// this one, and expiring on what it alone has seen would announce live services
    /// unregistered. Allowing it again expires at once whatever ran out meanwhile
    /// (after the shell has [applied](Self::apply) what it missed).
    pub fn set_expiring(&mut self, now: Instant, expiring: bool) {
        self.observe(now);
        if expiring && !self.expiring {
            self.next_expiry = Some(self.now);
        }
        self.expiring = expiring;
    }

    /// True when this directory expires leases: it publishes and expiry is not held.
    fn expires(&self) -> bool {
        self.publishing && self.expiring && self.storage.allows_expiry(self.now)
    }

    /// Takes a record from the replicated store: a change this or another directory
    /// made. A newer version replaces what is held; the same version merges (the later
    /// lease expiry, the fewer notifications still owed, the higher sequence), so a
    /// directory's own writes coming back are harmless; an older version is ignored,
    /// and so is a record for a name not held that is not newer than a tombstone
    /// already dropped (a late copy of something removed). A publisher announces what
    /// changed (a departed record: the notifications it still owes). Nothing applied is
    /// reported through [`poll_event`](Self::poll_event): it is stored already (but a
    /// tombstone evicted to make room for it is reported removed).
    pub fn apply(&mut self, now: Instant, mut record: Record) -> Result<(), crate::RegistryError> {
        self.observe(now);
        if record.service.version > self.last_version {
            self.last_version = record.service.version;
        }
        let name = record.name().as_str();
        let slot = match self.registry.find(name) {
            Some(slot) => {
                let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
                    return Ok(());
                };
                if record.service.version < held.service.version {
                    return Ok(());
                }
                if record.service.version == held.service.version {
                    self.merge(slot, &record);
                    return Ok(());
                }
                // Within the replication bound of the removal held, another directory
                // may not have known of it.
                let departed = self.registry.get(slot).map_or(Instant::ZERO, |e| e.reap_at);
                let recent = self.now + self.config.tombstone_retention
                    < departed + self.config.replication_bound;
                if let Some(remaining) = same_removal(held, &record).filter(|_| recent) {
                    self.continue_removal(slot, record, remaining);
                    return Ok(());
                }
                record.sequence = record.sequence.max(held.sequence);
                slot
            }
            None => {
                if record.service.version <= self.dropped_version {
                    return Ok(());
                }
                self.insert(Entry::new(record.clone()))
                    .ok_or(crate::RegistryError::Full)?
            }
        };
        let state = record.state;
        let announcements = self.announcements();
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
            e.record = record;
            match state {
                RecordState::Live { .. } => notify::mark_changed(e, announcements),
                RecordState::Departed { remaining } => {
                    e.announce = false;
                    e.repeats = 0;
                    e.due = publishing && remaining > 0;
                    e.reap_at = reap_at;
                }
            }
        });
        match state {
            RecordState::Live { expires } => self.schedule_expiry(expires),
            RecordState::Departed { remaining: 0 } => self.schedule_reap(reap_at),
            RecordState::Departed { .. } => {}
        }
        self.schedule_tick();
        Ok(())
    }

    /// Takes `record`, a newer removal of the registration whose removal is held in
    /// `slot` (see [`same_removal`]): another directory removed it again before the
    /// first removal reached it through the store (a retransmitted or late
    /// unregistration, or one of a lease this directory expired). The record's version
    /// (which the store keeps, being newer), the higher sequence of the two, and the
    /// count of notifications already sent: `remaining` still owed. The removal is
    /// announced N times in all, not restarted. When what is held differs from the
    /// record, it is written back so that the store (and any later publisher) agrees.
    fn continue_removal(&mut self, slot: usize, mut record: Record, remaining: u8) {
        let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
            return;
        };
        let raised = held.sequence > record.sequence;
        let behind = raised || record.state != (RecordState::Departed { remaining });
        record.sequence = record.sequence.max(held.sequence);
        record.state = RecordState::Departed { remaining };
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        let dirty = &mut self.dirty;
        Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
            e.record = record;
            e.announce = false;
            e.repeats = 0;
            e.due = e.due && publishing && remaining > 0;
            e.reap_at = if remaining == 0 {
                e.reap_at.min(reap_at)
            } else {
                reap_at
            };
            if behind {
                // A lower sequence in the store would let a late request in.
                touch(e, dirty, raised);
            }
        });
        if remaining == 0 {
            let at = self.registry.get(slot).map_or(reap_at, |e| e.reap_at);
            self.schedule_reap(at);
        } else {
            self.schedule_tick();
        }
    }

    /// Inserts a new entry, evicting an old enough tombstone when the registry is full
    /// (the new entry carries the evicted name until the shell has taken its removal).
    /// `None` when there is no room.
    fn insert(&mut self, mut entry: Entry) -> Option<usize> {
        if self.registry.is_full() {
            let evicted = self.evict()?;
            entry.evicted = Some(evicted);
            self.unreported += 1;
        }
        match self.registry.insert(entry) {
            Ok(slot) => Some(slot),
            Err(entry) => {
                // Cannot happen (room was made, the name is not held); keep the count.
                if entry.evicted.is_some() {
                    self.unreported -= 1;
                }
                None
            }
        }
    }

    /// Drops the entry for `name` whatever its state, without a storage event. For a
    /// shell that reloaded the replicated store after missing some of its changes: a
    /// live entry the store no longer holds (and that this directory has not yet
    /// written) was removed meanwhile, its notifications sent by the publisher of the
    /// time. Listeners that still hold it drop it at the publisher's next sweep. (An
    /// entry that still carries the removal of a tombstone it replaced is kept as a
    /// tombstone due at once instead, so that `poll_event` reports both removals; the
    /// shell's deletion of a name the store no longer holds changes nothing.)
    pub fn discard(&mut self, now: Instant, name: &str) {
        self.observe(now);
        let Some(slot) = self.registry.find(name) else {
            return;
        };
        if self.registry.get(slot).is_some_and(|e| e.evicted.is_some()) {
            // It still carries the removal of the entry it replaced: keep it as a
            // tombstone due at once, so that both removals reach the shell.
            let now = self.now;
            let dirty = &mut self.dirty;
            Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                e.record.state = RecordState::Departed { remaining: 0 };
                e.announce = false;
                e.repeats = 0;
                e.due = false;
                e.reap_at = now;
                if core::mem::take(&mut e.dirty) {
                    *dirty -= 1;
                }
                e.durable = false;
            });
            self.schedule_reap(now);
            return;
        }
        self.drop_slot(slot);
    }

    /// Merges a stored state of the version held in `slot`.
    fn merge(&mut self, slot: usize, stored: &Record) {
        let Some(held) = self.registry.get(slot).map(|e| &e.record) else {
            return;
        };
        let sequence = held.sequence.max(stored.sequence);
        let reap_at = self.now + self.config.tombstone_retention;
        let mut finished = None;
        match (held.state, stored.state) {
            (RecordState::Live { expires: mine }, RecordState::Live { expires })
                if expires > mine =>
            {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.record.state = RecordState::Live { expires };
                });
                self.schedule_expiry(expires);
            }
            (RecordState::Departed { remaining: mine }, RecordState::Departed { remaining })
                if remaining < mine =>
            {
                Self::modify(&mut self.registry, &mut self.pending, slot, |e| {
                    e.record.state = RecordState::Departed { remaining };
                    if remaining == 0 {
                        e.reap_at = e.reap_at.min(reap_at);
                        finished = Some(e.reap_at);
                    }
                });
            }
            _ => {}
        }
        if let Some(e) = self.registry.get_mut(slot) {
            e.record.sequence = sequence;
        }
        if let Some(at) = finished {
            self.schedule_reap(at);
        }
    }

    /// The replicated store no longer holds `name` (its tombstone was reaped, or its
    /// entry was evicted): a departed entry is dropped without a storage event. A live
    /// entry is kept: it was registered again, and that change is on its way to the
    /// store (after a reload, [`discard`](Self::discard) drops live entries too).
    pub fn forget(&mut self, now: Instant, name: &str) {
        self.observe(now);
        let Some(slot) = self.registry.find(name) else {
            return;
        };
        if self.registry.get(slot).is_some_and(|e| !e.record.is_live()) {
            self.discard(now, name);
        }
    }

    fn observe(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
    }

    /// The version clock: `version_floor` at the first `now`, advanced by time since.
    fn clock(&self) -> u64 {
        let elapsed = self
            .epoch
            .map_or(0, |e| self.now.saturating_since(e).as_micros());
        self.config.version_floor.0.saturating_add(elapsed)
    }

    /// A version larger than any before, following the version clock.
    fn next_version(&mut self) -> Version {
        let clock = self.clock();
        self.last_version = Version(self.last_version.0.saturating_add(1).max(clock));
        self.last_version
    }

    /// The counter for the next authenticated frame sent: follows the clock, always
    /// grows, and stays above every forgotten sender's counter so that a client that
    /// resynchronises from it is accepted.
    fn next_counter(&mut self) -> u64 {
        self.counter = self
            .counter
            .saturating_add(1)
            .max(self.clock())
            .max(self.forgotten_floor.saturating_add(1));
        self.counter
    }

    /// Checks an authenticated request's counter: within the time window, after the
    /// directory started, and not seen before from this sender. An address's counter
    /// below what it already used is answered `stale` with that floor, so the sender
    /// resumes above it; a registrant's goes on to meet the record's sequence.
    fn check_counter(&mut self, id: SenderId, counter: u64) -> Result<(), CounterRefusal> {
        let clock = self.clock();
        let skew = self.config.max_clock_skew.as_micros();
        let low = clock.saturating_sub(skew).max(self.config.version_floor.0);
        if counter <= low || counter > clock.saturating_add(skew) {
            return Err(CounterRefusal::Stale { floor: 0 });
        }
        // A registrant's Register and Unregister carry their counter as the sequence,
        // which the record of the name refuses when late or replayed (see
        // `handle_register`, `handle_unregister`, the dropped-sequence floor): its
        // window only drops exact copies cheaply. A counter below the window is a
        // request overtaken on the way by a newer one of the same registrant (for
        // another name, say), and goes on to meet the record's sequence; refusing it
        // here would refuse every attempt of a registrant whose requests are reordered.
        let registrant = matches!(id, SenderId::Registrant(_));
        let index = match self.senders.iter().position(|s| s.id == id) {
            Some(i) => i,
            None => {
                if counter <= self.forgotten_floor && !registrant {
                    return Err(CounterRefusal::Stale {
                        floor: self.forgotten_floor,
                    });
                }
                if self.senders.is_full() {
                    let oldest = (0..self.senders.len())
                        .min_by_key(|&i| self.senders[i].last_used)
                        .unwrap_or(0);
                    let gone = self.senders.swap_remove(oldest);
                    self.forgotten_floor = self.forgotten_floor.max(gone.window.top());
                }
                let sender = Sender {
                    id,
                    window: ReplayWindow::default(),
                    last_used: self.now,
                };
                // Cannot fail: room was made above.
                let _ = self.senders.push(sender);
                self.senders.len() - 1
            }
        };
        let sender = &mut self.senders[index];
        sender.last_used = self.now;
        let top = sender.window.top();
        if sender.window.accept(counter) {
            Ok(())
        } else if top.saturating_sub(counter) > REPLAY_WINDOW {
            if registrant {
                return Ok(());
            }
            Err(CounterRefusal::Behind { floor: top })
        } else {
            Err(CounterRefusal::Replayed)
        }
    }

    /// The earliest a tombstone may be reaped is `at` (or earlier, if already known).
    fn schedule_reap(&mut self, at: Instant) {
        self.next_reap = Some(self.next_reap.map_or(at, |t| t.min(at)));
    }

    fn schedule_expiry(&mut self, at: Instant) {
        self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
    }

    fn schedule_tick(&mut self) {
        if self.publishing && self.next_tick.is_none() {
            self.next_tick = Some(self.now + self.config.interval);
        }
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
        if let Some(e) = registry.get_mut(slot) {
            let was = notify::is_pending(e);
            f(e);
            match (was, notify::is_pending(e)) {
                (false, true) => *pending += 1,
                (true, false) => *pending -= 1,
                _ => {}
            }
        }
    }

    fn reply(&mut self, reply: Reply) {
        if self.replies.push_back(reply).is_err() {
            self.stats.replies_dropped += 1;
        }
    }

    fn reject(&mut self, to: SocketAddr, env: Environment, request: u32, reason: RejectReason) {
        self.send_reject(to, env, request, reason, 0);
    }

    /// Refuses a request older than what the directory holds, with the floor its
    /// sender's next request must exceed.
    fn refuse_stale(&mut self, to: SocketAddr, env: Environment, request: u32, floor: u64) {
        self.stats.out_of_order += 1;
        self.send_reject(to, env, request, RejectReason::Stale, floor);
    }

    fn send_reject(
        &mut self,
        to: SocketAddr,
        env: Environment,
        request: u32,
        reason: RejectReason,
        floor: u64,
    ) {
        self.stats.rejections[reason.index()] += 1;
        let reject = Reject {
            request,
            reason,
            directory_environment: self.config.environment.clone(),
            floor,
        };
        self.reply(Reply::Reject(to, env, reject));
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
            _ => self.stats.ignored += 1,
        }
    }

    /// Answers a request that could not be decoded, when the sender can use the answer.
    fn handle_undecodable(&mut self, from: SocketAddr, bytes: &[u8], e: DecodeError) {
        self.stats.malformed += 1;
        let reason = RejectReason::for_decode_error(e);
        if let DecodeError::UnsupportedVersion(_) = e {
            if Header::peek_version(bytes).is_some() {
                let env = self.config.environment.clone();
                return self.reject_within_bound(bytes.len(), from, env, 0, reason);
            }
        }
        // A request whose header can be read (whatever its flags) but that is not
        // acceptable gets an answer it can use.
        if let Ok((header, payload)) = Header::parse_with_flags(bytes, u8::MAX) {
            if header.kind.is_request() {
                let request = postcard::take_from_bytes::<u32>(payload).map_or(0, |(r, _)| r);
                let env = header.environment;
                self.reject_within_bound(bytes.len(), from, env, request, reason);
            }
        }
    }

    fn lease_for(&self, asked: Duration) -> Duration {
        if asked == Duration::ZERO {
            self.config.default_lease
        } else {
            asked.max(self.config.min_lease).min(self.config.max_lease)
        }
    }

    fn handle_register(&mut self, from: SocketAddr, env: Environment, r: RegisterRequest) {
        let announcements = self.announcements();
        let lease = self.lease_for(r.lease);
        let expires = self.now + lease;
        let name = r.registration.name.clone();
        let found = self.registry.find(name.as_str());
        let held = found.and_then(|s| self.registry.get(s));
        if !held.is_some_and(|e| e.record.is_live())
            && self.over_registration_budget(from, &env, r.request)
        {
            return;
        }
        let source = Some(admission::source_of(from));
        let version = match found {
            Some(slot) => {
                let Some(e) = self.registry.get(slot) else {
                    return;
                };
                let live = e.record.is_live();
                if live && e.record.registrant != r.registrant {
                    return self.reject(from, env, r.request, RejectReason::NameHeld);
                }
                let stored = e.record.sequence;
                let copy = r.sequence == stored && e.record.registrant == r.registrant;
                if copy && live {
                    // A copy of the request applied last: acknowledge it again, change
                    // nothing.
                    let ack = Ack {
                        request: r.request,
                        lease,
                        version: e.record.service.version,
                    };
                    return self.reply(Reply::Ack(from, ack));
                }
                if r.sequence <= stored {
                    // Older than what was applied (a removal, or a newer request).
                    return self.refuse_stale(from, env, r.request, stored);
                }
                let same = live && e.record.service.registration.same_content(&r.registration);
                let version = if same {
                    self.stats.renewals += 1;
                    e.record.service.version
                } else {
                    if live {
                        self.stats.changes += 1;
                    } else {
                        self.stats.registrations += 1;
                    }
                    self.next_version()
                };
                self.update(slot, !same, |e| {
                    if !live {
                        e.source = source;
                    }
                    e.record.registrant = r.registrant;
                    e.record.sequence = r.sequence;
                    e.record.state = RecordState::Live { expires };
                    if !same {
                        e.record.service = Service {
                            registration: r.registration,
                            version,
                        };
                        notify::mark_changed(e, announcements);
                    }
                });
                if !same {
                    self.schedule_tick();
                }
                version
            }
            None => {
                if self.config.keys.is_some() && r.sequence <= self.dropped_sequence {
                    // Perhaps a replay of a request whose removal was dropped.
                    return self.refuse_stale(from, env, r.request, self.dropped_sequence);
                }
                let version = self.next_version();
                let entry = Entry::new(Record {
                    service: Service {
                        registration: r.registration,
                        version,
                    },
                    registrant: r.registrant,
                    sequence: r.sequence,
                    state: RecordState::Live { expires },
                });
                let Some(slot) = self.insert(entry) else {
                    return self.reject(from, env, r.request, RejectReason::RegistryFull);
                };
                self.stats.registrations += 1;
                self.update(slot, true, |e| {
                    e.source = source;
                    notify::mark_changed(e, announcements);
                });
                self.schedule_tick();
                version
            }
        };
        self.schedule_expiry(expires);
        let ack = Ack {
            request: r.request,
            lease,
            version,
        };
        self.reply(Reply::Ack(from, ack));
    }

    /// Makes room for a new name in a full registry: drops the departed entry that has
    /// been departed at least the replication bound with the fewest notifications left,
    /// the oldest first (a finished removal, if there is one). Returns its name, which
    /// the shell must still be told to delete; `None` when no entry may go (every entry
    /// is live, young, or carries an eviction not yet reported).
    fn evict(&mut self) -> Option<ServiceName> {
        let now = self.now;
        // A tombstone is reaped at `reap_at` = departure + retention; it is old enough to
        // evict from departure + replication bound on.
        let young = Duration::from_micros(
            self.config
                .tombstone_retention
                .as_micros()
                .saturating_sub(self.config.replication_bound.as_micros()),
        );
        let (_, _, slot) = self
            .registry
            .iter()
            .filter(|(_, e)| e.evicted.is_none() && now + young >= e.reap_at)
            .filter_map(|(slot, e)| match e.record.state {
                RecordState::Departed { remaining } => Some((remaining, e.reap_at, slot)),
                RecordState::Live { .. } => None,
            })
            .min()?;
        let e = self.drop_slot(slot)?;
        if let RecordState::Departed { remaining } = e.record.state {
            if remaining > 0 {
                self.stats.notifications_dropped += 1;
            } else if e.reap_at > now {
                self.stats.tombstones_evicted += 1;
            }
        }
        Some(e.record.service.registration.name)
    }

    /// Removes the entry in `slot`, keeping the counts right, and raises the floors of
    /// dropped tombstones if it is departed. Returns it.
    fn drop_slot(&mut self, slot: usize) -> Option<Entry> {
        let e = self.registry.get(slot)?;
        if notify::is_pending(e) {
            self.pending -= 1;
        }
        if e.dirty {
            self.dirty -= 1;
        }
        if e.evicted.is_some() {
            self.unreported -= 1;
        }
        let gone = self.registry.remove(slot)?;
        if !gone.record.is_live() {
            self.raise_floors(&gone.record);
        }
        Some(gone)
    }

    /// A departed `record` is no longer held: nothing not newer may come back.
    fn raise_floors(&mut self, record: &Record) {
        self.dropped_version = self.dropped_version.max(record.service.version);
        self.dropped_sequence = self.dropped_sequence.max(record.sequence);
    }

    fn handle_unregister(&mut self, from: SocketAddr, env: Environment, u: UnregisterRequest) {
        let found = self.registry.find(u.name.as_str());
        let slot = match found.and_then(|s| self.registry.get(s).map(|e| (s, e))) {
            Some((slot, e)) if e.record.is_live() => {
                if e.record.registrant != u.registrant {
                    return self.reject(from, env, u.request, RejectReason::NameHeld);
                }
                if u.sequence <= e.record.sequence {
                    // Older than the registration held: a late request must not undo it.
                    let stored = e.record.sequence;
                    return self.refuse_stale(from, env, u.request, stored);
                }
                slot
            }
            // Already gone: unregistering is idempotent.
            Some((_, e)) => {
                let ack = Ack {
                    request: u.request,
                    lease: Duration::ZERO,
                    version: e.record.service.version,
                };
                return self.reply(Reply::Ack(from, ack));
            }
            None => {
                let ack = Ack {
                    request: u.request,
                    lease: Duration::ZERO,
                    version: Version(0),
                };
                return self.reply(Reply::Ack(from, ack));
            }
        };
        self.stats.unregisters += 1;
        if let Some(e) = self.registry.get_mut(slot) {
            e.record.sequence = u.sequence;
        }
        let version = self.depart(slot);
        let ack = Ack {
            request: u.request,
            lease: Duration::ZERO,
            version,
        };
        self.reply(Reply::Ack(from, ack));
    }

    fn depart(&mut self, slot: usize) -> Version {
        let version = self.next_version();
        let n = self.config.notifications;
        let publishing = self.publishing;
        let reap_at = self.now + self.config.tombstone_retention;
        self.update(slot, true, |e| {
            notify::depart(e, version, n, publishing);
            e.reap_at = reap_at;
        });
        self.schedule_tick();
        version
    }

    /// How many times a change is announced here: none by a replica.
    fn announcements(&self) -> u8 {
        if self.publishing {
            self.config.registration_announcements
        } else {
            0
        }
    }

    /// Time has reached `now`: expire leases, pace notifications, beacons and sweeps.
    /// (Tombstones whose retention ran out are reaped by [`poll_event`](Self::poll_event),
    /// which reports each one removed.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        let now = self.now;
        if self.expires() && self.next_expiry.is_some_and(|t| t <= now) {
            self.expire(now);
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            let (newly_due, any) = notify::tick(&mut self.registry);
            self.pending += newly_due;
            self.next_tick = any.then(|| now + self.config.interval);
        }
        if self.next_beacon <= now {
            self.beacon_due = true;
            self.next_beacon = now + self.config.beacon_interval;
        }
        if self.publishing && self.next_sweep <= now && !self.sweep_due {
            if self.sweep_cursor.is_none() {
                self.sweep_started = now;
            }
            self.sweep_due = true;
        }
    }

    fn expire(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut slot = 0;
        while slot < self.registry.len() {
            if let Some(RecordState::Live { expires }) =
                self.registry.get(slot).map(|e| e.record.state)
            {
                if expires <= now {
                    self.stats.expiries += 1;
                    self.depart(slot);
                } else {
                    next = Some(next.map_or(expires, |t: Instant| t.min(expires)));
                }
            }
            slot += 1;
        }
        self.next_expiry = next;
    }

    /// Reaps the next tombstone whose retention ran out, in a pass over the registry
    /// that starts when one is due; returns its name for the shell to delete. At the
    /// end of a pass, schedules the next from what it kept.
    fn reap_next(&mut self) -> Option<ServiceName> {
        let now = self.now;
        let mut slot = match self.reap_cursor {
            Some(slot) => slot,
            None if self.next_reap.is_some_and(|t| t <= now) => {
                self.next_reap = None;
                self.reap_pass_min = None;
                0
            }
            None => return None,
        };
        while let Some(e) = self.registry.get(slot) {
            if let RecordState::Departed { remaining: 0 } = e.record.state {
                if e.reap_at <= now && e.evicted.is_none() {
                    // The last entry moves into `slot`: the cursor stays to look at it.
                    self.reap_cursor = Some(slot);
                    return self
                        .drop_slot(slot)
                        .map(|e| e.record.service.registration.name);
                }
                let at = e.reap_at;
                self.reap_pass_min = Some(self.reap_pass_min.map_or(at, |t| t.min(at)));
            }
            slot += 1;
        }
        self.reap_cursor = None;
        if let Some(at) = self.reap_pass_min.take() {
            self.schedule_reap(at);
        }
        None
    }

    /// The next eviction not yet reported, taken from the entry that carries it.
    fn next_unreported(&mut self) -> Option<ServiceName> {
        if self.unreported == 0 {
            return None;
        }
        let len = self.registry.len();
        for _ in 0..len {
            if self.unreported_cursor >= len {
                self.unreported_cursor = 0;
            }
            let slot = self.unreported_cursor;
            self.unreported_cursor += 1;
            if let Some(name) = self.registry.get_mut(slot).and_then(|e| e.evicted.take()) {
                self.unreported -= 1;
                return Some(name);
            }
        }
        self.unreported = 0;
        None
    }

    /// When the directory next needs `handle_timeout` (or, for reaping tombstones,
    /// `poll_event`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sweep = self.publishing.then_some(self.next_sweep);
        let expiry = self.next_expiry.filter(|_| self.expires());
        let resume = self.storage.resumes_expiry(self.now);
        let mut t = self.next_beacon;
        for other in [sweep, self.next_tick, expiry, self.next_reap, resume]
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
        let trailer = if self.config.keys.is_some() {
            TRAILER_LEN
        } else {
            0
        };
        let body = &mut buf[..max.saturating_sub(trailer)];
        let mut t = self
            .transmit_reply(body)
            .or_else(|| self.transmit_answer(body))
            .or_else(|| self.transmit_announcement(body))
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

    fn transmit_reply(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let reply = self.replies.pop_front()?;
            let sent =
                match reply {
                    Reply::Ack(to, ack) => wire::encode(&self.config.environment, &ack, buf)
                        .ok()
                        .map(|len| Transmit {
                            destination: to,
                            len,
                        }),
                    Reply::Reject(to, env, reject) => {
                        wire::encode(&env, &reject, buf).ok().map(|len| Transmit {
                            destination: to,
                            len,
                        })
                    }
                };
            if sent.is_some() {
                return sent;
            }
        }
    }

    /// Writes one page of live services matching `interest`, after `header.after`.
    /// Returns the length, the last name written and whether the page is complete.
    fn write_page(
        &self,
        header: &PageHeader,
        interest: &Interest,
        sync: bool,
        buf: &mut [u8],
    ) -> Option<(usize, Option<ServiceName>, bool)> {
        let env = &self.config.environment;
        let mut writer = BatchWriter::page(env, header, sync, buf).ok()?;
        let mut position = self
            .registry
            .position_after(header.after.as_ref().map(|n| n.as_str()));
        let mut last = header.after.clone();
        let mut complete = true;
        while let Some(slot) = self.registry.slot_at_position(position) {
            let Some(e) = self.registry.get(slot) else {
                break;
            };
            if e.record.is_live() && interest.matches(e.record.name().as_str()) {
                if !writer.push(&e.record.service) {
                    complete = false;
                    break;
                }
                last = Some(e.record.name().clone());
            }
            position += 1;
        }
        writer.set_complete(complete);
        Some((writer.len(), last, complete))
    }

    fn transmit_announcement(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if self.pending == 0 {
            return None;
        }
        let header = wire::AnnounceHeader {
            directory: self.config.address,
            as_of: self.last_version,
        };
        let mut writer = BatchWriter::announce(&self.config.environment, &header, buf).ok()?;
        let dirty = &mut self.dirty;
        let mut reap: Option<Instant> = None;
        let written = notify::fill(&mut self.registry, &mut writer, |e| {
            touch(e, dirty, false);
            if let RecordState::Departed { remaining: 0 } = e.record.state {
                reap = Some(reap.map_or(e.reap_at, |t| t.min(e.reap_at)));
            }
        });
        if let Some(at) = reap {
            self.schedule_reap(at);
        }
        let items = written.registered + written.unregistered;
        if items == 0 {
            // Nothing fitted: cannot happen with a valid maximum size; resynchronise the
            // count rather than spin.
            self.pending = 0;
            return None;
        }
        self.pending -= items;
        self.stats.registered_announced += written.registered as u64;
        self.stats.unregistered_announced += written.unregistered as u64;
        Some(Transmit {
            destination: self.config.group,
            len: writer.len(),
        })
    }

    fn transmit_beacon(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.beacon_due {
            return None;
        }
        self.beacon_due = false;
        let beacon = Beacon {
            directory: self.config.address,
            as_of: self.last_version,
            services: u32::try_from(self.live()).unwrap_or(u32::MAX),
            publishing: self.publishing,
        };
        let len = wire::encode(&self.config.environment, &beacon, buf).ok()?;
        Some(Transmit {
            destination: self.config.group,
            len,
        })
    }

    fn transmit_sweep(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        if !self.sweep_due {
            return None;
        }
        self.sweep_due = false;
        let header = PageHeader {
            request: 0,
            as_of: self.last_version,
            after: self.sweep_cursor.clone(),
            complete: false,
        };
        let (len, last, complete) = self.write_page(&header, &Interest::all(), true, buf)?;
        let now = self.now;
        if complete {
            self.sweep_cursor = None;
            let next = self.sweep_started + self.config.sweep_period;
            self.next_sweep = next.max(now + self.config.interval);
        } else {
            // Pace the pages so that a whole sweep takes about one sweep period.
            let written = self
                .registry
                .position_after(last.as_ref().map(|n| n.as_str()))
                .saturating_sub(
                    self.registry
                        .position_after(self.sweep_cursor.as_ref().map(|n| n.as_str())),
                );
            let total = self.registry.len().max(1) as u64;
            let share = self.config.sweep_period.mul(written as u64).div(total);
            self.next_sweep = now + share.max(self.config.interval);
            self.sweep_cursor = last;
        }
        Some(Transmit {
            destination: self.config.group,
            len,
        })
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
        let len = self.registry.len();
        for _ in 0..len {
            if self.dirty_cursor >= len {
                self.dirty_cursor = 0;
            }
            let slot = self.dirty_cursor;
            self.dirty_cursor += 1;
            if self.registry.get(slot).is_some_and(|e| e.dirty) {
                self.dirty -= 1;
                let e = self.registry.get_mut(slot)?;
                e.dirty = false;
                let durable = core::mem::take(&mut e.durable);
                return self.registry.get(slot).map(|e| {
                    if durable {
                        DirectoryEvent::Stored(&e.record)
                    } else {
                        DirectoryEvent::Renewed(&e.record)
                    }
                });
            }
        }
        self.dirty = 0;
        self.reap_next().map(DirectoryEvent::Removed)
    }
}

/// When `record` (newer than `held`) and `held` are both removals of the same
/// registrant's registration, the notifications still owed for what is one removal to
/// listeners (they were told of no registration in between): the fewer of the two
/// counts. The caller checks that the held removal is recent (within the replication
/// bound): later, any other directory knew of it, and a new removal follows a
/// registration in between.
fn same_removal(held: &Record, record: &Record) -> Option<u8> {
    match (held.state, record.state) {
        (RecordState::Departed { remaining: mine }, RecordState::Departed { remaining })
            if held.registrant == record.registrant =>
        {
            Some(mine.min(remaining))
        }
        _ => None,
    }
}

/// The request id of a request message, `None` for other kinds.
fn request_id(message: &Message<'_>) -> Option<u32> {
    match message {
        Message::Register(r) => Some(r.request),
        Message::Unregister(u) => Some(u.request),
        Message::SnapshotRequest(s) => Some(s.request),
        _ => None,
    }
}
