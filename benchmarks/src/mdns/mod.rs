//! Herald against mdns-sd 0.21.7 on a veth pair between two private network namespaces
//! (see [`crate::netns`]): directory, registrants and the mdns-sd publisher on side A,
//! Herald's watcher (the library's `Watch`) and the mdns-sd browser on side B. For each
//! registry size N, in a pair of its own: register N → each discovered, unregister one →
//! removed, the publisher's bytes on the veth in the first 10 s, then (after settling)
//! idle traffic per 10 s window: multicast and unicast on the veth, and Herald's
//! renewal datagrams between registrants and directory (on side A's loopback). A last
//! pair measures crash removal: Herald by its lease, mdns-sd by its own record TTL.
//! Frames are counted with a packet socket ([`crate::capture`]), headers included.
//!
//! The pairs run at the same time, but only one at a time is in its active phase
//! (registering, discovering, unregistering), so latencies are not measured against
//! each other; idle windows overlap (they count frames, not time).

use crate::capture::{Capture, Counts, Flow, Tally};
use crate::events;
use crate::netns::{Pair, A_ADDR, B_ADDR, B_IFACE};
use crate::process::{wait_for_line, Directory, DirectorySpec, Spawned};
use crate::report::{num, ratio, Report};
use crate::stats::{ms, Summary};
use crate::svg::{log_log, Series};
use herald_core::Interest;
use herald_server::client::{registration, ClientOptions, EventKind, Herald, Registered, Watch};
use herald_server::net::Interface;
use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Registry sizes of a full run.
const COUNTS: [usize; 4] = [10, 100, 1_000, 10_000];
/// Registry sizes of `--quick`.
const QUICK_COUNTS: [usize; 2] = [100, 1_000];
/// Time bound of N services being discovered.
const DISCOVER_LIMIT: Duration = Duration::from_secs(30);
/// Time bound of noticing one unregistration.
const REMOVE_LIMIT: Duration = Duration::from_secs(20);
/// Unregistrations measured per N (each registered again afterwards).
const REMOVALS: usize = 5;
/// Window of the publisher's bytes after the first registration.
const FIRST: Duration = Duration::from_secs(10);
/// Wait between the end of the active phase and the first idle window.
const SETTLE: Duration = Duration::from_secs(30);
/// One idle window.
const WINDOW: Duration = Duration::from_secs(10);
/// Idle windows: 120 s, one whole cycle of mdns-sd's 120 s host-record TTL refresh.
const WINDOWS: usize = 12;
/// Registrations per Herald client (a client holds at most 32).
const PER_CLIENT: usize = 25;
/// The mDNS port; every other UDP port on the pair is Herald's.
const MDNS_PORT: u16 = 5353;
/// All N registrations come from one address (one process on side A): the directory's
/// per-address and per-network budgets (1,024 and 4,096 by default) are raised to its
/// capacity.
const ONE_ADDRESS_BUDGET: [&str; 4] = [
    "--registrations-per-address",
    "16384",
    "--registrations-per-network",
    "16384",
];
/// Margin over a lease or TTL when waiting for a crash to be noticed.
const CRASH_MARGIN: Duration = Duration::from_secs(20);
/// Lease of the short-lease crashing Herald registrant (`herald register --lease 1`).
const SHORT_LEASE_S: u64 = 1;
/// How long `herald-bench mdns-publish` waits to be killed.
const PUBLISH_LIMIT: Duration = Duration::from_secs(400);
/// Time bound of one capture.
const CAPTURE_LIMIT: Duration = Duration::from_secs(900);

/// What `herald-bench mdns` runs.
pub struct Options {
    /// Registry sizes.
    pub counts: Vec<usize>,
    /// Where to write the idle-cost plot (SVG), if anywhere.
    pub plot: Option<PathBuf>,
    /// Herald's active phase only (register, discover, unregister, first 10 s bytes),
    /// one N after the other: no mdns-sd, no idle windows, no crash (~15 s per N).
    pub herald_only: bool,
    /// Each library client issues its registrations all at once (as an application
    /// registering its services at start would) instead of one after another.
    pub concurrent: bool,
}

impl Options {
    /// `[--quick] [--plot PATH] [--herald-only] [--concurrent]`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => options.counts = QUICK_COUNTS.to_vec(),
                "--plot" => options.plot = Some(args.next().ok_or("--plot PATH")?.into()),
                "--herald-only" => options.herald_only = true,
                "--concurrent" => options.concurrent = true,
                other => return Err(format!("unknown mdns option {other:?}")),
            }
        }
        Ok(options)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            counts: COUNTS.to_vec(),
            plot: None,
            herald_only: false,
            concurrent: false,
        }
    }
}

/// Is a flow Herald's (UDP, not mDNS)?
fn herald_flow(f: &Flow) -> bool {
    f.udp && !f.port(MDNS_PORT)
}

/// Is a flow mdns-sd's?
fn mdns_flow(f: &Flow) -> bool {
    f.port(MDNS_PORT)
}

mod crash;
mod figures;
mod sd;
mod tables;

use crash::crash;
use figures::{mean_max, Figures, Scenario, Timeline, Window, REBROWSE};
pub use sd::publish;
use sd::{browse, daemon, info, next, retry, Seen};

/// `herald-bench mdns`: runs the comparison into `report`, or says why it cannot.
pub fn run(report: &mut Report, options: &Options) -> Result<(), String> {
    report.section("Idle cost and the current mdns-sd (0.21.7, veth pair between two namespaces)");
    if let Some(why) = crate::netns::unavailable() {
        report.line(&format!("Skipped: {why}."));
        return Ok(());
    }
    if options.herald_only {
        return herald_only(report, &options.counts, options.concurrent);
    }
    let turn = std::sync::Arc::new(Mutex::new(()));
    let crash = std::thread::spawn(crash);
    let mut threads = Vec::new();
    for &n in &options.counts {
        let turn = turn.clone();
        let concurrent = options.concurrent;
        threads.push(std::thread::spawn(move || scenario(n, &turn, concurrent)));
        // Let the pairs take their turns in order of N.
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut scenarios = Vec::new();
    for (t, n) in threads.into_iter().zip(&options.counts) {
        match t.join() {
            Ok(Ok(s)) => scenarios.push(s),
            Ok(Err(e)) => report.line(&format!("\n**N = {n} failed: {e}**")),
            Err(_) => report.line(&format!("\n**N = {n} panicked**")),
        }
    }
    let crash = crash.join().map_err(|_| "the crash measurement panicked")?;
    tables::write(report, &scenarios, &crash);
    report.record(
        "mdns",
        json!({
            "mdns_sd": "0.21.7",
            "scenarios": scenarios.iter().map(|s| json!({"n": s.n, "herald_clients": s.clients,
                "herald": s.herald.json(), "mdns": s.mdns.json()})).collect::<Vec<_>>(),
            "crash": match &crash { Ok(c) => c.clone(), Err(e) => json!({"error": e}) },
        }),
    );
    if let Some(path) = &options.plot {
        tables::plot(&scenarios, path)?;
        report.line(&format!("\nPlot: `{}`.", path.display()));
    }
    Ok(())
}

/// Runs `f` as a task of `runtime` (so that its sockets are that runtime's side).
fn on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    runtime
        .block_on(runtime.spawn(f))
        .map_err(|e| format!("task: {e}"))?
}

/// Client options of side `ip` for `directory`.
fn client_options(directory: &Directory, ip: std::net::Ipv4Addr) -> ClientOptions {
    ClientOptions {
        directories: vec![directory.addr],
        group: directory.group,
        interface: Interface::V4(ip),
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// A pair of its own: captures on side B's veth and side A's loopback, and the
/// directory on side A.
fn lab() -> Result<(Pair, Capture, Capture, Directory), String> {
    let pair = Pair::create()?;
    let veth = Capture::start(&pair.b, B_IFACE, CAPTURE_LIMIT)?;
    let lo = Capture::start(&pair.a, "lo", CAPTURE_LIMIT)?;
    let directory = pair.a.run(|| {
        Directory::start(&DirectorySpec {
            ip: A_ADDR,
            extra: ONE_ADDRESS_BUDGET.iter().map(|s| s.to_string()).collect(),
            ..DirectorySpec::default()
        })
    })?;
    Ok((pair, veth, lo, directory))
}

/// One N in a pair of its own.
fn scenario(n: usize, turn: &Mutex<()>, concurrent: bool) -> Result<Scenario, String> {
    let (pair, veth, lo, directory) = lab()?;
    let port = directory.addr.port();
    let side_a = pair.a.run(crate::runtime)?;
    let side_b = pair.b.run(crate::runtime)?;
    let browser = pair.b.run(daemon)?;
    let publisher = pair.a.run(daemon)?;
    let active = turn.lock().map_err(|_| "turn lock poisoned")?;
    eprintln!("[mdns: N = {n}: active]");
    let (mut herald, held) = herald_active(
        n,
        &side_a,
        &side_b,
        (
            client_options(&directory, A_ADDR),
            client_options(&directory, B_ADDR),
        ),
        concurrent,
        &veth,
        &lo,
    )?;
    let (mut mdns, mdns_start, events) = mdns_active(n, &browser, &publisher, &veth)?;
    drop(active);
    std::thread::sleep(SETTLE);
    let mut before = (veth.snapshot(), lo.snapshot());
    for _ in 0..WINDOWS {
        std::thread::sleep(WINDOW);
        let now = (veth.snapshot(), lo.snapshot());
        let (v, l) = (now.0.since(&before.0), now.1.since(&before.1));
        herald.idle.push(Window::of(&v, &l, herald_flow, port));
        mdns.idle
            .push(Window::of(&v, &Counts::default(), mdns_flow, port));
        before = now;
    }
    eprintln!("[mdns: N = {n}: done]");
    while let Ok(e) = events.try_recv() {
        if let Seen::Closed(at) = e {
            mdns.closed.push(at.saturating_duration_since(mdns_start));
        }
    }
    drop(held);
    let _ = publisher.shutdown();
    let _ = browser.shutdown();
    Ok(Scenario {
        n,
        clients: n.div_ceil(PER_CLIENT),
        herald,
        mdns,
    })
}

/// `--herald-only`: Herald's active phase at each N, one pair at a time.
fn herald_only(report: &mut Report, counts: &[usize], concurrent: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    for &n in counts {
        let (pair, veth, lo, directory) = lab()?;
        let side_a = pair.a.run(crate::runtime)?;
        let side_b = pair.b.run(crate::runtime)?;
        let before = veth.snapshot();
        let (figures, held) = herald_active(
            n,
            &side_a,
            &side_b,
            (
                client_options(&directory, A_ADDR),
                client_options(&directory, B_ADDR),
            ),
            concurrent,
            &veth,
            &lo,
        )?;
        drop(held);
        // Watcher → directory: its snapshot and repair requests (none without loss).
        let asked = veth
            .snapshot()
            .since(&before)
            .sum(|f| herald_flow(f) && f.outgoing);
        let d = Summary::of(&figures.discover);
        let removed: Vec<Duration> = figures.remove.iter().flatten().copied().collect();
        let r = Summary::of(&removed);
        rows.push(vec![
            n.to_string(),
            format!("{} / {}", num(d.p50, 2), num(d.p99, 2)),
            tables::cell_ms(figures.all.map(ms)),
            format!(
                "{} / {} (acknowledged after {})",
                num(r.p50, 2),
                num(r.max, 2),
                tables::cell_ms(figures.slowest_removal_acked().map(ms))
            ),
            format!(
                "{} B ({} frames)",
                figures.first.bytes, figures.first.packets
            ),
            format!("{} B ({} frames)", asked.bytes, asked.packets),
            {
                let t = figures.timeline;
                let cell = |d: Option<Duration>| tables::cell_ms(d.map(ms));
                format!(
                    "{} / {} / {}",
                    cell(t.last_register),
                    cell(t.last_ack),
                    cell(t.last_announcement)
                )
            },
            if concurrent {
                "at once"
            } else {
                "one after another"
            }
            .into(),
            load_average(),
        ]);
    }
    report.table(
        &[
            "N",
            "register → discovered median / p99, ms",
            "all N, ms",
            "unregister → removed median / max (that one acknowledged after), ms",
            "publisher bytes, first 10 s",
            "watcher → directory (snapshot, repairs)",
            "last registration in / acknowledgement out / announcement at the watcher, ms",
            "each client's registrations",
            "load average",
        ],
        &rows,
    );
    Ok(())
}

/// The 1-minute load average, as `/proc/loadavg` says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// What Herald's side holds while idle: the clients, their registrations, the watch.
type Held = (Vec<Herald>, Vec<(usize, Registered)>, Watch);

/// Herald: registers N services (from side A) that a watcher (side B) discovers, then
/// unregisters and registers again [`REMOVALS`] of them, one at a time. Each client's
/// registrations are issued one after another, or all at once when `concurrent`.
fn herald_active(
    n: usize,
    side_a: &tokio::runtime::Runtime,
    side_b: &tokio::runtime::Runtime,
    (options_a, options_b): (ClientOptions, ClientOptions),
    concurrent: bool,
    veth: &Capture,
    lo: &Capture,
) -> Result<(Figures, Held), String> {
    let prefix = format!("n{n}-");
    let directory = options_a.directories.first().map_or(0, |d| d.port());
    let interest =
        Interest::parse_all([format!("{prefix}*").as_str()]).map_err(|e| format!("{e:?}"))?;
    let mut watch = on(side_b, async move {
        Watch::start(options_b, interest)
            .await
            .map_err(|e| e.to_string())
    })?;
    let clients = on(side_a, async move {
        let mut clients = Vec::new();
        for _ in 0..n.div_ceil(PER_CLIENT) {
            clients.push(
                Herald::connect(options_a.clone())
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(clients)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    let (v0, l0) = (veth.snapshot(), lo.snapshot());
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let (client, prefix) = (client.clone(), prefix.clone());
            let range = c * PER_CLIENT..((c + 1) * PER_CLIENT).min(n);
            side_a.spawn(async move {
                let mut out = Vec::new();
                let mut pending = Vec::new();
                for i in range {
                    let name = format!("{prefix}{i:05}");
                    let start = Instant::now();
                    let registration = service(&name, i)?;
                    if concurrent {
                        let client = client.clone();
                        let task = tokio::spawn(async move { client.register(registration).await });
                        pending.push((name, start, task));
                        continue;
                    }
                    let handle = client
                        .register(registration)
                        .await
                        .map_err(|e| format!("register {name}: {e}"))?;
                    out.push((name, start, c, handle));
                }
                for (name, start, task) in pending {
                    let handle = task
                        .await
                        .map_err(|e| e.to_string())?
                        .map_err(|e| format!("register {name}: {e}"))?;
                    out.push((name, start, c, handle));
                }
                Ok::<_, String>(out)
            })
        })
        .collect();
    let (arrivals, mut watch) = on(side_a, async move {
        let got = events::many(&mut watch, EventKind::Discovered, n, DISCOVER_LIMIT).await;
        Ok((got, watch))
    })?;
    let mut started = HashMap::new();
    let mut handles = Vec::new();
    for task in tasks {
        for (name, start, c, handle) in side_a.block_on(task).map_err(|e| e.to_string())?? {
            started.insert(name, start);
            handles.push((c, handle));
        }
    }
    // Every registration is acknowledged and discovered: when did each step end?
    let (burst_veth, burst_lo) = (veth.snapshot().since(&v0), lo.snapshot().since(&l0));
    let after = |t: Tally| t.last.map(|at| at.saturating_duration_since(t0));
    let timeline = Timeline {
        last_register: after(burst_lo.sum(|f| f.outgoing && f.dst == directory)),
        last_ack: after(burst_lo.sum(|f| f.outgoing && !f.multicast && f.src == directory)),
        last_announcement: after(
            burst_veth.sum(|f| !f.outgoing && f.multicast && f.src == directory),
        ),
    };
    let mut figures = Figures {
        discover: arrivals
            .iter()
            .filter_map(|(name, at)| started.get(name).map(|s| at.saturating_duration_since(*s)))
            .collect(),
        all: (arrivals.len() == n).then(|| arrivals.iter().map(|a| a.1).max().unwrap_or(t0) - t0),
        timeline,
        ..Figures::default()
    };
    std::thread::sleep((t0 + FIRST).saturating_duration_since(Instant::now()));
    let (v1, l1) = (veth.snapshot(), lo.snapshot());
    figures.first = v1.since(&v0).sum(|f| herald_flow(f) && !f.outgoing);
    figures.first_lo = l1.since(&l0).sum(|f| !f.outgoing && f.udp);
    let step = (n / REMOVALS).max(1);
    for k in (0..n).step_by(step).take(REMOVALS) {
        let (c, handle) = handles.swap_remove(k);
        let client = clients[c].clone();
        let (removed, acked, handle, w) = on(side_a, async move {
            let name = handle.grant().name.to_string();
            let t = Instant::now();
            handle.unregister().await.map_err(|e| e.to_string())?;
            let acked = t.elapsed();
            let removed = events::one(&mut watch, EventKind::Unregistered, &name, REMOVE_LIMIT)
                .await
                .map(|at| at - t);
            let index = name[name.len() - 5..].parse().unwrap_or(0);
            let again = client
                .register(service(&name, index)?)
                .await
                .map_err(|e| e.to_string())?;
            events::one(&mut watch, EventKind::Discovered, &name, DISCOVER_LIMIT).await;
            Ok((removed, acked, again, watch))
        })?;
        watch = w;
        figures.remove.push(removed);
        figures.remove_acked.push(acked);
        handles.push((c, handle));
    }
    Ok((figures, (clients, handles, watch)))
}

/// Herald's registration of service `name` number `i`.
fn service(name: &str, i: usize) -> Result<herald_core::Registration, String> {
    let location = SocketAddr::from((A_ADDR, 10_000 + (i % 50_000) as u16));
    registration(name, &[location], &[]).map_err(|e| format!("{name}: {e}"))
}

/// mdns-sd: one publisher daemon (side A) registers N services that a browser (side B)
/// resolves, then unregisters and registers again [`REMOVALS`] of them, one at a time.
/// The start and the browse's events are returned: the browse lasts as long as they are
/// kept.
fn mdns_active(
    n: usize,
    browser: &ServiceDaemon,
    publisher: &ServiceDaemon,
    veth: &Capture,
) -> Result<(Figures, Instant, std::sync::mpsc::Receiver<Seen>), String> {
    let ty = format!("_hb{n}._udp.local.");
    let events = browse(browser, &ty, CAPTURE_LIMIT)?;
    std::thread::sleep(Duration::from_millis(200));
    let v0 = veth.snapshot();
    let t0 = Instant::now();
    let mut started = HashMap::new();
    let mut infos = Vec::new();
    for i in 0..n {
        let service = info(&ty, &format!("svc-{i:05}"), 10_000 + (i % 50_000) as u16)?;
        started.insert(service.get_fullname().to_owned(), Instant::now());
        infos.push(service.clone());
        retry(|| publisher.register(service.clone()))?;
    }
    let deadline = t0 + DISCOVER_LIMIT;
    let mut arrivals = HashMap::new();
    let mut figures = Figures::default();
    while arrivals.len() < n {
        match next(&events, deadline) {
            Some(Seen::Resolved(name, at)) => {
                arrivals.entry(name).or_insert(at);
            }
            Some(Seen::Removed(..)) => {}
            Some(Seen::Closed(at)) => figures.closed.push(at - t0),
            None => break,
        }
    }
    figures.discover = arrivals
        .iter()
        .filter_map(|(name, at)| started.get(name).map(|s| at.saturating_duration_since(*s)))
        .collect();
    figures.all =
        (arrivals.len() == n).then(|| arrivals.values().max().copied().unwrap_or(t0) - t0);
    std::thread::sleep((t0 + FIRST).saturating_duration_since(Instant::now()));
    figures.first = veth
        .snapshot()
        .since(&v0)
        .sum(|f| mdns_flow(f) && !f.outgoing);
    let step = (n / REMOVALS).max(1);
    for k in (0..n).step_by(step).take(REMOVALS) {
        let name = infos[k].get_fullname().to_owned();
        let t = Instant::now();
        retry(|| publisher.unregister(&name))?;
        let mut removed = None;
        while let Some(e) = next(&events, t + REMOVE_LIMIT) {
            match e {
                Seen::Removed(full, at) if full == name => {
                    removed = Some(at - t);
                    break;
                }
                Seen::Closed(at) => figures.closed.push(at - t0),
                _ => {}
            }
        }
        figures.remove.push(removed);
        retry(|| publisher.register(infos[k].clone()))?;
        let deadline = Instant::now() + DISCOVER_LIMIT;
        while let Some(e) = next(&events, deadline) {
            match e {
                Seen::Resolved(full, _) if full == name => break,
                Seen::Closed(at) => figures.closed.push(at - t0),
                _ => {}
            }
        }
    }
    Ok((figures, t0, events))
}
