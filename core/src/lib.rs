//! # herald-core
//!
//! The protocol core of Herald, a service directory: `#![no_std]`, no allocation, no
//! I/O. It holds the wire format ([`wire`]), the registry with leases and versions
//! ([`registry`]), the unregister-notification counters ([`notify`]), and the two state
//! machines that shells drive over real sockets: [`Directory`] (the server) and
//! [`Client`] (registrants and listeners).
//!
//! The core never touches a socket or a clock. A shell feeds it what happened and asks
//! it what to do, in the shape of `quinn-proto` and `smoltcp`.
//!
//! ## The poll order a shell must follow
//!
//! ```text
//! loop {
//!     // 1. Feed every datagram that has arrived (drain the socket, do not stop at N).
//!     //    Between two drains of poll_transmit, feed at most REPLY_QUEUE datagrams to
//!     //    a Directory; a Client has no such limit.
//!     machine.handle_datagram(now, from, &bytes);
//!     // 2. If the deadline passed, tell it.
//!     machine.handle_timeout(now);
//!     // 3. Take every event (directories: storage changes, to write in one batch
//!     //    *before* sending, so that no acknowledgement leaves before the change it
//!     //    confirms is durable; clients: discoveries).
//!     while let Some(e) = machine.poll_event() { … }
//!     //    (a directory with a subscriber table: poll_subscriber_event too, stored
//!     //    with them; it need not be durable before sending.)
//!     // 4. Send everything it wants sent.
//!     while let Some(t) = machine.poll_transmit(now, &mut buf) { send(&buf[..t.len], t.destination) }
//!     // 5. Sleep until poll_timeout() or the next datagram, whichever comes first.
//! }
//! ```
//!
//! ## Several directories sharing one store
//!
//! Directories that share their registry through a replicated store (`herald serve`
//! uses etcd) run one [`Directory`] each. The shell writes every storage event to the
//! store, feeds every change read back from it (its own included) to
//! [`Directory::apply`] and every deletion to [`Directory::forget`], and tells each
//! directory whether it is the elected publisher ([`Directory::set_publishing`]): only
//! the publisher announces, counts notifications, sweeps and expires, so listeners get
//! one copy of everything. A new publisher waits until the shell says it holds every
//! change written before it took over ([`Directory::caught_up`]), or the replication
//! bound has passed. While the store is unreachable the shell holds expiry
//! ([`Directory::set_expiring`]). Beacons say whether their directory publishes, and
//! listeners follow a publishing directory. The subscriber table is shared the same
//! way: the shell writes every [`Directory::poll_subscriber_event`] to the store and
//! feeds what the others wrote to [`Directory::apply_subscriber`] and their deletions
//! to [`Directory::forget_subscriber`]; only the publisher delivers, and a new one
//! continues from the stored cursors.
//!
//! Every input is untrusted: decoding never panics, never reads past the datagram and
//! refuses trailing bytes; errors are small `Copy` enums. Capacities are fixed by the
//! caller (storage slices and const generics), and "full" is an explicit error.
//!
//! ## Cargo features
//!
//! `auth` (default): authenticated environments ([`auth`]); without it no key can be
//! made and authenticated frames are refused. `listen` (default): discovery in the
//! [`Client`]; without it a client only registers (an interest is refused with
//! [`ClientError::NoDiscovery`]). `subscribe` (default, implies `listen`): subscription
//! mode in the [`Client`] (unicast deliveries for a listener that multicast does not
//! reach; without it a configuration that subscribes is refused with
//! [`ClientError::NoSubscriptions`]). All three exist to make a microcontroller's client
//! smaller; a [`Directory`] behaves the same in every build (without `auth` it takes no
//! keys either). `arbitrary`: `Arbitrary`
//! implementations for the fuzz targets.
//!
//! ## Example: a directory and a client on a simulated network
//!
//! ```
//! use herald_core::*;
//! use core::net::{IpAddr, Ipv4Addr, SocketAddr};
//!
//! let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
//! let dir_addr = Location::new(ip, 37399).unwrap();
//! let group = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371);
//!
//! let mut storage = DirectoryStorage::<8>::new();
//! let (slots, index) = storage.parts();
//! let mut directory = Directory::new(DirectoryConfig::new(dir_addr, group), slots, index).unwrap();
//!
//! let mut table = ClientStorage::<8>::new();
//! let (known, known_index) = table.parts();
//! let mut config = ClientConfig::new(7);
//! config.interest = Some(Interest::all());
//! config.directories.push(dir_addr).unwrap();
//! let mut client: Client<'_, 2> = Client::new(config, known, known_index).unwrap();
//!
//! let name = ServiceName::new("billing").unwrap();
//! let reg = Registration::new(name, &[Location::new(ip, 8080).unwrap()]).unwrap();
//! client.register(Instant::ZERO, reg).unwrap();
//!
//! // Shuttle datagrams until both are quiet.
//! let now = Instant::ZERO;
//! let client_addr = SocketAddr::new(ip, 5000);
//! let mut buf = [0u8; 1400];
//! for _ in 0..4 {
//!     while let Some(t) = client.poll_transmit(now, &mut buf) {
//!         directory.handle_datagram(now, client_addr, &buf[..t.len]);
//!     }
//!     while let Some(t) = directory.poll_transmit(now, &mut buf) {
//!         client.handle_datagram(now, dir_addr.socket_addr(), &buf[..t.len]);
//!     }
//! }
//! let mut discovered = false;
//! while let Some(event) = client.poll_event() {
//!     if let ClientEvent::Discovered(service) = event {
//!         assert_eq!(service.name().as_str(), "billing");
//!         discovered = true;
//!     }
//! }
//! assert!(discovered);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "arbitrary")]
mod arbitrary;
pub mod auth;
pub mod budget;
pub mod client;
pub mod directory;
mod hash;
pub mod interest;
pub mod location;
pub mod metadata;
pub mod name;
pub mod notify;
pub mod registry;
pub mod service;
pub mod table;
pub mod time;
pub mod wire;

pub use client::{
    Client, ClientConfig, ClientError, ClientEvent, ClientStats, ClientStorage, Discovered,
    Subscribe,
};
pub use directory::{
    AdmissionConfig, Directory, DirectoryConfig, DirectoryEvent, DirectoryStats, DirectoryStorage,
    Subscriber, SubscriberEvent, SubscriberStorage, AMPLIFICATION, COOKIE_PERIOD, REPLY_QUEUE,
    SNAPSHOT_QUEUE,
};
pub use interest::{Interest, Pattern};
pub use location::{Location, LocationError, Locations, MAX_LOCATIONS};
pub use metadata::{Metadata, MetadataError};
pub use name::{Environment, NameError, ServiceName};
pub use registry::{Record, RecordState, RegistryError, Slot};
pub use service::{Registration, Service, Version};
pub use time::{Duration, Instant};
pub use wire::{DecodeError, EncodeError, RejectReason};

use core::net::SocketAddr;

/// A datagram a state machine wants sent: the bytes are in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it (a directory, a client, or the multicast group).
    pub destination: SocketAddr,
    /// How many bytes of the buffer to send.
    pub len: usize,
}
