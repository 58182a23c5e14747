//! The registry on disk: an embedded [redb](https://docs.rs/redb) database in the data
//! directory.
//!
//! The directory's storage events are written in batches, one transaction each
//! ([`Batch`], [`Store::save`], on the writer thread of `crate::writer`), committed
//! durably before anything that shows them is sent, so a directory killed at any moment
//! comes back with every registration it had acknowledged, leases continuing by the
//! wall clock and unregister notifications still owed. Nothing here
//! ever deletes data because it could not be read: a corrupt file is reported (and left
//! as it is) for a person to look at.

use herald_core::directory::{Subscriber, MAX_SUBSCRIBER_LEN};
use herald_core::registry::{WallClock, MAX_RECORD_LEN};
use herald_core::{Record, ServiceName, Version};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Services by name, each a [`Record::to_bytes`] encoding.
const RECORDS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("records");
/// Small counters: `as_of`, the newest version handed out.
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Unicast subscribers by id, each a [`Subscriber::to_bytes`] encoding.
const SUBSCRIBERS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("subscribers");
const AS_OF: &str = "as_of";
/// The database file inside the data directory.
pub const FILE_NAME: &str = "registry.redb";

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created or reached.
    #[error("cannot use data directory {path}: {source}")]
    Directory {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the database.
    #[error("data directory {path} is in use by another herald process")]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a readable registry; it was left untouched.
    #[error(
        "corrupt data directory: {path}: {detail}. Nothing was changed or deleted: move the \
         file away (or restore a backup) to start with an empty registry"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Reading or writing failed.
    #[error("storage error in {path}: {detail}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// What was stored: the records and the newest version handed out.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every stored record (live and departed).
    pub records: Vec<Record>,
    /// The newest version handed out before (0 for a new store).
    pub as_of: Version,
    /// Every stored subscriber.
    pub subscribers: Vec<Subscriber>,
}

/// Changes to be written together (everything taken while the previous write ran).
#[derive(Debug, Default)]
pub struct Batch {
    /// Name → encoded record, or `None` to delete. The last change of a name wins.
    changes: BTreeMap<String, Option<Vec<u8>>>,
    as_of: Option<Version>,
    /// Subscriber id → encoded subscriber, or `None` to delete. The last change wins.
    subscribers: BTreeMap<u64, Option<Vec<u8>>>,
    /// `subscribers` stores every subscriber held: the stored table is replaced with
    /// them (see [`Batch::replace_subscribers`]).
    replace_subscribers: bool,
    /// Something in the batch must be on disk before the next acknowledgement.
    durable: bool,
}

impl Batch {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.as_of.is_none()
            && self.subscribers.is_empty()
            && !self.replace_subscribers
    }

    /// How many records change.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Stores `record` (its lease as wall-clock time per `clock`), durably.
    pub fn stored(&mut self, record: &Record, clock: WallClock) {
        self.durable = true;
        self.renewed(record, clock);
    }

    /// Stores `record` whose lease (or count of notifications owed) is all that changed:
    /// it need not be durable at once (see [`Store::sync`]).
    pub fn renewed(&mut self, record: &Record, clock: WallClock) {
        let mut buf = [0u8; MAX_RECORD_LEN];
        match record.to_bytes(clock, &mut buf) {
            Some(bytes) => {
                self.changes
                    .insert(record.name().as_str().to_owned(), Some(bytes.to_vec()));
            }
            None => tracing::error!(name = %record.name(), "record too large to store"),
        }
    }

    /// Makes the whole batch durable when `durable` (a retry after a failure rewrites
    /// everything, renewals included).
    pub fn make_durable_if(&mut self, durable: bool) {
        self.durable |= durable;
    }

    /// True when the batch must be durable before the next acknowledgement.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Deletes the record of `name`, durably.
    pub fn removed(&mut self, name: &ServiceName) {
        self.durable = true;
        self.changes.insert(name.as_str().to_owned(), None);
    }

    /// True when the batch writes or deletes the record of `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.changes.contains_key(name)
    }

    /// Drops the batch's change of the record of `name` (a newer one is written
    /// elsewhere).
    pub fn forget(&mut self, name: &str) {
        self.changes.remove(name);
    }

    /// Stores `subscriber` (its lease as wall-clock time per `clock`); it need not be
    /// durable at once (a subscription lost in a crash is taken again when renewed).
    pub fn subscriber_stored(&mut self, subscriber: &Subscriber, clock: WallClock) {
        let mut buf = [0u8; MAX_SUBSCRIBER_LEN];
        match subscriber.to_bytes(clock, &mut buf) {
            Some(bytes) => {
                self.subscribers.insert(subscriber.id, Some(bytes.to_vec()));
            }
            None => tracing::error!(id = subscriber.id, "subscriber too large to store"),
        }
    }

    /// Deletes the subscriber `id`.
    pub fn subscriber_removed(&mut self, id: u64) {
        self.subscribers.insert(id, None);
    }

    /// The subscribers this batch stores are every one the directory holds (it handed
    /// them all out after [`Directory::storage_failed`](herald_core::Directory::storage_failed)):
    /// writing it deletes every other stored subscriber, among them any whose deletion
    /// was in a write that failed. Bounded by the subscriber table, unlike a list of
    /// such deletions.
    pub fn replace_subscribers(&mut self) {
        self.replace_subscribers = true;
    }

    /// Records the newest version handed out.
    pub fn as_of(&mut self, version: Version) {
        self.as_of = Some(version);
    }

    /// The newest version handed out, as recorded.
    pub fn version(&self) -> Option<Version> {
        self.as_of
    }

    /// Adds the changes of `later` after these (a change of the same name in `later`
    /// wins).
    pub fn append(&mut self, later: Batch) {
        self.changes.extend(later.changes);
        if later.replace_subscribers {
            self.subscribers = later.subscribers;
            self.replace_subscribers = true;
        } else {
            self.subscribers.extend(later.subscribers);
        }
        self.as_of = later.as_of.or(self.as_of);
        self.durable |= later.durable;
    }
}

/// The open database.
pub struct Store {
    /// `None` only while [`Store::reopen`] runs (or after it failed).
    db: Option<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn panic_detail(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the database engine failed while reading it".to_owned())
}

impl Store {
    /// Opens (or creates) the store in `dir` and reads everything in it. Records are
    /// decoded with `clock` (leases continue by the wall clock).
    pub fn open(dir: &Path, clock: WallClock) -> Result<(Store, Loaded), StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        // The engine may panic on a damaged file: report that as corruption, never crash
        // (and never touch the file).
        let opened = catch_unwind(AssertUnwindSafe(|| Self::open_and_load(&path, clock)));
        opened.unwrap_or_else(|panic| {
            Err(StorageError::Corrupt {
                path: path.clone(),
                detail: panic_detail(panic),
            })
        })
    }

    fn open_and_load(path: &Path, clock: WallClock) -> Result<(Store, Loaded), StorageError> {
        let corrupt = |detail: String| StorageError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        // redb would take an empty file for a new database and write a fresh one over
        // it: a registry truncated to nothing must be looked at, not replaced.
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => {
                return Err(corrupt("not a regular file".to_owned()));
            }
            Ok(meta) if meta.len() == 0 => {
                return Err(corrupt("the file is empty (0 bytes)".to_owned()));
            }
            _ => {}
        }
        let db = Self::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StorageError::InUse {
                path: path.to_owned(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if e.kind() != std::io::ErrorKind::InvalidData =>
            {
                StorageError::Io {
                    path: path.to_owned(),
                    detail: e.to_string(),
                }
            }
            other => corrupt(other.to_string()),
        })?;
        let store = Store {
            db: Some(db),
            path: path.to_owned(),
        };
        // Make sure every table exists, so that reading never meets a missing table.
        store.write(Durability::Immediate, |records, meta, subscribers| {
            let _ = (records, meta, subscribers);
            Ok(())
        })?;
        let loaded = store.load(clock).map_err(|e| match e {
            StorageError::Io { detail, .. } => corrupt(detail),
            other => other,
        })?;
        Ok((store, loaded))
    }

    fn create(path: &Path) -> Result<Database, redb::DatabaseError> {
        Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
    }

    /// Closes and opens the database again: after a failed write (a full disk, say)
    /// redb refuses every later transaction until it is reopened, which also rolls the
    /// file back to its last committed state.
    pub fn reopen(&mut self) -> Result<(), StorageError> {
        self.db = None;
        let path = self.path.clone();
        let reopened = catch_unwind(AssertUnwindSafe(|| Self::create(&path)));
        match reopened {
            Ok(Ok(db)) => {
                self.db = Some(db);
                Ok(())
            }
            Ok(Err(e)) => Err(self.io(e)),
            Err(panic) => Err(self.io(panic_detail(panic))),
        }
    }

    fn db(&self) -> Result<&Database, StorageError> {
        self.db
            .as_ref()
            .ok_or_else(|| self.io("the database is closed after a failed reopen"))
    }

    fn io(&self, e: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    fn load(&self, clock: WallClock) -> Result<Loaded, StorageError> {
        let txn = self.db()?.begin_read().map_err(|e| self.io(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
        let meta = txn.open_table(META).map_err(|e| self.io(e))?;
        let as_of = meta
            .get(AS_OF)
            .map_err(|e| self.io(e))?
            .map_or(0, |v| v.value());
        let mut loaded = Loaded {
            records: Vec::new(),
            as_of: Version(as_of),
            subscribers: Vec::new(),
        };
        let subscribers = txn.open_table(SUBSCRIBERS).map_err(|e| self.io(e))?;
        for item in subscribers.iter().map_err(|e| self.io(e))? {
            let (key, value) = item.map_err(|e| self.io(e))?;
            let subscriber = Subscriber::from_bytes(value.value(), clock).map_err(|e| {
                StorageError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("subscriber {:#x}: {e}", key.value()),
                }
            })?;
            if subscriber.id != key.value() {
                return Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("subscriber {:#x} holds {:#x}", key.value(), subscriber.id),
                });
            }
            loaded.subscribers.push(subscriber);
        }
        for item in records.iter().map_err(|e| self.io(e))? {
            let (key, value) = item.map_err(|e| self.io(e))?;
            let record =
                Record::from_bytes(value.value(), clock).map_err(|e| StorageError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("record {:?}: {e}", key.value()),
                })?;
            if record.name().as_str() != key.value() {
                return Err(StorageError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("record {:?} holds {:?}", key.value(), record.name()),
                });
            }
            loaded.records.push(record);
        }
        Ok(loaded)
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(
            &mut redb::Table<'_, &str, &[u8]>,
            &mut redb::Table<'_, &str, u64>,
            &mut redb::Table<'_, u64, &[u8]>,
        ) -> Result<(), redb::StorageError>,
    ) -> Result<(), StorageError> {
        let mut txn = self.db()?.begin_write().map_err(|e| self.io(e))?;
        txn.set_durability(durability).map_err(|e| self.io(e))?;
        {
            let mut records = txn.open_table(RECORDS).map_err(|e| self.io(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.io(e))?;
            let mut subscribers = txn.open_table(SUBSCRIBERS).map_err(|e| self.io(e))?;
            f(&mut records, &mut meta, &mut subscribers).map_err(|e| self.io(e))?;
        }
        txn.commit().map_err(|e| self.io(e))
    }

    /// Writes a batch in one transaction: durable (synced to disk) when the batch says
    /// so, otherwise left for the next durable write or [`Store::sync`].
    pub fn save(&self, batch: &Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let durability = if batch.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write(durability, |records, meta, subscribers| {
            for (name, change) in &batch.changes {
                match change {
                    Some(bytes) => {
                        records.insert(name.as_str(), bytes.as_slice())?;
                    }
                    None => {
                        records.remove(name.as_str())?;
                    }
                }
            }
            if batch.replace_subscribers {
                subscribers
                    .retain(|id, _| batch.subscribers.get(&id).is_some_and(Option::is_some))?;
            }
            for (id, change) in &batch.subscribers {
                match change {
                    Some(bytes) => {
                        subscribers.insert(id, bytes.as_slice())?;
                    }
                    None => {
                        subscribers.remove(id)?;
                    }
                }
            }
            if let Some(v) = batch.as_of {
                meta.insert(AS_OF, v.0)?;
            }
            Ok(())
        })
    }

    /// Makes every earlier write durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.write(Durability::Immediate, |_, _, _| Ok(()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{Instant, Location, RecordState, Registration, Service};
    use std::net::{IpAddr, Ipv4Addr};

    fn record(name: &str, state: RecordState) -> Record {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let reg = Registration::new(
            ServiceName::new(name).unwrap(),
            &[Location::new(ip, 8080).unwrap()],
        )
        .unwrap();
        Record {
            service: Service {
                registration: reg,
                version: Version(42),
            },
            registrant: 7,
            sequence: 0,
            state,
            ended: Version(0),
            counted_from: Version(0),
        }
    }

    fn clock(now_ms: u64, unix_ms: u64) -> WallClock {
        WallClock {
            now: Instant::from_millis(now_ms),
            unix_ms,
        }
    }

    #[test]
    fn round_trip_keeps_leases_by_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let live = record(
            "billing",
            RecordState::Live {
                expires: Instant::from_millis(10_000),
            },
        );
        let gone = record("gone", RecordState::Departed { remaining: 7 });
        let dropped = record("dropped", RecordState::Departed { remaining: 1 });
        {
            let (store, loaded) = Store::open(dir.path(), clock(1_000, 1_000_000)).unwrap();
            assert!(loaded.records.is_empty());
            let mut batch = Batch::default();
            let wall = clock(1_000, 1_000_000);
            batch.stored(&live, wall);
            batch.stored(&gone, wall);
            batch.stored(&dropped, wall);
            batch.removed(dropped.name());
            batch.as_of(Version(99));
            store.save(&batch).unwrap();
        }
        // Restarted 2 s of wall time later, with a new monotonic origin.
        let (_store, loaded) = Store::open(dir.path(), clock(0, 1_002_000)).unwrap();
        assert_eq!(loaded.as_of, Version(99));
        let names: Vec<_> = loaded.records.iter().map(|r| r.name().as_str()).collect();
        assert_eq!(names, ["billing", "gone"]);
        assert_eq!(
            loaded.records[0].state,
            RecordState::Live {
                expires: Instant::from_millis(7_000)
            }
        );
        assert_eq!(loaded.records[1], gone);
    }

    #[test]
    fn renewals_are_written_lazily_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let live = record(
            "renewed",
            RecordState::Live {
                expires: Instant::from_millis(10_000),
            },
        );
        {
            let (store, _) = Store::open(dir.path(), clock(1_000, 1_000_000)).unwrap();
            let mut batch = Batch::default();
            batch.renewed(&live, clock(1_000, 1_000_000));
            assert!(!batch.is_durable());
            store.save(&batch).unwrap();
            store.sync().unwrap();
            let mut batch = Batch::default();
            batch.removed(live.name());
            assert!(batch.is_durable());
        }
        let (_, loaded) = Store::open(dir.path(), clock(1_000, 1_000_000)).unwrap();
        assert_eq!(loaded.records.len(), 1);
        assert_eq!(loaded.records[0].name(), live.name());
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = Store::open(dir.path(), clock(0, 1)).unwrap();
        let err = Store::open(dir.path(), clock(0, 1)).unwrap_err();
        assert!(matches!(err, StorageError::InUse { .. }), "{err}");
    }

    #[test]
    fn garbage_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // Bounded pseudo-random garbage, 64 KiB.
        let mut x: u32 = 0x9e37_79b9;
        let garbage: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(&path, &garbage).unwrap();
        let err = Store::open(dir.path(), clock(0, 1)).unwrap_err();
        assert!(err.to_string().contains("corrupt data directory"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), garbage);
    }

    #[test]
    fn an_empty_file_or_a_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, b"").unwrap();
        let err = Store::open(dir.path(), clock(0, 1)).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("empty"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = Store::open(dir.path(), clock(0, 1)).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_bad_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path(), clock(0, 1)).unwrap();
            store
                .write(Durability::Immediate, |records, _, _| {
                    records.insert("x", &[0xff, 0xff][..]).map(|_| ())
                })
                .unwrap();
        }
        let err = Store::open(dir.path(), clock(0, 1)).unwrap_err();
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
