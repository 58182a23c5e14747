//! What the client library hands out: [`ServiceInfo`] and [`WatchEvent`], in the shapes
//! the command line prints as JSON, and [`registration`] to build what it takes in.

use super::Error;
use herald_core::{Location, Metadata, Registration, Service, ServiceName};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// A service as the directory publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    /// The name.
    pub name: String,
    /// Where it can be reached.
    pub locations: Vec<SocketAddr>,
    /// Its metadata.
    pub meta: BTreeMap<String, String>,
    /// The version of this state (grows with every change).
    #[serde(skip)]
    pub version: u64,
}

impl From<&Service> for ServiceInfo {
    fn from(s: &Service) -> Self {
        let r = &s.registration;
        ServiceInfo {
            name: r.name.as_str().to_owned(),
            locations: r.locations.iter().map(Location::socket_addr).collect(),
            meta: r
                .metadata
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            version: s.version.0,
        }
    }
}

impl ServiceInfo {
    /// `s` as a listener on the link with interface index `zone` sees it: its link-local
    /// locations, which reach no one without a zone and carry none on the wire (zones
    /// are local to a host), in `zone` (0: left without).
    pub fn on_link(s: &Service, zone: u32) -> ServiceInfo {
        let mut info = ServiceInfo::from(s);
        for (info, l) in info.locations.iter_mut().zip(&s.registration.locations) {
            *info = l.in_zone(zone).socket_addr();
        }
        info
    }
}

/// What happened to a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// It appeared.
    Discovered,
    /// Its locations or metadata changed.
    Changed,
    /// It went away (unregistered or its lease ran out).
    Unregistered,
    /// The watch's table was full and gave it up for a service the directory confirmed;
    /// nothing says it went away (a larger table keeps it).
    Evicted,
}

impl EventKind {
    /// `discovered`, `changed`, `unregistered` or `evicted`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Discovered => "discovered",
            EventKind::Changed => "changed",
            EventKind::Unregistered => "unregistered",
            EventKind::Evicted => "evicted",
        }
    }
}

/// One event of a [`Watch`](super::Watch). As JSON:
/// `{"event":"discovered","name":…,"locations":["host:port",…],"meta":{…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    /// What happened.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The service (for `unregistered` and `evicted`, its last known state).
    #[serde(flatten)]
    pub service: ServiceInfo,
}

/// What a [`Watch`](super::Watch) hands out through
/// [`next_update`](super::Watch::next_update), in order: the services of the first
/// snapshot as `discovered` events, then [`Ready`](WatchUpdate::Ready) once (also when the
/// registry is empty), then every change as it comes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchUpdate {
    /// The first snapshot is in: the watch knows every service of interest (`services`
    /// of them). As JSON: `{"event":"ready","services":3}`.
    Ready {
        /// Services of interest known now.
        services: usize,
    },
    /// A service was discovered, changed or unregistered.
    Event(WatchEvent),
}

impl Serialize for WatchUpdate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WatchUpdate::Ready { services } => {
                use serde::ser::SerializeStruct;
                let mut ready = serializer.serialize_struct("Ready", 2)?;
                ready.serialize_field("event", "ready")?;
                ready.serialize_field("services", services)?;
                ready.end()
            }
            WatchUpdate::Event(event) => event.serialize(serializer),
        }
    }
}

/// Builds a registration, with a typed error for whatever is invalid.
pub fn registration(
    name: &str,
    locations: &[SocketAddr],
    meta: &[(String, String)],
) -> Result<Registration, Error> {
    let service = ServiceName::new(name).map_err(|reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    })?;
    let locations = locations
        .iter()
        .map(|&a| {
            crate::interfaces::check_scope(a).map_err(Error::Unreachable)?;
            Location::from_socket_addr(a).map_err(Error::InvalidLocation)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata = Metadata::new();
    for (k, v) in meta {
        metadata.insert(k, v).map_err(Error::InvalidMetadata)?;
    }
    Ok(Registration::new(service, &locations)
        .map_err(Error::InvalidLocation)?
        .with_metadata(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_of_an_event() {
        let reg = registration(
            "billing",
            &["127.0.0.1:8080".parse().unwrap()],
            &[("zone".into(), "a".into())],
        )
        .unwrap();
        let service = Service {
            registration: reg,
            version: herald_core::Version(3),
        };
        let event = WatchEvent {
            kind: EventKind::Discovered,
            service: ServiceInfo::from(&service),
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"event":"discovered","name":"billing","locations":["127.0.0.1:8080"],"meta":{"zone":"a"}}"#
        );
    }

    #[test]
    fn json_shape_of_ready() {
        let ready = WatchUpdate::Ready { services: 3 };
        assert_eq!(
            serde_json::to_string(&ready).unwrap(),
            r#"{"event":"ready","services":3}"#
        );
    }

    #[test]
    fn invalid_parts_are_named() {
        let here = ["127.0.0.1:80".parse().unwrap()];
        assert!(matches!(
            registration(" x", &here, &[]),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            registration("x", &["0.0.0.0:80".parse().unwrap()], &[]),
            Err(Error::InvalidLocation(_))
        ));
        assert!(matches!(
            registration("x", &here, &[("bad key".into(), "v".into())]),
            Err(Error::InvalidMetadata(_))
        ));
        assert!(matches!(
            registration("x", &[], &[]),
            Err(Error::InvalidLocation(_))
        ));
        // A link-local location without a scope id reaches no one.
        assert!(matches!(
            registration("x", &["[fe80::1]:80".parse().unwrap()], &[]),
            Err(Error::Unreachable(_))
        ));
    }

    #[test]
    fn listeners_see_link_local_locations_in_their_own_zone() {
        let at: Vec<SocketAddr> = vec!["[fd00::1]:80".parse().unwrap()];
        let mut service = Service {
            registration: registration("x", &at, &[]).unwrap(),
            version: herald_core::Version(1),
        };
        // As decoded from the wire: a link-local location without a zone.
        let heard = Location::new("fe80::1".parse().unwrap(), 80).unwrap();
        let _ = service.registration.locations.push(heard);
        let info = ServiceInfo::on_link(&service, 3);
        assert_eq!(
            info.locations,
            [
                "[fd00::1]:80".parse::<SocketAddr>().unwrap(),
                "[fe80::1%3]:80".parse().unwrap()
            ]
        );
    }
}
