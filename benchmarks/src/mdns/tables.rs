//! The comparison's markdown tables and its idle-cost plot.

use super::*;

/// A cell in ms, or what happened instead.
pub(super) fn cell_ms(v: Option<f64>) -> String {
    v.map_or("not seen".into(), |v| num(v, 1))
}

/// Writes the comparison's tables into `report`.
pub(super) fn write(report: &mut Report, scenarios: &[Scenario], crash: &Result<Value, String>) {
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
pub(super) fn plot(scenarios: &[Scenario], path: &std::path::Path) -> Result<(), String> {
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
