//! The etcd backend of `herald serve --store etcd://…`: several directories share one
//! registry in etcd and elect one publisher per group.
//!
//! Every directory answers requests and writes what they change to etcd; every
//! directory watches etcd and [applies](Directory::apply) what the others wrote, so each
//! holds the whole registry and answers `list`, snapshots and renewals alike. Only the
//! elected publisher ([`election`]) announces, repeats, counts notifications, sweeps and
//! expires leases; the others are replicas.
//!
//! * **Writes.** A change (a [`DirectoryEvent::Stored`]) and a lease renewal (a
//!   [`DirectoryEvent::Renewed`] of a live record) are in etcd before the directory
//!   sends anything else, so an acknowledgement never leaves before what it confirms is
//!   stored: the publisher, which expires leases, may be another directory, and a
//!   registrant whose directory dies right after answering finds its lease where the
//!   answer left it. The publisher's notification counts (a `Renewed` departed record)
//!   go out within [`LAZY_WRITES_AFTER`]: losing some in a crash only repeats a few
//!   notifications.
//!   A removal ([`DirectoryEvent::Removed`], the publisher's, once every notification is
//!   sent) deletes the key only if it still holds that departed record (or an older
//!   one), so a registration made in between is never deleted. Every write is guarded by
//!   the key's revision as last seen: on a conflict the directory reads the key, applies
//!   it, and writes again only what is newer than what etcd holds.
//! * **Outages.** When etcd does not answer, the directory keeps serving from memory:
//!   it answers and acknowledges requests (a registration is soft state, renewed by its
//!   registrant: at worst a lease extension is lost), queues its writes (the latest per
//!   name) and tries again with a back-off. No directory expires leases meanwhile (it
//!   cannot see renewals made through the others), and a publisher keeps publishing.
//!   Once etcd answers, the directory reads everything again, applies it, drops the
//!   records etcd no longer holds (removed while it was not watching), writes what it
//!   queued, watches again from where it read, and expires again a few seconds later
//!   (the others' queued renewals arrive meanwhile).
//! * **Takeover.** A directory elected publisher reads the whole registry before it
//!   publishes ([`Directory::caught_up`] once the first read started after the election
//!   is applied): its watch may still be behind what its predecessor wrote and
//!   announced, and it must not announce an older state.
//! * **Members.** With several etcd endpoints, requests go only to the members that
//!   answer ([`endpoints`]): one member down costs nothing but the request that found
//!   it down, which is tried again on another member.
//! * **Subscribers.** The unicast subscriber table is shared the same way
//!   ([`subscriptions`]): every directory holds every subscription, only the publisher
//!   delivers, and a new publisher continues from the stored cursors.

mod deletions;
pub mod election;
pub mod endpoints;
pub mod store;
pub mod subscriptions;

use crate::clock::Clock;
use crate::config::EtcdSettings;
use deletions::Deletions;
use election::{Election, ElectionEvent};
use endpoints::Endpoints;
use etcd_client::{Client, ConnectOptions, KvClient};
use herald_core::registry::{WallClock, MAX_RECORD_LEN};
use herald_core::{Directory, DirectoryEvent, Record, RecordState, Version};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use store::{Change, Entry, EtcdError, Keys, Put, Snapshot, WatchMessage, Watcher};
use subscriptions::Subscriptions;
use tokio::sync::oneshot;

/// Notification counts are written at most this late.
pub const LAZY_WRITES_AFTER: Duration = Duration::from_millis(200);
/// First wait before trying etcd again after it failed; it doubles up to
/// [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest wait between two tries while etcd is unreachable.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// After an outage, expiry resumes this much later than etcd answers again: every
/// directory tries etcd at least every [`RETRY_MAX`] and then writes the renewals it
/// queued, and a publisher that expired leases at once would expire services whose
/// renewals are still on their way from another directory (and announce them
/// unregistered, then discovered again).
const EXPIRY_GRACE: Duration = Duration::from_millis(
    RETRY_MAX.as_millis() as u64 + 2 * LAZY_WRITES_AFTER.as_millis() as u64 + 1_000,
);
/// How long start-up keeps trying to read the registry before giving up.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of a write whose keys keep changing under it, before it waits for the next
/// flush.
const WRITE_TRIES: usize = 3;
/// At most one "registry full" error per this period in the log.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Which of the queued writes to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writes {
    /// Before an acknowledgement leaves: every queued record (one transaction per
    /// [`store::MAX_TXN_KEYS`]); deletions of finished removals wait for the lazy
    /// write, so that they never delay an answer.
    Urgent,
    /// Everything queued.
    All,
}

/// A write waiting to go to etcd: the latest change of one name.
#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    /// Write the directory's current record of the name.
    put: bool,
    /// The record was removed: delete the key if it holds a departed record, or a
    /// record no newer than `version`.
    delete: bool,
    /// The version of the record when it was queued (0 when only a removal is known).
    version: Version,
    /// Must be in etcd before the next send.
    durable: bool,
}

/// What etcd holds for a name, as last seen.
#[derive(Clone, Copy, Debug)]
struct Known {
    mod_revision: i64,
    /// The record at that revision is departed (a removal whose key may go once its
    /// notifications are sent).
    departed: bool,
}

/// Since when etcd has not answered, and when to try again.
#[derive(Clone, Copy, Debug)]
struct Outage {
    since: Instant,
    next_try: Instant,
    tries: u32,
}

/// Counters for the metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClusterStats {
    /// Times etcd became unreachable.
    pub outages: u64,
    /// Times this directory started or stopped publishing.
    pub publisher_changes: u64,
    /// Write transactions committed.
    pub writes: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// Something the etcd side has for the serve loop.
#[derive(Debug)]
pub enum Input {
    /// From the watch of the records.
    Watch(WatchMessage),
    /// From the election.
    Election(ElectionEvent),
    /// The registry, read again in the background (after an outage, or when the watch
    /// stopped).
    Loaded(Result<Snapshot, EtcdError>),
}

/// What was read from etcd at start-up.
#[derive(Debug)]
pub struct Loaded {
    snapshot: Snapshot,
    /// The newest version of any record read.
    pub as_of: Version,
}

/// Why the etcd backend could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the etcd store {url}: {detail}")]
pub struct StartError {
    /// The store.
    pub url: String,
    /// What failed.
    pub detail: String,
}

/// The etcd side of a directory: the connection, the write queue, the watch and the
/// election.
pub struct Cluster {
    client: Client,
    kv: KvClient,
    /// Which members requests go to.
    endpoints: Endpoints,
    keys: Keys,
    url: String,
    prefix: String,
    group: String,
    /// The advertised address: the publisher key's value.
    advertise: String,
    lease_secs: u64,
    queue: BTreeMap<String, Pending>,
    known: HashMap<String, Known>,
    /// While a read of the registry is in flight: the records deleted since it started,
    /// by the revision of their deletion. A read older than a deletion does not bring
    /// its record back (see [`resync`](Self::resync)).
    deleted_while_reading: Deletions<String>,
    /// The subscriber table's writes and revisions.
    subscriptions: Subscriptions,
    watcher: Option<Watcher>,
    election: Option<Election>,
    outage: Option<Outage>,
    /// When queued lazy writes must go out.
    lazy_due: Option<Instant>,
    /// The registry being read again, in the background.
    loading: Option<oneshot::Receiver<Result<Snapshot, EtcdError>>>,
    /// Reads of the registry started so far (the one in `loading` is the last).
    loads_started: u64,
    /// While this directory, newly elected, catches up with etcd: the number of the
    /// first read started after the election (taken, it holds every record written
    /// before; see [`Directory::caught_up`]).
    catch_up_read: Option<u64>,
    /// When this directory was last elected.
    elected_at: Option<Instant>,
    /// When expiry resumes after an outage ([`EXPIRY_GRACE`]).
    expiry_held_until: Option<Instant>,
    full_logged: Option<Instant>,
    /// Counters for the metrics.
    pub stats: ClusterStats,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .field("services", &self.keys.services())
            .field("queued", &self.queue.len())
            .field("reachable", &self.outage.is_none())
            .finish()
    }
}

fn decode(entry: &Entry, wall: WallClock) -> Result<Record, String> {
    let record = Record::from_bytes(&entry.value, wall).map_err(|e| e.to_string())?;
    if record.name().as_str() != entry.name {
        return Err(format!("the record holds {:?}", record.name().as_str()));
    }
    Ok(record)
}

fn encode(record: &Record, wall: WallClock) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_RECORD_LEN];
    record.to_bytes(wall, &mut buf).map(<[u8]>::to_vec)
}

impl Cluster {
    /// Connects to etcd (lazily: nothing is sent yet) for the directory of
    /// `environment` on `group` that clients reach at `advertise`.
    pub async fn connect(
        settings: &EtcdSettings,
        environment: &str,
        group: std::net::SocketAddr,
        advertise: std::net::SocketAddr,
    ) -> Result<Cluster, StartError> {
        let url = settings.url();
        let endpoints: Vec<String> = settings
            .endpoints
            .iter()
            .map(|e| format!("http://{e}"))
            .collect();
        // HTTP/2 pings find a silent server; etcd refuses pings more often than every
        // 5 s by default.
        let options = ConnectOptions::new()
            .with_connect_timeout(store::OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_require_leader(true);
        let failed = |e: etcd_client::Error| StartError {
            url: url.clone(),
            detail: e.to_string(),
        };
        let client = Client::connect(&endpoints, Some(options.clone()))
            .await
            .map_err(failed)?;
        let keys = Keys::new(&settings.prefix, environment, group);
        let endpoints = Endpoints::start(&client, &endpoints, &options, keys.publisher())
            .await
            .map_err(failed)?;
        Ok(Cluster {
            kv: client.kv_client(),
            client,
            endpoints,
            keys,
            url,
            prefix: settings.prefix.clone(),
            group: group.to_string(),
            advertise: advertise.to_string(),
            lease_secs: settings.publisher_lease_secs,
            queue: BTreeMap::new(),
            known: HashMap::new(),
            deleted_while_reading: Deletions::default(),
            subscriptions: Subscriptions::default(),
            watcher: None,
            election: None,
            outage: None,
            lazy_due: None,
            loading: None,
            loads_started: 0,
            catch_up_read: None,
            elected_at: None,
            expiry_held_until: None,
            full_logged: None,
            stats: ClusterStats::default(),
        })
    }

    /// Reads the registry, trying for a while if etcd does not answer yet.
    pub async fn load(&mut self, wall: WallClock) -> Result<Loaded, StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut wait = RETRY_MIN;
        let snapshot = loop {
            match store::load(&mut self.kv, &self.keys).await {
                Ok(snapshot) => break snapshot,
                Err(e) if Instant::now() + wait < deadline => {
                    tracing::debug!(error = %e, "etcd: cannot read the registry yet");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MAX);
                }
                Err(e) => {
                    return Err(StartError {
                        url: self.url.clone(),
                        detail: format!("no answer within {START_TIMEOUT:?}: {e}"),
                    })
                }
            }
        };
        let as_of = snapshot
            .entries
            .iter()
            .filter_map(|e| decode(e, wall).ok())
            .map(|r| r.service.version)
            .max()
            .unwrap_or_default();
        Ok(Loaded { snapshot, as_of })
    }

    /// Takes the registry read by [`load`](Self::load) as a replica, then watches
    /// every later change and campaigns for the publisher key. Fails when the registry
    /// does not fit the directory.
    pub fn start(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        loaded: Loaded,
    ) -> Result<usize, herald_core::RegistryError> {
        directory.set_publishing(clock.now(), false);
        for entry in &loaded.snapshot.entries {
            self.apply_entry(directory, clock, entry, true)?;
        }
        for entry in &loaded.snapshot.subscribers {
            self.subscriptions.apply(directory, clock, entry);
        }
        self.watcher = Some(Watcher::start(
            self.client.watch_client(),
            &self.keys,
            loaded.snapshot.revision + 1,
        ));
        self.election = Some(Election::start(
            self.client.clone(),
            self.endpoints.clone(),
            self.keys.publisher().to_owned(),
            self.advertise.clone(),
            self.lease_secs,
        ));
        Ok(directory.len())
    }

    /// The store, as configured (`etcd://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix, as configured (`--etcd-prefix`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// True while etcd answers.
    pub fn is_reachable(&self) -> bool {
        self.outage.is_none()
    }

    /// Writes waiting to go to etcd.
    pub fn queued(&self) -> usize {
        self.queue.len() + self.subscriptions.queued()
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.outage {
            // A read in flight reports through `input`.
            Some(_) if self.loading.is_some() => None,
            Some(outage) => Some(outage.next_try),
            None => [self.lazy_due, self.expiry_held_until]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    /// The next input from the watch or the election (cancel-safe).
    pub async fn input(&mut self) -> Input {
        let watch = async {
            match self.watcher.as_mut() {
                Some(w) => w.recv().await,
                None => std::future::pending().await,
            }
        };
        let election = async {
            match self.election.as_mut() {
                Some(e) => e.recv().await,
                None => std::future::pending().await,
            }
        };
        let loaded = async {
            match self.loading.as_mut() {
                Some(rx) => rx
                    .await
                    .unwrap_or(Err(EtcdError::Protocol("the read was abandoned"))),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = watch => Input::Watch(message),
            event = election => Input::Election(event),
            snapshot = loaded => Input::Loaded(snapshot),
        }
    }

    /// Starts reading the whole registry in the background (one read at a time): the
    /// serve loop keeps serving meanwhile, however long etcd takes to answer.
    fn start_load(&mut self) {
        if self.loading.is_some() {
            return;
        }
        self.deleted_while_reading.read_started();
        self.subscriptions.read_started();
        self.loads_started += 1;
        let (tx, rx) = oneshot::channel();
        let mut kv = self.kv.clone();
        let keys = self.keys.clone();
        let endpoints = self.endpoints.clone();
        tokio::spawn(async move {
            let mut loaded = store::load(&mut kv, &keys).await;
            if let Err(e) = &loaded {
                if endpoints.retry_after(e).await {
                    tracing::debug!(error = %e, "etcd: a member failed a read; trying another");
                    loaded = store::load(&mut kv, &keys).await;
                }
            }
            let _ = tx.send(loaded);
        });
        self.loading = Some(rx);
    }

    /// Takes an input into the directory.
    pub async fn handle(&mut self, input: Input, directory: &mut Directory<'_>, clock: &Clock) {
        match input {
            Input::Watch(WatchMessage::Changes(changes)) => {
                for change in changes {
                    self.take_change(directory, clock, change);
                }
            }
            Input::Watch(WatchMessage::Failed(why)) => {
                self.watcher = None;
                // Perhaps its member is down.
                self.endpoints.suspect();
                if self.outage.is_none() {
                    tracing::debug!(reason = %why, "etcd: the watch stopped; reading again");
                    self.start_load();
                }
            }
            Input::Loaded(result) => {
                self.loading = None;
                if result.is_err() {
                    self.deleted_while_reading.read_ended();
                    self.subscriptions.read_ended();
                }
                let queued = self.queue.len();
                match result {
                    Ok(snapshot) => match self.resync(directory, clock, snapshot).await {
                        Ok(written) => {
                            self.recovered(queued, written);
                            self.caught_up(directory, clock);
                        }
                        Err(e) => self.enter_outage(directory, clock, &e),
                    },
                    Err(e) => self.enter_outage(directory, clock, &e),
                }
            }
            Input::Election(ElectionEvent::Elected) => {
                if !directory.is_publishing() {
                    directory.set_publishing(clock.now(), true);
                    self.stats.publisher_changes += 1;
                    self.catch_up();
                }
                tracing::info!("publishing for group {}", self.group);
            }
            Input::Election(ElectionEvent::Deposed(why)) => {
                if directory.is_publishing() {
                    directory.set_publishing(clock.now(), false);
                    self.catch_up_read = None;
                    self.stats.publisher_changes += 1;
                    tracing::info!(reason = %why, "stopped publishing for group {}", self.group);
                }
            }
            Input::Election(ElectionEvent::Publisher(holder)) => {
                tracing::info!("replica: {holder} publishes for group {}", self.group);
            }
        }
    }

    /// Newly elected: reads the whole registry, so that the directory holds every
    /// record written before the election (changes reach it through the watch only
    /// as fast as etcd sends them) before it publishes anything. While etcd does not
    /// answer, the reads that retry it serve; the directory itself stops waiting after
    /// its replication bound.
    fn catch_up(&mut self) {
        self.catch_up_read = Some(self.loads_started + 1);
        self.elected_at = Some(Instant::now());
        if self.outage.is_none() {
            // A read already in flight may have started before the election: the
            // next one is started when it is taken.
            self.start_load();
        }
    }

    /// A read of the registry was taken: if it is the first started after the
    /// election, the directory has caught up; if an older read was in flight, the
    /// catch-up read starts now.
    fn caught_up(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        let Some(needed) = self.catch_up_read else {
            return;
        };
        if self.loads_started >= needed {
            self.catch_up_read = None;
            directory.caught_up(clock.now());
            let after = self
                .elected_at
                .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3);
            tracing::info!("publishing: caught up with etcd {after:.1} ms after the election");
        } else {
            self.start_load();
        }
    }

    fn take_change(&mut self, directory: &mut Directory<'_>, clock: &Clock, change: Change) {
        match change {
            Change::Put(entry) => {
                if self.is_known(&entry.name, entry.mod_revision) {
                    return;
                }
                // A record that does not fit is logged; the others still apply.
                let _ = self.apply_entry(directory, clock, &entry, false);
            }
            Change::Delete { name, mod_revision } => {
                if self.is_known(&name, mod_revision) {
                    return;
                }
                self.known.remove(&name);
                self.deleted(&name, mod_revision);
                directory.forget(clock.now(), &name);
            }
            Change::PutSubscriber(entry) => self.subscriptions.written(directory, clock, &entry),
            Change::DeleteSubscriber { id, mod_revision } => {
                self.subscriptions
                    .deleted(directory, clock, id, mod_revision)
            }
        }
    }

    /// `name`'s key was deleted at `revision`: remembered while a read is in flight.
    fn deleted(&mut self, name: &str, revision: i64) {
        self.deleted_while_reading.deleted(name, revision);
    }

    /// True when `name` changed in etcd after `revision` as this directory knows: it
    /// wrote or saw a newer record there, or saw the key deleted since.
    fn changed_after(&self, name: &str, revision: i64) -> bool {
        self.known
            .get(name)
            .is_some_and(|k| k.mod_revision > revision)
            || self.deleted_while_reading.after(name, revision)
    }

    /// True when a change at `mod_revision` of `name` is already known.
    fn is_known(&self, name: &str, mod_revision: i64) -> bool {
        self.known
            .get(name)
            .is_some_and(|k| k.mod_revision >= mod_revision)
    }

    /// Applies one record read from etcd. A corrupt record is logged and skipped; a
    /// record that does not fit is logged (rate-limited) and reported.
    fn apply_entry(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        entry: &Entry,
        starting: bool,
    ) -> Result<(), herald_core::RegistryError> {
        match self.decode_entry(entry, clock.wall()) {
            Some(record) => self.apply_record(directory, clock, record, starting),
            None => Ok(()),
        }
    }

    /// Decodes a record read from etcd, and remembers the key's revision; a corrupt
    /// record is logged and `None`.
    fn decode_entry(&mut self, entry: &Entry, wall: WallClock) -> Option<Record> {
        let decoded = decode(entry, wall);
        self.known.insert(
            entry.name.clone(),
            Known {
                mod_revision: entry.mod_revision,
                departed: decoded.as_ref().is_ok_and(|r| !r.is_live()),
            },
        );
        match decoded {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::warn!(key = %self.keys.service(&entry.name), error = %e, "etcd: skipped a corrupt record");
                None
            }
        }
    }

    /// Applies a record read from etcd; a record that does not fit is logged
    /// (rate-limited, except at start-up, which fails) and reported.
    fn apply_record(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        record: Record,
        starting: bool,
    ) -> Result<(), herald_core::RegistryError> {
        let name = record.name().clone();
        let result = directory.apply(clock.now(), record);
        if result.is_err() && !starting {
            let now = Instant::now();
            if self
                .full_logged
                .is_none_or(|t| now.duration_since(t) >= FULL_LOG_EVERY)
            {
                self.full_logged = Some(now);
                tracing::error!(%name, "the registry is full: a record from etcd was not taken; raise --capacity");
            }
        }
        result
    }

    /// Queues this wake-up's storage events, and writes them when they must be in etcd
    /// before the next send (or their time has come).
    pub async fn persist(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        let mut durable = false;
        while let Some(event) = directory.poll_event() {
            match event {
                DirectoryEvent::Stored(record) | DirectoryEvent::Renewed(record) => {
                    // A lease extension is in etcd before its acknowledgement too: the
                    // publisher that expires leases may be another directory, and a
                    // registrant whose directory dies right after answering must find
                    // its lease where that answer left it. Only notification counts
                    // (departed records) are written lazily.
                    let stored = matches!(event, DirectoryEvent::Stored(_)) || record.is_live();
                    let p = self
                        .queue
                        .entry(record.name().as_str().to_owned())
                        .or_default();
                    p.put = true;
                    p.delete = false;
                    p.version = record.service.version;
                    p.durable |= stored;
                    durable |= stored;
                }
                DirectoryEvent::Removed(name) => {
                    let p = self.queue.entry(name.as_str().to_owned()).or_default();
                    p.put = false;
                    p.delete = true;
                }
            }
            self.lazy_due
                .get_or_insert_with(|| Instant::now() + LAZY_WRITES_AFTER);
        }
        // Subscriptions are written lazily: one lost in a crash is taken again at its
        // next renewal, and a lost cursor only repeats what the listener takes once.
        if self.subscriptions.take(directory) {
            self.lazy_due
                .get_or_insert_with(|| Instant::now() + LAZY_WRITES_AFTER);
        }
        if durable && self.outage.is_none() {
            self.write(directory, clock, Writes::Urgent).await;
        }
    }

    /// Does what is due: queued lazy writes, or another try while etcd is unreachable.
    pub async fn tick(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        let now = Instant::now();
        match self.outage {
            Some(outage) if outage.next_try <= now => self.start_load(),
            Some(_) => {}
            None => {
                if self.expiry_held_until.is_some_and(|t| t <= now) {
                    self.expiry_held_until = None;
                    directory.set_expiring(clock.now(), true);
                    tracing::debug!("etcd: lease expiry resumes");
                }
                if self.lazy_due.is_some_and(|t| t <= now) {
                    self.write(directory, clock, Writes::All).await;
                }
            }
        }
    }

    /// Writes the queue (`Urgent`: its records, not its deletions); on failure, etcd is
    /// unreachable.
    async fn write(&mut self, directory: &mut Directory<'_>, clock: &Clock, writes: Writes) {
        match self.flush_retrying(directory, clock, writes).await {
            Ok(_) => {
                self.lazy_due = (self.queued() > 0).then(|| Instant::now() + LAZY_WRITES_AFTER);
            }
            Err(e) => self.enter_outage(directory, clock, &e),
        }
    }

    fn enter_outage(&mut self, directory: &mut Directory<'_>, clock: &Clock, error: &EtcdError) {
        self.stats.errors += 1;
        let now = Instant::now();
        match self.outage.as_mut() {
            Some(outage) => {
                outage.tries += 1;
                let wait = RETRY_MIN * (1u32 << outage.tries.min(5));
                outage.next_try = now + wait.min(RETRY_MAX);
                tracing::debug!(error = %error, queued = self.queue.len(), "etcd still unreachable");
            }
            None => {
                self.outage = Some(Outage {
                    since: now,
                    next_try: now + RETRY_MIN,
                    tries: 0,
                });
                self.stats.outages += 1;
                self.watcher = None;
                self.expiry_held_until = None;
                directory.set_expiring(clock.now(), false);
                tracing::warn!(
                    store = %self.url,
                    error = %error,
                    queued = self.queue.len(),
                    "etcd unreachable: serving from memory; {} changes queued",
                    self.queue.len()
                );
            }
        }
    }

    /// etcd answered again and the registry was read and taken: after an outage, say so,
    /// resume expiry after [`EXPIRY_GRACE`] and have the election check the publisher
    /// key.
    fn recovered(&mut self, queued: usize, written: usize) {
        let Some(outage) = self.outage.take() else {
            return;
        };
        // Expiry resumes once the other directories had time to write what they queued.
        self.expiry_held_until = Some(Instant::now() + EXPIRY_GRACE);
        if let Some(election) = &self.election {
            election.check();
        }
        let after = outage.since.elapsed().as_secs_f64();
        tracing::info!(
            store = %self.url,
            queued,
            written,
            "etcd reachable again after {after:.1} s; {written} queued changes written"
        );
    }

    /// Takes the registry read again (after an outage, or when the watch stopped, or
    /// after an election): applies it, drops the records etcd no longer holds, writes
    /// the queue, and watches again from where it read.
    ///
    /// The read may be older than what this directory wrote or saw while it was in
    /// flight (its own registrations go on being written meanwhile): a key changed
    /// after the read is neither taken from it nor dropped for its absence. The watch,
    /// from the read's revision on, brings every change after it again.
    async fn resync(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        snapshot: Snapshot,
    ) -> Result<usize, EtcdError> {
        self.watcher = None;
        let read_at = snapshot.revision;
        self.known.retain(|_, k| k.mod_revision > read_at);
        let mut present = HashSet::with_capacity(snapshot.entries.len());
        for entry in &snapshot.entries {
            present.insert(entry.name.as_str());
            if !self.changed_after(&entry.name, read_at) {
                let _ = self.apply_entry(directory, clock, entry, false);
            }
        }
        // Records etcd no longer holds (and that are not queued here, nor written
        // after the read) were removed while this directory was not watching: a
        // departed one was reaped by the publisher, a live one was unregistered or
        // expired and then reaped.
        let gone: Vec<String> = directory
            .records()
            .map(|r| r.name().as_str())
            .filter(|n| {
                !present.contains(n)
                    && !self.queue.contains_key(*n)
                    && !self.changed_after(n, read_at)
            })
            .map(str::to_owned)
            .collect();
        self.deleted_while_reading.read_ended();
        for name in &gone {
            directory.discard(clock.now(), name);
        }
        self.subscriptions
            .reload(directory, clock, &snapshot.subscribers, read_at);
        if !gone.is_empty() {
            tracing::info!(
                dropped = gone.len(),
                "etcd: dropped {} records removed while this directory was not watching",
                gone.len()
            );
        }
        let written = self.flush_retrying(directory, clock, Writes::All).await?;
        self.watcher = Some(Watcher::start(
            self.client.watch_client(),
            &self.keys,
            snapshot.revision + 1,
        ));
        self.lazy_due = (self.queued() > 0).then(|| Instant::now() + LAZY_WRITES_AFTER);
        Ok(written)
    }

    /// [`flush`](Self::flush), tried once more when it failed on a member that is
    /// unavailable while others answer.
    async fn flush_retrying(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        writes: Writes,
    ) -> Result<usize, EtcdError> {
        match self.flush(directory, clock, writes).await {
            Err(e) if self.endpoints.retry_after(&e).await => {
                tracing::debug!(error = %e, "etcd: a member failed a write; trying another");
                self.flush(directory, clock, writes).await
            }
            result => result,
        }
    }

    /// Writes every queued change; returns how many were written. Changes whose keys
    /// keep changing under them stay queued for the next flush.
    async fn flush(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        writes: Writes,
    ) -> Result<usize, EtcdError> {
        let mut written = 0;
        let puts: Vec<String> = self
            .queue
            .iter()
            .filter(|(_, p)| p.put)
            .map(|(n, _)| n.clone())
            .collect();
        for chunk in puts.chunks(store::MAX_TXN_KEYS) {
            written += self.put_chunk(directory, clock, chunk).await?;
        }
        if writes == Writes::Urgent {
            return Ok(written);
        }
        let deletes: Vec<(String, Version)> = self
            .queue
            .iter()
            .filter(|(_, p)| p.delete)
            .map(|(n, p)| (n.clone(), p.version))
            .collect();
        written += self.delete_known(directory, &deletes).await?;
        for (name, version) in deletes {
            if self.queue.get(&name).is_some_and(|p| p.delete)
                && self.delete(directory, clock, &name, version).await?
            {
                written += 1;
            }
        }
        let (txns, subscribers) = self
            .subscriptions
            .flush(&mut self.kv, &self.keys, directory, clock)
            .await?;
        self.stats.writes += txns;
        Ok(written + subscribers)
    }

    /// Deletes, one transaction per [`store::MAX_TXN_KEYS`], the finished removals whose
    /// keys still hold the departed record this directory last saw there (the common
    /// case: the publisher's own last write); a transaction whose keys changed deletes
    /// nothing and leaves them to [`delete`](Self::delete), one by one.
    async fn delete_known(
        &mut self,
        directory: &Directory<'_>,
        deletes: &[(String, Version)],
    ) -> Result<usize, EtcdError> {
        let known: Vec<(String, i64)> = deletes
            .iter()
            .filter(|(name, _)| directory.record(name).is_none())
            .filter_map(|(name, _)| {
                let k = self.known.get(name).filter(|k| k.departed)?;
                Some((name.clone(), k.mod_revision))
            })
            .collect();
        let mut written = 0;
        for chunk in known.chunks(store::MAX_TXN_KEYS) {
            if let Some(revision) = store::delete_all_if(&mut self.kv, &self.keys, chunk).await? {
                self.stats.writes += 1;
                for (name, _) in chunk {
                    self.known.remove(name);
                    self.queue.remove(name);
                    self.deleted(name, revision);
                }
                written += chunk.len();
            }
        }
        Ok(written)
    }

    /// Writes the directory's records of `names` in one transaction, guarded by what
    /// etcd held as last seen; on a conflict, reads those keys, applies them, and tries
    /// again with what is still newer here.
    async fn put_chunk(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        names: &[String],
    ) -> Result<usize, EtcdError> {
        let mut names: Vec<String> = names.to_vec();
        for _ in 0..WRITE_TRIES {
            let wall = clock.wall();
            let mut puts = Vec::with_capacity(names.len());
            let mut departed = Vec::with_capacity(names.len());
            for name in &names {
                let record = directory.record(name);
                let Some(value) = record.and_then(|r| encode(r, wall)) else {
                    // Nothing left to write (it cannot be encoded, or is gone).
                    self.queue.remove(name);
                    continue;
                };
                departed.push(record.is_some_and(|r| !r.is_live()));
                puts.push(Put {
                    name: name.clone(),
                    value,
                    expect: self.known.get(name).map_or(0, |k| k.mod_revision),
                });
            }
            if puts.is_empty() {
                return Ok(0);
            }
            match store::put_all(&mut self.kv, &self.keys, &puts).await? {
                Some(revision) => {
                    self.stats.writes += 1;
                    for (put, departed) in puts.iter().zip(departed) {
                        self.known.insert(
                            put.name.clone(),
                            Known {
                                mod_revision: revision,
                                departed,
                            },
                        );
                        self.queue.remove(&put.name);
                    }
                    return Ok(puts.len());
                }
                None => {
                    names.clear();
                    for put in &puts {
                        if self.reconcile(directory, clock, &put.name).await? {
                            names.push(put.name.clone());
                        } else {
                            self.queue.remove(&put.name);
                        }
                    }
                }
            }
        }
        tracing::debug!(
            names = names.len(),
            "etcd: records keep changing under a write; trying again later"
        );
        Ok(0)
    }

    /// After a conflict: reads `name`'s key, applies what it holds, and tells whether
    /// this directory's record is still worth writing (it differs from etcd's).
    async fn reconcile(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        name: &str,
    ) -> Result<bool, EtcdError> {
        match store::get(&mut self.kv, &self.keys, name).await? {
            None => {
                self.known.remove(name);
                Ok(true)
            }
            Some(entry) => {
                let theirs = self.decode_entry(&entry, clock.wall());
                if let Some(record) = &theirs {
                    let _ = self.apply_record(directory, clock, record.clone(), false);
                }
                Ok(directory.record(name) != theirs.as_ref())
            }
        }
    }

    /// Deletes `name`'s key if it holds a departed record or one no newer than
    /// `version`; true when a key was deleted. A key that cannot be read is left alone.
    async fn delete(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        name: &str,
        version: Version,
    ) -> Result<bool, EtcdError> {
        if directory.record(name).is_some() {
            // Registered again since: that record is written instead.
            self.queue.remove(name);
            return Ok(false);
        }
        for _ in 0..WRITE_TRIES {
            let Some(entry) = store::get(&mut self.kv, &self.keys, name).await? else {
                self.known.remove(name);
                self.queue.remove(name);
                return Ok(false);
            };
            let removable = match decode(&entry, clock.wall()) {
                Ok(r) => {
                    matches!(r.state, RecordState::Departed { .. }) || r.service.version <= version
                }
                Err(_) => false,
            };
            if !removable {
                self.queue.remove(name);
                return Ok(false);
            }
            let deleted = store::delete_if(&mut self.kv, &self.keys, name, entry.mod_revision);
            if let Some(revision) = deleted.await? {
                self.stats.writes += 1;
                self.known.remove(name);
                self.queue.remove(name);
                self.deleted(name, revision);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// At shutdown: writes what is queued (if etcd answers), resigns as publisher so
    /// that another directory takes over at once, and stops publishing (the shell then
    /// sends the beacon that says so).
    pub async fn close(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        self.persist(directory, clock).await;
        if self.outage.is_none() && self.queued() > 0 {
            if let Err(e) = self.flush(directory, clock, Writes::All).await {
                tracing::warn!(error = %e, queued = self.queue.len(), "etcd: queued changes not written at shutdown");
            }
        }
        self.watcher = None;
        if let Some(election) = self.election.take() {
            if election.resign().await {
                tracing::info!("publisher lease revoked: another directory takes over");
            }
        }
        // Its last beacon says it no longer publishes: listeners move to the new
        // publisher as soon as they hear it, instead of waiting for silence.
        directory.set_publishing(clock.now(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{
        DirectoryConfig, Instant as CoreInstant, Location, Registration, Service, ServiceName, Slot,
    };
    use std::process::{Child, Command, Stdio};

    fn wall() -> WallClock {
        WallClock {
            now: CoreInstant::from_millis(1_000),
            unix_ms: 1_700_000_000_000,
        }
    }

    fn entry(name: &str, value: Vec<u8>) -> Entry {
        Entry {
            name: name.to_owned(),
            value,
            mod_revision: 7,
        }
    }

    fn record(name: &str, version: u64, state: RecordState) -> Record {
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        Record {
            service: Service {
                registration: Registration::new(
                    ServiceName::new(name).unwrap(),
                    &[Location::new(ip, 8080).unwrap()],
                )
                .unwrap(),
                version: Version(version),
            },
            registrant: 9,
            sequence: 0,
            state,
            ended: Version(0),
            counted_from: Version(0),
        }
    }

    fn live(expires_ms: u64) -> RecordState {
        RecordState::Live {
            expires: CoreInstant::from_millis(expires_ms),
        }
    }

    #[test]
    fn records_decode_only_under_their_own_name() {
        let record = record("billing", 42, live(16_000));
        let bytes = encode(&record, wall()).unwrap();
        assert_eq!(decode(&entry("billing", bytes.clone()), wall()), Ok(record));
        let err = decode(&entry("other", bytes), wall()).unwrap_err();
        assert!(err.contains("billing"), "{err}");
        for garbage in [vec![], vec![0xff; 3], vec![0x01, 0x80], vec![0; 400]] {
            assert!(decode(&entry("billing", garbage), wall()).is_err());
        }
    }

    /// A real etcd on loopback ports in a temporary directory, killed on drop.
    struct TestEtcd {
        child: Child,
        _data: tempfile::TempDir,
        port: u16,
    }

    impl TestEtcd {
        /// Starts etcd on free loopback ports and waits (bounded) until it accepts
        /// connections. A port found free can be taken by a parallel test before etcd
        /// binds it; etcd then exits, and it is started again on other ports.
        fn start() -> Option<TestEtcd> {
            if !std::path::Path::new("/usr/bin/etcd").exists() {
                println!("SKIPPED: /usr/bin/etcd is not installed");
                return None;
            }
            for _attempt in 0..5 {
                if let Some(etcd) = TestEtcd::try_start() {
                    return Some(etcd);
                }
            }
            panic!("etcd did not start on five sets of free ports");
        }

        /// One attempt: `None` if etcd exited (or did not listen within 10 s).
        fn try_start() -> Option<TestEtcd> {
            let port = || {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let (port, peer) = (port(), port());
            let data = tempfile::tempdir().unwrap();
            let client = format!("http://127.0.0.1:{port}");
            let peer = format!("http://127.0.0.1:{peer}");
            let child = Command::new("/usr/bin/etcd")
                .arg("--data-dir")
                .arg(data.path())
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &format!("default={peer}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start etcd");
            let mut etcd = TestEtcd {
                child,
                _data: data,
                port,
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
                if !matches!(etcd.child.try_wait(), Ok(None)) {
                    return None;
                }
                if listening {
                    return Some(etcd);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        }

        fn settings(&self) -> EtcdSettings {
            EtcdSettings {
                endpoints: vec![format!("127.0.0.1:{}", self.port)],
                prefix: "/t".to_owned(),
                publisher_lease_secs: 2,
            }
        }
    }

    impl Drop for TestEtcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn cluster(etcd: &TestEtcd) -> Cluster {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let group = "237.37.37.1:1".parse().unwrap();
        let mut cluster = Cluster::connect(&etcd.settings(), "test", group, addr)
            .await
            .unwrap();
        // Wait (bounded, by `load`) until etcd answers.
        cluster.load(wall()).await.unwrap();
        cluster
    }

    /// Writes `record` straight to etcd (whatever the key holds); its mod_revision.
    async fn put(cluster: &mut Cluster, record: &Record) -> i64 {
        let name = record.name().as_str();
        let current = store::get(&mut cluster.kv, &cluster.keys, name)
            .await
            .unwrap()
            .map_or(0, |e| e.mod_revision);
        let value = encode(record, wall()).unwrap();
        let put = Put {
            name: name.to_owned(),
            value,
            expect: current,
        };
        store::put_all(&mut cluster.kv, &cluster.keys, &[put])
            .await
            .unwrap()
            .unwrap()
    }

    async fn stored(cluster: &mut Cluster, name: &str) -> Option<Record> {
        store::get(&mut cluster.kv, &cluster.keys, name)
            .await
            .unwrap()
            .map(|e| decode(&e, wall()).unwrap())
    }

    /// A directory of four slots (leaked: a test's lifetime).
    fn directory() -> Directory<'static> {
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let config = DirectoryConfig::new(
            Location::new(ip, 1).unwrap(),
            "237.37.37.1:1".parse().unwrap(),
        );
        let slots: &'static mut [Slot] = Box::leak(vec![None; 4].into_boxed_slice());
        let index: &'static mut [u32] = Box::leak(vec![0; 4].into_boxed_slice());
        Directory::new(config, slots, index).unwrap()
    }

    fn removal(version: u64) -> Pending {
        Pending {
            put: false,
            delete: true,
            version: Version(version),
            durable: false,
        }
    }

    #[tokio::test]
    async fn a_removal_deletes_only_a_departed_or_older_record() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let clock = Clock::new();
        let mut directory = directory();
        // Registered again (version 10) before the removal of version 5 was deleted.
        put(&mut cluster, &record("x", 10, live(60_000))).await;
        cluster.queue.insert("x".into(), removal(5));
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert_eq!(
            stored(&mut cluster, "x").await.map(|r| r.service.version),
            Some(Version(10))
        );
        assert!(cluster.queue.is_empty());
        // The departed record, all notifications sent: deleted.
        put(
            &mut cluster,
            &record("x", 11, RecordState::Departed { remaining: 0 }),
        )
        .await;
        cluster.queue.insert("x".into(), removal(0));
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert_eq!(stored(&mut cluster, "x").await, None);
        // A removal whose departed record never reached etcd: an older live one goes.
        put(&mut cluster, &record("y", 3, live(60_000))).await;
        cluster.queue.insert("y".into(), removal(5));
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert_eq!(stored(&mut cluster, "y").await, None);
        // Unreadable values are never deleted.
        let garbage = Put {
            name: "z".into(),
            value: vec![0xff; 4],
            expect: 0,
        };
        store::put_all(&mut cluster.kv, &cluster.keys, &[garbage])
            .await
            .unwrap()
            .unwrap();
        cluster.queue.insert("z".into(), removal(u64::MAX));
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert!(store::get(&mut cluster.kv, &cluster.keys, "z")
            .await
            .unwrap()
            .is_some());
    }

    /// A departed record of `version` in etcd, last seen there by `cluster`, whose
    /// notifications are all sent: its deletion is queued.
    async fn finished(cluster: &mut Cluster, name: &str, version: u64) {
        let departed = RecordState::Departed { remaining: 0 };
        let revision = put(cluster, &record(name, version, departed)).await;
        let known = Known {
            mod_revision: revision,
            departed: true,
        };
        cluster.known.insert(name.into(), known);
        cluster.queue.insert(name.into(), removal(version));
    }

    #[tokio::test]
    async fn finished_removals_go_in_one_transaction_unless_a_key_changed() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let clock = Clock::new();
        let mut directory = directory();
        // As last seen here: three departed records (the publisher's own last writes).
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            finished(&mut cluster, name, 10 + i as u64).await;
        }
        let writes = cluster.stats.writes;
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert_eq!(cluster.stats.writes, writes + 1, "one transaction");
        for name in ["a", "b", "c"] {
            assert_eq!(stored(&mut cluster, name).await, None);
        }
        assert!(cluster.queue.is_empty());

        // Another directory registered "e" again since it was last seen: the transaction
        // deletes nothing, and one by one only the departed "d" goes.
        for name in ["d", "e"] {
            finished(&mut cluster, name, 30).await;
        }
        put(&mut cluster, &record("e", 40, live(60_000))).await;
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert_eq!(stored(&mut cluster, "d").await, None);
        assert_eq!(
            stored(&mut cluster, "e").await.map(|r| r.service.version),
            Some(Version(40))
        );
        assert!(cluster.queue.is_empty());
    }

    #[tokio::test]
    async fn a_write_never_replaces_a_newer_record() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let clock = Clock::new();
        let mut directory = directory();
        let now = clock.now().as_millis();
        directory
            .apply(clock.now(), record("x", 20, live(now + 60_000)))
            .unwrap();
        // Another directory wrote version 30, unseen here.
        put(&mut cluster, &record("x", 30, live(60_000))).await;
        cluster.queue.insert(
            "x".into(),
            Pending {
                put: true,
                delete: false,
                version: Version(20),
                durable: true,
            },
        );
        cluster
            .flush(&mut directory, &clock, Writes::All)
            .await
            .unwrap();
        assert!(cluster.queue.is_empty());
        assert_eq!(
            stored(&mut cluster, "x").await.map(|r| r.service.version),
            Some(Version(30))
        );
        // The directory took the newer record instead.
        assert_eq!(
            directory.record("x").map(|r| r.service.version),
            Some(Version(30))
        );
        // A newer change here is written over it.
        directory
            .apply(clock.now(), record("x", 40, live(now + 60_000)))
            .unwrap();
        cluster.queue.insert(
            "x".into(),
            Pending {
                put: true,
                delete: false,
                version: Version(40),
                durable: true,
            },
        );
        assert_eq!(
            cluster
                .flush(&mut directory, &clock, Writes::All)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            stored(&mut cluster, "x").await.map(|r| r.service.version),
            Some(Version(40))
        );
    }

    /// A directory of four slots with a subscriber table of four (leaked).
    fn directory_with_subscribers() -> Directory<'static> {
        let slots: &'static mut [herald_core::directory::SubscriberSlot] =
            Box::leak(vec![None; 4].into_boxed_slice());
        directory().with_subscribers(slots)
    }

    /// A listener of id 7 that subscribes at `directory` through the core client, by a
    /// direct exchange of datagrams (leaked).
    fn listener(directory: &Directory<'static>) -> herald_core::Client<'static, 4> {
        let mut config = client_config(7, directory);
        config.interest = Some(herald_core::Interest::all());
        config.subscribe = herald_core::Subscribe::Always;
        client(config)
    }

    /// Subscriber 7 subscribes at `directory`, and `cluster` writes the subscription.
    async fn subscribe_written(
        cluster: &mut Cluster,
        directory: &mut Directory<'static>,
        clock: &Clock,
    ) -> herald_core::Client<'static, 4> {
        let mut client = listener(directory);
        exchange(&mut client, directory, clock);
        cluster.persist(directory, clock).await;
        cluster.flush(directory, clock, Writes::All).await.unwrap();
        client
    }

    /// The settings of client `id` that talks to `directory`.
    fn client_config(id: u64, directory: &Directory<'static>) -> herald_core::ClientConfig {
        let mut config = herald_core::ClientConfig::new(id);
        config.directories.push(directory.config().address).unwrap();
        config
    }

    /// A core client with a table of four (leaked).
    fn client(config: herald_core::ClientConfig) -> herald_core::Client<'static, 4> {
        let slots = Box::leak(vec![None; 4].into_boxed_slice());
        let index = Box::leak(vec![0u32; 4].into_boxed_slice());
        herald_core::Client::new(config, slots, index).unwrap()
    }

    /// Subscriber `id` is written again through `at` (as its renewal at another
    /// directory would): its key's revision moves on.
    async fn renew_elsewhere(at: &mut Cluster, id: u64) {
        let entry = store::get_subscriber(&mut at.kv, &at.keys, id)
            .await
            .unwrap()
            .unwrap();
        let put = (
            at.keys.subscriber(id),
            entry.value.as_slice(),
            entry.mod_revision,
        );
        store::put_keys(&mut at.kv, &[put]).await.unwrap().unwrap();
    }

    /// Exchanges datagrams between `client` and `directory` until both are quiet.
    fn exchange(
        client: &mut herald_core::Client<'static, 4>,
        directory: &mut Directory<'static>,
        clock: &Clock,
    ) {
        let me: std::net::SocketAddr = "127.0.0.1:40007".parse().unwrap();
        let at = directory.config().address.socket_addr();
        let mut buf = [0u8; 1400];
        for _ in 0..10 {
            let now = clock.now();
            client.handle_timeout(now);
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                directory.handle_datagram(now, me, &buf[..t.len]);
            }
            while let Some(t) = directory.poll_transmit(now, &mut buf) {
                if t.destination == me {
                    client.handle_datagram(now, at, &buf[..t.len]);
                }
            }
        }
    }

    #[tokio::test]
    async fn subscriptions_are_shared_and_their_deletion_is_guarded() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let (mut a, mut b) = (cluster(&etcd).await, cluster(&etcd).await);
        let clock = Clock::new();
        let (mut da, mut db) = (directory_with_subscribers(), directory_with_subscribers());
        let mut client = listener(&da);
        exchange(&mut client, &mut da, &clock);
        assert_eq!(da.subscribers().count(), 1);
        a.persist(&mut da, &clock).await;
        a.flush(&mut da, &clock, Writes::All).await.unwrap();
        // Another directory reads it.
        let snapshot = store::load(&mut b.kv, &b.keys).await.unwrap();
        assert_eq!(snapshot.subscribers.len(), 1);
        assert_eq!(snapshot.subscribers[0].id, 7);
        b.subscriptions
            .reload(&mut db, &clock, &snapshot.subscribers, snapshot.revision);
        assert_eq!(db.subscribers().map(|s| s.id).collect::<Vec<_>>(), [7]);

        // Renewed elsewhere (the key changed since `a` saw it): the unsubscription at
        // `a` deletes nothing, and `a` takes the stored subscription back.
        renew_elsewhere(&mut b, 7).await;
        client.unsubscribe(clock.now());
        exchange(&mut client, &mut da, &clock);
        a.persist(&mut da, &clock).await;
        assert_eq!(a.queued(), 1);
        a.flush(&mut da, &clock, Writes::All).await.unwrap();
        assert_eq!(a.queued(), 0);
        assert!(store::get_subscriber(&mut a.kv, &a.keys, 7)
            .await
            .unwrap()
            .is_some());
        assert_eq!(da.subscribers().count(), 1, "taken back from etcd");

        // Deleted where it was last seen as written: gone, and forgotten by the other.
        let key = store::get_subscriber(&mut a.kv, &a.keys, 7)
            .await
            .unwrap()
            .unwrap();
        let deleted = store::delete_key_if(&mut a.kv, a.keys.subscriber(7), key.mod_revision)
            .await
            .unwrap();
        assert!(deleted.is_some());
        b.subscriptions
            .deleted(&mut db, &clock, 7, key.mod_revision + 1);
        assert_eq!(db.subscribers().count(), 0);
    }

    #[tokio::test]
    async fn a_reload_drops_a_queued_deletion_of_a_subscription_renewed_elsewhere() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let (mut a, mut b) = (cluster(&etcd).await, cluster(&etcd).await);
        let clock = Clock::new();
        let mut da = directory_with_subscribers();
        let mut client = listener(&da);
        exchange(&mut client, &mut da, &clock);
        a.persist(&mut da, &clock).await;
        a.flush(&mut da, &clock, Writes::All).await.unwrap();
        // Ended here while etcd did not answer (queued), renewed at another directory.
        client.unsubscribe(clock.now());
        exchange(&mut client, &mut da, &clock);
        a.persist(&mut da, &clock).await;
        assert_eq!((a.queued(), da.subscribers().count()), (1, 0));
        renew_elsewhere(&mut b, 7).await;
        // etcd answers again: the registry and the subscribers are read again.
        let snapshot = store::load(&mut a.kv, &a.keys).await.unwrap();
        a.subscriptions
            .reload(&mut da, &clock, &snapshot.subscribers, snapshot.revision);
        a.flush(&mut da, &clock, Writes::All).await.unwrap();
        assert_eq!(a.queued(), 0);
        assert_eq!(da.subscribers().count(), 1, "taken from etcd");
        assert!(store::get_subscriber(&mut a.kv, &a.keys, 7)
            .await
            .unwrap()
            .is_some());
    }

    /// A read of the registry that started before this directory wrote a registration
    /// (the catch-up read after an election, say) and is taken after it: the record is
    /// newer than the read, so it was not removed while this directory was not
    /// watching, and stays.
    #[tokio::test]
    async fn a_read_older_than_a_write_made_here_drops_nothing() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let clock = Clock::new();
        let mut directory = directory();
        let before = store::load(&mut cluster.kv, &cluster.keys).await.unwrap();
        let mut client = client(client_config(9, &directory));
        let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        let registration = Registration::new(
            ServiceName::new("real").unwrap(),
            &[Location::new(ip, 7001).unwrap()],
        )
        .unwrap();
        client.register(clock.now(), registration).unwrap();
        exchange(&mut client, &mut directory, &clock);
        cluster.persist(&mut directory, &clock).await;
        assert!(stored(&mut cluster, "real").await.is_some(), "written");
        assert_eq!(cluster.queued(), 0);

        cluster
            .resync(&mut directory, &clock, before)
            .await
            .unwrap();
        assert!(
            directory.record("real").is_some(),
            "dropped by an older read"
        );
        assert!(stored(&mut cluster, "real").await.is_some());
        // A read after the write holds it, and keeps it.
        let after = store::load(&mut cluster.kv, &cluster.keys).await.unwrap();
        cluster.resync(&mut directory, &clock, after).await.unwrap();
        assert!(directory.record("real").is_some());
    }

    /// A read that started before a record was deleted, taken after the watch brought
    /// the deletion: the record is not brought back.
    #[tokio::test]
    async fn a_read_older_than_a_deletion_does_not_bring_the_record_back() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let clock = Clock::new();
        let mut directory = directory();
        let written = put(&mut cluster, &record("gone", 5, live(60_000))).await;
        let before = store::load(&mut cluster.kv, &cluster.keys).await.unwrap();
        // The read is in flight while the record is deleted, and the watch says so.
        cluster.deleted_while_reading.read_started();
        let deleted = store::delete_if(&mut cluster.kv, &cluster.keys, "gone", written)
            .await
            .unwrap()
            .unwrap();
        let deletion = Change::Delete {
            name: "gone".into(),
            mod_revision: deleted,
        };
        cluster.take_change(&mut directory, &clock, deletion);

        cluster
            .resync(&mut directory, &clock, before)
            .await
            .unwrap();
        assert!(
            directory.record("gone").is_none(),
            "brought back by an older read"
        );
        assert_eq!(stored(&mut cluster, "gone").await, None);
    }

    /// A read of the subscriber table older than a subscription written here does not
    /// forget it.
    #[tokio::test]
    async fn a_read_older_than_a_subscription_written_here_forgets_nothing() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut a = cluster(&etcd).await;
        let clock = Clock::new();
        let mut da = directory_with_subscribers();
        let before = store::load(&mut a.kv, &a.keys).await.unwrap();
        subscribe_written(&mut a, &mut da, &clock).await;
        assert_eq!(a.queued(), 0);
        a.subscriptions
            .reload(&mut da, &clock, &before.subscribers, before.revision);
        assert_eq!(da.subscribers().count(), 1, "forgotten by an older read");
    }

    /// A read of the subscriber table that started before a subscription was deleted,
    /// taken after the watch brought the deletion: the subscription is not brought back.
    #[tokio::test]
    async fn a_read_older_than_a_subscriptions_deletion_does_not_bring_it_back() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let (mut a, mut b) = (cluster(&etcd).await, cluster(&etcd).await);
        let clock = Clock::new();
        let (mut da, mut db) = (directory_with_subscribers(), directory_with_subscribers());
        let mut client = subscribe_written(&mut a, &mut da, &clock).await;
        let before = store::load(&mut b.kv, &b.keys).await.unwrap();
        b.subscriptions
            .reload(&mut db, &clock, &before.subscribers, before.revision);
        assert_eq!(db.subscribers().count(), 1);
        // `b` reads again; meanwhile the subscription ends at `a`, and `b`'s watch says so.
        b.subscriptions.read_started();
        client.unsubscribe(clock.now());
        exchange(&mut client, &mut da, &clock);
        a.persist(&mut da, &clock).await;
        a.flush(&mut da, &clock, Writes::All).await.unwrap();
        assert!(store::get_subscriber(&mut a.kv, &a.keys, 7)
            .await
            .unwrap()
            .is_none());
        let deleted_at = store::load(&mut b.kv, &b.keys).await.unwrap().revision;
        b.subscriptions.deleted(&mut db, &clock, 7, deleted_at);
        assert_eq!(db.subscribers().count(), 0);

        b.subscriptions
            .reload(&mut db, &clock, &before.subscribers, before.revision);
        assert_eq!(db.subscribers().count(), 0, "brought back by an older read");
    }

    #[tokio::test]
    async fn a_snapshot_reads_every_page_at_one_revision() {
        let Some(etcd) = TestEtcd::start() else {
            return;
        };
        let mut cluster = cluster(&etcd).await;
        let names: Vec<String> = (0..1_201).map(|i| format!("svc-{i:05}")).collect();
        for chunk in names.chunks(store::MAX_TXN_KEYS) {
            let puts: Vec<Put> = chunk
                .iter()
                .map(|n| Put {
                    name: n.clone(),
                    value: encode(&record(n, 1, live(60_000)), wall()).unwrap(),
                    expect: 0,
                })
                .collect();
            store::put_all(&mut cluster.kv, &cluster.keys, &puts)
                .await
                .unwrap()
                .unwrap();
        }
        let snapshot = store::load(&mut cluster.kv, &cluster.keys).await.unwrap();
        let read: Vec<&str> = snapshot.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(read, names.iter().map(String::as_str).collect::<Vec<_>>());
        let newest = snapshot.entries.iter().map(|e| e.mod_revision).max();
        assert_eq!(newest, Some(snapshot.revision));
    }
}
