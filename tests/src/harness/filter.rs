//! Packet filters inside a test's own namespaces (nftables): drop multicast, lose a
//! share of UDP; and waiting for a directory's subscribers, which the filtered
//! listeners become.

use super::herald::Directory;
use super::host::Host;
use super::wait::poll_until;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Runs `program args…` inside `netns`; panics with its error output on failure.
fn in_netns(netns: &str, program: &str, args: &[&str]) {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {netns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops every IPv4 multicast datagram that reaches `host` (its own namespace only).
pub fn drop_multicast(host: &Host) {
    let ns = host.netns().expect("a namespace host");
    in_netns(ns, "nft", &["add", "table", "ip", "s13"]);
    in_netns(
        ns,
        "nft",
        &[
            "add", "chain", "ip", "s13", "input", "{", "type", "filter", "hook", "input",
            "priority", "0", ";", "}",
        ],
    );
    in_netns(
        ns,
        "nft",
        &[
            "add",
            "rule",
            "ip",
            "s13",
            "input",
            "ip",
            "daddr",
            "224.0.0.0/4",
            "counter",
            "drop",
        ],
    );
}

/// Drops 20 % of the UDP datagrams `host` receives and 20 % of those it sends.
pub fn lose_one_in_five(host: &Host) {
    let ns = host.netns().expect("a namespace host");
    in_netns(
        ns,
        "nft",
        &[
            "add", "chain", "ip", "s13", "output", "{", "type", "filter", "hook", "output",
            "priority", "0", ";", "}",
        ],
    );
    for chain in ["input", "output"] {
        in_netns(
            ns,
            "nft",
            &[
                "add", "rule", "ip", "s13", chain, "meta", "l4proto", "udp", "numgen", "random",
                "mod", "100", "<", "20", "counter", "drop",
            ],
        );
    }
}

/// Multicast datagrams the rule of [`drop_multicast`] dropped on `host` so far.
pub fn dropped(host: &Host) -> u64 {
    let ns = host.netns().expect("a namespace host");
    let out = Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "chain", "ip", "s13", "input",
        ])
        .output()
        .expect("run nft");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        // The first counter of the chain: the multicast rule.
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {text}"))
}

/// Waits until `directory` has `n` subscribers (by its metrics).
pub fn wait_subscribers(directory: &Directory, n: f64) {
    let got = poll_until(T, || {
        let m = directory.try_metrics().ok()?;
        (m.get("herald_subscribers") == n).then_some(())
    });
    assert!(
        got.is_some(),
        "{} never had {n} subscribers: {:?}",
        directory.label(),
        directory.try_metrics().map(|m| m.get("herald_subscribers"))
    );
}
