//! Late joiners: time until a listener that starts after the registry was filled holds
//! all of it, at 1,000 and 10,000 services, with one and with four listeners joining at
//! once.

use crate::events;
use crate::latency::options;
use crate::process::{Directory, DirectorySpec};
use crate::raw::{pump, register_frames};
use crate::report::{num, Report};
use crate::stats::ms;
use herald_core::Interest;
use herald_server::client::{EventKind, Watch};
use std::time::{Duration, Instant};

/// Registry sizes.
const SIZES: [usize; 2] = [1_000, 10_000];
/// Listeners joining together.
const LISTENERS: [usize; 2] = [1, 4];
/// Time bound for one join.
const LIMIT: Duration = Duration::from_secs(15);

/// Starts `listeners` watches at once; returns each one's time to hold `services`.
async fn join(directory: &Directory, services: usize, listeners: usize) -> Vec<Option<Duration>> {
    let mut tasks = Vec::new();
    for _ in 0..listeners {
        let options = options(directory);
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let mut watch = Watch::start(options, Interest::all()).await.ok()?;
            let got = events::many(&mut watch, EventKind::Discovered, services, LIMIT).await;
            (got.len() == services).then(|| got.last().map_or(Duration::ZERO, |l| l.1 - t0))
        }));
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.ok().flatten());
    }
    times
}

/// Runs the late-joiner measurements.
pub fn run(report: &mut Report, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    report.section("Late joiner (new listener until it holds the whole registry, loopback)");
    let directory = Directory::start(&DirectorySpec::default())?;
    let names = crate::raw::names("join", SIZES[SIZES.len() - 1]);
    let mut filled = 0;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for services in SIZES {
        let p = pump(
            directory.addr,
            &register_frames(&names[filled..services], Duration::from_secs(300)),
            64,
            Duration::from_secs(20),
        );
        filled += p.answered;
        if filled != services {
            return Err(format!("registered {filled} of {services} services"));
        }
        std::thread::sleep(Duration::from_millis(300));
        for listeners in LISTENERS {
            let times = runtime.block_on(join(&directory, services, listeners));
            let done: Vec<f64> = times.iter().flatten().map(|d| ms(*d)).collect();
            let worst = done.iter().copied().fold(0.0, f64::max);
            let best = done.iter().copied().fold(f64::INFINITY, f64::min);
            rows.push(vec![
                services.to_string(),
                listeners.to_string(),
                format!("{}/{}", done.len(), listeners),
                num(if done.is_empty() { 0.0 } else { best }, 1),
                num(worst, 1),
            ]);
            json.push(serde_json::json!({
                "services": services, "listeners": listeners,
                "complete": done.len(), "times_ms": done, "worst_ms": worst,
            }));
        }
    }
    report.table(
        &[
            "services",
            "listeners",
            "complete",
            "fastest ms",
            "slowest ms",
        ],
        &rows,
    );
    report.record("late_joiner", serde_json::Value::Array(json));
    Ok(())
}
