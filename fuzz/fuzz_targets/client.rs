//! Arbitrary steps of time, sender, datagram and API call into the client state
//! machine; see `herald_fuzz::client` for the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_fuzz::client::run(data));
