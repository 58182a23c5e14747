//! Fuzzer-chosen fault schedules on the simulated network, checked by the simulator's
//! history checker; see `herald_fuzz::history`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_fuzz::history::run(data));
