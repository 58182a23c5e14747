//! The history checker over random fault schedules (see `support/history.rs` for the
//! invariants). `cargo test` runs 300 seeds; set `HERALD_SIM_SEEDS=N` (and
//! `HERALD_SIM_START=S`) for a longer soak, `HERALD_SIM_SEED=S` to replay one seed with
//! its whole report, `HERALD_SIM_FAULTS` to switch fault classes off (`-replays,-loss`)
//! and `HERALD_SIM_EXPIRY_LOSS` for the loss ceiling of the spurious-expiry invariant.

mod support;

use std::collections::BTreeMap;
use support::history::{run_seed, FaultClasses};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn random_fault_schedules_keep_every_invariant() {
    let classes = FaultClasses::from_env();
    let seeds: Vec<u64> = match env("HERALD_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let start = env("HERALD_SIM_START").unwrap_or(0);
            (start..start + env("HERALD_SIM_SEEDS").unwrap_or(300)).collect()
        }
    };
    let mut failed: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut reports = 0;
    for &seed in &seeds {
        let outcome = run_seed(seed, &classes);
        if outcome.violations.is_empty() {
            continue;
        }
        // The whole report for the first few failing seeds, a line for the others.
        if reports < 3 || seeds.len() == 1 {
            eprintln!("{}", outcome.report());
            reports += 1;
        } else {
            let first = &outcome.violations[0];
            eprintln!(
                "seed {seed}: {} at {}: {}",
                first.invariant, first.at, first.detail
            );
        }
        for invariant in outcome.invariants() {
            failed.entry(invariant).or_default().push(seed);
        }
    }
    let summary: Vec<String> = failed
        .iter()
        .map(|(invariant, seeds)| {
            let shown: Vec<String> = seeds.iter().take(20).map(u64::to_string).collect();
            format!("{invariant}: {} seeds ({})", seeds.len(), shown.join(" "))
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} seeds run ({classes:?}); violations:\n{}\nreplay one with HERALD_SIM_SEED=<seed>",
        seeds.len(),
        summary.join("\n")
    );
}
