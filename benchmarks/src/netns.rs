//! The two private network namespaces of the mdns-sd comparison, joined by a veth pair:
//! side A (`hbA`, 10.239.0.1/24: directory, registrants, mdns-sd publisher) and side B
//! (`hbB`, 10.239.0.2/24: the watcher and the mdns-sd browser), each with a route for
//! 224.0.0.0/4 on its end of the pair, so multicast stays on the pair. The machine's own
//! interfaces are never touched. Threads enter a side with `setns`; sockets they open
//! and processes they start live there. Both namespaces are deleted when the [`Pair`]
//! is dropped (also while unwinding from a panic); pairs left by a killed run (named
//! `hbv-<pid>-…` after a dead process) are swept before the first pair of a run.

use herald_tests::harness::netns::ip;
pub use herald_tests::harness::netns::unavailable;
use nix::sched::{setns, CloneFlags};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Address of side A's end of the pair.
pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 239, 0, 1);
/// Address of side B's end of the pair.
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 239, 0, 2);
/// Side A's interface.
pub const A_IFACE: &str = "hbA";
/// Side B's interface.
pub const B_IFACE: &str = "hbB";
/// Prefix of every namespace of these pairs.
const PREFIX: &str = "hbv-";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// One side of a pair: a namespace name.
#[derive(Clone, Debug)]
pub struct Side {
    /// The namespace's name.
    pub name: String,
}

impl Side {
    /// Moves the calling thread into this namespace (threads and processes it starts
    /// afterwards are there too).
    pub fn enter(&self) -> Result<(), String> {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.name))
            .map_err(|e| format!("open namespace {}: {e}", self.name))?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns {}: {e}", self.name))
    }

    /// Runs `f` on a new thread inside this namespace; its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        self.spawn(f)
            .join()
            .map_err(|_| format!("a thread in {} panicked", self.name))?
    }

    /// Starts `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, String>> {
        let side = self.clone();
        std::thread::spawn(move || {
            side.enter()?;
            f()
        })
    }
}

/// Two namespaces joined by a veth pair, deleted on drop.
pub struct Pair {
    /// Directory, registrants, publisher.
    pub a: Side,
    /// Watcher, browser.
    pub b: Side,
    made: Vec<String>,
}

impl Pair {
    /// Creates both namespaces and the veth pair between them.
    pub fn create() -> Result<Pair, String> {
        SWEEP.call_once(sweep_stale);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{seq}", std::process::id());
        let mut pair = Pair {
            a: Side {
                name: format!("{base}-a"),
            },
            b: Side {
                name: format!("{base}-b"),
            },
            made: Vec::new(),
        };
        // On error, dropping `pair` deletes what was made so far.
        for name in [pair.a.name.clone(), pair.b.name.clone()] {
            ip(&["netns", "add", &name])?;
            pair.made.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
        ip(&[
            "-n", a, "link", "add", A_IFACE, "type", "veth", "peer", "name", B_IFACE, "netns", b,
        ])?;
        for (ns, iface, addr) in [(a, A_IFACE, A_ADDR), (b, B_IFACE, B_ADDR)] {
            ip(&["-n", ns, "link", "set", iface, "multicast", "on"])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", iface])?;
            ip(&["-n", ns, "link", "set", iface, "up"])?;
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", iface])?;
        }
        Ok(pair)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for name in &self.made {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Deletes namespaces with our prefix whose creating process is gone.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("[netns] deleting stale namespace {name} (process {pid} is gone)");
            let _ = ip(&["netns", "del", name]);
        }
    }
}
