//! Arbitrary bytes into the frame decoder; see `herald_fuzz::codec::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_fuzz::codec::decode(data));
