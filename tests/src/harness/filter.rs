//! Packet filters inside a test's own namespaces (nftables; IPv4 or IPv6 by the
//! host's address): drop multicast, lose a share of UDP; and waiting for a directory's
//! subscribers, which the filtered listeners become.

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

/// The nftables table the filters of a host live in (one per namespace; `inet`, so
/// its chains see both families).
const TABLE: [&str; 2] = ["inet", "s13"];

/// What the multicast rule of `host` matches. IPv4: everything to 224.0.0.0/4. IPv6:
/// UDP to ff00::/8 only, so that neighbour discovery (ICMPv6 to ff02::1:ffXX:XXXX)
/// still works and the link stays usable.
fn multicast_match(host: &Host) -> &'static [&'static str] {
    if host.ip().is_ipv4() {
        &["ip", "daddr", "224.0.0.0/4"]
    } else {
        &["meta", "l4proto", "udp", "ip6", "daddr", "ff00::/8"]
    }
}

/// Adds chain `hook` (`input` or `output`) of [`TABLE`] in `ns`.
fn add_chain(ns: &str, hook: &str) {
    let mut args = vec!["add", "chain"];
    args.extend(TABLE);
    args.extend([
        hook, "{", "type", "filter", "hook", hook, "priority", "0", ";", "}",
    ]);
    in_netns(ns, "nft", &args);
}

/// Adds rule `rule` to chain `hook` of [`TABLE`] in `ns`.
fn add_rule(ns: &str, hook: &str, rule: &[&str]) {
    let mut args = vec!["add", "rule"];
    args.extend(TABLE);
    args.push(hook);
    args.extend(rule);
    in_netns(ns, "nft", &args);
}

/// Drops the multicast datagrams that reach `host` (its own namespace only), of the
/// family of its address (see `multicast_match`).
pub fn drop_multicast(host: &Host) {
    let ns = host.netns().expect("a namespace host");
    let mut args = vec!["add", "table"];
    args.extend(TABLE);
    in_netns(ns, "nft", &args);
    add_chain(ns, "input");
    let mut rule = multicast_match(host).to_vec();
    rule.extend(["counter", "drop"]);
    add_rule(ns, "input", &rule);
}

/// Drops 20 % of the UDP datagrams `host` receives and 20 % of those it sends (after
/// [`drop_multicast`], which makes the table).
pub fn lose_one_in_five(host: &Host) {
    let ns = host.netns().expect("a namespace host");
    add_chain(ns, "output");
    for hook in ["input", "output"] {
        add_rule(
            ns,
            hook,
            &[
                "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", "20", "counter",
                "drop",
            ],
        );
    }
}

/// Multicast datagrams the rule of [`drop_multicast`] dropped on `host` so far.
pub fn dropped(host: &Host) -> u64 {
    let ns = host.netns().expect("a namespace host");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "list", "chain"])
        .args(TABLE)
        .arg("input")
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
