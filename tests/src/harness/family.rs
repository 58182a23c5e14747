//! The IP family a scenario runs on, and its hosts on that family: on IPv4, hosts of a
//! lab bridge (one namespace each); on IPv6, the two ends of `veth6`'s pair, the side
//! that serves (directories, registrants, etcd) on one end and the listeners on the
//! other, with a site-local group (`ff15::…`).

use super::host::Host;
use super::netns::lab_or_skip;
use super::ports::{unique_group, unique_group_v6};
use super::veth6::pair_or_skip;
use std::net::SocketAddr;

/// The IP family a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Hosts of a lab bridge, a 239.x group.
    V4,
    /// The two ends of an IPv6 veth pair, an `ff15::` group.
    V6,
}

/// Where a host of the scenario sits: on IPv6, servers share one end of the pair and
/// listeners the other (on IPv4 every host is its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Directories, registrants, etcd.
    Serving,
    /// Listeners.
    Listening,
}

/// A scenario's hosts and group; the namespaces live as long as it does.
pub struct Hosts {
    hosts: Vec<Host>,
    /// The group of every directory.
    pub group: SocketAddr,
    _namespaces: Box<dyn std::any::Any>,
}

impl Hosts {
    /// Host `i`, in the order of the sides asked for.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }
}

/// One host per entry of `sides` on `family`; `None` after printing why `test` is
/// skipped.
pub fn hosts_or_skip(test: &str, family: Family, sides: &[Side]) -> Option<Hosts> {
    match family {
        Family::V4 => {
            let lab = lab_or_skip(test, sides.len())?;
            Some(Hosts {
                hosts: lab.hosts().to_vec(),
                group: unique_group(),
                _namespaces: Box::new(lab),
            })
        }
        Family::V6 => {
            let pair = pair_or_skip(test)?;
            let hosts = sides
                .iter()
                .map(|side| {
                    let end = usize::from(*side == Side::Listening);
                    pair.end(end).host.clone()
                })
                .collect();
            Some(Hosts {
                hosts,
                group: unique_group_v6(),
                _namespaces: Box::new(pair),
            })
        }
    }
}
