//! A deterministic simulated network that drives one directory and several clients
//! through the core alone: seeded loss, duplication, reordering and delay.

#![allow(dead_code)]

pub mod history;
mod shared_store;

use herald_core::directory::MAX_SUBSCRIBER_LEN;
use herald_core::registry::{WallClock, MAX_RECORD_LEN};
use herald_core::wire::{decode, Change, Message};
use herald_core::*;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// A map hashed the same way in every process, so that a seed replays exactly (the
/// standard one's order changes from run to run).
type HashMap<K, V> = std::collections::HashMap<K, V, FixedHasher>;
/// A set hashed the same way in every process (see [`HashMap`]).
type HashSet<T> = std::collections::HashSet<T, FixedHasher>;
type FixedHasher = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A small seeded PRNG (xorshift64*), so runs are reproducible without dependencies.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// How the simulated links misbehave.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    /// Each datagram is delayed by 0..max_delay, which also reorders them.
    pub max_delay: Duration,
}

impl Faults {
    pub fn none() -> Self {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            max_delay: Duration::from_micros(200),
        }
    }
    pub fn lossy(loss: f64) -> Self {
        Faults {
            loss,
            duplicate: 0.05,
            max_delay: Duration::from_millis(20),
        }
    }
}

pub fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

pub fn group() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371)
}

pub fn directory_location() -> Location {
    Location::new(ip(1), 37399).unwrap()
}

/// The location of directory `i` (0 is [`directory_location`]).
pub fn nth_directory(i: usize) -> Location {
    Location::new(ip(1 + i as u8), 37399).unwrap()
}

/// One simulated directory.
pub struct DirNode {
    pub location: Location,
    pub directory: Directory<'static>,
    /// A stopped directory neither sends nor receives.
    pub down: bool,
}

pub fn service(name: &str, port: u16) -> Registration {
    Registration::new(
        ServiceName::new(name).unwrap(),
        &[Location::new(ip(200), port).unwrap()],
    )
    .unwrap()
}

/// What a listener has been told, checked as events arrive.
#[derive(Default, Debug)]
pub struct View {
    pub services: BTreeMap<String, Service>,
    pub discovered: HashMap<String, usize>,
    pub unregistered: HashMap<String, usize>,
    pub changed: HashMap<String, usize>,
    pub violations: Vec<String>,
}

impl View {
    fn apply(&mut self, event: &ClientEvent) {
        match event {
            ClientEvent::Discovered(s) => {
                let name = s.name().to_string();
                *self.discovered.entry(name.clone()).or_default() += 1;
                if self.services.insert(name.clone(), s.clone()).is_some() {
                    self.violations.push(format!("discovered {name} twice"));
                }
            }
            ClientEvent::Changed(s) => {
                let name = s.name().to_string();
                *self.changed.entry(name.clone()).or_default() += 1;
                match self.services.insert(name.clone(), s.clone()) {
                    None => self
                        .violations
                        .push(format!("changed {name} before discovery")),
                    Some(old) if old.registration.same_content(&s.registration) => self
                        .violations
                        .push(format!("changed {name} without a change")),
                    Some(_) => {}
                }
            }
            ClientEvent::Unregistered(s) => {
                let name = s.name().to_string();
                *self.unregistered.entry(name.clone()).or_default() += 1;
                if self.services.remove(&name).is_none() {
                    self.violations
                        .push(format!("unregistered {name} that was not known"));
                }
            }
            ClientEvent::Evicted(s) => {
                let name = s.name().to_string();
                if self.services.remove(&name).is_none() {
                    self.violations
                        .push(format!("evicted {name} that was not known"));
                }
            }
            _ => {}
        }
    }
}

pub struct Node {
    pub addr: SocketAddr,
    pub client: Client<'static, 8>,
    pub view: View,
    pub events: Vec<ClientEvent>,
    /// A crashed node neither sends nor receives.
    pub crashed: bool,
    /// A partitioned node loses everything to and from it.
    pub partitioned: bool,
    pub listening: bool,
    /// Datagrams sent since the start of the current 100 ms window (see [`STORM`]).
    sent: (Instant, usize),
    /// What the client was made with, and its table's size (to start it again).
    config: ClientConfig,
    table: usize,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// A replicated store the directories share (as `herald serve` shares etcd): every
/// change a directory stores reaches every directory (itself included, as an etcd watch
/// does) after `delay`; while it is down, each directory's writes wait in its queue.
pub struct SharedStore {
    /// Stored records, encoded as the shells store them.
    pub records: BTreeMap<String, Vec<u8>>,
    /// Watch events on their way: (when, record name, encoded record or deletion).
    watch: Vec<(Instant, String, Option<Vec<u8>>, u64)>,
    /// Writes each directory could not make while the store was down.
    queued: Vec<Vec<DirectoryWrite>>,
    pub delay: Duration,
    pub down: bool,
    /// Directories that sent announcements or sweep pages to the group.
    pub announcers: HashSet<usize>,
    /// A new publisher catching up: which, and when the last write made before it took
    /// over reaches it (then the simulated shell tells it so, as the etcd shell does).
    pub catch_up: Option<(usize, Instant)>,
    /// The revision of each record's last write (`revision`: the store's last).
    revisions: HashMap<String, u64>,
    revision: u64,
    /// Per directory: the revision of each record as it last saw it (through the
    /// watch, its own write, or a read). A write over a record it has not seen is a
    /// conflict, as etcd's revision guard makes it.
    seen: Vec<HashMap<String, u64>>,
}

/// One write a directory's shell makes to the shared store.
#[derive(Clone)]
pub enum DirectoryWrite {
    Put(String, Vec<u8>),
    /// Deletes the record if it is still departed.
    DeleteDeparted(String),
}

/// Notes a live state that directory `d` asks to store in `held`.
fn note_held_live(held: &mut Vec<(usize, String, u64)>, d: usize, event: &DirectoryEvent<'_>) {
    if let DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r) = event {
        if r.is_live() {
            held.push((d, r.name().to_string(), r.service.version.0));
        }
    }
}

/// Most datagrams a simulated client sends within 100 ms: far more than any schedule
/// needs (a registrant holds 8 names; a subscriber acknowledges pages as they come).
const STORM: usize = 2_000;

/// Wall clock of the simulation: Unix milliseconds = simulated milliseconds + 10^12.
pub fn wall(now: Instant) -> WallClock {
    WallClock {
        now,
        unix_ms: 1_000_000_000_000 + now.as_millis(),
    }
}

/// No listener saw an event that breaks the exactly-once rules.
pub fn assert_clean(sim: &Sim) {
    for (i, n) in sim.nodes.iter().enumerate() {
        assert!(
            n.view.violations.is_empty(),
            "node {i}: {:?}",
            n.view.violations
        );
    }
}

pub struct Sim {
    pub now: Instant,
    pub rng: Rng,
    pub faults: Faults,
    pub directories: Vec<DirNode>,
    pub nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Unregistered notifications the directory sent, per (name, version).
    pub notifications: HashMap<(String, u64), usize>,
    /// Registered announcements the directory sent, per (name, version).
    pub announcements: HashMap<(String, u64), usize>,
    pub config: DirectoryConfig,
    /// The lease clients ask for.
    pub client_lease: Duration,
    /// The keys clients are given (`None`: unauthenticated).
    pub client_keys: Option<herald_core::auth::Keys>,
    /// Every datagram sent, in order, when `capture` is on.
    pub captured: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Every live state a directory stored, announced or not: (directory, name,
    /// version), taken by whoever checks the history.
    pub held_live: Vec<(usize, String, u64)>,
    pub capture: bool,
    /// The registrant id of the next client added (default: one per client).
    pub next_registrant: Option<u64>,
    /// Directories share this store (`None`: each keeps its own registry).
    pub shared: Option<SharedStore>,
    /// The index of the first directory the next client added is configured with.
    pub next_first_directory: usize,
    /// Nodes whose network drops multicast: nothing sent to the group reaches them
    /// (subscribers, see [`Sim::add_subscriber`]).
    pub unicast_only: HashSet<SocketAddr>,
    /// Loss on the unicast path between directories and unicast-only nodes, on top of
    /// `faults.loss` (`None`: the same as everywhere).
    pub unicast_loss: Option<f64>,
    /// Per directory: the subscriptions its shell stored, by subscriber id.
    pub stored_subscribers: Vec<BTreeMap<u64, Vec<u8>>>,
    /// Per directory without a shared store: the records it stored (name → record), as
    /// `herald serve` keeps them in its embedded store.
    pub own_store: Vec<BTreeMap<String, Vec<u8>>>,
}

/// How many subscribers each simulated directory can hold.
pub const SUBSCRIBERS: usize = 16;

/// How long a simulated client waits for its directory's beacons before it fails over.
pub const CLIENT_DIRECTORY_TIMEOUT: Duration = Duration::from_secs(5);

/// A directory over leaked storage of `capacity` entries, with a subscriber table of
/// [`SUBSCRIBERS`].
pub fn new_directory(config: DirectoryConfig, capacity: usize) -> Directory<'static> {
    Directory::new(config, leak(None, capacity), leak(0u32, capacity))
        .unwrap()
        .with_subscribers(leak(None, SUBSCRIBERS))
}

/// The memory of finished simulated directories and clients, for the next ones: a
/// fuzzer runs many simulations in one process, and leaking each one's memory would use
/// up the process's (about 360 KB per history run). A static, never dropped, so that
/// what it keeps is still reachable when the process ends (no leak to report).
static SPARE: std::sync::Mutex<Vec<Box<dyn std::any::Any + Send>>> =
    std::sync::Mutex::new(Vec::new());

/// `n` copies of `value` in memory that lives as long as the process: a spare slice of
/// that length if one is kept, else a new one.
fn leak<T: Clone + Send + 'static>(value: T, n: usize) -> &'static mut [T] {
    let spare = {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        spare
            .iter()
            .position(|b| {
                b.downcast_ref::<&'static mut [T]>()
                    .is_some_and(|s| s.len() == n)
            })
            .and_then(|i| spare.swap_remove(i).downcast::<&'static mut [T]>().ok())
    };
    match spare {
        Some(slice) => {
            let slice = *slice;
            slice.fill(value);
            slice
        }
        None => Vec::leak(vec![value; n]),
    }
}

/// Keeps `slice` for a later [`leak`].
fn spare<T: Send + 'static>(slice: &'static mut [T]) {
    SPARE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(slice));
}

/// Keeps the memory of a finished directory for the next one.
pub fn recycle_directory(directory: Directory<'static>) {
    let parts = directory.into_storage();
    spare(parts.slots);
    spare(parts.index);
    spare(parts.subscribers);
}

impl Drop for Sim {
    fn drop(&mut self) {
        for node in self.directories.drain(..) {
            recycle_directory(node.directory);
        }
        for node in self.nodes.drain(..) {
            let (slots, index) = node.client.into_storage();
            spare(slots);
            spare(index);
        }
    }
}

impl Sim {
    pub fn new(seed: u64, faults: Faults, capacity: usize) -> Self {
        let mut config = DirectoryConfig::new(directory_location(), group());
        config.default_lease = Duration::from_secs(3);
        config.min_lease = Duration::from_millis(500);
        config.sweep_period = Duration::from_secs(2);
        config.version_floor = Version(1_000);
        Self::with_config(seed, faults, capacity, config)
    }

    pub fn with_config(
        seed: u64,
        faults: Faults,
        capacity: usize,
        config: DirectoryConfig,
    ) -> Self {
        let directory = new_directory(config.clone(), capacity);
        let first = DirNode {
            location: config.address,
            directory,
            down: false,
        };
        Sim {
            now: Instant::from_millis(1),
            rng: Rng::new(seed),
            faults,
            directories: vec![first],
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            notifications: HashMap::default(),
            announcements: HashMap::default(),
            config,
            client_lease: Duration::from_secs(3),
            client_keys: None,
            captured: Vec::new(),
            held_live: Vec::new(),
            capture: false,
            next_registrant: None,
            shared: None,
            next_first_directory: 0,
            unicast_only: HashSet::default(),
            unicast_loss: None,
            stored_subscribers: Vec::new(),
            own_store: Vec::new(),
        }
    }

    /// `count` directories sharing one store, directory 0 publishing and the others
    /// replicas, each change replicated after `delay`.
    pub fn replicated(
        seed: u64,
        faults: Faults,
        capacity: usize,
        count: usize,
        delay: Duration,
    ) -> Self {
        let mut sim = Sim::new(seed, faults, capacity);
        for _ in 1..count {
            sim.add_directory(capacity);
        }
        sim.share_store(delay);
        sim
    }

    /// Makes the directories share one store, each change replicated after `delay`,
    /// directory 0 publishing and the others replicas.
    pub fn share_store(&mut self, delay: Duration) {
        let count = self.directories.len();
        self.shared = Some(SharedStore {
            records: BTreeMap::new(),
            watch: Vec::new(),
            queued: vec![Vec::new(); count],
            delay,
            down: false,
            announcers: HashSet::default(),
            catch_up: None,
            revisions: HashMap::default(),
            revision: 0,
            seen: vec![HashMap::default(); count],
        });
        self.elect(Some(0));
    }

    /// Makes directory `publisher` the only one publishing (`None`: none publishes).
    pub fn elect(&mut self, publisher: Option<usize>) {
        let now = self.now;
        for (i, d) in self.directories.iter_mut().enumerate() {
            d.directory.set_publishing(now, Some(i) == publisher);
        }
        self.flush();
        if let (Some(store), Some(p)) = (&mut self.shared, publisher) {
            let last = store.watch.iter().map(|(at, ..)| *at).max();
            store.catch_up = Some((p, last.unwrap_or(now).max(now)));
            self.signal_caught_up();
        }
    }

    /// Takes the store down: directories hold expiry and queue their writes.
    pub fn store_down(&mut self) {
        let now = self.now;
        if let Some(store) = &mut self.shared {
            store.down = true;
            store.watch.clear();
        }
        for d in &mut self.directories {
            d.directory.set_expiring(now, false);
        }
    }

    /// Brings the store back: each directory writes what it queued, reloads the whole
    /// store (forgetting what it no longer holds) and expires again.
    pub fn store_up(&mut self) {
        let now = self.now;
        let Some(store) = &mut self.shared else {
            return;
        };
        store.down = false;
        for i in 0..self.directories.len() {
            let queued = std::mem::take(&mut store.queued[i]);
            for write in queued {
                store.write(write);
            }
        }
        for d in 0..self.directories.len() {
            if !self.directories[d].down {
                self.reload(d);
                self.directories[d].directory.set_expiring(now, true);
            }
        }
        self.flush();
    }

    /// Tells a new publisher that it has caught up once every write made before it
    /// took over has reached it (and it runs).
    fn signal_caught_up(&mut self) {
        let now = self.now;
        let Some(store) = &mut self.shared else {
            return;
        };
        if let Some((p, at)) = store.catch_up {
            if at <= now && !self.directories[p].down {
                store.catch_up = None;
                self.directories[p].directory.caught_up(now);
            }
        }
    }

    /// Directory `d` reads the whole store again, as a shell does after missing watch
    /// events: it applies every record and discards what the store no longer holds (a
    /// new publisher then holds everything written before it took over).
    pub fn reload(&mut self, d: usize) {
        let now = self.now;
        if let Some(store) = &mut self.shared {
            if store.catch_up.is_some_and(|(p, _)| p == d) {
                store.catch_up = Some((d, now));
            }
        }
        self.reload_records(d);
        self.read_store(d);
        self.signal_caught_up();
    }

    /// Directory `d` has read the whole store (it reloaded, or restored from it).
    pub fn read_store(&mut self, d: usize) {
        if let Some(store) = &mut self.shared {
            store.seen[d] = store.revisions.clone();
        }
    }

    fn reload_records(&mut self, d: usize) {
        let now = self.now;
        let Some(store) = &self.shared else { return };
        let directory = &mut self.directories[d].directory;
        let held: Vec<String> = directory.records().map(|r| r.name().to_string()).collect();
        for name in held {
            if !store.records.contains_key(&name) {
                directory.discard(now, &name);
            }
        }
        for bytes in store.records.values() {
            let record = Record::from_bytes(bytes, wall(now)).unwrap();
            directory.apply(now, record).unwrap();
        }
    }

    /// Hands directory `d`'s storage events to the shared store. A write over a record
    /// that changed since the directory last saw it, or that the store refuses because
    /// it holds a newer one, is a conflict: as the etcd shell does, the writer reads the
    /// stored record, applies it, and writes its own again if it still differs (a few
    /// rounds at most).
    fn replicate(&mut self, d: usize) {
        let mut writes = Vec::new();
        for _ in 0..4 {
            let conflicts = self.replicate_once(d, std::mem::take(&mut writes));
            if conflicts.is_empty() {
                return;
            }
            let now = self.now;
            let mut buf = [0u8; MAX_RECORD_LEN];
            for bytes in conflicts {
                let record = Record::from_bytes(&bytes, wall(now)).unwrap();
                let name = record.name().to_string();
                if let Some(store) = &mut self.shared {
                    let revision = store.revisions.get(&name).copied().unwrap_or(0);
                    store.seen[d].insert(name.clone(), revision);
                }
                let directory = &mut self.directories[d].directory;
                let _ = directory.apply(now, record);
                let mine = directory
                    .record(&name)
                    .and_then(|r| r.to_bytes(wall(now), &mut buf));
                if let Some(mine) = mine.filter(|m| *m != bytes.as_slice()) {
                    writes.push(DirectoryWrite::Put(name, mine.to_vec()));
                }
            }
        }
    }

    /// One round of [`replicate`](Self::replicate): `writes` (again, after a conflict),
    /// then the directory's storage events. Returns the stored records that refused a
    /// write.
    fn replicate_once(&mut self, d: usize, writes: Vec<DirectoryWrite>) -> Vec<Vec<u8>> {
        let now = self.now;
        let mut conflicts = Vec::new();
        let Some(store) = &mut self.shared else {
            if self.own_store.len() <= d {
                self.own_store.resize(d + 1, BTreeMap::new());
            }
            let mut buf = [0u8; MAX_RECORD_LEN];
            while let Some(event) = self.directories[d].directory.poll_event() {
                note_held_live(&mut self.held_live, d, &event);
                match event {
                    DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r) => {
                        let bytes = r.to_bytes(wall(now), &mut buf).unwrap().to_vec();
                        self.own_store[d].insert(r.name().to_string(), bytes);
                    }
                    DirectoryEvent::Removed(name) => {
                        self.own_store[d].remove(name.as_str());
                    }
                }
            }
            return conflicts;
        };
        let mut buf = [0u8; MAX_RECORD_LEN];
        let mut writes = writes.into_iter();
        loop {
            let write = match writes.next() {
                Some(write) => write,
                None => match self.directories[d].directory.poll_event() {
                    Some(event @ (DirectoryEvent::Stored(r) | DirectoryEvent::Renewed(r))) => {
                        note_held_live(&mut self.held_live, d, &event);
                        let bytes = r.to_bytes(wall(now), &mut buf).unwrap().to_vec();
                        DirectoryWrite::Put(r.name().to_string(), bytes)
                    }
                    Some(DirectoryEvent::Removed(name)) => {
                        DirectoryWrite::DeleteDeparted(name.to_string())
                    }
                    None => break,
                },
            };
            if store.down || self.directories[d].down {
                store.queued[d].push(write);
                continue;
            }
            let (name, change) = match &write {
                DirectoryWrite::Put(name, bytes) => (name.clone(), Some(bytes.clone())),
                DirectoryWrite::DeleteDeparted(name) => (name.clone(), None),
            };
            let stored = store.records.get(&name);
            let current = store.revisions.get(&name);
            if change.is_some() && stored.is_some() && store.seen[d].get(&name) != current {
                // The record changed since this directory last saw it.
                conflicts.extend(stored.cloned());
                continue;
            }
            if let Some(revision) = store.write(write) {
                match &change {
                    Some(_) => store.seen[d].insert(name.clone(), revision),
                    None => store.seen[d].remove(&name),
                };
                store
                    .watch
                    .push((now + store.delay, name, change, revision));
            } else if let Some(written) = change {
                match store.records.get(&name) {
                    Some(stored) if *stored != written => conflicts.push(stored.clone()),
                    _ => {}
                }
            }
        }
        conflicts
    }

    /// Delivers the store's watch events that are due to every running directory.
    fn deliver_watch(&mut self) {
        let now = self.now;
        let Some(store) = &mut self.shared else {
            return;
        };
        let (due, later): (Vec<_>, Vec<_>) = store.watch.drain(..).partition(|(at, ..)| *at <= now);
        store.watch = later;
        for (_, name, change, revision) in due {
            for (i, d) in self.directories.iter_mut().enumerate() {
                if d.down {
                    continue;
                }
                let seen = store.seen[i].get(&name).copied().unwrap_or(0);
                match &change {
                    Some(bytes) => {
                        store.seen[i].insert(name.clone(), seen.max(revision));
                        let record = Record::from_bytes(bytes, wall(now)).unwrap();
                        d.directory.apply(now, record).unwrap();
                    }
                    None => {
                        if seen <= revision {
                            store.seen[i].remove(&name);
                        }
                        d.directory.forget(now, &name);
                    }
                }
            }
        }
        self.signal_caught_up();
    }

    /// The first directory.
    pub fn directory(&self) -> &Directory<'static> {
        &self.directories[0].directory
    }

    /// Adds another directory like the first, at [`nth_directory`]; clients added later
    /// know it too. Returns its index.
    pub fn add_directory(&mut self, capacity: usize) -> usize {
        let i = self.directories.len();
        let mut config = self.config.clone();
        config.address = nth_directory(i);
        let directory = new_directory(config, capacity);
        self.directories.push(DirNode {
            location: nth_directory(i),
            directory,
            down: false,
        });
        i
    }

    /// Adds a client; `interest` makes it a listener. Returns its index.
    pub fn add_client(&mut self, interest: Option<Interest>, table: usize) -> usize {
        self.add_listener(interest, table, Subscribe::Never, false)
    }

    /// Adds a listener on a network that drops multicast: it subscribes to unicast
    /// deliveries instead. Returns its index.
    pub fn add_subscriber(&mut self, interest: Interest, table: usize) -> usize {
        self.add_listener(Some(interest), table, Subscribe::Always, true)
    }

    /// Adds a client that subscribes as `subscribe` says, on a network that carries
    /// multicast to it or (`unicast_only`) not. Returns its index.
    pub fn add_listener(
        &mut self,
        interest: Option<Interest>,
        table: usize,
        subscribe: Subscribe,
        unicast_only: bool,
    ) -> usize {
        let i = self.nodes.len();
        let registrant = self.next_registrant.take().unwrap_or(0x1000 + i as u64);
        let mut config = ClientConfig::new(registrant);
        let n = self.directories.len();
        for k in 0..n {
            let d = &self.directories[(self.next_first_directory + k) % n];
            config.directories.push(d.location).unwrap();
        }
        config.lease = self.client_lease;
        config.keys = self.client_keys.clone();
        config.directory_timeout = CLIENT_DIRECTORY_TIMEOUT;
        let listening = interest.is_some();
        config.interest = interest;
        config.subscribe = subscribe;
        self.push_node(SocketAddr::new(ip(10 + i as u8), 40000), config, table);
        if unicast_only {
            self.unicast_only.insert(self.nodes[i].addr);
        }
        // A subscriber's first delivery is its snapshot.
        if listening && subscribe != Subscribe::Always {
            let now = self.now;
            self.nodes[i].client.request_snapshot(now);
        }
        i
    }

    /// Adds a node at `addr` whose client is made with `config` and a table of `table`
    /// services. Returns its index.
    pub fn push_node(&mut self, addr: SocketAddr, config: ClientConfig, table: usize) -> usize {
        let client = Client::new(config.clone(), leak(None, table), leak(0u32, table)).unwrap();
        self.nodes.push(Node {
            addr,
            client,
            view: View::default(),
            events: Vec::new(),
            crashed: false,
            partitioned: false,
            listening: config.interest.is_some(),
            sent: (Instant::ZERO, 0),
            config,
            table,
        });
        self.nodes.len() - 1
    }

    /// Replaces node `i`'s client by a new one made with the same configuration (the
    /// same registrant id), as a restarted process would: it knows nothing the first
    /// knew but the time (its clock starts where the first's is now, as a `herald`
    /// process's starts from the wall clock, so its requests come after the first's).
    /// Its view of the names is kept: the first's events were reported.
    pub fn restart_client(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let (mut config, table) = (node.config.clone(), node.table);
        config.clock_floor = now.as_micros();
        let client = Client::new(config, leak(None, table), leak(0u32, table)).unwrap();
        let (slots, index) = std::mem::replace(&mut node.client, client).into_storage();
        spare(slots);
        spare(index);
        node.crashed = false;
    }

    /// Puts a datagram on the wire as it is, with no loss.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at: self.now,
            seq: self.seq,
            from,
            to,
            bytes: bytes.to_vec(),
        }));
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if self.capture {
            self.captured.push((from, to, bytes.to_vec()));
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            2
        } else {
            1
        };
        let unicast = self.unicast_only.contains(&from) || self.unicast_only.contains(&to);
        let loss = match self.unicast_loss {
            Some(loss) if unicast => loss,
            _ => self.faults.loss,
        };
        for _ in 0..copies {
            if self.rng.chance(loss) {
                continue;
            }
            let delay = self.rng.below(self.faults.max_delay.as_micros().max(1));
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + Duration::from_micros(delay),
                seq: self.seq,
                from,
                to,
                bytes: bytes.to_vec(),
            }));
        }
    }

    fn count_notifications(&mut self, bytes: &[u8]) {
        if let Ok(frame) = decode(bytes) {
            if let Message::Announce(_, items) = frame.message {
                for change in items {
                    let key = (change.name().to_string(), change.version().0);
                    let counts = match change {
                        Change::Unregistered { .. } => &mut self.notifications,
                        Change::Registered(_) => &mut self.announcements,
                    };
                    *counts.entry(key).or_default() += 1;
                }
            }
        }
    }

    /// Lets every machine send what it wants to send now.
    fn flush(&mut self) {
        let mut buf = [0u8; 1400];
        for d in 0..self.directories.len() {
            if self.directories[d].down {
                continue;
            }
            let from = self.directories[d].location.socket_addr();
            while let Some(t) = self.directories[d]
                .directory
                .poll_transmit(self.now, &mut buf)
            {
                assert!(t.len <= self.config.max_datagram);
                let bytes = buf[..t.len].to_vec();
                if t.destination == group() {
                    if let Some(store) = &mut self.shared {
                        if !matches!(decode(&bytes).map(|f| f.message), Ok(Message::Beacon(_))) {
                            store.announcers.insert(d);
                        }
                    }
                    if d == 0 || self.shared.is_some() {
                        self.count_notifications(&bytes);
                    }
                    for i in 0..self.nodes.len() {
                        let to = self.nodes[i].addr;
                        if self.nodes[i].listening && !self.unicast_only.contains(&to) {
                            self.send(from, to, &bytes);
                        }
                    }
                } else {
                    self.send(from, t.destination, &bytes);
                }
            }
            self.replicate(d);
            self.store_subscribers(d);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].crashed {
                continue;
            }
            while let Some(t) = self.nodes[i].client.poll_transmit(self.now, &mut buf) {
                let from = self.nodes[i].addr;
                let bytes = buf[..t.len].to_vec();
                self.count_sent(i);
                self.send(from, t.destination, &bytes);
            }
            self.drain_events(i);
        }
    }

    /// Takes directory `d`'s subscription events, as its shell stores them.
    fn store_subscribers(&mut self, d: usize) {
        let now = self.now;
        if self.stored_subscribers.len() <= d {
            self.stored_subscribers.resize(d + 1, BTreeMap::new());
        }
        let mut buf = [0u8; MAX_SUBSCRIBER_LEN];
        while let Some(e) = self.directories[d].directory.poll_subscriber_event() {
            match e {
                SubscriberEvent::Stored(s) => {
                    let bytes = s.to_bytes(wall(now), &mut buf).unwrap().to_vec();
                    self.stored_subscribers[d].insert(s.id, bytes);
                }
                SubscriberEvent::Removed(id) => {
                    self.stored_subscribers[d].remove(&id);
                }
            }
        }
    }

    /// Puts the subscriptions directory `d`'s shell stored back into it (at a restart).
    pub fn restore_subscribers(&mut self, d: usize) {
        let now = self.now;
        let stored = self.stored_subscribers.get(d).cloned().unwrap_or_default();
        for bytes in stored.values() {
            let s = Subscriber::from_bytes(bytes, wall(now)).unwrap();
            self.directories[d]
                .directory
                .restore_subscriber(now, s)
                .unwrap();
        }
    }

    pub fn drain_events(&mut self, i: usize) {
        while let Some(e) = self.nodes[i].client.poll_event() {
            if let Ok(trace) = std::env::var("SIM_TRACE") {
                if format!("{e:?}").contains(&trace) {
                    eprintln!("{} node {i}: {e:?}", self.now);
                }
            }
            self.nodes[i].view.apply(&e);
            self.nodes[i].events.push(e);
        }
    }

    fn deliver(&mut self, p: InFlight) {
        if std::env::var_os("SUB_TRACE").is_some()
            && (self.unicast_only.contains(&p.to) || self.unicast_only.contains(&p.from))
        {
            let opened = match &self.client_keys {
                Some(k) => herald_core::auth::open(k, &p.bytes)
                    .map(|(i, _)| i.to_vec())
                    .unwrap_or_default(),
                None => p.bytes.clone(),
            };
            let decoded = if self.client_keys.is_some() {
                herald_core::wire::decode_authenticated(&opened)
            } else {
                herald_core::wire::decode(&opened)
            };
            let text = match decoded {
                Ok(f) => match f.message {
                    Message::ChangesPage(h, items) | Message::DeliveredChanges(_, h, items) => {
                        format!(
                            "changes {h:?} {:?}",
                            items
                                .map(|c| (
                                    c.name().to_string(),
                                    c.version().0,
                                    matches!(c, Change::Unregistered { .. })
                                ))
                                .collect::<Vec<_>>()
                        )
                    }
                    Message::SnapshotPage(h, items) | Message::DeliveredSnapshot(_, h, items) => {
                        format!(
                            "snapshot {h:?} {:?}",
                            items
                                .map(|c| (c.name().to_string(), c.version.0))
                                .collect::<Vec<_>>()
                        )
                    }
                    m => format!("{m:?}").chars().take(200).collect(),
                },
                Err(_) => "auth".into(),
            };
            eprintln!("{} {} -> {}: {text}", self.now, p.from, p.to);
        }
        if let Some(d) = self
            .directories
            .iter_mut()
            .find(|d| d.location.socket_addr() == p.to)
        {
            let sender = self.nodes.iter().find(|n| n.addr == p.from);
            if !d.down && !sender.is_some_and(|n| n.partitioned) {
                d.directory.handle_datagram(self.now, p.from, &p.bytes);
            }
            return;
        }
        if let Some(i) = self.nodes.iter().position(|n| n.addr == p.to) {
            let node = &mut self.nodes[i];
            if node.crashed || node.partitioned {
                return;
            }
            node.client.handle_datagram(self.now, p.from, &p.bytes);
            // Events are taken after every input, as the client asks: a failover at
            // the next timeout must not be reported before what this datagram changed.
            self.drain_events(i);
        }
    }

    /// Counts a datagram node `i` sent; more than [`STORM`] within 100 ms of simulated
    /// time is a storm (a client re-sending at every wake-up), reported at once.
    fn count_sent(&mut self, i: usize) {
        let now = self.now;
        let sent = &mut self.nodes[i].sent;
        if now >= sent.0 + Duration::from_millis(100) {
            *sent = (now, 0);
        }
        sent.1 += 1;
        assert!(
            sent.1 <= STORM,
            "node {i} sent more than {STORM} datagrams within 100 ms (from {})",
            sent.0
        );
    }

    /// Who keeps the simulation from moving on: every party due within a millisecond.
    fn stall_report(&self) -> String {
        let soon = self.now + Duration::from_millis(1);
        let mut due = Vec::new();
        for (i, d) in self.directories.iter().enumerate().filter(|(_, d)| !d.down) {
            if let Some(t) = d.directory.poll_timeout().filter(|t| *t <= soon) {
                due.push(format!("directory {i} at {t}"));
            }
        }
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| !n.crashed) {
            if let Some(t) = n.client.poll_timeout().filter(|t| *t <= soon) {
                due.push(format!("node {i} at {t}"));
            }
        }
        let queued = self.queue.iter().filter(|p| p.0.at <= soon).count();
        format!(
            "simulation stalls at {}: a million steps within a millisecond; due: {}; {queued} datagrams in flight",
            self.now,
            due.join(", ")
        )
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut t = self.queue.peek().map(|Reverse(p)| p.at);
        let mut consider = |d: Option<Instant>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t: Instant| t.min(d)));
            }
        };
        for d in self.directories.iter().filter(|d| !d.down) {
            consider(d.directory.poll_timeout());
        }
        if let Some(store) = &self.shared {
            for (at, ..) in &store.watch {
                consider(Some(*at));
            }
        }
        for n in &self.nodes {
            if !n.crashed {
                consider(n.client.poll_timeout());
            }
        }
        t
    }

    /// Runs the network for `span` of simulated time.
    pub fn run(&mut self, span: Duration) {
        let end = self.now + span;
        let mut steps = 0u64;
        // Steps since simulated time last moved on by a millisecond: a party whose
        // deadline never passes (it asks to be woken at once, again and again) would
        // spin here for ever, as it would burn a real machine's CPU.
        let (mut mark, mut since_mark) = (self.now, 0u64);
        self.flush();
        loop {
            steps += 1;
            assert!(steps < 50_000_000, "simulation does not settle");
            since_mark += 1;
            if self.now >= mark + Duration::from_millis(1) {
                (mark, since_mark) = (self.now, 0);
            }
            assert!(since_mark < 1_000_000, "{}", self.stall_report());
            let next = self.next_deadline().unwrap_or(end).max(self.now);
            if next > end {
                self.now = end;
                break;
            }
            self.now = next;
            while let Some(Reverse(p)) = self.queue.peek() {
                if p.at > self.now {
                    break;
                }
                let Reverse(p) = self.queue.pop().unwrap();
                self.deliver(p);
            }
            self.deliver_watch();
            for d in self.directories.iter_mut().filter(|d| !d.down) {
                d.directory.handle_timeout(self.now);
            }
            for i in 0..self.nodes.len() {
                if !self.nodes[i].crashed {
                    self.nodes[i].client.handle_timeout(self.now);
                    self.drain_events(i);
                }
            }
            self.flush();
        }
    }

    pub fn register(&mut self, node: usize, registration: Registration) {
        let now = self.now;
        self.nodes[node].client.register(now, registration).unwrap();
        self.flush();
    }

    pub fn unregister(&mut self, node: usize, name: &str) {
        let now = self.now;
        let name = ServiceName::new(name).unwrap();
        self.nodes[node].client.unregister(now, &name).unwrap();
        self.flush();
    }

    /// The first directory's live registry as name → service.
    pub fn live(&self) -> BTreeMap<String, Service> {
        self.live_at(0)
    }

    /// Directory `d`'s live registry as name → service.
    pub fn live_at(&self, d: usize) -> BTreeMap<String, Service> {
        self.directories[d]
            .directory
            .records()
            .filter(|r| r.is_live())
            .map(|r| (r.name().to_string(), r.service.clone()))
            .collect()
    }
}

impl SharedStore {
    /// Makes one write (see [`apply_write`]); its revision, `None` when it changed
    /// nothing.
    fn write(&mut self, write: DirectoryWrite) -> Option<u64> {
        let name = match &write {
            DirectoryWrite::Put(name, _) | DirectoryWrite::DeleteDeparted(name) => name.clone(),
        };
        let deletion = matches!(write, DirectoryWrite::DeleteDeparted(_));
        if !apply_write(&mut self.records, write) {
            return None;
        }
        self.revision += 1;
        if deletion {
            self.revisions.remove(&name);
        } else {
            self.revisions.insert(name, self.revision);
        }
        Some(self.revision)
    }
}

/// Makes one write; false when it changed nothing (a deletion of a record that is gone
/// or live again, or a record no newer than the one stored). As the etcd backend's
/// guarded writes do, an older version never replaces a newer one (the writer reads the
/// newer one back), and a write of the same version merges (the later lease expiry,
/// the fewer notifications still owed; in the same state, the higher sequence). Between
/// one registrant's records (not both removals) the higher sequence wins whatever the
/// versions.
fn apply_write(records: &mut BTreeMap<String, Vec<u8>>, write: DirectoryWrite) -> bool {
    match write {
        DirectoryWrite::Put(name, bytes) => {
            let clock = wall(Instant::ZERO);
            let stored = records
                .get(&name)
                .and_then(|old| Record::from_bytes(old, clock).ok());
            let newer = match (stored, Record::from_bytes(&bytes, clock)) {
                (Some(old), Ok(new)) => match (old.state, new.state) {
                    // Between one registrant's records the later request wins (both
                    // removals: the version), as the directory's `apply` has it.
                    (RecordState::Live { .. }, _) | (_, RecordState::Live { .. })
                        if new.registrant == old.registrant && new.sequence != old.sequence =>
                    {
                        new.sequence > old.sequence
                    }
                    _ if new.service.version != old.service.version => {
                        new.service.version > old.service.version
                    }
                    (RecordState::Live { expires: a }, RecordState::Live { expires: b }) => {
                        b > a || (b == a && new.sequence > old.sequence)
                    }
                    (
                        RecordState::Departed { remaining: a },
                        RecordState::Departed { remaining: b },
                    ) => b < a || (b == a && new.sequence > old.sequence),
                    _ => true,
                },
                _ => true,
            };
            if newer {
                records.insert(name, bytes);
            }
            newer
        }
        DirectoryWrite::DeleteDeparted(name) => {
            let departed = records.get(&name).is_some_and(|bytes| {
                Record::from_bytes(bytes, wall(Instant::ZERO)).is_ok_and(|r| !r.is_live())
            });
            if departed {
                records.remove(&name);
            }
            departed
        }
    }
}
