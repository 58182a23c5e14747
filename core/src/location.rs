//! Where a service can be reached: [`Location`], a full socket address.

use core::fmt;
use core::net::{IpAddr, SocketAddr, SocketAddrV6};

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
/// with different ports are different locations.
///
/// A link-local IPv6 address (`fe80::/10`) also has a zone: the index of the interface
/// of *this* host that reaches it (the scope id of `[fe80::1%2]:80`), 0 when unknown.
/// Zones are local to a host (RFC 4007), so the wire does not carry them: a receiver
/// places a link-local address on its own link ([`Location::on_link_of`],
/// [`Location::in_zone`]). Other addresses have no zone; flow labels are not carried.
#[derive(Clone, Copy, Debug, Eq, PartialOrd, Ord)]
pub struct Location {
    ip: IpAddr,
    port: u16,
    zone: u32,
}

impl PartialEq for Location {
    /// Field by field, as derived, but out of line: one copy in a firmware.
    #[inline(never)]
    fn eq(&self, other: &Self) -> bool {
        self.ip == other.ip && self.port == other.port && self.zone == other.zone
    }
}

impl core::hash::Hash for Location {
    /// The fields [`PartialEq`] compares, in its order (as derived).
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.ip.hash(state);
        self.port.hash(state);
        self.zone.hash(state);
    }
}

impl Location {
    /// Validates and makes a location: port not 0, address neither unspecified nor
    /// multicast. It has no zone.
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
        Ok(Location { ip, port, zone: 0 })
    }

    /// Makes a location from a socket address, validated as [`Location::new`] does; a
    /// link-local IPv6 address keeps its scope id as its zone (other addresses drop it).
    pub fn from_socket_addr(addr: SocketAddr) -> Result<Self, LocationError> {
        let location = Self::new(addr.ip(), addr.port())?;
        Ok(match addr {
            SocketAddr::V6(a) => location.in_zone(a.scope_id()),
            SocketAddr::V4(_) => location,
        })
    }

    /// The host address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The zone of a link-local IPv6 address (an interface index of this host), 0 for
    /// none.
    pub fn zone(&self) -> u32 {
        self.zone
    }

    /// True for a link-local IPv6 address (`fe80::/10`), which needs a zone to be
    /// reached.
    pub fn is_link_local(&self) -> bool {
        matches!(self.ip, IpAddr::V6(a) if a.is_unicast_link_local())
    }

    /// This location in `zone` if its address is link-local (other addresses have no
    /// zone and are returned as they are).
    pub fn in_zone(self, zone: u32) -> Location {
        if self.is_link_local() {
            Location { zone, ..self }
        } else {
            self
        }
    }

    /// A link-local location without a zone, heard in a datagram from `from`, placed on
    /// the link that datagram came in on (the zone of a link-local `from`); anything
    /// else is returned as it is.
    pub fn on_link_of(self, from: SocketAddr) -> Location {
        match from {
            SocketAddr::V6(a) if self.zone == 0 => self.in_zone(a.scope_id()),
            _ => self,
        }
    }

    /// As a socket address (with the zone as scope id).
    pub fn socket_addr(&self) -> SocketAddr {
        match self.ip {
            IpAddr::V6(ip) => SocketAddr::V6(SocketAddrV6::new(ip, self.port, 0, self.zone)),
            IpAddr::V4(_) => SocketAddr::new(self.ip, self.port),
        }
    }

    /// Whether `addr` is this location as a socket address (a datagram's source, say).
    /// Out of line: a client compares many sources, and one copy in a firmware is
    /// smaller than one at each.
    #[inline(never)]
    pub fn is(&self, addr: SocketAddr) -> bool {
        self.socket_addr() == addr
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

    /// A location is the socket address it names (a link-local one with its zone as
    /// scope id) and no other: not another port, address or zone.
    #[test]
    fn is_the_socket_address_it_names() {
        let v4: SocketAddr = "192.0.2.1:80".parse().unwrap();
        let l = Location::from_socket_addr(v4).unwrap();
        assert!(l.is(v4));
        assert!(!l.is("192.0.2.1:81".parse().unwrap()));
        assert!(!l.is("192.0.2.2:80".parse().unwrap()));
        let zoned = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            80,
            0,
            3,
        ));
        let l = Location::from_socket_addr(zoned).unwrap();
        assert!(l.is(zoned));
        assert!(!l.is(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            80,
            0,
            4
        ))));
        assert_eq!(l, Location::from_socket_addr(zoned).unwrap());
    }

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

    fn v6(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn link_local_addresses_keep_their_zone() {
        let scoped = Location::from_socket_addr(v6("[fe80::1%2]:80")).unwrap();
        assert_eq!(scoped.zone(), 2);
        assert!(scoped.is_link_local());
        assert_eq!(scoped.socket_addr(), v6("[fe80::1%2]:80"));
        let other_link = Location::from_socket_addr(v6("[fe80::1%3]:80")).unwrap();
        assert_ne!(scoped, other_link);
        // Only link-local addresses have a zone.
        let ula = Location::from_socket_addr(v6("[fd00::1%2]:80")).unwrap();
        assert_eq!((ula.zone(), ula.socket_addr()), (0, v6("[fd00::1]:80")));
        assert_eq!(ula.in_zone(5), ula);
    }

    #[test]
    fn a_link_local_location_is_placed_on_the_link_it_came_from() {
        let heard = Location::from_socket_addr(v6("[fe80::1]:80")).unwrap();
        assert_eq!(heard.zone(), 0);
        let placed = heard.on_link_of(v6("[fe80::9%4]:37399"));
        assert_eq!(placed.socket_addr(), v6("[fe80::1%4]:80"));
        // A zone it has is kept; a source off the link gives none.
        assert_eq!(placed.on_link_of(v6("[fe80::9%7]:1")).zone(), 4);
        assert_eq!(heard.on_link_of(v6("[fd00::9]:1")).zone(), 0);
        let v4 = Location::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80).unwrap();
        assert_eq!(v4.on_link_of(v6("[fe80::9%4]:1")), v4);
    }
}
