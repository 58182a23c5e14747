//! Request throughput: registrations and renewals per second one directory answers,
//! against a raw UDP echo server driven by the same client in the same run.

use crate::process::{Directory, DirectorySpec, Spawned};
use crate::raw::{names, pump, register_frames, Pumped};
use crate::report::{num, ratio, Report};
use crate::stats::rate;
use std::time::Duration;

/// Requests per measurement (the count bound); each also stops after [`LIMIT`].
const REQUESTS: usize = 20_000;
/// Time bound of each measurement.
const LIMIT: Duration = Duration::from_secs(4);
/// Requests in flight.
const WINDOW: usize = 32;

fn per_second(p: &Pumped) -> f64 {
    rate(p.answered, p.elapsed)
}

/// Runs the throughput comparison.
pub fn run(report: &mut Report) -> Result<(), String> {
    report.section("Request throughput (one client, 32 requests in flight, loopback)");
    let (mut echo, echo_addr) = Spawned::echo()?;
    let directory = Directory::start(&DirectorySpec {
        capacity: REQUESTS + 1024,
        ..DirectorySpec::default()
    })?;
    let frames = register_frames(&names("tp", REQUESTS), Duration::from_secs(300));
    let echo_before = pump(echo_addr, &frames, WINDOW, LIMIT);
    let registered = pump(directory.addr, &frames, WINDOW, LIMIT);
    let renewals = pump(
        directory.addr,
        &frames[..registered.answered],
        WINDOW,
        LIMIT,
    );
    let echo_after = pump(echo_addr, &frames, WINDOW, LIMIT);
    echo.kill();
    let baseline = (per_second(&echo_before) + per_second(&echo_after)) / 2.0;
    let mut rows = vec![vec![
        "raw UDP echo (baseline, mean of before and after)".to_string(),
        num(baseline, 0),
        "1.00×".into(),
        format!(
            "{} + {} answered",
            echo_before.answered, echo_after.answered
        ),
    ]];
    for (what, p) in [
        ("registrations (new names, durable)", &registered),
        ("renewals (same registrant, same content)", &renewals),
    ] {
        rows.push(vec![
            what.to_string(),
            num(per_second(p), 0),
            ratio(per_second(p), baseline),
            format!(
                "{} answered, {} refused, {} sent in {:.2} s",
                p.answered,
                p.rejected,
                p.sent,
                p.elapsed.as_secs_f64()
            ),
        ]);
    }
    report.table(&["requests", "per second", "vs echo", "detail"], &rows);
    report.record(
        "throughput",
        serde_json::json!({
            "echo_per_s": baseline,
            "echo_before_per_s": per_second(&echo_before),
            "echo_after_per_s": per_second(&echo_after),
            "registrations_per_s": per_second(&registered),
            "renewals_per_s": per_second(&renewals),
            "window": WINDOW,
        }),
    );
    Ok(())
}
