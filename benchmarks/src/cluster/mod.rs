//! `cluster`: Herald's redundant directories on a real etcd. A fresh single-member etcd
//! (temporary data directory, free loopback ports) and three `herald serve --store
//! etcd://…` directories on one group, all on 127.0.0.1, measured for:
//!
//! 1. discovery latency (library `register` → a library watch's `discovered`, and
//!    `unregister` → `unregistered`) through the publisher and through a replica, beside
//!    a single redb directory in the same run;
//! 2. publisher takeover after `kill -9` (lease 3000 and 1000 ms) and after SIGTERM:
//!    until a survivor reports `herald_publishing 1`, until its first publishing beacon,
//!    until a listener follows it, and until a registration made through a survivor
//!    right after the stop is discovered;
//! 3. registrant failover: a library registrant (lease 3 s) whose directory is killed,
//!    until another directory takes its renewal, and whether a listener saw it go;
//! 4. an etcd outage of 5 s: until every directory reports the store unreachable, then
//!    reachable again, and until a registration made through a replica during the
//!    outage is discovered.
//!
//! Needs herald-bench built with `--features etcd` (herald-server's etcd store) and an
//! etcd binary (`ETCD_BIN`, `etcd` on the `PATH` or `/usr/bin/etcd`). Every wait is
//! bounded; every process is killed when its handle drops, also on panic.

mod listen;
mod node;

use crate::process::{Directory, DirectorySpec};
use crate::raw::{pump, register_frame, unregister_frame};
use crate::report::{num, Report};
use crate::stats::{ms, Summary};
use herald_server::client::{registration, ClientOptions, EventKind, Herald};
use herald_tests::harness::etcd::{self, Etcd, Stop};
use herald_tests::harness::host::Host;
use listen::{event, follows, publishing_beacon, Listener, Log, Seen};
use node::{Cluster, POLL};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Why `cluster` cannot run in a build without the feature.
pub const NEEDS_FEATURE: &str = "the cluster benchmark needs herald-bench built with its \
    `etcd` feature (herald-server's etcd store; building it needs protoc): \
    cargo run --release -p herald-bench --features etcd -- cluster";

/// Directories in the cluster.
const DIRECTORIES: usize = 3;
/// `--publisher-lease-ms` of the main run, and of the takeover-only run that shows the
/// knob.
const LEASE_MS: u64 = 3_000;
const SHORT_LEASE_MS: u64 = 1_000;
/// Register/unregister rounds per path (count bound) …
const ROUNDS: usize = 1_000;
/// … run in blocks of this many, the paths taking turns (so that drift of a shared
/// machine hits all of them alike) …
const BLOCK: usize = 50;
/// … within this time for all paths together (time bound).
const ROUNDS_LIMIT: Duration = Duration::from_secs(60);
/// Longest wait for one watch event in the rounds.
const EVENT_LIMIT: Duration = Duration::from_secs(2);
/// Takeover trials per setting, registrant failover trials, etcd outages.
const TAKEOVER_TRIALS: usize = 6;
const FAILOVER_TRIALS: usize = 8;
const OUTAGES: usize = 2;
/// The lease of the failing-over registrant.
const REGISTRANT_LEASE: Duration = Duration::from_secs(3);
/// How long etcd is down.
const OUTAGE: Duration = Duration::from_secs(5);
/// Where the registered services say they are (nothing listens there).
const LOCATION: &str = "127.0.0.1:9000";

/// How `cluster` runs: everything (the default), or only the discovery rounds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `--discovery-only`: only measurement 1.
    pub discovery_only: bool,
    /// `--registrations-only`: measurement 1 without unregistrations (each round
    /// registers through a fresh client and leaves the service to its lease), so that
    /// no removal is in flight; implies `--discovery-only`. A diagnostic: it shows what
    /// the publisher's removals cost the registrations it takes.
    pub registrations_only: bool,
}

impl Options {
    /// Parses the arguments after `cluster`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        for arg in args {
            match arg.as_str() {
                "--discovery-only" => options.discovery_only = true,
                "--registrations-only" => {
                    options.discovery_only = true;
                    options.registrations_only = true;
                }
                other => {
                    return Err(format!(
                        "cluster: unknown option {other:?} (--discovery-only, \
                         --registrations-only)"
                    ))
                }
            }
        }
        Ok(options)
    }

    /// True when the whole benchmark runs (its results are then written).
    pub fn complete(&self) -> bool {
        !self.discovery_only
    }
}

/// What the benchmark needs before it starts: this binary built with the `etcd`
/// feature, and an etcd binary (its path).
pub fn preflight() -> Result<std::path::PathBuf, String> {
    if !cfg!(feature = "etcd") {
        return Err(NEEDS_FEATURE.into());
    }
    etcd::binary().map_err(|e| format!("the cluster benchmark needs etcd: {e}"))
}

/// Runs the cluster benchmark into `report`; `Ok(false)` when some part failed (its
/// error is in the report).
pub fn run(report: &mut Report, runtime: &Runtime, mode: Options) -> Result<bool, String> {
    let etcd_bin = preflight()?;
    let mut etcd = Etcd::start_on(&Host::loopback("lo"), "etcd")?;
    let (date, herald, etcd_version) = (crate::report::utc_now(), revision(), version(&etcd_bin));
    report.line(&format!("Date: {date}"));
    report.line(&format!("Herald: {herald}"));
    report.record(
        "settings",
        json!({
            "date": date,
            "herald": herald,
            "etcd": etcd_version,
            "directories": DIRECTORIES,
            "publisher_lease_ms": [LEASE_MS, SHORT_LEASE_MS],
            "rounds_per_path": ROUNDS,
            "takeover_trials": TAKEOVER_TRIALS,
            "failover_trials": FAILOVER_TRIALS,
            "registrant_lease_ms": ms(REGISTRANT_LEASE),
            "outages": OUTAGES,
            "outage_ms": ms(OUTAGE),
            "metrics_poll_ms": ms(POLL),
        }),
    );
    report.line(&format!(
        "Settings: one etcd ({} {}, single member, data in a temporary directory, \
         client {}); {DIRECTORIES} `herald serve --store etcd://…` on one group, 127.0.0.1 \
         only, default interval (50 ms) and beacons (1 s), `--publisher-lease-ms \
         {LEASE_MS}` (takeover also at {SHORT_LEASE_MS}); listeners: the std library's \
         `Watch`, and herald-core's `Client` driven directly (\"probe\") to see beacons \
         and which directory it follows; metrics polled every {} ms.",
        etcd_bin.display(),
        etcd_version,
        etcd.endpoint(),
        POLL.as_millis()
    ));
    let mut ok = true;
    let mut record = |report: &mut Report, name: &str, r: Result<(), String>| {
        if let Err(e) = r {
            ok = false;
            report.line(&format!("\n**{name} failed: {e}**"));
        }
    };
    let (mut rows, mut trials) = (Vec::new(), Vec::new());
    {
        let mut cluster = Cluster::start(etcd.endpoint(), LEASE_MS, DIRECTORIES)?;
        let (watch, probe) = listeners(runtime, &mut cluster)?;
        let r = discovery(report, runtime, &mut cluster, &watch.log, mode);
        record(report, "discovery", r);
        if mode.discovery_only {
            return Ok(ok);
        }
        for how in [Stop::Kill, Stop::Term] {
            let r = takeover(&mut cluster, &watch.log, &probe.log, how)
                .map(|t| summarise(&t, &mut rows, &mut trials));
            record(report, &format!("takeover ({how:?})"), r);
        }
    }
    // The same takeover with the shortest publisher lease, on fresh directories (their
    // own etcd prefix and group).
    let r = Cluster::start(etcd.endpoint(), SHORT_LEASE_MS, DIRECTORIES).and_then(|mut c| {
        let (watch, probe) = listeners(runtime, &mut c)?;
        let t = takeover(&mut c, &watch.log, &probe.log, Stop::Kill)?;
        summarise(&t, &mut rows, &mut trials);
        Ok(())
    });
    report.section("Publisher takeover (directories on etcd, loopback)");
    report.line(
        "t0 is just before the signal, sent at a different point of the 1 s beacon cycle \
         each trial. *publishing*: a survivor's metrics say `herald_publishing 1`; \
         *beacon*: the probe hears its first beacon that says it publishes; *leaves*: the \
         probe's client moves to another directory (its current one was silent for 3 s, \
         the client's directory timeout; the next may still be a replica); *follows*: \
         its current directory is the new publisher and it has heard it publish; \
         *discovered*: the library watch reports a service registered through a \
         survivor right after t0 (a raw request). The stopped directory is started again \
         between trials.\n",
    );
    report.table(
        &[
            "lease",
            "stop",
            "what (from t0)",
            "trials",
            "p50 ms",
            "p90 ms",
            "max ms",
        ],
        &rows,
    );
    record(report, "takeover (lease 1000 ms)", r);
    report.record("takeover", serde_json::Value::Array(trials));
    // Registrant failover and the etcd outage, on fresh directories again.
    let r = Cluster::start(etcd.endpoint(), LEASE_MS, DIRECTORIES).and_then(|mut c| {
        let (watch, _probe) = listeners(runtime, &mut c)?;
        let r = failover(report, runtime, &mut c, &watch.log);
        record(report, "registrant failover", r);
        let r = outage(report, &mut c, &watch.log, &mut etcd);
        record(report, "etcd outage", r);
        Ok(())
    });
    record(report, "registrant failover and etcd outage", r);
    Ok(ok)
}

/// `etcd --version`'s first line, shortened (`etcd Version: 3.4.30` → `3.4.30`).
fn version(etcd: &std::path::Path) -> String {
    std::process::Command::new(etcd)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let first = text.lines().next()?.to_owned();
            Some(first.rsplit(' ').next().unwrap_or(&first).to_owned())
        })
        .unwrap_or_else(|| "(version unknown)".into())
}

/// The commit this binary was built from, as far as the work tree says, and whether
/// the code it measures (`core/`, `std-server/`) had uncommitted changes.
fn revision() -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain", "--", "core", "std-server"])
                .is_some_and(|s| !s.is_empty());
            format!(
                "commit {head}{}",
                if dirty {
                    " with uncommitted changes in core/ or std-server/"
                } else {
                    ""
                }
            )
        }
        None => "unknown commit (no git)".into(),
    }
}

/// A library watch and a probe on `cluster`, once it has one publisher and the probe
/// follows it.
fn listeners(runtime: &Runtime, cluster: &mut Cluster) -> Result<(Listener, Listener), String> {
    let watch = listen::watch(runtime, options(cluster, &cluster.addrs()))?;
    let probe = listen::probe(runtime, &cluster.addrs(), cluster.group)?;
    let p = cluster.publisher(Duration::from_secs(20))?;
    let addr = cluster.nodes[p].addr;
    let now = Instant::now();
    if probe.log.current_at(now) != Some(addr) {
        probe
            .log
            .wait(now, now + Duration::from_secs(5), follows(addr))
            .ok_or("the probe does not follow the publisher")?;
    }
    // The library watch switches on the same beacon; give it one more beacon interval.
    std::thread::sleep(Duration::from_millis(1_200));
    Ok((watch, probe))
}

/// Client options for directories of `cluster`.
fn options(cluster: &Cluster, directories: &[SocketAddr]) -> ClientOptions {
    ClientOptions {
        directories: directories.to_vec(),
        group: cluster.group,
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// One way of registering, with the listener that sees its announcements.
struct Path<'a> {
    /// How its clients reach the directory.
    options: ClientOptions,
    /// A fresh client per round, registrations left to their lease.
    registrations_only: bool,
    label: String,
    herald: Herald,
    log: &'a Log,
    discover: Vec<Duration>,
    unregister: Vec<Duration>,
    missed: usize,
}

/// One register/unregister round through `path`.
fn round(runtime: &Runtime, path: &mut Path<'_>, name: &str) -> Result<(), String> {
    let location = LOCATION.parse().expect("address");
    let reg = registration(name, &[location], &[]).map_err(|e| e.to_string())?;
    // A client holds at most 32 registrations: without unregistrations, one per round.
    let fresh;
    let herald = if path.registrations_only {
        fresh = runtime
            .block_on(Herald::connect(path.options.clone()))
            .map_err(|e| e.to_string())?;
        &fresh
    } else {
        &path.herald
    };
    let t0 = Instant::now();
    let handle = runtime
        .block_on(herald.register(reg))
        .map_err(|e| format!("{}: register: {e}", path.label))?;
    match path
        .log
        .wait(t0, t0 + EVENT_LIMIT, event(EventKind::Discovered, name))
    {
        Some(t) => path.discover.push(t - t0),
        None => path.missed += 1,
    }
    if path.registrations_only {
        // Left to its lease (15 s, longer than the run): nothing is removed.
        handle.detach();
        return Ok(());
    }
    let t1 = Instant::now();
    runtime
        .block_on(handle.unregister())
        .map_err(|e| format!("{}: unregister: {e}", path.label))?;
    match path
        .log
        .wait(t1, t1 + EVENT_LIMIT, event(EventKind::Unregistered, name))
    {
        Some(t) => path.unregister.push(t - t1),
        None => path.missed += 1,
    }
    Ok(())
}

/// 1. Discovery latency through the publisher, through a replica, and on a single redb
///    directory.
fn discovery(
    report: &mut Report,
    runtime: &Runtime,
    cluster: &mut Cluster,
    watch: &Log,
    run: Options,
) -> Result<(), String> {
    report.section(if run.registrations_only {
        "Discovery latency, registrations only (nothing removed): etcd cluster vs a \
         single redb directory (loopback)"
    } else {
        "Discovery latency: etcd cluster vs a single redb directory (loopback)"
    });
    let baseline = Directory::start(&DirectorySpec::default())?;
    let baseline_watch = listen::watch(runtime, crate::latency::options(&baseline))?;
    std::thread::sleep(Duration::from_millis(300));
    let p = cluster.publisher(Duration::from_secs(20))?;
    let r = (p + 1) % cluster.nodes.len();
    let connect = |options: ClientOptions| {
        runtime
            .block_on(Herald::connect(options))
            .map_err(|e| e.to_string())
    };
    let path = |options: ClientOptions, label: String, log| {
        Ok::<_, String>(Path {
            herald: connect(options.clone())?,
            options,
            registrations_only: run.registrations_only,
            label,
            log,
            discover: Vec::new(),
            unregister: Vec::new(),
            missed: 0,
        })
    };
    let mut paths = vec![
        path(
            crate::latency::options(&baseline),
            "single directory, redb (baseline)".into(),
            &baseline_watch.log,
        )?,
        path(
            options(cluster, &[cluster.nodes[p].addr]),
            format!(
                "cluster, through the publisher ({})",
                cluster.nodes[p].label
            ),
            watch,
        )?,
        path(
            options(cluster, &[cluster.nodes[r].addr]),
            format!("cluster, through a replica ({})", cluster.nodes[r].label),
            watch,
        )?,
    ];
    let start = Instant::now();
    'rounds: for block in 0..ROUNDS / BLOCK {
        for (k, path) in paths.iter_mut().enumerate() {
            for j in 0..BLOCK {
                if start.elapsed() > ROUNDS_LIMIT {
                    break 'rounds;
                }
                round(runtime, path, &format!("lat-{k}-{:04}", block * BLOCK + j))?;
            }
        }
    }
    let elapsed = start.elapsed();
    let base = [
        Summary::of(&paths[0].discover),
        Summary::of(&paths[0].unregister),
    ];
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for path in &paths {
        let measured = [
            ("register → discovered", Summary::of(&path.discover)),
            ("unregister → unregistered", Summary::of(&path.unregister)),
        ];
        for (i, (what, s)) in measured.iter().enumerate() {
            if s.count == 0 && path.registrations_only {
                continue;
            }
            rows.push(vec![
                path.label.clone(),
                what.to_string(),
                s.count.to_string(),
                num(s.p50, 2),
                num(s.p90, 2),
                num(s.p99, 2),
                num(s.max, 2),
                crate::report::ratio(s.p50, base[i].p50),
            ]);
        }
        json.push(json!({
            "path": path.label,
            "discover": measured[0].1.json(),
            "unregister": measured[1].1.json(),
            "missed_events": path.missed,
        }));
    }
    report.table(
        &[
            "path",
            "what",
            "rounds",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "p50 vs baseline",
        ],
        &rows,
    );
    let missed: Vec<String> = paths
        .iter()
        .map(|p| format!("{}: {}", p.label, p.missed))
        .collect();
    report.line(&format!(
        "\n{} rounds of {BLOCK} per path, paths taking turns, {:.1} s in all. Events not \
         seen within {} s: {}. The baseline is `herald serve` on redb with its own \
         group and watch; both cluster paths are seen by one watch of the cluster.",
        ROUNDS / BLOCK,
        elapsed.as_secs_f64(),
        EVENT_LIMIT.as_secs(),
        missed.join(", ")
    ));
    report.record("discovery", serde_json::Value::Array(json));
    Ok(())
}

/// One takeover trial's figures.
#[derive(Clone, Debug)]
struct Trial {
    lease_ms: u64,
    how: Stop,
    old: String,
    new: Option<String>,
    listener_on_old: bool,
    registered: bool,
    publishing: Option<Duration>,
    beacon: Option<Duration>,
    /// The probe moved to another directory (publishing or not).
    leaves: Option<Duration>,
    /// The probe follows the new publisher and has heard it publish.
    follows: Option<Duration>,
    discovered: Option<Duration>,
}

/// 2. Publisher takeover, `TAKEOVER_TRIALS` times: stop the publisher `how`, measure,
///    start it again.
fn takeover(
    cluster: &mut Cluster,
    watch: &Log,
    probe: &Log,
    how: Stop,
) -> Result<Vec<Trial>, String> {
    let mut trials = Vec::new();
    for i in 0..TAKEOVER_TRIALS {
        let t = takeover_trial(cluster, watch, probe, how, i)?;
        eprintln!(
            "[cluster] takeover {how:?} lease {}: {t:?}",
            cluster.lease_ms
        );
        trials.push(t);
    }
    Ok(trials)
}

fn takeover_trial(
    cluster: &mut Cluster,
    watch: &Log,
    probe: &Log,
    how: Stop,
    i: usize,
) -> Result<Trial, String> {
    let p = cluster.publisher(Duration::from_secs(20))?;
    let old = cluster.nodes[p].addr;
    // The listeners follow the publisher before it stops.
    let now = Instant::now();
    let listener_on_old = probe.current_at(now) == Some(old)
        || probe
            .wait(now, now + Duration::from_secs(5), follows(old))
            .is_some();
    // Beacons come every second: stop at a different point of that cycle each trial
    // (a listener moves once its directory has been silent for 3 s).
    std::thread::sleep(Duration::from_millis(100 + 180 * i as u64));
    let survivors: Vec<usize> = (0..cluster.nodes.len()).filter(|&k| k != p).collect();
    let name = format!("takeover-{}-{how:?}-{i}", cluster.lease_ms).to_lowercase();
    let via = cluster.nodes[survivors[0]].addr;
    let frame = register_frame(1, &name, 9100, Duration::from_secs(60));
    let t0 = Instant::now();
    match how {
        Stop::Kill => cluster.nodes[p].kill(),
        Stop::Term => cluster.nodes[p].terminate(),
    }
    // The registration goes on its own thread, so that polling starts at once.
    let registering = std::thread::spawn(move || pump(via, &[frame], 1, Duration::from_secs(3)));
    let limit = t0 + Duration::from_millis(cluster.lease_ms) + Duration::from_secs(10);
    let mut new = None;
    while new.is_none() && Instant::now() < limit {
        new = survivors
            .iter()
            .find(|&&s| cluster.nodes[s].metric("herald_publishing") == Some(1.0))
            .map(|&s| (s, t0.elapsed()));
        if new.is_none() {
            std::thread::sleep(POLL);
        }
    }
    let registered = registering.join().map(|p| p.answered == 1).unwrap_or(false);
    let since = |at: Option<Instant>| at.map(|t| t.saturating_duration_since(t0));
    let (beacon, follows_new) = match new {
        Some((s, _)) => {
            let addr = cluster.nodes[s].addr;
            let beacon = since(probe.wait(t0, limit, publishing_beacon(addr)));
            // Following it before it was elected does not count before its first
            // publishing beacon.
            let moved = since(probe.wait(t0, limit, follows(addr)));
            (beacon, moved.zip(beacon).map(|(m, b)| m.max(b)))
        }
        None => (None, None),
    };
    let leaves = since(probe.wait(t0, limit, |s| matches!(s, Seen::Current(d) if *d != old)));
    let discovered = since(watch.wait(t0, limit, event(EventKind::Discovered, &name)));
    // Clean up: the stopped directory exits and starts again, the name goes.
    let reaped = cluster.nodes[p].reap();
    let _ = pump(
        via,
        &[unregister_frame(1, &name)],
        1,
        Duration::from_secs(3),
    );
    cluster.nodes[p].start()?;
    reaped?;
    Ok(Trial {
        lease_ms: cluster.lease_ms,
        how,
        old: cluster.nodes[p].label.clone(),
        new: new.map(|(s, _)| cluster.nodes[s].label.clone()),
        listener_on_old,
        registered,
        publishing: new.map(|(_, t)| t),
        beacon,
        leaves,
        follows: follows_new,
        discovered,
    })
}

/// Adds the summary rows of a setting's trials, and their JSON.
fn summarise(trials: &[Trial], rows: &mut Vec<Vec<String>>, json: &mut Vec<serde_json::Value>) {
    let Some(first) = trials.first() else {
        return;
    };
    let how = match first.how {
        Stop::Kill => "kill -9",
        Stop::Term => "SIGTERM",
    };
    type Measure = fn(&Trial) -> Option<Duration>;
    let measures: [(&str, Measure); 5] = [
        ("a survivor reports publishing", |t| t.publishing),
        ("first publishing beacon (probe)", |t| t.beacon),
        ("probe leaves the stopped directory", |t| t.leaves),
        ("probe follows the new publisher", |t| t.follows),
        (
            "watch discovers a service registered via a survivor at t0",
            |t| t.discovered,
        ),
    ];
    for (what, get) in measures {
        let got: Vec<Duration> = trials.iter().filter_map(get).collect();
        let s = Summary::of(&got);
        let trials_cell = if got.len() == trials.len() {
            got.len().to_string()
        } else {
            format!("{} of {}", got.len(), trials.len())
        };
        rows.push(vec![
            format!("{} ms", first.lease_ms),
            how.to_string(),
            what.to_string(),
            trials_cell,
            num(s.p50, 0),
            num(s.p90, 0),
            num(s.max, 0),
        ]);
    }
    let opt = |d: Option<Duration>| d.map(ms);
    json.push(json!({
        "lease_ms": first.lease_ms,
        "stop": how,
        "trials": trials.iter().map(|t| json!({
            "old": t.old,
            "new": t.new,
            "listener_on_old": t.listener_on_old,
            "registered_via_survivor": t.registered,
            "publishing_ms": opt(t.publishing),
            "beacon_ms": opt(t.beacon),
            "leaves_ms": opt(t.leaves),
            "follows_ms": opt(t.follows),
            "discovered_ms": opt(t.discovered),
        })).collect::<Vec<_>>(),
    }));
}

/// 3. A library registrant whose directory is killed.
fn failover(
    report: &mut Report,
    runtime: &Runtime,
    cluster: &mut Cluster,
    watch: &Log,
) -> Result<(), String> {
    report.section("Registrant failover (library registrant, lease 3 s, its directory killed)");
    report.line(
        "The registrant is told the directories replica first, then the other replica, \
         then the publisher; its directory (a replica, so that the publisher's lease \
         plays no part) is killed with SIGKILL at a different point of the renewal cycle \
         each trial. *last renewal*: how long before the kill that directory last \
         counted a request of the registrant (its metrics, polled every 10 ms: a \
         renewal in the last poll interval before the kill is not seen). \
         *renewed after*: from the kill until another directory's metrics count a \
         register or renewal request (`herald_registrations_total` + `_changes_total` + \
         `_renewals_total`). The library watch and the publisher's \
         `herald_expiries_total` are then checked until the kill + lease + 2 s.\n",
    );
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut renewed = Vec::new();
    let mut lost = 0;
    for i in 0..FAILOVER_TRIALS {
        let t = failover_trial(runtime, cluster, watch, i)?;
        eprintln!("[cluster] failover: {t:?}");
        if let Some(d) = t.renewed_after {
            renewed.push(d);
        }
        lost += usize::from(t.unregistered > 0);
        let cell = |d: Option<Duration>| d.map_or("—".into(), |d| num(ms(d), 0));
        rows.push(vec![
            (i + 1).to_string(),
            format!(
                "{}{}",
                t.killed,
                if t.granted_by_killed {
                    ""
                } else {
                    " (not its directory!)"
                }
            ),
            cell(t.last_renewal),
            t.renewed_by.clone().unwrap_or_else(|| "—".into()),
            t.renewed_after
                .map_or("not within 10 s".into(), |d| num(ms(d), 0)),
            t.unregistered.to_string(),
            t.rediscovered.to_string(),
            t.expiries.map_or("?".into(), |e| e.to_string()),
        ]);
        json.push(json!({
            "killed": t.killed,
            "granted_by_killed": t.granted_by_killed,
            "discovered": t.discovered,
            "last_renewal_before_kill_ms": t.last_renewal.map(ms),
            "renewed_by": t.renewed_by,
            "renewed_ms": t.renewed_after.map(ms),
            "unregistered_events": t.unregistered,
            "discovered_again_events": t.rediscovered,
            "publisher_expiries": t.expiries,
        }));
    }
    report.table(
        &[
            "trial",
            "killed (its directory)",
            "last renewal before kill, ms",
            "renewed at",
            "renewed after, ms",
            "watch `unregistered`",
            "watch `discovered` again",
            "publisher expiries",
        ],
        &rows,
    );
    let s = Summary::of(&renewed);
    report.line(&format!(
        "\nRenewed through another directory in {} of {FAILOVER_TRIALS} trials: p50 {} \
         ms, p90 {} ms, max {} ms. Trials in which the listener saw the service \
         `unregistered`: {lost} of {FAILOVER_TRIALS}.",
        s.count,
        num(s.p50, 0),
        num(s.p90, 0),
        num(s.max, 0)
    ));
    report.record(
        "registrant_failover",
        json!({"lease_ms": ms(REGISTRANT_LEASE), "trials": json, "renewed": s.json()}),
    );
    Ok(())
}

/// One registrant failover trial's figures.
#[derive(Debug)]
struct Failover {
    killed: String,
    granted_by_killed: bool,
    discovered: bool,
    last_renewal: Option<Duration>,
    renewed_by: Option<String>,
    renewed_after: Option<Duration>,
    unregistered: usize,
    rediscovered: usize,
    expiries: Option<u64>,
}

fn failover_trial(
    runtime: &Runtime,
    cluster: &mut Cluster,
    watch: &Log,
    i: usize,
) -> Result<Failover, String> {
    let p = cluster.publisher(Duration::from_secs(20))?;
    let replicas: Vec<usize> = (0..cluster.nodes.len()).filter(|&k| k != p).collect();
    let r = replicas[i % replicas.len()];
    let mut order: Vec<usize> = replicas.iter().copied().filter(|&k| k != r).collect();
    order.insert(0, r);
    order.push(p);
    let addrs: Vec<SocketAddr> = order.iter().map(|&k| cluster.nodes[k].addr).collect();
    let herald = runtime
        .block_on(Herald::connect(ClientOptions {
            lease: REGISTRANT_LEASE,
            ..options(cluster, &addrs)
        }))
        .map_err(|e| e.to_string())?;
    let name = format!("failover-{i}");
    let location = LOCATION.parse().expect("address");
    let reg = registration(&name, &[location], &[]).map_err(|e| e.to_string())?;
    let t_reg = Instant::now();
    let handle = runtime
        .block_on(herald.register(reg))
        .map_err(|e| format!("register: {e}"))?;
    let granted_by_killed = handle.grant().directory == cluster.nodes[r].addr;
    let lease = handle.grant().lease;
    let discovered = watch
        .wait(
            t_reg,
            t_reg + EVENT_LIMIT,
            event(EventKind::Discovered, &name),
        )
        .is_some();
    // Renewals come every third of the lease: spread the kills over that cycle, and
    // note when the directory last counted one.
    let kill_at = Instant::now() + Duration::from_millis(1_500 + 125 * i as u64);
    let mut count = cluster.nodes[r].registers();
    let mut last_renewal = None;
    while Instant::now() < kill_at {
        let now = cluster.nodes[r].registers();
        if now != count {
            count = now;
            last_renewal = Some(Instant::now());
        }
        std::thread::sleep(POLL);
    }
    let survivors: Vec<usize> = order[1..].to_vec();
    let before: Vec<Option<f64>> = survivors
        .iter()
        .map(|&s| cluster.nodes[s].registers())
        .collect();
    let expiries_before = cluster.nodes[p].metric("herald_expiries_total");
    let t0 = Instant::now();
    cluster.nodes[r].kill();
    let mut taken = None;
    while taken.is_none() && t0.elapsed() < Duration::from_secs(10) {
        taken = survivors.iter().zip(&before).find_map(|(&s, b)| {
            let now = cluster.nodes[s].registers()?;
            (now > (*b)?).then(|| (s, t0.elapsed()))
        });
        if taken.is_none() {
            std::thread::sleep(POLL);
        }
    }
    let quiet_until = t0 + lease + Duration::from_secs(2);
    std::thread::sleep(quiet_until.saturating_duration_since(Instant::now()));
    let now = Instant::now();
    let unregistered = watch.count(t_reg, now, event(EventKind::Unregistered, &name));
    let rediscovered = watch.count(t0, now, event(EventKind::Discovered, &name));
    let expiries = cluster.nodes[p]
        .metric("herald_expiries_total")
        .zip(expiries_before)
        .map(|(a, b)| (a - b).max(0.0) as u64);
    let _ = runtime.block_on(handle.unregister());
    drop(herald);
    cluster.nodes[r].start()?;
    Ok(Failover {
        killed: cluster.nodes[r].label.clone(),
        granted_by_killed,
        discovered,
        last_renewal: last_renewal.map(|t| t0.saturating_duration_since(t)),
        renewed_by: taken.map(|(s, _)| cluster.nodes[s].label.clone()),
        renewed_after: taken.map(|(_, t)| t),
        unregistered,
        rediscovered,
        expiries,
    })
}

/// One etcd outage's figures.
#[derive(Debug)]
struct Outage {
    /// Per directory: `herald_store_reachable 0` after the kill.
    down: Vec<Option<Duration>>,
    /// etcd healthy again after the restart began.
    healthy: Duration,
    /// Per directory: `herald_store_reachable 1` after the restart began.
    up: Vec<Option<Duration>>,
    /// The registration through a replica: when (after the kill), acknowledged in.
    registered_at: Duration,
    acked: Option<Duration>,
    /// The watch saw it during the outage.
    seen_during: bool,
    /// The watch discovered it, after the restart began.
    discovered: Option<Duration>,
    /// `unregistered` events of any service from the kill to the end.
    unregistered: usize,
    /// Through which replica, and who published before and after.
    replica: String,
    publisher_before: String,
    publisher_after: Option<String>,
}

/// 4. etcd killed for `OUTAGE`, then started again with its data, `OUTAGES` times.
fn outage(
    report: &mut Report,
    cluster: &mut Cluster,
    watch: &Log,
    etcd: &mut Etcd,
) -> Result<(), String> {
    report.section("etcd outage (etcd killed for 5 s, then started again with its data)");
    report.line(&format!(
        "etcd gets SIGKILL at t0 and is started again (same ports and data) at t0 + {} s, \
         t1. Every directory's metrics are polled every {} ms. A service is registered \
         through a replica as soon as all report the store unreachable (raw request, \
         lease 120 s).\n",
        OUTAGE.as_secs(),
        POLL.as_millis()
    ));
    let mut outages = Vec::new();
    for k in 0..OUTAGES {
        let o = one_outage(cluster, watch, etcd, k)?;
        eprintln!("[cluster] outage: {o:?}");
        outages.push(o);
    }
    let slowest = |v: &[Option<Duration>]| {
        v.iter()
            .try_fold(Duration::ZERO, |m, d| d.map(|d| m.max(d)))
    };
    let cell = |d: Option<Duration>| d.map_or("not seen".into(), |d| num(ms(d), 0));
    let mut rows = Vec::new();
    for (k, o) in outages.iter().enumerate() {
        let after_healthy = |d: Option<Duration>| d.map(|d| d.saturating_sub(o.healthy));
        rows.push(vec![
            (k + 1).to_string(),
            cell(slowest(&o.down)),
            num(ms(o.healthy), 0),
            format!(
                "{} ({})",
                cell(slowest(&o.up)),
                cell(after_healthy(slowest(&o.up)))
            ),
            format!(
                "{} at t0 + {} ms: {}",
                o.replica,
                num(ms(o.registered_at), 0),
                o.acked.map_or("no answer".into(), |d| format!(
                    "acked in {} ms",
                    num(ms(d), 1)
                ))
            ),
            if o.seen_during { "yes" } else { "no" }.into(),
            format!(
                "{} ({})",
                cell(o.discovered),
                cell(after_healthy(o.discovered))
            ),
            o.unregistered.to_string(),
            format!(
                "{} → {}",
                o.publisher_before,
                o.publisher_after.as_deref().unwrap_or("none")
            ),
        ]);
    }
    report.table(
        &[
            "outage",
            "all report unreachable, ms after t0",
            "etcd healthy, ms after t1",
            "all report reachable, ms after t1 (after healthy)",
            "registration through a replica",
            "watch saw it during the outage",
            "watch discovered it, ms after t1 (after healthy)",
            "`unregistered` events",
            "publisher",
        ],
        &rows,
    );
    let opt = |d: Option<Duration>| d.map(ms);
    let json: Vec<serde_json::Value> = outages
        .iter()
        .map(|o| {
            json!({
                "outage_ms": ms(OUTAGE),
                "unreachable_ms": o.down.iter().map(|d| opt(*d)).collect::<Vec<_>>(),
                "etcd_healthy_ms": ms(o.healthy),
                "reachable_ms": o.up.iter().map(|d| opt(*d)).collect::<Vec<_>>(),
                "registration_at_ms": ms(o.registered_at),
                "registration_acked_ms": opt(o.acked),
                "seen_during_outage": o.seen_during,
                "discovered_after_restart_ms": opt(o.discovered),
                "unregistered_events": o.unregistered,
                "publisher_before": o.publisher_before,
                "publisher_after": o.publisher_after,
            })
        })
        .collect();
    report.record("etcd_outage", serde_json::Value::Array(json));
    Ok(())
}

fn one_outage(
    cluster: &mut Cluster,
    watch: &Log,
    etcd: &mut Etcd,
    k: usize,
) -> Result<Outage, String> {
    let p = cluster.publisher(Duration::from_secs(20))?;
    let r = (p + 1) % cluster.nodes.len();
    let n = cluster.nodes.len();
    let name = format!("outage-{k}");
    let t0 = Instant::now();
    etcd.stop(Stop::Kill);
    let mut down: Vec<Option<Duration>> = vec![None; n];
    while down.iter().any(Option::is_none) && t0.elapsed() < OUTAGE {
        for (i, d) in down.iter_mut().enumerate() {
            if d.is_none() && cluster.nodes[i].metric("herald_store_reachable") == Some(0.0) {
                *d = Some(t0.elapsed());
            }
        }
        std::thread::sleep(POLL);
    }
    // A registration through a replica while etcd is down.
    let t_reg = Instant::now();
    let frame = register_frame(1, &name, 9200, Duration::from_secs(120));
    let reg = pump(cluster.nodes[r].addr, &[frame], 1, Duration::from_secs(3));
    std::thread::sleep(OUTAGE.saturating_sub(t0.elapsed()));
    let seen_during = watch.count(t_reg, Instant::now(), event(EventKind::Discovered, &name)) > 0;
    let t1 = Instant::now();
    etcd.start()?;
    let healthy = t1.elapsed();
    let mut up: Vec<Option<Duration>> = vec![None; n];
    while up.iter().any(Option::is_none) && t1.elapsed() < Duration::from_secs(20) {
        for (i, u) in up.iter_mut().enumerate() {
            if u.is_none() && cluster.nodes[i].metric("herald_store_reachable") == Some(1.0) {
                *u = Some(t1.elapsed());
            }
        }
        std::thread::sleep(POLL);
    }
    let discovered = watch
        .wait(
            t_reg,
            t1 + Duration::from_secs(20),
            event(EventKind::Discovered, &name),
        )
        .map(|t| t.saturating_duration_since(t1));
    let publisher_after = cluster.publisher(Duration::from_secs(20)).ok();
    let unregistered = watch.count(t0, Instant::now(), |s| {
        matches!(s, Seen::Event(EventKind::Unregistered, _))
    });
    let _ = pump(
        cluster.nodes[r].addr,
        &[unregister_frame(1, &name)],
        1,
        Duration::from_secs(3),
    );
    // Let the removal be announced before the next outage.
    std::thread::sleep(Duration::from_millis(500));
    Ok(Outage {
        down,
        healthy,
        up,
        registered_at: t_reg.saturating_duration_since(t0),
        acked: (reg.answered == 1).then_some(reg.elapsed),
        seen_during,
        discovered,
        unregistered,
        replica: cluster.nodes[r].label.clone(),
        publisher_before: cluster.nodes[p].label.clone(),
        publisher_after: publisher_after.map(|k| cluster.nodes[k].label.clone()),
    })
}
