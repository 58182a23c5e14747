//! A full disk (fault injection): the data directory is a 1 MiB tmpfs in a private mount
//! namespace (root only; skipped with a reason otherwise). Registrations and
//! unregistrations in bulk while it is full, then space freed, more registrations,
//! SIGKILL and restart: nothing acknowledged may be lost, every failed write must be
//! refused with `storage_unavailable`, and the health endpoint must say so meanwhile.
//! Subscribers that come and go while it is full are on disk as they are in memory
//! once space returns.

mod common;

use common::*;
use herald_core::wire::{self, Message, RegisterRequest, UnregisterRequest};
use herald_core::{
    Duration as Lease, Environment, Location, Metadata, Registration, RejectReason, ServiceName,
};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const REGISTRANT: u64 = 0x5eed_d15c;

/// A shell holding a private mount namespace with a 1 MiB tmpfs at `dir`; killed on drop
/// (the tmpfs goes with the namespace).
struct Namespace {
    holder: Child,
    dir: PathBuf,
}

impl Namespace {
    /// The namespace with its tmpfs at `dir`, or `None` after printing why the test is
    /// skipped (not root, or no private mount namespace).
    fn or_skip(dir: &Path) -> Option<Namespace> {
        if not_root() {
            eprintln!("skipped: needs root (a tmpfs in a private mount namespace)");
            return None;
        }
        let ns = Namespace::new(dir);
        if ns.is_none() {
            eprintln!("skipped: cannot mount a tmpfs in a private mount namespace (unshare -m)");
        }
        ns
    }

    fn new(dir: &Path) -> Option<Namespace> {
        let script = format!(
            "mount -t tmpfs -o size=1m herald-disk-full {0} && echo mounted && exec sleep 600",
            dir.display()
        );
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let stdout = holder.stdout.take()?;
        std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let _ = holder.wait();
            return None;
        }
        Some(Namespace {
            holder,
            dir: dir.to_owned(),
        })
    }

    /// `PROGRAM ARGS…` inside the namespace.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.holder.id().to_string(), "-m", "--", program]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("RUST_LOG");
        cmd
    }

    /// Fills the tmpfs to the last byte.
    fn fill(&self) {
        let _ = self
            .command("dd")
            .args(["if=/dev/zero", "bs=4096", "status=none"])
            .arg(format!("of={}", self.dir.join("filler").display()))
            .stderr(Stdio::null())
            .status()
            .expect("run dd");
    }

    fn free(&self) {
        let status = self
            .command("rm")
            .arg(self.dir.join("filler"))
            .status()
            .expect("run rm");
        assert!(status.success());
    }

    fn directory(&self, net: &Net, metrics: &str) -> Proc {
        self.directory_with(net, &["--metrics", metrics])
    }

    /// A directory serving from the tmpfs, with `extra` flags.
    fn directory_with(&self, net: &Net, extra: &[&str]) -> Proc {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_herald"));
        cmd.args(serve_args(net, &self.dir, extra));
        let p = Proc::spawn_command("directory", cmd);
        p.expect_log("herald directory serving", Duration::from_secs(10));
        p
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// What the directory answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ack,
    Refused(RejectReason),
    Silent,
}

/// A bare client: one request at a time, a few retransmissions.
struct Requests {
    socket: UdpSocket,
    directory: SocketAddr,
    next: u32,
}

impl Requests {
    fn new(directory: SocketAddr) -> Requests {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        Requests {
            socket,
            directory,
            next: 1,
        }
    }

    fn ask(&mut self, bytes: &[u8], request: u32) -> Answer {
        let mut buf = [0u8; 2048];
        for _ in 0..4 {
            self.socket.send_to(bytes, self.directory).unwrap();
            while let Ok((n, _)) = self.socket.recv_from(&mut buf) {
                match wire::decode(&buf[..n]).map(|f| f.message) {
                    Ok(Message::Ack(a)) if a.request == request => return Answer::Ack,
                    Ok(Message::Reject(r)) if r.request == request => {
                        return Answer::Refused(r.reason)
                    }
                    _ => {}
                }
            }
        }
        Answer::Silent
    }

    fn register(&mut self, name: &str) -> Answer {
        let request = self.next;
        self.next += 1;
        // Some metadata, so that the disk fills with few records.
        let mut meta = Metadata::default();
        meta.insert("pad", &"x".repeat(80)).unwrap();
        let registration = Registration::new(
            ServiceName::new(name).unwrap(),
            &[Location::from_socket_addr("127.0.0.1:9000".parse().unwrap()).unwrap()],
        )
        .unwrap()
        .with_metadata(meta);
        let r = RegisterRequest {
            request,
            registrant: REGISTRANT,
            sequence: next_sequence(),
            lease: Lease::from_secs(300),
            registration,
        };
        let mut buf = [0u8; 1400];
        let n = wire::encode(&Environment::default(), &r, &mut buf).unwrap();
        self.ask(&buf[..n], request)
    }

    fn unregister(&mut self, name: &str) -> Answer {
        let request = self.next;
        self.next += 1;
        let u = UnregisterRequest {
            request,
            registrant: REGISTRANT,
            sequence: next_sequence(),
            name: ServiceName::new(name).unwrap(),
        };
        let mut buf = [0u8; 1400];
        let n = wire::encode(&Environment::default(), &u, &mut buf).unwrap();
        self.ask(&buf[..n], request)
    }

    /// Registers `name`, retrying (bounded) while storage is unavailable.
    fn register_patiently(&mut self, name: &str) -> Answer {
        for _ in 0..40 {
            match self.register(name) {
                Answer::Refused(RejectReason::StorageUnavailable) => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                other => return other,
            }
        }
        Answer::Refused(RejectReason::StorageUnavailable)
    }
}

/// The names `herald list` shows.
fn listed(net: &Net) -> BTreeSet<String> {
    let text = ok(net, &["list", "--json"]);
    let list: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap();
    list.iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_full_disk_loses_no_acknowledged_change() {
    let base = tempfile::tempdir().unwrap();
    let Some(ns) = Namespace::or_skip(base.path()) else {
        return;
    };
    let net = Net::new();
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let mut dir = ns.directory(&net, &metrics);
    let mut client = Requests::new(net.directory);
    let mut ledger = Ledger::default();
    let mut note =
        |name: String, answer: Answer, register: bool| ledger.note(name, answer, register);

    for i in 0..100 {
        let name = format!("before-{i:04}");
        let answer = client.register(&name);
        assert_eq!(answer, Answer::Ack, "{name} with free space");
        note(name, answer, true);
    }
    assert!(http_get(&metrics, "/healthz").starts_with("HTTP/1.1 200"));

    // The disk is full: bulk registrations until the store must grow, and
    // unregistrations.
    ns.fill();
    let mut full_refusals = 0;
    for i in 0..3000 {
        let name = format!("full-{i:04}");
        let answer = client.register(&name);
        if answer != Answer::Ack {
            full_refusals += 1;
        }
        note(name, answer, true);
        if i % 4 == 0 && i / 4 < 50 {
            let name = format!("before-{:04}", i / 4);
            let answer = client.unregister(&name);
            note(name, answer, false);
        }
        if full_refusals >= 200 && i / 4 >= 50 {
            break;
        }
    }
    assert!(full_refusals > 0, "the disk never filled up");
    let health = http_get(&metrics, "/healthz");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    assert!(health.contains("storage_writable: no"), "{health}");
    // The CLI names the reason.
    let mut args: Vec<String> = ["register", "cli-full", "127.0.0.1:9001", "--once"]
        .map(String::from)
        .to_vec();
    args.extend(net.client_args());
    let out = run(&args, Duration::from_secs(15));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "registered on a full disk");
    assert!(err.contains("storage_unavailable"), "{err}");
    let text = http_get(&metrics, "/metrics");
    assert_eq!(metric(&text, "herald_storage_writable"), 0.0, "{text}");
    assert_eq!(metric(&text, "herald_health"), 0.0, "{text}");

    // Space again: the store is reopened and the registrations go through.
    ns.free();
    for i in 0..100 {
        let name = format!("after-{i:04}");
        let answer = client.register_patiently(&name);
        assert_eq!(answer, Answer::Ack, "{name} after space came back");
        note(name, answer, true);
    }
    // The refused unregistrations, retried as a client does: each is taken now.
    for name in std::mem::take(&mut ledger.retry) {
        let answer = client.unregister(&name);
        assert_eq!(answer, Answer::Ack, "{name}: its unregistration retried");
        ledger.note(name, answer, false);
    }
    let Ledger {
        registered,
        unregistered,
        refused,
        ..
    } = ledger;
    let text = http_get(&metrics, "/metrics");
    assert_eq!(metric(&text, "herald_storage_writable"), 1.0, "{text}");
    assert!(http_get(&metrics, "/healthz").starts_with("HTTP/1.1 200"));

    dir.kill();
    let _dir = ns.directory(&net, &format!("127.0.0.1:{}", free_port_tcp()));
    let present = listed(&net);
    let lost: Vec<_> = registered.difference(&present).collect();
    let lost_registrations = lost.len();
    let undone_unregistrations = unregistered.intersection(&present).count();
    eprintln!(
        "disk full: {} registrations acknowledged, {} unregistrations acknowledged, \
         {refused} refused with storage_unavailable; acknowledged-and-lost: {} \
         registrations, {} unregistrations",
        registered.len(),
        unregistered.len(),
        lost_registrations,
        undone_unregistrations
    );
    assert_eq!(
        lost_registrations, 0,
        "acknowledged registrations lost: {lost:?}"
    );
    assert_eq!(
        undone_unregistrations, 0,
        "acknowledged unregistrations undone"
    );
}

/// The ids of the directory's unicast subscribers (`herald list --subscribers --json`).
fn subscriber_ids(net: &Net, http: &str) -> BTreeSet<String> {
    let text = ok(net, &["list", "--subscribers", "--json", "--http", http]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(text.trim()).unwrap();
    rows.iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls (bounded) until the subscriber ids satisfy `check`; returns them.
fn wait_ids(net: &Net, http: &str, check: impl Fn(&BTreeSet<String>) -> bool) -> BTreeSet<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = subscriber_ids(net, http);
        if check(&ids) || std::time::Instant::now() > deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of `herald_storage_writable` once it is `want`, polled (bounded).
fn wait_writable(metrics: &str, want: f64, within: Duration) -> f64 {
    let deadline = std::time::Instant::now() + within;
    loop {
        let value = metric(&http_get(metrics, "/metrics"), "herald_storage_writable");
        if value == want || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Subscriptions taken and ended while every write fails are on disk once a write
/// succeeds: after a restart the directory holds the subscriber that came while the
/// disk was full (it never renewed after space came back) and not the one that
/// unsubscribed meanwhile.
#[test]
fn subscriber_changes_while_the_disk_is_full_survive_a_restart() {
    let base = tempfile::tempdir().unwrap();
    let Some(ns) = Namespace::or_skip(base.path()) else {
        return;
    };
    let net = Net::new();
    let metrics = format!("127.0.0.1:{}", free_port_tcp());
    let http = format!("127.0.0.1:{}", free_port_tcp());
    let mut dir = ns.directory_with(&net, &["--metrics", &metrics, "--http", &http]);
    let watch = |label: &str| {
        let mut args: Vec<String> = ["watch", "--json", "--subscribe"]
            .map(String::from)
            .to_vec();
        args.extend(net.client_args());
        Proc::spawn(label, &args, &[])
    };
    let early = watch("watch subscribed before");
    let ids = wait_ids(&net, &http, |ids| ids.len() == 1);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let early_id = ids.into_iter().next().unwrap();
    // Stored with the next write (subscriptions wait up to a second).
    std::thread::sleep(Duration::from_millis(1500));

    // The disk is full: registrations until one is refused (writes fail from then on).
    ns.fill();
    let mut client = Requests::new(net.directory);
    let refused = (0..3000).any(|i| client.register(&format!("full-{i:04}")) != Answer::Ack);
    assert!(refused, "the disk never filled up");
    assert_eq!(wait_writable(&metrics, 0.0, Duration::from_secs(5)), 0.0);

    // One comes, one goes, while every write fails.
    let mut late = watch("watch subscribed while full");
    let ids = wait_ids(&net, &http, |ids| ids.len() == 2);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let late_id = ids.into_iter().find(|id| *id != early_id).unwrap();
    early.signal("INT");
    let ids = wait_ids(&net, &http, |ids| !ids.contains(&early_id));
    assert_eq!(ids, BTreeSet::from([late_id.clone()]), "unsubscribed");
    // The late one never renews again; retries (at most 2 s apart) take its last
    // change and the unsubscription into writes that fail.
    std::thread::sleep(Duration::from_secs(3));
    late.kill();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        metric(&http_get(&metrics, "/metrics"), "herald_storage_writable"),
        0.0,
        "every write failed meanwhile"
    );

    ns.free();
    assert_eq!(wait_writable(&metrics, 1.0, Duration::from_secs(20)), 1.0);
    dir.kill();
    let _dir = ns.directory_with(&net, &["--http", &http]);
    let ids = subscriber_ids(&net, &http);
    assert_eq!(
        ids,
        BTreeSet::from([late_id]),
        "the subscription taken while the disk was full is restored, the one ended \
         meanwhile is not"
    );
}

/// What the client was told: registered (acknowledged and not acknowledged-unregistered
/// since), unregistered, and the unregistrations refused with `storage_unavailable`,
/// which a client retries: the refusal says the change is not known to be durable, not
/// that it was undone (the directory keeps it in memory and stores it with the next
/// write that succeeds).
#[derive(Default)]
struct Ledger {
    registered: BTreeSet<String>,
    unregistered: BTreeSet<String>,
    retry: BTreeSet<String>,
    refused: usize,
}

impl Ledger {
    fn note(&mut self, name: String, answer: Answer, register: bool) {
        match answer {
            Answer::Ack if register => {
                self.unregistered.remove(&name);
                self.registered.insert(name);
            }
            Answer::Ack => {
                self.retry.remove(&name);
                self.registered.remove(&name);
                self.unregistered.insert(name);
            }
            Answer::Refused(RejectReason::StorageUnavailable) => {
                self.refused += 1;
                if !register {
                    self.retry.insert(name);
                }
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_full_or_read_only_data_directory_at_start_exits_3() {
    let base = tempfile::tempdir().unwrap();
    let Some(ns) = Namespace::or_skip(base.path()) else {
        return;
    };
    let serve = |what: &str| {
        let net = Net::new();
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_herald"));
        cmd.args(serve_args(&net, &ns.dir, &[]));
        let mut p = Proc::spawn_command(what, cmd);
        let code = p.wait(Duration::from_secs(10));
        (code, p.stderr())
    };
    ns.fill();
    let (code, err) = serve("directory on a full disk");
    assert_eq!(code, Some(3), "{err}");
    ns.free();
    let _ = ns
        .command("rm")
        .arg("-f")
        .arg(ns.dir.join("registry.redb"))
        .status();
    let status = ns
        .command("mount")
        .args(["-o", "remount,ro"])
        .arg(&ns.dir)
        .status()
        .expect("run mount");
    assert!(status.success());
    let (code, err) = serve("directory on a read-only file system");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
}

/// A request sequence above every one sent before, following the wall clock (as the
/// client's does), so that requests stay ordered across the directory's restart.
fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let previous = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(clock.max(last + 1))
        })
        .unwrap_or(0);
    clock.max(previous + 1)
}
