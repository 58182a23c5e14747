//! The directory's registry: fixed-capacity, name-ordered, with leases, versions and the
//! state of each removed service while its unregistered notifications are still due.

use crate::name::ServiceName;
use crate::service::{Registration, Service, Version};
use crate::table::{Named, Table};
use crate::time::Instant;
use crate::wire::message::{locations_to_wire, validate_registration, LocationsWire};
use serde::{Deserialize, Serialize};

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
    /// Live or departed.
    pub state: RecordState,
}

impl Record {
    /// True while the service is live.
    pub fn is_live(&self) -> bool {
        matches!(self.state, RecordState::Live { .. })
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
    /// The address the registration came from (in memory only: the directory's
    /// per-source registration budgets count it); `None` when restored or taken from
    /// the replicated store.
    pub(crate) source: Option<core::net::IpAddr>,
}

impl Entry {
    /// An entry for `record` with nothing to announce yet.
    pub(crate) fn new(record: Record) -> Self {
        Entry {
            record,
            announce: false,
            due: false,
            dirty: false,
            repeats: 0,
            durable: false,
            source: None,
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

/// The registry over caller-owned storage.
pub type Registry<'a> = Table<'a, Entry>;

// ---- persistence --------------------------------------------------------------------

/// Longest encoded [`Record`] in bytes.
pub const MAX_RECORD_LEN: usize = 320;

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

impl Record {
    /// Encodes the record for storage; lease expiry is stored as wall-clock time so that
    /// a restarted directory continues each lease where it was.
    pub fn to_bytes<'b>(&self, clock: WallClock, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let (expires_unix_ms, remaining) = match self.state {
            RecordState::Live { expires } => {
                let ms = if expires >= clock.now {
                    clock.unix_ms + (expires - clock.now).as_millis()
                } else {
                    clock.unix_ms - (clock.now - expires).as_millis().min(clock.unix_ms)
                };
                (Some(ms), 0)
            }
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
        };
        postcard::to_slice(&wire, buf).ok().map(|b| &*b)
    }

    /// Decodes a stored record.
    pub fn from_bytes(bytes: &[u8], clock: WallClock) -> Result<Record, CorruptRecord> {
        let wire: RecordWire<'_> = postcard::from_bytes(bytes).map_err(|_| CorruptRecord)?;
        let registration: Registration =
            validate_registration(wire.name, &wire.locations, wire.metadata)
                .map_err(|_| CorruptRecord)?;
        let state = match wire.expires_unix_ms {
            Some(ms) => RecordState::Live {
                expires: clock.now
                    + crate::time::Duration::from_millis(ms.saturating_sub(clock.unix_ms)),
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
            state,
        })
    }
}
