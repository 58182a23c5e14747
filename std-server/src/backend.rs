//! Where `herald serve` keeps its registry: the embedded redb store of a directory
//! alone ([`Local`]), or etcd, shared by the directories of a cluster (`cluster::Cluster`,
//! with the `etcd` feature).
//!
//! The serve loop talks to a [`Backend`] only: it hands it the directory's storage
//! events at every flush ([`Backend::persist`]) and at the end of each wake-up
//! ([`Backend::commit`]), holds what it sends until the [`Marks`] say the changes it
//! shows are durable, feeds the directory what the backend reports ([`Backend::input`]:
//! a finished write, or etcd's news; [`Backend::handle`]), wakes it when its deadline
//! passes ([`Backend::tick`]) and closes it at shutdown.

use crate::clock::Clock;
use crate::storage::{Batch, Loaded, StorageError, Store};
use crate::writer::{Writer, Written};
use herald_core::{Directory, DirectoryEvent, ServiceName, SubscriberEvent, Version};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Renewals (and counts of notifications owed) wait at most this long to be written,
/// then go with the next write (or in one of their own). They never ride in a write an
/// acknowledgement waits for before then: that write carries only what must be durable,
/// so a keep-alive round of many registrations does not make the next registration's or
/// removal's write larger. A crash loses at most this much of the leases' extensions;
/// registrants renew well before their leases end.
const SYNC_RENEWALS_AFTER: Duration = Duration::from_secs(1);
/// After a failed write, the first retry comes this late; each further failure doubles
/// the wait, up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to write to a failing store.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// The state of the store, for the metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The store answers.
    pub reachable: bool,
    /// Writes waiting for the store.
    pub queued: u64,
    /// Times the store became unreachable.
    pub outages: u64,
    /// Times this directory started or stopped publishing.
    pub publisher_changes: u64,
    /// Write transactions committed.
    pub writes: u64,
    /// Storage operations that failed.
    pub errors: u64,
    /// The last write succeeded: changes are acknowledged (false while the disk is full
    /// or failing: requests are refused with `storage_unavailable`).
    pub writable: bool,
}

/// Where the redb store's writes stand. Writes are numbered from 1 in the order they
/// start; what the serve loop sends may leave once the write it depends on is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// What the serve loop sends now must wait until the write of this number is on disk
    /// (it holds the newest change that must be durable before it is shown).
    pub needed: u64,
    /// Writes handed to the writer so far (the newest one's number).
    pub started: u64,
    /// Every write up to this number is on disk.
    pub done: u64,
    /// The newest registry version on disk (the HTTP and DNS interfaces show nothing
    /// newer).
    pub durable_version: Version,
}

impl Marks {
    /// True when what is sent now may leave at once.
    pub fn settled(&self) -> bool {
        self.needed <= self.done
    }

    /// True when what is sent now waits for a write that starts only once the one in
    /// flight is done: whatever the directory would send now can as well be taken then,
    /// when the changes of every wake-up meanwhile are announced together.
    pub fn behind_write_in_flight(&self) -> bool {
        self.needed > self.started && self.started > self.done
    }
}

/// The write in flight.
#[derive(Debug)]
struct Inflight {
    /// Its number.
    number: u64,
    /// The deletions in it (the directory has forgotten these names: a failed write
    /// must keep them).
    removed: Vec<ServiceName>,
}

/// The embedded redb store of a directory alone, written by its own thread
/// ([`Writer`]): group commit.
///
/// At each flush of the serve loop the directory's storage events are taken into the
/// next batch ([`Backend::persist`]); at the end of each wake-up, or when the write in
/// flight is done, that batch goes to the writer if it is idle ([`Backend::commit`]).
/// Everything the directory sends after a change is taken waits until the write that
/// holds the change is on disk ([`Marks`]): no acknowledgement, announcement or snapshot
/// page shows a change that a crash could still lose. Renewals wait apart, for at most
/// a second, so that such a write carries only what must be durable.
#[derive(Debug)]
pub struct Local {
    writer: Writer,
    /// Changes taken from the directory, for the next write.
    next: Batch,
    /// The deletions in `next`.
    next_removed: Vec<ServiceName>,
    inflight: Option<Inflight>,
    marks: Marks,
    /// Renewed records that are not in `next` (changes that need not be durable at
    /// once): written once they have waited [`SYNC_RENEWALS_AFTER`].
    renewals: Batch,
    /// Since when `renewals` (or `next`'s subscribers) wait to be written.
    renewed_since: Option<Instant>,
    /// Deletions whose write failed, kept until a write succeeds (the directory has
    /// forgotten these names; everything else it hands out again itself, and the retry
    /// replaces the stored subscriber table whole, so no subscriber id is kept here).
    unwritten_removals: BTreeMap<String, ServiceName>,
    /// While writes fail: when to reopen the store and try again.
    retry_at: Option<Instant>,
    /// Writes failed in a row.
    failures: u32,
    writes: u64,
    errors: u64,
}

impl Local {
    fn new(store: Store) -> std::io::Result<Local> {
        Ok(Local {
            writer: Writer::spawn(store)?,
            next: Batch::default(),
            next_removed: Vec::new(),
            inflight: None,
            marks: Marks::default(),
            renewals: Batch::default(),
            renewed_since: None,
            unwritten_removals: BTreeMap::new(),
            retry_at: None,
            failures: 0,
            writes: 0,
            errors: 0,
        })
    }

    /// Takes the directory's storage events into the next write. While the store is
    /// failing they wait in the directory until the retry.
    fn take(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        if self.retry_at.is_some() {
            return;
        }
        let durable = self.take_events(directory, clock);
        if durable {
            self.marks.needed = self.marks.started + 1;
        }
        if self.marks.settled() {
            self.marks.durable_version = directory.as_of();
        }
    }

    /// Moves every storage event into `next`; true when one must be durable.
    fn take_events(&mut self, directory: &mut Directory<'_>, clock: &Clock) -> bool {
        let wall = clock.wall();
        let mut durable = false;
        while let Some(event) = directory.poll_event() {
            match event {
                DirectoryEvent::Stored(record) => {
                    durable = true;
                    self.renewals.forget(record.name().as_str());
                    self.next.stored(record, wall);
                }
                // A renewal goes with the change of the same record waiting in `next`,
                // if any; otherwise it waits with the other renewals.
                DirectoryEvent::Renewed(record) if self.next.contains(record.name().as_str()) => {
                    self.next.renewed(record, wall);
                }
                DirectoryEvent::Renewed(record) => {
                    self.renewed_since.get_or_insert_with(Instant::now);
                    self.renewals.renewed(record, wall);
                }
                DirectoryEvent::Removed(name) => {
                    durable = true;
                    self.renewals.forget(name.as_str());
                    self.next.removed(&name);
                    self.next_removed.push(name);
                }
            }
        }
        // Subscribers need not be durable before anything is sent: they are written
        // with the renewals (or with the next durable write, whichever comes first).
        while let Some(event) = directory.poll_subscriber_event() {
            self.renewed_since.get_or_insert_with(Instant::now);
            match event {
                SubscriberEvent::Stored(subscriber) => {
                    self.next.subscriber_stored(subscriber, wall);
                }
                SubscriberEvent::Removed(id) => self.next.subscriber_removed(id),
            }
        }
        durable
    }

    /// Hands the next batch to the writer, if it is idle and the batch holds a change
    /// that must be durable, or renewals that have waited [`SYNC_RENEWALS_AFTER`] (then
    /// with them). Every write is durable: renewals alone never cost a write of their
    /// own sooner.
    fn commit(&mut self, directory: &Directory<'_>) {
        let renewals_due = self
            .renewed_since
            .is_some_and(|t| t.elapsed() >= SYNC_RENEWALS_AFTER);
        if self.writer.is_busy()
            || self.retry_at.is_some()
            || !(self.next.is_durable() || renewals_due)
        {
            return;
        }
        self.start(directory, false, renewals_due);
    }

    /// Starts the durable write of `next` (and of the waiting renewals when
    /// `with_renewals`), reopening the store first when `reopen`.
    fn start(&mut self, directory: &Directory<'_>, reopen: bool, with_renewals: bool) {
        let mut batch = std::mem::take(&mut self.next);
        if with_renewals || self.renewals.is_empty() {
            // No name is in both (see `take_events`): the order does not matter.
            batch.append(std::mem::take(&mut self.renewals));
            self.renewed_since = None;
        }
        let mut removed = std::mem::take(&mut self.next_removed);
        // Earlier deletions that failed to be written go first: a later change of the
        // same name, already in the batch, wins.
        let unwritten = std::mem::take(&mut self.unwritten_removals);
        if !unwritten.is_empty() {
            let mut merged = Batch::default();
            for name in unwritten.values() {
                merged.removed(name);
            }
            merged.append(batch);
            batch = merged;
            removed.extend(unwritten.into_values());
        }
        batch.as_of(directory.as_of());
        batch.make_durable_if(true);
        self.marks.started += 1;
        self.inflight = Some(Inflight {
            number: self.marks.started,
            removed,
        });
        self.writer.start(batch, reopen);
    }

    /// The write in flight is done: on success, what waited for it may leave; on
    /// failure the directory is told ([`Directory::storage_failed`]: nothing is
    /// acknowledged, everything is handed out again) and later ticks reopen the store
    /// and write everything again, with back-off, until a write succeeds
    /// ([`Directory::storage_recovered`]). True when it succeeded. The next write, of
    /// everything that accumulated meanwhile, starts at once.
    fn finish(&mut self, written: Written, directory: &mut Directory<'_>, clock: &Clock) -> bool {
        let Some(inflight) = self.inflight.take() else {
            return true;
        };
        match written.result {
            Ok(()) => {
                self.writes += 1;
                self.marks.done = inflight.number;
                if let Some(version) = written.batch.version() {
                    self.marks.durable_version = self.marks.durable_version.max(version);
                }
                if self.retry_at.take().is_some() {
                    self.failures = 0;
                    directory.storage_recovered(clock.now());
                    tracing::warn!(
                        records = written.batch.len(),
                        "storage writable again: the registry is on disk, requests are taken"
                    );
                }
                self.take(directory, clock);
                self.commit(directory);
                true
            }
            Err(e) => {
                // Nothing taken since is kept: the directory hands out every entry and
                // every subscriber again (name deletions, which it has forgotten, are kept
                // here; the retry replaces the subscriber table whole).
                for name in inflight
                    .removed
                    .into_iter()
                    .chain(self.next_removed.drain(..))
                {
                    self.unwritten_removals
                        .insert(name.as_str().to_owned(), name);
                }
                self.next = Batch::default();
                self.renewals = Batch::default();
                self.renewed_since = None;
                self.marks.needed = self.marks.done;
                self.failed(directory, clock, &e);
                false
            }
        }
    }

    /// A write failed: refuse what it would have acknowledged, and try again later.
    fn failed(&mut self, directory: &mut Directory<'_>, clock: &Clock, e: &StorageError) {
        self.errors += 1;
        self.failures = self.failures.saturating_add(1);
        let wait = RETRY_MIN
            .saturating_mul(1 << self.failures.min(5))
            .min(RETRY_MAX);
        self.retry_at = Some(Instant::now() + wait);
        directory.storage_failed(clock.now());
        if self.failures == 1 {
            tracing::error!(
                error = %e,
                "storage write failed: nothing is acknowledged (requests are refused with \
                 storage_unavailable) until a write succeeds; retrying"
            );
        } else {
            tracing::debug!(error = %e, failures = self.failures, "storage still failing");
        }
    }

    /// While failing, once the retry is due and no write is in flight: reopens the store
    /// and writes everything the directory hands out (the whole registry and the whole
    /// subscriber table) durably. Nothing was taken since the failure (`take` waits for
    /// the retry), so the batch holds every subscriber: it replaces the stored table,
    /// which deletes those whose deletion was in the failed write.
    fn retry(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        if self.writer.is_busy() || self.retry_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.take_events(directory, clock);
        self.next.replace_subscribers();
        self.start(directory, true, true);
    }

    /// Waits for the writes in flight (each one done starts the next, if anything
    /// accumulated). False when one failed.
    async fn drain(&mut self, directory: &mut Directory<'_>, clock: &Clock) -> bool {
        let mut ok = true;
        while self.writer.is_busy() {
            let written = self.writer.finished().await;
            ok &= self.finish(written, directory, clock);
        }
        ok
    }

    /// When [`Backend::tick`] has something to do (nothing while a write is in flight:
    /// its end wakes the loop).
    fn deadline(&self) -> Option<Instant> {
        if self.writer.is_busy() {
            return None;
        }
        let renewals = self.renewed_since.map(|t| t + SYNC_RENEWALS_AFTER);
        renewals.into_iter().chain(self.retry_at).min()
    }
}

/// What a backend read at start-up, for the directory to take.
#[derive(Debug)]
pub enum Start {
    /// From the redb store.
    Local(Loaded),
    /// From etcd.
    #[cfg(feature = "etcd")]
    Etcd(crate::cluster::Loaded),
}

impl Start {
    /// The newest version handed out before (the directory's versions start above it).
    pub fn as_of(&self) -> Version {
        match self {
            Start::Local(loaded) => loaded.as_of,
            #[cfg(feature = "etcd")]
            Start::Etcd(loaded) => loaded.as_of,
        }
    }
}

/// Something a backend has for the directory, between wake-ups.
#[derive(Debug)]
pub enum Input {
    /// From the redb writer: a write is done (see [`Backend::handle`]).
    Written(Written),
    /// From etcd: a change another directory made, or the election.
    #[cfg(feature = "etcd")]
    Cluster(crate::cluster::Input),
}

/// Where a backend keeps the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The redb file.
    Data(String),
    /// etcd, under this key prefix.
    Etcd {
        /// The store, `etcd://…`.
        url: String,
        /// The key prefix (`--etcd-prefix`).
        prefix: String,
    },
}

/// Where the registry is kept.
#[derive(Debug)]
pub enum Backend {
    /// The embedded redb store.
    Local(Box<Local>),
    /// etcd, shared with other directories.
    #[cfg(feature = "etcd")]
    Etcd(Box<crate::cluster::Cluster>),
}

impl Backend {
    /// The redb store, opened and read already (its writer thread starts here).
    pub fn local(store: Store) -> std::io::Result<Backend> {
        Ok(Backend::Local(Box::new(Local::new(store)?)))
    }

    /// Puts what was read at start-up into `directory` (and, for etcd, starts the
    /// watch and the election). Fails when it does not fit.
    pub fn start(
        &mut self,
        directory: &mut Directory<'_>,
        clock: &Clock,
        start: Start,
    ) -> Result<usize, herald_core::RegistryError> {
        match (self, start) {
            (Backend::Local(_), Start::Local(loaded)) => {
                let restored = loaded.records.len();
                for record in loaded.records {
                    directory.restore(clock.now(), record)?;
                }
                for subscriber in loaded.subscribers {
                    let id = subscriber.id;
                    if directory
                        .restore_subscriber(clock.now(), subscriber)
                        .is_err()
                    {
                        tracing::warn!(
                            id = format_args!("{id:#x}"),
                            capacity = directory.subscriber_capacity(),
                            "stored subscriber does not fit --subscribers: it subscribes again \
                             when it renews"
                        );
                    }
                }
                Ok(restored)
            }
            #[cfg(feature = "etcd")]
            (Backend::Etcd(cluster), Start::Etcd(loaded)) => {
                cluster.start(directory, clock, loaded)
            }
            #[cfg(feature = "etcd")]
            _ => unreachable!("a backend starts from what it loaded itself"),
        }
    }

    /// Where the registry is kept, for the start-up log.
    pub fn location(&self) -> Location {
        match self {
            Backend::Local(local) => Location::Data(local.writer.path().display().to_string()),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => Location::Etcd {
                url: cluster.url().to_owned(),
                prefix: cluster.prefix().to_owned(),
            },
        }
    }

    /// When [`tick`](Self::tick) has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Backend::Local(local) => local.deadline(),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.deadline(),
        }
    }

    /// The next input for the directory (cancel-safe).
    pub async fn input(&mut self) -> Input {
        match self {
            Backend::Local(local) => Input::Written(local.writer.finished().await),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => Input::Cluster(cluster.input().await),
        }
    }

    /// Takes an input into the directory. False when it was a failed write: what
    /// waited for it must never be sent.
    pub async fn handle(
        &mut self,
        input: Input,
        directory: &mut Directory<'_>,
        clock: &Clock,
    ) -> bool {
        match (self, input) {
            (Backend::Local(local), Input::Written(written)) => {
                local.finish(written, directory, clock)
            }
            #[cfg(feature = "etcd")]
            (Backend::Etcd(cluster), Input::Cluster(input)) => {
                cluster.handle(input, directory, clock).await;
                true
            }
            #[cfg(feature = "etcd")]
            _ => true,
        }
    }

    /// Takes the directory's storage events. redb: into the next write (see
    /// [`commit`](Self::commit)); what is sent from now on waits for it
    /// ([`marks`](Self::marks)). etcd: what must be durable is written before this returns
    /// (unless etcd is unreachable: then it is queued).
    pub async fn persist(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => local.take(directory, clock),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.persist(directory, clock).await,
        }
    }

    /// At the end of a wake-up: starts writing what was taken, unless a write is in
    /// flight (then it goes when that one is done, with whatever accumulated).
    pub fn commit(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => {
                local.take(directory, clock);
                local.commit(directory);
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => {}
        }
        let _ = (directory, clock);
    }

    /// Which writes what is sent now waits for (etcd: none, its writes are done in
    /// [`persist`](Self::persist)); `directory` gives the newest version when nothing
    /// waits.
    pub fn marks(&self, directory: &Directory<'_>) -> Marks {
        let _ = directory;
        match self {
            Backend::Local(local) => local.marks,
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => Marks {
                durable_version: directory.as_of(),
                ..Marks::default()
            },
        }
    }

    /// Does what is due by [`deadline`](Self::deadline).
    pub async fn tick(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => {
                // Renewals that waited long enough, or a retry after a failure.
                local.retry(directory, clock);
                local.take(directory, clock);
                local.commit(directory);
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.tick(directory, clock).await,
        }
        let _ = (directory, clock);
    }

    /// At shutdown, after the last wake-up: makes everything durable (redb), or writes
    /// what is queued and resigns as publisher (etcd). False when a redb write failed
    /// (what waited for it must not be sent).
    pub async fn close(&mut self, directory: &mut Directory<'_>, clock: &Clock) -> bool {
        match self {
            Backend::Local(local) => {
                // The writes in flight, then one last durable write of everything (at
                // once, if the store was failing).
                let mut ok = local.drain(directory, clock).await;
                if local.retry_at.is_some() {
                    local.retry_at = Some(Instant::now());
                    local.retry(directory, clock);
                } else {
                    local.take(directory, clock);
                    local.start(directory, false, true);
                }
                ok &= local.drain(directory, clock).await;
                ok
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => {
                cluster.close(directory, clock).await;
                true
            }
        }
    }

    /// The store's state, for the metrics.
    pub fn status(&self) -> StoreStatus {
        match self {
            Backend::Local(local) => StoreStatus {
                reachable: true,
                queued: (local.next.len() + local.renewals.len()) as u64,
                outages: 0,
                publisher_changes: 0,
                writes: local.writes,
                errors: local.errors,
                writable: local.retry_at.is_none(),
            },
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => StoreStatus {
                reachable: cluster.is_reachable(),
                queued: cluster.queued() as u64,
                outages: cluster.stats.outages,
                publisher_changes: cluster.stats.publisher_changes,
                writes: cluster.stats.writes,
                errors: cluster.stats.errors,
                writable: cluster.is_reachable(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::registry::WallClock;
    use herald_core::{
        DirectoryConfig, Location, Record, RecordState, Registration, Service, ServiceName, Slot,
    };
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    const T: u64 = 1_800_000_000_000;

    fn record(name: &str) -> Record {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Record {
            service: Service {
                registration: Registration::new(
                    ServiceName::new(name).unwrap(),
                    &[Location::new(ip, 8080).unwrap()],
                )
                .unwrap(),
                version: Version(1),
            },
            registrant: 7,
            sequence: 0,
            // A 15 s lease.
            state: RecordState::Live {
                expires: herald_core::Instant::from_millis(15_000),
            },
            ended: herald_core::Version(0),
            counted_from: herald_core::Version(0),
        }
    }

    fn wall(unix_ms: u64) -> WallClock {
        WallClock {
            now: herald_core::Instant::ZERO,
            unix_ms,
        }
    }

    fn expires(directory: &Directory<'_>, name: &str) -> herald_core::Instant {
        match directory.record(name).unwrap().state {
            RecordState::Live { expires } => expires,
            other => panic!("{name}: {other:?}"),
        }
    }

    /// A directory with 8 slots over `slots` and `index`, and its backend on the store in
    /// `data`, started.
    fn started<'a>(
        data: &std::path::Path,
        clock: &Clock,
        slots: &'a mut [Slot],
        index: &'a mut [u32],
    ) -> (Directory<'a>, Backend) {
        let (store, loaded) = Store::open(data, wall(T)).unwrap();
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let config = DirectoryConfig::new(Location::new(ip, 37399).unwrap(), group);
        let mut directory = Directory::new(config, slots, index).unwrap();
        let mut backend = Backend::local(store).unwrap();
        backend
            .start(&mut directory, clock, Start::Local(loaded))
            .unwrap();
        (directory, backend)
    }

    /// A Register frame of `name` from registrant 7 with `sequence`.
    fn register(name: &str, sequence: u64) -> Vec<u8> {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let request = herald_core::wire::RegisterRequest {
            request: sequence as u32 + 1,
            registrant: 7,
            sequence,
            lease: herald_core::Duration::from_secs(15),
            registration: Registration::new(
                ServiceName::new(name).unwrap(),
                &[Location::new(ip, 8080).unwrap()],
            )
            .unwrap(),
        };
        let mut buf = [0u8; 1400];
        let len =
            herald_core::wire::encode(&herald_core::Environment::default(), &request, &mut buf)
                .unwrap();
        buf[..len].to_vec()
    }

    /// The embedded store's backend.
    fn local(backend: &mut Backend) -> &mut Local {
        match backend {
            Backend::Local(local) => local,
            #[cfg(feature = "etcd")]
            Backend::Etcd(_) => unreachable!(),
        }
    }

    /// The write in flight, once done.
    async fn written(backend: &mut Backend) -> Written {
        let written = local(backend).writer.finished().await;
        assert!(written.result.is_ok(), "{:?}", written.result);
        written
    }

    /// Renewals (here of three registrations, as a keep-alive round renews them) do not
    /// ride in the durable write a new registration waits for: it carries that one
    /// record. They wait with each other and go with the first write after
    /// [`SYNC_RENEWALS_AFTER`] (or at close). Before, the new registration's write
    /// carried all four.
    #[tokio::test]
    async fn a_durable_write_does_not_carry_the_renewals_waiting() {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::new();
        let (mut slots, mut index) = (vec![None; 8], vec![0u32; 8]);
        let (mut directory, mut backend) = started(data.path(), &clock, &mut slots, &mut index);
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
        for name in ["a", "b", "c"] {
            directory.handle_datagram(clock.now(), from, &register(name, 1));
        }
        backend.commit(&mut directory, &clock);
        assert_eq!(written(&mut backend).await.batch.len(), 3);

        // The three renewed, then a new registration.
        for name in ["a", "b", "c"] {
            directory.handle_datagram(clock.now(), from, &register(name, 2));
        }
        directory.handle_datagram(clock.now(), from, &register("d", 3));
        backend.commit(&mut directory, &clock);
        let first = written(&mut backend).await.batch;
        assert_eq!(first.len(), 1, "only the new registration");
        assert!(first.contains("d"));

        // The renewals wait, then are written together.
        let waiting = local(&mut backend);
        assert_eq!(waiting.renewals.len(), 3);
        assert!(waiting.renewed_since.is_some());
        waiting.start(&directory, false, true);
        assert_eq!(written(&mut backend).await.batch.len(), 3);
    }

    /// Leases written while the wall clock was an hour ahead or behind, restored after
    /// it was corrected: none lasts longer than the longest lease, none expires at the
    /// restart.
    #[test]
    fn restored_leases_survive_wall_clock_steps() {
        let data = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(data.path(), wall(T)).unwrap();
            let mut batch = Batch::default();
            batch.stored(&record("ahead"), wall(T + 3_600_000));
            batch.stored(&record("behind"), wall(T - 3_600_000));
            batch.stored(&record("normal"), wall(T));
            store.save(&batch).unwrap();
        }
        // Restarted with the wall clock at T again (the core's clock starts near zero).
        let clock = Clock::new();
        let (mut slots, mut index) = (vec![None; 8], vec![0u32; 8]);
        let before = clock.now();
        let (mut directory, _backend) = started(data.path(), &clock, &mut slots, &mut index);
        let now = clock.now();
        let max = now + herald_core::Duration::from_secs(300);
        assert!(expires(&directory, "ahead") <= max, "capped at max_lease");
        assert!(
            expires(&directory, "behind") >= before + herald_core::Duration::from_secs(15),
            "a grace period"
        );
        directory.handle_timeout(now + herald_core::Duration::from_secs(14));
        assert_eq!(directory.live(), 3, "nothing expired at the restart");
    }
}
