//! Two hosts on an IPv6 link: two private network namespaces joined by a veth pair,
//! each end with a unique local address (fd00:37::a and fd00:37::b, from fd00::/8) and
//! a link-local one (fe80::a and fe80::b), both without duplicate address detection
//! (`nodad`: usable at once), and a route for ff00::/8 on the veth so multicast stays on
//! it. The machine's own interfaces are never touched; everything is deleted on drop.
//!
//! The two ends have different interface indexes (host B gets a spare veth pair
//! first), so a scope id that is right in one namespace is wrong in the other: a test
//! can tell that each host uses its own.

use super::host::Host;
use super::netns::{ip, unavailable, PREFIX};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Name of the veth end inside each namespace.
pub const IFACE: &str = "veth6";

/// One end of the link.
#[derive(Clone, Debug)]
pub struct End {
    /// The host (its address is the unique local one; multicast uses the veth).
    pub host: Host,
    /// Its unique local address.
    pub ula: Ipv6Addr,
    /// Its link-local address.
    pub link_local: Ipv6Addr,
    /// The veth's interface index in this namespace.
    pub index: u32,
}

impl End {
    /// A socket address with the unique local address.
    pub fn ula_addr(&self, port: u16) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(self.ula, port, 0, 0))
    }

    /// A socket address with the link-local address, as seen from `on` (its scope id
    /// is the veth's index on that host: a zone is local to a host).
    pub fn link_local_addr(&self, port: u16, on: &End) -> SocketAddr {
        SocketAddr::V6(SocketAddrV6::new(self.link_local, port, 0, on.index))
    }
}

/// Two namespaces on a veth pair, IPv6 only.
pub struct Pair {
    namespaces: Vec<String>,
    ends: Vec<End>,
}

impl Pair {
    /// Makes the pair; `Err` says why namespaces are not available (skip with it).
    pub fn new() -> Result<Pair, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-v6-{seq}", std::process::id());
        let mut pair = Pair {
            namespaces: Vec::new(),
            ends: Vec::new(),
        };
        // On error, dropping `pair` deletes what was made so far.
        let names = [format!("{base}-a"), format!("{base}-b")];
        for ns in &names {
            ip(&["netns", "add", ns])?;
            pair.namespaces.push(ns.clone());
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // Host B's veth gets another index than host A's.
        ip(&[
            "-n", &names[1], "link", "add", "pad0", "type", "veth", "peer", "name", "pad1",
        ])?;
        ip(&[
            "link", "add", IFACE, "netns", &names[0], "type", "veth", "peer", "name", IFACE,
            "netns", &names[1],
        ])?;
        for (i, ns) in names.iter().enumerate() {
            let tag = if i == 0 { "a" } else { "b" };
            let ula: Ipv6Addr = format!("fd00:37::{tag}").parse().expect("address");
            let link_local: Ipv6Addr = format!("fe80::{tag}").parse().expect("address");
            // No address of the kernel's own (it would wait for duplicate detection).
            ip(&["-n", ns, "link", "set", IFACE, "addrgenmode", "none"])?;
            for a in [format!("{ula}/64"), format!("{link_local}/64")] {
                ip(&["-n", ns, "-6", "addr", "add", &a, "dev", IFACE, "nodad"])?;
            }
            ip(&["-n", ns, "link", "set", IFACE, "up"])?;
            ip(&[
                "-n",
                ns,
                "-6",
                "route",
                "replace",
                "multicast",
                "ff00::/8",
                "dev",
                IFACE,
                "table",
                "local",
            ])?;
            let index = index_of(ns, IFACE)?;
            pair.ends.push(End {
                host: Host::in_namespace_v6(format!("host6{tag}"), ns.clone(), ula, index),
                ula,
                link_local,
                index,
            });
        }
        if pair.ends[0].index == pair.ends[1].index {
            return Err("the veth ends got the same interface index".into());
        }
        Ok(pair)
    }

    /// Host A (index 0) or B (index 1).
    pub fn end(&self, i: usize) -> &End {
        &self.ends[i]
    }
}

/// The index of interface `name` in namespace `ns`.
fn index_of(ns: &str, name: &str) -> Result<u32, String> {
    let out = ip(&["-n", ns, "-o", "link", "show", "dev", name])?;
    out.split(':')
        .next()
        .and_then(|i| i.trim().parse().ok())
        .ok_or_else(|| format!("no index for {name} in {ns}: {out}"))
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("[veth6] cleanup: {e}");
            }
        }
    }
}

/// An IPv6 pair, or `None` after printing why `test` is skipped.
pub fn pair_or_skip(test: &str) -> Option<Pair> {
    match Pair::new() {
        Ok(pair) => {
            for e in &pair.ends {
                eprintln!(
                    "[{test}] {}: {} and {} on {IFACE} (index {}) in {}",
                    e.host.name(),
                    e.ula,
                    e.link_local,
                    e.index,
                    e.host.netns().unwrap_or("-")
                );
            }
            Some(pair)
        }
        Err(why) => {
            eprintln!("[{test}] SKIPPED: the IPv6 scenario needs network namespaces: {why}");
            None
        }
    }
}
