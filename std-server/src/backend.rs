//! Where `herald serve` keeps its registry: the embedded redb store of a directory
//! alone ([`Local`]), or etcd, shared by the directories of a cluster (`cluster::Cluster`,
//! with the `etcd` feature).
//!
//! The serve loop talks to a [`Backend`] only: it hands it each wake-up's storage
//! events ([`Backend::persist`], before anything is sent), wakes it when its deadline
//! passes ([`Backend::tick`]), feeds the directory what it reports
//! ([`Backend::input`], [`Backend::handle`]) and closes it at shutdown.

use crate::clock::Clock;
use crate::storage::{Batch, Loaded, StorageError, Store};
use herald_core::{Directory, DirectoryEvent, ServiceName, Version};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Renewals are written at once but synced to disk at most this late (a durable write
/// of a new, changed or removed service syncs them sooner). A crash loses at most this
/// much of the leases' extensions; registrants renew well before their leases end.
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

/// The embedded redb store of a directory alone.
#[derive(Debug)]
pub struct Local {
    store: Store,
    /// Since when lease renewals have been written but not synced to disk.
    unsynced_since: Option<Instant>,
    /// Deletions whose write failed, kept until a write succeeds (the directory has
    /// forgotten these names; everything else it hands out again itself).
    unwritten_removals: BTreeMap<String, ServiceName>,
    /// While writes fail: when to reopen the store and try again.
    retry_at: Option<Instant>,
    /// Writes failed in a row.
    failures: u32,
    writes: u64,
    errors: u64,
}

impl Local {
    /// Writes this wake-up's storage events in one transaction. When the write fails
    /// the directory is told ([`Directory::storage_failed`]: nothing is acknowledged,
    /// everything is handed out again); later calls reopen the store and write
    /// everything again, with back-off, until a write succeeds
    /// ([`Directory::storage_recovered`]).
    fn persist(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        let retrying = self.retry_at.is_some();
        if let Some(at) = self.retry_at {
            if Instant::now() < at {
                // Not yet: the changes wait in the directory.
                return;
            }
            // redb refuses every transaction after an I/O error until it is reopened.
            if let Err(e) = self.store.reopen() {
                return self.failed(directory, clock, &e);
            }
        }
        let wall = clock.wall();
        let mut batch = Batch::default();
        // Earlier deletions first: a later change of the same name wins.
        for name in self.unwritten_removals.values() {
            batch.removed(name);
        }
        let mut removed = Vec::new();
        while let Some(event) = directory.poll_event() {
            match event {
                DirectoryEvent::Stored(record) => batch.stored(record, wall),
                DirectoryEvent::Renewed(record) => batch.renewed(record, wall),
                DirectoryEvent::Removed(name) => {
                    batch.removed(&name);
                    removed.push(name);
                }
            }
        }
        if batch.is_empty() && !retrying {
            return;
        }
        batch.as_of(directory.as_of());
        batch.make_durable_if(retrying);
        match self.store.save(&batch) {
            Ok(()) => {
                self.writes += 1;
                self.unwritten_removals.clear();
                if batch.is_durable() {
                    self.unsynced_since = None;
                } else {
                    self.unsynced_since.get_or_insert_with(Instant::now);
                }
                if self.retry_at.take().is_some() {
                    self.failures = 0;
                    directory.storage_recovered(clock.now());
                    tracing::warn!(
                        records = batch.len(),
                        "storage writable again: the registry is on disk, requests are taken"
                    );
                }
            }
            Err(e) => {
                for name in removed {
                    self.unwritten_removals
                        .insert(name.as_str().to_owned(), name);
                }
                self.failed(directory, clock, &e);
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

    /// Makes written renewals durable.
    fn sync(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        if self.unsynced_since.take().is_some() {
            if let Err(e) = self.store.sync() {
                self.failed(directory, clock, &e);
            }
        }
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
    Local(Local),
    /// etcd, shared with other directories.
    #[cfg(feature = "etcd")]
    Etcd(Box<crate::cluster::Cluster>),
}

impl Backend {
    /// The redb store, opened and read already.
    pub fn local(store: Store) -> Backend {
        Backend::Local(Local {
            store,
            unsynced_since: None,
            unwritten_removals: BTreeMap::new(),
            retry_at: None,
            failures: 0,
            writes: 0,
            errors: 0,
        })
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
            Backend::Local(local) => Location::Data(local.store.path().display().to_string()),
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
            Backend::Local(local) => {
                let sync = local.unsynced_since.map(|t| t + SYNC_RENEWALS_AFTER);
                sync.into_iter().chain(local.retry_at).min()
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.deadline(),
        }
    }

    /// The next input for the directory (cancel-safe; never, for redb).
    pub async fn input(&mut self) -> Input {
        match self {
            Backend::Local(_) => std::future::pending().await,
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => Input::Cluster(cluster.input().await),
        }
    }

    /// Takes an input into the directory.
    pub async fn handle(&mut self, input: Input, directory: &mut Directory<'_>, clock: &Clock) {
        #[cfg(feature = "etcd")]
        if let (Backend::Etcd(cluster), Input::Cluster(input)) = (self, input) {
            cluster.handle(input, directory, clock).await;
        }
        #[cfg(not(feature = "etcd"))]
        {
            let _ = (directory, clock);
            match input {}
        }
    }

    /// Stores this wake-up's storage events: what must be durable is, before this
    /// returns (unless the store is unreachable: then it is queued).
    pub async fn persist(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => local.persist(directory, clock),
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.persist(directory, clock).await,
        }
    }

    /// Does what is due by [`deadline`](Self::deadline).
    pub async fn tick(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => {
                if local
                    .unsynced_since
                    .is_some_and(|t| t.elapsed() >= SYNC_RENEWALS_AFTER)
                {
                    local.sync(directory, clock);
                }
                // A retry that is due runs in the flush that follows.
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.tick(directory, clock).await,
        }
        let _ = (directory, clock);
    }

    /// At shutdown, after the last wake-up: makes everything durable (redb), or writes
    /// what is queued and resigns as publisher (etcd).
    pub async fn close(&mut self, directory: &mut Directory<'_>, clock: &Clock) {
        match self {
            Backend::Local(local) => {
                // One last attempt at once if the store was failing.
                if local.retry_at.is_some() {
                    local.retry_at = Some(Instant::now());
                    local.persist(directory, clock);
                }
                local.sync(directory, clock);
            }
            #[cfg(feature = "etcd")]
            Backend::Etcd(cluster) => cluster.close(directory, clock).await,
        }
        let _ = (directory, clock);
    }

    /// The store's state, for the metrics.
    pub fn status(&self) -> StoreStatus {
        match self {
            Backend::Local(local) => StoreStatus {
                reachable: true,
                queued: 0,
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
        let (store, loaded) = Store::open(data.path(), wall(T)).unwrap();
        let clock = Clock::new();
        let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let config = DirectoryConfig::new(Location::new(ip, 37399).unwrap(), group);
        let mut slots: Vec<Slot> = vec![None; 8];
        let mut index = vec![0u32; 8];
        let mut directory = Directory::new(config, &mut slots, &mut index).unwrap();
        let mut backend = Backend::local(store);
        let before = clock.now();
        backend
            .start(&mut directory, &clock, Start::Local(loaded))
            .unwrap();
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
