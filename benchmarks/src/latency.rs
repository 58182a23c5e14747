//! Discovery latency: from `register` to a watcher's `discovered` event, from
//! `unregister` to `unregistered`, and from a registrant's last word to the expiry's
//! `unregistered`, at the default 50 ms interval and at 5 ms.

use crate::events;
use crate::process::{Directory, DirectorySpec};
use crate::raw::{names, pump, register_frame};
use crate::report::{num, Report};
use crate::stats::Summary;
use herald_core::Interest;
use herald_server::client::{registration, ClientOptions, EventKind, Herald, Watch};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Register/unregister rounds per interval (count bound).
const ROUNDS: usize = 200;
/// Time bound of the rounds, per interval.
const ROUNDS_LIMIT: Duration = Duration::from_secs(15);
/// Services that "crash" (stop renewing) per interval.
const CRASHES: usize = 20;
/// Their lease.
const CRASH_LEASE: Duration = Duration::from_secs(1);

/// Latencies of one interval.
struct Measured {
    interval_ms: u64,
    discover: Summary,
    unregister: Summary,
    expiry: Summary,
}

/// Client options for a directory started by this run.
pub fn options(directory: &Directory) -> ClientOptions {
    ClientOptions {
        directories: vec![directory.addr],
        group: directory.group,
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

async fn measure(interval_ms: u64) -> Result<Measured, String> {
    let directory = Directory::start(&DirectorySpec {
        interval_ms,
        ..DirectorySpec::default()
    })?;
    let options = options(&directory);
    let mut watch = Watch::start(options.clone(), Interest::all())
        .await
        .map_err(|e| e.to_string())?;
    let herald = Herald::connect(options).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let location: SocketAddr = "127.0.0.1:9000".parse().expect("address");
    let (mut discover, mut unregister) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..ROUNDS {
        if start.elapsed() > ROUNDS_LIMIT {
            break;
        }
        let name = format!("lat-{i:04}");
        let reg = registration(&name, &[location], &[]).map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let handle = herald.register(reg).await.map_err(|e| e.to_string())?;
        let limit = Duration::from_secs(2);
        if let Some(t) = events::one(&mut watch, EventKind::Discovered, &name, limit).await {
            discover.push(t - t0);
        }
        let t0 = Instant::now();
        handle.unregister().await.map_err(|e| e.to_string())?;
        if let Some(t) = events::one(&mut watch, EventKind::Unregistered, &name, limit).await {
            unregister.push(t - t0);
        }
    }
    // Crashes: registered once with a 1 s lease and never renewed. The lease starts
    // when the directory handles the request, just before its acknowledgement.
    let crash_names = names("crash", CRASHES);
    let addr = directory.addr;
    let mut acked = Vec::new();
    for (i, name) in crash_names.iter().enumerate() {
        let frame = register_frame(1, name, 9000 + i as u16, CRASH_LEASE);
        let at = tokio::task::spawn_blocking(move || {
            let p = pump(addr, &[frame], 1, Duration::from_secs(2));
            (p.answered == 1).then(Instant::now)
        })
        .await
        .map_err(|e| e.to_string())?;
        acked.push(at);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = events::many(
        &mut watch,
        EventKind::Unregistered,
        CRASHES,
        CRASH_LEASE + Duration::from_secs(5),
    )
    .await;
    let expiry: Vec<Duration> = arrivals
        .iter()
        .filter_map(|(name, at)| {
            let i = crash_names.iter().position(|n| n == name)?;
            Some(at.saturating_duration_since(acked[i]?))
        })
        .collect();
    Ok(Measured {
        interval_ms,
        discover: Summary::of(&discover),
        unregister: Summary::of(&unregister),
        expiry: Summary::of(&expiry),
    })
}

/// Runs the latency measurements.
pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    report.section("Discovery latency (library register → watcher event, loopback)");
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for interval_ms in [50, 5] {
        let m = runtime.block_on(measure(interval_ms))?;
        for (what, s) in [
            ("register → discovered", m.discover),
            ("unregister → unregistered", m.unregister),
            ("last renewal → expired (lease 1 s)", m.expiry),
        ] {
            rows.push(vec![
                format!("{} ms", m.interval_ms),
                what.to_string(),
                s.count.to_string(),
                num(s.p50, 2),
                num(s.p99, 2),
                num(s.max, 2),
            ]);
        }
        json.push(serde_json::json!({
            "interval_ms": m.interval_ms,
            "discover": m.discover.json(),
            "unregister": m.unregister.json(),
            "expiry": m.expiry.json(),
            "crash_lease_ms": CRASH_LEASE.as_millis() as u64,
        }));
    }
    report.table(
        &["interval", "what", "runs", "p50 ms", "p99 ms", "max ms"],
        &rows,
    );
    report.record("latency", serde_json::Value::Array(json));
    Ok(())
}
