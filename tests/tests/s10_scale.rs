//! Scenario 10: scale. 10,000 services on one directory: memory and CPU stay bounded.
//! The numbers (resident memory, CPU time while registering and while idle with every
//! lease being renewed) are printed in the test output.

use herald_tests::harness::herald::{list, load};
use herald_tests::harness::host::Host;
use herald_tests::harness::procstat::usage;
use herald_tests::harness::wait::{poll_until, secs};
use herald_tests::{Directory, DirectoryOptions};
use std::time::{Duration, Instant};

const SERVICES: usize = 10_000;
const LEASE_SECS: u64 = 30;
/// Resident memory allowed with 10,000 services (the registry itself is a few MiB).
const MAX_RSS_KIB: u64 = 64 * 1024;
/// CPU allowed while renewals trickle in (10,000 leases of 30 s: ~1,000 renewals/s).
const MAX_STEADY_CPU_SHARE: f64 = 0.25;
/// CPU allowed to take 10,000 registrations.
const MAX_REGISTER_CPU: Duration = Duration::from_secs(5);

#[test]
fn ten_thousand_services_stay_within_memory_and_cpu_bounds() {
    let host = Host::loopback("lo");
    let mut options = DirectoryOptions::new("s10").with_metrics();
    // Every service comes from this one host: lift the per-source registration budget.
    for flag in ["--registrations-per-address", "--registrations-per-network"] {
        options
            .extra
            .extend([flag.to_owned(), SERVICES.to_string()]);
    }
    let directory = Directory::start(&host, "directory", options);
    let pid = directory.process().pid();
    let conn = directory.connect();
    let idle = usage(pid).expect("usage");

    let started = Instant::now();
    let _load = load(
        &host,
        &conn,
        "scale-",
        SERVICES,
        LEASE_SECS,
        Duration::from_secs(120),
    );
    let took = started.elapsed();
    let registered = usage(pid).expect("usage");
    let live = poll_until(Duration::from_secs(10), || {
        let m = directory.metrics();
        (m.get("herald_services") as usize >= SERVICES).then_some(m.get("herald_services"))
    })
    .unwrap_or_else(|| panic!("metrics never showed {SERVICES} services"));

    // Steady state: every lease renewed at a third of its length.
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let steady = usage(pid).expect("usage");
    let steady_cpu = steady.cpu.saturating_sub(registered.cpu);
    let share = steady_cpu.as_secs_f64() / window.as_secs_f64();
    let m = directory.metrics();

    let listed_at = Instant::now();
    let listed = list(&host, &conn).expect("herald list");
    let list_took = listed_at.elapsed();

    eprintln!("[s10] directory pid {pid}, {live} live services");
    eprintln!(
        "[s10] RSS: idle {} KiB, after registering {} KiB, after 10 s of renewals {} KiB (peak {} KiB)",
        idle.rss_kib, registered.rss_kib, steady.rss_kib, steady.peak_rss_kib
    );
    eprintln!(
        "[s10] CPU: registering {SERVICES} took {} wall, {} CPU; renewals for {}: {} CPU ({:.1} % of a core); renewals counted {}",
        secs(took),
        secs(registered.cpu.saturating_sub(idle.cpu)),
        secs(window),
        secs(steady_cpu),
        share * 100.0,
        m.get("herald_renewals_total")
    );
    eprintln!(
        "[s10] herald list of {} services: {}",
        listed.len(),
        secs(list_took)
    );

    assert_eq!(listed.len(), SERVICES, "herald list sees every service");
    assert!(
        steady.peak_rss_kib <= MAX_RSS_KIB,
        "peak RSS {} KiB",
        steady.peak_rss_kib
    );
    assert!(
        registered.cpu.saturating_sub(idle.cpu) <= MAX_REGISTER_CPU,
        "registering took {:?} of CPU",
        registered.cpu - idle.cpu
    );
    assert!(share <= MAX_STEADY_CPU_SHARE, "steady CPU share {share}");
    assert!(
        m.get("herald_renewals_total") > 0.0,
        "leases are being renewed"
    );
    assert_eq!(m.get("herald_expiries_total"), 0.0, "no lease ran out");
}
