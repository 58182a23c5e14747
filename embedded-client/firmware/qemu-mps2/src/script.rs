//! What the board does, in both shells: it is 192.168.69.1/24, registers
//! `embedded-node` at 192.168.69.1:7000 with the directory at 192.168.69.100:37399, and
//! discovers every service (by unicast deliveries when it hears no beacon on the
//! group, as on a link that drops multicast). Its command to leave: when the service `std-service` is
//! unregistered it unregisters its own service, and once the directory confirmed that
//! it ends the emulation with status 0 (status 1 after [`LIMIT_MS`] without).
//!
//! Its lines, as `examples/tap_node.rs` prints them: `registered NAME LEASE_MS at
//! BOOT_MS`, `discovered NAME ADDR…`, `unregistered NAME`, `released NAME
//! confirmed|unconfirmed`, and `ready` once the client is started.

use crate::{clock, provisioning, semihosting};
use core::fmt::Write;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use herald_embedded::{
    ClientEvent, Config, Interest, Location, Registration, Service, ServiceName, Subscribe,
};

/// The board's MAC address (locally administered).
pub const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x45, 0x01, 0x01];
/// The board's address on the test's link (prefix [`PREFIX`]).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// The prefix length of [`ADDRESS`].
pub const PREFIX: u8 = 24;
/// The directory `herald serve` runs at.
const DIRECTORY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 69, 100)), 37399);
/// The service this board registers, and its port.
const OWN: &str = "embedded-node";
const OWN_PORT: u16 = 7000;
/// When this service goes away, the board unregisters its own.
const RELEASE_AFTER: &str = "std-service";
/// The emulation ends with a failure after this long.
pub const LIMIT_MS: u32 = 120_000;

/// What the shell does after an event.
pub enum Next {
    /// Nothing.
    Continue,
    /// Unregister [`own`].
    Release,
}

/// The client's settings: the directory, every service, and the provisioned
/// environment and key if there are.
pub fn config() -> Config {
    let mut config = Config::new(u64::from_le_bytes([
        MAC[0], MAC[1], MAC[2], MAC[3], MAC[4], MAC[5], 0x51, 0xe3,
    ]));
    config.client.interest = Some(Interest::all());
    // On a link that drops multicast it hears no beacon: then it subscribes to unicast
    // deliveries at the directory.
    config.client.subscribe = Subscribe::WithoutBeacons;
    let _ = config
        .client
        .directories
        .push(Location::try_from(DIRECTORY).unwrap());
    if let Some((environment, keys)) = provisioning::read() {
        println!("environment {} (authenticated)", environment);
        config.client.environment = environment;
        config.client.keys = Some(keys);
    }
    config
}

/// The name of the board's own service.
pub fn own() -> ServiceName {
    ServiceName::new(OWN).unwrap()
}

/// The board's own registration.
pub fn registration() -> Registration {
    let here = Location::new(IpAddr::V4(ADDRESS), OWN_PORT).unwrap();
    Registration::new(own(), &[here]).unwrap()
}

/// Prints `event`, ends the emulation when the board's own service is released, and
/// says what the shell does next.
pub fn on_event(event: &ClientEvent) -> Next {
    match event {
        ClientEvent::Registered { name, lease, .. } => {
            println!(
                "registered {} {} at {}",
                name,
                lease.as_millis(),
                clock::millis()
            )
        }
        ClientEvent::Discovered(s) => print_service("discovered", s),
        ClientEvent::Changed(s) => print_service("changed", s),
        ClientEvent::Unregistered(s) => {
            println!("unregistered {}", s.name());
            if s.name().as_str() == RELEASE_AFTER {
                return Next::Release;
            }
        }
        ClientEvent::Evicted(s) => println!("evicted {}", s.name()),
        ClientEvent::Released { name, confirmed } => {
            let how = if *confirmed {
                "confirmed"
            } else {
                "unconfirmed"
            };
            println!("released {} {}", name, how);
            if name.as_str() == OWN {
                semihosting::exit(*confirmed);
            }
        }
        ClientEvent::Rejected { name, reason, .. } => println!("rejected {:?} {:?}", name, reason),
        ClientEvent::Unreachable => println!("unreachable"),
        ClientEvent::DirectoryChanged(d) => println!("directory {}", d),
        ClientEvent::SnapshotComplete { services } => println!("snapshot {}", services),
    }
    Next::Continue
}

/// Ends the emulation with a failure once [`LIMIT_MS`] passed.
pub fn check_limit() {
    if clock::millis() > LIMIT_MS {
        println!("timeout");
        semihosting::exit(false);
    }
}

/// Prints `what NAME ADDR,ADDR…`.
fn print_service(what: &str, service: &Service) {
    let mut line = semihosting::Line::new();
    let _ = write!(line, "{} {} ", what, service.name());
    for (i, l) in service.registration.locations.iter().enumerate() {
        let _ = write!(line, "{}{}", if i == 0 { "" } else { "," }, l);
    }
    line.emit();
}
