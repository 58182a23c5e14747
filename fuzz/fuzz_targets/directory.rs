//! Arbitrary steps of time, sender and datagram into the directory state machine; see
//! `herald_fuzz::directory` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_fuzz::directory::run(data));
