//! A small world: few names, locations, versions and addresses, so that generated
//! requests collide (the same name registered, changed, unregistered, held by another
//! registrant) and the state machines reach their deep states.

use arbitrary::Arbitrary;
use herald_core::auth::{Key, Keys};
use herald_core::{Environment, Location, Metadata, Registration, ServiceName, Version};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The service names of the small world (prefixes of one another, and one non-ASCII).
pub const NAMES: [&str; 8] = [
    "a",
    "b",
    "billing",
    "billing.eu",
    "cache",
    "db",
    "db.primary",
    "größe",
];

/// One of [`NAMES`].
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallName(pub u8);

impl SmallName {
    /// The name.
    pub fn name(self) -> ServiceName {
        ServiceName::new(NAMES[usize::from(self.0) % NAMES.len()]).expect("valid name")
    }
}

/// One of a few service locations.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallLocation(pub u8);

impl SmallLocation {
    /// The location.
    pub fn location(self) -> Location {
        let ips = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let ip = ips[usize::from(self.0) % ips.len()];
        let port = 8080 + u16::from(self.0 / 3 % 2);
        Location::new(ip, port).expect("valid location")
    }
}

/// One of a few metadata sets (empty included).
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallMetadata(pub u8);

impl SmallMetadata {
    /// The metadata.
    pub fn metadata(self) -> Metadata {
        let mut m = Metadata::new();
        match self.0 % 4 {
            0 => {}
            1 => m.insert("version", "1").expect("valid pair"),
            2 => m.insert("version", "2").expect("valid pair"),
            _ => {
                m.insert("zone", "eu-1").expect("valid pair");
                m.insert("weight", "10").expect("valid pair");
            }
        }
        m
    }
}

/// A registration of the small world: 1 to 4 locations (duplicates dropped).
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallRegistration {
    /// The name.
    pub name: SmallName,
    /// The first location.
    pub first: SmallLocation,
    /// Up to three more.
    pub more: [Option<SmallLocation>; 3],
    /// The metadata.
    pub metadata: SmallMetadata,
}

impl SmallRegistration {
    /// The registration.
    pub fn registration(&self) -> Registration {
        let mut list = vec![self.first.location()];
        for l in self.more.iter().flatten().map(|l| l.location()) {
            if !list.contains(&l) {
                list.push(l);
            }
        }
        Registration::new(self.name.name(), &list)
            .expect("valid locations")
            .with_metadata(self.metadata.metadata())
    }
}

/// A version from a small range, so that stale and newer states interleave.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub struct SmallVersion(pub u8);

impl SmallVersion {
    /// The version.
    pub fn version(self) -> Version {
        Version(u64::from(self.0))
    }
}

/// The environment of a frame: almost always the default one.
#[derive(Clone, Debug, Arbitrary)]
pub struct EnvChoice {
    /// Below 240: the default environment.
    pub tag: u8,
    /// Otherwise this one.
    pub other: Environment,
}

impl EnvChoice {
    /// The environment.
    pub fn environment(&self) -> Environment {
        if self.tag < 240 {
            Environment::default()
        } else {
            self.other.clone()
        }
    }
}

/// The directories of the small world (the client's configured and learned ones).
pub fn directory(index: u8) -> Location {
    let all = [
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 37399),
        (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 37399),
        (IpAddr::V6(Ipv6Addr::LOCALHOST), 37399),
        (IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
    ];
    let (ip, port) = all[usize::from(index) % all.len()];
    Location::new(ip, port).expect("valid directory")
}

/// The multicast group of the small world.
pub fn group() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(237, 37, 37, 1)), 37371)
}

/// Milliseconds as the core's duration.
pub fn ms(ms: u64) -> herald_core::Duration {
    herald_core::Duration::from_millis(ms)
}

/// The small world's keys, for configurations that authenticate: key 1 signs, key 2 is
/// also accepted.
pub fn keys() -> Keys {
    let signing = Key::new(1, b"herald fuzz key one").expect("valid key");
    let other = Key::new(2, b"herald fuzz key two").expect("valid key");
    Keys::new(signing)
        .also_accepting(other)
        .expect("distinct ids")
}
