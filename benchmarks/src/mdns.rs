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
}

impl Options {
    /// `[--quick] [--plot PATH]`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => options.counts = QUICK_COUNTS.to_vec(),
                "--plot" => options.plot = Some(args.next().ok_or("--plot PATH")?.into()),
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

/// Idle traffic of one window, one system.
#[derive(Clone, Copy, Default)]
struct Window {
    multicast: Tally,
    unicast: Tally,
    /// Herald only: registrant → directory datagrams (side A's loopback).
    renew_in: Tally,
    /// Herald only: directory → registrant datagrams.
    renew_out: Tally,
}

impl Window {
    fn of(veth: &Counts, lo: &Counts, system: fn(&Flow) -> bool, port: u16) -> Window {
        Window {
            multicast: veth.sum(|f| system(f) && f.multicast),
            unicast: veth.sum(|f| system(f) && !f.multicast),
            // On loopback every frame is seen twice (sent, received): count the received.
            renew_in: lo.sum(|f| !f.outgoing && f.udp && f.dst == port),
            renew_out: lo.sum(|f| !f.outgoing && f.udp && f.src == port),
        }
    }

    /// Bytes on the veth plus renewal bytes (renewals cross the network when the
    /// registrants are on other hosts than the directory).
    fn total_bytes(&self) -> u64 {
        self.multicast.bytes + self.unicast.bytes + self.renew_in.bytes + self.renew_out.bytes
    }

    fn json(&self) -> Value {
        let t = |t: Tally| json!({"packets": t.packets, "bytes": t.bytes});
        json!({"multicast": t(self.multicast), "unicast": t(self.unicast),
            "renew_in": t(self.renew_in), "renew_out": t(self.renew_out)})
    }
}

/// Mean and largest of `f` over windows.
fn mean_max(windows: &[Window], f: impl Fn(&Window) -> u64) -> (f64, u64) {
    let values: Vec<u64> = windows.iter().map(f).collect();
    let mean = values.iter().sum::<u64>() as f64 / values.len().max(1) as f64;
    (mean, values.into_iter().max().unwrap_or(0))
}

/// Times the benchmark browses again after mdns-sd ended a browse; after that the
/// browse stays ended (browsing again at N = 10,000 only refills the channel at once).
const REBROWSE: usize = 3;

/// One system's figures at one N.
#[derive(Default)]
struct Figures {
    /// Per service: its register call → its discovery.
    discover: Vec<Duration>,
    /// First register call → last discovery (all N), if all were discovered.
    all: Option<Duration>,
    /// Unregister call → removal event, per sample (`None`: not within the bound).
    remove: Vec<Option<Duration>>,
    /// Side A → side B on the veth, first 10 s.
    first: Tally,
    /// Registrant ↔ directory on side A's loopback, first 10 s (Herald only).
    first_lo: Tally,
    idle: Vec<Window>,
    /// mdns-sd only: when mdns-sd ended the browse (after the first registration), each
    /// time (the benchmark browsed again).
    closed: Vec<Duration>,
}

impl Figures {
    /// Whether mdns-sd ended the browse for good (the idle figures then lack a browser).
    fn browse_ended(&self) -> bool {
        self.closed.len() > REBROWSE
    }

    fn json(&self) -> Value {
        let removed: Vec<Duration> = self.remove.iter().flatten().copied().collect();
        json!({
            "discover": Summary::of(&self.discover).json(),
            "discovered": self.discover.len(),
            "all_ms": self.all.map(ms),
            "remove": Summary::of(&removed).json(),
            "remove_missed": self.remove.len() - removed.len(),
            "first10_bytes": self.first.bytes, "first10_packets": self.first.packets,
            "first10_lo_bytes": self.first_lo.bytes, "first10_lo_packets": self.first_lo.packets,
            "idle_windows": self.idle.iter().map(Window::json).collect::<Vec<_>>(),
            "browse_closed_after_ms": self.closed.iter().copied().map(ms).collect::<Vec<_>>(),
            "browse_ended": self.browse_ended(),
        })
    }
}

/// The results at one N.
struct Scenario {
    n: usize,
    clients: usize,
    herald: Figures,
    mdns: Figures,
}

/// `herald-bench mdns`: runs the comparison into `report`, or says why it cannot.
pub fn run(report: &mut Report, options: &Options) -> Result<(), String> {
    report.section("Idle cost and the current mdns-sd (0.21.7, veth pair between two namespaces)");
    if let Some(why) = crate::netns::unavailable() {
        report.line(&format!("Skipped: {why}."));
        return Ok(());
    }
    let turn = std::sync::Arc::new(Mutex::new(()));
    let crash = std::thread::spawn(crash);
    let mut threads = Vec::new();
    for &n in &options.counts {
        let turn = turn.clone();
        threads.push(std::thread::spawn(move || scenario(n, &turn)));
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
    tables(report, &scenarios, &crash);
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
        plot(&scenarios, path)?;
        report.line(&format!("\nPlot: `{}`.", path.display()));
    }
    Ok(())
}

/// A cell in ms, or what happened instead.
fn cell_ms(v: Option<f64>) -> String {
    v.map_or("not seen".into(), |v| num(v, 1))
}

/// The report's tables.
fn tables(report: &mut Report, scenarios: &[Scenario], crash: &Result<Value, String>) {
    let mut rows = Vec::new();
    let both = |label: String, rows: &mut Vec<Vec<String>>, f: &dyn Fn(&Figures) -> String| {
        for s in scenarios {
            rows.push(vec![
                label.clone(),
                s.n.to_string(),
                f(&s.herald),
                f(&s.mdns),
            ]);
        }
    };
    let discover = |f: &Figures| {
        let s = Summary::of(&f.discover);
        format!(
            "{} / {} (all: {})",
            num(s.p50, 1),
            num(s.p99, 1),
            cell_ms(f.all.map(ms))
        )
    };
    both(
        "register → discovered, ms: median / p99 (all N)".into(),
        &mut rows,
        &discover,
    );
    let remove = |f: &Figures| {
        let got: Vec<Duration> = f.remove.iter().flatten().copied().collect();
        let s = Summary::of(&got);
        let missed = f.remove.len() - got.len();
        let missed = if missed > 0 {
            format!(", {missed} not seen in {} s", REMOVE_LIMIT.as_secs())
        } else {
            String::new()
        };
        format!(
            "{} / {} ({} samples{missed})",
            num(s.p50, 1),
            num(s.max, 1),
            f.remove.len()
        )
    };
    both(
        "unregister one → removed, ms: median / max".into(),
        &mut rows,
        &remove,
    );
    both(
        "publisher → watcher bytes on the veth, first 10 s".into(),
        &mut rows,
        &|f| format!("{} B ({} frames)", f.first.bytes, f.first.packets),
    );
    both(
        "registrant ↔ directory bytes (side A loopback), first 10 s".into(),
        &mut rows,
        &|f| format!("{} B ({} datagrams)", f.first_lo.bytes, f.first_lo.packets),
    );
    let idle = |what: &'static str, g: fn(&Window) -> Tally| {
        move |f: &Figures| {
            if f.browse_ended() {
                return "n/a: mdns-sd ended the browse".to_string();
            }
            let (p, pmax) = mean_max(&f.idle, |w| g(w).packets);
            let (b, bmax) = mean_max(&f.idle, |w| g(w).bytes);
            format!(
                "{} {what} ({pmax} max), {} B ({bmax} max)",
                num(p, 1),
                num(b, 0)
            )
        }
    };
    both(
        "idle multicast per 10 s: mean (max window)".into(),
        &mut rows,
        &idle("frames", |w| w.multicast),
    );
    both(
        "idle unicast on the veth per 10 s".into(),
        &mut rows,
        &idle("frames", |w| w.unicast),
    );
    both(
        "idle renewals in (registrant → directory) per 10 s".into(),
        &mut rows,
        &idle("datagrams", |w| w.renew_in),
    );
    both(
        "idle renewals out (directory → registrant) per 10 s".into(),
        &mut rows,
        &idle("datagrams", |w| w.renew_out),
    );
    report.table(&["what", "N", "Herald", "mdns-sd 0.21.7"], &rows);
    for s in scenarios.iter().filter(|s| !s.mdns.closed.is_empty()) {
        let at: Vec<String> = s
            .mdns
            .closed
            .iter()
            .map(|d| num(d.as_secs_f64(), 1))
            .collect();
        let ended = if s.mdns.browse_ended() {
            " and then stopped: mdns-sd's later figures of this N have no browser"
        } else {
            ""
        };
        report.line(&format!(
            "\n**N = {}: mdns-sd ended the browse {} time(s)**, at {} s after the first \
             registration (its bounded event channel of 1,000 events was full when it pushed \
             one); the benchmark browsed again, as an application would, up to {REBROWSE} \
             times{ended}.",
            s.n,
            at.len(),
            at.join(", "),
        ));
    }
    report.line(&format!(
        "\nHerald's N services are held by N/{PER_CLIENT} library clients in one process \
         (distinct random registrant ids; {} clients at N = 1000), default lease 15 s; the \
         directory's per-address budget is raised to 16,384 (all come from one address). \
         Idle: {WINDOWS} windows of {} s after {} s of settling. Bytes are whole frames \
         (Ethernet + IPv4 + UDP headers) counted with a packet socket.",
        1000usize.div_ceil(PER_CLIENT),
        WINDOW.as_secs(),
        SETTLE.as_secs()
    ));
    let mut rows = Vec::new();
    for s in scenarios {
        let h = mean_max(&s.herald.idle, Window::total_bytes).0 / WINDOW.as_secs_f64();
        let hm = mean_max(&s.herald.idle, |w| w.multicast.bytes).0 / WINDOW.as_secs_f64();
        let m = mean_max(&s.mdns.idle, Window::total_bytes).0 / WINDOW.as_secs_f64();
        let (m, r, rm) = if s.mdns.browse_ended() {
            ("n/a (browse ended)".to_string(), "n/a".into(), "n/a".into())
        } else {
            (num(m, 1), ratio(h, m), ratio(hm, m))
        };
        rows.push(vec![s.n.to_string(), num(h, 1), num(hm, 1), m, r, rm]);
    }
    report.line("\nIdle bytes per second against N (mean over the idle windows):\n");
    report.table(
        &[
            "N",
            "Herald B/s (all: multicast + veth unicast + renewals)",
            "Herald multicast B/s",
            "mdns-sd B/s",
            "Herald all / mdns-sd",
            "Herald multicast / mdns-sd",
        ],
        &rows,
    );
    match crash {
        Ok(c) => {
            let f = |v: &Value| cell_ms(v.as_f64());
            report.line(
                "\nCrash removal (publisher killed with SIGKILL: nothing sent on the way out):\n",
            );
            report.table(
                &[
                    "system",
                    "what bounds it",
                    "bound of the wait",
                    "noticed after, ms",
                ],
                &[
                    vec![
                        "Herald, `herald register --lease 1`".into(),
                        format!("lease {SHORT_LEASE_S} s"),
                        format!("{} s", c["herald_short_bound_s"]),
                        f(&c["herald_short_ms"]),
                    ],
                    vec![
                        "Herald, `herald register` (default lease)".into(),
                        format!("lease {} s", c["herald_lease_s"]),
                        format!("{} s", c["herald_bound_s"]),
                        f(&c["herald_ms"]),
                    ],
                    vec![
                        "mdns-sd 0.21.7 (default TTLs)".into(),
                        format!(
                            "SRV/A TTL {} s (PTR/TXT {} s)",
                            c["mdns_host_ttl_s"], c["mdns_other_ttl_s"]
                        ),
                        format!("{} s", c["mdns_bound_s"]),
                        f(&c["mdns_ms"]),
                    ],
                ],
            );
        }
        Err(e) => report.line(&format!("\n**crash removal failed: {e}**")),
    }
}

/// Writes the idle-cost plot: idle bytes/s against N, log-log.
fn plot(scenarios: &[Scenario], path: &std::path::Path) -> Result<(), String> {
    let per_s =
        |windows: &[Window], f: fn(&Window) -> u64| mean_max(windows, f).0 / WINDOW.as_secs_f64();
    let series = |label: &str, colour, dashed, f: &dyn Fn(&Scenario) -> Option<f64>| Series {
        label: label.into(),
        colour,
        dashed,
        points: scenarios
            .iter()
            .filter_map(|s| f(s).map(|y| (s.n as f64, y)))
            .collect(),
    };
    let svg = log_log(
        "Idle traffic against registry size",
        "services registered (N)",
        "idle bytes/s (frames, headers included)",
        &[
            series("Herald: all", "#1f77b4", false, &|s| {
                Some(per_s(&s.herald.idle, Window::total_bytes))
            }),
            series("Herald: multicast", "#1f77b4", true, &|s| {
                Some(per_s(&s.herald.idle, |w| w.multicast.bytes))
            }),
            // No point where mdns-sd ended the browse: its idle cost was not measured.
            series("mdns-sd 0.21.7", "#d62728", false, &|s| {
                (!s.mdns.browse_ended()).then(|| per_s(&s.mdns.idle, Window::total_bytes))
            }),
        ],
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(path, svg).map_err(|e| format!("{}: {e}", path.display()))
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

/// One N in a pair of its own.
fn scenario(n: usize, turn: &Mutex<()>) -> Result<Scenario, String> {
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
        client_options(&directory, A_ADDR),
        client_options(&directory, B_ADDR),
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

/// What Herald's side holds while idle: the clients, their registrations, the watch.
type Held = (Vec<Herald>, Vec<(usize, Registered)>, Watch);

/// Herald: registers N services (from side A) that a watcher (side B) discovers, then
/// unregisters and registers again [`REMOVALS`] of them, one at a time.
fn herald_active(
    n: usize,
    side_a: &tokio::runtime::Runtime,
    side_b: &tokio::runtime::Runtime,
    options_a: ClientOptions,
    options_b: ClientOptions,
    veth: &Capture,
    lo: &Capture,
) -> Result<(Figures, Held), String> {
    let prefix = format!("n{n}-");
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
                for i in range {
                    let name = format!("{prefix}{i:05}");
                    let start = Instant::now();
                    let handle = client
                        .register(service(&name, i)?)
                        .await
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
    let mut figures = Figures {
        discover: arrivals
            .iter()
            .filter_map(|(name, at)| started.get(name).map(|s| at.saturating_duration_since(*s)))
            .collect(),
        all: (arrivals.len() == n).then(|| arrivals.iter().map(|a| a.1).max().unwrap_or(t0) - t0),
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
        let (removed, handle, w) = on(side_a, async move {
            let name = handle.grant().name.to_string();
            let t = Instant::now();
            handle.unregister().await.map_err(|e| e.to_string())?;
            let removed = events::one(&mut watch, EventKind::Unregistered, &name, REMOVE_LIMIT)
                .await
                .map(|at| at - t);
            let index = name[name.len() - 5..].parse().unwrap_or(0);
            let again = client
                .register(service(&name, index)?)
                .await
                .map_err(|e| e.to_string())?;
            events::one(&mut watch, EventKind::Discovered, &name, DISCOVER_LIMIT).await;
            Ok((removed, again, watch))
        })?;
        watch = w;
        figures.remove.push(removed);
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

/// Crash removal, in a pair of its own: Herald registrants (`herald register`, with a
/// 1 s lease and with the default lease) and an mdns-sd publisher process
/// (`herald-bench mdns-publish`) on side A are killed; time until the watcher and the
/// browser on side B notice, each bounded by its lease or TTL plus a margin.
fn crash() -> Result<Value, String> {
    let pair = Pair::create()?;
    let directory = pair.a.run(|| {
        Directory::start(&DirectorySpec {
            ip: A_ADDR,
            ..DirectorySpec::default()
        })
    })?;
    let side_b = pair.b.run(crate::runtime)?;
    let options_b = client_options(&directory, B_ADDR);
    let mut watch = on(&side_b, async move {
        let interest = Interest::parse_all(["crash-*"]).map_err(|e| format!("{e:?}"))?;
        Watch::start(options_b, interest)
            .await
            .map_err(|e| e.to_string())
    })?;
    let lease = herald_server::cli::DEFAULT_LEASE_SECS;
    let mut registrants = Vec::new();
    for (name, lease) in [
        ("crash-short", Some(SHORT_LEASE_S)),
        ("crash-default", None),
    ] {
        let mut args: Vec<String> = [
            "herald",
            "register",
            name,
            &format!("{A_ADDR}:9"),
            "--directory",
            &directory.addr.to_string(),
            "--group",
            &directory.group.to_string(),
            "--interface",
            &A_ADDR.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(l) = lease {
            args.extend(["--lease".into(), l.to_string()]);
        }
        let mut r = pair
            .a
            .run(move || Spawned::this_binary(&args).map_err(|e| e.to_string()))?;
        wait_for_line(
            r.stdout().ok_or("stdout")?,
            "registered",
            Duration::from_secs(10),
        )?;
        registrants.push((name, r));
    }
    let ty = "_hbcrash._udp.local.";
    let probe = info(ty, "crash-mdns", 9999)?;
    let (host_ttl, other_ttl) = (probe.get_host_ttl(), probe.get_other_ttl());
    let browser = pair.b.run(daemon)?;
    let events = browse(&browser, ty, CAPTURE_LIMIT)?;
    let mut publisher = pair.a.run(|| {
        Spawned::this_binary(&["mdns-publish".into(), ty.into(), "crash-mdns".into()])
            .map_err(|e| e.to_string())
    })?;
    wait_for_line(
        publisher.stdout().ok_or("stdout")?,
        "published",
        Duration::from_secs(10),
    )?;
    let deadline = Instant::now() + DISCOVER_LIMIT;
    loop {
        match next(&events, deadline) {
            Some(Seen::Resolved(..)) => break,
            Some(_) => {}
            None => return Err("the crashing mdns-sd publisher was never resolved".into()),
        }
    }
    let mut watch = on(&side_b, async move {
        for name in ["crash-short", "crash-default"] {
            if events::one(&mut watch, EventKind::Discovered, name, DISCOVER_LIMIT)
                .await
                .is_none()
            {
                return Err(format!("{name} was never discovered"));
            }
        }
        Ok(watch)
    })?;
    let t0 = Instant::now();
    for (_, r) in &mut registrants {
        r.kill();
    }
    publisher.kill();
    let mdns_bound = Duration::from_secs(u64::from(host_ttl)) + CRASH_MARGIN;
    let mdns = std::thread::spawn(move || {
        while let Some(e) = next(&events, t0 + mdns_bound) {
            if let Seen::Removed(_, at) = e {
                return Some(at - t0);
            }
        }
        None
    });
    let short_bound = Duration::from_secs(SHORT_LEASE_S) * 2 + CRASH_MARGIN;
    let bound = Duration::from_secs_f64(lease * 2.0) + CRASH_MARGIN;
    let (short, default) = on(&side_b, async move {
        let mut seen: HashMap<String, Duration> = HashMap::new();
        let deadline = tokio::time::Instant::from_std(t0 + bound);
        while seen.len() < 2 {
            use tokio_stream::StreamExt;
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(e)) if e.kind == EventKind::Unregistered => {
                    seen.entry(e.service.name).or_insert_with(|| t0.elapsed());
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let short = seen
            .get("crash-short")
            .copied()
            .filter(|d| *d <= short_bound);
        Ok((short, seen.get("crash-default").copied()))
    })?;
    let mdns = mdns.join().map_err(|_| "mdns crash waiter panicked")?;
    let _ = browser.shutdown();
    Ok(json!({
        "herald_short_lease_s": SHORT_LEASE_S, "herald_short_bound_s": short_bound.as_secs(),
        "herald_short_ms": short.map(ms),
        "herald_lease_s": lease, "herald_bound_s": bound.as_secs(), "herald_ms": default.map(ms),
        "mdns_host_ttl_s": host_ttl, "mdns_other_ttl_s": other_ttl,
        "mdns_bound_s": mdns_bound.as_secs(), "mdns_ms": mdns.map(ms),
    }))
}

/// A browse event, stamped when the forwarding thread received it.
enum Seen {
    Resolved(String, Instant),
    Removed(String, Instant),
    /// mdns-sd ended the browse (its event channel was full); browsed again.
    Closed(Instant),
}

/// Forwards `ty`'s browse events from `daemon` to an unbounded channel on a thread of its
/// own (for at most `limit`). mdns-sd ends a browse whose bounded event channel (1,000
/// events) is full when it pushes an event; the thread then says so ([`Seen::Closed`])
/// and browses again, as an application would, up to [`REBROWSE`] times.
fn browse(
    daemon: &ServiceDaemon,
    ty: &str,
    limit: Duration,
) -> Result<std::sync::mpsc::Receiver<Seen>, String> {
    let mut events = retry(|| daemon.browse(ty))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let deadline = Instant::now() + limit;
    let (daemon, ty) = (daemon.clone(), ty.to_owned());
    let mut again = 0;
    std::thread::spawn(move || loop {
        while let Ok(e) = events.recv_deadline(deadline) {
            let seen = match e {
                ServiceEvent::ServiceResolved(s) => Seen::Resolved(s.fullname, Instant::now()),
                ServiceEvent::ServiceRemoved(_, name) => Seen::Removed(name, Instant::now()),
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
        if Instant::now() >= deadline
            || tx.send(Seen::Closed(Instant::now())).is_err()
            || again == REBROWSE
        {
            return;
        }
        again += 1;
        match retry(|| daemon.browse(&ty)) {
            Ok(e) => events = e,
            Err(_) => return,
        }
    });
    Ok(rx)
}

/// The next forwarded event before `deadline`.
fn next(rx: &std::sync::mpsc::Receiver<Seen>, deadline: Instant) -> Option<Seen> {
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

/// Calls `f` again while mdns-sd's command channel is full (`Error::Again`), up to 5 s.
fn retry<T>(mut f: impl FnMut() -> mdns_sd::Result<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Err(mdns_sd::Error::Again) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

/// An mdns-sd daemon on this namespace's IPv4 interfaces (create it on a thread
/// inside the namespace).
fn daemon() -> Result<ServiceDaemon, String> {
    let d = ServiceDaemon::new().map_err(|e| e.to_string())?;
    d.disable_interface(IfKind::IPv6)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

/// The service info of instance `instance` of `ty`, on side A, default TTLs.
fn info(ty: &str, instance: &str, port: u16) -> Result<ServiceInfo, String> {
    ServiceInfo::new(
        ty,
        instance,
        "hbench-host.local.",
        A_ADDR.to_string().as_str(),
        port,
        None::<HashMap<String, String>>,
    )
    .map_err(|e| e.to_string())
}

/// `herald-bench mdns-publish TYPE INSTANCE`: publishes one service, says so, and waits
/// (at most [`PUBLISH_LIMIT`]) to be killed.
pub fn publish(ty: &str, instance: &str) -> Result<(), String> {
    let d = daemon()?;
    d.register(info(ty, instance, 9999)?)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    println!("published");
    std::thread::sleep(PUBLISH_LIMIT);
    Ok(())
}
