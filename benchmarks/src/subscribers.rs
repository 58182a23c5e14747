//! Unicast delivery at scale: one directory holding 10,000 services, and S = 10, 100,
//! 1,000 listeners simulated in this process, each a herald-core `Client` on its own
//! UDP socket (on its own 127.1.x.y address), driven by its own tokio task. Listeners
//! are either unicast subscribers (`Subscribe::Always`, directory `--delivery unicast`)
//! or multicast listeners (the group joined on loopback, directory `--delivery
//! multicast`). Then K changes are made one at a time and timed from the request to
//! the last listener's socket receiving the datagram that tells it (the kernel's
//! receive time, `SO_TIMESTAMPNS`: "reached", what the directory's fan-out costs) and
//! to the last listener reporting it ("handled", which adds the simulation's own
//! scheduling of 1,000 tasks on the same cores; with `--pin` the directory runs on a
//! CPU of its own and the listeners on the others); bytes on the listeners' sockets, the directory's
//! re-sends, CPU time and resident memory are measured around them. Last, a subscriber
//! that stops acknowledging is counted until its lease drops it.

use crate::process::{rss_kib, Directory, DirectorySpec};
use crate::raw::{populate, register_frame, unregister_frame};
use crate::report::{num, Report};
use crate::stats::Summary;
use herald_core::{
    Client, ClientConfig, ClientEvent, Duration as CoreDuration, Instant as CoreInstant, Interest,
    Location, Subscribe,
};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use std::io::IoSliceMut;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::Interest as Readiness;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Listener counts.
const SIZES: [usize; 3] = [10, 100, 1_000];
/// Services registered before the listeners come.
const SERVICES: usize = 10_000;
/// Changes timed per run: registrations of `CHANGES / 2` names, then their removals.
const CHANGES: usize = 50;
/// Name prefix of the timed changes: the listeners' interest.
const PREFIX: &str = "scale-change-";
/// Longest wait for every listener to report one change.
const CHANGE_LIMIT: Duration = Duration::from_secs(3);
/// Longest wait for every listener to settle (subscribed, first snapshot in).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Lease the listeners ask for: renewals stay rare during the measurement.
const LEASE: Duration = Duration::from_secs(60);
/// Lease of the subscriber that stops acknowledging.
const MUTE_LEASE: Duration = Duration::from_secs(10);
/// Longest wait for the silent subscriber to be dropped.
const MUTE_LIMIT: Duration = Duration::from_secs(30);
/// IPv4 + UDP header bytes of every datagram on the wire.
const HEADERS: u64 = 28;

/// How the listeners hear changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Subscribed to unicast deliveries.
    Unicast,
    /// On the multicast group (joined on loopback).
    Multicast,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Unicast => "unicast",
            Mode::Multicast => "multicast",
        }
    }
}

/// What every listener task shares with the run.
struct Shared {
    /// The clock origin of every client.
    base: Instant,
    /// Count received datagrams (during the changes).
    counting: AtomicBool,
    datagrams: AtomicU64,
    bytes: AtomicU64,
    /// Every task stops.
    stop: AtomicBool,
}

/// A listener's report: it saw a change (`removal` or not) of `name` at `at`, or
/// finished its first snapshot (`name` empty); `arrived` is when the datagram that
/// told it reached its socket (the kernel's receive time), before the listener's own
/// scheduling and handling.
struct Seen {
    listener: usize,
    name: String,
    removal: bool,
    at: Instant,
    arrived: Option<SystemTime>,
}

/// The silent subscriber's own counters.
#[derive(Default)]
struct Mute {
    /// It stops handling and sending anything.
    silent: AtomicBool,
    datagrams: AtomicU64,
    bytes: AtomicU64,
}

/// One listener: a core client on `socket` (and, for multicast, the group socket).
struct Listener {
    index: usize,
    client_config: ClientConfig,
    socket: UdpSocket,
    group: Option<UdpSocket>,
    mute: Option<Arc<Mute>>,
}

fn core_now(shared: &Shared) -> CoreInstant {
    CoreInstant::from_micros(shared.base.elapsed().as_micros() as u64)
}

/// Drives one listener until `shared.stop`.
async fn drive(l: Listener, shared: Arc<Shared>, tx: mpsc::UnboundedSender<Seen>) {
    let mut slots = vec![None; 64];
    let mut index = vec![0u32; 64];
    let Ok(mut client) = Client::<1>::new(l.client_config, &mut slots, &mut index) else {
        return;
    };
    if l.group.is_some() {
        client.request_snapshot(core_now(&shared));
    }
    let base = tokio::time::Instant::from_std(shared.base);
    let (mut buf, mut gbuf, mut out) = (vec![0u8; 65_536], vec![0u8; 65_536], vec![0u8; 1400]);
    let mut ready = false;
    // The kernel's receive time of the datagram handled last.
    let mut arrived = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let silent = l
            .mute
            .as_ref()
            .is_some_and(|m| m.silent.load(Ordering::Relaxed));
        if !silent {
            let now = core_now(&shared);
            while let Some(t) = client.poll_transmit(now, &mut out) {
                let _ = l.socket.send_to(&out[..t.len], t.destination).await;
            }
            while let Some(event) = client.poll_event() {
                let (name, removal) = match event {
                    ClientEvent::Discovered(s) => (s.name().as_str().to_owned(), false),
                    ClientEvent::Unregistered(s) => (s.name().as_str().to_owned(), true),
                    ClientEvent::SnapshotComplete { .. } if !ready => {
                        ready = true;
                        (String::new(), false)
                    }
                    _ => continue,
                };
                let at = Instant::now();
                let _ = tx.send(Seen {
                    listener: l.index,
                    name,
                    removal,
                    at,
                    arrived,
                });
            }
        }
        let wake = client
            .poll_timeout()
            .map(|t| base + Duration::from_micros(t.as_micros()))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(100))
            .min(tokio::time::Instant::now() + Duration::from_millis(100));
        let received = tokio::select! {
            r = recv_stamped(&l.socket, &mut buf) => r.ok().map(|(n, from, at)| (n, from, at, false)),
            r = async {
                match &l.group {
                    Some(g) => recv_stamped(g, &mut gbuf).await,
                    None => std::future::pending().await,
                }
            } => r.ok().map(|(n, from, at)| (n, from, at, true)),
            _ = tokio::time::sleep_until(wake) => None,
        };
        let now = core_now(&shared);
        match received {
            Some((n, from, stamp, on_group)) => {
                arrived = stamp;
                if let Some(m) = l.mute.as_ref().filter(|m| m.silent.load(Ordering::Relaxed)) {
                    m.datagrams.fetch_add(1, Ordering::Relaxed);
                    m.bytes.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                if shared.counting.load(Ordering::Relaxed) && l.mute.is_none() {
                    shared.datagrams.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                let bytes = if on_group { &gbuf[..n] } else { &buf[..n] };
                client.handle_datagram(now, from, bytes);
            }
            None if !silent => client.handle_timeout(now),
            None => {}
        }
    }
}

/// Opens listener `i`'s socket on its own loopback address (127.1.x.y), stamping
/// what it receives.
async fn listener_socket(i: usize) -> Result<UdpSocket, String> {
    let ip = Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200) as u8 + 1);
    let socket = UdpSocket::bind((ip, 0))
        .await
        .map_err(|e| format!("bind {ip}: {e}"))?;
    stamp_received(&socket)?;
    Ok(socket)
}

/// Has the kernel stamp every datagram `socket` receives (`SO_TIMESTAMPNS`).
fn stamp_received(socket: &impl std::os::fd::AsFd) -> Result<(), String> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true)
        .map_err(|e| format!("SO_TIMESTAMPNS: {e}"))
}

/// Receives one datagram, with the kernel's receive time when it gave one.
async fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Option<SystemTime>)> {
    socket
        .async_io(Readiness::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let mut space = nix::cmsg_space!(TimeSpec);
            let msg = recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )?;
            let stamp = msg.cmsgs()?.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(t) => Some(
                    UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(t.tv_sec()).unwrap_or(0),
                            u32::try_from(t.tv_nsec()).unwrap_or(0),
                        ),
                ),
                _ => None,
            });
            let from = msg
                .address
                .as_ref()
                .and_then(herald_server::inbox::socket_addr)
                .ok_or_else(|| std::io::Error::other("a datagram without a source address"))?;
            Ok((msg.bytes, from, stamp))
        })
        .await
}

/// A socket on `group` (shared with every other listener's), joined on loopback.
fn group_socket(group: SocketAddr) -> Result<UdpSocket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let SocketAddr::V4(g) = group else {
        return Err("IPv4 group expected".into());
    };
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| e.to_string())?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    s.bind(&group.into())
        .map_err(|e| format!("bind {group}: {e}"))?;
    s.join_multicast_v4(g.ip(), &Ipv4Addr::LOCALHOST)
        .map_err(|e| format!("join {group}: {e}"))?;
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    stamp_received(&s)?;
    UdpSocket::from_std(s.into()).map_err(|e| e.to_string())
}

/// The client settings of a listener interested in [`PREFIX`].
fn client_config(i: usize, directory: SocketAddr, mode: Mode, lease: Duration) -> ClientConfig {
    let mut c = ClientConfig::new(0x5ca1_e000_0000 + i as u64 + 1);
    let location = Location::new(directory.ip(), directory.port()).expect("location");
    let _ = c.directories.push(location);
    c.interest = Some(Interest::parse_all([format!("{PREFIX}*").as_str()]).expect("interest"));
    c.lease = CoreDuration::from_millis(lease.as_millis() as u64);
    c.subscribe = match mode {
        Mode::Unicast => Subscribe::Always,
        Mode::Multicast => Subscribe::Never,
    };
    c
}

/// `utime + stime` of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The value of counter or gauge `name` on the directory's metrics endpoint.
fn metric(metrics: SocketAddr, name: &str) -> Option<f64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {metrics}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A free TCP port on loopback.
fn free_tcp_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// What one run measured.
struct Run {
    mode: Mode,
    listeners: usize,
    settled: usize,
    latency: Summary,
    /// From the request to the first listener reporting it.
    first: Summary,
    /// From the request to the kernel's receive time of the last listener's datagram
    /// that told it: when the change reached every subscriber's socket.
    reached: Summary,
    /// Changes every listener reported within [`CHANGE_LIMIT`].
    complete: usize,
    datagrams: u64,
    bytes: u64,
    resends: f64,
    deliveries: f64,
    cpu_s: f64,
    rss_per_listener_b: f64,
    /// The silent subscriber: datagrams after it fell silent, seconds until dropped.
    mute: Option<(u64, u64, f64, bool)>,
}

/// Runs `listeners` listeners of `mode` against a fresh directory.
async fn run_one(mode: Mode, listeners: usize, with_mute: bool, pin: bool) -> Result<Run, String> {
    let unlimited = (2 * SERVICES).to_string();
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()?));
    let directory = Directory::start(&DirectorySpec {
        capacity: 2 * SERVICES + 1024,
        extra: [
            "--registrations-per-address",
            &unlimited,
            "--registrations-per-network",
            &unlimited,
            "--delivery",
            mode.name(),
            "--subscribers",
            "2048",
            "--metrics",
            &metrics.to_string(),
        ]
        .map(String::from)
        .to_vec(),
        ..DirectorySpec::default()
    })?;
    let _apart = if pin {
        let apart = crate::pin::directory_apart(directory.pid())?;
        eprintln!(
            "[subscribers: the directory on CPU {}, the listeners on the others]",
            apart.directory_cpu
        );
        Some(apart)
    } else {
        None
    };
    let addr = directory.addr;
    let p = tokio::task::spawn_blocking(move || {
        populate(
            addr,
            "scale",
            SERVICES,
            Duration::from_secs(300),
            Duration::from_secs(60),
        )
    })
    .await
    .map_err(|e| e.to_string())?;
    if p.answered != SERVICES {
        return Err(format!("registered {} of {SERVICES}", p.answered));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = directory.pid();
    let rss_before = rss_kib(pid).unwrap_or(0);
    let shared = Arc::new(Shared {
        base: Instant::now(),
        counting: AtomicBool::new(false),
        datagrams: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..listeners {
        let group = match mode {
            Mode::Multicast => Some(group_socket(directory.group)?),
            Mode::Unicast => None,
        };
        let l = Listener {
            index: i,
            client_config: client_config(i, addr, mode, LEASE),
            socket: listener_socket(i).await?,
            group,
            mute: None,
        };
        tasks.push(tokio::spawn(drive(l, shared.clone(), tx.clone())));
    }
    let mute = with_mute.then(|| Arc::new(Mute::default()));
    if let Some(m) = &mute {
        let l = Listener {
            index: listeners,
            client_config: client_config(listeners, addr, Mode::Unicast, MUTE_LEASE),
            socket: listener_socket(listeners).await?,
            group: None,
            mute: Some(m.clone()),
        };
        tasks.push(tokio::spawn(drive(l, shared.clone(), tx.clone())));
    }
    let expected = listeners + usize::from(with_mute);
    // Settle: every listener's first snapshot is in.
    let mut ready = vec![false; expected];
    let start = Instant::now();
    while ready.iter().filter(|r| **r).count() < expected && start.elapsed() < SETTLE_LIMIT {
        if let Ok(Some(seen)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            if seen.name.is_empty() {
                ready[seen.listener] = true;
            }
        }
    }
    // The silent subscriber, if any, is the last: not one of the S.
    let settled = ready[..listeners].iter().filter(|r| **r).count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = rss_kib(pid).unwrap_or(0);
    let rss_per_listener_b =
        (rss_after as f64 - rss_before as f64) * 1024.0 / listeners.max(1) as f64;

    // The timed changes, one at a time.
    let control = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| e.to_string())?;
    let resends_before = metric(metrics, "herald_delivery_resends_total").unwrap_or(0.0);
    let deliveries_before = metric(metrics, "herald_deliveries_total").unwrap_or(0.0);
    let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
    while rx.try_recv().is_ok() {}
    shared.counting.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut firsts = Vec::new();
    let mut reached = Vec::new();
    let mut complete = 0;
    let mut ack = vec![0u8; 2048];
    for k in 0..CHANGES {
        let half = CHANGES / 2;
        let (name, removal) = (format!("{PREFIX}{:03}", k % half), k >= half);
        let request = 100_000 + k as u32;
        let frame = if removal {
            unregister_frame(request, &name)
        } else {
            register_frame(request, &name, 9_000, Duration::from_secs(300))
        };
        let t0 = Instant::now();
        let wall0 = SystemTime::now();
        control
            .send_to(&frame, addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut seen = vec![false; expected];
        let mut count = 0;
        let mut last = t0;
        let mut first = None;
        // The latest kernel receive time of the datagrams that told each listener.
        let mut arrived = Some(wall0);
        while count < listeners && t0.elapsed() < CHANGE_LIMIT {
            let left = CHANGE_LIMIT.saturating_sub(t0.elapsed());
            let Ok(Some(s)) = tokio::time::timeout(left, rx.recv()).await else {
                break;
            };
            if s.name == name && s.removal == removal && s.listener < listeners && !seen[s.listener]
            {
                seen[s.listener] = true;
                count += 1;
                last = last.max(s.at);
                first = Some(first.unwrap_or(s.at).min(s.at));
                arrived = arrived.zip(s.arrived).map(|(a, b)| a.max(b));
            }
        }
        if count == listeners {
            complete += 1;
            latencies.push(last - t0);
            firsts.extend(first.map(|f| f - t0));
            reached.extend(arrived.and_then(|a| a.duration_since(wall0).ok()));
        }
        // The directory's answer, then a pause so that changes do not overlap.
        let _ = tokio::time::timeout(Duration::from_millis(100), control.recv_from(&mut ack)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.counting.store(false, Ordering::Relaxed);
    let cpu_s = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    let resends = metric(metrics, "herald_delivery_resends_total").unwrap_or(0.0) - resends_before;
    let deliveries = metric(metrics, "herald_deliveries_total").unwrap_or(0.0) - deliveries_before;

    // The silent subscriber: it stops handling and sending, one more change is made,
    // and what reaches it is counted until its lease drops it.
    let mut mute_figures = None;
    if let Some(m) = &mute {
        let expired_before = metric(metrics, "herald_subscribers_expired_total").unwrap_or(0.0);
        let resends_before = metric(metrics, "herald_delivery_resends_total").unwrap_or(0.0);
        m.silent.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let frame = register_frame(200_000, &format!("{PREFIX}silent"), 9_001, LEASE);
        let _ = control.send_to(&frame, addr).await;
        let mut dropped = false;
        while t0.elapsed() < MUTE_LIMIT {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let expired = metric(metrics, "herald_subscribers_expired_total").unwrap_or(0.0);
            if expired > expired_before {
                dropped = true;
                break;
            }
        }
        let dropped_after = t0.elapsed().as_secs_f64();
        // Anything after the drop would show here.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let resends =
            metric(metrics, "herald_delivery_resends_total").unwrap_or(0.0) - resends_before;
        mute_figures = Some((
            m.datagrams.load(Ordering::Relaxed),
            resends as u64,
            dropped_after,
            dropped,
        ));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    drop(directory);
    Ok(Run {
        mode,
        listeners,
        settled,
        latency: Summary::of(&latencies),
        first: Summary::of(&firsts),
        reached: Summary::of(&reached),
        complete,
        datagrams: shared.datagrams.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        resends,
        deliveries,
        cpu_s,
        rss_per_listener_b,
        mute: mute_figures,
    })
}

/// Which sizes and modes `herald-bench subscribers` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Listener counts, each run in every mode of `modes`.
    sizes: Vec<usize>,
    /// Delivery modes.
    modes: Vec<Mode>,
    /// The directory on a CPU of its own, the listeners on the others.
    pin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sizes: SIZES.to_vec(),
            modes: vec![Mode::Unicast, Mode::Multicast],
            pin: false,
        }
    }
}

impl Options {
    /// Parses `[--sizes N,N,…] [--mode unicast|multicast|both] [--pin]`.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--pin" {
                options.pin = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
            match arg.as_str() {
                "--sizes" => {
                    options.sizes = value
                        .split(',')
                        .map(|n| match n.trim().parse() {
                            Ok(n) if (1..=2000).contains(&n) => Ok(n),
                            _ => Err(format!("--sizes: {n:?} is not a count from 1 to 2000")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--mode" => {
                    options.modes = match value.as_str() {
                        "unicast" => vec![Mode::Unicast],
                        "multicast" => vec![Mode::Multicast],
                        "both" => vec![Mode::Unicast, Mode::Multicast],
                        m => {
                            return Err(format!("--mode: {m:?} is not unicast, multicast or both"))
                        }
                    };
                }
                other => return Err(format!("unknown option {other:?} for subscribers")),
            }
        }
        Ok(options)
    }
}

/// Runs every size of `options` in each of its modes and reports the table.
pub fn run(
    report: &mut Report,
    runtime: &tokio::runtime::Runtime,
    options: &Options,
) -> Result<(), String> {
    report.section(&format!(
        "Unicast delivery to subscribers ({SERVICES} services, {CHANGES} changes one at a time, loopback)"
    ));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut runs = Vec::new();
    for &listeners in &options.sizes {
        for &mode in &options.modes {
            let with_mute = mode == Mode::Unicast && listeners == SIZES[0];
            let started = Instant::now();
            let run = runtime.block_on(run_one(mode, listeners, with_mute, options.pin))?;
            eprintln!(
                "[subscribers: {} x{listeners}: {:.1} s]",
                mode.name(),
                started.elapsed().as_secs_f64()
            );
            runs.push(run);
        }
    }
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for r in &runs {
        let per = (CHANGES * r.listeners) as f64;
        let wire = r.bytes + HEADERS * r.datagrams;
        rows.push(vec![
            r.listeners.to_string(),
            r.mode.name().into(),
            format!("{}/{}", r.settled, r.listeners),
            format!("{}/{CHANGES}", r.complete),
            num(r.first.p50, 2),
            num(r.reached.p50, 2),
            num(r.reached.p99, 2),
            num(r.latency.p50, 2),
            num(r.latency.p99, 2),
            num(r.datagrams as f64 / per, 2),
            num(r.bytes as f64 / per, 0),
            num(wire as f64 / per, 0),
            num(r.deliveries, 0),
            num(r.resends, 0),
            num(r.cpu_s * 1e3, 0),
            num(r.rss_per_listener_b, 0),
        ]);
        json.push(serde_json::json!({
            "mode": r.mode.name(), "listeners": r.listeners, "settled": r.settled,
            "complete_changes": r.complete, "latency": r.latency.json(), "first": r.first.json(),
            "reached": r.reached.json(),
            "datagrams": r.datagrams, "bytes": r.bytes, "deliveries": r.deliveries,
            "resends": r.resends, "cpu_s": r.cpu_s, "rss_per_listener_b": r.rss_per_listener_b,
        }));
    }
    report.table(
        &[
            "S",
            "delivery",
            "settled",
            "changes seen by all",
            "first p50 ms",
            "all reached p50 ms",
            "all reached p99 ms",
            "all handled p50 ms",
            "all handled p99 ms",
            "datagrams/change/listener",
            "payload B/change/listener",
            "wire B/change/listener (+28 B/datagram)",
            "deliveries sent",
            "re-sends",
            "directory CPU ms",
            "RSS growth B/listener",
        ],
        &rows,
    );
    if let Some((datagrams, resends, after, dropped)) = runs.iter().find_map(|r| r.mute) {
        report.line(&format!(
            "\nA subscriber that stops acknowledging (lease {} s asked): {datagrams} datagrams \
             reached it after it fell silent, {resends} re-sends counted by the directory; \
             {} after {after:.1} s.",
            MUTE_LEASE.as_secs(),
            if dropped { "dropped" } else { "NOT dropped" }
        ));
        json.push(serde_json::json!({"silent_subscriber": {
            "datagrams": datagrams, "resends": resends, "seconds": after, "dropped": dropped}}));
    }
    if options.pin {
        report.line(
            "\nThe directory ran on a CPU of its own (`--pin`), the listeners on the others: \
             their wake-ups did not preempt its sends.",
        );
    }
    let slot = std::mem::size_of::<herald_core::directory::SubscriberSlot>();
    report.line(&format!(
        "\nThe directory's subscriber table is allocated whole at start (`--subscribers`, \
         here 2048): {slot} B per slot. Load average before the run: {}.",
        load.trim()
    ));
    report.record("subscriber_slot_bytes", slot.into());
    report.record("subscribers", serde_json::Value::Array(json));
    Ok(())
}
