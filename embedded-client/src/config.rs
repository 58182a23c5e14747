//! The driver's settings ([`Config`]) and why a driver could not start ([`Error`]).

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use herald_core::{ClientConfig, ClientError};

/// The default announcement group, 237.37.37.1:37371 (the directory's default).
pub const DEFAULT_GROUP: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);

/// What a driver needs: the core client's settings and the multicast group to follow.
///
/// The driver binds one UDP socket to the group's port, joins the group on the
/// interface, and sends its requests from that socket, so directory replies and group
/// announcements arrive in one place.
#[derive(Clone, Debug)]
pub struct Config {
    /// The core client's settings (directories, interest, lease, timeouts).
    pub client: ClientConfig,
    /// The group the directories announce on (default [`DEFAULT_GROUP`]).
    pub group: SocketAddr,
}

impl Config {
    /// Defaults for a client identified by `registrant` that follows the default group
    /// and has no directory yet: it learns directories from their beacons on the group.
    /// Push known ones onto `client.directories` (in order of preference) to start at
    /// once. Add an interest to discover services.
    pub fn new(registrant: u64) -> Self {
        Config {
            client: ClientConfig::new(registrant),
            group: DEFAULT_GROUP,
        }
    }
}

/// Why a driver could not start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// The core refused the client settings.
    Client(ClientErrorKind),
    /// The group address is not a multicast address.
    GroupNotMulticast,
    /// A directory or the group is an IPv6 address and the `ipv6` feature is off.
    Ipv6Disabled,
    /// The datagram buffer is smaller than the configured maximum datagram.
    DatagramBuffer,
    /// The UDP socket could not be bound to the group's port.
    Bind,
    /// The interface could not join the group (its multicast table is full).
    Join,
}

/// [`ClientError`] in a form every logger can print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClientErrorKind {
    /// See [`ClientError::MaxDatagram`].
    MaxDatagram,
    /// See [`ClientError::ZeroTimeout`].
    ZeroTimeout,
    /// See [`ClientError::NoDiscovery`]: an interest, without the `listen` feature.
    NoDiscovery,
    /// See [`ClientError::NoSubscriptions`]: subscription mode, without the `subscribe`
    /// feature.
    NoSubscriptions,
    /// Any other refusal.
    Other,
}

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Self {
        Error::Client(match e {
            ClientError::MaxDatagram => ClientErrorKind::MaxDatagram,
            ClientError::ZeroTimeout => ClientErrorKind::ZeroTimeout,
            ClientError::NoDiscovery => ClientErrorKind::NoDiscovery,
            ClientError::NoSubscriptions => ClientErrorKind::NoSubscriptions,
            _ => ClientErrorKind::Other,
        })
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Client(ClientErrorKind::MaxDatagram) => {
                "the maximum datagram size must be 512 to 65507 bytes"
            }
            Error::Client(ClientErrorKind::ZeroTimeout) => "timeouts must be longer than zero",
            Error::Client(ClientErrorKind::NoDiscovery) => {
                "an interest needs the `listen` feature (this build only registers)"
            }
            Error::Client(ClientErrorKind::NoSubscriptions) => {
                "subscription mode needs the `subscribe` feature"
            }
            Error::Client(ClientErrorKind::Other) => "the client settings were refused",
            Error::GroupNotMulticast => "the group is not a multicast address",
            Error::Ipv6Disabled => "an IPv6 address needs the `ipv6` feature",
            Error::DatagramBuffer => "the datagram buffer is smaller than the maximum datagram",
            Error::Bind => "the UDP socket could not be bound to the group port",
            Error::Join => "the interface could not join the multicast group",
        })
    }
}

impl core::error::Error for Error {}
