//! `tc netem` on the namespace interfaces, when the kernel has it (`sch_netem`).
//! Where it is missing, the suites fall back to the [proxy](super::faults::Proxy).

use super::faults::Faults;
use super::netns::{ip, Lab, HOST_IFACE, PREFIX};
use std::process::Command;
use std::sync::OnceLock;

static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();

fn tc(netns: &str, args: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "tc"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run tc: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn add_qdisc(netns: &str, dev: &str, faults: &Faults) -> Result<(), String> {
    let mut args: Vec<String> = ["qdisc", "add", "dev", dev, "root", "netem"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(faults.netem_args());
    tc(netns, &args)
}

/// `Ok` when netem works here (checked once, in a throw-away namespace), else why not.
pub fn available() -> Result<(), String> {
    AVAILABLE
        .get_or_init(|| {
            let ns = format!("{PREFIX}{}-netem-probe", std::process::id());
            ip(&["netns", "add", &ns])?;
            let result = ip(&[
                "-n", &ns, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1",
            ])
            .and_then(|_| add_qdisc(&ns, "probe0", &Faults::LOSSY));
            let _ = ip(&["netns", "del", &ns]);
            result
        })
        .clone()
}

/// Puts `faults` on both ends of every host's link (so each direction of each link is
/// faulty).
pub fn apply(lab: &Lab, faults: &Faults) -> Result<(), String> {
    for (i, host) in lab.hosts().iter().enumerate() {
        let ns = host.netns().ok_or("netem needs namespace hosts")?;
        add_qdisc(ns, HOST_IFACE, faults)?;
        let (switch, port) = lab.switch_port(i);
        add_qdisc(switch, &port, faults)?;
    }
    Ok(())
}
