//! The simulator's history checker (`core/tests/support/history.rs`, shared with the
//! core's `history` test) on schedules the fuzzer chooses: the first two bytes switch
//! fault classes on (see `FaultClasses::from_mask`), the rest drive the schedule
//! generator, two bytes per choice. Any violated invariant panics with the report (the
//! invariant, and the history excerpt that led to it).

#[allow(clippy::all, missing_docs, unused_imports)]
#[path = "../../core/tests/support/mod.rs"]
mod support;

use support::history::{run as run_schedule, Bytes, Choose, FaultClasses, Schedule};

/// Most steps of a fuzzed schedule (each costs simulated seconds).
const MAX_STEPS: u64 = 10;

/// Runs the schedule `data` chooses and checks its history.
pub fn run(data: &[u8]) {
    let (mask, rest) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (0, data),
    };
    let classes = FaultClasses::from_mask(mask);
    let mut choices = Bytes::new(rest);
    let schedule = Schedule::generate(&mut choices, &classes, MAX_STEPS);
    // The network's own randomness (loss, delays) is seeded from the input too.
    let seed = (0..4).fold(0u64, |s, _| s << 16 | choices.below(1 << 16));
    crate::trace!("history: {}", schedule.summary());
    let outcome = run_schedule(seed, schedule, &classes);
    assert!(
        outcome.violations.is_empty(),
        "history violation (fault mask {mask:#06x}):\n{}",
        outcome.report()
    );
}
