//! The directories of the cluster benchmark: this binary re-executed as `herald serve
//! --store etcd://…` on loopback, each with its own request port and metrics endpoint,
//! all on one group and one etcd prefix. Every process is killed when its handle drops
//! (also on panic); a node can be killed, stopped and started again with the same
//! ports.

use herald_tests::harness::metrics::{scrape, Metrics};
use herald_tests::harness::ports::{free_tcp_port, free_udp_port};
use herald_tests::harness::process::Proc;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a directory may take to answer after a start.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How long a SIGTERM may take before the process is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Metrics are read this often while waiting for something.
pub const POLL: Duration = Duration::from_millis(10);

/// One `herald serve --store etcd://…`.
pub struct Node {
    /// A, B, C…
    pub label: String,
    /// Where it takes requests.
    pub addr: SocketAddr,
    /// Its metrics endpoint.
    pub metrics: SocketAddr,
    args: Vec<String>,
    proc: Option<Proc>,
    starts: u32,
}

impl Node {
    /// A node (not started) of `group` on the etcd at `etcd` under `prefix`.
    pub fn new(
        label: &str,
        etcd: SocketAddr,
        prefix: &str,
        group: SocketAddr,
        lease_ms: u64,
    ) -> Node {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
        let args = [
            "herald".to_string(),
            "serve".into(),
            "--bind".into(),
            addr.to_string(),
            "--group".into(),
            group.to_string(),
            "--interface".into(),
            "127.0.0.1".into(),
            "--store".into(),
            format!("etcd://{etcd}"),
            "--etcd-prefix".into(),
            prefix.into(),
            "--publisher-lease-ms".into(),
            lease_ms.to_string(),
            "--metrics".into(),
            metrics.to_string(),
        ]
        .to_vec();
        Node {
            label: label.into(),
            addr,
            metrics,
            args,
            proc: None,
            starts: 0,
        }
    }

    /// Starts it and waits until it answers requests and serves metrics.
    pub fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(&self.args).env("RUST_LOG", "info");
        self.starts += 1;
        self.proc = Some(Proc::spawn(
            format!("directory {} #{}", self.label, self.starts),
            cmd,
        ));
        crate::raw::wait_until_answering(self.addr, START_LIMIT)
            .map_err(|e| format!("directory {}: {e}\n{}", self.label, self.log_tail()))?;
        while self.scrape().is_none() {
            if started.elapsed() > START_LIMIT {
                return Err(format!("directory {}: no metrics", self.label));
            }
            std::thread::sleep(POLL);
        }
        Ok(started.elapsed())
    }

    /// SIGKILL, and reaped: nothing is sent on the way out, the etcd lease stays until
    /// it runs out.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Sends SIGTERM (an orderly stop: the publisher revokes its lease); the process is
    /// reaped by [`Node::reap`].
    pub fn terminate(&mut self) {
        if let Some(p) = &self.proc {
            p.signal("TERM");
        }
    }

    /// Waits (bounded) until a terminated process exits, killing it past the bound.
    pub fn reap(&mut self) -> Result<(), String> {
        let Some(mut p) = self.proc.take() else {
            return Ok(());
        };
        match p.wait_exit(STOP_LIMIT) {
            Some(_) => Ok(()),
            None => {
                p.kill();
                Err(format!(
                    "directory {} ignored SIGTERM for {STOP_LIMIT:?}",
                    self.label
                ))
            }
        }
    }

    /// True while its process runs.
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    /// Its metrics, if it answers.
    pub fn scrape(&self) -> Option<Metrics> {
        self.proc.as_ref()?;
        scrape(self.metrics).ok()
    }

    /// One gauge or counter, if it answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.scrape().map(|m| m.get(name))
    }

    /// Requests it handled that register or renew (new, changed and renewed).
    pub fn registers(&self) -> Option<f64> {
        self.scrape().map(|m| {
            m.get("herald_registrations_total")
                + m.get("herald_changes_total")
                + m.get("herald_renewals_total")
        })
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map_or_else(|| "(not running)".into(), Proc::log_tail)
    }
}

/// Three (or more) directories sharing one etcd and one group.
pub struct Cluster {
    /// The directories.
    pub nodes: Vec<Node>,
    /// Their group.
    pub group: SocketAddr,
    /// `--publisher-lease-ms`.
    pub lease_ms: u64,
}

impl Cluster {
    /// Starts `count` directories on the etcd at `etcd` under a prefix of their own,
    /// on a group of their own.
    pub fn start(etcd: SocketAddr, lease_ms: u64, count: usize) -> Result<Cluster, String> {
        let group = crate::process::unique_group();
        static STARTS: AtomicU32 = AtomicU32::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        // Each cluster has its own keys: nothing left by an earlier one (records, a
        // publisher key on a lease still running) reaches it.
        let prefix = format!("/herald-bench-{}-{n}", std::process::id());
        let mut cluster = Cluster {
            nodes: Vec::new(),
            group,
            lease_ms,
        };
        for i in 0..count {
            let label = char::from(b'A' + i as u8).to_string();
            let mut node = Node::new(&label, etcd, &prefix, group, lease_ms);
            let took = node.start()?;
            eprintln!(
                "[cluster] directory {label} at {} (metrics {}) answers after {} ms",
                node.addr,
                node.metrics,
                took.as_millis()
            );
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// Request addresses of every node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// Waits (bounded) until exactly one running node reports `herald_publishing 1`
    /// and every running node can reach etcd; its index.
    pub fn publisher(&mut self, limit: Duration) -> Result<usize, String> {
        let start = Instant::now();
        loop {
            let mut publishing = Vec::new();
            let mut settled = true;
            for (i, node) in self.nodes.iter_mut().enumerate() {
                if !node.running() {
                    continue;
                }
                match node.scrape() {
                    Some(m) => {
                        if m.get("herald_publishing") == 1.0 {
                            publishing.push(i);
                        }
                        settled &= m.get("herald_store_reachable") == 1.0;
                    }
                    None => settled = false,
                }
            }
            if settled && publishing.len() == 1 {
                return Ok(publishing[0]);
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "no single publisher within {limit:?} (publishing: {publishing:?})"
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}
