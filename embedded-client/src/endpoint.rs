//! Conversions between the core's `core::net` addresses and smoltcp's endpoints
//! (embassy-net uses the same smoltcp types).

use crate::config::Error;
use core::net::SocketAddr;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// The smoltcp endpoint for `addr`, or [`Error::Ipv6Disabled`] when this build has no
/// IPv6.
pub fn to_endpoint(addr: SocketAddr) -> Result<IpEndpoint, Error> {
    let ip = match addr {
        SocketAddr::V4(v4) => IpAddress::Ipv4(*v4.ip()),
        #[cfg(feature = "ipv6")]
        SocketAddr::V6(v6) => IpAddress::Ipv6(*v6.ip()),
        #[cfg(not(feature = "ipv6"))]
        SocketAddr::V6(_) => return Err(Error::Ipv6Disabled),
    };
    Ok(IpEndpoint::new(ip, addr.port()))
}

/// The `core::net` address of a smoltcp endpoint.
pub fn from_endpoint(endpoint: IpEndpoint) -> SocketAddr {
    endpoint.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_round_trips() {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 37399);
        let endpoint = to_endpoint(addr).unwrap();
        assert_eq!(endpoint.port, 37399);
        assert_eq!(endpoint.addr, IpAddress::v4(192, 0, 2, 7));
        assert_eq!(from_endpoint(endpoint), addr);
    }

    #[test]
    fn ipv6_needs_the_feature() {
        let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 37399);
        let converted = to_endpoint(addr);
        if cfg!(feature = "ipv6") {
            assert_eq!(converted.map(from_endpoint), Ok(addr));
        } else {
            assert_eq!(converted, Err(Error::Ipv6Disabled));
        }
    }
}
