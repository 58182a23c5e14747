//! The directory's registry: fixed-capacity, name-ordered, with leases, versions and the
//! state of each removed service while its unregistered notifications are still due.

use crate::name::ServiceName;
use crate::service::{Registration, Service, Version};
use crate::table::{Named, Table};
use crate::time::Instant;
use crate::wire::message::{locations_to_wire, validate_registration, LocationsWire};
use serde::{Deserialize, Serialize};

mod lists;

pub(crate) use lists::List;

/// Why the registry refused a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryError {
    /// Every slot holds a live service.
    Full,
}

impl core::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the registry is full")
    }
}

impl core::error::Error for RegistryError {}

/// Where a service is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    /// Live until its lease runs out at `expires`.
    Live {
        /// When the lease runs out unless renewed.
        expires: Instant,
    },
    /// Removed (unregistered or expired); `remaining` unregistered notifications are
    /// still to be sent.
    Departed {
        /// Notifications still to send.
        remaining: u8,
    },
}

/// One service as the directory keeps (and a shell persists) it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its registration and current version (for a departed service, the version of the
    /// removal).
    pub service: Service,
    /// Who holds the name.
    pub registrant: u64,
    /// The highest request sequence applied for this name (see
    /// [`RegisterRequest::sequence`](crate::wire::RegisterRequest::sequence)); 0 for a
    /// record stored before sequences existed. Stored with the record so that every
    /// directory sharing the registry refuses the same late or replayed requests.
    pub sequence: u64,
    /// Live or departed.
    pub state: RecordState,
    /// For a departed record, the version of the live registration its removal ended
    /// (`Version(0)` when unknown: a record stored before this field existed, or a live
    /// record). Lets directories sharing a store tell whether two removals of a name are
    /// one to listeners (no live version between them) whatever their contents.
    pub ended: Version,
    /// For a departed record whose count of notifications still owed was taken over from
    /// an older removal of the name (one removal to listeners), the version that count
    /// was counted from: the notifications already sent may have been announced at
    /// that version, so they told only listeners that held an older one.
    /// `Version(0)` when the count is the removal's own (see [`Record::counted_from`]).
    pub counted_from: Version,
}

impl Record {
    /// True while the service is live.
    pub fn is_live(&self) -> bool {
        matches!(self.state, RecordState::Live { .. })
    }

    /// The lowest version the notifications already counted for this removal may have
    /// been announced at: every listener holding a live version below it was told.
    pub fn counted_from(&self) -> Version {
        match self.counted_from {
            Version(0) => self.service.version,
            v => v.min(self.service.version),
        }
    }

    /// Sets [`counted_from`](Self::counted_from) (stored as 0 when it is the record's own
    /// version).
    pub fn set_counted_from(&mut self, version: Version) {
        self.counted_from = if version < self.service.version {
            version
        } else {
            Version(0)
        };
    }

    /// The service name.
    pub fn name(&self) -> &ServiceName {
        self.service.name()
    }
}

/// A registry entry: the record and the directory's bookkeeping for announcements.
#[derive(Clone, Debug)]
pub struct Entry {
    pub(crate) record: Record,
    /// A live change not yet announced.
    pub(crate) announce: bool,
    /// An unregistered notification is due in this processing interval.
    pub(crate) due: bool,
    /// The stored form changed and the shell has not been told yet.
    pub(crate) dirty: bool,
    /// Registered announcements still to repeat, one per processing interval.
    pub(crate) repeats: u8,
    /// The stored form changed in a way that must be durable before the next send.
    pub(crate) durable: bool,
    /// The name of the entry this one replaced in its slot, while the shell has not yet
    /// been told to delete it from storage.
    pub(crate) evicted: Option<ServiceName>,
    /// For a departed entry: when its tombstone may be reaped (the retention time after
    /// this directory saw it depart); once finished, it is kept as a tombstone until then.
    pub(crate) reap_at: Instant,
    /// The address the registration came from (in memory only: the directory's
    /// per-source registration budgets count it); `None` when restored or taken from
    /// the replicated store.
    pub(crate) source: Option<core::net::IpAddr>,
    /// The newest version this directory held the entry live at (0: never live here). A
    /// removal older than it removed an earlier registration, not the one held.
    pub(crate) live_version: Version,
    /// The `as_of` of the announcement that first carried this state ([`UNANNOUNCED`]
    /// until one has; 0 for a state restored or held from before): a repair since a
    /// version sends the states stamped after it.
    pub(crate) stamp: Version,
    /// Its place in each family of the registry's lists (see the `lists` module).
    pub(crate) links: [lists::Links; lists::FAMILIES],
}

/// The stamp of a state no announcement has carried yet.
pub(crate) const UNANNOUNCED: Version = Version(u64::MAX);

impl Entry {
    /// An entry for `record` with nothing to announce yet.
    pub(crate) fn new(record: Record) -> Self {
        let live_version = if record.is_live() {
            record.service.version
        } else {
            Version(0)
        };
        Entry {
            live_version,
            record,
            announce: false,
            due: false,
            dirty: false,
            repeats: 0,
            durable: false,
            evicted: None,
            reap_at: Instant::ZERO,
            source: None,
            stamp: Version(0),
            links: [lists::Links::NONE; lists::FAMILIES],
        }
    }
}

impl Named for Entry {
    fn name(&self) -> &str {
        self.record.service.registration.name.as_str()
    }
}

/// One place in the registry's storage. Make storage with
/// [`DirectoryStorage`](crate::directory::DirectoryStorage), or with
/// `vec![None; capacity]` and `vec![0u32; capacity]` where there is a heap.
pub type Slot = Option<Entry>;

/// The registry over caller-owned storage: the name-ordered table of entries, and the
/// lists that find entries by stamp, reap time and pending work (see the `lists`
/// module), linked through the entries themselves. Reading goes through the table
/// (`Deref`); every change goes through the registry, which keeps the lists right.
#[derive(Debug)]
pub struct Registry<'a> {
    table: Table<'a, Entry>,
    lists: lists::Lists,
}

impl<'a> core::ops::Deref for Registry<'a> {
    type Target = Table<'a, Entry>;

    fn deref(&self) -> &Table<'a, Entry> {
        &self.table
    }
}

impl<'a> Registry<'a> {
    /// A registry over `slots` and `index` (see [`Table::new`]).
    pub fn new(slots: &'a mut [Slot], index: &'a mut [u32]) -> Self {
        Registry {
            table: Table::new(slots, index),
            lists: lists::Lists::EMPTY,
        }
    }

    /// Ends the registry and hands back its storage (see [`Table::into_parts`]).
    pub fn into_parts(self) -> (&'a mut [Slot], &'a mut [u32]) {
        self.table.into_parts()
    }

    /// Inserts an entry whose name is not present (see [`Table::insert`]).
    // The entry is given back whole, as the table does: no copy is made on success.
    #[allow(clippy::result_large_err)]
    pub fn insert(&mut self, mut entry: Entry) -> Result<usize, Entry> {
        entry.links = [lists::Links::NONE; lists::FAMILIES];
        let slot = self.table.insert(entry)?;
        for family in lists::ALL {
            lists::link(&mut self.table, &mut self.lists, slot, family);
        }
        Ok(slot)
    }

    /// Removes and returns the entry in `slot`; the entry in the last slot moves into
    /// it (see [`Table::remove`]).
    pub fn remove(&mut self, slot: usize) -> Option<Entry> {
        let places = lists::places(self.table.get(slot)?);
        for (family, place) in lists::ALL.into_iter().zip(places) {
            if let Some(place) = place {
                lists::unlink(&mut self.table, &mut self.lists, slot, family, place);
            }
        }
        let last = self.table.len() - 1;
        let gone = self.table.remove(slot)?;
        if slot != last {
            lists::moved(&mut self.table, &mut self.lists, last, slot);
        }
        Some(gone)
    }

    /// The entry in `slot`, to change (not its name); the lists follow the change when
    /// the access ends.
    pub fn get_mut(&mut self, slot: usize) -> Option<EntryMut<'_, 'a>> {
        let entry = self.table.get(slot)?;
        let (indexed, links) = (lists::places(entry), entry.links);
        Some(EntryMut {
            registry: self,
            slot,
            indexed,
            links,
        })
    }
}

/// Mutable access to one entry of the [`Registry`]: when it ends, the entry moves to
/// the lists its new state puts it in.
#[derive(Debug)]
pub struct EntryMut<'r, 'a> {
    registry: &'r mut Registry<'a>,
    slot: usize,
    /// The places the entry is linked at, in each family.
    indexed: [Option<lists::Place>; lists::FAMILIES],
    /// Its links (kept should the whole entry be replaced).
    links: [lists::Links; lists::FAMILIES],
}

impl core::ops::Deref for EntryMut<'_, '_> {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        match self.registry.table.get(self.slot) {
            Some(e) => e,
            None => unreachable!("an EntryMut is made only for a slot that holds an entry"),
        }
    }
}

impl core::ops::DerefMut for EntryMut<'_, '_> {
    fn deref_mut(&mut self) -> &mut Entry {
        match self.registry.table.get_mut(self.slot) {
            Some(e) => e,
            None => unreachable!("an EntryMut is made only for a slot that holds an entry"),
        }
    }
}

impl Drop for EntryMut<'_, '_> {
    fn drop(&mut self) {
        let Some(e) = self.registry.table.get_mut(self.slot) else {
            return;
        };
        // Only the lists change links, and none can while this access lasts: an entry
        // replaced whole (`*e = new`) keeps its place in them.
        e.links = self.links;
        let now = lists::places(e);
        let Registry { table, lists } = &mut *self.registry;
        for (family, (was, is)) in lists::ALL
            .into_iter()
            .zip(self.indexed.into_iter().zip(now))
        {
            if was != is {
                if let Some(was) = was {
                    lists::unlink(table, lists, self.slot, family, was);
                }
                lists::link(table, lists, self.slot, family);
            }
        }
    }
}

// ---- persistence --------------------------------------------------------------------

/// Longest encoded [`Record`] in bytes.
pub const MAX_RECORD_LEN: usize = 320;

/// The stored layout. Records written before removals named where their count came
/// from end after `ended`, those written before removals named the version they ended
/// after `sequence`, and those written before sequences after `remaining`: they are
/// read with 0 for what they lack.
#[derive(Serialize, Deserialize)]
struct RecordWire<'a> {
    name: &'a str,
    version: u64,
    registrant: u64,
    locations: LocationsWire,
    metadata: &'a [u8],
    /// Unix milliseconds when the lease runs out, for a live record.
    expires_unix_ms: Option<u64>,
    /// Notifications still due, for a departed record.
    remaining: u8,
    /// The highest request sequence applied.
    sequence: u64,
    /// The live version a departed record's removal ended (0: unknown).
    ended: u64,
    /// The version a departed record's count was counted from (0: its own).
    counted_from: u64,
}

/// How many older stored layouts [`Record::from_bytes`] reads: each one field (a varint)
/// short of the next.
const OLDER_LAYOUTS: usize = 3;

/// Reads `bytes` as exactly one `T`, with nothing left over.
fn exactly<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

/// Why a stored record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptRecord;

impl core::fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("stored record is corrupt")
    }
}

impl core::error::Error for CorruptRecord {}

/// Converts between the core's monotonic time and the wall clock, for records that must
/// outlive the process.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// The core's `now`.
    pub now: Instant,
    /// The wall clock at the same moment, in Unix milliseconds.
    pub unix_ms: u64,
}

impl WallClock {
    /// The wall clock, in Unix milliseconds, at `at`.
    pub fn unix_ms_at(&self, at: Instant) -> u64 {
        if at >= self.now {
            self.unix_ms + (at - self.now).as_millis()
        } else {
            self.unix_ms - (self.now - at).as_millis().min(self.unix_ms)
        }
    }

    /// The instant at wall-clock time `unix_ms` (no earlier than `now`).
    pub fn instant_at(&self, unix_ms: u64) -> Instant {
        self.now + crate::time::Duration::from_millis(unix_ms.saturating_sub(self.unix_ms))
    }
}

impl Record {
    /// Encodes the record for storage; lease expiry is stored as wall-clock time so that
    /// a restarted directory continues each lease where it was.
    pub fn to_bytes<'b>(&self, clock: WallClock, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let (expires_unix_ms, remaining) = match self.state {
            RecordState::Live { expires } => (Some(clock.unix_ms_at(expires)), 0),
            RecordState::Departed { remaining } => (None, remaining),
        };
        let r = &self.service.registration;
        let wire = RecordWire {
            name: r.name.as_str(),
            version: self.service.version.0,
            registrant: self.registrant,
            locations: locations_to_wire(&r.locations),
            metadata: r.metadata.encoded(),
            expires_unix_ms,
            remaining,
            sequence: self.sequence,
            ended: self.ended.0,
            counted_from: self.counted_from.0,
        };
        postcard::to_slice(&wire, buf).ok().map(|b| &*b)
    }

    /// Decodes a stored record.
    pub fn from_bytes(bytes: &[u8], clock: WallClock) -> Result<Record, CorruptRecord> {
        // The current layout, or an older one: each older layout is the next without
        // its last field (`sequence`, then `ended`), a varint that reads 0 as one zero
        // byte. So an older record is the current layout with zero bytes appended, and
        // no record reads as two layouts.
        let mut buf = [0u8; MAX_RECORD_LEN + OLDER_LAYOUTS];
        let len = bytes.len();
        let padded = buf.get_mut(..len + OLDER_LAYOUTS).ok_or(CorruptRecord)?;
        padded[..len].copy_from_slice(bytes);
        let padded: &[u8] = padded;
        let wire: RecordWire<'_> = (0..=OLDER_LAYOUTS)
            .find_map(|missing| exactly::<RecordWire<'_>>(&padded[..len + missing]))
            .ok_or(CorruptRecord)?;
        let registration: Registration =
            validate_registration(wire.name, &wire.locations, wire.metadata)
                .map_err(|_| CorruptRecord)?;
        let state = match wire.expires_unix_ms {
            Some(ms) => RecordState::Live {
                expires: clock.instant_at(ms),
            },
            None => RecordState::Departed {
                remaining: wire.remaining,
            },
        };
        Ok(Record {
            service: Service {
                registration,
                version: Version(wire.version),
            },
            registrant: wire.registrant,
            sequence: wire.sequence,
            state,
            ended: Version(wire.ended),
            counted_from: Version(wire.counted_from),
        })
    }
}

/// A record of `name` at 127.0.0.1:8080 at `version` in `state`, for tests.
#[cfg(test)]
pub(crate) fn test_record(name: &str, version: Version, state: RecordState) -> Record {
    let ip = core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST);
    let registration = Registration::new(
        ServiceName::new(name).unwrap(),
        &[crate::location::Location::new(ip, 8080).unwrap()],
    )
    .unwrap();
    Record {
        service: Service {
            registration,
            version,
        },
        registrant: 1,
        sequence: 1,
        state,
        ended: Version(0),
        counted_from: Version(0),
    }
}

/// A live entry for `name` at 127.0.0.1:8080 (version 1, lease to 60 s), for tests.
#[cfg(test)]
pub(crate) fn live_entry(name: &str) -> Entry {
    let expires = Instant::from_millis(60_000);
    Entry::new(test_record(name, Version(1), RecordState::Live { expires }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;
    use crate::metadata::Metadata;
    use crate::name::ServiceName;
    use core::net::{IpAddr, Ipv6Addr};

    fn longest() -> Record {
        let name = ServiceName::new(&"n".repeat(crate::name::MAX_NAME_LEN)).unwrap();
        let ip = IpAddr::V6(Ipv6Addr::new(0xfe80, 1, 2, 3, 4, 5, 6, 7));
        let locations: heapless::Vec<Location, { crate::MAX_LOCATIONS }> = (0..4)
            .map(|i| Location::new(ip, 60_000 + i).unwrap())
            .collect();
        let value = "v".repeat(crate::metadata::MAX_METADATA_LEN - 2);
        let mut metadata = Metadata::default();
        metadata.insert("k", &value).unwrap();
        let registration = Registration::new(name, &locations)
            .unwrap()
            .with_metadata(metadata);
        Record {
            service: Service {
                registration,
                version: Version(u64::MAX),
            },
            registrant: u64::MAX,
            sequence: u64::MAX,
            state: RecordState::Live {
                expires: Instant::from_millis(u64::MAX / 4),
            },
            ended: Version(u64::MAX),
            counted_from: Version(u64::MAX),
        }
    }

    fn clock() -> WallClock {
        WallClock {
            now: Instant::ZERO,
            unix_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn the_longest_record_fits_and_round_trips() {
        let record = longest();
        let mut buf = [0u8; MAX_RECORD_LEN];
        let bytes = record.to_bytes(clock(), &mut buf).expect("fits");
        let back = Record::from_bytes(bytes, clock()).unwrap();
        assert_eq!(back.sequence, u64::MAX);
        assert_eq!(back.ended, Version(u64::MAX));
        assert_eq!(back.counted_from, Version(u64::MAX));
        assert_eq!(back.service, record.service);
    }

    #[test]
    fn records_stored_in_older_layouts_are_read_with_zero_for_what_they_lack() {
        // Each older layout is the next without its last field: a record with sequence
        // 0, `ended` 0 and `counted_from` 0 ends in three 0 bytes; without one it is what
        // was written before `counted_from`, without two what was written before
        // `ended`, without all three what was written before sequences.
        let mut record = longest();
        record.sequence = 0;
        record.ended = Version(0);
        record.counted_from = Version(0);
        record.state = RecordState::Departed { remaining: 3 };
        let mut buf = [0u8; MAX_RECORD_LEN];
        let bytes = record.to_bytes(clock(), &mut buf).unwrap();
        assert!(bytes.ends_with(&[0, 0, 0]));
        let uncounted = &bytes[..bytes.len() - 1];
        assert_eq!(Record::from_bytes(uncounted, clock()).unwrap(), record);
        let unended = &bytes[..bytes.len() - 2];
        assert_eq!(Record::from_bytes(unended, clock()).unwrap(), record);
        let legacy = &bytes[..bytes.len() - 3];
        let back = Record::from_bytes(legacy, clock()).unwrap();
        assert_eq!(back, record);
        // No layout accepts trailing or missing bytes beyond that.
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(Record::from_bytes(&longer, clock()), Err(CorruptRecord));
        assert_eq!(
            Record::from_bytes(&legacy[..legacy.len() - 1], clock()),
            Err(CorruptRecord)
        );
    }
}
