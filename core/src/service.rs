//! What is registered and what is announced: [`Registration`], [`Service`] and
//! [`Version`].

use crate::location::{check_locations, Location, LocationError, Locations};
use crate::metadata::Metadata;
use crate::name::ServiceName;
use core::fmt;

/// The version of a service's state in the directory. Every change (registration,
/// change of locations or metadata, unregistration, expiry) gets a larger version than
/// any before it, so a receiver can ignore a stale or repeated datagram by comparing
/// versions. A directory seeds its versions from the shell's wall clock (microseconds
/// since the Unix epoch where one is known), so versions from directories that follow
/// one another stay ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// What a registrant asks the directory to publish: a name, where it can be reached,
/// and optional metadata.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Registration {
    /// The service name.
    pub name: ServiceName,
    /// 1 to [`MAX_LOCATIONS`](crate::MAX_LOCATIONS) socket addresses, no duplicates.
    pub locations: Locations,
    /// Optional key=value pairs.
    pub metadata: Metadata,
}

impl Registration {
    /// A registration of `name` at `locations`, validated (1 to 4 distinct locations).
    pub fn new(name: ServiceName, locations: &[Location]) -> Result<Self, LocationError> {
        check_locations(locations)?;
        let mut list = Locations::new();
        list.extend_from_slice(locations)
            .map_err(|_| LocationError::TooManyLocations)?;
        Ok(Registration {
            name,
            locations: list,
            metadata: Metadata::new(),
        })
    }

    /// The same registration with `metadata`.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// True when `other` would publish exactly the same thing (locations and metadata).
    pub fn same_content(&self, other: &Registration) -> bool {
        self.locations == other.locations && self.metadata == other.metadata
    }
}

/// A live service as the directory announces it: a registration and its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    /// Name, locations and metadata.
    pub registration: Registration,
    /// The version of this state.
    pub version: Version,
}

impl Service {
    /// The service name.
    pub fn name(&self) -> &ServiceName {
        &self.registration.name
    }
}
