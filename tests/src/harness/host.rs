//! A host of a test topology: the machine itself on loopback, or a private network
//! namespace with its own address. Programs run on a host through [`Host::command`].

use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

/// Where programs run and which address they use.
#[derive(Clone, Debug)]
pub struct Host {
    name: String,
    netns: Option<String>,
    ip: IpAddr,
    /// What `--interface` says for multicast: the IPv4 address, or an interface index.
    interface: String,
}

impl Host {
    /// This machine, on loopback only (127.0.0.1).
    pub fn loopback(name: impl Into<String>) -> Host {
        Host {
            name: name.into(),
            netns: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            interface: Ipv4Addr::LOCALHOST.to_string(),
        }
    }

    /// A host inside network namespace `netns`, reached at `ip`.
    pub fn in_namespace(name: impl Into<String>, netns: impl Into<String>, ip: Ipv4Addr) -> Host {
        Host {
            name: name.into(),
            netns: Some(netns.into()),
            ip: IpAddr::V4(ip),
            interface: ip.to_string(),
        }
    }

    /// A host inside network namespace `netns`, reached at the IPv6 address `ip` on the
    /// interface with index `interface` (multicast goes out of and is joined on it).
    pub fn in_namespace_v6(
        name: impl Into<String>,
        netns: impl Into<String>,
        ip: Ipv6Addr,
        interface: u32,
    ) -> Host {
        Host {
            name: name.into(),
            netns: Some(netns.into()),
            ip: IpAddr::V6(ip),
            interface: interface.to_string(),
        }
    }

    /// Its label in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace, if it is not the machine itself.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Its address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The multicast interface as `--interface` takes it: the IPv4 address of the
    /// interface, or (IPv6) its index.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// A socket address of this host.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// A command that runs `program` on this host, with no `HERALD_*` variable
    /// inherited from the environment of the test.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = match &self.netns {
            None => Command::new(program),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
        };
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }
}
