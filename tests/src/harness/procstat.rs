//! Resource use of a process, from /proc: resident memory and CPU time.

use std::time::Duration;

/// One reading.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident set size, in KiB (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size, in KiB (VmHWM).
    pub peak_rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Reads /proc/PID/status and /proc/PID/stat.
pub fn usage(pid: u32) -> Result<Usage, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or("unreadable /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or("unreadable utime/stime")
    };
    let total = ticks(14)? + ticks(15)?;
    let hz = clock_ticks();
    Ok(Usage {
        rss_kib: kib("VmRSS:")?,
        peak_rss_kib: kib("VmHWM:")?,
        cpu: Duration::from_millis(total * 1000 / hz),
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 when unknown).
fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let u = usage(std::process::id()).unwrap();
        assert!(u.rss_kib > 0 && u.peak_rss_kib >= u.rss_kib);
    }
}
