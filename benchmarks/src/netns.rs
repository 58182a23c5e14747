//! The private network namespace of the mdns-sd comparison: loopback plus a veth pair
//! whose both ends live in the namespace (`hb0`, 10.239.0.1/24, carries the multicast
//! route; `hb1` has no address). Multicast sent out of `hb0` is looped back to the
//! namespace's own sockets and reaches only `hb1`: the namespace has no other link.

use herald_tests::harness::netns::ip;
pub use herald_tests::harness::netns::unavailable;
use std::process::Command;

/// Address of the namespace's interface.
pub const ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 239, 0, 1);

/// A namespace, deleted on drop.
pub struct Namespace {
    /// Its name (`hbench-<pid>`).
    pub name: String,
}

impl Namespace {
    /// Creates the namespace with `lo` and `hb0` up and the multicast route on `hb0`.
    pub fn create() -> Result<Namespace, String> {
        let name = format!("hbench-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Namespace { name };
        let n = ns.name.as_str();
        let cidr = format!("{ADDRESS}/24");
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", n, "link", "add", "hb0", "type", "veth", "peer", "name", "hb1",
        ])?;
        ip(&["-n", n, "link", "set", "hb1", "up"])?;
        ip(&["-n", n, "link", "set", "hb0", "multicast", "on"])?;
        ip(&["-n", n, "addr", "add", &cidr, "dev", "hb0"])?;
        ip(&["-n", n, "link", "set", "hb0", "up"])?;
        ip(&["-n", n, "route", "add", "224.0.0.0/4", "dev", "hb0"])?;
        Ok(ns)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
