//! Multi-host topologies in private network namespaces: one namespace per host, each
//! with a veth pair to a bridge that lives in a namespace of its own (the "switch"),
//! addresses from 10.237.0.0/24 that exist only inside these namespaces, and a route
//! for 224.0.0.0/4 on each host's interface so multicast stays on the bridge. The
//! machine's own interfaces are never touched. Everything is deleted on drop, and
//! namespaces left by crashed runs (named `hzt-<pid>-…` after a dead process) are swept
//! before the first topology of a run is made.

use super::host::Host;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Prefix of every namespace these suites create.
pub const PREFIX: &str = "hzt-";
/// Name of each host's interface inside its namespace.
pub const HOST_IFACE: &str = "eth0";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Runs `ip` with `args`; the error says what failed.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        });
    if uid.as_deref() != Some("0") {
        return Some("not running as root (effective uid is not 0)".into());
    }
    if let Err(e) = ip(&["netns", "list"]) {
        return Some(format!("`ip netns` does not work: {e}"));
    }
    None
}

/// Deletes namespaces with our prefix whose creating process is gone.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("[netns] deleting stale namespace {name} (process {pid} is gone)");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A private multi-host network: hosts on one bridge.
pub struct Lab {
    switch: String,
    hosts: Vec<Host>,
    namespaces: Vec<String>,
}

impl Lab {
    /// Creates `count` hosts (10.237.0.1, .2, …) on one bridge; `Err` says why
    /// namespaces are not available (the caller skips with that reason).
    pub fn new(count: usize) -> Result<Lab, String> {
        if let Some(why) = unavailable() {
            return Err(why);
        }
        assert!((1..=200).contains(&count), "1 to 200 hosts");
        SWEEP.call_once(sweep_stale);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{seq}", std::process::id());
        let mut lab = Lab {
            switch: format!("{base}-sw"),
            hosts: Vec::new(),
            namespaces: Vec::new(),
        };
        // On error, dropping `lab` deletes what was made so far.
        lab.make_switch()?;
        for i in 0..count {
            lab.add_host(&base, i)?;
        }
        Ok(lab)
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn make_switch(&mut self) -> Result<(), String> {
        let sw = self.switch.clone();
        self.add_namespace(&sw)?;
        ip(&[
            "-n",
            &sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        Ok(())
    }

    fn add_host(&mut self, base: &str, i: usize) -> Result<(), String> {
        let ns = format!("{base}-h{i}");
        self.add_namespace(&ns)?;
        let sw = self.switch.clone();
        let port = Self::port_name(i);
        let address = Ipv4Addr::new(10, 237, 0, i as u8 + 1);
        let cidr = format!("{address}/24");
        ip(&[
            "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", HOST_IFACE, "netns",
            &ns,
        ])?;
        ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", HOST_IFACE])?;
        ip(&["-n", &ns, "link", "set", HOST_IFACE, "up"])?;
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", HOST_IFACE])?;
        self.hosts
            .push(Host::in_namespace(format!("host{i}"), ns, address));
        Ok(())
    }

    fn port_name(i: usize) -> String {
        format!("vh{i}")
    }

    /// Host number `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Every host.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The switch namespace and the bridge-side interface of host `i` (for faults).
    pub fn switch_port(&self, i: usize) -> (&str, String) {
        (&self.switch, Self::port_name(i))
    }

    /// Unplugs host `i` from the bridge: its link stays up, nothing gets through.
    pub fn partition(&self, i: usize) {
        let port = Self::port_name(i);
        ip(&["-n", &self.switch, "link", "set", &port, "nomaster"])
            .unwrap_or_else(|e| panic!("partition host{i}: {e}"));
    }

    /// Plugs host `i` back into the bridge.
    pub fn heal(&self, i: usize) {
        let port = Self::port_name(i);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"])
            .unwrap_or_else(|e| panic!("heal host{i}: {e}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("[netns] cleanup: {e}");
            }
        }
    }
}

/// A lab of `count` hosts, or `None` after printing why this test is skipped (not
/// root, or no `ip netns`).
pub fn lab_or_skip(test: &str, count: usize) -> Option<Lab> {
    match Lab::new(count) {
        Ok(lab) => {
            eprintln!(
                "[{test}] hosts: {}",
                lab.hosts()
                    .iter()
                    .map(|h| format!("{}={} ({})", h.name(), h.ip(), h.netns().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Some(lab)
        }
        Err(why) => {
            eprintln!("[{test}] SKIPPED: multi-host scenario needs network namespaces: {why}");
            None
        }
    }
}
