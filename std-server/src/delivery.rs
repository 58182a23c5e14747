//! How a directory reaches its listeners: the `--group` (an address, or `none`), the
//! `--delivery` mode (multicast, unicast to subscribers, or both) and the size of the
//! subscriber table (`--subscribers`), resolved into the core's settings.

use crate::config::{ConfigError, DEFAULT_GROUP_ADDR};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::str::FromStr;

/// Default subscriber table size of `herald serve`.
pub const DEFAULT_SUBSCRIBERS: usize = 1024;
/// Largest subscriber table `herald serve` takes.
pub const MAX_SUBSCRIBERS: usize = 1 << 20;

/// The value of `--group`: a multicast group, or `none` (no multicast at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Group {
    /// Announcements and beacons go to (and listeners join) this group.
    Addr(SocketAddr),
    /// Nothing is sent to a multicast address: directories deliver to subscribers by
    /// unicast, and clients know their directories only from `--directory`.
    None,
}

impl Group {
    /// The group address, `None` for `--group none`.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Group::Addr(addr) => Some(addr),
            Group::None => None,
        }
    }
}

impl FromStr for Group {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Group::None);
        }
        s.parse().map(Group::Addr).map_err(|_| {
            format!("{s:?} is neither a group IP:PORT (e.g. 237.37.37.1:37371) nor `none`")
        })
    }
}

impl TryFrom<String> for Group {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Group> for String {
    fn from(group: Group) -> String {
        group.to_string()
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Addr(addr) => write!(f, "{addr}"),
            Group::None => f.write_str("none"),
        }
    }
}

impl From<SocketAddr> for Group {
    fn from(addr: SocketAddr) -> Self {
        Group::Addr(addr)
    }
}

/// The value of `--delivery`: how changes reach listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Announcements on the group only; subscriptions are refused.
    Multicast,
    /// Unicast deliveries to subscribers only; nothing is sent to the group.
    Unicast,
    /// Both (the default where a group is configured).
    Both,
}

/// The resolved delivery settings of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliverySettings {
    /// The group address the core is configured with (with `--group none`, the default
    /// group, to which nothing is sent).
    pub group: SocketAddr,
    /// Anything goes to the group ([`herald_core::DirectoryConfig::multicast`]).
    pub multicast: bool,
    /// Subscriber table size (0: subscriptions are refused).
    pub subscribers: usize,
    /// The mode in force.
    pub delivery: Delivery,
}

/// Resolves `--group`, `--delivery` and `--subscribers`, refusing combinations that
/// cannot work.
pub fn resolve(
    group: Option<Group>,
    delivery: Option<Delivery>,
    subscribers: Option<usize>,
) -> Result<DeliverySettings, ConfigError> {
    let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
    let group = group.unwrap_or(Group::Addr(DEFAULT_GROUP_ADDR));
    let delivery = match (group, delivery) {
        (Group::None, None | Some(Delivery::Unicast)) => Delivery::Unicast,
        (Group::None, Some(other)) => {
            return Err(invalid(
                "delivery",
                format!(
                    "--delivery {} needs a multicast group, but --group is none: use \
                     --delivery unicast (the default without a group)",
                    match other {
                        Delivery::Multicast => "multicast",
                        _ => "both",
                    }
                ),
            ))
        }
        (Group::Addr(_), mode) => mode.unwrap_or(Delivery::Both),
    };
    let subscribers = subscribers.unwrap_or(DEFAULT_SUBSCRIBERS);
    if subscribers > MAX_SUBSCRIBERS {
        return Err(invalid(
            "subscribers",
            format!("{subscribers} is more than the {MAX_SUBSCRIBERS} subscribers allowed"),
        ));
    }
    if subscribers == 0 && delivery != Delivery::Multicast {
        return Err(invalid(
            "subscribers",
            "0 leaves no room for any subscriber, and unicast delivery is on: give at least \
             1, or use --delivery multicast"
                .to_owned(),
        ));
    }
    Ok(DeliverySettings {
        group: group.addr().unwrap_or(DEFAULT_GROUP_ADDR),
        multicast: delivery != Delivery::Unicast,
        subscribers: if delivery == Delivery::Multicast {
            0
        } else {
            subscribers
        },
        delivery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_none_means_unicast_only() {
        let s = resolve(Some("none".parse().unwrap()), None, None).unwrap();
        assert!(!s.multicast);
        assert_eq!(s.delivery, Delivery::Unicast);
        assert_eq!(s.subscribers, DEFAULT_SUBSCRIBERS);
        let err = resolve(Some(Group::None), Some(Delivery::Both), None).unwrap_err();
        assert!(err.to_string().contains("--group is none"), "{err}");
    }

    #[test]
    fn modes_with_a_group() {
        let s = resolve(None, None, Some(5)).unwrap();
        assert!(s.multicast);
        assert_eq!((s.delivery, s.subscribers), (Delivery::Both, 5));
        let s = resolve(None, Some(Delivery::Multicast), None).unwrap();
        assert_eq!((s.multicast, s.subscribers), (true, 0));
        let s = resolve(None, Some(Delivery::Unicast), None).unwrap();
        assert!(!s.multicast);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert!("nowhere".parse::<Group>().unwrap_err().contains("none"));
        assert!(resolve(None, None, Some(0)).is_err());
        assert!(resolve(None, None, Some(MAX_SUBSCRIBERS + 1)).is_err());
        assert!(resolve(None, Some(Delivery::Multicast), Some(0)).is_ok());
    }
}
