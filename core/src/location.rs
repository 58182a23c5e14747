//! Where a service can be reached: [`Location`], a full socket address.

use core::fmt;
use core::net::{IpAddr, SocketAddr};

/// Most locations one registration may carry.
pub const MAX_LOCATIONS: usize = 4;

/// The locations of one service, 1 to [`MAX_LOCATIONS`] of them, in registration order.
pub type Locations = heapless::Vec<Location, MAX_LOCATIONS>;

/// Why a location was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationError {
    /// Port 0 is not a place anyone can reach.
    PortZero,
    /// The unspecified address (`0.0.0.0` or `::`) is not a place anyone can reach.
    Unspecified,
    /// A multicast address cannot be a service location.
    Multicast,
    /// A registration needs at least one location.
    NoLocations,
    /// More locations than [`MAX_LOCATIONS`].
    TooManyLocations,
    /// The same location appears twice.
    Duplicate,
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LocationError::PortZero => "port 0 is not reachable",
            LocationError::Unspecified => {
                "the unspecified address (0.0.0.0 or ::) is not reachable"
            }
            LocationError::Multicast => "a multicast address cannot be a service location",
            LocationError::NoLocations => "at least one location is needed",
            LocationError::TooManyLocations => "too many locations (at most 4)",
            LocationError::Duplicate => "the same location is given twice",
        })
    }
}

impl core::error::Error for LocationError {}

/// A reachable socket address: IPv4 or IPv6 host *and* port. Two services on one host
/// with different ports are different locations. IPv6 flow labels and scope ids are not
/// carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    ip: IpAddr,
    port: u16,
}

impl Location {
    /// Validates and makes a location: port not 0, address neither unspecified nor
    /// multicast.
    pub fn new(ip: IpAddr, port: u16) -> Result<Self, LocationError> {
        if port == 0 {
            return Err(LocationError::PortZero);
        }
        if ip.is_unspecified() {
            return Err(LocationError::Unspecified);
        }
        if ip.is_multicast() {
            return Err(LocationError::Multicast);
        }
        Ok(Location { ip, port })
    }

    /// Makes a location from a socket address, validated as [`Location::new`] does.
    pub fn from_socket_addr(addr: SocketAddr) -> Result<Self, LocationError> {
        Self::new(addr.ip(), addr.port())
    }

    /// The host address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// As a socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<Location> for SocketAddr {
    fn from(l: Location) -> SocketAddr {
        l.socket_addr()
    }
}

impl TryFrom<SocketAddr> for Location {
    type Error = LocationError;
    fn try_from(addr: SocketAddr) -> Result<Self, LocationError> {
        Self::from_socket_addr(addr)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.socket_addr(), f)
    }
}

/// Checks a list of locations: 1 to [`MAX_LOCATIONS`], no duplicates.
pub fn check_locations(locations: &[Location]) -> Result<(), LocationError> {
    if locations.is_empty() {
        return Err(LocationError::NoLocations);
    }
    if locations.len() > MAX_LOCATIONS {
        return Err(LocationError::TooManyLocations);
    }
    for (i, a) in locations.iter().enumerate() {
        if locations[..i].contains(a) {
            return Err(LocationError::Duplicate);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn validation() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(Location::new(lo, 80).is_ok());
        assert_eq!(Location::new(lo, 0), Err(LocationError::PortZero));
        assert_eq!(
            Location::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80),
            Err(LocationError::Unspecified)
        );
        assert_eq!(
            Location::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 80),
            Err(LocationError::Unspecified)
        );
        assert_eq!(
            Location::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 80),
            Err(LocationError::Multicast)
        );
    }

    #[test]
    fn same_host_different_port_differ() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let a = Location::new(lo, 80).unwrap();
        let b = Location::new(lo, 81).unwrap();
        assert_ne!(a, b);
        assert_eq!(check_locations(&[a, b]), Ok(()));
        assert_eq!(check_locations(&[a, a]), Err(LocationError::Duplicate));
        assert_eq!(check_locations(&[]), Err(LocationError::NoLocations));
    }
}
