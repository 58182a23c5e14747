//! Directory memory: resident set of one `herald serve` at 0, 1,000, 10,000 and 100,000
//! services (capacity raised to hold them), and bytes per service.

use crate::process::{rss_kib, Directory, DirectorySpec};
use crate::raw::{pump, register_frames};
use crate::report::{num, Report};
use std::time::Duration;

/// Registry sizes.
const SIZES: [usize; 4] = [0, 1_000, 10_000, 100_000];
/// Time bound of filling the registry up to the largest size.
const FILL_LIMIT: Duration = Duration::from_secs(90);

/// Runs the memory measurements.
pub fn run(report: &mut Report) -> Result<(), String> {
    report.section("Directory resident memory (VmRSS of `herald serve`, capacity 100,352)");
    let largest = SIZES[SIZES.len() - 1];
    let directory = Directory::start(&DirectorySpec {
        capacity: largest + 352,
        ..DirectorySpec::default()
    })?;
    let names = crate::raw::names("mem", largest);
    let start = std::time::Instant::now();
    let mut filled = 0;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut base = 0u64;
    for services in SIZES {
        let left = FILL_LIMIT.saturating_sub(start.elapsed());
        let p = pump(
            directory.addr,
            &register_frames(&names[filled..services], Duration::from_secs(300)),
            64,
            left,
        );
        filled += p.answered;
        std::thread::sleep(Duration::from_millis(1_000));
        let rss = rss_kib(directory.pid()).ok_or("no VmRSS")?;
        if services == 0 {
            base = rss;
        }
        let per = if filled > 0 {
            (rss.saturating_sub(base) * 1024) as f64 / filled as f64
        } else {
            0.0
        };
        rows.push(vec![
            filled.to_string(),
            format!("{rss} KiB"),
            if filled > 0 {
                num(per, 0)
            } else {
                "—".into()
            },
            format!("{:.1} s elapsed filling", start.elapsed().as_secs_f64()),
        ]);
        json.push(
            serde_json::json!({"services": filled, "rss_kib": rss, "bytes_per_service": per}),
        );
        if filled < services {
            break;
        }
    }
    report.table(
        &["services", "VmRSS", "bytes/service (above 0)", "note"],
        &rows,
    );
    report.record("memory", serde_json::Value::Array(json));
    Ok(())
}
